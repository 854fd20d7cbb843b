"""Labelled text sources: the one entry point, :func:`read_corpus`, and what it accepts.

- the aclImdb dataset as a folder or straight from its ``.tar.gz`` (:mod:`rnnsent.data.imdb`);
- a person's own data in the same ``train/`` and ``test/`` layout, as a folder of label
  folders, or as a CSV or JSONL file with ``text`` and ``label`` (:mod:`rnnsent.data.labelled`).
"""

from __future__ import annotations

from pathlib import Path

from rnnsent.config import DataConfig
from rnnsent.data.corpus import Corpus, LabelledTexts
from rnnsent.data.imdb import read_imdb_archive, read_split_folders
from rnnsent.data.labelled import read_label_folder_texts, read_label_folders, read_labelled_records, read_records_file
from rnnsent.data.records import SUFFIX_FORMATS
from rnnsent.errors import DataError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def source_kind(source: Path) -> str | None:
    """What a source is: ``"archive"`` (aclImdb's .tar.gz), ``"records"`` (CSV or JSONL),
    ``"split folders"`` (a folder with train/ and test/, aclImdb's layout), ``"label folders"``
    (a folder of label folders), or None for anything else."""
    if source.is_file() and source.name.lower().endswith(ARCHIVE_SUFFIXES):
        return "archive"
    if source.is_file() and source.suffix.lower() in SUFFIX_FORMATS:
        return "records"
    if source.is_dir():
        root = source / "aclImdb" if (source / "aclImdb").is_dir() else source
        return "split folders" if (root / "train").is_dir() or (root / "test").is_dir() else "label folders"
    return None


def read_corpus(source: Path, include_unlabelled: bool = False, data: DataConfig = DataConfig()) -> Corpus:
    """Every text of a source with its raw label, as train and test splits (and aclImdb's
    unlabelled reviews when asked). ``data`` says which fields hold texts and labels."""
    kind = source_kind(source)
    if kind == "archive":
        return read_imdb_archive(source, include_unlabelled, data.labels)
    if kind == "records":
        return read_records_file(source, SUFFIX_FORMATS[source.suffix.lower()], data)
    if kind == "split folders":
        root = source / "aclImdb" if (source / "aclImdb").is_dir() else source
        return read_split_folders(root, include_unlabelled, data.labels)
    if kind == "label folders":
        return read_label_folders(source)
    raise DataError(f"{source}: unsupported data source; use an aclImdb folder or .tar.gz, a label-folder tree, .csv or .jsonl")


def read_every_row(source: Path, data: DataConfig = DataConfig()) -> LabelledTexts | None:
    """Every labelled text of a source without a test split of its own (a CSV or JSONL file, a
    folder of label folders), for scoring a model on data it was not trained on; None for a
    source with its own test split (aclImdb's layout), whose test split is the one to score."""
    kind = source_kind(source)
    if kind == "records":
        return read_labelled_records(source, SUFFIX_FORMATS[source.suffix.lower()], data)
    if kind == "label folders":
        return read_label_folder_texts(source)
    return None


def read_unlabelled(source: Path) -> list[str]:
    """The unlabelled reviews of an aclImdb-layout source (``train/unsup``), for pretraining; other
    sources (CSV, JSONL, label folders) have none."""
    name = source.name.lower()
    if source.is_file() and name.endswith(ARCHIVE_SUFFIXES):
        return read_imdb_archive(source, include_unlabelled=True).unlabelled
    if source.is_dir():
        root = source / "aclImdb" if (source / "aclImdb").is_dir() else source
        if (root / "train").is_dir() or (root / "test").is_dir():
            return read_split_folders(root, include_unlabelled=True).unlabelled
    return []
