"""The token rows a language model trains on and is scored on.

Reviews (each ``<start> word ...``) are taken in an order drawn from the run's seed and laid
end to end into ``batch`` rows of segments of ``bptt`` tokens. Each review starts a new
segment and fills as many as it needs (its last one padded): a recurrent state carried from
one segment to the next within a review has read the review up to there (truncated
back-propagation through time), and it starts from zero at each review's first segment, as the
classifier reads every review. Without the reset, a state carried across hundreds of thousands
of tokens let units that never change act as learned constants: a language model trained with
its embedding fixed reached a training loss of 6.0 while scoring 15 nats a token on held-out
text read from a zero state.

Row ``b`` holds inputs ``(segments * bptt,)`` and next-token targets (the padding id where
there is nothing to predict). The backward language model reads the same rows with every
review reversed (:func:`review_rows` of :func:`reversed_reviews`): the same reviews in the same
places, each read from its last word back to ``<start>``, as the classifier's backward
direction reads it.

The held-out reviews, for perplexity, are a fixed slice of the unlabelled reviews (of the
training reviews when a source has none), never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rnnsent.data.splits import HELD_OUT_SEED
from rnnsent.errors import DataError
from rnnsent.text.vocabulary import PAD_ID

HELD_OUT_TEXTS = 500  # reviews held out for perplexity: about 120,000 tokens of IMDB
HELD_OUT_FRACTION = 0.05  # at most this fraction of a small pool is held out
HELD_OUT_ROWS = 16  # the held-out reviews are scored as this many rows


@dataclass
class TokenStreams:
    """The reviews a language model trains on and those held out, and how many of each kind."""

    train: list[np.ndarray]  # each (tokens,) int64: <start> and the words
    held_out: list[np.ndarray]
    training_reviews: int
    unlabelled_reviews: int

    @property
    def held_out_reviews(self) -> int:
        return len(self.held_out)


@dataclass
class SegmentRows:
    """Reviews laid into rows of segments: ``inputs`` and ``targets`` ``(batch, segments * bptt)``
    int64 (targets: the next token, :data:`PAD_ID` where nothing is predicted) and ``starts``
    ``(batch, segments)`` bool, true where a segment begins a review (the state is reset)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    starts: torch.Tensor
    bptt: int

    @property
    def segments(self) -> int:
        return self.starts.shape[1]

    def segment(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Segment ``index``: ``(inputs (batch, bptt), targets (batch, bptt), starts (batch,))``."""
        window = slice(index * self.bptt, (index + 1) * self.bptt)
        return self.inputs[:, window], self.targets[:, window], self.starts[:, index]

    def predicted(self) -> torch.Tensor:
        """``(segments,)`` int64: how many tokens each segment predicts, over all rows."""
        return (self.targets != PAD_ID).view(self.starts.shape[0], self.segments, self.bptt).sum(dim=(0, 2))

    def to(self, device: torch.device) -> "SegmentRows":
        return SegmentRows(self.inputs.to(device), self.targets.to(device), self.starts.to(device), self.bptt)


def _reviews(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Each review of a flat ``(flat, offsets)`` pair as its own array."""
    return np.split(np.asarray(flat, dtype=np.int64), np.asarray(offsets[1:-1]))


def token_streams(reviews: list[tuple[np.ndarray, np.ndarray]], seed: int) -> TokenStreams:
    """The reviews of ``[(flat, offsets) of the training reviews, then of the unlabelled ones,
    if any]`` (as :func:`rnnsent.training.vectors.pretraining_reviews` gives them), split into
    those trained on, in an order drawn from ``seed``, and those held out, drawn with a fixed
    seed from the unlabelled reviews when there are any, else from the training reviews."""
    training = _reviews(*reviews[0])
    unlabelled = [review for pair in reviews[1:] for review in _reviews(*pair)]
    pool = unlabelled if unlabelled else training
    count = 0 if len(pool) < 2 else max(1, min(HELD_OUT_TEXTS, int(len(pool) * HELD_OUT_FRACTION)))
    held = set(np.random.default_rng(HELD_OUT_SEED).permutation(len(pool))[:count].tolist())
    held_out = [review for index, review in enumerate(pool) if index in held]
    kept_pool = [review for index, review in enumerate(pool) if index not in held]
    texts = [*training, *kept_pool] if unlabelled else kept_pool
    order = np.random.default_rng(seed).permutation(len(texts))
    trained_training = len(training) if unlabelled else len(kept_pool)
    return TokenStreams([texts[i] for i in order], held_out, trained_training, len(kept_pool) if unlabelled else 0)


def reversed_reviews(reviews: list[np.ndarray]) -> list[np.ndarray]:
    """Every review read from its last token back to its first, in the same order."""
    return [review[::-1].copy() for review in reviews]


def direction_rows(reviews: list[np.ndarray], directions: list[str], batch: int, bptt: int,
                   whole: bool = False) -> dict[str, SegmentRows]:
    """The rows each direction reads: ``forward`` the reviews as they are, ``backward`` each reversed."""
    rows = {"forward": review_rows(reviews, batch, bptt, whole)}
    if "backward" in directions:
        rows["backward"] = review_rows(reversed_reviews(reviews), batch, bptt, whole)
    return rows


def review_segments(review: np.ndarray, bptt: int) -> int:
    """How many segments of ``bptt`` tokens one review fills: its ``len - 1`` next-token
    predictions, rounded up (none for a review of fewer than 2 tokens)."""
    return -(-(len(review) - 1) // bptt) if len(review) >= 2 else 0


def segment_count(reviews: list[np.ndarray], bptt: int) -> int:
    """How many segments of ``bptt`` tokens ``reviews`` fill, each review starting a new one."""
    return sum(review_segments(review, bptt) for review in reviews)


def review_rows(reviews: list[np.ndarray], batch: int, bptt: int, whole: bool = False) -> SegmentRows:
    """Lay ``reviews`` into ``batch`` rows of segments of ``bptt`` tokens (see the module docstring).

    Rows are filled one after another with whole reviews up to the same number of segments
    (``total // batch``, so that all rows step together; a review that would cross a row's end
    starts the next row, and the reviews left when the last row is full, a few per row, are
    not used); a review longer than a whole row is cut at its end. With ``whole`` every review
    is placed, each in the row with the fewest segments so far, and shorter rows are padded.
    Raises :class:`DataError` when the reviews do not fill one segment per row.
    """
    blocks = []  # per review: (inputs, targets) padded to whole segments
    for review in reviews:
        size = review_segments(review, bptt) * bptt
        if not size:
            continue  # nothing to predict
        inputs = np.full(size, PAD_ID, dtype=np.int64)
        targets = np.full(size, PAD_ID, dtype=np.int64)
        inputs[:len(review) - 1], targets[:len(review) - 1] = review[:-1], review[1:]
        blocks.append((inputs, targets))
    total = segment_count(reviews, bptt)
    per_row = total // batch
    if per_row < 1:
        raise DataError(f"the language model's text ({total:,} segments of --lm-bptt {bptt}) does not fill "
                        f"--lm-batch-size {batch} rows; give it more text or lower them")
    rows: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(batch)]
    filled = [0] * batch
    row = 0
    for inputs, targets in blocks:
        size = len(inputs) // bptt
        if whole:
            row = int(np.argmin(filled))
        elif filled[row] and filled[row] + size > per_row:
            row += 1
            if row == batch:
                break
        rows[row].append((inputs, targets))
        filled[row] += size
    segments = max(filled) if whole else per_row
    width = segments * bptt
    ids = np.full((2, batch, width), PAD_ID, dtype=np.int64)
    starts = np.zeros((batch, segments), dtype=bool)
    for index, blocks_of_row in enumerate(rows):
        position = 0
        for inputs, targets in blocks_of_row:
            if position >= width:
                break
            starts[index, position // bptt] = True
            length = min(len(inputs), width - position)
            ids[0, index, position:position + length] = inputs[:length]
            ids[1, index, position:position + length] = targets[:length]
            position += length
    return SegmentRows(torch.from_numpy(ids[0]), torch.from_numpy(ids[1]), torch.from_numpy(starts), bptt)
