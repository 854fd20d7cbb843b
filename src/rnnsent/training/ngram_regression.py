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

With K outputs the same steps hold per label space: a multiclass branch is a multinomial
(softmax) regression whose class-k weights scale each n-gram by its class-k-versus-rest ratio;
a multilabel branch is one binary regression per label (its ratio: texts with the label versus
without), all sharing the n-gram features. The blend is ``a * recurrent + c * ngrams + b`` with
``b`` one number per output, fitted by the task's loss (softmax cross-entropy, or binary
cross-entropy per label).

For K ordered labels (star ratings) the ``ordinal`` fit exploits the order instead: K-1 binary
regressions, one per cut between neighbouring labels ("the label is above the cut"), each
NB-weighted by its own split of the texts and fitted as the one-output regression is, over one
presence matrix shared by all cuts (Frank and Hall, 2001). Its cost is K-1 binary fits, one at a
time, so its memory is that of one. A softmax readout (K-1 cut logits to K label logits) is
fitted on the validation split (:func:`fit_ordinal_readout`), because on its own training texts
the regression is nearly always right; the blend with the network follows, as for K outputs.

Every fit is deterministic: the same data give the same weights in every process.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from rnnsent.model.composed import StackedClassifier
from rnnsent.model.loss import predicted_correct
from rnnsent.model.ngrams import HASH_MODULUS, NgramBranch, distinct_ngram_ids, ngram_ids
from rnnsent.training.optim import LBFGS

FEATURE_CHUNK = 512  # id rows turned into n-gram features at a time (bounds the temporary tensors)
NB_SMOOTHING = 1.0  # the count added to every n-gram in each class, as in NBSVM
MAX_ITERATIONS = 300
HISTORY_SIZE = 10
# K outputs: scale each n-gram by its per-class (per-label) naive-Bayes ratio (see _fit_outputs).
# Measured on 1,500 IMDB training reviews (1-2-grams, C = 1, 3,000 test reviews): 3 rating
# groups 0.728 test accuracy with the ratios, 0.705 without; the 8 ratings 0.403 and 0.378.
NB_WEIGHTED_OUTPUTS = True
# The ordinal fit leaves out the n-grams only one training text contains: a weight of its own
# lets the fit explain that one text, which says nothing of any other. Measured on IMDB's star
# ratings (22,500 training reviews, 1-3-grams, C = 1): 1.13 of the 3.78 million n-grams are
# kept; validation accuracy of the positive-vs-negative cut 0.9196 against 0.9176 with every
# n-gram, of the 1-star-vs-rest cut 0.8520 against 0.8472, in fewer evaluations.
ORDINAL_MIN_TEXTS = 2
# The fit's peak memory, measured (3,000 IMDB reviews read as best reads them: 1.76 million
# stored entries, 747,000 n-grams used, 233-272 MB): per stored (row, distinct n-gram) entry the
# presence matrix, its transposed copy and the temporaries of building them; per used n-gram
# and output the double-precision vectors of L-BFGS (its 2 x 10 history and a few more).
PEAK_BYTES_PER_ENTRY = 56
PEAK_BYTES_PER_WEIGHT = 8 * (2 * HISTORY_SIZE + 6)


def count_distinct_ngrams(rows: Callable[[int, int], torch.Tensor], count: int, order: int,
                          chunk: int = 4096) -> int:
    """How many distinct n-grams of 2 to ``order`` words the id rows ``rows(start, stop)`` hold.

    Counted exactly up to hash collisions: each n-gram's mixed hash before it is reduced to a
    bucket (a number below 2**31, so two distinct n-grams of a few million share one about once
    in a thousand), gathered in chunks of ``chunk`` rows, so memory stays in proportion to the
    number of distinct n-grams rather than to the data.
    """
    if order < 2:
        return 0
    found: list[torch.Tensor] = []
    pending = 0
    for start in range(0, count, chunk):
        ids = rows(start, min(start + chunk, count))
        keys = ngram_ids(ids, 0, HASH_MODULUS, order, mixed=True)[:, ids.shape[1]:]  # the n-grams of 2+ words
        found.append(torch.unique(keys[keys >= 0]))
        pending += len(found[-1])
        if pending > 16_000_000 and len(found) > 1:
            found = [torch.unique(torch.cat(found))]
            pending = len(found[0])
    return len(torch.unique(torch.cat(found))) if found else 0


