"""How a sequence of hidden states becomes one summary vector, for whole rows and for every prefix.

Each pooling is a small module with two methods:

* ``forward(states, final, mask)`` summarises rows: ``states`` is ``(batch, time, state)``,
  ``final`` the recurrent layer's final state (``(layers * directions, batch, hidden)``, or a
  pair of them for an LSTM), ``mask`` a ``(batch, time)`` bool tensor of the steps to read
  (None: all of them). It returns ``(batch, summary_size)``.
* ``prefixes(states)`` summarises every prefix ``states[:t + 1]`` of one row's ``(time,
  state)`` states of a causal (unidirectional) reader at once: ``(time, summary_size)``. The
  explanations' trajectories use it; it equals ``forward`` applied to each prefix.

:func:`build_pooling` picks the module for a config's ``pooling`` name.
"""

from __future__ import annotations

import math

import torch
from torch import nn

POOLED_SUMMARIES = ("max", "mean", "maxmean")


class LastState(nn.Module):
    """The final state of the last layer, both directions side by side: ``(batch, directions * hidden)``."""

    def __init__(self, state_size: int, directions: int) -> None:
        super().__init__()
        self.directions = directions
        self.summary_size = state_size

    def forward(self, states: torch.Tensor, final, mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = final[0] if isinstance(final, tuple) else final  # (layers * directions, batch, hidden)
        return torch.cat(list(hidden[-self.directions:]), dim=-1)  # (batch, state)

    def prefixes(self, states: torch.Tensor) -> torch.Tensor:
        # A causal reader's output at step t is its state after the prefix.
        return states


class StatisticPooling(nn.Module):
    """The maximum (``max``), the mean (``mean``) or both side by side (``maxmean``) over the read steps."""

    def __init__(self, state_size: int, kind: str) -> None:
        super().__init__()
        assert kind in POOLED_SUMMARIES, kind
        self.kind = kind
        self.summary_size = state_size * (2 if kind == "maxmean" else 1)

    def forward(self, states: torch.Tensor, final=None, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        mask3 = mask.unsqueeze(-1)  # (batch, time, 1)
        maximum = states.masked_fill(~mask3, -math.inf).amax(dim=1) if self.kind != "mean" else None
        mean = (states * mask3).sum(dim=1) / mask3.sum(dim=1).clamp(min=1) if self.kind != "max" else None
        return self._join(maximum, mean)  # (batch, summary)

    def prefixes(self, states: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(1, states.shape[0] + 1, device=states.device, dtype=states.dtype).unsqueeze(-1)  # (time, 1)
        maximum = torch.cummax(states, dim=0).values if self.kind != "mean" else None
        mean = torch.cumsum(states, dim=0) / steps if self.kind != "max" else None
        return self._join(maximum, mean)  # (time, summary)

    def _join(self, maximum: torch.Tensor | None, mean: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "max":
            return maximum
        if self.kind == "mean":
            return mean
        return torch.cat([maximum, mean], dim=-1)


class AttentionPooling(nn.Module):
    """A softmax-weighted mean of the states, scored by ``score(tanh(state))`` with a learned vector."""

    def __init__(self, state_size: int) -> None:
        super().__init__()
        self.score = nn.Linear(state_size, 1, bias=False)
        self.summary_size = state_size

    def forward(self, states: torch.Tensor, final=None, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        scores = self.score(torch.tanh(states)).squeeze(-1).masked_fill(~mask, -math.inf)  # (batch, time)
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)  # (batch, time, 1)
        return (weights * states).sum(dim=1)  # (batch, state)

    def prefixes(self, states: torch.Tensor) -> torch.Tensor:
        # The softmax over each prefix as a ratio of cumulative sums. Scores are bounded by the
        # score vector's norm (tanh inputs), so float64 after subtracting the largest score
        # cannot underflow in practice.
        scores = self.score(torch.tanh(states)).squeeze(-1).double()  # (time,)
        weights = torch.exp(scores - scores.max()).unsqueeze(-1)  # (time, 1)
        numerator = torch.cumsum(weights * states.double(), dim=0)  # (time, state)
        denominator = torch.cumsum(weights, dim=0)  # (time, 1)
        return (numerator / denominator).to(states.dtype)


def build_pooling(pooling: str, state_size: int, directions: int) -> nn.Module:
    """The pooling module named ``pooling`` (``last``, ``max``, ``mean``, ``maxmean``, ``attention``)."""
    if pooling == "last":
        return LastState(state_size, directions)
    if pooling == "attention":
        return AttentionPooling(state_size)
    return StatisticPooling(state_size, pooling)
