"""Start-up that costs what it must: no torch._dynamo on the training and prediction paths, no
matplotlib on the prediction path, curves drawn off the critical path, eager optimisers equal to
torch's, thread defaults for a busy machine, and int8 dynamic quantization."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import rnnsent
from conftest import write_tiny_reviews
from rnnsent import threads as threads_module
from rnnsent.artifact import curves
from rnnsent.artifact.directory import load_artifact
from rnnsent.training.optim import LBFGS, Adam, AdamW, RMSprop

SOURCE_ROOT = Path(rnnsent.__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parents[1] / "artifact" / "fixtures" / "models"
TEXTS = ["A wonderful film, I loved every minute of it.", "Dull, boring and far too long.", "",
         "The plot was fine but the acting was bad. " * 30, "great great great awful"]


def _python(code: str, tmp_path: Path) -> dict:
    """Run ``code`` in a fresh interpreter importing this checkout; it prints one JSON object last."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH")])),
                   "RNNSENT_CACHE": str(tmp_path / "cache")}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


REPORT = ("import json, sys; print(json.dumps({'dynamo': 'torch._dynamo' in sys.modules, 'matplotlib': 'matplotlib' in sys.modules, "
          "'sympy': 'sympy' in sys.modules, "
          "'training': sorted(name for name in sys.modules if name.startswith('rnnsent.training'))}))")


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam", "adamw"])
def test_training_never_imports_dynamo(tmp_path, optimizer):
    data = write_tiny_reviews(tmp_path / "reviews.csv", count=200)
    extra = ", weight_decay=0.01" if optimizer == "adamw" else ""
    code = (f"import rnnsent; rnnsent.train(data={str(data)!r}, out={str(tmp_path / 'model')!r}, num_words=60, maxlen=12, "
            f"epochs=2, batch_size=16, threads=1, optimizer={optimizer!r}{extra}, verbose=False, progress=False)\n" + REPORT)
    result = _python(code, tmp_path)
    assert not result["dynamo"]
    # curves.png is drawn by a child process: the training process never imports matplotlib.
    assert not result["matplotlib"]
    installed = importlib.util.find_spec("matplotlib") is not None
    assert (tmp_path / "model" / "curves.png").exists() == installed
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert ("curves.png" in manifest["files"]) == installed
    load_artifact(tmp_path / "model")  # every listed file verifies


@pytest.mark.parametrize("name", ["simple", "bigru", "stacked"])
def test_prediction_imports_neither_dynamo_nor_matplotlib_nor_sympy_nor_training(tmp_path, name):
    # sympy (about 0.4 s) comes with torch's symbolic shapes, which a meta-device zeros_like imports.
    code = (f"import rnnsent; rnnsent.load({str(FIXTURES / name)!r}).predict(['A fine film.', 'Dull.'] * 40)\n"
            "from rnnsent.cli.main import main; main(['predict', " + repr(str(FIXTURES / name)) + ", 'Great!'])\n" + REPORT)
    result = _python(code, tmp_path)
    assert result == {"dynamo": False, "matplotlib": False, "sympy": False, "training": []}


def test_the_meta_shape_check_refuses_a_wrong_model_still(tmp_path):
    import shutil

    from rnnsent.artifact.files import sha256_bytes
    from rnnsent.errors import ArtifactError

    copy = tmp_path / "model"
    shutil.copytree(FIXTURES / "bigru", copy)
    header = json.loads((copy / "config.json").read_text())
    header["config"]["model"]["hidden_size"] += 1
    data = (json.dumps(header, indent=2) + "\n").encode()
    (copy / "config.json").write_bytes(data)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["config.json"] = sha256_bytes(data)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="weights do not fit the config"):
        load_artifact(copy)


# ----------------------------------------------------------------------------- optimisers


def _twin_runs(ours, theirs, steps=25, reload_at=12, **settings):
    torch.manual_seed(0)
    first = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))
    second = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))
    second.load_state_dict(first.state_dict())
    mine, reference = ours(first.parameters(), **settings), theirs(second.parameters(), **settings)
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        x = torch.randn(9, 7, generator=generator)
        for model, optimizer in ((first, mine), (second, reference)):
            optimizer.zero_grad()
            (model(x) ** 2).mean().backward()
            for group in optimizer.param_groups:
                group["lr"] = settings.get("lr", 1e-3) * (1 + step % 3)
            optimizer.step()
        if step == reload_at:
            # Our state dict into a fresh torch optimiser and back: checkpoints of either load into the other.
            saved = torch.optim.Adam(first.parameters(), **settings) if ours is Adam else None
            if saved is not None:
                saved.load_state_dict(mine.state_dict())
                mine = ours(first.parameters(), **settings)
                mine.load_state_dict(saved.state_dict())
    return first, second, mine, reference


