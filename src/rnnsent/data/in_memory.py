"""Labelled texts given in memory, ``data=(texts, labels)``, as a data source.

Everything downstream reads a source by its path: the encoded-data cache is keyed by it, and a
checkpoint records it so that a resumed run reads the same texts. Texts given in memory are
therefore written once, as a JSONL file in the cache named by the hash of its content, and
then read like any JSONL file: the same texts and labels give the same file, hence the same
held-out test fifth, cache entry and model as the same rows written to a file by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from rnnsent.data.cache import default_cache_dir
from rnnsent.errors import DataError
from rnnsent.labels import label_name, label_set

HINT = "give data=(texts, labels): a list of strings and one label (a name, an integer or a list of names) per text"


def is_in_memory(data: Any) -> bool:
    """Whether ``data`` is a ``(texts, labels)`` pair rather than a path."""
    return isinstance(data, (tuple, list)) and not isinstance(data, (str, bytes))


def in_memory_source(data: Any, directory: Path | None = None) -> Path:
    """The JSONL file (in ``directory``, by default the cache) holding ``data = (texts, labels)``.

    Labels may be strings, integers (or NumPy integers), booleans, or for several labels per
    text lists of strings; anything else is a :class:`~rnnsent.errors.DataError` naming its place.
    """
    if len(data) != 2:
        raise DataError(f"data is a sequence of {len(data)} items; {HINT}")
    texts, labels = (_as_list(part, name) for part, name in zip(data, ("texts", "labels")))
    if len(texts) != len(labels):
        raise DataError(f"data has {len(texts)} texts but {len(labels)} labels; give one label per text")
    lines = []
    for index, (text, label) in enumerate(zip(texts, labels)):
        if not isinstance(text, str):
            raise DataError(f"data: text {index} is {type(text).__name__}, not a string; {HINT}")
        label = _plain(label)
        where = f"data: label {index}"
        label_set(label, where) if isinstance(label, list) else label_name(label, where)
        lines.append(json.dumps({"text": text, "label": label}, ensure_ascii=False))
    payload = ("\n".join(lines) + "\n").encode("utf-8")
    directory = directory or default_cache_dir() / "in-memory"
    path = directory / f"{hashlib.sha256(payload).hexdigest()[:32]}.jsonl"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(payload)
        os.replace(temporary, path)  # readers see the whole file or none
    return path


def _as_list(part: Any, name: str) -> list[Any]:
    """``part`` as a list: a list, tuple, NumPy array or pandas Series, say."""
    if isinstance(part, (str, bytes)) or not hasattr(part, "__len__") or not hasattr(part, "__iter__"):
        raise DataError(f"data: the {name} are {type(part).__name__}, not a sequence; {HINT}")
    return part.tolist() if hasattr(part, "tolist") else list(part)


def _plain(label: Any) -> Any:
    """A label as JSON writes it: NumPy scalars as Python numbers, tuples as lists."""
    if hasattr(label, "item") and not isinstance(label, (list, tuple, str)):
        label = label.item()
    if isinstance(label, tuple):
        label = list(label)
    if isinstance(label, list):
        return [_plain(item) for item in label]
    return label
