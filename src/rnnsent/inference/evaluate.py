"""Scoring a model on encoded data and the classification metrics."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from rnnsent.labels import BINARY_SENTIMENT, LabelSpace
from rnnsent.metrics import accuracy, task_metrics
from rnnsent.model.build import Classifier, ngram_branch
from rnnsent.model.scoring import predict_logits, predict_part_logits


def evaluate_model(
    model: Classifier, ids: np.ndarray | torch.Tensor, lengths: np.ndarray | torch.Tensor | None, labels: np.ndarray,
    label_space: LabelSpace = BINARY_SENTIMENT, thresholds: Sequence[float] | None = None, temperature: float = 1.0,
) -> dict:
    """:func:`~rnnsent.metrics.task_metrics` of the model on encoded rows, plus each part's
    accuracy when it has an n-gram branch.

    ``lengths`` are the rows' true lengths, read only by a model whose config says so (they
    may be None for a model that does not).
    """
    if ngram_branch(model) is None:
        return task_metrics(label_space, labels, predict_logits(model, ids, lengths) / temperature, thresholds)
    parts = predict_part_logits(model, ids, lengths)
    metrics = task_metrics(label_space, labels, parts.pop("model") / temperature, thresholds)
    metrics["part_accuracy"] = {name: accuracy(labels, logits, label_space.task) for name, logits in parts.items()}
    return metrics