@pytest.mark.parametrize("ours, theirs, settings", [
    (Adam, torch.optim.Adam, {"lr": 1e-2, "betas": (0.9, 0.98), "eps": 1e-8}),
    (Adam, torch.optim.Adam, {"lr": 1e-2, "weight_decay": 0.1}),
    (AdamW, torch.optim.AdamW, {"lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-7, "weight_decay": 0.05}),
])
def test_eager_adam_is_torch_adam_bit_for_bit(ours, theirs, settings):
    first, second, mine, reference = _twin_runs(ours, theirs, **settings)
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)
    ours_state, theirs_state = mine.state_dict(), reference.state_dict()
    assert ours_state["param_groups"] == theirs_state["param_groups"]
    assert ours_state["state"].keys() == theirs_state["state"].keys()
    for index, state in theirs_state["state"].items():
        assert state.keys() == ours_state["state"][index].keys()
        for key, value in state.items():
            assert ours_state["state"][index][key].dtype == value.dtype
            assert torch.equal(ours_state["state"][index][key], value), key
    assert isinstance(mine, theirs)


def test_eager_adam_falls_back_to_torch_for_other_settings():
    parameter = torch.nn.Parameter(torch.ones(3))
    twin = torch.nn.Parameter(torch.ones(3))
    mine, reference = Adam([parameter], lr=0.1, amsgrad=True), torch.optim.Adam([twin], lr=0.1, amsgrad=True)
    for _ in range(3):
        for p, optimizer in ((parameter, mine), (twin, reference)):
            p.grad = torch.tensor([1.0, -2.0, 0.5])
            optimizer.step()
    assert torch.equal(parameter, twin)


def test_eager_lbfgs_and_rmsprop_state_dicts_round_trip():
    weights = torch.zeros(3, requires_grad=True)
    optimizer = LBFGS([weights], lr=1.0, max_iter=20, line_search_fn="strong_wolfe")

    def objective():
        optimizer.zero_grad()
        loss = ((weights - torch.tensor([1.0, 2.0, 3.0])) ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    assert torch.allclose(weights, torch.tensor([1.0, 2.0, 3.0]), atol=1e-4)
    parameter = torch.nn.Parameter(torch.ones(2))
    rmsprop = RMSprop([parameter], lr=0.1)
    parameter.grad = torch.ones(2)
    rmsprop.step()
    again = RMSprop([parameter], lr=0.1)
    again.load_state_dict(rmsprop.state_dict())
    assert torch.equal(again.state[parameter]["square_avg"], rmsprop.state[parameter]["square_avg"])


# ----------------------------------------------------------------------------- curves


HISTORY = [{"epoch": e, "loss": 1.0 / e, "accuracy": 0.5 + e / 20, "test_loss": 1.1 / e, "test_accuracy": 0.5 + e / 25}
           for e in range(1, 5)]


def test_curves_drawn_in_the_background_equal_those_drawn_in_the_foreground():
    pytest.importorskip("matplotlib")
    foreground = curves.learning_curves_png(HISTORY)
    curves.prepare()
    curves.draw_soon(HISTORY)
    assert curves.learning_curves_png(HISTORY) == foreground
    # A history that changed after draw_soon is drawn again.
    curves.prepare()
    curves.draw_soon(HISTORY[:2])
    assert curves.learning_curves_png(HISTORY) == foreground
    assert foreground.startswith(b"\x89PNG")


def test_a_drawing_process_that_fails_or_is_left_over_changes_nothing(monkeypatch):
    pytest.importorskip("matplotlib")
    foreground = curves.learning_curves_png(HISTORY)
    # A child that exits without a picture: the saver draws in this process.
    monkeypatch.setattr(curves, "_CHILD_CODE", "import sys; sys.exit(3)")
    curves.prepare()
    curves.draw_soon(HISTORY)
    assert curves.learning_curves_png(HISTORY) == foreground
    # A run that ended before its history was sent, and one whose picture nobody collected.
    curves.prepare()
    curves.cancel()
    monkeypatch.undo()
    curves.prepare()
    curves.draw_soon(HISTORY[:1])
    curves.prepare()  # stops the stale child and starts a fresh one
    curves.draw_soon(HISTORY)
    assert curves.learning_curves_png(HISTORY) == foreground


# ----------------------------------------------------------------------------- threads


def test_free_cores_counts_busy_cores(monkeypatch):
    monkeypatch.setattr(threads_module.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    monkeypatch.setattr(threads_module, "_running_now", lambda: 0)
    assert threads_module.free_cores(4) == 4
    monkeypatch.setattr(threads_module, "_running_now", lambda: 2)
    assert threads_module.free_cores(2) == 1  # never below one
    assert threads_module.free_cores(4) == 2
    monkeypatch.setattr(threads_module.os, "getloadavg", lambda: (3.4, 1.0, 1.0))
    assert threads_module.free_cores(4) == 1
    assert threads_module.resolve_threads(3) == 3


def test_scoring_threads_restores_the_callers_count(monkeypatch):
    previous = torch.get_num_threads()
    try:
        monkeypatch.setattr(threads_module, "available_cores", lambda: 3)
        monkeypatch.setattr(threads_module, "free_cores", lambda cores=None: 2)
        torch.set_num_threads(3)  # torch's default: one per core
        with threads_module.scoring_threads(None):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 3
        torch.set_num_threads(1)  # the caller's own choice is kept
        with threads_module.scoring_threads(None):
            assert torch.get_num_threads() == 1
        with threads_module.scoring_threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)


def test_the_scoring_commands_set_passive_openmp_waiting_unless_told_otherwise(tmp_path):
    def command(*argv):
        return ("import os, json; from rnnsent.cli.main import main\n"
                f"try:\n    main({list(argv)!r})\nexcept SystemExit:\n    pass\n"
                "print(json.dumps({'policy': os.environ.get('OMP_WAIT_POLICY')}))")

    code = command("predict", "--help")
    assert _python(code, tmp_path) == {"policy": "PASSIVE"}
    os.environ["OMP_WAIT_POLICY"] = "ACTIVE"
    try:
        assert _python(code, tmp_path) == {"policy": "ACTIVE"}
    finally:
        del os.environ["OMP_WAIT_POLICY"]
    assert _python("import json, os, rnnsent; print(json.dumps({'policy': os.environ.get('OMP_WAIT_POLICY')}))",
                   tmp_path) == {"policy": None}  # never at package import


@pytest.mark.parametrize("command, busy, policy", [
    ("train", False, None),  # idle: OpenMP's default, spinning (passive made a bigru epoch a third slower)
    ("train", True, "PASSIVE"),  # busy: spinning threads wait for cores other processes hold
    ("tune", True, "PASSIVE"), ("pretrain", True, "PASSIVE"),
    ("predict", False, "PASSIVE"), ("summary", True, None),
])
def test_training_waits_passively_only_on_a_busy_machine(command, busy, policy, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(threads_module, "busy_now", lambda: busy)
    threads_module.configure_process(command)
    assert os.environ.get("OMP_WAIT_POLICY") == policy
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's own setting is kept
    threads_module.configure_process(command)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


@pytest.mark.parametrize("average, running, busy", [(0.0, 0, False), (1.2, 0, False), (0.1, 2, False),
                                                    (1.2, 1, True), (3.0, 4, True)])
def test_busy_needs_both_the_load_average_and_a_process_running_now(average, running, busy, monkeypatch):
    monkeypatch.setattr(threads_module.os, "getloadavg", lambda: (average, 0.0, 0.0))
    monkeypatch.setattr(threads_module, "_running_now", lambda: running)
    assert threads_module.busy_now() is busy


# ----------------------------------------------------------------------------- quantization


@pytest.mark.parametrize("name", ["simple", "bigru", "stacked"])
def test_quantized_models_stay_close(name):
    plain = rnnsent.load(FIXTURES / name).probabilities(TEXTS)
    quantized = rnnsent.load(FIXTURES / name, quantize=True)
    assert np.abs(quantized.probabilities(TEXTS) - plain).max() < 0.01
    assert [p.label for p in quantized.predict(TEXTS)] == [p.label for p in rnnsent.load(FIXTURES / name).predict(TEXTS)]


def test_quantized_lstm_with_lengths_matches_its_float_model(tmp_path):
    from rnnsent.config import build_config
    from rnnsent.model.build import build_model
    from rnnsent.model.quantize import quantize_model

    config = build_config("bigru", {"cell": "lstm", "hidden_size": 8, "embedding_dim": 6, "num_words": 30, "num_layers": 2,
                                    "pooling": "maxmean"})
    torch.manual_seed(0)
    model = build_model(config.model, 30).eval()
    quantized = quantize_model(model)
    ids = torch.randint(1, 30, (5, 11))
    lengths = torch.tensor([11, 3, 7, 1, 9])
    with torch.inference_mode():
        difference = (model(ids, lengths)[0] - quantized(ids, lengths)[0]).abs().max()
    assert difference < 0.02
    assert type(quantized.rnn).__name__ == "QuantizedRecurrent"
    assert type(model.rnn) is torch.nn.LSTM  # the loaded model is left as it was


def test_predict_quantize_flag(capsys):
    from rnnsent.cli.main import main

    assert main(["predict", str(FIXTURES / "bigru"), "--quantize", "--json", "A fine film."]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert 0.0 <= row["probability"] <= 1.0
