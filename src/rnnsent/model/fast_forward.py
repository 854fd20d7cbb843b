"""A fast CPU inference forward for one-layer recurrent networks, over rows sorted by length.

:func:`fast_part_logits` gives each part's logits as the model's own forward does (equal to
float32 rounding; tested within 1e-5 on the probabilities) several times faster, because:

* The first layer's input projection is looked up, not computed: each distinct id of the call
  is projected once (``embedding[id] @ weight_ih.T + bias_ih``, plus the hidden-to-hidden
  biases that are only added), and each step gathers its rows. For a review of a few hundred
  words this is half the network's arithmetic.
* Rows are sorted by length, longest first, and cut into batches; at step ``t`` only the rows
  still reading (a prefix of the batch) are computed, as packed sequences do, but with dense
  kernels on preallocated buffers. No padding step is ever computed. The backward direction
  reads each row reversed within its length.
* A step is a few in-place torch calls on views made only when the number of reading rows
  changes: one gather, one batched matrix product for both directions, and the gate
  arithmetic, with ``tanh(x)`` computed as ``2 * sigmoid(2 x) - 1`` and the factor 2 folded
  into the weights (torch's CPU ``tanh`` is several times slower than its ``sigmoid``).
* Max, mean and last-state summaries are accumulated step by step, so states are not stored
  (attention pooling, which needs them, stores them).
* Each batch (both directions, the n-gram logit, the head) is one task, and tasks run on a
  pool of threads with single-threaded torch calls (torch releases the GIL): the cores never
  wait for each other inside a step, which on a busy machine is what costs most.

:func:`fast_forward_supported` says when it applies: a plain one-layer ``simple``/``lstm``/``gru``
network (alone, or with an n-gram branch), float32 on the CPU, in eval mode, not quantized.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from rnnsent.model.build import Classifier, ngram_branch, recurrent_network
from rnnsent.model.lengths import reverse_within_lengths
from rnnsent.model.pooling import AttentionPooling, LastState, StatisticPooling
from rnnsent.model.recurrent import CELLS
from rnnsent.threads import scoring_threads

# Gate blocks per cell, in torch's order: GRU (r, z, n), LSTM (i, f, g, o).
GATES = {"simple": 1, "gru": 3, "lstm": 4}
# A row's result must not depend on the rows scored beside it. MKL's matrix products take
# other code paths (with other rounding) for very few rows, so every product here has at
# least this many rows and outputs (extra ones are scratch); and torch's elementwise kernels
# round their last (under 32) elements of a contiguous run apart from the vectorised rest,
# so buffers are laid out with rows padded to a multiple of VECTOR_RUN floats.
MIN_ROWS = 16
VECTOR_RUN = 32


def _padded(width: int) -> int:
    """``width`` rounded up to a multiple of :data:`VECTOR_RUN`."""
    return -(-width // VECTOR_RUN) * VECTOR_RUN


def fast_forward_supported(model: nn.Module) -> bool:
    """Whether :func:`fast_part_logits` computes ``model``'s logits: a one-layer recurrent
    network of one of the config's cells with a linear head (torch's modules, not quantized
    ones), alone or with an n-gram branch, float32 on the CPU, in eval mode."""
    network = recurrent_network(model)
    config = network.config
    rnn = getattr(network, "rnn", None)
    return (
        type(rnn) is CELLS[config.cell] and config.num_layers == 1 and not model.training
        and type(network.head) is nn.Linear and isinstance(network.pooling, (LastState, StatisticPooling, AttentionPooling))
        and all(p.device.type == "cpu" and p.dtype == torch.float32 for p in network.parameters())
    )


@dataclass
class _Weights:
    """The weights every step reads, for all directions at once; gate columns that go through
    tanh are doubled (see :func:`_tanh_from_doubled`)."""

    table: torch.Tensor  # (directions * distinct, padded gates * hidden): input projections, biases added
    recurrent: torch.Tensor  # (directions, hidden, padded gates * hidden): each direction's weight_hh transposed
    bias: torch.Tensor | None  # (directions, 1, padded gates * hidden) GRU only: the new gate's hidden bias
    distinct: int  # rows of the table per direction (the distinct ids, at least MIN_ROWS)
    minus_one: torch.Tensor  # () -1, for 2 x - 1 in one call


def _tanh_columns(cell: str, nonlinearity: str, hidden: int) -> slice | None:
    """The gate columns passed through tanh: GRU's new gate, LSTM's cell input, a tanh simple RNN."""
    if cell in ("gru", "lstm"):
        return slice(2 * hidden, 3 * hidden)
    return slice(0, hidden) if nonlinearity == "tanh" else None


def _step_weights(network: nn.Module, used: torch.Tensor) -> _Weights:
    """Every direction's step weights, with the input projection of the ids ``used`` ``(distinct,)``
    (at least MIN_ROWS of them: the caller pads)."""
    rnn, config = network.rnn, network.config
    hidden = rnn.hidden_size
    width = GATES[config.cell] * hidden
    doubled = _tanh_columns(config.cell, config.nonlinearity, hidden)
    # Zero columns up to whole vectors: every product then has whole vectors of outputs.
    padding = (0, _padded(width) - width)
    tables, recurrents, biases = [], [], []
    for suffix in ("", "_reverse")[: 2 if rnn.bidirectional else 1]:
        weight_ih, weight_hh = (nn.functional.pad(getattr(rnn, f"{kind}_l0{suffix}").t(), padding)
                                for kind in ("weight_ih", "weight_hh"))  # (input or hidden, padded width)
        bias_ih, bias_hh = (nn.functional.pad(getattr(rnn, f"{kind}_l0{suffix}"), padding) for kind in ("bias_ih", "bias_hh"))
        table = torch.addmm(bias_ih, network.embedding.weight[used], weight_ih)  # (distinct, padded width)
        bias = torch.zeros_like(bias_hh)
        if config.cell == "gru":
            # The reset and update gates add both biases; the new gate's hidden bias is
            # multiplied by the reset gate with the hidden product, so it stays with that product.
            table[:, : 2 * hidden] += bias_hh[: 2 * hidden]
            bias[2 * hidden:] = bias_hh[2 * hidden:]
        else:
            table += bias_hh
        if doubled is not None:
            table[:, doubled] *= 2
            weight_hh[:, doubled] *= 2
            bias[doubled] *= 2
        tables.append(table)
        recurrents.append(weight_hh)
        biases.append(bias)
    bias = torch.stack(biases).unsqueeze(1) if config.cell == "gru" else None
    return _Weights(torch.cat(tables), torch.stack(recurrents), bias, len(used), torch.tensor(-1.0))


def _tanh_from_doubled(doubled: torch.Tensor, out: torch.Tensor, minus_one: torch.Tensor) -> torch.Tensor:
    """``out = tanh(x) = 2 * sigmoid(2 x) - 1`` from ``doubled = 2 x`` (``out`` may be ``doubled``).

    Equal to torch's tanh to float32 rounding, and several times faster on the CPU; ``minus_one``
    is a tensor so that ``2 s - 1`` is one call.
    """
    return torch.add(minus_one, torch.sigmoid(doubled, out=out), alpha=2, out=out)


# Each cell's step works in place on views of the batch's buffers, made again only when the
# number of reading rows changes (making views costs as much as a small kernel). A view
# function gets the first ``m`` rows of each buffer, ``(m, directions, width)``: gates and
# scratch ``work`` at their padded widths (the matrix products write whole padded rows), state
# and LSTM memory at ``hidden``. The product runs on all ``m`` rows (at least MIN_ROWS: rows past
# ``rows`` are finished or padding, and only scratch is written for them), the gate arithmetic
# on the first ``rows``. ``*_t`` are the ``(directions, m, width)`` transposes that the batched
# product reads and writes.


def _gru_views(gates, work, state, memory, rows, hidden):
    """Views for :func:`_gru_step`: reset and update columns, new-gate columns, and the hidden product's."""
    h = hidden
    row_gates, row_work = gates[:rows], work[:rows]
    return (state.transpose(0, 1), work.transpose(0, 1), state[:rows], row_gates[..., : 2 * h],
            row_work[..., : 2 * h], row_gates[..., 2 * h: 3 * h], row_gates[..., :h], row_work[..., 2 * h: 3 * h],
            row_gates[..., h: 2 * h])


