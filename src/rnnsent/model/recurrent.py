"""The recurrent network: embedding -> recurrent encoder -> pooling -> logistic head.

``RecurrentClassifier(config, vocab_size)`` builds every recurrent variant from a
:class:`~rnnsent.config.ModelConfig`; its ``forward`` returns ``(logits, loss)`` so the
training loop never branches on the architecture. The n-gram branch and its compositions
with this network are in :mod:`rnnsent.model.composed`; :func:`rnnsent.model.build.build_model`
picks the one a config asks for.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnsent.config import ModelConfig
from rnnsent.model.lengths import run_within_lengths
from rnnsent.model.loss import classification_loss
from rnnsent.model.pooling import build_pooling
from rnnsent.model.torch_private import flat_weight_names, refresh_flat_weights
from rnnsent.text.vocabulary import PAD_ID


class KerasSimpleRNN(nn.RNN):
    """``nn.RNN`` with one bias vector per layer and direction, like Keras' SimpleRNN.

    PyTorch's RNN adds two biases (input-to-hidden and hidden-to-hidden); their sum is one
    free vector, so Keras keeps one. Here the hidden-to-hidden bias is a fixed zero buffer:
    the computation, cuDNN and packed sequences stay PyTorch's, and the trainable parameter
    count is Keras' (``input * hidden + hidden * hidden + hidden``).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in [name for name in flat_weight_names(self) if name.startswith("bias_hh")]:
            # torch.zeros rather than zeros_like: on the meta device (the shape check when a
            # model loads) zeros_like runs a Python reference that imports sympy (~0.4 s).
            bias = getattr(self, name)
            zero = torch.zeros(bias.shape, dtype=bias.dtype, device=bias.device)
            delattr(self, name)
            self.register_buffer(name, zero, persistent=False)
        refresh_flat_weights(self)


