"""Malformed data sources are reported with the file (and line), never a traceback."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from rnnsent.cli.main import main


def jsonl(*records) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)


GOOD = [{"text": "a good movie", "label": 1}, {"text": "a bad movie", "label": 0}]


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def imdb_tree(splits=("train", "test"), labels=("neg", "pos")) -> dict[str, bytes]:
    return {f"aclImdb/{split}/{label}/{i}_5.txt": f"review {i} {label}".encode()
            for split in splits for label in labels for i in range(2)}


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# name: (files to write, the --data path, what the error must say after "error: ")
CASES = {
    "jsonl invalid utf-8": ({"d.jsonl": jsonl(*GOOD, b'{"text": "caf\xe9", "label": 1}')}, "d.jsonl",
                            "{root}/d.jsonl:3: not UTF-8 text"),
    "jsonl bad line": ({"d.jsonl": jsonl(GOOD[0], b"{'text': 'single quotes'}", GOOD[1])}, "d.jsonl",
                       "{root}/d.jsonl:2: not valid JSON"),
    "jsonl without label": ({"d.jsonl": jsonl(*GOOD, {"text": "no label"})}, "d.jsonl",
                            "{root}/d.jsonl:3: each JSONL line needs a string 'text' field and a 'label' field"),
    "jsonl empty label": ({"d.jsonl": jsonl(GOOD[0], {"text": "meh", "label": " "})}, "d.jsonl",
                          "{root}/d.jsonl:2: empty label"),
    "jsonl label of the wrong type": ({"d.jsonl": jsonl(GOOD[0], {"text": "meh", "label": {"stars": 3}})}, "d.jsonl",
                                      "{root}/d.jsonl:2: label {{'stars': 3}} must be a string or a number"),
    "jsonl one label only": ({"d.jsonl": jsonl(GOOD[0], GOOD[0])}, "d.jsonl",
                             "{root}/d.jsonl: needs examples of both labels"),
    "csv empty label": ({"d.csv": b"text,label\ngood,1\nbad,0\nso so,\n"}, "d.csv", "{root}/d.csv:4: empty label"),
    "csv invalid utf-8": ({"d.csv": b"text,label\ngood,1\n\xff\xfebad,0\n"}, "d.csv", "{root}/d.csv:3: not UTF-8 text"),
    "csv without label column": ({"d.csv": b"review,stars\ngood,5\n"}, "d.csv",
                                 "{root}/d.csv: the CSV header needs 'text' and 'label' columns"),
    "csv short row": ({"d.csv": b"text,label\ngood,1\nbad\n"}, "d.csv", "{root}/d.csv:3: row has 1 columns, the header 2"),
    "csv field over the limit": ({"d.csv": b"text,label\ngood,1\n\"" + b"x" * 140_000 + b"\",0\n"}, "d.csv",
                                 "{root}/d.csv:3: malformed CSV (field larger than field limit"),
    # An empty file once read as "needs examples of both labels, found 0 example(s) of []".
    "empty csv": ({"d.csv": b""}, "d.csv", "{root}/d.csv: holds no labelled texts"),
    "csv with only its header": ({"d.csv": b"text,label\n"}, "d.csv", "{root}/d.csv: holds no labelled texts"),
    "empty jsonl": ({"d.jsonl": b"\n"}, "d.jsonl", "{root}/d.jsonl: holds no labelled texts"),
    "too few to hold out a test fifth": ({"d/pos/1.txt": b"good", "d/maybe/2.txt": b"hm"}, "d",
                                         "{root}/d: 2 examples are too few to hold out a test fifth"),
    "label only in the test split": ({**imdb_tree(), "aclImdb/test/meh/9_5.txt": b"so so"}, "aclImdb",
                                     "{root}/aclImdb/test/meh: label 'meh' is not one of the training labels"),
    "review not utf-8": ({"d/pos/1.txt": b"good", "d/neg/2.txt": b"\x80bad"}, "d", "{root}/d/neg/2.txt: not UTF-8 text"),
    "missing test split": (imdb_tree(splits=("train",)), "aclImdb", "{root}/aclImdb: missing folder test/"),
    "missing train split": (imdb_tree(splits=("test",)), "aclImdb", "{root}/aclImdb: missing folder train/"),
    "split with one label": (imdb_tree(labels=("pos",)), "aclImdb", "{root}/aclImdb: the train split needs reviews in both"),
    "archive without test": ({"a.tar.gz": tar_gz(imdb_tree(splits=("train",)))}, "a.tar.gz",
                             "{root}/a.tar.gz: the test split needs reviews in both"),
    "truncated archive": ({"a.tar.gz": tar_gz(imdb_tree())[:100]}, "a.tar.gz",
                          "{root}/a.tar.gz: archive is truncated or corrupt"),
    "unsupported file": ({"reviews.txt": b"good\n"}, "reviews.txt", "{root}/reviews.txt: unsupported data source"),
    "no such source": ({}, "nowhere.csv", "data source {root}/nowhere.csv (from --data) does not exist"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_dataset_is_a_one_line_error(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RNNSENT_CACHE", str(tmp_path / "cache"))
    files, data, expected = CASES[case]
    write_files(tmp_path, files)
    code = main(["train", "--data", str(tmp_path / data), "--out", str(tmp_path / "out"), "--quiet", "--threads", "1"])
    # Reading a source for the first time prints a note (and a tree unlike aclImdb's a warning); the
    # error is the only other line.
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(("reading ", "warning: "))]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: " + expected.format(root=tmp_path)), lines
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", [lambda data: data[: len(data) // 2], lambda data: b"PK\x03\x04" + b"\x00" * 64,
                                    lambda data: b"\x93NUMPY garbage"], ids=["truncated", "bad zip", "not a zip"])
def test_damaged_encoding_cache_is_rebuilt(tmp_path, damage):
    from rnnsent.config import TextConfig
    from rnnsent.data.cache import load_encoded

    source = tmp_path / "d.jsonl"
    source.write_bytes(jsonl(*GOOD, *GOOD, *GOOD))  # three of each label: a test fifth can be held out
    first = load_encoded(source, TextConfig(num_words=10), cache_dir=tmp_path / "cache", quiet=True)
    (cached,) = (tmp_path / "cache" / "encoded").glob("*.npz")
    cached.write_bytes(damage(cached.read_bytes()))
    again = load_encoded(source, TextConfig(num_words=10), cache_dir=tmp_path / "cache", quiet=True)
    assert again.vocabulary == first.vocabulary and again.train.flat.tolist() == first.train.flat.tolist()
