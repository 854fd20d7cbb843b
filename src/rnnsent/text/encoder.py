"""Text to token ids and back: normalise, tokenize, vocabulary, encode/decode, pad.

The conventions are those of Keras' IMDB loader and Tokenizer, which the seed notebook used:
lower-case, ``<br />`` to a space, Keras' default punctuation filters replaced by spaces,
split on whitespace. Ids 0, 1 and 2 are padding, start-of-review and out-of-vocabulary;
words take ids from ``index_from`` upwards in order of training-set frequency, and only
ids below ``num_words`` are kept.
"""

from __future__ import annotations

from itertools import chain
from typing import Iterable, Sequence

import numpy as np

from rnnsent.config import TextConfig
from rnnsent.text.tokenize import tokenize, tokenize_head, tokenize_tail
from rnnsent.text.vocabulary import OOV_ID, PAD_ID, START_ID, START_TOKEN, Vocabulary


class TextEncoder:
    """Applies a :class:`TextConfig` and a :class:`Vocabulary` to raw text."""

    def __init__(self, vocabulary: Vocabulary, config: TextConfig) -> None:
        assert vocabulary.index_from == config.index_from
        self.vocabulary = vocabulary
        self.config = config

    def encode(self, text: str) -> list[int]:
        """The whole review as ids: the start id, then one id per word (no cut, no padding)."""
        return [START_ID, *self.vocabulary.ids(tokenize(text))]

    def kept_tokens(self, text: str) -> tuple[list[str], bool]:
        """The tokens the model reads (``<start>`` included when it survives), and whether any were cut."""
        maxlen = self.config.maxlen
        # At most maxlen words are needed to tell whether the text fits with its start token.
        if self.config.truncating == "pre":
            words = tokenize_tail(text, maxlen)
            return ([START_TOKEN, *words], False) if len(words) < maxlen else (words, True)
        words = tokenize_head(text, maxlen)
        return ([START_TOKEN, *words], False) if len(words) < maxlen else ([START_TOKEN, *words[: maxlen - 1]], True)

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Encode, truncate and pad many texts: ``(ids (n, maxlen) int64, lengths (n,) int64)``.

        Only the end of each text that survives truncation is tokenized and looked up, so
        the cost per text is bounded by ``maxlen``, not by the text's length.
        """
        maxlen = self.config.maxlen
        pre_truncation = self.config.truncating == "pre"
        lookup = self.vocabulary._ids.get  # type: ignore[attr-defined]
        rows = []
        for text in texts:
            # maxlen words are enough to tell whether the text fits beside its start token.
            words = tokenize_tail(text, maxlen) if pre_truncation else tokenize_head(text, maxlen)
            if len(words) + 1 <= maxlen:
                row = [START_ID, *[lookup(word, OOV_ID) for word in words]]
            elif pre_truncation:
                row = [lookup(word, OOV_ID) for word in words]
            else:
                row = [START_ID, *[lookup(word, OOV_ID) for word in words[: maxlen - 1]]]
            rows.append(row)
        return pad_rows(rows, maxlen, self.config.padding)

    def decode(self, ids: Iterable[int], skip_padding: bool = True) -> list[str]:
        """Ids back to words; padding is dropped unless ``skip_padding`` is false."""
        return [self.vocabulary.word(int(i)) for i in ids if not (skip_padding and int(i) == PAD_ID)]


def pad_rows(rows: Sequence[Sequence[int]], maxlen: int, padding: str) -> tuple[np.ndarray, np.ndarray]:
    """Pad rows already no longer than ``maxlen``: ``(ids (n, maxlen), lengths (n,))``."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    assert lengths.size == 0 or lengths.max() <= maxlen
    flat = np.array(list(chain.from_iterable(rows)), dtype=np.int64)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pad_sequences(flat, offsets, maxlen, padding=padding, truncating="pre")


def pad_sequences(
    flat: np.ndarray, offsets: np.ndarray, maxlen: int, padding: str = "pre", truncating: str = "pre"
) -> tuple[np.ndarray, np.ndarray]:
    """Keras' ``pad_sequences`` on ragged rows stored flat.

    Row ``i`` is ``flat[offsets[i]:offsets[i + 1]]``. Returns ``(ids (n, maxlen) int64,
    lengths (n,) int64)`` where ``lengths`` counts the kept (non-padding) tokens.
    """
    row_lengths = np.diff(offsets)
    kept = np.minimum(row_lengths, maxlen)
    # First flat position kept in each row: "pre" truncation keeps a row's tail.
    first = offsets[:-1] + (row_lengths - kept if truncating == "pre" else 0)
    # Column of a row's first kept token: "pre" padding right-aligns the row.
    first_column = maxlen - kept if padding == "pre" else np.zeros_like(kept)
    n = len(row_lengths)
    out = np.zeros((n, maxlen), dtype=np.int64)
    total = int(kept.sum())
    if total:
        rows = np.repeat(np.arange(n), kept)
        # Position of each kept token within its row's kept span.
        within = np.arange(total) - np.repeat(np.cumsum(kept) - kept, kept)
        out[rows, np.repeat(first_column, kept) + within] = flat[np.repeat(first, kept) + within]
    return out, kept.astype(np.int64)


def encode_corpus(texts: Sequence[str], vocabulary: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Whole reviews (start id + word ids) stored flat: ``(ids int32, offsets int64)``."""
    lookup = vocabulary._ids.get  # type: ignore[attr-defined]
    lengths = np.empty(len(texts), dtype=np.int64)
    chunks = []
    for i, text in enumerate(texts):
        row = [START_ID, *[lookup(word, OOV_ID) for word in tokenize(text)]]
        lengths[i] = len(row)
        chunks.append(np.asarray(row, dtype=np.int32))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    return flat, offsets
