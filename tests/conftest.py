"""Shared test helpers: tiny labelled datasets written into a test's own folder.

The reviews are made from a few obviously positive and negative words mixed with neutral
filler, so that even the seed model learns them in a few hundred steps.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch

POSITIVE_WORDS = ("great", "wonderful", "excellent", "loved", "brilliant", "superb", "enjoyable", "best")
NEGATIVE_WORDS = ("awful", "terrible", "boring", "hated", "dreadful", "worst", "dull", "waste")
FILLER_WORDS = ("the", "movie", "film", "plot", "actors", "scene", "story", "it", "was", "and", "a", "of", "this")

SHARED_ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared/data/aclImdb.tar.gz"


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The machine is small and shared: keep in-process torch work on one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Never read or write the developer's dataset cache, and never pick up their RNNSENT_DATA."""
    monkeypatch.setenv("RNNSENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RNNSENT_DATA", raising=False)


def make_review(label: int, rng: random.Random, length: int = 12) -> str:
    """One review: neutral filler with two or three words of the label's sentiment."""
    words = [rng.choice(FILLER_WORDS) for _ in range(length)]
    sentiment = POSITIVE_WORDS if label else NEGATIVE_WORDS
    for _ in range(rng.randint(2, 3)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(sentiment))
    return " ".join(words).capitalize() + "."


def make_reviews(count: int, seed: int = 0) -> list[tuple[str, int]]:
    """``count`` (text, label) pairs, alternating labels, deterministic in ``seed``."""
    rng = random.Random(seed)
    return [(make_review(index % 2, rng), index % 2) for index in range(count)]


def write_csv(path: Path, reviews: list[tuple[str, object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(reviews)
    return path


def write_jsonl(path: Path, reviews: list[tuple[str, object]]) -> Path:
    path.write_text("".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in reviews), encoding="utf-8")
    return path


def write_imdb_tree(root: Path, per_label: int = 4, seed: int = 0) -> Path:
    """An aclImdb-shaped tree ``root/aclImdb/{train,test}/{pos,neg}/ID_RATING.txt``; returns ``root/aclImdb``."""
    rng = random.Random(seed)
    for split in ("train", "test"):
        for label_name, label in (("neg", 0), ("pos", 1)):
            folder = root / "aclImdb" / split / label_name
            folder.mkdir(parents=True)
            for index in range(per_label):
                rating = 8 if label else 2
                (folder / f"{index}_{rating}.txt").write_text(make_review(label, rng), encoding="utf-8")
    return root / "aclImdb"
