"""Texts and labels given in memory, ``rnnsent.train(data=(texts, labels))``: read exactly as the
same rows in a JSONL file, for every kind of label, with one-line errors at the boundary."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

import rnnsent
from rnnsent.data.in_memory import in_memory_source, is_in_memory
from rnnsent.errors import DataError

SETTINGS = {"num_words": 60, "maxlen": 12, "embedding_dim": 8, "hidden_size": 8, "epochs": 2, "batch_size": 16,
            "threads": 1, "verbose": False, "progress": False}


def pairs(count: int = 160, seed: int = 0):
    """Texts told apart by a marker word, with three kinds of labels for the same texts."""
    generator = random.Random(seed)
    texts, names, stars, tags = [], [], [], []
    for index in range(count):
        kind = index % 3
        words = [f"w{generator.randrange(30)}" for _ in range(6)]
        words.insert(generator.randrange(6), ("cheap", "meeting", "lunch")[kind])
        texts.append(" ".join(words))
        names.append("spam" if kind == 0 else "ham")
        stars.append(kind + 1)
        tags.append([["offer"], ["work"], ["work", "food"]][kind])
    return texts, names, stars, tags


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNSENT_CACHE", str(tmp_path / "cache"))


def test_pairs_train_exactly_as_the_same_rows_in_a_jsonl_file(tmp_path):
    texts, names, _, _ = pairs()
    from_memory = rnnsent.train(data=(texts, names), out=tmp_path / "memory", **SETTINGS)
    rows = "".join(json.dumps({"text": text, "label": name}) + "\n" for text, name in zip(texts, names))
    (tmp_path / "rows.jsonl").write_text(rows, encoding="utf-8")
    from_file = rnnsent.train(data=tmp_path / "rows.jsonl", out=tmp_path / "file", **SETTINGS)
    assert (tmp_path / "memory" / "model.safetensors").read_bytes() == (tmp_path / "file" / "model.safetensors").read_bytes()
    assert from_memory.labels.names == from_file.labels.names == ("ham", "spam")
    assert from_memory.predict(["w1 cheap w2"])[0].label in ("ham", "spam")


@pytest.mark.parametrize("kind, task, names", [
    ("stars", "multiclass", ("1", "2", "3")),
    ("tags", "multilabel", ("food", "offer", "work")),
])
def test_integer_and_list_labels_make_their_label_space(tmp_path, kind, task, names):
    texts, _, stars, tags = pairs()
    labels = np.array(stars) if kind == "stars" else tags  # a NumPy array of labels works like a list
    model = rnnsent.train(data=(np.array(texts), labels), out=tmp_path / kind, **SETTINGS)
    assert (model.labels.task, model.labels.names) == (task, names)


def test_the_same_pairs_name_the_same_file(tmp_path):
    texts, names, _, _ = pairs(20)
    first = in_memory_source((texts, names), tmp_path)
    assert in_memory_source((list(texts), tuple(names)), tmp_path) == first
    assert in_memory_source((texts, names[::-1]), tmp_path) != first
    assert [json.loads(line)["label"] for line in first.read_text().splitlines()] == names


def test_a_path_is_not_in_memory_data():
    assert not is_in_memory("reviews.csv") and not is_in_memory(None)
    assert is_in_memory((["a"], ["b"])) and is_in_memory([["a"], ["b"]])


@pytest.mark.parametrize("data, message", [
    ((["a", "b"], ["x"]), "2 texts but 1 labels"),
    ((["a", 3.5], ["x", "y"]), "text 1 is float, not a string"),
    ((["a", "b"], ["x", None]), "label 1"),
    ((["a", "b"], ["x", {"y": 1}]), "label 1"),
    ((["a", "b"], "xy"), "the labels are str, not a sequence"),
    ((["a"], ["x"], ["y"]), "a sequence of 3 items"),
])
def test_malformed_pairs_are_one_line_errors(tmp_path, data, message):
    with pytest.raises(DataError, match=message) as caught:
        rnnsent.train(data=data, out=tmp_path / "model", **SETTINGS)
    assert "\n" not in str(caught.value)


def test_verbose_false_prints_nothing(tmp_path, capsys):
    # It printed "reading ... (first time; cached afterwards)" on standard error all the same.
    texts, names, _, _ = pairs()
    rnnsent.train(data=(texts, names), out=tmp_path / "quiet", **SETTINGS)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
