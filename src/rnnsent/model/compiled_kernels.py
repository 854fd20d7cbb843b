"""The numba kernel of :mod:`rnnsent.model.compiled`; imported only through it, and only with numba installed."""

from __future__ import annotations

import math

import numba
import numpy as np

# Reassociation lets the compiler vectorise sums; NaN and infinity keep their meaning (no
# "nnan"/"ninf"), so a diverging run is still caught by the trainer's NaN guard.
FAST_MATH = {"reassoc", "contract", "arcp"}


def set_threads(count: int) -> None:
    """Let the kernel use ``count`` threads (at most as many as numba has)."""
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))


# numba compiles this on first call and caches the machine code on disk (cache=True).
@numba.njit(cache=True, nogil=True, fastmath=FAST_MATH, parallel=True)
def forward_logits(ids, embedding, w_in, w_rec, bias, w_out, b_out, relu):
    """Logits ``(rows,)`` float32 of id rows ``(rows, time)``: embedding -> simple RNN -> last state -> dense."""
    rows, time = ids.shape
    hidden, embedding_dim = w_in.shape
    # The input half of the cell, bias + W_in x, depends on the token alone: it is computed once
    # for each distinct token of the batch (projection: (distinct, hidden)), so that the
    # recurrence costs hidden x hidden per token rather than hidden x (embedding + hidden).
    # For the seed model (50 dimensions, 5 units) that is most of the arithmetic.
    # The numbering loop is the training kernel's too (rnnsent.training.compiled_step_kernels);
    # it is not shared because numba's on-disk cache of a kernel does not notice a change in a
    # function it calls from another file.
    slot = np.full(embedding.shape[0], -1, dtype=np.int64)  # vocabulary row -> projection row
    tokens = np.empty(rows * time, dtype=np.int64)
    distinct = 0
    for b in range(rows):
        for t in range(time):
            row = ids[b, t]
            if slot[row] < 0:
                slot[row] = distinct
                tokens[distinct] = row
                distinct += 1
    projection = np.empty((distinct, hidden), dtype=np.float32)
    for index in numba.prange(distinct):
        row = tokens[index]
        for h in range(hidden):
            total = bias[h]
            for e in range(embedding_dim):
                total += embedding[row, e] * w_in[h, e]
            projection[index, h] = total
    logits = np.empty(rows, dtype=np.float32)
    for b in numba.prange(rows):
        state = np.zeros(hidden, dtype=np.float32)  # (hidden,)
        following = np.empty(hidden, dtype=np.float32)
        for t in range(time):
            token = slot[ids[b, t]]
            for h in range(hidden):
                total = projection[token, h]
                for k in range(hidden):
                    total += state[k] * w_rec[h, k]
                if relu:
                    following[h] = 0.0 if total <= 0 else total
                else:
                    following[h] = math.tanh(total)
            state[:] = following
        z = b_out[0]
        for h in range(hidden):
            z += state[h] * w_out[0, h]
        logits[b] = z
    return logits
