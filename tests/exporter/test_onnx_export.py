"""ONNX export: onnxruntime's probabilities equal ``Model.probabilities`` for every architecture, at any batch and width.

Each variant is a model with large random weights (``label_models.random_predictor``), exported
and scored by onnxruntime on texts of every length from none to past ``maxlen`` (so rows are
padded and truncated as rnnsent does it), all in one batch, one row at a time, and, for models
that read true lengths, cut to the batch's longest row.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import rnnsent
from label_models import RANDOM_WORDS, random_predictor
from rnnsent.api import Model
from rnnsent.errors import MissingExtraError, UsageError
from rnnsent.exporter import EXPORT_EXTRA_MESSAGE
from rnnsent.exporter.onnx import check_rows, settings_path_for
from rnnsent.labels import BINARY_SENTIMENT, LabelSpace
from rnnsent.model.compiled import compiled_forward_supported
from rnnsent.model.quantize import quantize_model

POST = {"use_lengths": True, "padding": "post"}
STACKED = {"ngram_fit": "stacked", "validation_split": 0.1}
THREE = ("a", "b", "c")
# name -> (recipe overrides, label space, temperature, thresholds). Together: each cell one and
# two ways, every pooling, one and two layers, pre and post padding and truncation, the joint and
# the stacked n-gram branch of each order, and the three tasks.
VARIANTS = {
    "simple-last (seed)": ({}, BINARY_SENTIMENT, 1.0, None),
    "simple-tanh-bi-2-layers-mean": ({"nonlinearity": "tanh", "bidirectional": True, "num_layers": 2, "pooling": "mean"},
                                     BINARY_SENTIMENT, 1.0, None),
    "simple-attention-lengths": ({**POST, "pooling": "attention"}, BINARY_SENTIMENT, 1.0, None),
    "gru-attention": ({"cell": "gru", "pooling": "attention"}, BINARY_SENTIMENT, 1.0, None),
    "gru-bi-maxmean-lengths (bigru)": ({"cell": "gru", "bidirectional": True, "pooling": "maxmean", **POST},
                                       BINARY_SENTIMENT, 1.0, None),
    "lstm-max-truncating-post": ({"cell": "lstm", "pooling": "max", "truncating": "post"}, BINARY_SENTIMENT, 1.0, None),
    "lstm-bi-2-layers-last-lengths": ({"cell": "lstm", "bidirectional": True, "num_layers": 2, **POST,
                                       "truncating": "post"}, BINARY_SENTIMENT, 1.0, None),
    "gru-joint-bigrams": ({"cell": "gru", "ngram_buckets": 31, "ngram_order": 2}, BINARY_SENTIMENT, 1.0, None),
    "bigru-stacked-trigrams-lengths (best)": ({"cell": "gru", "bidirectional": True, "pooling": "maxmean", **POST,
                                               "ngram_buckets": 101, "ngram_order": 3, **STACKED},
                                              BINARY_SENTIMENT, 1.3, None),
    "lstm-bi-mean-stacked-unigrams": ({"cell": "lstm", "bidirectional": True, "pooling": "mean", "ngram_buckets": 7,
                                       "ngram_order": 1, **STACKED}, LabelSpace("binary", ("ham", "spam")), 1.0, None),
    "multiclass-gru-stacked-bigrams": ({"cell": "gru", "pooling": "max", "ngram_buckets": 53, "ngram_order": 2, **STACKED},
                                       LabelSpace("multiclass", THREE), 1.7, None),
    "multilabel-lstm-bi-maxmean-joint": ({"cell": "lstm", "bidirectional": True, "pooling": "maxmean", **POST,
                                          "ngram_buckets": 29, "ngram_order": 3}, LabelSpace("multilabel", THREE),
                                         1.0, [0.3, 0.5, 0.7]),
}


def texts_of_every_length(maxlen: int, count: int = 70) -> list[str]:
    """``count`` texts of 0 to ``maxlen + 3`` words: vocabulary words, an unknown one, punctuation and line breaks."""
    texts = []
    for index in range(count):
        size = index % (maxlen + 4)
        words = [RANDOM_WORDS[(index * 7 + step * (index % 5 + 2)) % len(RANDOM_WORDS)] for step in range(size)]
        if size > 2:
            words[index % size] = "unknown"
        texts.append(("<br />" if index % 3 == 0 else " ").join(words).upper() + ("!" if index % 2 else ""))
    return texts


def model_for(name: str) -> Model:
    overrides, space, temperature, thresholds = VARIANTS[name]
    predictor = random_predictor(overrides, space, temperature, thresholds)
    return Model(predictor.artifact, threads=0)


def run(session: onnxruntime.InferenceSession, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    return session.run(["probabilities"], {"ids": ids, "lengths": lengths})[0]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_onnxruntime_gives_rnnsents_probabilities(name, tmp_path):
    model = model_for(name)
    result = model.export(tmp_path / "model.onnx")
    assert result.path == tmp_path / "model.onnx" and result.settings_path == tmp_path / "model.onnx.json"
    assert result.max_difference < 1e-5 and result.check_rows == 64
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    outputs = model.labels.num_outputs
    assert [(i.name, i.type) for i in session.get_inputs()] == [("ids", "tensor(int64)"), ("lengths", "tensor(int64)")]
    assert [i.shape for i in session.get_inputs()] == [["batch", "time"], ["batch"]]
    assert session.get_outputs()[0].name == "probabilities" and session.get_outputs()[0].shape == ["batch", outputs]

    texts = texts_of_every_length(model.config.text.maxlen)
    ids, lengths = model.encoder.encode_batch(texts)
    assert lengths.min() == 1 and lengths.max() == model.config.text.maxlen and len(set(lengths.tolist())) > 5
    want = model.probabilities(texts).reshape(len(texts), outputs)
    got = run(session, ids, lengths)
    assert got.dtype == np.float32 and got.shape == (len(texts), outputs)
    assert np.abs(got - want).max() <= 1e-5
    one_by_one = np.concatenate([run(session, ids[i:i + 1], lengths[i:i + 1]) for i in range(len(texts))])
    assert np.abs(one_by_one - want).max() <= 1e-5
    if model.config.model.use_lengths:
        # Padding after a row's words is never read: a batch may be as wide as its longest row.
        short = np.flatnonzero(lengths <= 4)
        assert np.abs(run(session, ids[short, :4], lengths[short]) - want[short]).max() <= 1e-5
    if name == "simple-last (seed)":
        # Model.probabilities (under inference mode) scored these rows with the compiled kernel,
        # not the traced forward.
        with torch.inference_mode():
            assert compiled_forward_supported(model.model, torch.from_numpy(ids))


def test_the_graph_declares_rnnsents_metadata_and_both_inputs_of_a_model_that_reads_no_lengths(tmp_path):
    model = model_for("simple-last (seed)")
    result = rnnsent.export(model, tmp_path / "seed.onnx", format="onnx")
    proto = onnx.load(str(result.path))
    onnx.checker.check_model(proto)
    assert [value.name for value in proto.graph.input] == ["ids", "lengths"]
    assert proto.opset_import[0].version == 18
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    assert metadata["task"] == "binary" and metadata["labels"] == '["negative", "positive"]'
    assert metadata["rnnsent_version"] == rnnsent.__version__ and metadata["preset"] == "seed"
    # Unused, since this model reads the padding like any token: any lengths give the same answer.
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    ids, lengths = check_rows(model, count=8)
    assert np.array_equal(run(session, ids, lengths), run(session, ids, np.ones_like(lengths)))


def test_export_of_a_model_directory_equals_that_of_the_loaded_model(tmp_path):
    model = model_for("gru-joint-bigrams")
    model.save(tmp_path / "model")
    first = rnnsent.export(tmp_path / "model", tmp_path / "from-directory.onnx")
    second = rnnsent.load(tmp_path / "model").export(tmp_path / "deep" / "er" / "from-model.onnx")
    assert first.path.read_bytes() == second.path.read_bytes()
    settings = [json.loads(result.settings_path.read_text()) for result in (first, second)]
    assert [s.pop("onnx_file") for s in settings] == ["from-directory.onnx", "from-model.onnx"]
    assert settings[0] == settings[1]


def test_a_quantized_model_is_refused_and_nothing_is_written(tmp_path):
    model = model_for("gru-attention")
    quantized = Model(type(model.artifact)(model.path, model.config, model.vocabulary, quantize_model(model.model)))
    with pytest.raises(UsageError, match=r"^a quantized model cannot be exported \(.*\): load it without quantize"):
        quantized.export(tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


def test_unknown_formats_and_directories_as_out_are_refused(tmp_path):
    model = model_for("simple-last (seed)")
    with pytest.raises(UsageError, match="unknown export format 'tflite'; the formats are: onnx"):
        model.export(tmp_path / "model.tflite", format="tflite")
    with pytest.raises(UsageError, match="is a directory: --out names the ONNX file to write"):
        model.export(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime"])
def test_without_the_export_extra_the_message_names_it(missing, tmp_path, monkeypatch):
    model = model_for("simple-last (seed)")
    monkeypatch.setitem(sys.modules, missing, None)  # "import <missing>" now raises ImportError
    with pytest.raises(MissingExtraError) as raised:
        model.export(tmp_path / "model.onnx")
    assert str(raised.value) == EXPORT_EXTRA_MESSAGE == "ONNX export needs the export extra: pip install 'rnnsent[export]'"
    assert not settings_path_for(tmp_path / "model.onnx").exists()