def _gru_step(views, weights: _Weights) -> None:
    """``h = n + z (h - n)``, ``n = tanh(x_n + r (W_hn h + b_hn))``; r, z sigmoids of input plus hidden products."""
    state_t, work_t, state, reset_update, hidden_reset_update, new, reset, hidden_new, update = views
    torch.baddbmm(weights.bias, state_t, weights.recurrent, out=work_t)  # (directions, m, padded 3H)
    reset_update.add_(hidden_reset_update).sigmoid_()
    _tanh_from_doubled(new.addcmul_(reset, hidden_new), new, weights.minus_one)
    torch.lerp(new, state, update, out=state)


def _lstm_views(gates, work, state, memory, rows, hidden):
    """Views for :func:`_lstm_step`: each gate's columns."""
    h = hidden
    row_gates = gates[:rows]
    return (gates.transpose(0, 1), state.transpose(0, 1), row_gates[..., : 4 * h], state[:rows], memory[:rows],
            work[:rows, :, :h], row_gates[..., :h], row_gates[..., h: 2 * h], row_gates[..., 2 * h: 3 * h],
            row_gates[..., 3 * h: 4 * h])


def _lstm_step(views, weights: _Weights) -> None:
    """``c = f c + i g``, ``h = o tanh(c)``; i, f, o sigmoids and g a tanh of input plus hidden products."""
    gates_t, state_t, gates, state, memory, work, input_gate, forget, cell_input, output = views
    gates_t.baddbmm_(state_t, weights.recurrent)
    gates.sigmoid_()
    torch.add(weights.minus_one, cell_input, alpha=2, out=cell_input)  # the cell input's sigmoid becomes its tanh
    memory.mul_(forget).addcmul_(input_gate, cell_input)
    torch.mul(output, _tanh_from_doubled(torch.mul(memory, 2, out=work), work, weights.minus_one), out=state)


