"""The in-memory shapes of a dataset: labelled texts, a corpus of splits, and their encoded forms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnsent.config import TextConfig
from rnnsent.labels import BINARY_SENTIMENT, LabelSpace, stratum
from rnnsent.text.encoder import pad_sequences
from rnnsent.text.vocabulary import Vocabulary


@dataclass
class LabelledTexts:
    """Raw texts and their raw label values (strings, numbers, or lists of them for multilabel).

    ``places[i]`` says where text ``i`` came from (``file:line``, or a folder), for messages.
    """

    texts: list[str]
    labels: list[Any]
    places: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # e.g. each review's film, where the source tells it

    def place(self, index: int) -> str:
        return self.places[index] if self.places else f"example {index + 1}"

    def strata(self) -> np.ndarray:
        """One key per text for stratified splits: its label, or its set of labels."""
        return np.array([stratum(value) for value in self.labels])

    def subset(self, indices: np.ndarray) -> "LabelledTexts":
        return LabelledTexts([self.texts[i] for i in indices], [self.labels[i] for i in indices],
                             [self.places[i] for i in indices] if self.places else [],
                             [self.groups[i] for i in indices] if self.groups else [])

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Corpus:
    """Raw texts of a source: labelled train and test splits, and unlabelled reviews."""

    train: LabelledTexts
    test: LabelledTexts
    unlabelled: list[str] = field(default_factory=list)


@dataclass
class EncodedSplit:
    """Whole reviews as ids, stored flat: review ``i`` is ``flat[offsets[i]:offsets[i+1]]``."""

    flat: np.ndarray  # (total_tokens,) int32
    offsets: np.ndarray  # (n + 1,) int64
    labels: np.ndarray  # targets: (n,) int64 class indices (0/1 when binary), or (n, K) float32 multi-hot
    groups: np.ndarray | None = None  # (n,) int64: reviews of one group (film) share a number

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def padded(self, config: TextConfig) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (n, maxlen) int64, lengths (n,) int64)`` with the config's padding and truncation."""
        return pad_sequences(self.flat, self.offsets, config.maxlen, config.padding, config.truncating)

    def subset(self, indices: np.ndarray) -> "EncodedSplit":
        """The reviews at ``indices``, in that order, stored flat again."""
        starts, ends = self.offsets[indices], self.offsets[indices + 1]
        lengths = ends - starts
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        positions = np.repeat(starts - offsets[:-1], lengths) + np.arange(int(lengths.sum()))
        groups = None if self.groups is None else self.groups[indices]
        return EncodedSplit(self.flat[positions], offsets, self.labels[indices], groups)


@dataclass
class EncodedCorpus:
    """A source encoded with the vocabulary and the label space built on its training split."""

    vocabulary: Vocabulary
    train: EncodedSplit
    test: EncodedSplit
    labels: LabelSpace = BINARY_SENTIMENT
