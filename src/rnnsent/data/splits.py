"""Held-out splits: fixed-seed, stratified, independent of the run's seed.

Every subset the package takes of a dataset goes through :func:`held_out_split`: the test
reviews a source without a test split keeps back, the ``--limit`` subset, and the validation
reviews a run holds out. Word vectors are built from exactly the reviews a run trains on
because :func:`training_splits` is the one place that limits and holds out validation.
"""

from __future__ import annotations

import numpy as np

from rnnsent.data.corpus import EncodedSplit
from rnnsent.errors import DataError

HELD_OUT_SEED = 20_110_619  # fixed: held-out splits never depend on the run's seed


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(kept, held_out)``, each sorted: ``fraction`` of each label held out, chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        # Multi-hot rows (multilabel): each distinct set of labels is one stratum.
        labels = np.unique(labels, axis=0, return_inverse=True)[1].reshape(-1)
    kept, held = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for value in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == value))
        count = int(round(len(index) * fraction))
        held.append(index[:count])
        kept.append(index[count:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def held_out_split(labels: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(kept, held_out)`` of a fixed, stratified ``fraction`` held out (seed :data:`HELD_OUT_SEED`)."""
    return stratified_split(labels, fraction, HELD_OUT_SEED)


def limit_indices(labels: np.ndarray, limit: int) -> np.ndarray:
    """Sorted indices of a fixed, stratified subset of ``limit`` examples; all of them when ``limit`` is 0 or too large."""
    if not limit or limit >= len(labels):
        return np.arange(len(labels))
    _, chosen = held_out_split(labels, limit / len(labels))
    return chosen


def limit_split(split: EncodedSplit, limit: int) -> EncodedSplit:
    """The :func:`limit_indices` subset of a split (the split itself when nothing is cut)."""
    if not limit or limit >= len(split):
        return split
    return split.subset(limit_indices(split.labels, limit))


def grouped_held_out_split(groups: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(kept, held_out)``, each sorted, holding out whole groups (films) until about
    ``fraction`` of the rows are held out; the groups are drawn in a fixed order (seed
    :data:`HELD_OUT_SEED`), so no group has rows on both sides."""
    groups = np.asarray(groups)
    unique, counts = np.unique(groups, return_counts=True)
    order = np.random.default_rng(HELD_OUT_SEED).permutation(len(unique))
    taken = np.cumsum(counts[order]) <= int(round(len(groups) * fraction))
    # At least one film, even when it alone is more than the fraction: an empty validation
    # split would leave every choice made on it undefined.
    taken[0] = taken[0] or fraction > 0
    held_groups = unique[order[taken]]
    held = np.isin(groups, held_groups)
    if held.all():
        raise DataError(f"--validation-by movie: all {len(groups)} training reviews are of one film, so none would "
                        "be left to train on; use --validation-by random")
    return np.flatnonzero(~held), np.flatnonzero(held)


def resolve_validation_by(by: str, split: EncodedSplit) -> str:
    """What ``by="auto"`` stands for with ``split``: ``movie`` when it says which film each review
    is of (aclImdb), else ``random``. Any other value is itself."""
    if by != "auto":
        return by
    return "movie" if split.groups is not None else "random"


def training_splits(split: EncodedSplit, validation_fraction: float, limit: int = 0,
                    by: str = "random") -> tuple[EncodedSplit, EncodedSplit | None]:
    """``(train, validation)`` of a run: the ``limit`` subset, then ``validation_fraction`` of it held out.

    ``by="random"`` holds out a stratified random fraction of the reviews; ``by="movie"``
    whole films, so that reviews of one film never fall on both sides (aclImdb's ``urls_*.txt``
    say which film each review is of); ``by="auto"`` the second where the split knows the films,
    else the first. ``validation`` is None when the fraction is 0. Training
    and word-vector pretraining both take their reviews from here, so vectors never see a
    validation review.
    """
    limited = limit_split(split, limit)
    if not validation_fraction:
        return limited, None
    if resolve_validation_by(by, limited) == "movie":
        if limited.groups is None:
            raise DataError("--validation-by movie needs the film of each review, which only aclImdb "
                            "(its urls_*.txt) tells; use --validation-by random")
        kept, held = grouped_held_out_split(limited.groups, validation_fraction)
    else:
        kept, held = held_out_split(limited.labels, validation_fraction)
    return limited.subset(kept), limited.subset(held)
