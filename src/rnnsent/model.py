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
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnsent.config import ModelConfig


class KerasSimpleRNN(nn.RNN):
    """``nn.RNN`` with one bias vector per layer and direction, like Keras' SimpleRNN.

    PyTorch's RNN adds two biases (input-to-hidden and hidden-to-hidden); their sum is one
    free vector, so Keras keeps one. Here the hidden-to-hidden bias is a fixed zero buffer:
    the computation, cuDNN and packed sequences stay PyTorch's, and the trainable parameter
    count is Keras' (``input * hidden + hidden * hidden + hidden``).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in [name for name in self._flat_weights_names if name.startswith("bias_hh")]:
            zero = torch.zeros_like(getattr(self, name)).detach()
            delattr(self, name)
            self.register_buffer(name, zero, persistent=False)
        self._init_flat_weights()


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
            and config.pooling == "last" and not config.use_lengths
        )
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
        ``use_lengths`` the padding at the end of each row is never read (packed sequences).
        """
        embedded = self.embedding_dropout(self.embedding(ids))  # (batch, time, embedding)
        batch, time = ids.shape
        if self.config.use_lengths:
            assert lengths is not None, "use_lengths needs the true lengths"
            lengths = lengths.clamp(min=1)
            packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_states, final = self.rnn(packed)
            states, _ = pad_packed_sequence(packed_states, batch_first=True, total_length=time)
            mask = torch.arange(time, device=ids.device)[None, :] < lengths[:, None].to(ids.device)
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
        if pooling in ("max", "maxmean"):
            maximum = states.masked_fill(~mask3, -math.inf).amax(dim=1)
        if pooling in ("mean", "maxmean"):
            mean = (states * mask3).sum(dim=1) / mask3.sum(dim=1).clamp(min=1)
        if pooling == "max":
            return maximum
        if pooling == "mean":
            return mean
        if pooling == "maxmean":
            return torch.cat([maximum, mean], dim=-1)
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

    def forward(
        self, ids: torch.Tensor, lengths: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits (batch,), mean binary cross-entropy or None)`` for id rows ``(batch, time)``."""
        if self._use_compiled(ids):
            from rnnsent.fused import compiled_logits

            logits = compiled_logits(self, ids)
        else:
            _, summary = self.encode(ids, lengths)
            logits = self.head_logits(summary)
        loss = None if labels is None else F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return logits, loss


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def summary_table(model: RecurrentClassifier, maxlen: int) -> str:
    """A Keras-style table: layer, output shape, parameter count, and the total."""
    config = model.config
    directions = 2 if config.bidirectional else 1
    recurrent_out = (None, maxlen, config.hidden_size * directions) if config.pooling != "last" else (None, config.hidden_size * directions)
    rows = [
        ("embedding (Embedding)", (None, maxlen, config.embedding_dim), model.embedding.weight.numel()),
        (f"rnn ({type(model.rnn).__name__}, {config.cell})", recurrent_out, sum(p.numel() for p in model.rnn.parameters())),
    ]
    if config.pooling != "last":
        pool_params = sum(p.numel() for p in model.attention.parameters()) if config.pooling == "attention" else 0
        rows.append((f"pooling ({config.pooling})", (None, model.head.in_features), pool_params))
    rows.append(("head (Dense, sigmoid)", (None, 1), sum(p.numel() for p in model.head.parameters())))
    width = 34
    lines = [f"{'Layer (type)':<{width}}{'Output Shape':<22}{'Param #':>12}", "=" * (width + 34)]
    for name, shape, count in rows:
        lines.append(f"{name:<{width}}{str(shape):<22}{count:>12,}")
    total = count_parameters(model)
    lines += ["=" * (width + 34), f"Total params: {total:,}", f"Trainable params: {total:,}", "Non-trainable params: 0"]
    return "\n".join(lines)
