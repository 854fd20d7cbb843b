"""Labelled text sources, the encoded-dataset cache, splits and batch order.

Sources: the aclImdb dataset as a directory or straight from its ``.tar.gz`` (streamed,
never unpacked), the official archive downloaded into a cache, or a person's own data as a
folder per label, a CSV or a JSONL file with ``text`` and ``label`` columns.
"""

from __future__ import annotations

import csv
import json
import sys
import tarfile
from pathlib import Path

import numpy as np

from rnnsent.data.corpus import Corpus, LabelledTexts
from rnnsent.data.splits import HELD_OUT_SEED, stratified_split
from rnnsent.errors import DataError

IMDB_SPLIT_SIZE = 12_500  # reviews per label and split in the official release

# Label spellings accepted in a person's own data, mapped to 0 (negative) and 1 (positive).
LABEL_VALUES = {
    "0": 0, "neg": 0, "negative": 0, "false": 0,
    "1": 1, "pos": 1, "positive": 1, "true": 1,
}


def read_corpus(source: Path, include_unlabelled: bool = False) -> Corpus:
    """Read every review of a source; see the module docstring for the accepted forms."""
    name = source.name.lower()
    if source.is_file() and (name.endswith((".tar.gz", ".tgz", ".tar"))):
        return _read_imdb_archive(source, include_unlabelled)
    if source.is_file() and name.endswith(".csv"):
        return _with_held_out_test(_read_csv(source))
    if source.is_file() and name.endswith((".jsonl", ".ndjson")):
        return _with_held_out_test(_read_jsonl(source))
    if source.is_dir():
        return _read_directory(source, include_unlabelled)
    raise DataError(f"{source}: unsupported data source; use an aclImdb folder or .tar.gz, a label-folder tree, .csv or .jsonl")


def parse_label(value: object, where: str) -> int:
    """A binary label from its usual spellings; anything else is a :class:`DataError`."""
    key = str(value).strip().lower()
    if key.endswith(".0"):
        key = key[:-2]
    if key not in LABEL_VALUES:
        raise DataError(f"{where}: label {value!r} is not binary; use 0/1, neg/pos or negative/positive")
    return LABEL_VALUES[key]


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{where}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def _read_imdb_archive(path: Path, include_unlabelled: bool) -> Corpus:
    buckets: dict[tuple[str, str], list[tuple[str, str]]] = {}
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                parts = member.name.split("/")
                if not member.isfile() or len(parts) != 4 or parts[0] != "aclImdb" or not parts[3].endswith(".txt"):
                    continue
                split, label = parts[1], parts[2]
                if split not in ("train", "test") or label not in ("pos", "neg", "unsup"):
                    continue
                if label == "unsup" and not include_unlabelled:
                    continue
                stream = archive.extractfile(member)
                assert stream is not None
                text = _decode(stream.read(), f"{path}:{member.name}")
                buckets.setdefault((split, label), []).append((parts[3], text))
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{path}: archive is truncated or corrupt ({error}); download it again") from None
    return _imdb_corpus(buckets, str(path))


def _read_directory(path: Path, include_unlabelled: bool) -> Corpus:
    root = path / "aclImdb" if (path / "aclImdb").is_dir() else path
    if (root / "train").is_dir():
        buckets: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for split in ("train", "test"):
            split_dir = root / split
            if not split_dir.is_dir():
                raise DataError(f"{root}: missing folder {split}/ (expected train/ and test/ with one folder per label)")
            labels = [d.name for d in sorted(split_dir.iterdir()) if d.is_dir() and (include_unlabelled or d.name != "unsup")]
            for label in labels:
                files = sorted((label_dir := split_dir / label).glob("*.txt"))
                buckets[(split, label)] = [(f.name, _decode(f.read_bytes(), str(f))) for f in files]
                if label != "unsup":
                    parse_label(label, str(label_dir))
        return _imdb_corpus(buckets, str(root))
    if (root / "test").is_dir():
        raise DataError(f"{root}: missing folder train/ (expected train/ and test/ with one folder per label)")
    labels = [d for d in sorted(path.iterdir()) if d.is_dir()]
    if not labels:
        raise DataError(f"{path}: no train/ and test/ folders and no label folders; see 'rnnsent train --help'")
    texts, values = [], []
    for label_dir in labels:
        label = parse_label(label_dir.name, str(label_dir))
        for file in sorted(label_dir.glob("*.txt")):
            texts.append(_decode(file.read_bytes(), str(file)))
            values.append(label)
    return _with_held_out_test(LabelledTexts(texts, np.asarray(values, dtype=np.int64)))


