"""How a sequence of hidden states becomes one summary vector."""

from __future__ import annotations

import torch

POOLED_SUMMARIES = ("max", "mean", "maxmean")


def join_pools(pooling: str, maximum: torch.Tensor | None, mean: torch.Tensor | None) -> torch.Tensor:
    """The summary a ``max``, ``mean`` or ``maxmean`` pooling makes of the max and mean pools.

    Pools the pooling does not use may be None. Shared by the model and the explanations'
    prefix summaries, so that both lay a summary vector out the same way.
    """
    if pooling == "max":
        return maximum
    if pooling == "mean":
        return mean
    assert pooling == "maxmean", pooling
    return torch.cat([maximum, mean], dim=-1)
