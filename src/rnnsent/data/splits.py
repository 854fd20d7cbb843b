"""Held-out splits: fixed-seed, stratified, independent of the run's seed."""

from __future__ import annotations

import numpy as np

from rnnsent.data.corpus import EncodedSplit

HELD_OUT_SEED = 20_110_619  # fixed: held-out splits never depend on the run's seed


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(kept, held_out)``: ``fraction`` of each label held out, chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for value in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == value))
        count = int(round(len(index) * fraction))
        held.append(index[:count])
        kept.append(index[count:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def limit_split(split: EncodedSplit, limit: int) -> EncodedSplit:
    """A fixed random subset of ``limit`` reviews (stratified, independent of the run's seed)."""
    if not limit or limit >= len(split):
        return split
    _, chosen = stratified_split(split.labels, limit / len(split), HELD_OUT_SEED)
    return split.subset(chosen)
