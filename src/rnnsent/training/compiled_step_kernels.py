"""The numba kernels of :mod:`rnnsent.training.compiled_step`; imported only through it, with numba installed."""

from __future__ import annotations

import math

import numba
import numpy as np

from rnnsent.model.compiled_kernels import FAST_MATH


# numba compiles these on first call and caches the machine code on disk (cache=True).
@numba.njit(cache=True, nogil=True, fastmath=FAST_MATH)
def train_step(ids, labels, embedding, w_in, w_rec, bias, w_out, b_out,
               v_embedding, v_in, v_rec, v_bias, v_out, v_bout, row_step,
               s_embedding, s_in, s_rec, s_bias, s_out, s_bout, slot, lr, rho, eps, relu):
    """One step in place: parameters, then their RMSprop averages, row steps, step counters and scratch.

    Returns ``(mean loss, correct predictions)`` of the batch ``ids (batch, time)``.
    """
    batch, time = ids.shape
    hidden, embedding_dim = w_in.shape
    # float32 constants keep every update in single precision, which vectorises.
    lr32, rho32, eps32 = np.float32(lr), np.float32(rho), np.float32(eps)
    one_minus_rho = np.float32(1.0) - rho32
    # Forward. states[t + 1] is the hidden state after reading token t: (time + 1, batch, hidden).
    # The cell is written out here and in rnnsent.model.compiled_kernels rather than shared: as a separate
    # function taking array views it measured about 10% slower per step.
    states = np.zeros((time + 1, batch, hidden), dtype=np.float32)
    for t in range(time):
        for b in range(batch):
            row = ids[b, t]
            for h in range(hidden):
                total = bias[h]
                for e in range(embedding_dim):
                    total += embedding[row, e] * w_in[h, e]
                for k in range(hidden):
                    total += states[t, b, k] * w_rec[h, k]
                if relu:
                    # Written so that NaN propagates, as torch.relu does.
                    states[t + 1, b, h] = 0.0 if total <= 0 else total
                else:
                    states[t + 1, b, h] = math.tanh(total)
    # Head and binary cross-entropy (mean over the batch), computed stably from logits.
    d_logit = np.empty(batch, dtype=np.float32)
    loss = 0.0
    correct = 0
    for b in range(batch):
        z = b_out[0]
        for h in range(hidden):
            z += states[time, b, h] * w_out[0, h]
        y = labels[b]
        loss += max(z, 0.0) - z * y + math.log1p(math.exp(-abs(z)))
        probability = 1.0 / (1.0 + math.exp(-z))
        d_logit[b] = (probability - y) / batch
        if (z > 0) == (y > 0.5):
            correct += 1
    loss /= batch
    # Backward through the head.
    g_out = np.zeros_like(w_out)
    g_bout = np.zeros_like(b_out)
    d_state = np.empty((batch, hidden), dtype=np.float32)  # dLoss/dh_t: (batch, hidden)
    for b in range(batch):
        g_bout[0] += d_logit[b]
        for h in range(hidden):
            g_out[0, h] += d_logit[b] * states[time, b, h]
            d_state[b, h] = d_logit[b] * w_out[0, h]
    # Backward through time: d_pre[t] is dLoss/d(pre-activation) at step t: (time, batch, hidden).
    d_pre = np.empty((time, batch, hidden), dtype=np.float32)
    g_rec = np.zeros_like(w_rec)
    g_bias = np.zeros_like(bias)
    for t in range(time - 1, -1, -1):
        for b in range(batch):
            for h in range(hidden):
                value = states[t + 1, b, h]
                derivative = (1.0 if value > 0 else 0.0) if relu else 1.0 - value * value
                d_pre[t, b, h] = d_state[b, h] * derivative
        for b in range(batch):
            for k in range(hidden):
                total = 0.0
                for h in range(hidden):
                    total += d_pre[t, b, h] * w_rec[h, k]
                    g_rec[h, k] += d_pre[t, b, h] * states[t, b, k]
                d_state[b, k] = total
            for h in range(hidden):
                g_bias[h] += d_pre[t, b, h]
    # Input kernel and the embedding rows the batch touched (duplicates summed into one slot).
    g_in = np.zeros_like(w_in)
    touched = np.empty(batch * time, dtype=np.int64)
    count = 0
    g_rows = np.zeros((batch * time, embedding_dim), dtype=np.float32)
    for t in range(time):
        for b in range(batch):
            row = ids[b, t]
            if slot[row] < 0:
                slot[row] = count
                touched[count] = row
                count += 1
            target = slot[row]
            for h in range(hidden):
                d = d_pre[t, b, h]
                if d != 0.0:
                    for e in range(embedding_dim):
                        g_in[h, e] += d * embedding[row, e]
                        g_rows[target, e] += d * w_in[h, e]
    # RMSprop (Keras): v = rho*v + (1-rho)*g^2; p -= lr*g/sqrt(v + eps); all steps advance together.
    for counter in (s_embedding, s_in, s_rec, s_bias, s_out, s_bout):
        counter[0] += 1
    step = s_embedding[0]
    rmsprop_dense(w_in.ravel(), g_in.ravel(), v_in.ravel(), lr32, rho32, eps32)
    rmsprop_dense(w_rec.ravel(), g_rec.ravel(), v_rec.ravel(), lr32, rho32, eps32)
    rmsprop_dense(bias, g_bias, v_bias, lr32, rho32, eps32)
    rmsprop_dense(w_out.ravel(), g_out.ravel(), v_out.ravel(), lr32, rho32, eps32)
    rmsprop_dense(b_out, g_bout, v_bout, lr32, rho32, eps32)
    for index in range(count):
        row = touched[index]
        # Lazy decay for the steps since the row was last touched, this one included.
        decay = rho32 ** np.float32(step - row_step[row])
        for e in range(embedding_dim):
            g = g_rows[index, e]
            v = v_embedding[row, e] * decay + one_minus_rho * g * g
            v_embedding[row, e] = v
            embedding[row, e] -= lr32 * g / np.sqrt(v + eps32)
        row_step[row] = step
        slot[row] = -1
    return loss, correct


