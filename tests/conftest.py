"""Shared fixtures: tiny made-up datasets, a tiny sentiment model trained in seconds on them, servers.

The reviews are neutral filler with a few obviously positive or negative words, so that even
the seed model learns them in a few hundred steps.
"""

from __future__ import annotations

import csv
import json
import random
import socket
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
import torch

POSITIVE_WORDS = ["great", "wonderful", "superb", "loved", "excellent", "fun", "beautiful", "moving"]
NEGATIVE_WORDS = ["awful", "boring", "terrible", "dull", "waste", "bad", "stupid", "mess"]
FILLER_WORDS = ["the", "movie", "film", "plot", "was", "and", "a", "it", "acting", "story", "i", "this", "cast"]

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
    # The rnnsent command sets OpenMP's wait policy for scoring commands; tests that run it in
    # this process must not pass that on to the processes later tests start.
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)


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


def write_tiny_reviews(path: Path, count: int = 600, seed: int = 0) -> Path:
    """A CSV of short reviews whose label is set by the sentiment words they contain."""
    generator = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for index in range(count):
            label = index % 2
            words = generator.choices(FILLER_WORDS, k=generator.randint(4, 10))
            for _ in range(generator.randint(1, 3)):
                pool = POSITIVE_WORDS if label else NEGATIVE_WORDS
                words.insert(generator.randint(0, len(words)), generator.choice(pool))
            writer.writerow([" ".join(words).capitalize() + ".", label])
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A seed-architecture model trained for a few seconds on :func:`write_tiny_reviews`."""
    from rnnsent.cli.main import main

    directory = tmp_path_factory.mktemp("tiny-model")
    data = write_tiny_reviews(directory / "reviews.csv")
    out = directory / "model"
    code = main(["train", "--data", str(data), "--out", str(out), "--quiet", "--threads", "1", "--preset", "seed",
                 "--num-words", "40", "--maxlen", "12", "--embedding-dim", "8", "--epochs", "3", "--no-report-test",
                 "--lr", "0.01", "--batch-size", "16"])
    assert code == 0
    return out


def start_server(app) -> tuple[str, Callable[[], None]]:
    """Run an ASGI app with uvicorn in a thread on a free loopback port: ``(base URL, stop)``.

    The socket is bound here (port 0) and handed to uvicorn, so no other process can take
    the port between choosing and listening.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture
def server_factory():
    """``start(app) -> base URL``; every server started is stopped after the test."""
    stops = []

    def start(app) -> str:
        url, stop = start_server(app)
        stops.append(stop)
        return url

    yield start
    for stop in stops:
        stop()


@pytest.fixture(scope="session")
def tiny_predictor(tiny_model_dir):
    from rnnsent.inference.predictor import Predictor

    return Predictor.load(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_server(tiny_predictor):
    """Base URL of the service for the tiny model, with default limits."""
    from rnnsent.serve.app import create_app

    url, stop = start_server(create_app(tiny_predictor))
    yield url
    stop()