def _simple_views(gates, work, state, memory, rows, hidden):
    """Views for the simple cell's steps."""
    return gates.transpose(0, 1), state.transpose(0, 1), gates[:rows, :, :hidden], state[:rows]


def _relu_step(views, weights: _Weights) -> None:
    """``h = relu(x + W_hh h)``, the input projection ``x`` already holding both biases."""
    gates_t, state_t, gates, state = views
    gates_t.baddbmm_(state_t, weights.recurrent)
    torch.clamp_min(gates, 0.0, out=state)


def _tanh_step(views, weights: _Weights) -> None:
    """``h = tanh(x + W_hh h)``, from the doubled pre-activation."""
    gates_t, state_t, gates, state = views
    gates_t.baddbmm_(state_t, weights.recurrent)
    _tanh_from_doubled(gates, state, weights.minus_one)


# A plain mapping from the cell (the simple cell with its nonlinearity) to its views and step.
STEPS: dict[str, tuple[Callable, Callable]] = {
    "gru": (_gru_views, _gru_step), "lstm": (_lstm_views, _lstm_step),
    "simple relu": (_simple_views, _relu_step), "simple tanh": (_simple_views, _tanh_step),
}


def _cell_kind(config) -> str:
    """The key of ``config``'s cell in :data:`STEPS`."""
    return f"simple {config.nonlinearity}" if config.cell == "simple" else config.cell


@dataclass
class _Read:
    """What the pass over a batch keeps, each ``(batch, directions, hidden)`` unless said otherwise or None."""

    last: torch.Tensor  # the state after each row's last step
    maximum: torch.Tensor | None
    total: torch.Tensor | None
    states: torch.Tensor | None  # (time, batch, directions, hidden), step t of each row at [t]; zero after it


def _buffer(rows: int, directions: int, width: int) -> torch.Tensor:
    """A zero buffer ``(rows, directions, width)`` rounded up to whole vectors: ``(rows, directions, padded width)``."""
    return torch.zeros(rows, directions, _padded(width))


def _read(network: nn.Module, weights: _Weights, step_ids: tuple[torch.Tensor, ...], reading: list[int],
          needs: frozenset[str]) -> _Read:
    """Run every direction over one batch: at step ``t`` the first ``reading[t]`` rows read, and
    the first ``max(reading[t], MIN_ROWS)`` rows gather the table rows ``step_ids[t]`` (row by
    row, the directions inner)."""
    config = network.config
    batch, directions, hidden = reading[0], weights.recurrent.shape[0], network.rnn.hidden_size
    make_views, step = STEPS[_cell_kind(config)]
    width = GATES[config.cell] * hidden
    padded_rows = max(batch, MIN_ROWS)
    gates = _buffer(padded_rows, directions, width)
    work = _buffer(padded_rows, directions, width if config.cell == "gru" else hidden)
    state = _buffer(padded_rows, directions, hidden)[..., :hidden]
    memory = _buffer(padded_rows, directions, hidden)[..., :hidden] if config.cell == "lstm" else None
    maximum = torch.full((batch, directions, hidden), -math.inf) if "max" in needs else None
    total = torch.zeros(batch, directions, hidden) if "mean" in needs else None
    states = torch.zeros(len(reading), batch, directions, hidden) if "states" in needs else None
    rows = 0
    for t, (ids, count) in enumerate(zip(step_ids, reading)):
        if count != rows:
            rows, gathered = count, max(count, MIN_ROWS)
            flat_gates = gates[:gathered].view(gathered * directions, -1)  # whole padded rows, for the gather
            views = make_views(gates[:gathered], work[:gathered], state[:gathered],
                               None if memory is None else memory[:gathered], rows, hidden)
            row_state = state[:rows]
            row_maximum = None if maximum is None else maximum[:rows]
            row_total = None if total is None else total[:rows]
        torch.index_select(weights.table, 0, ids, out=flat_gates)
        step(views, weights)
        if row_maximum is not None:
            torch.maximum(row_maximum, row_state, out=row_maximum)
        if row_total is not None:
            row_total.add_(row_state)
        if states is not None:
            states[t, :rows] = row_state
    return _Read(state[:batch], maximum, total, states)


