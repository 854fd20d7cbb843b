"""Exact resume: a run stopped by SIGKILL, SIGINT or SIGTERM and resumed ends bit-identical.

Each interrupted run is a real ``python -m rnnsent train`` subprocess, signalled once a
mid-epoch checkpoint exists; the resume and the uninterrupted reference run in this process
(importing torch in a fresh interpreter is the slow part, so the three subprocesses are
started together and signalled as each becomes ready).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import rnnsent
from rnnsent.cli.main import main
from rnnsent.training import checkpoint as checkpoint

SOURCE_ROOT = Path(rnnsent.__file__).resolve().parents[1]

# A model small enough that a run takes a second or two; --checkpoint-every 2 makes
# mid-epoch checkpoints. --threads 1 makes CPU float results reproducible.
COMMON = [
    "--num-words", "60", "--maxlen", "12", "--embedding-dim", "8", "--hidden-size", "4",
    "--epochs", "3", "--batch-size", "8", "--checkpoint-every", "2", "--threads", "1",
    "--lr", "0.01", "--no-report-test", "--quiet", "--seed", "7",
]
# Keras' RMSprop with the lazy sparse embedding rows (the default optimiser).
RMSPROP = COMMON
# Adam, a GRU (learns from the start, so dropout masks change the weights), both dropouts
# (the RNG state must be restored) and a validation split (best weights in the checkpoint).
ADAM_DROPOUT = COMMON + [
    "--optimizer", "adam", "--cell", "gru", "--dropout", "0.3", "--embedding-dropout", "0.2", "--validation-split", "0.2",
]
# A stacked model: its n-gram regression is fitted before the first checkpoint and must come
# back from it (not be refitted), and the blend is fitted after the resumed training. Its
# embedding and GRU step at twice the head's rate: two optimiser groups, each with its scale.
STACKED = ADAM_DROPOUT + ["--padding", "post", "--use-lengths", "--ngram-buckets", "101", "--ngram-fit", "stacked",
                          "--encoder-lr-scale", "2"]
# Three classes (the data's "stars" field), a softmax head and its cross-entropy.
THREE_CLASSES = ADAM_DROPOUT + ["--label-field", "stars"]
VARIANTS = {
    "sigkill-rmsprop": (signal.SIGKILL, RMSPROP),
    "sigterm-three-classes": (signal.SIGTERM, THREE_CLASSES),
    "sigterm-stacked": (signal.SIGTERM, STACKED),
    "sigint-rmsprop": (signal.SIGINT, RMSPROP),
    "sigterm-adam-dropout": (signal.SIGTERM, ADAM_DROPOUT),
}


def write_reviews(path: Path, count: int = 200) -> Path:
    """A JSONL file of synthetic reviews whose label is told by a few marker words; "stars" is a
    three-class label told by the same words."""
    positive, negative = ["good", "great", "fine"], ["bad", "awful", "dull"]
    lines = []
    for index in range(count):
        label = index % 2
        filler = [f"w{(index * 7 + offset * 13) % 40}" for offset in range(3 + index % 11)]
        marker = (positive if label else negative)[index % 3]
        filler.insert(index % len(filler), marker)
        lines.append(json.dumps({"text": " ".join(filler), "label": label, "stars": label + (index % 3 == 0)}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_progress(run_dir: Path) -> dict | None:
    """The progress of the committed checkpoint, or None while there is none."""
    try:
        return json.loads((run_dir / "checkpoint" / "state.json").read_text())["progress"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    return {"root": root, "data": write_reviews(root / "reviews.jsonl"), "cache": root / "cache"}


@pytest.fixture(autouse=True)
def private_cache(workspace, monkeypatch):
    monkeypatch.setenv("RNNSENT_CACHE", str(workspace["cache"]))
    monkeypatch.delenv("RNNSENT_DATA", raising=False)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def interrupted(workspace):
    """Start every interrupted run at once; signal each when its first mid-epoch checkpoint exists."""
    env = {**os.environ, "RNNSENT_CACHE": str(workspace["cache"]),
           "PYTHONPATH": os.pathsep.join([str(SOURCE_ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("RNNSENT_DATA", None)
    runs = {}
    for name, (signum, flags) in VARIANTS.items():
        run_dir = workspace["root"] / name
        log = open(workspace["root"] / f"{name}.log", "w+b")
        command = [sys.executable, "-m", "rnnsent", "train", "--data", str(workspace["data"]), "--out", str(run_dir), *flags]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        runs[name] = {"dir": run_dir, "process": process, "signal": signum, "log": log, "signalled_at": None}
    deadline = time.monotonic() + 120
    while any(run["signalled_at"] is None for run in runs.values()):
        for name, run in runs.items():
            if run["signalled_at"] is not None:
                continue
            if run["process"].poll() is not None:
                pytest.fail(f"{name} ended (code {run['process'].returncode}) before it could be signalled")
            progress = read_progress(run["dir"])
            if progress and progress["global_step"] > 0 and progress["step_in_epoch"] > 0:
                run["process"].send_signal(run["signal"])
                run["signalled_at"] = progress
        if time.monotonic() > deadline:
            pytest.fail("no checkpoint appeared within 120 s")
        time.sleep(0.002)
    for run in runs.values():
        run["returncode"] = run["process"].wait(timeout=120)
        run["log"].seek(0)
        run["output"] = run["log"].read().decode("utf-8", "replace")
        run["log"].close()
    return runs


def train_in_process(workspace, out: Path, flags: list[str]) -> None:
    assert main(["train", "--data", str(workspace["data"]), "--out", str(out), *flags]) == 0


@pytest.fixture(scope="module")
def references(workspace):
    """Uninterrupted runs, one per set of flags, trained on first use."""
    done: dict[tuple[str, ...], Path] = {}

    def reference(flags: tuple[str, ...]) -> Path:
        if flags not in done:
            done[flags] = workspace["root"] / f"reference-{len(done)}"
            train_in_process(workspace, done[flags], list(flags))
        return done[flags]

    return reference


def assert_same_run(resumed: Path, reference: Path) -> None:
    """Bit-identical weights; the same per-epoch history up to float summation order."""
    resumed_weights, reference_weights = load_file(resumed / "model.safetensors"), load_file(reference / "model.safetensors")
    assert resumed_weights.keys() == reference_weights.keys()
    for name, tensor in reference_weights.items():
        assert torch.equal(resumed_weights[name], tensor), f"{name} differs after resume"
    assert (resumed / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    history = [json.loads((run / "history.json").read_text()) for run in (resumed, reference)]
    assert len(history[0]) == len(history[1])
    for resumed_row, reference_row in zip(*history):
        for key, value in reference_row.items():
            if key != "seconds":
                assert resumed_row[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


@pytest.mark.parametrize("name", list(VARIANTS))
def test_interrupted_run_resumes_to_identical_weights(workspace, interrupted, references, name, capsys):
    run = interrupted[name]
    signum, flags = VARIANTS[name]
    if signum == signal.SIGKILL:
        assert run["returncode"] == -signal.SIGKILL
    else:
        # A clean stop: the step in progress finishes, a checkpoint is written, exit code 130.
        assert run["returncode"] == 130, run["output"]
        assert "interrupted: stopped at step" in run["output"]
        assert "Traceback" not in run["output"]
    assert not (run["dir"] / "manifest.json").exists()
    stopped = read_progress(run["dir"])
    assert stopped["global_step"] >= run["signalled_at"]["global_step"]
    meta, _ = checkpoint.load_checkpoint(run["dir"])  # verifies the checksum
    assert meta["progress"] == stopped

    assert main(["train", "--resume", str(run["dir"])]) == 0
    resumed_output = capsys.readouterr().out
    assert f"({stopped['global_step']} steps done)" in resumed_output
    # Files of checkpoints that were never committed (SIGKILL mid-write) are cleared away.
    meta, _ = checkpoint.load_checkpoint(run["dir"])
    assert sorted(p.name for p in (run["dir"] / "checkpoint").iterdir()) == sorted(["state.json", meta["tensors"]])

    reference = references(tuple(flags))
    assert_same_run(run["dir"], reference)
    total = json.loads((reference / "metrics.json").read_text())["steps"]
    assert 0 < stopped["global_step"] < total
    # The run must learn: with frozen activations, dropout masks and optimiser state would not
    # change the weights, and the comparison above could not fail.
    history = json.loads((reference / "history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"] - 0.05


def test_resume_of_a_finished_run_changes_nothing(workspace, references, capsys):
    """A finished and saved run is left as it is: its metrics (training time included) are not
    rewritten by a resume that trains nothing."""
    out = workspace["root"] / "finished"
    shutil.copytree(references(tuple(RMSPROP)), out)
    before = {name: (out / name).read_bytes() for name in ("model.safetensors", "metrics.json", "manifest.json")}
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 0
    assert "nothing to resume" in capsys.readouterr().out
    assert {name: (out / name).read_bytes() for name in before} == before


def test_resume_of_a_run_that_finished_training_but_was_not_saved_saves_it(workspace, references, capsys):
    """Killed after its last epoch and before its model directory was written: a resume trains
    nothing and writes the same weights."""
    out = workspace["root"] / "finished-unsaved"
    shutil.copytree(references(tuple(RMSPROP)), out)
    weights = (out / "model.safetensors").read_bytes()
    for name in ("manifest.json", "model.safetensors", "metrics.json"):
        (out / name).unlink()
    assert main(["train", "--resume", str(out)]) == 0
    assert (out / "model.safetensors").read_bytes() == weights and (out / "manifest.json").exists()


def test_resume_without_checkpoint_is_a_one_line_error(workspace, tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and "state.json" in error


def test_resume_refuses_setting_flags(workspace, tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--epochs", "5"]) == 2
    assert "--resume continues a run with its saved settings" in capsys.readouterr().err
