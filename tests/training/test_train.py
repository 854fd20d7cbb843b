"""The training loop: repeatable runs, step limits, validation, and exact resume after an interruption."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from conftest import make_reviews, write_csv
from rnnsent.config import build_config, build_options, split_settings
from rnnsent.data.cache import load_encoded
from rnnsent.errors import TrainingInterrupted
from rnnsent.training.checkpoint import has_checkpoint
from rnnsent.training.pipeline import train_tensors
from rnnsent.training.tensors import prepare_data

FAST = {"num_words": 80, "maxlen": 16, "lr": 0.01, "batch_size": 16, "epochs": 2,
        "dropout": 0.2, "embedding_dropout": 0.1}  # dropout, so that the saved RNG state matters


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-data")
    return load_encoded(write_csv(root / "r.csv", make_reviews(120)), build_config("seed", FAST).text,
                        cache_dir=root / "cache", quiet=True)


def fit(corpus, run_dir, overrides=None, resume=False, on_log=None):
    recipe, options = split_settings({**FAST, **(overrides or {})})
    config = build_config("seed", recipe)
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if on_log:
            on_log(line)

    result = train_tensors(config, build_options(options), prepare_data(corpus, config), run_dir, resume=resume, log=log)
    return result, lines


def same_weights(first, second) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def without_time(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_same_seed_same_run_and_another_seed_another_run(corpus, tmp_path):
    first, lines = fit(corpus, tmp_path / "a")
    second, _ = fit(corpus, tmp_path / "b")
    other, _ = fit(corpus, tmp_path / "c", {"seed": 1})
    assert same_weights(first.model, second.model)
    assert without_time(first.history) == without_time(second.history)
    assert not same_weights(first.model, other.model)
    assert first.steps == 2 * 6  # 96 training reviews in batches of 16, two epochs
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert has_checkpoint(tmp_path / "a")


def test_a_failed_checkpoint_write_does_not_hide_the_runs_own_error(corpus, tmp_path, monkeypatch):
    from rnnsent.training import checkpoint, loop

    def interrupted(self, progress, best_state):
        raise TrainingInterrupted("training stopped at step 3")

    def failed_write(self):
        raise OSError("No space left on device")

    monkeypatch.setattr(loop.Trainer, "_train_epoch", interrupted)
    monkeypatch.setattr(checkpoint.CheckpointWriter, "wait", failed_write)
    with pytest.raises(TrainingInterrupted, match="stopped at step 3") as raised:
        fit(corpus, tmp_path)
    assert raised.value.__notes__ == ["also, the last checkpoint was not written: No space left on device"]


def test_max_steps(corpus, tmp_path):
    result, lines = fit(corpus, tmp_path, {"max_steps": 4})
    assert result.steps == 4 and len(result.history) == 1
    assert lines[-1].startswith("stopped at --max-steps 4, in epoch 1 of ")  # it stopped without a word


def test_validation_split_is_reported_and_selects_the_best_epoch(corpus, tmp_path):
    result, lines = fit(corpus, tmp_path, {"validation_split": 0.25, "epochs": 3})
    assert all("val_loss" in row for row in result.history)
    best = min(result.history, key=lambda row: row["val_loss"])
    assert result.best_epoch == best["epoch"]
    assert "val_loss" in lines[0]


@pytest.mark.parametrize("overrides", [
    {},  # autograd with the lazy sparse RMSprop (dropout rules out the compiled step)
    {"dropout": 0.0, "embedding_dropout": 0.0},  # the compiled step, where the package has it
    {"optimizer": "adam"},
    {"sparse_embedding": False},
])
def test_resume_after_an_interruption_is_exact(corpus, tmp_path, overrides):
    reference, _ = fit(corpus, tmp_path / "reference", overrides)

    def interrupt_after_first_epoch(line: str) -> None:
        if line.startswith("epoch 1/2"):
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C would: the loop checkpoints after this step and stops

    with pytest.raises(TrainingInterrupted, match="checkpoint saved"):
        fit(corpus, tmp_path / "run", overrides, on_log=interrupt_after_first_epoch)
    resumed, lines = fit(corpus, tmp_path / "run", overrides, resume=True)
    assert lines[0].startswith("resuming at epoch 2, step 1")
    assert resumed.steps == reference.steps
    assert same_weights(resumed.model, reference.model)
    assert without_time(resumed.history) == without_time(reference.history)
