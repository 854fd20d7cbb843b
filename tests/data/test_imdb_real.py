"""A short real run on IMDB reviews from the shared archive (skipped where the archive is absent)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SHARED_ARCHIVE
from rnnsent.artifact.directory import load_artifact
from rnnsent.cli.main import main
from rnnsent.config import TextConfig
from rnnsent.data.cache import load_encoded

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_ARCHIVE.exists(), reason=f"{SHARED_ARCHIVE} is not here"),
]


def test_seed_model_learns_imdb_from_4000_reviews(tmp_path, capsys):
    # A larger learning rate than the notebook's 1e-4, so that two epochs are enough to learn something.
    args = ["--limit", "4000", "--epochs", "2", "--lr", "0.003", "--threads", "1", "--quiet"]
    assert main(["train", "--data", str(SHARED_ARCHIVE), "--out", str(tmp_path / "model"), *args]) == 0
    out = capsys.readouterr().out
    assert "4000 training texts" in out
    artifact = load_artifact(tmp_path / "model")
    assert artifact.metrics["count"] == 4000
    assert artifact.metrics["accuracy"] > 0.65, artifact.metrics  # chance is 0.5 on these balanced reviews
    assert artifact.metrics["roc_auc"] > 0.7
    assert len(artifact.history) == 2

    # The whole archive was encoded once and cached: all 25,000 + 25,000 labelled reviews, balanced.
    corpus = load_encoded(SHARED_ARCHIVE, TextConfig(), quiet=True)
    assert len(corpus.train) == len(corpus.test) == 25_000
    assert int(corpus.train.labels.sum()) == int(corpus.test.labels.sum()) == 12_500
    assert len(corpus.vocabulary.words) == 20_000 - 3
    assert corpus.train.flat.max() < 20_000
    assert np.all(corpus.train.flat[corpus.train.offsets[:-1]] == 1)  # every review starts with the start id

    # evaluate reads the cache and scores the same 4000 test reviews the same way.
    assert main(["evaluate", str(tmp_path / "model"), "--data", str(SHARED_ARCHIVE), "--limit", "4000", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == pytest.approx(artifact.metrics["accuracy"])