# A plain mapping from the config's cell name to the module that implements it.
CELLS: dict[str, type[nn.RNNBase]] = {"simple": KerasSimpleRNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentClassifier(nn.Module):
    """A text classifier over padded id rows ``(batch, time)`` with ``outputs`` logits per row.

    One output (binary task) gives logits ``(batch,)``; K outputs give ``(batch, K)``, read as a
    softmax (multiclass) or K sigmoids (multilabel), as ``task`` says.

    True lengths may always be passed; they are read only when ``config.use_lengths`` is on
    (post-padded rows read up to their length), and ignored otherwise, so that the padding is
    read like any token, as in the Keras notebook.
    """

    def __init__(self, config: ModelConfig, vocab_size: int, sparse_embedding: bool = False, outputs: int = 1,
                 task: str = "binary") -> None:
        super().__init__()
        self.config, self.outputs, self.task = config, outputs, task
        # Per-class loss weights (see rnnsent.model.loss), set for training with --class-weights;
        # not part of the model's state.
        self.register_buffer("loss_weight", None, persistent=False)
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim, sparse=sparse_embedding)
        if config.normalize_embeddings:
            # Each word's share of the training tokens (vocab,), which weighs the mean and
            # variance that normalise the embedding; set from the data before training.
            self.register_buffer("word_frequency", torch.full((vocab_size,), 1.0 / vocab_size))
        cell_options = {"nonlinearity": config.nonlinearity} if config.cell == "simple" else {}
        self.rnn = CELLS[config.cell](
            input_size=config.embedding_dim,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
            **cell_options,
        )
        directions = 2 if config.bidirectional else 1
        self.pooling = build_pooling(config.pooling, config.hidden_size * directions, directions)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.pooling.summary_size, outputs)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras' initialisers: uniform embedding, Normal input kernel, identity recurrence."""
        config = self.config
        nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
        for name, parameter in self.rnn.named_parameters():
            if name.startswith("weight_ih") and config.input_init_std > 0:
                nn.init.normal_(parameter, 0.0, config.input_init_std)
            elif name.startswith("weight_hh") and config.recurrent_init != "default":
                # Gated cells stack one square block per gate: initialise each block.
                for block in parameter.data.split(config.hidden_size, dim=0):
                    if config.recurrent_init == "identity":
                        nn.init.eye_(block)
                    else:
                        nn.init.orthogonal_(block)
            elif name.startswith("bias") and config.cell == "simple":
                nn.init.zeros_(parameter)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def set_word_frequencies(self, ids: torch.Tensor) -> None:
        """Set the weights of the embedding's normalisation from training id rows ``(n, time)``:
        each word's share of their tokens (padding not counted)."""
        counts = torch.bincount(ids[ids != PAD_ID].reshape(-1).cpu(), minlength=self.word_frequency.numel())
        counts = counts[: self.word_frequency.numel()].double()
        self.word_frequency.copy_(counts / counts.sum().clamp(min=1.0))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """The embedded sequence ``(batch, time, embedding)`` the recurrent layer reads for id rows
        ``(batch, time)``: the word vectors (normalised with ``normalize_embeddings``), after dropout."""
        vectors = self.embedding(ids)  # (batch, time, embedding)
        if self.config.normalize_embeddings:
            # Miyato et al. (2016): every dimension standardised by its frequency-weighted mean
            # and variance over the vocabulary, so that a perturbation's norm means the same
            # whatever scale the vectors grow to.
            table, weights = self.embedding.weight, self.word_frequency.unsqueeze(-1)  # (vocab, embedding), (vocab, 1)
            mean = (weights * table).sum(dim=0)  # (embedding,)
            variance = (weights * (table - mean).pow(2)).sum(dim=0)  # (embedding,)
            vectors = (vectors - mean) / torch.sqrt(variance + 1e-6)
        return self.embedding_dropout(vectors)

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor | None = None,
               embedded: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step hidden states and the summary vector of id rows ``(batch, time)``.

        Returns ``(states (batch, time, state), summary (batch, summary))``. With
        ``use_lengths`` the padding at the end of each row is never read (see
        :func:`run_within_lengths`) and the states there are zero; without it ``lengths`` is
        ignored. ``embedded`` ``(batch, time, embedding)``, when given, is read instead of
        :meth:`embed` of the ids: the training objectives perturb it.
        """
        embedded = self.embed(ids) if embedded is None else embedded  # (batch, time, embedding)
        time = ids.shape[1]
        if self.config.use_lengths:
            assert lengths is not None, "use_lengths needs the true lengths"
            lengths = lengths.clamp(min=1).to(ids.device)
            mask = torch.arange(time, device=ids.device)[None, :] < lengths[:, None]  # (batch, time)
            states, final = run_within_lengths(self.rnn, embedded, lengths, self.config.dropout if self.training else 0.0)
            states = states * mask.unsqueeze(-1)
        else:
            states, final = self.rnn(embedded)  # (batch, time, state)
            mask = None
        return states, self.pooling(states, final, mask)

    def head_logits(self, summary: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch,)`` (one output) or ``(batch, K)`` from summary vectors ``(batch, summary)``."""
        logits = self.head(self.dropout(summary))  # (batch, outputs)
        return logits.squeeze(-1) if self.outputs == 1 else logits

    def part_logits(self, ids: torch.Tensor, lengths: torch.Tensor | None = None,
                    embedded: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The logit ``(batch,)`` of each part of the model: here only ``recurrent``."""
        return {"recurrent": self.head_logits(self.encode(ids, lengths, embedded)[1])}

    def combine(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's logit ``(batch,)`` from :meth:`part_logits`: the recurrent one."""
        return parts["recurrent"]

    def forward(
        self, ids: torch.Tensor, lengths: torch.Tensor | None = None, labels: torch.Tensor | None = None,
        embedded: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, mean loss or None)`` for id rows ``(batch, time)`` (see :mod:`rnnsent.model.loss`),
        read from ``embedded`` ``(batch, time, embedding)`` instead of the ids' :meth:`embed` when given."""
        logits = self.head_logits(self.encode(ids, lengths, embedded)[1])
        return logits, classification_loss(logits, labels, self.task, self.loss_weight)
