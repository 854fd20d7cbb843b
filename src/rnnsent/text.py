"""Text to token ids and back: normalise, tokenize, vocabulary, encode/decode, pad.

The conventions are those of Keras' IMDB loader and Tokenizer, which the seed notebook used:
lower-case, ``<br />`` to a space, Keras' default punctuation filters replaced by spaces,
split on whitespace. Ids 0, 1 and 2 are padding, start-of-review and out-of-vocabulary;
words take ids from ``index_from`` upwards in order of training-set frequency, and only
ids below ``num_words`` are kept.
"""

from __future__ import annotations

from collections import Counter
from itertools import chain
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from rnnsent.config import TextConfig

PAD_ID = 0
START_ID = 1
OOV_ID = 2
PAD_TOKEN, START_TOKEN, OOV_TOKEN = "<pad>", "<start>", "<oov>"

# Keras' Tokenizer default `filters`: these characters become word separators.
KERAS_FILTERS = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n"
_FILTER_TABLE = str.maketrans({character: " " for character in KERAS_FILTERS})


def normalize(text: str) -> str:
    """Lower-case, turn HTML line breaks and Keras' filtered punctuation into spaces."""
    return text.lower().replace("<br />", " ").translate(_FILTER_TABLE)


def tokenize(text: str) -> list[str]:
    """Split normalised text into words (any run of whitespace separates words)."""
    return normalize(text).split()


@dataclass(frozen=True)
class Vocabulary:
    """Words in id order: ``words[i]`` has id ``index_from + i``."""

    words: tuple[str, ...]
    index_from: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ids", {word: self.index_from + i for i, word in enumerate(self.words)})

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], num_words: int, index_from: int = 3) -> "Vocabulary":
        """Rank words by training-set frequency; ties go to the alphabetically first word.

        Only the ``num_words - index_from`` most frequent words are kept, so every id is
        below ``num_words``.
        """
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        keep = max(num_words - index_from, 0)
        return cls(tuple(word for word, _ in ranked[:keep]), index_from)

    @property
    def size(self) -> int:
        """Number of ids, reserved ones included (the embedding table's row count)."""
        return self.index_from + len(self.words)

    def id(self, word: str) -> int:
        """The id of a word, or the out-of-vocabulary id."""
        return self._ids.get(word, OOV_ID)  # type: ignore[attr-defined]

    def ids(self, words: Iterable[str]) -> list[int]:
        lookup = self._ids.get  # type: ignore[attr-defined]
        return [lookup(word, OOV_ID) for word in words]

    def word(self, token_id: int) -> str:
        """The word for an id; reserved ids map to ``<pad>``, ``<start>``, ``<oov>``."""
        if token_id == PAD_ID:
            return PAD_TOKEN
        if token_id == START_ID:
            return START_TOKEN
        position = token_id - self.index_from
        if 0 <= position < len(self.words):
            return self.words[position]
        return OOV_TOKEN


class TextEncoder:
    """Applies a :class:`TextConfig` and a :class:`Vocabulary` to raw text."""

    def __init__(self, vocabulary: Vocabulary, config: TextConfig) -> None:
        assert vocabulary.index_from == config.index_from
        self.vocabulary = vocabulary
        self.config = config

    def encode(self, text: str) -> list[int]:
        """The whole review as ids: the start id, then one id per word (no cut, no padding)."""
        return [START_ID, *self.vocabulary.ids(tokenize(text))]

    def kept_words(self, text: str) -> tuple[list[str], bool]:
        """The words that survive truncation (start token not included), and whether any were cut.

        Under "pre" truncation only the end of a long text can matter (its start under
        "post"), so a window of the text is tokenized first. The word at the window's cut edge
        may be a fragment, so it is never used; when the window holds enough whole words the
        result is exactly that of tokenizing the whole text, else the window grows.
        """
        maxlen = self.config.maxlen
        pre_truncation = self.config.truncating == "pre"
        window = 16 * maxlen
        while window < len(text):
            part = tokenize(text[-window:] if pre_truncation else text[:window])
            if len(part) > maxlen:
                return (part[-maxlen:] if pre_truncation else part[: maxlen - 1]), True
            window *= 4
        words = tokenize(text)
        if len(words) + 1 <= maxlen:
            return words, False
        return (words[-maxlen:] if pre_truncation else words[: maxlen - 1]), True

    def kept_tokens(self, text: str) -> tuple[list[str], bool]:
        """The tokens the model reads (``<start>`` included when it survives), and whether any were cut."""
        words, truncated = self.kept_words(text)
        keeps_start = not truncated or self.config.truncating == "post"
        return ([START_TOKEN, *words] if keeps_start else words), truncated

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Encode, truncate and pad many texts: ``(ids (n, maxlen) int64, lengths (n,) int64)``.

        Only the words that survive truncation are tokenized and looked up, which keeps
        inference on long reviews cheap.
        """
        lookup = self.vocabulary._ids.get  # type: ignore[attr-defined]
        post_truncation = self.config.truncating == "post"
        rows = []
        for text in texts:
            words, truncated = self.kept_words(text)
            ids = [lookup(word, OOV_ID) for word in words]
            rows.append(ids if truncated and not post_truncation else [START_ID, *ids])
        return pad_rows(rows, self.config.maxlen, self.config.padding)

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
