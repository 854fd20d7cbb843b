"""A person's own labelled data: a folder of label folders, or a CSV or JSONL file with ``text`` and ``label``.

Labels are binary and may be spelled 0/1, neg/pos, negative/positive or false/true. These
sources have no test split of their own, so a fixed, stratified fifth is kept back for testing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnsent.data.corpus import Corpus, LabelledTexts
from rnnsent.data.records import decode_utf8, read_records
from rnnsent.data.splits import held_out_split
from rnnsent.errors import DataError

TEST_FRACTION = 0.2  # of a source without a test split, kept back for testing

# Label spellings accepted in a person's own data, mapped to 0 (negative) and 1 (positive).
LABEL_VALUES = {
    "0": 0, "neg": 0, "negative": 0, "false": 0,
    "1": 1, "pos": 1, "positive": 1, "true": 1,
}


def parse_label(value: object, where: str) -> int:
    """A binary label from its usual spellings; anything else is a :class:`DataError` naming ``where``."""
    key = str(value).strip().lower()
    if key.endswith(".0"):
        key = key[:-2]
    if key not in LABEL_VALUES:
        raise DataError(f"{where}: label {value!r} is not binary; use 0/1, neg/pos or negative/positive")
    return LABEL_VALUES[key]


def read_records_file(path: Path, input_format: str) -> Corpus:
    """A CSV or JSONL file of ``text`` and ``label`` records, with a fifth held out for testing."""
    texts, labels = [], []
    with open(path, "rb") as handle:
        for record in read_records(handle, str(path), input_format, text_field="text", label_field="label"):
            texts.append(record.text)
            labels.append(parse_label(record.label, record.where))
    return with_held_out_test(labelled_texts(texts, labels, str(path)))


def read_label_folders(path: Path) -> Corpus:
    """A folder holding one folder per label of ``.txt`` reviews, with a fifth held out for testing."""
    label_dirs = [d for d in sorted(path.iterdir()) if d.is_dir()]
    if not label_dirs:
        raise DataError(f"{path}: no train/ and test/ folders and no label folders; see 'rnnsent train --help'")
    texts, labels = [], []
    for label_dir in label_dirs:
        label = parse_label(label_dir.name, str(label_dir))
        for file in sorted(label_dir.glob("*.txt")):
            texts.append(decode_utf8(file.read_bytes(), str(file)))
            labels.append(label)
    return with_held_out_test(labelled_texts(texts, labels, str(path)))


def labelled_texts(texts: list[str], labels: list[int], where: str) -> LabelledTexts:
    """Texts and their labels, which must include both labels."""
    if len(set(labels)) < 2:
        raise DataError(f"{where}: needs examples of both labels, found {len(texts)} example(s) of {sorted(set(labels))}")
    return LabelledTexts(texts, np.asarray(labels, dtype=np.int64))


def with_held_out_test(data: LabelledTexts) -> Corpus:
    """A source without a test split: hold out a fixed, stratified fifth of it as the test set."""
    train_index, test_index = held_out_split(data.labels, TEST_FRACTION)

    def pick(index: np.ndarray) -> LabelledTexts:
        return LabelledTexts([data.texts[i] for i in index], data.labels[index])

    return Corpus(pick(train_index), pick(test_index))
