"""Classification metrics from labels and logits."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from rnnsent.labels import LabelSpace


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


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of ``(n, K)`` logits, computed stably in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE: the mean gap between confidence and accuracy over ``bins`` equal-width confidence
    bins, weighted by how many predictions fall in each (Guo et al., 2017)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if not len(confidence):
        return float("nan")
    # Bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 goes to bin 0.
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            total += chosen.sum() * abs(confidence[chosen].mean() - correct[chosen].mean())
    return float(total / len(confidence))


def per_class_scores(confusion: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of each class from a ``(K, K)`` confusion matrix (rows: true)."""
    scores = {}
    for k, name in enumerate(names):
        tp = float(confusion[k, k])
        predicted, actual = float(confusion[:, k].sum()), float(confusion[k, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int(actual)}
    return scores


def _averaged_f1(scores: dict[str, dict[str, float]], confusion: np.ndarray | None = None) -> tuple[float, float]:
    """Macro-F1 (unweighted mean over classes) and weighted F1 (weighted by support).

    With the ``(K, K)`` ``confusion`` of a single-label model, only the classes that are in the
    data or predicted count, as scikit-learn's default: data without some of a model's classes
    (evaluate on another file) do not score those classes' F1 as 0."""
    present = np.ones(len(scores), dtype=bool) if confusion is None else (confusion.sum(0) + confusion.sum(1)) > 0
    f1 = np.array([s["f1"] for s in scores.values()])[present]
    support = np.array([s["support"] for s in scores.values()], dtype=np.float64)[present]
    macro = float(f1.mean()) if len(f1) else float("nan")
    weighted = float((f1 * support).sum() / support.sum()) if support.sum() else float("nan")
    return macro, weighted


def multiclass_metrics(labels: np.ndarray, logits: np.ndarray, names: Sequence[str],
                       ordered_values: Sequence[float] | None = None) -> dict:
    """Metrics of a K-class model from true class indices ``(n,)`` and logits ``(n, K)``.

    ``ordered_values`` (the numeric value of each class, for star ratings) adds the mean
    absolute error in those values (``mae``) and in class steps (``mae_steps``).
    """
    labels = np.asarray(labels, dtype=np.int64)
    log_probabilities = log_softmax(logits) if len(labels) else np.zeros((0, len(names)))
    predicted = log_probabilities.argmax(axis=1) if len(labels) else np.zeros(0, dtype=np.int64)
    k = len(names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    scores = per_class_scores(confusion, names)
    macro, weighted = _averaged_f1(scores, confusion)
    count = len(labels)
    confidence = np.exp(log_probabilities.max(axis=1)) if count else np.zeros(0)
    metrics = {
        "loss": float(-log_probabilities[np.arange(count), labels].mean()) if count else float("nan"),
        "accuracy": float((predicted == labels).mean()) if count else float("nan"),
        "macro_f1": macro,
        "weighted_f1": weighted,
        "ece": expected_calibration_error(confidence, predicted == labels),
        "per_class": scores,
        "labels": list(names),
        "confusion_matrix": confusion.tolist(),
        "count": int(count),
    }
    metrics["log_loss"] = metrics["loss"]
    if ordered_values is not None:
        values = np.asarray(ordered_values, dtype=np.float64)
        metrics["mae"] = float(np.abs(values[predicted] - values[labels]).mean()) if count else float("nan")
        metrics["mae_steps"] = float(np.abs(predicted - labels).mean()) if count else float("nan")
    return metrics


def multilabel_metrics(targets: np.ndarray, logits: np.ndarray, names: Sequence[str],
                       thresholds: Sequence[float] | None = None) -> dict:
    """Metrics of a multi-label model from multi-hot targets ``(n, K)`` and logits ``(n, K)``.

    A label is predicted when its probability exceeds its threshold (default 0.5).
    """
    targets = np.asarray(targets, dtype=np.float64) > 0.5
    logits = np.asarray(logits, dtype=np.float64)
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    cut = np.full(len(names), 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    predicted = probabilities > cut[None, :]
    count = len(targets)
    scores = {}
    for k, name in enumerate(names):
        tp = float((predicted[:, k] & targets[:, k]).sum())
        fp = float((predicted[:, k] & ~targets[:, k]).sum())
        fn = float((~predicted[:, k] & targets[:, k]).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int(targets[:, k].sum())}
    tp = float((predicted & targets).sum())
    fp = float((predicted & ~targets).sum())
    fn = float((~predicted & targets).sum())
    micro = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    macro, weighted = _averaged_f1(scores)
    loss = np.logaddexp(0.0, logits) - targets * logits  # (n, K) binary cross-entropy per label
    return {
        "loss": float(loss.mean()) if count else float("nan"),
        "log_loss": float(loss.mean()) if count else float("nan"),
        "micro_f1": float(micro),
        "macro_f1": macro,
        "weighted_f1": weighted,
        "subset_accuracy": float((predicted == targets).all(axis=1).mean()) if count else float("nan"),
        "hamming_loss": float((predicted != targets).mean()) if count else float("nan"),
        "accuracy": float((predicted == targets).all(axis=1).mean()) if count else float("nan"),
        "ece": expected_calibration_error(np.maximum(probabilities, 1 - probabilities).ravel(),
                                          (predicted == targets).ravel()),
        "per_class": scores,
        "labels": list(names),
        "thresholds": [float(value) for value in cut],
        "count": int(count),
    }


# The range temperature scaling searches. A fit at the lowest temperature means the loss only
# fell as the logits grew: the texts it was fitted on are separated perfectly, and no finite
# temperature is best (see :func:`separated`).
TEMPERATURE_RANGE = (1e-3, 1e3)


def separated(temperature: float) -> bool:
    """Whether a fitted temperature is the search's lowest: no temperature was found, only the edge."""
    return temperature < 2 * TEMPERATURE_RANGE[0]


def fit_temperature(logits: np.ndarray, labels: np.ndarray, task: str, iterations: int = 100) -> float:
    """The temperature T > 0 that minimises the log loss of ``logits / T`` (temperature scaling,
    Guo et al., 2017), by golden-section search on the inverse temperature, where the loss is convex."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)

    def loss(beta: float) -> float:
        scaled = logits * beta
        if task == "multiclass":
            return float(-log_softmax(scaled)[np.arange(len(labels)), labels.astype(np.int64)].mean())
        return float((np.logaddexp(0.0, scaled) - labels * scaled).mean())

    if not len(labels):
        return 1.0
    low, high = TEMPERATURE_RANGE
    ratio = (np.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(iterations):
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return float(1.0 / ((low + high) / 2))


def choose_thresholds(targets: np.ndarray, probabilities: np.ndarray) -> list[float]:
    """Per-label decision thresholds that maximise each label's F1 on (validation) data.

    Candidates are the midpoints between consecutive distinct probabilities, and 0.5; ties go
    to the candidate closest to 0.5, so a label the data cannot tell apart keeps 0.5.
    """
    targets = np.asarray(targets) > 0.5
    probabilities = np.asarray(probabilities, dtype=np.float64)
    chosen = []
    for k in range(targets.shape[1]):
        column, truth = probabilities[:, k], targets[:, k]
        distinct = np.unique(column)
        candidates = np.concatenate([[0.5], (distinct[1:] + distinct[:-1]) / 2, distinct[:1] - 1e-6])
        best, best_f1 = 0.5, -1.0
        for threshold in sorted(candidates, key=lambda value: abs(value - 0.5)):
            predicted = column > threshold
            tp = float((predicted & truth).sum())
            denominator = float(predicted.sum() + truth.sum())
            f1 = 2 * tp / denominator if denominator else 0.0
            if f1 > best_f1 + 1e-12:
                best, best_f1 = float(threshold), f1
        chosen.append(best)
    return chosen


# ----------------------------------------------------------------------------- any task


def task_metrics(labels: LabelSpace, targets: np.ndarray, logits: np.ndarray,
                 thresholds: Sequence[float] | None = None) -> dict:
    """The metrics of a model on ``targets`` for its label space: for binary models the keys of
    :func:`classification_metrics` plus the per-class ones; see :func:`multiclass_metrics` and
    :func:`multilabel_metrics` for the others. ``task``, ``labels`` and ``count`` are always there."""
    if labels.task == "multilabel":
        metrics = multilabel_metrics(targets, logits, labels.names, thresholds)
    elif labels.task == "multiclass":
        ordered = [float(name) for name in labels.names] if labels.ordered else None
        metrics = multiclass_metrics(targets, logits, labels.names, ordered)
    else:
        metrics = classification_metrics(targets, logits)
        (tn, fp), (fn, tp) = metrics["confusion_matrix"]
        confusion = np.array([[tn, fp], [fn, tp]])
        scores = per_class_scores(confusion, labels.names)
        macro, weighted = _averaged_f1(scores, confusion)
        # The logistic function as 0.5 (1 + tanh(z / 2)): the same value, without exp(-z)
        # overflowing for very negative logits.
        probability = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype=np.float64)))
        predicted = probability > 0.5
        metrics.update({"macro_f1": macro, "weighted_f1": weighted, "log_loss": metrics["loss"],
                        "ece": expected_calibration_error(np.where(predicted, probability, 1 - probability),
                                                          predicted == (np.asarray(targets) > 0.5)),
                        "per_class": scores, "labels": list(labels.names)})
    metrics["task"] = labels.task
    return metrics


def loss_and_accuracy(targets: np.ndarray, logits: np.ndarray, task: str = "binary") -> tuple[float, float]:
    """The mean (unweighted) loss of the task and :func:`accuracy`, as each epoch reports them."""
    if task == "binary":
        metrics = classification_metrics(targets, logits)
        return metrics["loss"], metrics["accuracy"]
    if task == "multiclass":
        count = len(targets)
        log_probabilities = log_softmax(logits)
        loss = float(-log_probabilities[np.arange(count), np.asarray(targets, dtype=np.int64)].mean()) if count else float("nan")
    else:
        z = np.asarray(logits, dtype=np.float64)
        loss = float((np.logaddexp(0.0, z) - np.asarray(targets, dtype=np.float64) * z).mean()) if len(z) else float("nan")
    return loss, accuracy(targets, logits, task)


def accuracy(targets: np.ndarray, logits: np.ndarray, task: str) -> float:
    """The share of rows predicted exactly right (multilabel: every label right)."""
    targets, logits = np.asarray(targets), np.asarray(logits)
    if task == "multiclass":
        right = logits.argmax(axis=1) == targets
    elif task == "multilabel":
        right = ((logits > 0) == (targets > 0.5)).all(axis=1)
    else:
        right = (logits > 0) == (targets > 0.5)
    return float(right.mean()) if len(right) else float("nan")


def format_metrics(metrics: dict) -> str:
    """A short human-readable report of :func:`task_metrics` (or :func:`classification_metrics`)."""
    task = metrics.get("task", "binary")
    lines = [f"Test loss: {metrics['loss']:.4f}", f"Test accuracy: {metrics['accuracy']:.4f}"]
    if task == "binary":
        (tn, fp), (fn, tp) = metrics["confusion_matrix"]
        names = metrics.get("labels", ["negative", "positive"])
        lines += [
            f"Precision: {metrics['precision']:.4f}  Recall: {metrics['recall']:.4f}  F1: {metrics['f1']:.4f}  "
            f"ROC-AUC: {_score(metrics['roc_auc'], 'n/a (the texts hold one label)')}",
            f"Confusion matrix (rows: true {names[0]}/{names[1]}, columns: predicted {names[0]}/{names[1]}): "
            f"[[{tn}, {fp}], [{fn}, {tp}]]",
        ]
    else:
        lines.append(f"Macro-F1: {metrics['macro_f1']:.4f}  Weighted F1: {metrics['weighted_f1']:.4f}  "
                     f"ECE: {metrics['ece']:.4f}")
        if "mae" in metrics:
            lines.append(f"Mean absolute error: {metrics['mae']:.4f} (in label values), {metrics['mae_steps']:.4f} "
                         "(in label steps)")
        if task == "multilabel":
            lines.append(f"Micro-F1: {metrics['micro_f1']:.4f}  Subset accuracy: {metrics['subset_accuracy']:.4f}  "
                         f"Hamming loss: {metrics['hamming_loss']:.4f}")
        width = max(len(name) for name in metrics["labels"])
        lines.append(f"{'label':<{width}}  precision  recall      f1  support")
        for name, score in metrics["per_class"].items():
            lines.append(f"{name:<{width}}  {score['precision']:9.4f}  {score['recall']:6.4f}  {score['f1']:6.4f}  "
                         f"{score['support']:7d}")
        if "confusion_matrix" in metrics and len(metrics["labels"]) <= 12:
            lines.append("Confusion matrix (rows: true, columns: predicted, in the order above):")
            lines += ["  " + " ".join(f"{value:6d}" for value in row) for row in metrics["confusion_matrix"]]
    if "part_accuracy" in metrics:
        parts = ", ".join(f"{name} {value:.4f}" for name, value in metrics["part_accuracy"].items())
        lines.append(f"Accuracy of each part alone: {parts}")
    if "calibration" in metrics:
        calibration = metrics["calibration"]
        lines.append(f"Calibration: temperature {calibration['temperature']:.3f}, validation ECE "
                     f"{calibration['ece_before']:.4f} before, {calibration['ece_after']:.4f} after")
    if "source" in metrics:
        lines.append(f"Scored {metrics['count']} texts of {metrics['source']}")
    return "\n".join(lines)


def _score(value: float, missing: str) -> str:
    return f"{value:.4f}" if math.isfinite(value) else missing


class Metrics(dict):
    """Test metrics as a plain mapping (``metrics["accuracy"]``) that prints as a short report."""

    def __str__(self) -> str:
        return format_metrics(self)


def finite_for_json(value: Any) -> Any:
    """``value`` with NaN and infinities (which JSON cannot carry) replaced by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_for_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_for_json(item) for item in value]
    return value
