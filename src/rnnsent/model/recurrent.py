"""The network: embedding -> recurrent encoder -> sequence summary -> logistic head.

``RecurrentClassifier(config, vocab_size)`` builds every variant from a
:class:`~rnnsent.config.ModelConfig`; its ``forward`` returns ``(logits, loss)`` so the
training loop never branches on the architecture.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rnnsent.config import ModelConfig
from rnnsent.model.lengths import run_within_lengths
from rnnsent.model.ngrams import NgramBranch
from rnnsent.model.pooling import POOLED_SUMMARIES, join_pools
from rnnsent.model.torch_private import flat_weight_names, refresh_flat_weights


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
            zero = torch.zeros_like(getattr(self, name)).detach()
            delattr(self, name)
            self.register_buffer(name, zero, persistent=False)
        refresh_flat_weights(self)


# A plain mapping from the config's cell name to the module that implements it.
CELLS: dict[str, type[nn.RNNBase]] = {"simple": KerasSimpleRNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentClassifier(nn.Module):
    """A binary text classifier over padded id rows ``(batch, time)``."""

    def __init__(self, config: ModelConfig, vocab_size: int, sparse_embedding: bool = False) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim, sparse=sparse_embedding)
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
        state_size = config.hidden_size * directions
        if config.pooling == "attention":
            self.attention = nn.Linear(state_size, 1, bias=False)
        summary_size = state_size * (2 if config.pooling == "maxmean" else 1)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(summary_size, 1)
        # A single-layer simple RNN read to its last state has a compiled CPU forward for inference.
        self.compiled_inference = (
            config.cell == "simple" and config.num_layers == 1 and not config.bidirectional
            and config.pooling == "last" and not config.use_lengths and not config.ngram_buckets
        )
        # The optional bag-of-n-grams branch; its logit is added to the recurrent one.
        self.ngrams = None
        if config.ngram_buckets:
            stacked = config.ngram_fit == "stacked"
            self.ngrams = NgramBranch(vocab_size, config.ngram_buckets, config.ngram_order, config.ngram_lr_scale,
                                      binary=stacked)
        # A stacked model's logit is blend[0] * recurrent + blend[1] * n-grams + blend[2]. Until
        # the blend is fitted (after the network trains) it is (1, 0, 0): the network trains on
        # its own loss, not on what the n-gram regression leaves over, because on the reviews the
        # regression was fitted to it is nearly always right and would leave nothing to learn.
        if self.ngrams is not None and self.ngrams.binary:
            self.register_buffer("blend", torch.tensor([1.0, 0.0, 0.0]))
        else:
            self.blend = None
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

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step hidden states and the summary vector.

        Returns ``(states (batch, time, state), summary (batch, summary))``. With
        ``use_lengths`` the padding at the end of each row is never read (see
        :func:`run_within_lengths`) and the states there are zero.
        """
        embedded = self.embedding_dropout(self.embedding(ids))  # (batch, time, embedding)
        batch, time = ids.shape
        if self.config.use_lengths:
            assert lengths is not None, "use_lengths needs the true lengths"
            lengths = lengths.clamp(min=1).to(ids.device)
            mask = torch.arange(time, device=ids.device)[None, :] < lengths[:, None]  # (batch, time)
            states, final = run_within_lengths(self.rnn, embedded, lengths, self.config.dropout if self.training else 0.0)
            states = states * mask.unsqueeze(-1)
        else:
            states, final = self.rnn(embedded)  # (batch, time, state)
            mask = None
        return states, self._summarise(states, final, mask)

    def _summarise(self, states, final, mask) -> torch.Tensor:
        pooling = self.config.pooling
        if pooling == "last":
            hidden = final[0] if isinstance(final, tuple) else final  # (layers * directions, batch, hidden)
            directions = 2 if self.config.bidirectional else 1
            return torch.cat(list(hidden[-directions:]), dim=-1)  # (batch, state)
        if mask is None:
            mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        mask3 = mask.unsqueeze(-1)  # (batch, time, 1)
        if pooling in POOLED_SUMMARIES:
            maximum = states.masked_fill(~mask3, -math.inf).amax(dim=1) if pooling != "mean" else None
            mean = (states * mask3).sum(dim=1) / mask3.sum(dim=1).clamp(min=1) if pooling != "max" else None
            return join_pools(pooling, maximum, mean)
        scores = self.attention(torch.tanh(states)).squeeze(-1).masked_fill(~mask, -math.inf)  # (batch, time)
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)
        return (weights * states).sum(dim=1)

    def _use_compiled(self, ids: torch.Tensor) -> bool:
        """Inference on the CPU, in batches big enough to pay for leaving PyTorch."""
        return (
            self.compiled_inference and not self.training and not torch.is_grad_enabled()
            and ids.device.type == "cpu" and ids.shape[0] >= 64 and self.embedding.weight.dtype == torch.float32
            and _numba_available()
        )

    def head_logits(self, summary: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch,)`` from summary vectors ``(batch, summary)``."""
        return self.head(self.dropout(summary)).squeeze(-1)

    def part_logits(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Each part's own logit ``(batch,)``: ``recurrent``, and ``ngrams`` when the branch is on."""
        _, summary = self.encode(ids, lengths)
        parts = {"recurrent": self.head_logits(summary)}
        if self.ngrams is not None:
            parts["ngrams"] = self.ngrams(ids)
        return parts

    def combine(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's logit from :meth:`part_logits`: their sum, or the fitted blend of a stacked model."""
        if self.blend is not None:
            return self.blend[0] * parts["recurrent"] + self.blend[1] * parts["ngrams"] + self.blend[2]
        return sum(parts.values())

    def forward(
        self, ids: torch.Tensor, lengths: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits (batch,), mean binary cross-entropy or None)`` for id rows ``(batch, time)``."""
        if self._use_compiled(ids):
            from rnnsent.model.compiled import compiled_logits

            logits = compiled_logits(self, ids)
        else:
            logits = self.combine(self.part_logits(ids, lengths))
        loss = None if labels is None else F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return logits, loss


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True