@numba.njit(cache=True, nogil=True, fastmath=FAST_MATH)
def train_steps(ids, labels, rows, starts, lrs, embedding, w_in, w_rec, bias, w_out, b_out,
                v_embedding, v_in, v_rec, v_bias, v_out, v_bout, row_step,
                s_embedding, s_in, s_rec, s_bias, s_out, s_bout, slot, rho, eps, relu, losses, corrects):
    """Several :func:`train_step` calls in one: step ``s`` trains on the rows ``rows[starts[s]:starts[s + 1]]``
    of ``ids (examples, time)`` and ``labels (examples,)`` at learning rate ``lrs[s]``.

    Each step's batch is gathered into its own ``(batch, time)`` array, as the trainer's indexing
    would, so every step computes exactly what a separate call computes; ``losses`` and
    ``corrects`` receive each step's mean loss and correct predictions.
    """
    time = ids.shape[1]
    for s in range(lrs.shape[0]):
        begin = starts[s]
        size = starts[s + 1] - begin
        batch_ids = np.empty((size, time), dtype=ids.dtype)
        batch_labels = np.empty(size, dtype=labels.dtype)
        for b in range(size):
            batch_ids[b] = ids[rows[begin + b]]
            batch_labels[b] = labels[rows[begin + b]]
        losses[s], corrects[s] = train_step(
            batch_ids, batch_labels, embedding, w_in, w_rec, bias, w_out, b_out,
            v_embedding, v_in, v_rec, v_bias, v_out, v_bout, row_step,
            s_embedding, s_in, s_rec, s_bias, s_out, s_bout, slot, lrs[s], rho, eps, relu)


@numba.njit(cache=True, nogil=True, fastmath=FAST_MATH)
def rmsprop_dense(parameter, grad, square_avg, lr, rho, eps):
    """Keras' RMSprop update of a flat parameter in place from its gradient."""
    one_minus_rho = np.float32(1.0) - rho
    for i in range(parameter.shape[0]):
        g = grad[i]
        v = square_avg[i] * rho + one_minus_rho * g * g
        square_avg[i] = v
        parameter[i] -= lr * g / np.sqrt(v + eps)
