"""Optional dependencies: the base install predicts; plotting, serving and numba are extras."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from rnnsent.artifact.directory import load_artifact, save_artifact
from rnnsent.config import build_config
from rnnsent.errors import MissingExtraError
from rnnsent.model.build import build_model
from rnnsent.serve import require_serve_extra
from rnnsent.text.vocabulary import Vocabulary

ROOT = Path(__file__).resolve().parents[2]
HISTORY = [{"epoch": 1, "loss": 0.7, "accuracy": 0.5, "seconds": 1.0}]


def test_base_dependencies_and_extras():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [requirement.split(">")[0].split("=")[0].split(";")[0].strip() for requirement in project["dependencies"]]
    assert names == ["torch", "numpy", "safetensors", "tqdm", "platformdirs"]
    assert "torch>=2.13,<2.14" in project["dependencies"]
    extras = project["optional-dependencies"]
    assert [r.split(">")[0] for r in extras["fast"]] == ["numba"]
    assert [r.split(">")[0] for r in extras["plot"]] == ["matplotlib"]
    assert [r.split(">")[0] for r in extras["serve"]] == ["fastapi", "uvicorn", "fastapi-offline", "httptools", "uvloop"]
    assert "rnnsent[fast,plot,serve]" in extras["test"]
    assert [r.split(">")[0] for r in extras["tune"]] == ["optuna"]
    assert [r.split(">")[0] for r in extras["track"]] == ["tensorboardX"]
    assert "rnnsent[tune,track]" in extras["test"] and "tensorboard>=2.15" in extras["test"]
    assert [r.split(">")[0] for r in extras["export"]] == ["onnx", "onnxruntime"] and "rnnsent[export]" in extras["test"]
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet torch==2.13.0" in makefile and '".[fast,plot,serve,test]"' in makefile
    assert makefile.index("torch==2.13.0") < makefile.index(".[fast,plot,serve,test]")


def test_without_matplotlib_the_directory_has_no_curves_and_stays_valid(tmp_path, monkeypatch):
    config = build_config("seed", {"num_words": 20, "maxlen": 5})
    model = build_model(config.model, config.text.num_words)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "curves.png").write_bytes(b"an older model's picture")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # "import matplotlib" now raises ImportError
    save_artifact(tmp_path / "model", config, Vocabulary(("good", "bad")), model, {}, HISTORY)
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert "curves.png" not in manifest["files"] and not (tmp_path / "model" / "curves.png").exists()
    loaded = load_artifact(tmp_path / "model")
    assert loaded.history == HISTORY
    with torch.no_grad():
        ids = torch.tensor([[1, 3, 4, 0, 2]])
        assert torch.equal(loaded.model(ids)[0], model.eval()(ids)[0])


def test_require_serve_extra_passes_when_installed():
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    require_serve_extra()


@pytest.mark.parametrize("missing", ["fastapi", "uvicorn"])
def test_require_serve_extra_names_the_extra_to_install(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(MissingExtraError) as raised:
        require_serve_extra()
    assert isinstance(raised.value, ValueError)
    assert str(raised.value) == "the server needs the serve extra: pip install 'rnnsent[serve]'"


def test_predicting_imports_neither_the_server_nor_plotting():
    """``import rnnsent; rnnsent.load(...).predict(...)`` must not need an extra."""
    import subprocess

    fixture = ROOT / "tests" / "artifact" / "fixtures" / "models" / "simple"
    code = (
        "import sys\n"
        "for name in ('fastapi', 'uvicorn', 'matplotlib', 'numba'):\n"
        "    sys.modules[name] = None\n"
        "import rnnsent\n"
        f"print(rnnsent.load({str(fixture)!r}).predict(['a fine film'])[0].label)\n"
    )
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in {"positive", "negative"}