def presence_matrix(branch: NgramBranch, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The n-grams each row contains, as ``(row (nnz,), feature (nnz,))`` int64 pairs, row-major."""
    rows, features = [], []
    for start in range(0, len(ids), FEATURE_CHUNK):
        chunk = distinct_ngram_ids(ids[start:start + FEATURE_CHUNK], branch.vocab_size, branch.buckets, branch.order)
        present = chunk >= 0  # (chunk, features)
        rows.append(torch.nonzero(present)[:, 0] + start)
        features.append(chunk[present])
    return torch.cat(rows), torch.cat(features)


def compact_presence(branch: NgramBranch, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The presence matrix over the n-grams ``ids`` use: ``(seen (used,), row (nnz,), column (nnz,))``.

    ``seen`` holds the feature ids that occur, sorted; column ``j`` of the matrix is feature
    ``seen[j]``. A fit over these columns holds vectors of the used n-grams only (3.8 million
    of IMDB's 16 million buckets), never of the whole table.
    """
    rows, features = presence_matrix(branch, ids)
    seen, columns = torch.unique(features, return_inverse=True)
    return seen, rows, columns


def row_pointers(rows: torch.Tensor, count: int) -> torch.Tensor:
    """CSR row pointers ``(count + 1,)`` of row-major entries in rows ``rows`` (nnz,)."""
    crow = torch.zeros(count + 1, dtype=torch.int64)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=count), 0)
    return crow


def log_count_ratios(rows: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, count: int) -> torch.Tensor:
    """Naive-Bayes log-count ratio ``(count,)`` float64 of features ``0..count-1`` (positive: a positive cue)."""
    positive = labels[rows] > 0.5
    p = torch.bincount(features[positive], minlength=count).double() + NB_SMOOTHING
    q = torch.bincount(features[~positive], minlength=count).double() + NB_SMOOTHING
    return torch.log(p / p.sum()) - torch.log(q / q.sum())


def log_count_ratio_matrix(rows: torch.Tensor, features: torch.Tensor, targets: torch.Tensor, count: int) -> torch.Tensor:
    """One naive-Bayes log-count ratio per feature and output ``(count, K)`` float64.

    ``targets`` ``(n, K)`` 0/1 says which rows are "positive" for output k: a class's own rows
    against every other class's (multiclass), or the rows carrying a label against the rest
    (multilabel). Column k is :func:`log_count_ratios` of that split.
    """
    return torch.stack([log_count_ratios(rows, features, targets[:, k], count) for k in range(targets.shape[1])], dim=1)


def output_targets(labels: torch.Tensor, outputs: int, task: str) -> torch.Tensor:
    """Targets ``(n, K)`` float64 0/1: one-hot class indices (multiclass) or the multi-hot rows (multilabel)."""
    if task == "multiclass":
        return F.one_hot(labels.long(), outputs).double()
    return labels.double().reshape(len(labels), outputs)


def regression_memory_estimate(entries: int, features: int, outputs: int = 1) -> int:
    """Peak bytes of :func:`fit_ngram_regression` over ``entries`` stored (row, distinct n-gram)
    pairs and ``features`` n-grams used.

    ``entries`` is at most ``rows * order * min(tokens per row, maxlen)``, ``features`` at most
    the branch's table (``vocab_size + buckets``). A million IMDB-length reviews read as
    ``best`` reads them (585 entries each, 16 million n-grams used) need about 36 GB.
    """
    return entries * PEAK_BYTES_PER_ENTRY + features * outputs * PEAK_BYTES_PER_WEIGHT


