"""What a deployment computes beside the graph: ``FILE.json``, and the walk-through that follows it without rnnsent.

``docs/examples/onnx_deploy.py`` tokenizes and pads with the standard library and numpy from the
settings alone; here its ids equal rnnsent's encoder on any text, and its answers equal
``Model.predict``.
"""

from __future__ import annotations

import dataclasses
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from label_models import RANDOM_WORDS, random_predictor
from rnnsent.exporter.deployment import deployment_settings
from rnnsent.exporter.onnx import export_onnx
from rnnsent.inference.predictor import Predictor
from rnnsent.labels import LabelSpace
from rnnsent.text.tokenize import KERAS_FILTERS
from rnnsent.text.vocabulary import Vocabulary

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = runpy.run_path(str(ROOT / "docs" / "examples" / "onnx_deploy.py"))
CUTS = [{"padding": padding, "truncating": truncating, "maxlen": maxlen, "punctuation": punctuation}
        for padding in ("pre", "post") for truncating in ("pre", "post") for maxlen in (1, 4, 9)
        for punctuation in ("drop", "words")]
# Text made of what the tokenizer treats specially: vocabulary words in any case, Keras' filter
# characters, <br />, Unicode whitespace and letters whose lower case is not one character.
PIECES = st.sampled_from([*RANDOM_WORDS[:6], "W3", "unknown", "<br />", "<BR />", *KERAS_FILTERS[:12], " ", "\u00a0",
                          "\u2003", "\n", "İ", "ΣΑΣ", "ß", "w2<br />w4", "w1's"])
TEXTS = st.lists(st.one_of(st.text(max_size=12), st.lists(PIECES, max_size=14).map("".join)), max_size=6)


@settings(max_examples=60, deadline=None)
@given(texts=TEXTS, cut=st.sampled_from(CUTS))
def test_the_walk_through_encodes_as_rnnsent_does(texts, cut):
    predictor = random_predictor(cut)
    described = deployment_settings(predictor.artifact, "model.onnx", 18)
    ids, lengths = EXAMPLE["encode"](texts, described)
    expected_ids, expected_lengths = predictor.encoder.encode_batch(texts)
    assert ids.dtype == np.int64 and lengths.dtype == np.int64
    assert np.array_equal(ids, expected_ids) and np.array_equal(lengths, expected_lengths)


def test_the_settings_hold_the_vocabulary_text_settings_and_labels():
    space = LabelSpace("multilabel", ("politics", "sports", "tech"))
    overrides = {"cell": "gru", "maxlen": 7, "padding": "post", "truncating": "post", "use_lengths": True,
                 "ngram_buckets": 11, "ngram_order": 2}
    predictor = random_predictor(overrides, space, temperature=1.5, thresholds=[0.2, 0.5, 0.9])
    described = json.loads(json.dumps(deployment_settings(predictor.artifact, "tags.onnx", 18)))
    assert described["format"] == "rnnsent-onnx" and described["format_version"] == 1
    assert described["onnx_file"] == "tags.onnx" and described["opset"] == 18
    assert described["vocabulary"] == list(RANDOM_WORDS)
    assert described["text"] | {"steps": None} == {
        "steps": None, "lowercase": True, "replace": {"<br />": " "}, "filters": KERAS_FILTERS, "marks": "", "num_words": 33,
        "index_from": 3, "maxlen": 7, "padding": "post", "truncating": "post", "pad_id": 0, "start_id": 1, "oov_id": 2}
    assert described["task"] == "multilabel" and described["labels"] == ["politics", "sports", "tech"]
    assert described["thresholds"] == [0.2, 0.5, 0.9] and described["temperature"] == 1.5
    assert described["reads_lengths"] is True and described["time"].startswith("any width")
    assert described["ngrams"]["order"] == 2 and described["ngrams"]["buckets"] == 11
    assert described["ngrams"]["fit"] == "joint" and described["ngrams"]["computed"].startswith("inside the graph")
    assert described["inputs"]["ids"]["shape"] == ["batch", "time"] and described["inputs"]["lengths"]["shape"] == ["batch"]
    assert described["output"]["name"] == "probabilities" and described["output"]["shape"] == ["batch", 3]

    binary = deployment_settings(random_predictor({}).artifact, "seed.onnx", 18)
    assert binary["thresholds"] is None and binary["ngrams"] is None and binary["reads_lengths"] is False
    assert binary["time"] == "exactly text.maxlen (10): the model reads the padding"
    assert binary["output"]["shape"] == ["batch", 1] and "'positive'" in binary["output"]["meaning"]


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_the_walk_through_answers_as_model_predict(task, tmp_path, monkeypatch, capsys):
    names = ("ham", "spam") if task == "binary" else ("a", "b", "c")
    thresholds = [0.3, 0.5, 0.7] if task == "multilabel" else None
    predictor = random_predictor({"cell": "gru", "bidirectional": True, "ngram_buckets": 17, "ngram_fit": "stacked",
                                  "validation_split": 0.1}, LabelSpace(task, names), 1.2, thresholds)
    path = tmp_path / "model.onnx"
    export_onnx(predictor, path)
    texts = ["", "w1 w2 w3", "W4, w5... w6 w7 w8 w9 w10 w11 w12 w13 w14 w15", "unknown<br />w20 w21", "w29 " * 30]
    probabilities = EXAMPLE["score"](str(path), texts)
    assert np.abs(probabilities - predictor.probabilities(texts).reshape(len(texts), -1)).max() <= 1e-5
    labels = EXAMPLE["labels_of"](probabilities, EXAMPLE["load_settings"](str(path)))
    predictions = predictor.predict(texts)
    if task == "multilabel":
        assert labels == [p.labels for p in predictions]
    else:
        assert labels == [[p.label] for p in predictions]

    # As a script: one line per text, the labels, the probabilities, the text.
    monkeypatch.setattr(sys, "argv", ["onnx_deploy.py", str(path), *texts[1:3]])
    runpy.run_path(str(ROOT / "docs" / "examples" / "onnx_deploy.py"), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [",".join(chosen) or "-" for chosen in labels[1:3]]
    assert [line.split("\t")[-1] for line in lines] == texts[1:3]


def test_words_of_any_unicode_survive_the_settings_file(tmp_path):
    words = ("café", "\ud800", "naïve", "日本", "ǆ", *RANDOM_WORDS[5:])
    predictor = Predictor(dataclasses.replace(random_predictor({}).artifact, vocabulary=Vocabulary(words)))
    export_onnx(predictor, tmp_path / "model.onnx")
    described = EXAMPLE["load_settings"](str(tmp_path / "model.onnx"))
    assert described["vocabulary"] == list(words)
    texts = ["Café NAÏVE 日本 \ud800 ǅ w7", "ǆ\ud800 w9"]
    ids, lengths = EXAMPLE["encode"](texts, described)
    expected_ids, expected_lengths = predictor.encoder.encode_batch(texts)
    assert np.array_equal(ids, expected_ids) and np.array_equal(lengths, expected_lengths)
    assert set(ids[0]) >= {3, 4, 5, 6, 7} and 2 not in ids[0]  # every word known, none out of vocabulary
