"""Label spaces: which labels a model predicts, how raw label values become targets, and back.

A label space is chosen from the training data (or forced with ``--task``):

- ``binary``: exactly two names. The usual spellings of sentiment (0/1, neg/pos,
  negative/positive, false/true) become ``negative``/``positive``, so IMDB and every model
  trained before label spaces existed behave exactly as they did; any other two names (``ham``,
  ``spam``) are kept and sorted, the second being the one the single logit scores.
- ``multiclass``: three or more names, one per text (softmax over K logits).
- ``multilabel``: a set of names per text, possibly empty (a sigmoid per name).

Names are sorted deterministically: numerically when every name is an integer (star ratings,
which are then *ordered*), else alphabetically.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from rnnsent.errors import DataError

SENTIMENT = ("negative", "positive")
# Raw spellings of the two sentiment labels, after lower-casing.
SENTIMENT_SPELLINGS = {
    "0": 0, "neg": 0, "negative": 0, "false": 0,
    "1": 1, "pos": 1, "positive": 1, "true": 1,
}
TASKS = ("binary", "multiclass", "multilabel")


def label_name(value: Any, where: str = "label") -> str:
    """One raw label value as a name: strings stripped, integral numbers without ``.0``, booleans as true/false."""
    if isinstance(value, bool):
        name = "true" if value else "false"
    elif isinstance(value, int):
        name = str(value)
    elif isinstance(value, float) and value.is_integer():
        name = str(int(value))
    elif isinstance(value, (str, float)):
        name = str(value).strip()
        if name.endswith(".0") and name[:-2].lstrip("-").isdigit():
            name = name[:-2]
    else:
        raise DataError(f"{where}: label {value!r} must be a string or a number")
    if not name:
        raise DataError(f"{where}: empty label; give every text a label")
    return name


def label_set(value: Any, where: str = "label", separator: str | None = None) -> tuple[str, ...]:
    """A raw multi-label value as names: a list, or a string split on ``separator``; sorted, no duplicates."""
    if isinstance(value, (list, tuple)):
        items = value
    elif separator is not None and isinstance(value, str):
        items = [part for part in value.split(separator) if part.strip()]
    else:
        items = [value]
    return tuple(sorted({label_name(item, where) for item in items}))


def stratum(value: Any) -> str:
    """A key that groups texts of the same label (or set of labels) for stratified splits.

    The sentiment spellings count as one label each (``pos`` and ``1`` are the same stratum).
    """
    if isinstance(value, (list, tuple)):
        return "\x1f".join(sorted({stratum(item) for item in value}))
    try:
        name = label_name(value)
    except DataError:
        return repr(value)
    spelled = SENTIMENT_SPELLINGS.get(name.lower())
    return str(spelled) if spelled is not None else name


def _is_integer(name: str) -> bool:
    return name.lstrip("-").isdigit()


def sort_names(names: Iterable[str]) -> tuple[str, ...]:
    """Numerically when every name is an integer, else alphabetically."""
    unique = set(names)
    if unique and all(_is_integer(name) for name in unique):
        return tuple(sorted(unique, key=int))
    return tuple(sorted(unique))


def names_differing_in_case(names: Iterable[str]) -> list[tuple[str, ...]]:
    """Groups of two or more label names that are the same but for upper and lower case
    (``Spam`` and ``spam``): most likely one label spelled two ways in the data."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.casefold(), []).append(name)
    return [tuple(group) for group in groups.values() if len(group) > 1]


# Characters that join several labels in one cell of a CSV file (``db|python``).
LIST_SEPARATORS = ("|", ";", ",")


def joined_label_separator(names: Iterable[str]) -> str | None:
    """The separator that seems to join several labels in these class names, or None: some name
    splits on it into pieces of which one is a class name of its own or recurs in another such
    name (``db``, ``python``, ``db|python``)."""
    names = list(names)
    for separator in LIST_SEPARATORS:
        joined = [[piece.strip() for piece in name.split(separator)] for name in names if separator in name]
        joined = [pieces for pieces in joined if len(pieces) > 1 and all(pieces)]
        singles = {name.strip() for name in names if separator not in name}
        counts = collections.Counter(piece for pieces in joined for piece in set(pieces))
        if any(counts[piece] >= 2 or piece in singles for pieces in joined for piece in pieces):
            return separator
    return None


def labels_over_thresholds(names: Sequence[str], probabilities: Sequence[float],
                           thresholds: Sequence[float]) -> tuple[list[str], str]:
    """A multi-label decision: the labels whose probability is over their own threshold, in the
    order of ``names``, and the label to name first: the most probable of those, or the most
    probable of all when none is over (a label may be the most probable yet under its
    threshold, while another, less probable, is over a lower one)."""
    chosen = [name for name, p, cut in zip(names, probabilities, thresholds) if p > cut]
    candidates = [(p, -index, name) for index, (name, p) in enumerate(zip(names, probabilities))
                  if not chosen or name in chosen]
    return chosen, max(candidates)[2]