def csr_pair(crow: torch.Tensor, columns: torch.Tensor, values: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The sparse matrix ``(n, width)`` of CSR entries ``(crow, columns, values)`` and a CSR copy
    of its transpose ``(width, n)``.

    The gradient needs ``matrix^T @ residual``: the transposed copy keeps that product
    row-parallel and deterministic.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        matrix = torch.sparse_csr_tensor(crow, columns, values, size=(len(crow) - 1, width), check_invariants=False)
        return matrix, matrix.t().to_sparse_csr()


def _logistic_fit(matrix: torch.Tensor, transposed: torch.Tensor, targets: torch.Tensor, inverse_l2: float,
                  scale: torch.Tensor | None = None, start_bias: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Minimise ``inverse_l2 * sum(log loss) + |w|^2 / 2`` of the logits ``matrix @ (scale * w) + b``
    (``scale`` None: ``matrix @ w + b``) for 0/1 ``targets`` ``(n,)``, with L-BFGS from ``w = 0``,
    ``b = start_bias``. Returns ``w`` ``(width,)``, ``b`` ``(1,)`` and the function evaluations.
    """
    # Double precision: in float32 the summed loss of 25,000 reviews cannot register the small
    # late improvements, and L-BFGS's line search stops well short of the optimum.
    weights = torch.zeros(matrix.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.full((1,), start_bias, dtype=torch.float64, requires_grad=True)
    optimizer = LBFGS([weights, bias], lr=1.0, max_iter=MAX_ITERATIONS, history_size=HISTORY_SIZE,
                      tolerance_grad=1e-5, tolerance_change=1e-9, line_search_fn="strong_wolfe")
    evaluations = 0

    def objective() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        with torch.no_grad():
            logits = torch.mv(matrix, weights if scale is None else scale * weights) + bias  # (n,)
            loss = inverse_l2 * F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") + 0.5 * weights.dot(weights)
            residual = inverse_l2 * (torch.sigmoid(logits) - targets)  # d loss / d logits
            gradient = torch.mv(transposed, residual)  # (width,)
            weights.grad = (gradient if scale is None else scale * gradient) + weights
            bias.grad = residual.sum().reshape(1)
        return loss

    optimizer.step(objective)
    return weights.detach(), bias.detach(), evaluations


def fit_ngram_regression(
    branch: NgramBranch,
    ids: torch.Tensor,
    labels: torch.Tensor,
    inverse_l2: float,
    log: Callable[[str], None] = lambda message: None,
    task: str = "binary",
) -> dict[str, float]:
    """Fit ``branch`` (a binary one) in place to id rows ``(n, time)`` and the targets of ``task``.

    One output (``labels`` ``(n,)`` 0/1): minimises ``inverse_l2 * sum(log loss) + |w|^2 / 2``
    over the weights ``w`` of the ratio-scaled features and an unpenalised intercept, as
    liblinear's ``-s 0`` does. K outputs: see :func:`_fit_outputs`; an ordinal branch (K
    ordered labels, ``labels`` their indices): see :func:`_fit_ordinal`. Only n-grams seen in
    ``ids`` take part; every other weight is zero. Returns fit statistics.
    """
    assert branch.binary, "only a stacked (binary) n-gram branch is fitted on its own"
    if branch.ordinal:
        return _fit_ordinal(branch, ids, labels, inverse_l2, log)
    if branch.outputs > 1:
        return _fit_outputs(branch, ids, labels, inverse_l2, log, task)
    started = time.perf_counter()
    # The features that occur, renumbered 0..used-1, so the fit's vectors hold only those.
    seen, rows, columns = compact_presence(branch, ids)
    ratios = log_count_ratios(rows, columns, labels, len(seen)).double()  # (used,)
    crow = row_pointers(rows, len(ids))
    del rows  # the matrix below holds what the fit needs; the pairs would double its memory
    matrix, transposed = csr_pair(crow, columns, ratios[columns], len(seen))  # (n, used), (used, n)
    targets = labels.double()
    weights, bias, evaluations = _logistic_fit(matrix, transposed, targets, inverse_l2)
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


def ordinal_columns(seen: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor,
                    min_texts: int = ORDINAL_MIN_TEXTS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`compact_presence`'s matrix cut to the n-grams at least ``min_texts`` rows contain,
    renumbered ``0..kept-1``: ``(seen (kept,), row (nnz',), column (nnz',))``."""
    texts = torch.bincount(columns, minlength=len(seen))  # (used,): the rows holding each n-gram
    kept = texts >= min_texts
    renumbered = torch.cumsum(kept, 0) - 1  # (used,): the new column of each kept n-gram
    entries = kept[columns]
    return seen[kept], rows[entries], renumbered[columns[entries]]


def _fit_ordinal(branch: NgramBranch, ids: torch.Tensor, labels: torch.Tensor, inverse_l2: float,
                 log: Callable[[str], None]) -> dict[str, float]:
    """Fit an ordinal branch: for each of the K-1 cuts between neighbouring labels, a binary
    regression of "the label is above the cut" (Frank and Hall, 2001), each as the one-output fit.

    Cut j's logit is ``sum_i x_i r_ij w_ij + b_j``, ``r_ij`` n-gram i's naive-Bayes log-count
    ratio between the texts above the cut and those below it; its weights minimise
    ``inverse_l2 * sum(log loss) + |w_j|^2 / 2``. The cuts share one presence matrix over the
    n-grams that :data:`ORDINAL_MIN_TEXTS` or more training texts contain, built once; the
    ratios fold into the weights. One cut is fitted at a time, so the fit holds the vectors of
    one output, as the binary fit does, whatever K.
    """
    started = time.perf_counter()
    cuts = branch.outputs - 1
    seen, rows, columns = ordinal_columns(*compact_presence(branch, ids))
    crow = row_pointers(rows, len(ids))
    del rows
    matrix, transposed = csr_pair(crow, columns, torch.ones(len(columns), dtype=torch.float64), len(seen))
    classes = labels.long()
    evaluations = []
    with torch.no_grad():
        branch.weight.weight.zero_()
        scores = torch.zeros(len(ids), cuts, dtype=torch.float64)  # (n, K-1): the training texts' cut logits
        for cut in range(cuts):
            above = (classes > cut).double()  # (n,)
            # The smoothed counts of the texts above and below the cut holding each n-gram: (kept,).
            p = torch.mv(transposed, above) + NB_SMOOTHING
            q = torch.mv(transposed, 1.0 - above) + NB_SMOOTHING
            ratios = torch.log(p / p.sum()) - torch.log(q / q.sum())
            share = float(above.mean().clamp(1e-6, 1 - 1e-6))
            weights, bias, count = _logistic_fit(matrix, transposed, above, inverse_l2, scale=ratios,
                                                 start_bias=math.log(share / (1 - share)))
            evaluations.append(count)
            folded = ratios * weights  # ratio and weight folded into one number per n-gram
            scores[:, cut] = torch.mv(matrix, folded) + bias
            branch.weight.weight[seen, cut] = folded.float()
            branch.bias[cut] = float(bias)
        predicted = (scores.float() @ branch.readout + branch.readout_bias).argmax(dim=1)
        correct = predicted == classes
    accuracy = float(correct.float().mean())
    stats = {"features": len(seen), "evaluations": sum(evaluations), "train_accuracy": accuracy,
             "seconds": time.perf_counter() - started}
    log(f"n-gram regression (ordinal, {cuts} cuts): {len(seen):,} n-grams in {ORDINAL_MIN_TEXTS}+ texts, "
        f"{'+'.join(map(str, evaluations))} evaluations, training accuracy {accuracy:.4f}, {stats['seconds']:.1f}s")
    return stats


def fit_ordinal_readout(branch: NgramBranch, cut_logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Set an ordinal branch's readout by softmax regression of ``labels`` ``(n,)`` on the K-1 cut
    logits ``(n, K-1)`` of texts the regression was not fitted to (the validation split).

    The cut logits of the training texts are far from those of unseen texts (the fit separates
    its own texts), so the readout is fitted on unseen ones. It minimises the mean cross-entropy
    plus ``|A - A0|^2 / (2n)``, ``A0`` the starting readout (a sum of the cut logits below each
    label), which keeps the problem bounded when the cut logits separate the texts. Returns the
    branch's accuracy on those texts with the starting readout and with the fitted one.
    """
    assert branch.ordinal, "only an ordinal branch has a readout"
    z = cut_logits.double()  # (n, K-1)
    targets = labels.long()
    start = branch.readout.double()
    readout = start.clone().requires_grad_(True)  # (K-1, K)
    intercepts = branch.readout_bias.double().clone().requires_grad_(True)  # (K,)
    optimizer = LBFGS([readout, intercepts], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ readout + intercepts, targets) + ((readout - start) ** 2).sum() / (2 * max(len(z), 1))
        loss.backward()
        return loss

    before = float((((z @ start + intercepts.detach()).argmax(dim=1)) == targets).double().mean())
    optimizer.step(objective)
    with torch.no_grad():
        branch.readout.copy_(readout.float())
        branch.readout_bias.copy_(intercepts.float())
        after = float(((z @ readout + intercepts).argmax(dim=1) == targets).double().mean())
    return {"readout_accuracy_before": before, "readout_accuracy": after}


def _fit_outputs(branch: NgramBranch, ids: torch.Tensor, labels: torch.Tensor, inverse_l2: float,
                 log: Callable[[str], None], task: str) -> dict[str, float]:
    """Fit a K-output branch: a multinomial regression (multiclass) or K binary ones (multilabel).

    The logit of output k is ``sum_j x_j r_jk w_jk + b_k`` over the presence ``x`` of the
    n-grams, ``r_jk`` their class-k (label-k) log-count ratio. Minimises ``inverse_l2 *
    sum(loss) + |w|^2 / 2`` with the task's loss: softmax cross-entropy over the K classes, or
    the sum of each label's log loss (whose optimum is that of K separate binary fits, as the
    objective separates by label). The same L-BFGS, double precision and L2 as one output.
    """
    assert task in ("multiclass", "multilabel"), f"a {branch.outputs}-output branch is multiclass or multilabel"
    started = time.perf_counter()
    outputs = branch.outputs
    seen, rows, columns = compact_presence(branch, ids)
    targets = output_targets(labels, outputs, task)  # (n, K)
    ratios = log_count_ratio_matrix(rows, columns, targets, len(seen)) if NB_WEIGHTED_OUTPUTS \
        else torch.ones(len(seen), outputs, dtype=torch.float64)  # (used, K)
    crow = row_pointers(rows, len(ids))
    del rows
    # Presence alone (ones): each output scales the features by its own ratios, folded into its
    # weights below.
    matrix, transposed = csr_pair(crow, columns, torch.ones(len(columns), dtype=torch.float64), len(seen))
    classes = labels.long() if task == "multiclass" else None
    weights = torch.zeros(len(seen), outputs, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(outputs, dtype=torch.float64, requires_grad=True)
    optimizer = LBFGS([weights, bias], lr=1.0, max_iter=MAX_ITERATIONS, history_size=HISTORY_SIZE,
                                  tolerance_grad=1e-5, tolerance_change=1e-9, line_search_fn="strong_wolfe")
    evaluations = 0

    def logits_of(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(matrix, ratios * w) + b  # (n, K)

    def objective() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        with torch.no_grad():
            logits = logits_of(weights, bias)
            if task == "multiclass":
                data_loss = F.cross_entropy(logits, classes, reduction="sum")
                probabilities = torch.softmax(logits, dim=1)
            else:
                data_loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
                probabilities = torch.sigmoid(logits)
            loss = inverse_l2 * data_loss + 0.5 * (weights * weights).sum()
            residual = inverse_l2 * (probabilities - targets)  # d loss / d logits, (n, K)
            weights.grad = ratios * torch.sparse.mm(transposed, residual) + weights
            bias.grad = residual.sum(dim=0)
        return loss

    optimizer.step(objective)
    with torch.no_grad():
        logits = logits_of(weights, bias)
        accuracy = float(predicted_correct(logits, classes if task == "multiclass" else targets, task)) / len(ids)
        branch.weight.weight.zero_()
        branch.weight.weight[seen] = (ratios * weights).float()  # ratio and weight folded, per output
        branch.bias.copy_(bias.float())
    stats = {"features": len(seen), "evaluations": evaluations, "train_accuracy": accuracy,
             "seconds": time.perf_counter() - started}
    log(f"n-gram regression ({task}, {outputs} outputs): {len(seen):,} n-grams, {evaluations} evaluations, "
        f"training accuracy {accuracy:.4f}, {stats['seconds']:.1f}s")
    return stats


def blend_penalty(coefficients: torch.Tensor, count: int) -> torch.Tensor:
    """``|coefficients|^2 / (2 n)``: added to the blend's mean loss over ``n`` validation texts, it
    makes the fit an L2-regularised logistic regression with C = 1 (liblinear's default).

    Where both parts classify every validation text correctly (a small data set's few
    validation texts), the unregularised loss has no minimum: the coefficients grew until the
    optimiser stopped (4.4 x recurrent + 3.0 x n-grams + 3.3 on 32 texts of two balanced
    labels), and the model answered 1.0000 or 0.0000 for every text, an empty one included. On
    IMDB's 2,471 validation reviews the penalty moves the coefficients by about 0.001.
    """
    return (coefficients * coefficients).sum() / (2 * max(count, 1))


def fit_blend(
    model: StackedClassifier,
    parts: dict[str, np.ndarray],
    labels: np.ndarray,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, float]:
    """Set ``model.blend`` by logistic regression of ``labels`` on the parts' validation logits
    (L2-regularised: see :func:`blend_penalty`).

    ``parts`` holds the ``recurrent`` and ``ngrams`` logits ``(n,)`` of the validation reviews.
    Returns each part's validation accuracy and the blend's.
    """
    assert isinstance(model, StackedClassifier), "only a stacked model has a blend"
    if model.outputs > 1:
        return _fit_blend_outputs(model, parts, labels, log)
    inputs = torch.tensor(np.stack([parts["recurrent"], parts["ngrams"]], axis=1), dtype=torch.float64)  # (n, 2)
    targets = torch.tensor(labels, dtype=torch.float64)
    coefficients = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    optimizer = LBFGS([coefficients], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        logits = inputs @ coefficients[:2] + coefficients[2]
        loss = F.binary_cross_entropy_with_logits(logits, targets) + blend_penalty(coefficients, len(targets))
        loss.backward()
        return loss

    optimizer.step(objective)
    blend = coefficients.detach()
    with torch.no_grad():
        model.blend.copy_(blend.to(model.blend))
        blended = (inputs @ blend[:2] + blend[2]).numpy()
    stats = {f"{name}_accuracy": float(np.mean((parts[name] > 0) == (labels > 0.5))) for name in ("recurrent", "ngrams")}
    stats["blend_accuracy"] = float(np.mean((blended > 0) == (labels > 0.5)))
    log(f"blend on {len(labels)} validation texts: {blend[0]:.3f} x recurrent + {blend[1]:.3f} x n-grams "
        f"{blend[2]:+.3f}; validation accuracy {stats['recurrent_accuracy']:.4f} / {stats['ngrams_accuracy']:.4f} "
        f"/ blended {stats['blend_accuracy']:.4f}")
    return stats


def _fit_blend_outputs(model: StackedClassifier, parts: dict[str, np.ndarray], labels: np.ndarray,
                       log: Callable[[str], None]) -> dict[str, float]:
    """The blend of K-output parts ``(n, K)``: ``a * recurrent + c * ngrams + b`` with ``a``, ``c``
    scalars and ``b`` ``(K,)``, fitted by the task's mean loss (softmax cross-entropy, or
    binary cross-entropy per label) on the validation targets ``labels``, plus :func:`blend_penalty`."""
    task, outputs = model.task, model.outputs
    recurrent = torch.tensor(np.asarray(parts["recurrent"]), dtype=torch.float64)  # (n, K)
    ngrams = torch.tensor(np.asarray(parts["ngrams"]), dtype=torch.float64)
    targets = torch.tensor(np.asarray(labels), dtype=torch.int64 if task == "multiclass" else torch.float64)
    coefficients = torch.zeros(2 + outputs, dtype=torch.float64, requires_grad=True)
    optimizer = LBFGS([coefficients], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def blended(c: torch.Tensor) -> torch.Tensor:
        return c[0] * recurrent + c[1] * ngrams + c[2:]

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        logits = blended(coefficients)
        if task == "multiclass":
            loss = F.cross_entropy(logits, targets)
        else:
            loss = F.binary_cross_entropy_with_logits(logits, targets)
        loss = loss + blend_penalty(coefficients, len(targets))
        loss.backward()
        return loss

    optimizer.step(objective)
    blend = coefficients.detach()
    with torch.no_grad():
        model.blend.copy_(blend.to(model.blend))
        combined = blended(blend)

    def accuracy(logits: torch.Tensor) -> float:
        return float(predicted_correct(logits, targets, task)) / max(len(targets), 1)

    stats = {"recurrent_accuracy": accuracy(recurrent), "ngrams_accuracy": accuracy(ngrams),
             "blend_accuracy": accuracy(combined)}
    biases = ", ".join(f"{value:+.3f}" for value in blend[2:].tolist())
    log(f"blend on {len(targets)} validation texts: {blend[0]:.3f} x recurrent + {blend[1]:.3f} x n-grams + "
        f"({biases}); validation accuracy {stats['recurrent_accuracy']:.4f} / {stats['ngrams_accuracy']:.4f} "
        f"/ blended {stats['blend_accuracy']:.4f}")
    return stats
