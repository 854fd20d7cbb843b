"""The model directory: save -> load round trip, what it stores, and how a damaged one is refused."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import rnnsent
from rnnsent.artifact.directory import load_artifact, save_artifact, update_metrics
from rnnsent.config import build_config
from rnnsent.errors import ArtifactError
from rnnsent.inference.predictor import Predictor
from rnnsent.model.recurrent import RecurrentClassifier
from rnnsent.text.encoder import TextEncoder
from rnnsent.text.tokenize import tokenize
from rnnsent.text.vocabulary import Vocabulary

TEXTS = ["a great and wonderful film", "an awful, boring waste", "", "plot plot plot great awful"]
HISTORY = [{"epoch": 1, "loss": 0.7, "accuracy": 0.5, "test_loss": 0.69, "test_accuracy": 0.55, "seconds": 1.0},
           {"epoch": 2, "loss": 0.5, "accuracy": 0.8, "test_loss": 0.6, "test_accuracy": 0.7, "seconds": 1.0}]


def build(overrides=None):
    config = build_config("seed", {"num_words": 40, "maxlen": 6, "input_init_std": 0.2, **(overrides or {})})
    vocabulary = Vocabulary.build([tokenize(" ".join(TEXTS))], config.text.num_words)
    torch.manual_seed(7)
    model = RecurrentClassifier(config.model, config.text.num_words)
    return config, vocabulary, model


@pytest.fixture(scope="module")
def saved_template(tmp_path_factory):
    config, vocabulary, model = build()
    directory = save_artifact(tmp_path_factory.mktemp("template") / "model", config, vocabulary, model,
                              {"accuracy": 0.5}, HISTORY)
    return directory, config, vocabulary, model


@pytest.fixture
def saved(saved_template, tmp_path):
    """A fresh copy of one saved model (saving draws the learning curves, which takes a while)."""
    template, config, vocabulary, model = saved_template
    directory = Path(shutil.copytree(template, tmp_path / "model"))
    return directory, config, vocabulary, copy.deepcopy(model)


def test_round_trip_gives_identical_outputs(saved):
    directory, config, vocabulary, model = saved
    artifact = load_artifact(directory)
    ids, lengths = TextEncoder(vocabulary, config.text).encode_batch(TEXTS)
    with torch.no_grad():
        expected, _ = model.eval()(torch.from_numpy(ids))
        loaded, _ = artifact.model(torch.from_numpy(ids))
    assert torch.equal(loaded, expected)
    for name, tensor in model.state_dict().items():
        assert torch.equal(artifact.model.state_dict()[name], tensor)
    assert not artifact.model.training


@pytest.mark.parametrize("overrides", [
    {"cell": "lstm", "bidirectional": True, "pooling": "attention"},
    {"cell": "gru", "num_layers": 2, "pooling": "maxmean", "padding": "post", "use_lengths": True},
])
def test_round_trip_of_other_variants_through_the_python_api(tmp_path, overrides):
    config, vocabulary, model = build(overrides)
    save_artifact(tmp_path / "model", config, vocabulary, model)
    ids, lengths = TextEncoder(vocabulary, config.text).encode_batch(TEXTS)
    with torch.no_grad():
        expected = torch.sigmoid(model.eval()(torch.from_numpy(ids), torch.from_numpy(lengths))[0]).numpy()
    predictions = rnnsent.load(tmp_path / "model").predict(TEXTS)
    assert np.allclose([p.probability for p in predictions], expected, atol=1e-6)


def test_config_vocabulary_and_records_are_stored(saved):
    directory, config, vocabulary, model = saved
    artifact = load_artifact(directory)
    assert artifact.config == config
    assert artifact.vocabulary == vocabulary
    assert artifact.metrics == {"accuracy": 0.5}
    assert artifact.history == HISTORY
    header = json.loads((directory / "config.json").read_text())
    assert header["format"] == "rnnsent-model" and header["format_version"] == 3
    assert header["rnnsent_version"] == rnnsent.__version__
    assert header["parameters"] == 40 * 50 + 280 + 6
    assert json.loads((directory / "vocabulary.json").read_text())["words"] == list(vocabulary.words)
    assert (directory / "history.csv").read_text().splitlines()[0] == "epoch,loss,accuracy,test_loss,test_accuracy,seconds"
    assert (directory / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((directory / "manifest.json").read_text())
    assert set(manifest["files"]) == {"config.json", "vocabulary.json", "model.safetensors", "metrics.json",
                                      "history.json", "history.csv", "curves.png", "labels.json"}
    assert sorted(p.name for p in directory.iterdir()) == sorted([*manifest["files"], "manifest.json"])


def test_weights_are_safetensors_not_pickle(saved):
    directory = saved[0]
    data = (directory / "model.safetensors").read_bytes()
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_length])
    assert header["embedding.weight"]["shape"] == [40, 50]
    assert b"\x80\x02" not in data[:2] and not data.startswith(b"PK")


def test_update_metrics_keeps_the_artifact_valid(saved):
    directory = saved[0]
    update_metrics(directory, {"accuracy": 0.9})
    assert load_artifact(directory).metrics == {"accuracy": 0.9}


def test_predictor_marks_texts_without_words_as_empty(saved):
    predictor = Predictor.load(saved[0])
    results = predictor.predict(["", "   ", "?!...", "great film"])
    assert [r.empty for r in results] == [True, True, True, False]
    # Every text without words is the model's prior: the start token alone.
    assert len({r.probability for r in results[:3]}) == 1
    assert all(r.label == ("positive" if r.probability > 0.5 else "negative") for r in results)
    with pytest.raises(TypeError, match="list of texts"):
        predictor.predict("a single string")


def test_a_text_with_words_is_never_empty_even_when_only_one_token_is_kept(tmp_path):
    config, vocabulary, model = build({"maxlen": 1})
    save_artifact(tmp_path / "model", config, vocabulary, model)
    results = rnnsent.load(tmp_path / "model").predict(["great film", ""])
    assert [r.empty for r in results] == [False, True]


def test_predict_stream_matches_predict(saved):
    predictor = Predictor.load(saved[0])
    texts = TEXTS * 5
    streamed = list(predictor.predict_stream(iter(texts), batch_size=3))
    assert [p.to_dict() for p in streamed] == [p.to_dict() for p in predictor.predict(texts)]


# ----------------------------------------------------------------------------- damaged directories


def damage(directory, name, change):
    path = directory / name
    change(path)


@pytest.mark.parametrize("name, change, message", [
    ("manifest.json", lambda p: p.unlink(), "manifest.json: missing"),
    ("manifest.json", lambda p: p.write_text("{not json"), "manifest.json: not valid JSON"),
    ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[:100]), "model.safetensors: checksum mismatch"),
    ("model.safetensors", lambda p: p.unlink(), "model.safetensors: file is missing"),
    ("config.json", lambda p: p.write_text(p.read_text().replace('"maxlen": 6', '"maxlen": 7')), "config.json: checksum mismatch"),
    ("vocabulary.json", lambda p: p.write_text("[]"), "vocabulary.json: checksum mismatch"),
])
def test_damaged_artifact_is_refused_naming_the_file(saved, name, change, message):
    directory = saved[0]
    damage(directory, name, change)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(directory)


def rewrite(directory, name, edit):
    """Edit a file and re-sign it in the manifest, as a mismatched but intact file would be."""
    from rnnsent.artifact.files import sha256_bytes

    path = directory / name
    value = json.loads(path.read_text())
    edit(value)
    path.write_text(json.dumps(value))
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"][name] = sha256_bytes(path.read_bytes())
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("edit, message", [
    (lambda header: header.update(format_version=99), "format version 99 is not supported"),
    (lambda header: header.update(format="something-else"), "not an rnnsent model"),
    (lambda header: header["config"]["model"].update(hidden_size=6), "weights do not fit the config"),
    (lambda header: header["config"]["model"].update(cell="quantum"), "invalid config"),
])
def test_consistent_but_wrong_config_is_refused(saved, edit, message):
    directory = saved[0]
    rewrite(directory, "config.json", edit)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(directory)


def test_config_that_is_not_an_object_is_refused(saved):
    from rnnsent.artifact.files import sha256_bytes

    directory = saved[0]
    (directory / "config.json").write_text("[1, 2]")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"]["config.json"] = sha256_bytes((directory / "config.json").read_bytes())
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="config.json: not an rnnsent model"):
        load_artifact(directory)


def test_missing_directory(tmp_path):
    with pytest.raises(ArtifactError, match="no such model directory"):
        load_artifact(tmp_path / "nowhere")


def test_resaving_over_a_model_replaces_it(saved):
    directory, config, vocabulary, model = saved
    with torch.no_grad():
        model.head.bias.fill_(3.0)
    save_artifact(directory, config, vocabulary, model)
    artifact = load_artifact(directory)
    assert float(artifact.model.head.bias.detach()) == 3.0
    assert artifact.history == []
    assert not (directory / "curves.png").exists()  # the previous model's curves are gone
