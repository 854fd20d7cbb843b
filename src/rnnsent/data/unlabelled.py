"""Unlabelled texts for the semi-supervised training objectives: aclImdb's ``train/unsup``, or a
file or folder a person names.

Only texts that no split of the labelled source holds are read: aclImdb's 50,000 unlabelled
training reviews, never its test reviews. Another source has no unlabelled texts of its own,
so they must be named (``--unlabelled-data``):

- aclImdb's archive: its ``train/unsup``;
- a ``.txt`` (or any other) file: one text a line, blank lines skipped;
- a ``.jsonl`` or ``.csv`` file: its text field (``--text-field``);
- a folder of aclImdb's layout: its ``train/unsup``; any other folder: every ``.txt`` file in
  it and below, one text each, in path order.
"""

from __future__ import annotations

from pathlib import Path

from rnnsent.config import DataConfig
from rnnsent.data.records import SUFFIX_FORMATS, decode_utf8, read_records
from rnnsent.data.sources import ARCHIVE_SUFFIXES, read_unlabelled
from rnnsent.errors import DataError


def read_unlabelled_texts(source: Path, data: DataConfig) -> tuple[list[str], str]:
    """``(texts, where they came from)``: those of ``data.unlabelled_data`` when it names a file or
    folder, else the unlabelled reviews of ``source`` (aclImdb's ``train/unsup``), else none.

    Raises :class:`DataError` when ``data.unlabelled_data`` is missing or holds no texts: a run
    that was told where its unlabelled texts are should not go on without them."""
    if not data.unlabelled_data:
        return read_unlabelled(Path(source)), f"{source} (train/unsup)"
    path = Path(data.unlabelled_data).expanduser()
    texts, where = _named_texts(path, data)
    if not any(text.strip() for text in texts):
        raise DataError(f"--unlabelled-data {path} holds no texts; name a file of one text a line, a .jsonl/.csv "
                        "file or a folder of .txt files")
    return texts, where


def _named_texts(path: Path, data: DataConfig) -> tuple[list[str], str]:
    """The texts of the file or folder ``--unlabelled-data`` names (see the module docstring)."""
    if path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return read_unlabelled(path), f"{path} (train/unsup)"
    if path.is_dir():
        texts = read_unlabelled(path)
        if not texts:
            texts = [decode_utf8(file.read_bytes(), str(file)) for file in sorted(path.rglob("*.txt"))]
        return texts, str(path)
    if not path.is_file():
        raise DataError(f"--unlabelled-data {path}: no such file or folder")
    input_format = SUFFIX_FORMATS.get(path.suffix.lower(), "lines")
    with open(path, "rb") as handle:
        texts = [record.text for record in read_records(handle, str(path), input_format, data.text_field)
                 if record.text.strip()]
    return texts, str(path)
