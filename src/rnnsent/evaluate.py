"""Scoring a model on encoded data and the classification metrics."""

from __future__ import annotations

import numpy as np
import torch

from rnnsent.model import RecurrentClassifier

EVAL_BATCH_SIZE = 2048


def predict_logits(
    model: RecurrentClassifier,
    ids: np.ndarray | torch.Tensor,
    lengths: np.ndarray | torch.Tensor | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
) -> np.ndarray:
    """Logits ``(n,)`` for id rows ``(n, time)``, in large batches under inference mode.

    With ``lengths`` (post-padded rows read up to their length), rows are scored in order of
    length and each batch is cut to its longest row, so padding columns are not computed.
    """
    return _score_batches(model, ids, lengths, batch_size, lambda batch, batch_lengths: model(batch, batch_lengths)[0][:, None])[:, 0]


def predict_part_logits(
    model: RecurrentClassifier,
    ids: np.ndarray | torch.Tensor,
    lengths: np.ndarray | torch.Tensor | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
) -> dict[str, np.ndarray]:
    """Each part's logits (see ``RecurrentClassifier.part_logits``) and the model's, under ``"model"``."""
    names = ["recurrent"] + (["ngrams"] if model.ngrams is not None else []) + ["model"]

    def score(batch, batch_lengths):
        parts = model.part_logits(batch, batch_lengths)
        parts["model"] = model.combine(parts)
        return torch.stack([parts[name] for name in names], dim=1)  # (batch, parts)

    scores = _score_batches(model, ids, lengths, batch_size, score, width=len(names))
    return {name: scores[:, index] for index, name in enumerate(names)}


def _score_batches(model, ids, lengths, batch_size, score, width: int = 1) -> np.ndarray:
    """``score(batch, lengths)`` ``(batch, k)`` over all rows, batched and length-sorted: ``(n, k)``."""
    device = next(model.parameters()).device
    ids = torch.as_tensor(ids)
    lengths = None if lengths is None else torch.as_tensor(lengths)
    order = None if lengths is None else torch.argsort(lengths, stable=True)
    was_training = model.training
    model.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            if order is None:
                batch, batch_lengths = ids[start:start + batch_size], None
            else:
                chosen = order[start:start + batch_size]
                batch_lengths = lengths[chosen]
                batch = ids[chosen, : max(int(batch_lengths.max()), 1)]
                batch_lengths = batch_lengths.to(device)
            outputs.append(score(batch.to(device), batch_lengths).float().cpu())
    model.train(was_training)
    if not outputs:
        return np.zeros((0, width), dtype=np.float32)
    scores = torch.cat(outputs)  # (n, k)
    if order is not None:
        scores = torch.empty_like(scores).index_copy_(0, order, scores)
    return scores.numpy()


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


def evaluate_model(
    model: RecurrentClassifier, ids: np.ndarray | torch.Tensor, lengths: np.ndarray | torch.Tensor | None, labels: np.ndarray
) -> dict:
    """:func:`classification_metrics` of the model, plus each part's accuracy when it has an n-gram branch.

    ``lengths`` is None for a model that does not read true lengths.
    """
    if model.ngrams is None:
        return classification_metrics(labels, predict_logits(model, ids, lengths))
    parts = predict_part_logits(model, ids, lengths)
    metrics = classification_metrics(labels, parts.pop("model"))
    metrics["part_accuracy"] = {name: float(np.mean((logits > 0) == (np.asarray(labels) > 0.5))) for name, logits in parts.items()}
    return metrics
