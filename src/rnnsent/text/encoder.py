"""Text to token ids and back: the cut that decides what the model reads, encode/decode, pad.

The conventions are those of Keras' IMDB loader and Tokenizer, which the seed notebook used:
lower-case, ``<br />`` to a space, Keras' default punctuation filters replaced by spaces
(or, with the text setting ``punctuation="words"``, each mark a word of its own), split on
whitespace. Ids 0, 1 and 2 are padding, start-of-review and out-of-vocabulary;
words take ids from ``index_from`` upwards in order of training-set frequency, and only
ids below ``num_words`` are kept.

Every encoding goes through one function, :func:`kept_words`: a review is the start token
followed by its words, and Keras' truncation keeps its last (``pre``) or first (``post``)
``maxlen`` tokens. Only the words that survive the cut are tokenized, so a 10 MB text costs
what its kept end costs. Ids are the kept words looked up in the vocabulary; the whole
review, as the dataset cache stores it, is the same function with no cut.
"""

from __future__ import annotations

from functools import cached_property
from itertools import chain, repeat
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from rnnsent.config import TextConfig
from rnnsent.text.tokenize import (
    TEXT_BOUNDARY,
    WINDOW_CHARACTERS_PER_WORD,
    tokenize,
    tokenize_head,
    tokenize_joined,
    tokenize_tail,
)
from rnnsent.text.vocabulary import OOV_ID, PAD_ID, START_ID, START_TOKEN, Vocabulary

# Texts tokenized together by encode_batch, at most: the words of this many reviews are held
# as Python strings at once.
JOINED_TEXTS = 1024


class KeptWords(NamedTuple):
    """What survives truncation of one review: its words, whether the start token does, and whether any token was cut."""

    words: list[str]
    start: bool
    truncated: bool


def kept_words(text: str, maxlen: int | None = None, truncating: str = "pre", punctuation: str = "drop") -> KeptWords:
    """The part of ``<start> word1 ... wordN`` that Keras' truncation to ``maxlen`` tokens keeps.

    ``truncating="pre"`` keeps the last ``maxlen`` tokens, ``"post"`` the first ones; with
    ``maxlen`` None nothing is cut. It equals tokenizing the whole text and then cutting
    (property tested), but only the kept end of the text is tokenized.
    """
    if maxlen is None:
        return KeptWords(tokenize(text, punctuation), True, False)
    # maxlen words are enough to tell whether the text fits beside its start token.
    words = tokenize_tail(text, maxlen, punctuation) if truncating == "pre" else tokenize_head(text, maxlen, punctuation)
    if len(words) < maxlen:
        return KeptWords(words, True, False)
    if truncating == "pre":
        return KeptWords(words, False, True)
    return KeptWords(words[:maxlen - 1], True, True)


def kept_ids(text: str, vocabulary: Vocabulary, maxlen: int | None = None, truncating: str = "pre",
             punctuation: str = "drop") -> tuple[list[int], bool]:
    """The ids the model reads for ``text`` (start id included when it survives), and whether any token was cut."""
    words, start, truncated = kept_words(text, maxlen, truncating, punctuation)
    ids = vocabulary.ids(words)
    return ([START_ID, *ids] if start else ids), truncated


