"""ONNX export of models trained on real IMDB reviews, scored on 300 raw test reviews (skipped without the shared archive).

The reviews are tokenized by the deployment walk-through (``docs/examples/onnx_deploy.py``) from
the exported settings alone, so the whole path a deployment takes, raw text to probabilities,
is held equal to ``Model.predict``.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest

import rnnsent
from conftest import SHARED_ARCHIVE
from rnnsent.cli.main import main
from rnnsent.data.sources import read_corpus
from rnnsent.data.splits import limit_indices

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_ARCHIVE.exists(), reason=f"{SHARED_ARCHIVE} is not here"),
]
EXAMPLE = runpy.run_path(str(Path(__file__).resolve().parents[2] / "docs" / "examples" / "onnx_deploy.py"))
RUN = ["--data", str(SHARED_ARCHIVE), "--threads", "1", "--quiet"]
# A larger learning rate than the notebook's 1e-4, so that two epochs are enough to learn something.
SEED = ["--preset", "seed", "--limit", "2000", "--epochs", "2", "--lr", "0.003"]
# bigru's architecture made small (16 units, the first 200 words), with a stacked bigram regression.
SMALL_BIGRU = ["--preset", "bigru", "--limit", "1000", "--epochs", "1", "--hidden-size", "16", "--embedding-dim", "16", "--maxlen", "200",
               "--ngram-buckets", "262144", "--ngram-order", "2", "--ngram-fit", "stacked"]


def test_models_trained_on_imdb_score_raw_reviews_as_rnnsent_does(tmp_path, capsys):
    assert main(["train", *RUN, "--out", str(tmp_path / "seed"), *SEED]) == 0
    assert main(["train", *RUN, "--out", str(tmp_path / "bigru"), *SMALL_BIGRU]) == 0
    test = read_corpus(SHARED_ARCHIVE).test
    texts = [test.texts[i] for i in limit_indices(test.strata(), 300)]
    assert len(texts) == 300 and max(map(len, texts)) > 2000  # reviews long enough to be cut to maxlen
    capsys.readouterr()
    for name in ("seed", "bigru"):
        out = tmp_path / f"{name}.onnx"
        assert main(["export", str(tmp_path / name), "--out", str(out)]) == 0
        assert "onnxruntime matches rnnsent" in capsys.readouterr().out
        model = rnnsent.load(tmp_path / name)
        probabilities = EXAMPLE["score"](str(out), texts)[:, 0]
        expected = model.probabilities(texts)
        assert np.abs(probabilities - expected).max() <= 1e-5, name
        labels = EXAMPLE["labels_of"](probabilities[:, None], EXAMPLE["load_settings"](str(out)))
        assert [chosen[0] for chosen in labels] == [p.label for p in model.predict(texts)]
        assert 0.05 < float(expected.mean()) < 0.95 and expected.std() > 0.01  # the model learned something