def _summary(network: nn.Module, read: _Read, lengths: torch.Tensor, masked: bool) -> torch.Tensor:
    """The pooling's summary ``(batch, summary)`` from the read, as the model's pooling gives it;
    ``lengths (batch,)`` int64. Each ``(batch, directions, hidden)`` value flattens to the
    directions side by side, the order in which the model's states hold them."""
    pooling, batch = network.pooling, len(lengths)
    if isinstance(pooling, LastState):
        return read.last.reshape(batch, -1)
    if isinstance(pooling, StatisticPooling):
        pooled = []  # max before mean, as StatisticPooling joins them
        if pooling.kind != "mean":
            pooled.append(read.maximum.reshape(batch, -1))
        if pooling.kind != "max":
            pooled.append(read.total.reshape(batch, -1) / lengths[:, None].float())
        return torch.cat(pooled, dim=-1)
    # Attention: the states at their positions (batch, time, directions * hidden), zero past
    # each row's end; the backward direction's step t of a row is its position length - 1 - t.
    states = read.states.permute(2, 1, 0, 3)  # (directions, batch, time, hidden)
    states = [states[0]] + [reverse_within_lengths(backward, lengths) for backward in states[1:]]
    time = states[0].shape[1]
    mask = torch.arange(time)[None, :] < lengths[:, None] if masked else None
    return pooling(torch.cat(states, dim=-1), None, mask)


def _needs(pooling: nn.Module) -> frozenset[str]:
    """What the read must keep for ``pooling``: ``max``, ``mean``, ``states`` (the last state always)."""
    if isinstance(pooling, StatisticPooling):
        return frozenset({"max", "mean"} if pooling.kind == "maxmean" else {pooling.kind})
    return frozenset({"states"}) if isinstance(pooling, AttentionPooling) else frozenset()


def _step_ids(local: np.ndarray, lengths: np.ndarray, directions: int, distinct: int,
              reading: list[int]) -> tuple[torch.Tensor, ...]:
    """Each step's table rows ``(max(reading[t], MIN_ROWS) * directions,)`` for a batch of table
    rows ``local (batch, time)`` sorted longest first: row by row, the forward direction's then
    the backward one's (which reads the row reversed within its length, from the second table).
    The rows gathered past the reading ones (finished rows, then rows of padding) are scratch."""
    batch, time = local.shape
    padding = max(MIN_ROWS - batch, 0)
    local = np.pad(local, ((0, padding), (0, 0)))
    lengths = np.pad(lengths, (0, padding), constant_values=time)
    steps = np.arange(time)
    per_direction = [local]
    if directions == 2:
        source = np.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)  # reversed within length
        per_direction.append(np.take_along_axis(local, source, axis=1) + distinct)
    by_step = np.stack(per_direction, axis=-1).transpose(1, 0, 2)  # (time, rows, directions)
    gathered = np.maximum(reading, MIN_ROWS)
    taken = np.arange(len(local))[None, :] < gathered[:, None]  # (time, rows): a prefix of each step's rows
    packed = torch.from_numpy(np.ascontiguousarray(by_step[taken]).reshape(-1))
    return torch.split(packed, (gathered * directions).tolist())


def _head_logits(network: nn.Module, summary: torch.Tensor) -> torch.Tensor:
    """The head's logits ``(batch,)`` or ``(batch, K)``, its product padded to at least MIN_ROWS rows and outputs."""
    head, batch = network.head, len(summary)
    outputs = head.out_features
    weight = nn.functional.pad(head.weight, (0, 0, 0, max(MIN_ROWS - outputs, 0)))  # (outputs+, summary)
    bias = nn.functional.pad(head.bias, (0, max(MIN_ROWS - outputs, 0)))
    rows = nn.functional.pad(summary, (0, 0, 0, max(MIN_ROWS - batch, 0)))
    logits = torch.addmm(bias, rows, weight.t())[:batch, :outputs]
    return logits.squeeze(-1) if network.outputs == 1 else logits