class TextEncoder:
    """Applies a :class:`TextConfig` and a :class:`Vocabulary` to raw text."""

    def __init__(self, vocabulary: Vocabulary, config: TextConfig) -> None:
        assert vocabulary.index_from == config.index_from
        self.vocabulary = vocabulary
        self.config = config

    def kept_ids(self, text: str) -> tuple[list[int], bool]:
        """The ids the model reads, unpadded (at most ``maxlen``), and whether any token was cut."""
        return kept_ids(text, self.vocabulary, self.config.maxlen, self.config.truncating, self.config.punctuation)

    def encode(self, text: str) -> list[int]:
        """The whole review as ids: the start id, then one id per word (no cut, no padding)."""
        return kept_ids(text, self.vocabulary, punctuation=self.config.punctuation)[0]

    def kept_tokens(self, text: str) -> tuple[list[str], bool]:
        """The tokens the model reads (``<start>`` included when it survives), and whether any were cut.

        Words are as written in the text, out-of-vocabulary ones included; looking them up
        gives exactly the ids of :meth:`kept_ids`.
        """
        words, start, truncated = kept_words(text, self.config.maxlen, self.config.truncating, self.config.punctuation)
        return ([START_TOKEN, *words] if start else words), truncated

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Encode, truncate and pad many texts: ``(ids (n, maxlen) int64, lengths (n,) int64)``.

        Row ``i`` holds :meth:`kept_ids` of text ``i``, padded as the config says. Texts short
        enough that :meth:`kept_ids` would tokenize them whole are tokenized together
        (:func:`~rnnsent.text.tokenize.tokenize_joined`), then looked up, cut and padded as
        arrays; longer ones, of which only the kept end is read, one by one.
        """
        maxlen, padding, truncating = self.config.maxlen, self.config.padding, self.config.truncating
        ids = np.zeros((len(texts), maxlen), dtype=np.int64)
        lengths = np.zeros(len(texts), dtype=np.int64)
        longest = WINDOW_CHARACTERS_PER_WORD * maxlen
        ascii_texts, other_texts, alone = [], [], []
        for index, text in enumerate(texts):
            if len(text) > longest or TEXT_BOUNDARY in text:
                alone.append(index)
            else:
                # ASCII texts are joined with each other: lower-casing an ASCII string is far faster.
                (ascii_texts if text.isascii() else other_texts).append(index)
        joined = ascii_texts + other_texts
        for start in range(0, len(joined), JOINED_TEXTS):
            chosen = joined[start:start + JOINED_TEXTS]
            flat = self._joined_ids([texts[i] for i in chosen])
            offsets = np.append(np.flatnonzero(flat == START_ID), len(flat))  # each text starts at its start id
            ids[chosen], lengths[chosen] = pad_sequences(flat, offsets, maxlen, padding, truncating)
        if alone:
            ids[alone], lengths[alone] = pad_rows([self.kept_ids(texts[i])[0] for i in alone], maxlen, padding)
        return ids, lengths

    @cached_property
    def _boundary_lookup(self) -> dict[str, int]:
        # The vocabulary, with the text boundary read as the start id that begins each text.
        return {**self.vocabulary.id_mapping(), TEXT_BOUNDARY: START_ID}

    def _joined_ids(self, texts: Sequence[str]) -> np.ndarray:
        """``[START_ID, ids of text 0..., START_ID, ids of text 1..., ...]`` ``(total,)`` int64."""
        words = tokenize_joined(texts, self.config.punctuation)
        return np.fromiter(map(self._boundary_lookup.get, words, repeat(OOV_ID)), dtype=np.int64, count=len(words))

    def decode(self, ids: Iterable[int], skip_padding: bool = True) -> list[str]:
        """Ids back to words; padding is dropped unless ``skip_padding`` is false."""
        return [self.vocabulary.word(int(i)) for i in ids if not (skip_padding and int(i) == PAD_ID)]


def encode_corpus(texts: Sequence[str], vocabulary: Vocabulary, punctuation: str = "drop") -> tuple[np.ndarray, np.ndarray]:
    """Whole reviews (start id + word ids, no cut) stored flat: ``(ids (total,) int32, offsets (n + 1,) int64)``.

    Review ``i`` is ``ids[offsets[i]:offsets[i + 1]]``, equal to :meth:`TextEncoder.encode`.
    """
    rows = [np.asarray(kept_ids(text, vocabulary, punctuation=punctuation)[0], dtype=np.int32) for text in texts]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)), out=offsets[1:])
    flat = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int32)
    return flat, offsets


def pad_rows(rows: Sequence[Sequence[int]], maxlen: int, padding: str) -> tuple[np.ndarray, np.ndarray]:
    """Pad rows already no longer than ``maxlen``: ``(ids (n, maxlen) int64, lengths (n,) int64)``."""
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
