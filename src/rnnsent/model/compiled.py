"""A compiled (numba) CPU forward for single-layer simple RNNs read to their last state."""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

# Reassociation lets the compiler vectorise sums; NaN and infinity keep their meaning (no
# "nnan"/"ninf"), so a diverging run is still caught by the trainer's NaN guard.
FAST_MATH = {"reassoc", "contract", "arcp"}


def compiled_logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Inference for the same model family: logits ``(batch,)`` from id rows ``(batch, time)``.

    Rows are independent, so they are spread over all cores; used by the model's forward on
    the CPU when no gradient is needed.
    """
    parameters = [model.embedding.weight, model.rnn.weight_ih_l0, model.rnn.weight_hh_l0, model.rnn.bias_ih_l0,
                  model.head.weight, model.head.bias]
    views = [p.detach().numpy() for p in parameters]
    relu = model.config.nonlinearity == "relu"
    # numba's OpenMP layer would reset torch's OpenMP thread count (--threads); its own work
    # queue does not. The layer is chosen when numba first starts threads, so set it first.
    numba.config.THREADING_LAYER = "workqueue"
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    return torch.from_numpy(_forward_logits(ids.contiguous().numpy(), *views, relu))


@numba.njit(cache=True, nogil=True, fastmath=FAST_MATH, parallel=True)
def _forward_logits(ids, embedding, w_in, w_rec, bias, w_out, b_out, relu):
    rows, time = ids.shape
    hidden, embedding_dim = w_in.shape
    logits = np.empty(rows, dtype=np.float32)
    for b in numba.prange(rows):
        state = np.zeros(hidden, dtype=np.float32)  # (hidden,)
        following = np.empty(hidden, dtype=np.float32)
        for t in range(time):
            row = ids[b, t]
            for h in range(hidden):
                total = bias[h]
                for e in range(embedding_dim):
                    total += embedding[row, e] * w_in[h, e]
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
