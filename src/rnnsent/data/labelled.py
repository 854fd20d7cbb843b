"""A person's own labelled data: a folder of label folders, or a CSV or JSONL file with ``text`` and ``label``.

Labels are any names (see :mod:`rnnsent.labels`); in JSONL a list of names is a set of labels,
and in CSV ``--label-separator`` splits a cell into several. These sources have no test split
of their own, so a fixed, stratified fifth is kept back for testing.
"""

from __future__ import annotations

from pathlib import Path

from rnnsent.config import DataConfig
from rnnsent.data.corpus import Corpus, LabelledTexts
from rnnsent.data.records import decode_utf8, read_records
from rnnsent.data.splits import held_out_split
from rnnsent.errors import DataError
from rnnsent.labels import label_name, label_set

TEST_FRACTION = 0.2  # of a source without a test split, kept back for testing


def read_records_file(path: Path, input_format: str, data: DataConfig = DataConfig()) -> Corpus:
    """A CSV or JSONL file of text and label records, with a fifth held out for testing."""
    return with_held_out_test(read_labelled_records(path, input_format, data), str(path))


def read_labelled_records(path: Path, input_format: str, data: DataConfig = DataConfig()) -> LabelledTexts:
    """Every record of a CSV or JSONL file of text and label records, in file order."""
    texts, labels, places = [], [], []
    separator = data.label_separator or None
    with open(path, "rb") as handle:
        for record in read_records(handle, str(path), input_format, text_field=data.text_field,
                                   label_field=data.label_field):
            texts.append(record.text)
            label = record.label
            if separator is not None and isinstance(label, str):
                label = [part for part in label.split(separator) if part.strip()]
            # Check each label as it is read, so that a bad one is named by its line.
            label_set(label, record.where) if isinstance(label, (list, tuple)) else label_name(label, record.where)
            labels.append(label)
            places.append(record.where)
    return LabelledTexts(texts, labels, places)


def read_label_folders(path: Path) -> Corpus:
    """A folder holding one folder per label of ``.txt`` texts (any folder names), with a fifth held out for testing."""
    return with_held_out_test(read_label_folder_texts(path), str(path))


def read_label_folder_texts(path: Path) -> LabelledTexts:
    """Every ``.txt`` text of a folder of label folders, folder by folder in name order."""
    label_dirs = [d for d in sorted(path.iterdir()) if d.is_dir()]
    if not label_dirs:
        raise DataError(f"{path}: no train/ and test/ folders and no label folders; see 'rnnsent train --help'")
    texts, labels, places = [], [], []
    for label_dir in label_dirs:
        for file in sorted(label_dir.glob("*.txt")):
            texts.append(decode_utf8(file.read_bytes(), str(file)))
            labels.append(label_dir.name)
            places.append(str(label_dir))
    return LabelledTexts(texts, labels, places)


def with_held_out_test(data: LabelledTexts, where: str) -> Corpus:
    """A source without a test split: hold out a fixed, stratified fifth of it as the test set."""
    if not len(data):
        raise DataError(f"{where}: holds no labelled texts; give it rows of a text and its label "
                        "(a CSV needs a header, such as text,label)")
    strata = data.strata()
    if len(set(strata)) < 2:
        # The labels as written (the strata read sentiment spellings as numbers: pos is "1").
        written = sorted({str(label) for label in data.labels})
        raise DataError(f"{where}: needs examples of both labels, found {len(data)} example(s) of "
                        f"{', '.join(written[:5])}; a classifier needs two or more labels")
    train_index, test_index = held_out_split(strata, TEST_FRACTION)
    if not len(test_index):
        raise DataError(f"{where}: {len(data)} examples are too few to hold out a test fifth; give at least 3 "
                        "examples of a label")
    return Corpus(data.subset(train_index), data.subset(test_index))