def _imdb_corpus(buckets: dict[tuple[str, str], list[tuple[str, str]]], where: str) -> Corpus:
    splits = {}
    for split in ("train", "test"):
        texts, labels = [], []
        for label_name in sorted(name for (s, name) in buckets if s == split and name != "unsup"):
            label = parse_label(label_name, f"{where}/{split}/{label_name}")
            reviews = sorted(buckets[(split, label_name)], key=lambda item: _review_sort_key(item[0]))
            texts.extend(text for _, text in reviews)
            labels.extend([label] * len(reviews))
        present = {value for value in labels}
        if present != {0, 1}:
            raise DataError(f"{where}: the {split} split needs reviews in both neg/ and pos/ (found {len(texts)} reviews)")
        counts = {name: len(reviews) for (s, name), reviews in buckets.items() if s == split and name != "unsup"}
        if "aclImdb" in where and any(count != IMDB_SPLIT_SIZE for count in counts.values()):
            print(f"warning: {where}: {split} has {counts}, not {IMDB_SPLIT_SIZE} per label as in aclImdb v1.0", file=sys.stderr)
        splits[split] = LabelledTexts(texts, np.asarray(labels, dtype=np.int64))
    unlabelled = [text for _, text in sorted(buckets.get(("train", "unsup"), []), key=lambda item: _review_sort_key(item[0]))]
    return Corpus(splits["train"], splits["test"], unlabelled)


def _review_sort_key(file_name: str) -> tuple[int, str]:
    # aclImdb names are ID_RATING.txt: order by numeric id so the order is natural and stable.
    head = file_name.split("_", 1)[0]
    return (int(head), file_name) if head.isdigit() else (sys.maxsize, file_name)


def _read_csv(path: Path) -> LabelledTexts:
    texts, labels = [], []
    with open(path, "rb") as raw:
        # Lines are decoded one by one, so an encoding error can name its line.
        # A UTF-8 byte-order mark, as spreadsheet programs write, is not part of the first column's name.
        lines = (_decode(line.removeprefix(b"\xef\xbb\xbf") if number == 1 else line, f"{path}:{number}")
                 for number, line in enumerate(raw, start=1))
        reader = csv.DictReader(lines)
        try:
            if not reader.fieldnames or "text" not in reader.fieldnames or "label" not in reader.fieldnames:
                raise DataError(f"{path}: needs a header with 'text' and 'label' columns, found {reader.fieldnames}")
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if row.get("text") is None or row.get("label") is None:
                    raise DataError(f"{where}: row has missing columns")
                texts.append(row["text"])
                labels.append(parse_label(row["label"], where))
        except csv.Error as error:
            raise DataError(f"{path}:{reader.reader.line_num}: malformed CSV ({error})") from None
    return _labelled(texts, labels, path)


def _read_jsonl(path: Path) -> LabelledTexts:
    texts, labels = [], []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            line = _decode(raw, where).strip()
            if number == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark, as some editors write
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{where}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str) or "label" not in record:
                raise DataError(f"{where}: each line must be an object with a string 'text' and a 'label'")
            texts.append(record["text"])
            labels.append(parse_label(record["label"], where))
    return _labelled(texts, labels, path)


def _labelled(texts: list[str], labels: list[int], path: Path) -> LabelledTexts:
    if len(set(labels)) < 2:
        raise DataError(f"{path}: needs examples of both labels, found {len(texts)} example(s) of {sorted(set(labels))}")
    return LabelledTexts(texts, np.asarray(labels, dtype=np.int64))


def _with_held_out_test(data: LabelledTexts, fraction: float = 0.2) -> Corpus:
    """A source without a test split: hold out a fixed, stratified 20% as the test set."""
    train_index, test_index = stratified_split(data.labels, fraction, HELD_OUT_SEED)
    pick = lambda index: LabelledTexts([data.texts[i] for i in index], data.labels[index])  # noqa: E731
    return Corpus(pick(train_index), pick(test_index))


def read_unlabelled(source: Path) -> list[str]:
    """The unlabelled reviews of an aclImdb source (``train/unsup``), for pretraining."""
    return read_corpus(source, include_unlabelled=True).unlabelled
