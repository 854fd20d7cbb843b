"""Classification metrics from labels and logits."""

from __future__ import annotations

import numpy as np


def classification_metrics(labels: np.ndarray, logits: np.ndarray) -> dict:
    """Loss, accuracy, precision, recall, F1, ROC-AUC and the confusion matrix.

    ``confusion_matrix`` is ``[[true negatives, false positives], [false negatives, true positives]]``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    logits = np.asarray(logits, dtype=np.float64)
    # Binary cross-entropy from logits, computed stably: softplus(z) - y*z.
    loss = float(np.mean(np.logaddexp(0.0, logits) - labels * logits)) if len(labels) else float("nan")
    predicted = (logits > 0).astype(np.int64)
    tp = int(np.sum((predicted == 1) & (labels == 1)))
    tn = int(np.sum((predicted == 0) & (labels == 0)))
    fp = int(np.sum((predicted == 1) & (labels == 0)))
    fn = int(np.sum((predicted == 0) & (labels == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "loss": loss,
        "accuracy": (tp + tn) / len(labels) if len(labels) else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc(labels, logits),
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "count": int(len(labels)),
    }


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the Mann-Whitney statistic, with tied scores sharing ranks."""
    positives = int(np.sum(labels == 1))
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average rank (1-based) over each run of equal scores.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    average = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(average, ends - starts)
    positive_rank_sum = ranks[labels == 1].sum()
    return float((positive_rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def format_metrics(metrics: dict) -> str:
    """A short human-readable report."""
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    lines = [
        f"Test loss: {metrics['loss']:.4f}",
        f"Test accuracy: {metrics['accuracy']:.4f}",
        f"Precision: {metrics['precision']:.4f}  Recall: {metrics['recall']:.4f}  F1: {metrics['f1']:.4f}  ROC-AUC: {metrics['roc_auc']:.4f}",
        f"Confusion matrix (rows: true neg/pos, columns: predicted neg/pos): [[{tn}, {fp}], [{fn}, {tp}]]",
    ]
    if "part_accuracy" in metrics:
        parts = ", ".join(f"{name} {value:.4f}" for name, value in metrics["part_accuracy"].items())
        lines.append(f"Accuracy of each part alone: {parts}")
    return "\n".join(lines)


class Metrics(dict):
    """Test metrics as a plain mapping (``metrics["accuracy"]``) that prints as a short report."""

    def __str__(self) -> str:
        return format_metrics(self)