@dataclass(frozen=True)
class LabelSpace:
    """The labels a model predicts. ``names[i]`` is output ``i`` (binary: the single logit scores ``names[1]``)."""

    task: str = "binary"
    names: tuple[str, ...] = SENTIMENT
    ordered: bool = False
    # Raw spelling -> index, for binary spaces spelled as sentiment (0/1, neg/pos, ...).
    aliases: dict[str, int] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"task must be one of {', '.join(TASKS)}; got {self.task!r}")
        if self.task == "binary" and len(self.names) != 2:
            raise DataError(f"a binary task has exactly two labels; the data has {len(self.names)}: "
                            f"{', '.join(self.names[:10])} (use --task multiclass)")
        if self.task == "multiclass" and len(self.names) < 2:
            raise DataError("a classifier needs two or more labels")
        if len(set(self.names)) != len(self.names):
            raise DataError(f"label names repeat: {', '.join(self.names)}")

    @property
    def num_outputs(self) -> int:
        """Logits per text: 1 for binary, one per name otherwise."""
        return 1 if self.task == "binary" else len(self.names)

    @property
    def is_sentiment(self) -> bool:
        return self.task == "binary" and self.names == SENTIMENT

    @property
    def is_ordinal(self) -> bool:
        """One of three or more ordered labels per text (star ratings): what an ordinal fit needs."""
        return self.task == "multiclass" and self.ordered and len(self.names) > 2

    def index(self, name: str, where: str) -> int:
        if self.aliases:
            key = name.lower()
            if key in self.aliases:
                return self.aliases[key]
        try:
            return self.names.index(name)
        except ValueError:
            # Several of the training labels in one cell (a CSV read without its separator).
            joined = next((separator for separator in LIST_SEPARATORS if separator in name
                           and all(piece.strip() in self.names for piece in name.split(separator))), None)
            hint = (f"; it looks like several labels joined by {joined!r}: read it with --label-separator '{joined}'"
                    if joined is not None else "; every label must occur in the training data")
            raise DataError(f"{where}: label {name!r} is not one of the training labels "
                            f"({', '.join(self.names[:10])}){hint}") from None

    def encode(self, values: Sequence[Any], where: Sequence[str] | str = "label") -> np.ndarray:
        """Targets for raw label values: binary ``(n,)`` float32 0/1, multiclass ``(n,)`` int64,
        multilabel ``(n, K)`` float32 multi-hot."""
        places = [where] * len(values) if isinstance(where, str) else list(where)
        if self.task == "multilabel":
            targets = np.zeros((len(values), len(self.names)), dtype=np.float32)
            for row, (value, place) in enumerate(zip(values, places)):
                for name in label_set(value, place):
                    targets[row, self.index(name, place)] = 1.0
            return targets
        indices = np.array([self.index(label_name(value, place), place) for value, place in zip(values, places)],
                           dtype=np.int64)
        return indices.astype(np.float32) if self.task == "binary" else indices

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "names": list(self.names), "ordered": self.ordered}

    @classmethod
    def from_dict(cls, data: Any) -> "LabelSpace":
        if not isinstance(data, dict) or not isinstance(data.get("names"), list):
            raise DataError("labels must be an object with a 'names' list")
        names = tuple(data["names"])
        if not all(isinstance(name, str) and name for name in names):
            raise DataError("label names must be non-empty strings")
        return cls(str(data.get("task", "binary")), names, bool(data.get("ordered", False)))

    @classmethod
    def infer(cls, values: Sequence[Any], task: str = "auto", where: Sequence[str] | str = "label",
              separator: str | None = None) -> "LabelSpace":
        """The label space of the training labels ``values``, or of ``task`` when it is not ``auto``."""
        places = [where] * len(values) if isinstance(where, str) else list(where)
        multilabel = task == "multilabel" or (task == "auto" and (
            any(isinstance(value, (list, tuple)) for value in values) or separator is not None))
        if multilabel:
            names = sort_names(name for value, place in zip(values, places) for name in label_set(value, place, separator))
            if len(names) < 2:
                raise DataError(f"only one label ({', '.join(names) or 'none'}) in the training data: "
                                "a classifier needs two or more")
            return cls("multilabel", names, False)
        names = [label_name(value, place) for value, place in zip(values, places)]
        distinct = sort_names(names)
        if len(distinct) < 2:
            raise DataError(f"only one label ({', '.join(distinct) or 'none'}) in the training data: "
                            "a classifier needs two or more")
        if len(distinct) == 2 and task in ("auto", "binary"):
            spelled = {SENTIMENT_SPELLINGS.get(name.lower()) for name in distinct}
            if spelled == {0, 1}:
                return cls("binary", SENTIMENT, False, dict(SENTIMENT_SPELLINGS))
            return cls("binary", distinct, False)
        if task == "binary":
            raise DataError(f"--task binary needs exactly two labels; the training data has {len(distinct)}: "
                            f"{', '.join(distinct[:10])}")
        ordered = all(_is_integer(name) for name in distinct)
        return cls("multiclass", distinct, ordered)

    def describe(self) -> str:
        """One line for the training log: the task and the names."""
        shown = ", ".join(self.names[:12]) + (", ..." if len(self.names) > 12 else "")
        order = ", ordered" if self.ordered else ""
        return f"{self.task} task, {len(self.names)} labels{order}: {shown}"


BINARY_SENTIMENT = LabelSpace("binary", SENTIMENT, False, dict(SENTIMENT_SPELLINGS))
LABELS = SENTIMENT
