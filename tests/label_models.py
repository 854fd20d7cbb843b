"""Tiny models of each label space, trained in seconds, for the service's tests, and untrained ones of any architecture.

topics: three classes (politics, sports, tech); stars: 1 to 5, ordered; spam: binary with other
names than sentiment (ham, spam); tags: multi-label over the topics, some texts with none. Each
word family belongs to one label, so a few epochs learn them. :func:`random_predictor` builds a
model of any recipe with large random weights, so that different texts get clearly different scores.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import torch

from rnnsent.artifact.directory import Artifact
from rnnsent.cli.main import main
from rnnsent.config import build_config
from rnnsent.inference.predictor import Predictor
from rnnsent.labels import BINARY_SENTIMENT, LabelSpace
from rnnsent.model.build import build_model, ngram_branch, recurrent_network
from rnnsent.text.vocabulary import Vocabulary

FILLER = ["the", "a", "it", "was", "and", "this", "of", "to", "so", "very"]
TOPICS = {"politics": ["vote", "senate", "law"], "sports": ["goal", "match", "team"], "tech": ["code", "chip", "app"]}
STARS = {1: ["awful", "horrid"], 2: ["poor", "weak"], 3: ["okay", "average"], 4: ["good", "nice"], 5: ["superb", "brilliant"]}
SPAM = {"ham": ["meeting", "lunch", "report"], "spam": ["prize", "winner", "free"]}
FAST = ["--quiet", "--threads", "1", "--cell", "gru", "--hidden-size", "8", "--lr", "0.01", "--optimizer", "adam",
        "--epochs", "6", "--maxlen", "12", "--num-words", "40", "--batch-size", "16", "--no-report-test"]
KINDS = ("topics", "stars", "spam", "tags")
RANDOM_WORDS = tuple(f"w{i}" for i in range(30))


def sentence(rng: random.Random, words: list[str], count: int = 2) -> str:
    tokens = rng.choices(FILLER, k=rng.randint(3, 6))
    for _ in range(count):
        tokens.insert(rng.randint(0, len(tokens)), rng.choice(words))
    return " ".join(tokens)


def one_label_rows(families: dict, count: int, seed: int) -> list[tuple[str, object]]:
    rng = random.Random(seed)
    names = list(families)
    return [(sentence(rng, families[names[i % len(names)]]), names[i % len(names)]) for i in range(count)]


def tag_rows(count: int, seed: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        tags = [] if index % 4 == 0 else sorted(rng.sample(list(TOPICS), 1 + index % 2))
        tokens = rng.choices(FILLER, k=rng.randint(3, 6))
        for tag in tags:
            for _ in range(2):
                tokens.insert(rng.randint(0, len(tokens)), rng.choice(TOPICS[tag]))
        rows.append((" ".join(tokens), tags))
    return rows


def _write_csv(path: Path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("text", "label"))
        writer.writerows(rows)
    return path


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in rows), encoding="utf-8")
    return path


def train_label_model(kind: str, root: Path) -> Path:
    """Train the ``kind`` model (one of :data:`KINDS`) under ``root``; returns its directory."""
    folder = root / kind
    folder.mkdir(parents=True, exist_ok=True)
    extra: list[str] = []
    if kind == "topics":
        data = _write_csv(folder / "data.csv", one_label_rows(TOPICS, 300, 0))
    elif kind == "stars":
        data = _write_jsonl(folder / "data.jsonl", one_label_rows(STARS, 400, 1))
    elif kind == "spam":
        data = _write_csv(folder / "data.csv", one_label_rows(SPAM, 200, 2))
    elif kind == "tags":
        data = _write_jsonl(folder / "data.jsonl", tag_rows(480, 3))
        extra = ["--epochs", "10"]
    else:
        raise ValueError(f"unknown kind {kind!r}")
    out = folder / "model"
    assert main(["train", "--data", str(data), "--out", str(out), "--preset", "seed", *FAST, *extra]) == 0
    return out


def random_predictor(overrides: dict, space: LabelSpace = BINARY_SENTIMENT, temperature: float = 1.0,
                     thresholds: list[float] | None = None) -> Predictor:
    """A predictor over :data:`RANDOM_WORDS` of the recipe ``seed`` + ``overrides`` with random weights.

    The embedding, the head and any n-gram weights are drawn large; a stacked model's n-gram bias
    and blend are drawn too, so that both of its parts count.
    """
    settings = {"num_words": 3 + len(RANDOM_WORDS), "maxlen": 10, "embedding_dim": 6, "hidden_size": 4,
                "recurrent_init": "orthogonal", "input_init_std": 0.0, **overrides}
    config = build_config("seed", settings)
    torch.manual_seed(0)
    model = build_model(config.model, config.text.num_words, labels=space)
    with torch.no_grad():
        recurrent_network(model).embedding.weight.normal_(0.0, 1.0)
        recurrent_network(model).head.weight.normal_(0.0, 2.0)
        if ngram_branch(model) is not None:
            ngram_branch(model).weight.weight.normal_(0.0, 1.0)
        if hasattr(model, "blend"):
            ngram_branch(model).bias.normal_(0.0, 0.5)
            model.blend.copy_(torch.randn(model.blend.shape) * 0.5 + torch.tensor([1.0] + [0.0] * (len(model.blend) - 1)))
    model.eval()
    return Predictor(Artifact(Path("."), config, Vocabulary(RANDOM_WORDS), model, labels=space, temperature=temperature,
                              thresholds=thresholds))
