"""One split as padded tensors, and the training, validation and test splits of a run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rnnsent.config import RunConfig
from rnnsent.data.corpus import EncodedCorpus, EncodedSplit
from rnnsent.data.splits import limit_split, training_splits
from rnnsent.errors import DataError
from rnnsent.labels import BINARY_SENTIMENT, LabelSpace


@dataclass
class Tensors:
    """One split, padded: ids ``(n, maxlen)`` int64, lengths ``(n,)`` int64, and labels: ``(n,)``
    float32 0/1 (binary), ``(n,)`` int64 class indices (multiclass) or ``(n, K)`` float32 (multilabel)."""

    ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_split(cls, split: EncodedSplit, config: RunConfig, task: str = "binary") -> "Tensors":
        ids, lengths = split.padded(config.text)
        labels = split.labels.astype(np.int64 if task == "multiclass" else np.float32)
        return cls(torch.from_numpy(ids), torch.from_numpy(lengths), torch.from_numpy(labels))

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TrainingData:
    """The splits a run trains on, holds out for selection and reports, and their label space."""

    train: Tensors
    validation: Tensors | None
    test: Tensors | None
    labels: LabelSpace = BINARY_SENTIMENT
    unlabelled: EncodedSplit | None = None  # texts for unlabelled batches, unpadded (see rnnsent.training.unlabelled)


def prepare_data(corpus: EncodedCorpus, config: RunConfig, limit: int = 0) -> TrainingData:
    """Limit to ``limit`` reviews (0: all), hold out the validation split (fixed seed, stratified) and pad."""
    train_split, held_out = training_splits(corpus.train, config.train.validation_split, limit,
                                            config.train.validation_by)
    test_split = limit_split(corpus.test, limit)
    if not len(train_split) or not len(test_split):
        which = "training" if not len(train_split) else "test"
        cause = f"--limit {limit} keeps" if limit else "the data has"
        raise DataError(f"{cause} no {which} reviews ({len(corpus.train)} training, {len(corpus.test)} test in all); "
                        f"{'use a larger --limit' if limit else 'add reviews'}")
    if held_out is not None and not len(held_out):
        # Early stopping, the blend and calibration would read an empty split (a flat model, NaN scores).
        fraction = config.train.validation_split
        raise DataError(f"too few texts for a validation split: {len(train_split)} training texts leave none at "
                        f"--validation-split {fraction:g} (a share of each label's texts is held out); give "
                        f"more texts of each label, or a larger --validation-split")
    task = corpus.labels.task
    validation = Tensors.from_split(held_out, config, task) if held_out is not None else None
    test = Tensors.from_split(test_split, config, task) if config.train.report_test else None
    return TrainingData(Tensors.from_split(train_split, config, task), validation, test, corpus.labels)
