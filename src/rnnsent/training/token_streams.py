"""The contiguous token streams a language model trains on and is scored on.

Reviews (each already ``<start> word ...``, so the start id marks every boundary) are
concatenated in an order drawn from the run's seed into one stream, which is cut into
``batch`` contiguous rows ``(batch, length)``: row ``b`` continues where its previous segment
ended, so a recurrent state carried from one segment to the next has read the text before it
(truncated back-propagation through time). The backward language model reads the same
stream reversed: :func:`reversed_rows`.

The held-out stream, for perplexity, is a fixed slice of the unlabelled reviews (of the
training reviews when a source has none), never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rnnsent.data.splits import HELD_OUT_SEED
from rnnsent.errors import DataError

HELD_OUT_TEXTS = 500  # reviews held out for perplexity: about 120,000 tokens of IMDB
HELD_OUT_FRACTION = 0.05  # at most this fraction of a small pool is held out
HELD_OUT_ROWS = 16  # the held-out stream is scored as this many rows


@dataclass
class TokenStreams:
    """The training stream and the held-out stream as int64 ids, and how many reviews each holds."""

    train: np.ndarray  # (tokens,) int64
    held_out: np.ndarray  # (tokens,) int64; may be empty
    training_reviews: int
    unlabelled_reviews: int
    held_out_reviews: int


def _reviews(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Each review of a flat ``(flat, offsets)`` pair as its own array."""
    return np.split(np.asarray(flat, dtype=np.int64), np.asarray(offsets[1:-1]))


def token_streams(reviews: list[tuple[np.ndarray, np.ndarray]], seed: int) -> TokenStreams:
    """The streams of ``reviews``: ``[(flat, offsets) of the training reviews, then of the
    unlabelled ones, if any]`` (as :func:`rnnsent.training.vectors.pretraining_reviews` gives them).

    The held-out slice is drawn with a fixed seed from the unlabelled reviews when there are
    any, else from the training reviews; the rest is shuffled with ``seed`` and concatenated.
    """
    training = _reviews(*reviews[0])
    unlabelled = [review for pair in reviews[1:] for review in _reviews(*pair)]
    pool = unlabelled if unlabelled else training
    count = 0 if len(pool) < 2 else max(1, min(HELD_OUT_TEXTS, int(len(pool) * HELD_OUT_FRACTION)))
    held = set(np.random.default_rng(HELD_OUT_SEED).permutation(len(pool))[:count].tolist())
    held_out = [review for index, review in enumerate(pool) if index in held]
    kept_pool = [review for index, review in enumerate(pool) if index not in held]
    texts = [*training, *kept_pool] if unlabelled else kept_pool
    order = np.random.default_rng(seed).permutation(len(texts))
    train = np.concatenate([texts[i] for i in order]) if texts else np.zeros(0, dtype=np.int64)
    held_stream = np.concatenate(held_out) if held_out else np.zeros(0, dtype=np.int64)
    trained_unlabelled = len(kept_pool) if unlabelled else 0
    trained_training = len(training) if unlabelled else len(kept_pool)
    return TokenStreams(train, held_stream, trained_training, trained_unlabelled, len(held_out))


def stream_rows(stream: np.ndarray, batch: int, bptt: int) -> torch.Tensor:
    """``(batch, length)`` int64: the stream cut into ``batch`` contiguous rows (the tail that
    does not fill a row is dropped). Raises :class:`DataError` when a row cannot hold one segment."""
    length = len(stream) // batch
    if length < bptt + 1:
        raise DataError(f"the language model's text ({len(stream):,} tokens) is too short for --lm-batch-size "
                        f"{batch} x --lm-bptt {bptt}; give it more text or lower them")
    return torch.from_numpy(np.ascontiguousarray(stream[: batch * length], dtype=np.int64)).view(batch, length)


def held_out_rows(stream: np.ndarray) -> torch.Tensor | None:
    """The held-out stream as ``(rows, length)`` for scoring, or None when it is too short to score."""
    rows = min(HELD_OUT_ROWS, len(stream) // 2)
    if rows < 1:
        return None
    length = len(stream) // rows
    return torch.from_numpy(np.ascontiguousarray(stream[: rows * length], dtype=np.int64)).view(rows, length)


def reversed_rows(rows: torch.Tensor) -> torch.Tensor:
    """The rows of the reversed stream: row ``b`` is row ``batch - 1 - b`` read right to left,
    so the rows again cut one stream, the original one reversed, into contiguous pieces."""
    return rows.flip([0, 1])


def segments_per_pass(rows: torch.Tensor, bptt: int) -> int:
    """How many whole segments of ``bptt`` inputs (each with its next-token target) one pass holds."""
    return (rows.shape[1] - 1) // bptt


def segment(rows: torch.Tensor, index: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment ``index`` of a pass: ``(inputs (batch, bptt), targets (batch, bptt))``, the targets
    being the inputs shifted one token on."""
    start = index * bptt
    return rows[:, start:start + bptt], rows[:, start + 1:start + bptt + 1]
