"""Scoring a model on encoded data and the classification metrics."""

from __future__ import annotations

import numpy as np
import torch

from rnnsent.metrics import classification_metrics
from rnnsent.model.build import Classifier, ngram_branch
from rnnsent.model.scoring import predict_logits, predict_part_logits


def evaluate_model(
    model: Classifier, ids: np.ndarray | torch.Tensor, lengths: np.ndarray | torch.Tensor | None, labels: np.ndarray
) -> dict:
    """:func:`classification_metrics` of the model, plus each part's accuracy when it has an n-gram branch.

    ``lengths`` are the rows' true lengths, read only by a model whose config says so (they
    may be None for a model that does not).
    """
    if ngram_branch(model) is None:
        return classification_metrics(labels, predict_logits(model, ids, lengths))
    parts = predict_part_logits(model, ids, lengths)
    metrics = classification_metrics(labels, parts.pop("model"))
    metrics["part_accuracy"] = {name: float(np.mean((logits > 0) == (np.asarray(labels) > 0.5))) for name, logits in parts.items()}
    return metrics
