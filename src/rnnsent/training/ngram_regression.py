"""The stacked n-gram branch: a convex fit before the network trains, a blend after it.

With ``ngram_fit "stacked"`` a model is trained in three steps:

1. :func:`fit_ngram_regression` fits the n-gram branch alone, as NBSVM's logistic-regression
   variant (Wang and Manning, 2012; Mesnil et al., 2014): each review is the set of n-grams
   it contains, each n-gram scaled by its naive-Bayes log-count ratio
   ``r = log((p / |p|) / (q / |q|))`` (``p`` and ``q`` its smoothed counts in positive and
   negative reviews), and an L2-regularised logistic regression is fitted to that, to
   convergence, with L-BFGS. The ratio and the weight fold into one number per n-gram.
2. The recurrent network trains on its own loss with the branch frozen (see
   :class:`rnnsent.model.composed.StackedClassifier`).
3. :func:`fit_blend` fits the three numbers that combine the two logits,
   ``a * recurrent + c * ngrams + b``, by logistic regression on the validation split: reviews
   that neither part was fitted to, so the blend learns how far to trust each of them.

Both fits are deterministic: the same data give the same weights in every process.
"""

from __future__ import annotations

import time
import warnings
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from rnnsent.model.composed import StackedClassifier
from rnnsent.model.ngrams import NgramBranch, distinct_ngram_ids
from rnnsent.training.optim import LBFGS

FEATURE_CHUNK = 512  # id rows turned into n-gram features at a time (bounds the temporary tensors)
NB_SMOOTHING = 1.0  # the count added to every n-gram in each class, as in NBSVM
MAX_ITERATIONS = 300
HISTORY_SIZE = 10


def presence_matrix(branch: NgramBranch, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The n-grams each row contains, as ``(row (nnz,), feature (nnz,))`` int64 pairs, row-major."""
    rows, features = [], []
    for start in range(0, len(ids), FEATURE_CHUNK):
        chunk = distinct_ngram_ids(ids[start:start + FEATURE_CHUNK], branch.vocab_size, branch.buckets, branch.order)
        present = chunk >= 0  # (chunk, features)
        rows.append(torch.nonzero(present)[:, 0] + start)
        features.append(chunk[present])
    return torch.cat(rows), torch.cat(features)


def log_count_ratios(rows: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, count: int) -> torch.Tensor:
    """Naive-Bayes log-count ratio ``(count,)`` float64 of features ``0..count-1`` (positive: a positive cue)."""
    positive = labels[rows] > 0.5
    p = torch.bincount(features[positive], minlength=count).double() + NB_SMOOTHING
    q = torch.bincount(features[~positive], minlength=count).double() + NB_SMOOTHING
    return torch.log(p / p.sum()) - torch.log(q / q.sum())


def fit_ngram_regression(
    branch: NgramBranch,
    ids: torch.Tensor,
    labels: torch.Tensor,
    inverse_l2: float,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, float]:
    """Fit ``branch`` (a binary one) in place to id rows ``(n, time)`` and labels ``(n,)``.

    Minimises ``inverse_l2 * sum(log loss) + |w|^2 / 2`` over the weights ``w`` of the
    ratio-scaled features and an unpenalised intercept, as liblinear's ``-s 0`` does. Only
    n-grams seen in ``ids`` take part; every other weight is zero. Returns fit statistics.
    """
    assert branch.binary, "only a stacked (binary) n-gram branch is fitted on its own"
    started = time.perf_counter()
    rows, features = presence_matrix(branch, ids)
    # Renumber the features that occur 0..used-1, so the fit's vectors hold only those.
    seen, columns = torch.unique(features, return_inverse=True)
    ratios = log_count_ratios(rows, columns, labels, len(seen)).double()  # (used,)
    crow = torch.zeros(len(ids) + 1, dtype=torch.int64)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=len(ids)), 0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        matrix = torch.sparse_csr_tensor(crow, columns, ratios[columns], size=(len(ids), len(seen)),
                                         check_invariants=False)  # (n, used)
        # The gradient needs matrix^T @ residual: a CSR copy of the transpose keeps that product
        # row-parallel and deterministic.
        transposed = matrix.t().to_sparse_csr()  # (used, n)
    targets = labels.double()
    # Double precision: in float32 the summed loss of 25,000 reviews cannot register the small
    # late improvements, and L-BFGS's line search stops well short of the optimum.
    weights = torch.zeros(len(seen), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = LBFGS([weights, bias], lr=1.0, max_iter=MAX_ITERATIONS, history_size=HISTORY_SIZE,
                                  tolerance_grad=1e-5, tolerance_change=1e-9, line_search_fn="strong_wolfe")
    evaluations = 0

    def objective() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        with torch.no_grad():
            logits = torch.mv(matrix, weights) + bias  # (n,)
            loss = inverse_l2 * F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") + 0.5 * weights.dot(weights)
            residual = inverse_l2 * (torch.sigmoid(logits) - targets)  # d loss / d logits
            weights.grad = torch.mv(transposed, residual) + weights
            bias.grad = residual.sum().reshape(1)
        return loss

    optimizer.step(objective)
    with torch.no_grad():
        accuracy = float(((torch.mv(matrix, weights) + bias > 0).float() == targets).float().mean())
        branch.weight.weight.zero_()
        branch.weight.weight[seen, 0] = (ratios * weights).float()  # ratio and weight folded into one number
        branch.bias.fill_(float(bias))
    stats = {"features": len(seen), "evaluations": evaluations, "train_accuracy": accuracy,
             "seconds": time.perf_counter() - started}
    log(f"n-gram regression: {len(seen):,} n-grams, {evaluations} evaluations, "
        f"training accuracy {accuracy:.4f}, {stats['seconds']:.1f}s")
    return stats


def fit_blend(
    model: StackedClassifier,
    parts: dict[str, np.ndarray],
    labels: np.ndarray,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, float]:
    """Set ``model.blend`` by logistic regression of ``labels`` on the parts' validation logits.

    ``parts`` holds the ``recurrent`` and ``ngrams`` logits ``(n,)`` of the validation reviews.
    Returns each part's validation accuracy and the blend's.
    """
    assert isinstance(model, StackedClassifier), "only a stacked model has a blend"
    inputs = torch.tensor(np.stack([parts["recurrent"], parts["ngrams"]], axis=1), dtype=torch.float64)  # (n, 2)
    targets = torch.tensor(labels, dtype=torch.float64)
    coefficients = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    optimizer = LBFGS([coefficients], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        logits = inputs @ coefficients[:2] + coefficients[2]
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        loss.backward()
        return loss

    optimizer.step(objective)
    blend = coefficients.detach()
    with torch.no_grad():
        model.blend.copy_(blend.to(model.blend))
        blended = (inputs @ blend[:2] + blend[2]).numpy()
    stats = {f"{name}_accuracy": float(np.mean((parts[name] > 0) == (labels > 0.5))) for name in ("recurrent", "ngrams")}
    stats["blend_accuracy"] = float(np.mean((blended > 0) == (labels > 0.5)))
    log(f"blend on {len(labels)} validation reviews: {blend[0]:.3f} x recurrent + {blend[1]:.3f} x n-grams "
        f"{blend[2]:+.3f}; validation accuracy {stats['recurrent_accuracy']:.4f} / {stats['ngrams_accuracy']:.4f} "
        f"/ blended {stats['blend_accuracy']:.4f}")
    return stats
