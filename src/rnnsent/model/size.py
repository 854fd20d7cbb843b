"""What a model will cost before it is built: parameters and memory, from its config alone.

Settings can each be in range and still describe a model this machine cannot hold (a
20,000-unit, 16-layer bidirectional LSTM; a 10-million-word, 4096-wide embedding). The command
line, the API and the model loader check here first, so the answer is a one-line error with
the figure and what to change, not an out-of-memory kill or an allocator's traceback.
"""

from __future__ import annotations

import os

from rnnsent.config import RunConfig
from rnnsent.errors import ConfigError

GATES = {"simple": 1, "gru": 3, "lstm": 4}
BYTES = 4  # float32


def parameter_count(config: RunConfig, outputs: int = 1) -> int:
    """The number of learned values of the model ``config`` describes (with ``outputs`` logits)."""
    model, vocab = config.model, config.text.num_words
    directions = 2 if model.bidirectional else 1
    gates = GATES[model.cell]
    total = vocab * model.embedding_dim
    inputs = model.embedding_dim
    for _ in range(model.num_layers):
        # Per direction: input and recurrent kernels and two biases for each gate.
        total += directions * gates * model.hidden_size * (inputs + model.hidden_size + 2)
        inputs = directions * model.hidden_size
    summary = inputs * (2 if model.pooling == "maxmean" else 1)
    total += summary * outputs + outputs + (inputs if model.pooling == "attention" else 0)
    if model.ngram_buckets:
        # An ordinal branch holds one column per cut between neighbouring labels, and its readout.
        ordinal = model.ngram_fit == "ordinal" and outputs > 2
        total += (vocab + model.ngram_buckets + 1) * (outputs - 1 if ordinal else outputs)
    return total


def training_bytes(config: RunConfig, outputs: int = 1) -> int:
    """A generous estimate of the memory a training step needs: the weights with their gradients
    and two optimiser moments, and one batch's activations kept for backpropagation."""
    model, train = config.model, config.train
    directions = 2 if model.bidirectional else 1
    per_token = model.embedding_dim + model.num_layers * directions * model.hidden_size * (GATES[model.cell] + 2)
    activations = train.batch_size * config.text.maxlen * per_token * BYTES * 3
    return parameter_count(config, outputs) * BYTES * 4 + activations


def available_bytes() -> int:
    """The memory this process may still use: MemAvailable of /proc/meminfo, else physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_fits(config: RunConfig, outputs: int = 1, training: bool = True, available: int | None = None) -> None:
    """Raise :class:`ConfigError` when the model (and, for training, a step of it) cannot fit in memory."""
    available = available_bytes() if available is None else available
    needed = training_bytes(config, outputs) if training else parameter_count(config, outputs) * BYTES
    if needed > available:
        parameters = parameter_count(config, outputs)
        raise ConfigError(
            f"this model needs about {needed / 2**30:.1f} GiB ({parameters:,} parameters"
            f"{', with one batch of training' if training else ''}) but {available / 2**30:.1f} GiB is available; "
            "lower --num-words, --embedding-dim, --hidden-size, --num-layers, --ngram-buckets, --maxlen or --batch-size"
        )
