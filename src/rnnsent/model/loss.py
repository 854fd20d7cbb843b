"""The loss of each task, from logits and targets.

- binary: logits ``(batch,)``, targets ``(batch,)`` 0/1; binary cross-entropy.
- multiclass: logits ``(batch, K)``, targets ``(batch,)`` class indices; softmax cross-entropy.
- multilabel: logits ``(batch, K)``, targets ``(batch, K)`` 0/1; binary cross-entropy per label.

``weight`` (optional) is one number per class (binary: for class 0 and class 1; multilabel: the
weight of a label's positive examples) that balances rare classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def classification_loss(logits: torch.Tensor, labels: torch.Tensor | None, task: str = "binary",
                        weight: torch.Tensor | None = None) -> torch.Tensor | None:
    """The mean loss of ``logits`` against ``labels`` for ``task``; None without labels."""
    if labels is None:
        return None
    if task == "multiclass":
        return F.cross_entropy(logits, labels.long(), weight=weight)
    targets = labels.to(logits.dtype)
    if weight is None:
        return F.binary_cross_entropy_with_logits(logits, targets)
    if task == "binary":
        # Each example weighs what its class weighs; dividing by the weights' sum keeps the
        # loss a weighted mean, as cross_entropy does with class weights.
        example_weight = weight[0] + (weight[1] - weight[0]) * targets  # (batch,)
        losses = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        return (losses * example_weight).sum() / example_weight.sum()
    return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)


def predicted_correct(logits: torch.Tensor, labels: torch.Tensor, task: str = "binary") -> torch.Tensor:
    """How many rows are predicted exactly right (multilabel: every label right), as a 0-d tensor."""
    if task == "multiclass":
        return (logits.argmax(dim=1) == labels.long()).sum()
    right = (logits > 0) == (labels > 0.5)
    return right.all(dim=1).sum() if task == "multilabel" else right.sum()
