"""rnnsent tune: the search, its files, resume after an interruption, and train --config reproducing the winner."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import torch

from conftest import write_imdb_tree, write_tiny_reviews

pytest.importorskip("optuna")

import rnnsent  # noqa: E402
from rnnsent.artifact.files import read_tensors  # noqa: E402
from rnnsent.cli.main import main  # noqa: E402
from rnnsent.errors import MissingExtraError, UsageError  # noqa: E402
from rnnsent.training import tune as tune_module  # noqa: E402
from rnnsent.training.tune import parse_duration  # noqa: E402

# Small fixed settings keep each trial to a second or two; everything else is searched.
FIXED = {"num_words": 40, "maxlen": 12, "epochs": 3, "batch_size": 16, "threads": 1}
FIXED_FLAGS = ["--num-words", "40", "--maxlen", "12", "--epochs", "3", "--batch-size", "16", "--threads", "1"]


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    return write_tiny_reviews(tmp_path_factory.mktemp("tune-data") / "reviews.csv", count=300)


@pytest.fixture(scope="module")
def tuned(reviews, tmp_path_factory):
    out = tmp_path_factory.mktemp("tune") / "study"
    model = rnnsent.tune(reviews, out, budget="5m", trials=3, verbose=False, **FIXED)
    return out, model


def read_trials(out):
    with open(out / "trials.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_winner_is_at_least_the_base_recipe_on_the_validation_split(tuned):
    out, model = tuned
    rows = read_trials(out)
    assert [row["state"] for row in rows] == ["complete"] * 3
    # Trial 0 is the base recipe itself (enqueued), so the best is never worse than it. On a
    # person's CSV the base recipe is small's (a GRU with max and mean pooling), as train chooses,
    # not the IMDB notebook's five simple-RNN units.
    assert rows[0]["base"] == "True" and rows[0]["cell"] == "gru" and rows[0]["pooling"] == "maxmean"
    assert json.loads((out / "best.json").read_text())["preset"] == "small"
    base = float(rows[0]["validation_accuracy"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["base_value"] == pytest.approx(base)
    assert summary["best_value"] >= base
    assert summary["best_value"] == max(float(row["validation_accuracy"]) for row in rows)
    assert summary["wall_seconds"] > 0 and summary["trials"] == {"complete": 3}
    for name in ("study.sqlite", "trials.png", "best.json", "best/model.safetensors"):
        assert (out / name).exists(), name


def test_the_test_split_is_scored_only_for_the_winner(tuned):
    out, model = tuned
    for number in range(3):
        metrics = json.loads((out / "trials" / f"{number:03d}" / "metrics.json").read_text())
        assert "accuracy" not in metrics and "confusion_matrix" not in metrics
        history = json.loads((out / "trials" / f"{number:03d}" / "history.json").read_text())
        assert all("val_accuracy" in row and "test_accuracy" not in row for row in history)
    winner = json.loads((out / "best" / "metrics.json").read_text())
    assert winner["count"] == 60 and winner["accuracy"] == model.metrics["accuracy"]
    assert json.loads((out / "summary.json").read_text())["test"]["accuracy"] == winner["accuracy"]


def test_the_winner_predicts(tuned):
    out, model = tuned
    predictions = model.predict(["A wonderful superb film.", "Awful boring mess."])
    assert [p.label for p in predictions] == ["positive", "negative"]
    assert rnnsent.load(out / "best").predict(["great"])[0].label in ("positive", "negative")


def test_train_config_reproduces_the_winners_weights(tuned, reviews, tmp_path):
    out, model = tuned
    best = json.loads((out / "summary.json").read_text())["best_trial"]
    assert main(["train", "--config", str(out / "best.json"), "--data", str(reviews), "--out", str(tmp_path / "again"),
                 "--quiet", "--threads", "1"]) == 0
    again = read_tensors(tmp_path / "again" / "model.safetensors")
    winner = read_tensors(out / "trials" / f"{best:03d}" / "model.safetensors")
    assert again.keys() == winner.keys()
    assert all(torch.equal(again[name], winner[name]) for name in winner)
    assert json.loads((tmp_path / "again" / "config.json").read_text())["config"] == json.loads((out / "best.json").read_text())
    # The Python API takes the same file, and settings still override it.
    overridden = rnnsent.train(data=reviews, out=tmp_path / "py", config=out / "best.json", epochs=1, threads=1,
                               verbose=False)
    assert overridden.config.train.epochs == 1 and len(overridden.history) == 1


def test_train_config_refuses_a_preset_and_a_missing_file(tuned, reviews, tmp_path, capsys):
    out, _ = tuned
    assert main(["train", "--config", str(out / "best.json"), "--preset", "bigru", "--out", str(tmp_path / "x")]) == 2
    assert "drop --preset" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "none.json"), "--data", str(reviews), "--out", str(tmp_path / "x")]) == 2
    assert "no such recipe file" in capsys.readouterr().err


def test_an_interrupted_tune_resumes_without_repeating_finished_trials(reviews, tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    real, calls = tune_module.train_trial, []

    def interrupted_on_the_second(trial, *args, **kwargs):
        calls.append(trial.number)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(trial, *args, **kwargs)

    monkeypatch.setattr(tune_module, "train_trial", interrupted_on_the_second)
    command = ["tune", "--data", str(reviews), "--out", str(out), "--trials", "3", "--budget", "5m", *FIXED_FLAGS]
    assert main(command) == 130
    assert "run the same command again to continue" in capsys.readouterr().err
    first = read_trials(out)
    assert [row["state"] for row in first] == ["complete", "fail"] and first[1]["note"] == "interrupted"

    calls.clear()
    monkeypatch.setattr(tune_module, "train_trial", lambda trial, *a, **k: (calls.append(trial.number), real(trial, *a, **k))[1])
    assert main(command) == 0
    rows = read_trials(out)
    # Trial 0 was not run again; the interrupted trial's settings were (as trial 2), then one new trial.
    assert calls == [2, 3]
    assert [row["state"] for row in rows] == ["complete", "fail", "complete", "complete"]
    searched = [name for name in rows[1] if name not in ("trial", "state", "validation_accuracy", "epochs_scored",
                                                          "seconds", "base", "note")]
    assert {name: rows[2][name] for name in searched} == {name: rows[1][name] for name in searched}
    assert (out / "best.json").exists()
    # The same command once more has nothing left to do but the winner.
    calls.clear()
    assert main(command) == 0 and calls == []


def test_a_tune_of_other_settings_is_refused_in_the_same_folder(tuned, reviews, capsys):
    out, _ = tuned
    assert main(["tune", "--data", str(reviews), "--out", str(out), "--metric", "log_loss", "--trials", "1", *FIXED_FLAGS]) == 2
    assert "holds a tune of other settings" in capsys.readouterr().err


def test_a_tune_of_other_data_is_refused_in_the_same_folder(tuned, tmp_path, capsys):
    out, _ = tuned
    other = write_tiny_reviews(tmp_path / "other.csv", count=120, seed=3)
    assert main(["tune", "--data", str(other), "--out", str(out), "--trials", "3", *FIXED_FLAGS]) == 2
    assert "holds a tune of other data" in capsys.readouterr().err


def test_the_budget_stops_new_trials_and_a_first_one_always_finishes(reviews, tmp_path):
    out = tmp_path / "study"
    model = rnnsent.tune(reviews, out, budget=1e-3, metric="log_loss", verbose=False, **FIXED)  # spent by trial 0
    rows = read_trials(out)
    assert len(rows) == 1 and rows[0]["state"] == "complete" and rows[0]["base"] == "True"
    assert "validation_log_loss" in rows[0]
    assert model.metrics["count"] == 60


def test_durations_and_bad_arguments(reviews, tmp_path, capsys):
    assert parse_duration("90s") == 90 and parse_duration("2m") == 120 and parse_duration("1h") == 3600
    assert parse_duration("1h30m") == 5400 and parse_duration("45") == 45 and parse_duration(2.5) == 2.5
    for bad in ("", "soon", "0s", "-5m", "2d"):
        with pytest.raises(UsageError, match="--budget"):
            parse_duration(bad)
    with pytest.raises(UsageError, match="ordered labels"):
        rnnsent.tune(reviews, tmp_path / "mae", metric="mae", trials=1, verbose=False, **FIXED)
    assert main(["tune", "--data", str(reviews), "--budget", "2m"]) == 2
    assert "--out DIR" in capsys.readouterr().err
    assert main(["tune", "--data", str(reviews), "--out", str(tmp_path / "b"), "--budget", "soon"]) == 2
    assert "--budget must be a duration" in capsys.readouterr().err


def test_without_optuna_one_line_names_the_extra(reviews, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'rnnsent\[tune\]'"):
        rnnsent.tune(reviews, tmp_path / "study", trials=1)
    assert main(["tune", "--data", str(reviews), "--out", str(tmp_path / "study")]) == 2
    assert capsys.readouterr().err.strip() == "error: rnnsent tune needs optuna: pip install 'rnnsent[tune]'"


@pytest.mark.parametrize("preset", ["seed", "best"])
def test_the_search_space_holds_each_base_recipe_and_the_encoder_rate(preset):
    from rnnsent.config import build_config

    base = build_config(preset)
    space = tune_module.search_space(base)
    assert space["encoder_lr_scale"]["log"] and space["encoder_lr_scale"]["range"][0] <= 0.3
    # Trial 0 is the base recipe itself: every searched value lies in its range or choices.
    for name, value in tune_module.base_params(base, space).items():
        spec = space[name]
        if spec["kind"] == "categorical":
            assert value in spec["choices"], name
        else:
            assert spec["range"][0] <= value <= spec["range"][1], name
    assert tune_module.base_params(base, space)["encoder_lr_scale"] == base.train.encoder_lr_scale


def test_on_aclimdb_sentiment_the_base_recipe_is_the_notebooks(tmp_path):
    # An aclImdb tree read for its sentiment labels is the notebook's problem: trial 0 is seed.
    imdb = write_imdb_tree(tmp_path / "aclImdb", per_label=30)
    rnnsent.tune(imdb, tmp_path / "study", trials=1, verbose=False, **FIXED)
    rows = read_trials(tmp_path / "study")
    assert rows[0]["base"] == "True" and rows[0]["cell"] == "simple" and rows[0]["pooling"] == "last"
    assert json.loads((tmp_path / "study" / "best.json").read_text())["preset"] == "seed"
