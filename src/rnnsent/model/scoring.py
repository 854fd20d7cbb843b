"""Scoring id rows in large batches under ``torch.inference_mode()``."""

from __future__ import annotations

import numpy as np
import torch

from rnnsent.model.recurrent import RecurrentClassifier

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
