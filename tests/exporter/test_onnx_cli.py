"""``rnnsent export MODEL --format onnx --out FILE``: exit codes, what it prints and writes, one-line errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime
import pytest

import rnnsent
from rnnsent.cli.main import main


def test_export_writes_the_graph_and_its_settings_and_reports_the_check(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "deploy" / "seed.onnx"
    assert main(["export", str(tiny_model_dir), "--format", "onnx", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"wrote {out} (") and lines[0].endswith(
        "MiB): ids (batch, time) int64, lengths (batch,) int64 -> probabilities (batch, 1) float32")
    assert lines[1] == f"wrote {out}.json: vocabulary, text settings and labels for tokenizing"
    assert lines[2].startswith("onnxruntime matches rnnsent within ") and lines[2].endswith(" on 64 check rows")
    assert float(lines[2].split()[4]) < 1e-5

    model = rnnsent.load(tiny_model_dir)
    described = json.loads((tmp_path / "deploy" / "seed.onnx.json").read_text(encoding="utf-8"))
    assert described["vocabulary"] == list(model.vocabulary.words) and described["labels"] == ["negative", "positive"]
    texts = ["great wonderful film", "dull boring mess", ""]
    ids, lengths = model.encoder.encode_batch(texts)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {"ids": ids, "lengths": lengths})[0][:, 0]
    assert np.abs(got - model.probabilities(texts)).max() <= 1e-5


@pytest.mark.parametrize("arguments, message", [
    (["export", "MODEL"], "error: say where to write the graph: --out FILE (e.g. --out runs/seed.onnx)"),
    (["export", "MODEL", "--out", "OUT", "--format", "tflite"], "error: argument --format: invalid choice: 'tflite'"),
    (["export", "nowhere", "--out", "OUT"], "error: nowhere: no such model directory"),
    (["export", "MODEL", "--out", "DIR"], "is a directory: --out names the ONNX file to write"),
])
def test_export_mistakes_are_one_line(arguments, message, tiny_model_dir, tmp_path, capsys):
    replace = {"MODEL": str(tiny_model_dir), "OUT": str(tmp_path / "m.onnx"), "DIR": str(tmp_path)}
    try:
        code = main([replace.get(argument, argument) for argument in arguments])
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_export_without_the_extra_names_it(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(["export", str(tiny_model_dir), "--out", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err == "error: ONNX export needs the export extra: pip install 'rnnsent[export]'\n"
