"""One split as padded tensors, and the training, validation and test splits of a run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rnnsent.config import RunConfig
from rnnsent.data.corpus import EncodedCorpus, EncodedSplit
from rnnsent.data.splits import limit_split, training_splits


@dataclass
class Tensors:
    """One split, padded: ids ``(n, maxlen)`` int64, lengths ``(n,)`` int64, labels ``(n,)`` float32."""

    ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_split(cls, split: EncodedSplit, config: RunConfig) -> "Tensors":
        ids, lengths = split.padded(config.text)
        return cls(torch.from_numpy(ids), torch.from_numpy(lengths), torch.from_numpy(split.labels.astype(np.float32)))

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TrainingData:
    train: Tensors
    validation: Tensors | None
    test: Tensors | None


def prepare_data(corpus: EncodedCorpus, config: RunConfig, limit: int = 0) -> TrainingData:
    """Limit to ``limit`` reviews (0: all), hold out the validation split (fixed seed, stratified) and pad."""
    train_split, held_out = training_splits(corpus.train, config.train.validation_split, limit)
    validation = Tensors.from_split(held_out, config) if held_out is not None else None
    test = Tensors.from_split(limit_split(corpus.test, limit), config) if config.train.report_test else None
    return TrainingData(Tensors.from_split(train_split, config), validation, test)
