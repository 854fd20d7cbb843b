"""Batch orders for training and chunks for streaming."""

from __future__ import annotations

from typing import Iterator

import numpy as np


def epoch_batches(
    count: int,
    batch_size: int,
    seed: int,
    epoch: int,
    lengths: np.ndarray | None = None,
    rank: int = 0,
    world_size: int = 1,
    stream: int | None = None,
) -> list[np.ndarray]:
    """The index batches of one epoch, a pure function of ``(seed, epoch)``.

    Every rank computes the same global batches of ``batch_size`` and takes its own
    interleaved share of each, so that N ranks with batch B/N see exactly the examples one
    process with batch B would. With ``lengths`` given, reviews of similar length are batched
    together (sorted within large random windows) and the batch order is shuffled. A ``stream``
    number draws an order independent of the training reviews' (the unlabelled texts' batches).
    """
    rng = np.random.default_rng([seed, epoch] if stream is None else [seed, epoch, stream])
    order = rng.permutation(count)
    if lengths is not None:
        window = batch_size * 50
        order = np.concatenate([
            chunk[np.argsort(-lengths[chunk], kind="stable")] for chunk in np.array_split(order, max(1, -(-count // window)))
        ]) if count else order
    batches = [order[start:start + batch_size] for start in range(0, count, batch_size)]
    if lengths is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    if world_size > 1:
        batches = [batch[rank::world_size] for batch in batches if len(batch) >= world_size]
    return batches


def iter_text_chunks(texts: Iterator[str], size: int) -> Iterator[list[str]]:
    """Group a stream of texts into lists of at most ``size``."""
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
