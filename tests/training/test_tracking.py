"""--tensorboard: training logs in TensorBoard's format, read back with tensorboard's own event reader."""

from __future__ import annotations

import json
import sys

import pytest

import rnnsent
from conftest import write_tiny_reviews
from rnnsent.cli.main import main
from rnnsent.errors import MissingExtraError

SETTINGS = {"num_words": 40, "maxlen": 12, "embedding_dim": 8, "epochs": 3, "lr": 0.005, "batch_size": 4,
            "validation_split": 0.2, "threads": 1}


def read_events(logdir):
    accumulator_module = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    accumulator = accumulator_module.EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_the_logs_hold_each_epochs_scores_and_the_step_reports(tmp_path):
    pytest.importorskip("tensorboardX")
    data = write_tiny_reviews(tmp_path / "reviews.csv", count=300)
    logdir = tmp_path / "logs"
    model = rnnsent.train("seed", data, tmp_path / "model", tensorboard=str(logdir), verbose=False, **SETTINGS)
    scalars = read_events(logdir)
    history = json.loads((tmp_path / "model" / "history.json").read_text())
    assert history == model.history and len(history) == 3
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "lr", "seconds"):
        logged = scalars[f"epoch/{key}"]
        assert [step for step, _ in logged] == [1, 2, 3]
        # Event files hold float32: the epoch loss equals history.json's to float32 precision.
        assert [value for _, value in logged] == pytest.approx([row[key] for row in history], rel=1e-6, abs=1e-7)
    # Every 50 steps and at each epoch's end: 300 reviews, 60 held out for validation and 48
    # for testing leave 192 for training, 48 batches of 4 per epoch.
    steps_per_epoch = 48
    expected = sorted({*range(50, 3 * steps_per_epoch + 1, 50), *(steps_per_epoch * e for e in (1, 2, 3))})
    for tag in ("step/loss", "step/accuracy", "step/lr", "step/examples_per_second"):
        assert [step for step, _ in scalars[tag]] == expected, tag
    assert all(0.0 <= value <= 1.0 for _, value in scalars["step/accuracy"])
    assert all(value > 0 for _, value in scalars["step/examples_per_second"])
    assert scalars["step/lr"][-1][1] == pytest.approx(0.005)
    # The option says how the run executes: it is not part of the saved recipe.
    assert "tensorboard" not in json.dumps(json.loads((tmp_path / "model" / "config.json").read_text())["config"])


def test_logs_are_off_by_default_and_documented_in_help(tmp_path, capsys):
    data = write_tiny_reviews(tmp_path / "reviews.csv", count=60)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--quiet", "--threads", "1",
                 "--num-words", "40", "--maxlen", "12", "--epochs", "1"]) == 0
    assert not list(tmp_path.rglob("events.out.tfevents.*"))
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--tensorboard TENSORBOARD" in text and "off unless given" in text


def test_without_tensorboardx_one_line_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    data = write_tiny_reviews(tmp_path / "reviews.csv", count=60)
    with pytest.raises(MissingExtraError, match=r"pip install 'rnnsent\[track\]'"):
        rnnsent.train(data=data, out=tmp_path / "m", tensorboard=str(tmp_path / "logs"), verbose=False)
    assert not (tmp_path / "m").exists()
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--tensorboard", str(tmp_path / "logs")]) == 2
    assert capsys.readouterr().err.strip() == "error: --tensorboard needs tensorboardX: pip install 'rnnsent[track]'"