def _score_batch(model: Classifier, weights: _Weights, local: np.ndarray, ids: np.ndarray,
                 lengths: np.ndarray) -> dict[str, torch.Tensor]:
    """Each part's logits for one batch: ``ids (batch, time)`` sorted longest first, cut to the
    longest, ``local`` the same rows' rows in the step tables, and their ``lengths (batch,)``."""
    network, branch = recurrent_network(model), ngram_branch(model)
    with torch.inference_mode():
        # reading[t]: how many rows still read at step t, a prefix since rows are sorted longest first.
        reading = (len(lengths) - np.searchsorted(lengths[::-1], np.arange(ids.shape[1]), side="right")).tolist()
        directions = weights.recurrent.shape[0]
        step_ids = _step_ids(local, lengths, directions, weights.distinct, reading)
        read = _read(network, weights, step_ids, reading, _needs(network.pooling))
        summary = _summary(network, read, torch.from_numpy(lengths), network.config.use_lengths)
        parts = {"recurrent": _head_logits(network, summary)}
        if branch is not None:
            # Summed in float64, so that a row's logit does not depend on the batch's longest row.
            parts["ngrams"] = branch.logits(torch.from_numpy(ids), accumulate=torch.float64)
        parts["model"] = model.combine(parts)
        return parts


def _distinct_ids(ids: np.ndarray, vocabulary: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ids of ``ids (n, time)`` (padding included, which costs nothing), at least
    MIN_ROWS of them (the padding id again, unread), and each id's position among them ``(n, time)``.

    Few ids against a large vocabulary are sorted; many are marked in a table of the vocabulary.
    """
    if ids.size * 8 < vocabulary:
        used, positions = np.unique(ids, return_inverse=True)
        positions = positions.reshape(ids.shape)
    else:
        present = np.zeros(vocabulary, dtype=bool)
        present[ids.ravel()] = True
        used, positions = np.flatnonzero(present), (np.cumsum(present) - 1)[ids]
    return np.pad(used, (0, max(MIN_ROWS - len(used), 0))), positions


def fast_part_logits(model: Classifier, ids: np.ndarray | torch.Tensor, lengths: np.ndarray | torch.Tensor | None,
                     batch_size: int, workers: int = 1) -> dict[str, torch.Tensor]:
    """Each part's logits (``recurrent``, ``ngrams`` when the model has them, and ``model``),
    ``(n,)`` or ``(n, K)``, for id rows ``(n, time)`` with true lengths ``(n,)``, in input order.

    Rows are read as the model's forward reads them: up to each row's length (at least 1)
    for a model with ``use_lengths``, every column otherwise. ``workers`` threads score the
    batches of ``batch_size`` rows, each torch call on one thread.
    """
    assert fast_forward_supported(model)
    network = recurrent_network(model)
    ids = np.asarray(ids.numpy() if isinstance(ids, torch.Tensor) else ids, dtype=np.int64)
    count, width = ids.shape
    names = ["recurrent", *(["ngrams"] if ngram_branch(model) is not None else []), "model"]
    if not count:
        outputs = () if network.outputs == 1 else (network.outputs,)
        return {name: torch.zeros((0, *outputs)) for name in names}
    if network.config.use_lengths:
        assert lengths is not None, "use_lengths needs the true lengths"
        lengths = np.clip(np.asarray(lengths, dtype=np.int64), 1, max(width, 1))
    else:
        lengths = np.full(count, width, dtype=np.int64)
    used, local = _distinct_ids(ids, network.embedding.num_embeddings)
    with torch.inference_mode():
        weights = _step_weights(network, torch.from_numpy(used))
    order = np.argsort(-lengths, kind="stable")
    batches = [order[start:start + batch_size] for start in range(0, count, batch_size)]

    def score(rows: np.ndarray) -> dict[str, torch.Tensor]:
        row_lengths = lengths[rows]
        time = int(row_lengths[0])
        return _score_batch(model, weights, local[rows, :time], ids[rows, :time], row_lengths)

    with scoring_threads(1):
        if workers > 1 and len(batches) > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                scored = list(pool.map(score, batches))
        else:
            scored = [score(rows) for rows in batches]
    position = torch.from_numpy(order)
    result = {}
    for name in names:
        values = torch.cat([parts[name] for parts in scored])  # (n, ...) in sorted order
        result[name] = torch.empty_like(values).index_copy_(0, position, values)
    return result
