"""Scoring id rows in large batches under ``torch.inference_mode()``.

This is where the forward is chosen: each batch goes to
:func:`rnnsent.model.compiled.compiled_logits` when
:func:`~rnnsent.model.compiled.compiled_forward_supported` says it applies, and to the
model's own forward otherwise. Inference on raw text asks for ``fast`` scoring: then the other
models that :func:`~rnnsent.model.fast_forward.fast_forward_supported` accepts go to
:func:`~rnnsent.model.fast_forward.fast_part_logits`, equal to float32 rounding rather than
bit for bit, which is why training (validation scores, the blend fit, model selection) keeps
the model's own forward. Callers pass every row's true length; they are used only by models
whose config reads them (``use_lengths``).
"""

from __future__ import annotations

import numpy as np
import torch

from rnnsent.model.build import Classifier, ngram_branch
from rnnsent.model.compiled import compiled_forward_supported, compiled_logits
from rnnsent.model.fast_forward import fast_forward_supported, fast_part_logits
from rnnsent.model.ngrams import NgramBranch

EVAL_BATCH_SIZE = 2048
# The compiled forward's batches hold this many tokens: each call costs a few milliseconds of
# dispatch and thread start, and its memory is a few bytes per token, so for short rows
# (the seed model's 30 tokens) the whole IMDB test set is one call rather than thirteen.
COMPILED_BATCH_TOKENS = 1 << 20


def batch_logits(model: Classifier, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Logits ``(batch,)`` of one batch of id rows ``(batch, time)``, compiled where that applies."""
    if compiled_forward_supported(model, ids):
        return compiled_logits(model, ids)
    return model(ids, lengths)[0]


def predict_logits(
    model: Classifier,
    ids: np.ndarray | torch.Tensor,
    lengths: np.ndarray | torch.Tensor | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
    fast: bool = False,
) -> np.ndarray:
    """Logits ``(n,)`` (one output) or ``(n, K)`` for id rows ``(n, time)``, in large batches under inference mode.

    For a model that reads true lengths (post-padded rows read up to their length), rows are
    scored in order of length and each batch is cut to its longest row, so padding columns
    are not computed. ``fast``: the fast forward where it applies (see the module docstring),
    on as many threads as torch uses.
    """
    ids = torch.as_tensor(ids)
    if fast and _takes_fast_forward(model, ids):
        logits = fast_part_logits(model, ids, lengths, batch_size, torch.get_num_threads())["model"]
        return logits.float().numpy()

    def score(batch, batch_lengths):
        return batch_logits(model, batch, batch_lengths)  # (batch,) or (batch, K)

    if _takes_compiled_forward(model, ids):
        batch_size = max(batch_size, COMPILED_BATCH_TOKENS // max(1, ids.shape[1]))
    return _score_batches(model, ids, lengths, batch_size, score)


def _takes_compiled_forward(model: Classifier, ids: torch.Tensor) -> bool:
    """Whether scoring ``ids`` in eval mode goes to the compiled forward."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return compiled_forward_supported(model, ids)
    finally:
        model.train(was_training)


def _takes_fast_forward(model: Classifier, ids: torch.Tensor) -> bool:
    """Whether fast scoring of ``ids`` goes to the fast forward: it applies, and the compiled one does not."""
    if not fast_forward_supported(model):
        return False
    with torch.inference_mode():
        return not compiled_forward_supported(model, ids)


def predict_part_logits(
    model: Classifier,
    ids: np.ndarray | torch.Tensor,
    lengths: np.ndarray | torch.Tensor | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
) -> dict[str, np.ndarray]:
    """Each part's logits ``(n,)`` (see the model's ``part_logits``) and the model's, under ``"model"``."""
    names = ["recurrent"] + (["ngrams"] if ngram_branch(model) is not None else []) + ["model"]

    def score(batch, batch_lengths):
        parts = model.part_logits(batch, batch_lengths)
        parts["model"] = model.combine(parts)
        return torch.stack([parts[name] for name in names], dim=1)  # (batch, parts) or (batch, parts, K)

    scores = _score_batches(model, ids, lengths, batch_size, score, width=(len(names),))
    return {name: scores[:, index] for index, name in enumerate(names)}


def predict_cut_logits(branch: NgramBranch, ids: np.ndarray | torch.Tensor,
                       batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """An ordinal n-gram branch's cut logits ``(n, K-1)`` for id rows ``(n, time)``, in batches under inference mode."""
    ids = torch.as_tensor(ids)
    device = branch.weight.weight.device
    with torch.inference_mode():
        chunks = [branch.cut_logits(ids[start:start + batch_size].to(device)).float().cpu()
                  for start in range(0, len(ids), batch_size)]
    return torch.cat(chunks) if chunks else torch.zeros(0, branch.outputs - 1)


def _score_batches(model, ids, lengths, batch_size, score, width: tuple[int, ...] = ()) -> np.ndarray:
    """``score(batch, lengths)`` ``(batch, *width, [K])`` over all rows, batched (length-sorted when read)."""
    device = next(model.parameters()).device
    ids = torch.as_tensor(ids)
    lengths = torch.as_tensor(lengths) if lengths is not None and model.config.use_lengths else None
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
        outputs_per_row = () if model.outputs == 1 else (model.outputs,)
        return np.zeros((0, *width, *outputs_per_row), dtype=np.float32)
    scores = torch.cat(outputs)  # (n, ...)
    if order is not None:
        scores = torch.empty_like(scores).index_copy_(0, order, scores)
    return scores.numpy()

