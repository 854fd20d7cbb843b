"""Model directory format versions: version 3 is written and read exactly, versions 1 and 2 still load.

Version 1 (rnnsent 0.1.0) kept every tensor of a model with an n-gram branch on one module
(``embedding.weight``, ..., ``ngrams.weight.weight``, ``blend``) and attention pooling's vector
as ``attention.weight``; version 2 stores a composed model as its parts (``network.*``,
``ngrams.*``) and the vector as ``pooling.score.weight``; version 3 stores an n-gram table
that is mostly zero as the rows that hold a weight (``ngrams.weight.weight.rows``, ``.values``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rnnsent.artifact.directory import FORMAT_VERSION, load_artifact, save_artifact
from rnnsent.artifact.files import sha256_bytes
from rnnsent.config import build_config
from rnnsent.errors import ArtifactError
from rnnsent.model.build import build_model, recurrent_network
from rnnsent.model.composed import JointClassifier, StackedClassifier
from rnnsent.model.recurrent import RecurrentClassifier
from rnnsent.text.tokenize import tokenize
from rnnsent.text.vocabulary import Vocabulary

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models"
WORDS = "a great and wonderful film an awful boring waste plot"
VARIANTS = {
    "plain": ({}, RecurrentClassifier),
    "attention": ({"cell": "gru", "pooling": "attention"}, RecurrentClassifier),
    "joint": ({"ngram_buckets": 11, "ngram_fit": "joint"}, JointClassifier),
    "stacked": ({"cell": "gru", "pooling": "maxmean", "padding": "post", "use_lengths": True, "ngram_buckets": 11,
                 "ngram_fit": "stacked", "validation_split": 0.1}, StackedClassifier),
}


def saved_model(directory: Path, overrides: dict):
    config = build_config("seed", {"num_words": 30, "maxlen": 6, "input_init_std": 0.2, **overrides})
    vocabulary = Vocabulary.build([tokenize(WORDS)], config.text.num_words)
    torch.manual_seed(7)
    model = build_model(config.model, config.text.num_words)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.normal_()  # every tensor, buffers included, differs from its initial value
    save_artifact(directory, config, vocabulary, model)
    return model


def rewrite(directory: Path, name: str, data: bytes) -> None:
    (directory / name).write_bytes(data)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"][name] = sha256_bytes(data)
    (directory / "manifest.json").write_text(json.dumps(manifest))


def set_version(directory: Path, version: int) -> None:
    header = json.loads((directory / "config.json").read_text())
    header["format_version"] = version
    rewrite(directory, "config.json", json.dumps(header).encode())
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["format_version"] = version
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_version_3_round_trip_is_exact(tmp_path, name):
    overrides, kind = VARIANTS[name]
    model = saved_model(tmp_path / name, overrides)
    assert json.loads((tmp_path / name / "config.json").read_text())["format_version"] == FORMAT_VERSION == 3
    loaded = load_artifact(tmp_path / name).model
    assert type(loaded) is kind
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    if kind is not RecurrentClassifier:
        assert all(key.startswith(("network.", "ngrams.", "blend")) for key in load_file(tmp_path / name / "model.safetensors"))


def _as_version_1(directory: Path) -> None:
    """Rewrite a version-2 directory the way rnnsent 0.1.0 would have saved the same model."""
    tensors = load_file(directory / "model.safetensors")
    old = {}
    for key, tensor in tensors.items():
        key = key.removeprefix("network.")
        old["attention.weight" if key == "pooling.score.weight" else key] = tensor
    buffer_path = directory / "old.safetensors"
    save_file(old, buffer_path)
    rewrite(directory, "model.safetensors", buffer_path.read_bytes())
    buffer_path.unlink()
    set_version(directory, 1)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_version_1_directory_loads_with_the_same_weights(tmp_path, name):
    overrides, kind = VARIANTS[name]
    model = saved_model(tmp_path / name, overrides)
    _as_version_1(tmp_path / name)
    loaded = load_artifact(tmp_path / name).model
    assert type(loaded) is kind
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key


def test_the_released_stacked_fixture_is_version_1_and_loads_as_parts():
    directory = FIXTURES / "stacked"
    assert json.loads((directory / "config.json").read_text())["format_version"] == 1
    stored = load_file(directory / "model.safetensors")
    assert {"embedding.weight", "head.weight", "ngrams.weight.weight", "ngrams.bias", "blend"} <= set(stored)
    model = load_artifact(directory).model
    assert isinstance(model, StackedClassifier)
    assert torch.equal(recurrent_network(model).embedding.weight, stored["embedding.weight"])
    assert torch.equal(model.ngrams.weight.weight, stored["ngrams.weight.weight"])
    assert torch.equal(model.blend, stored["blend"])


@pytest.mark.parametrize("version", [4, 99])
def test_a_future_version_is_refused_in_one_line(tmp_path, version):
    saved_model(tmp_path / "model", {})
    set_version(tmp_path / "model", version)
    with pytest.raises(ArtifactError) as raised:
        load_artifact(tmp_path / "model")
    message = str(raised.value)
    assert "\n" not in message
    assert f"format version {version} is not supported" in message and "reads versions 1, 2, 3" in message


def sparse_stacked_model(directory: Path):
    """A saved stacked model whose n-gram table holds weights in 5 of its 42 rows (a fitted
    regression's table is mostly rows of n-grams no training text had)."""
    overrides, _ = VARIANTS["stacked"]
    model = saved_model(directory, {**overrides, "ngram_buckets": 11})
    with torch.no_grad():
        table = model.ngrams.weight.weight  # (30 + 11 + 1, 1)
        table.zero_()
        table[[2, 7, 31, 35, 40]] = torch.tensor([[0.5], [-1.25], [2.0], [-0.0625], [3.0]])
    config = build_config("seed", {"num_words": 30, "maxlen": 6, "input_init_std": 0.2, **overrides, "ngram_buckets": 11})
    save_artifact(directory, config, Vocabulary.build([tokenize(WORDS)], 30), model)
    return model


def test_a_mostly_zero_ngram_table_is_stored_as_its_rows_and_loads_whole(tmp_path):
    model = sparse_stacked_model(tmp_path / "model")
    stored = load_file(tmp_path / "model" / "model.safetensors")
    assert "ngrams.weight.weight" not in stored
    assert stored["ngrams.weight.weight.rows"].tolist() == [2, 7, 31, 35, 40]
    assert stored["ngrams.weight.weight.rows"].dtype == torch.int32
    assert stored["ngrams.weight.weight.values"].flatten().tolist() == [0.5, -1.25, 2.0, -0.0625, 3.0]
    loaded = load_artifact(tmp_path / "model").model
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key


def test_a_version_2_directory_with_a_whole_table_loads(tmp_path):
    model = sparse_stacked_model(tmp_path / "model")
    tensors = load_file(tmp_path / "model" / "model.safetensors")
    rows, values = tensors.pop("ngrams.weight.weight.rows"), tensors.pop("ngrams.weight.weight.values")
    table = torch.zeros(42, 1)
    table[rows.long()] = values
    save_file({**tensors, "ngrams.weight.weight": table}, tmp_path / "whole.safetensors")
    rewrite(tmp_path / "model", "model.safetensors", (tmp_path / "whole.safetensors").read_bytes())
    set_version(tmp_path / "model", 2)
    loaded = load_artifact(tmp_path / "model").model
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key


@pytest.mark.parametrize("damage", ["row past the table", "rows out of order", "values without rows",
                                    "values of another width"])
def test_stored_table_rows_that_do_not_fit_are_one_line_errors(tmp_path, damage):
    sparse_stacked_model(tmp_path / "model")
    tensors = load_file(tmp_path / "model" / "model.safetensors")
    rows, values = "ngrams.weight.weight.rows", "ngrams.weight.weight.values"
    if damage == "row past the table":
        tensors[rows] = torch.tensor([2, 7, 31, 35, 42], dtype=torch.int32)
    elif damage == "rows out of order":
        tensors[rows] = torch.tensor([7, 2, 31, 35, 40], dtype=torch.int32)
    elif damage == "values without rows":
        del tensors[rows]
    else:
        tensors[values] = torch.zeros(5, 2)
    save_file(tensors, tmp_path / "damaged.safetensors")
    rewrite(tmp_path / "model", "model.safetensors", (tmp_path / "damaged.safetensors").read_bytes())
    with pytest.raises(ArtifactError, match="n-gram table's stored rows do not fit the config") as raised:
        load_artifact(tmp_path / "model")
    assert "\n" not in str(raised.value)
