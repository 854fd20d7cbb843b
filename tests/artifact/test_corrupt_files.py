"""Damaged, foreign and wrong-version model directories and checkpoints give one-line errors.

Every case goes through the real command line (``rnnsent evaluate``, ``predict``,
``train --resume``) and checks the exit code and that standard error is exactly one line,
``error: ...``, naming the file at fault.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as save_tensors

import rnnsent
from rnnsent.artifact.directory import save_artifact
from rnnsent.artifact.files import sha256_bytes
from rnnsent.cli.main import main
from rnnsent.config import build_config
from rnnsent.model.recurrent import RecurrentClassifier
from rnnsent.text.vocabulary import Vocabulary
from rnnsent.training import checkpoint as checkpoint
from rnnsent.training.optim import build_optimizer

SETTINGS = {"num_words": 40, "maxlen": 10, "embedding_dim": 4, "hidden_size": 3, "epochs": 1}


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """A complete, valid model directory (untrained weights: only the files matter here)."""
    config = build_config("seed", SETTINGS)
    torch.manual_seed(0)
    model = RecurrentClassifier(config.model, config.text.num_words)
    vocabulary = Vocabulary(("good", "bad", "movie"), config.text.index_from)
    return save_artifact(tmp_path / "model", config, vocabulary, model, {"accuracy": 0.5}, [])


def write_with_checksum(directory: Path, name: str, data: bytes) -> None:
    """Replace a file and its manifest entry, as a foreign file that passes the checksum."""
    (directory / name).write_bytes(data)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"][name] = sha256_bytes(data)
    (directory / "manifest.json").write_text(json.dumps(manifest))


def edit_json(directory: Path, name: str, change) -> None:
    value = json.loads((directory / name).read_text())
    change(value)
    data = json.dumps(value).encode()
    if name == "manifest.json":
        (directory / name).write_bytes(data)
    else:
        write_with_checksum(directory, name, data)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # a bit of the last weight: the header still parses, only the checksum tells
    path.write_bytes(bytes(data))


def pickled_weights(directory: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"embedding.weight": torch.zeros(2, 2)}, buffer)
    return buffer.getvalue()


# (damage done to the model directory, the file the error must name)
ARTIFACT_DAMAGE = {
    "truncated weights": (lambda d: truncate(d / "model.safetensors"), "model.safetensors"),
    "one flipped bit": (lambda d: flip_byte(d / "model.safetensors"), "model.safetensors"),
    "missing weights": (lambda d: (d / "model.safetensors").unlink(), "model.safetensors"),
    "missing manifest": (lambda d: (d / "manifest.json").unlink(), "manifest.json"),
    "truncated manifest": (lambda d: truncate(d / "manifest.json"), "manifest.json"),
    "binary manifest": (lambda d: (d / "manifest.json").write_bytes(b"\xff\xfe\x00garbage"), "manifest.json"),
    "foreign manifest": (lambda d: (d / "manifest.json").write_text('{"name": "left-pad", "version": "1.0.0"}'), "manifest.json"),
    "manifest is a list": (lambda d: (d / "manifest.json").write_text("[1, 2]"), "manifest.json"),
    "manifest version 4": (lambda d: edit_json(d, "manifest.json", lambda m: m.update(format_version=4)), "manifest.json"),
    "manifest and config versions differ": (lambda d: edit_json(d, "manifest.json", lambda m: m.update(format_version=1)),
                                            "manifest.json"),
    "manifest without weights": (lambda d: edit_json(d, "manifest.json", lambda m: m["files"].pop("model.safetensors")),
                                 "manifest.json"),
    "config version 99": (lambda d: edit_json(d, "config.json", lambda c: c.update(format_version=99)), "config.json"),
    "foreign config": (lambda d: write_with_checksum(d, "config.json", b'{"architectures": ["BertModel"]}'), "config.json"),
    "config with bad setting": (lambda d: edit_json(d, "config.json", lambda c: c["config"]["model"].update(cell="tree")),
                                "config.json"),
    "foreign safetensors": (lambda d: write_with_checksum(d, "model.safetensors", save_tensors({"w": torch.rand(3, 3)})),
                            "model.safetensors"),
    "empty weights": (lambda d: write_with_checksum(d, "model.safetensors", b""), "model.safetensors"),
    "pickle as weights": (lambda d: write_with_checksum(d, "model.safetensors", pickled_weights(d)), "model.safetensors"),
    "vocabulary too big": (lambda d: edit_json(d, "vocabulary.json", lambda v: v.update(words=[f"w{i}" for i in range(100)])),
                           "vocabulary.json"),
    "vocabulary not words": (lambda d: edit_json(d, "vocabulary.json", lambda v: v.update(words=[1, 2])), "vocabulary.json"),
}


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, error: str, names: str) -> None:
    assert code != 0
    assert error.startswith("error: ") and error.endswith("\n") and error.count("\n") == 1, error
    assert names in error


@pytest.mark.parametrize("damage", list(ARTIFACT_DAMAGE))
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_damaged_model_directory_is_a_one_line_error(model_dir, damage, command, capsys):
    change, names = ARTIFACT_DAMAGE[damage]
    change(model_dir)
    argv = [command, str(model_dir)] + (["a fine movie"] if command == "predict" else [])
    code, error = run(argv, capsys)
    assert_one_line_error(code, error, str(model_dir / names))


def test_valid_model_directory_predicts(model_dir, capsys):
    """The undamaged fixture works, so the failures above come from the damage alone."""
    assert main(["predict", str(model_dir), "a good movie", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("negative", "positive")


def test_not_a_directory(tmp_path, capsys):
    code, error = run(["predict", str(tmp_path / "nowhere"), "text"], capsys)
    assert_one_line_error(code, error, str(tmp_path / "nowhere"))


def test_evaluate_truncated_artifact_in_a_real_process(model_dir):
    """The issue's acceptance check, end to end: no traceback, non-zero exit, the file named."""
    truncate(model_dir / "model.safetensors")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(rnnsent.__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "rnnsent", "evaluate", str(model_dir)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert str(model_dir / "model.safetensors") in result.stderr and "checksum mismatch" in result.stderr


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run directory with a valid checkpoint, as a run stopped after its first step leaves it."""
    reviews = tmp_path / "reviews.jsonl"
    reviews.write_text("".join(json.dumps({"text": f"good movie {i}" if i % 2 else f"bad film {i}", "label": i % 2}) + "\n"
                               for i in range(20)))
    config = build_config("seed", SETTINGS)
    model = RecurrentClassifier(config.model, config.text.num_words)
    optimizer = build_optimizer(config.train, model.parameters())
    directory = tmp_path / "run"
    checkpoint.save_checkpoint(directory, checkpoint.Progress(global_step=1, step_in_epoch=1), config.to_dict(),
                               model, optimizer, None, {"data": str(reviews)})
    return directory


def tensor_file(run_dir: Path) -> Path:
    return run_dir / "checkpoint" / json.loads((run_dir / "checkpoint" / "state.json").read_text())["tensors"]


def edit_state(run_dir: Path, change) -> None:
    path = run_dir / "checkpoint" / "state.json"
    state = json.loads(path.read_text())
    change(state)
    path.write_text(json.dumps(state))


def mismatched_tensors(run_dir: Path) -> None:
    """Tensors of another model, with a checksum that matches: only restoring can tell."""
    config = build_config("seed", {**SETTINGS, "hidden_size": 7})
    model = RecurrentClassifier(config.model, config.text.num_words)
    data = save_tensors({**{f"model.{k}": v.contiguous() for k, v in model.state_dict().items()},
                         "rng.torch": torch.get_rng_state()})
    tensor_file(run_dir).write_bytes(data)
    edit_state(run_dir, lambda state: state.update(sha256=sha256_bytes(data)))


CHECKPOINT_DAMAGE = {
    "truncated tensors": (lambda r: truncate(tensor_file(r)), "tensors"),
    "one flipped bit": (lambda r: flip_byte(tensor_file(r)), "tensors"),
    "missing tensors": (lambda r: tensor_file(r).unlink(), "tensors"),
    "truncated state": (lambda r: truncate(r / "checkpoint" / "state.json"), "state.json"),
    "foreign state": (lambda r: (r / "checkpoint" / "state.json").write_text('{"step": 5}'), "state.json"),
    "state version 2": (lambda r: edit_state(r, lambda s: s.update(format_version=2)), "state.json"),
    "tensors outside the folder": (lambda r: edit_state(r, lambda s: s.update(tensors="../../x.safetensors")), "state.json"),
    "progress malformed": (lambda r: edit_state(r, lambda s: s.update(progress={"epoch": 0, "speed": 3})), "state.json"),
    "config missing": (lambda r: edit_state(r, lambda s: s.pop("config")), "state.json"),
    "tensors of another model": (mismatched_tensors, "tensors"),
}


@pytest.mark.parametrize("damage", list(CHECKPOINT_DAMAGE))
def test_damaged_checkpoint_is_a_one_line_error(run_dir, damage, capsys, monkeypatch):
    monkeypatch.setenv("RNNSENT_CACHE", str(run_dir.parent / "cache"))
    change, names = CHECKPOINT_DAMAGE[damage]
    named = str(tensor_file(run_dir).relative_to(run_dir)) if names == "tensors" else str(run_dir / "checkpoint" / names)
    change(run_dir)
    code, error = run(["train", "--resume", str(run_dir), "--quiet"], capsys)
    # Reading the data source for the first time prints a note before the error.
    notes = [line for line in error.splitlines(keepends=True) if line.startswith("reading ")]
    assert_one_line_error(code, error[sum(map(len, notes)):], named)


def test_undamaged_checkpoint_resumes(run_dir, capsys, monkeypatch):
    monkeypatch.setenv("RNNSENT_CACHE", str(run_dir.parent / "cache"))
    threads = torch.get_num_threads()
    try:
        assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "resuming at epoch 1, step 1 of it (1 steps done)" in capsys.readouterr().out


def test_nothing_reads_pickles():
    """Only safetensors and JSON are read: no pickle, no torch.load, no allow_pickle=True."""
    source = Path(rnnsent.__file__).resolve().parent
    offending = [
        f"{path.name}:{number}"
        for path in source.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"\bimport pickle|\bpickle\.load|torch\.load\(|allow_pickle=True|weights_only=False", line)
    ]
    assert offending == []


# ----------------------------------------------------------------------------- crashes while writing


def crash_when_writing(monkeypatch, module, function: str, file_name: str) -> None:
    """Make ``module.function`` raise as a kill would, when it is about to write ``file_name``."""
    original = getattr(module, function)

    def write(path, data):
        if Path(path).name == file_name:
            raise KeyboardInterrupt
        original(path, data)

    monkeypatch.setattr(module, function, write)


@pytest.mark.parametrize("function", ["write_bytes_atomic", "write_json_atomic"])
def test_crash_while_checkpointing_keeps_the_previous_checkpoint(run_dir, monkeypatch, function):
    """Same step and epoch as the committed checkpoint (an epoch-end save right after a
    step-interval one): the new tensors go to another file, so the old one stays valid."""
    meta, tensors = checkpoint.load_checkpoint(run_dir)
    config = build_config("seed", SETTINGS)
    model = RecurrentClassifier(config.model, config.text.num_words)
    optimizer = build_optimizer(config.train, model.parameters())
    crash_when_writing(monkeypatch, checkpoint, function, "state.json" if function == "write_json_atomic" else
                       meta["tensors"].replace(".safetensors", "b.safetensors"))
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(run_dir, checkpoint.Progress(**meta["progress"]), meta["config"], model, optimizer,
                                   None, {})
    monkeypatch.undo()
    again, tensors_again = checkpoint.load_checkpoint(run_dir)
    assert again == meta and tensors_again.keys() == tensors.keys()
    # The next successful save clears the uncommitted file.
    checkpoint.save_checkpoint(run_dir, checkpoint.Progress(global_step=2), meta["config"], model, optimizer, None, {})
    assert len(list((run_dir / "checkpoint").iterdir())) == 2


def test_crash_while_updating_metrics_leaves_a_loadable_model(model_dir, monkeypatch):
    from rnnsent.artifact import directory as artifact

    crash_when_writing(monkeypatch, artifact, "write_bytes_atomic", "metrics.json")
    with pytest.raises(KeyboardInterrupt):
        artifact.update_metrics(model_dir, {"accuracy": 0.9})
    monkeypatch.undo()
    assert artifact.load_artifact(model_dir).metrics == {}  # the stale metrics are no longer listed
    artifact.update_metrics(model_dir, {"accuracy": 0.9})
    assert artifact.load_artifact(model_dir).metrics == {"accuracy": 0.9}


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path, umask, mode):
    # Files once came out 0600 whatever the umask (tempfile.mkstemp's private mode).
    from rnnsent.artifact.files import write_bytes_atomic

    previous = os.umask(umask)
    try:
        write_bytes_atomic(tmp_path / "model.safetensors", b"data")
    finally:
        os.umask(previous)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == mode
