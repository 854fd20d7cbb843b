"""The vocabulary: reserved ids (padding, start, out-of-vocabulary) and words ranked by training-set frequency."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

PAD_ID = 0
START_ID = 1
OOV_ID = 2
PAD_TOKEN, START_TOKEN, OOV_TOKEN = "<pad>", "<start>", "<oov>"


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
        """The id of each word, out-of-vocabulary ones as the out-of-vocabulary id."""
        lookup = self._ids.get  # type: ignore[attr-defined]
        return [lookup(word, OOV_ID) for word in words]

    def id_mapping(self) -> dict[str, int]:
        """A new dict of every word's id (out-of-vocabulary words are absent), to extend or look up in bulk."""
        return dict(self._ids)  # type: ignore[attr-defined]

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
