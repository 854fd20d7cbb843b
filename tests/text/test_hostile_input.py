"""Hostile text: arbitrary Unicode, empty and huge texts, invalid UTF-8 never crash.

The defined results (see docs/reliability.md): every ``str`` is a valid text; lone
surrogates, NUL, control, RTL and emoji characters are ordinary characters (they form or
split words exactly as ``str.split`` and Keras' filters say); a text without words is scored
from the start token alone and marked ``empty``; a huge text costs what its kept end costs.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnsent.artifact.directory import save_artifact
from rnnsent.cli.main import main
from rnnsent.config import TextConfig, build_config
from rnnsent.inference.predictor import Predictor
from rnnsent.inference.streaming import score_chunks
from rnnsent.model.recurrent import RecurrentClassifier
from rnnsent.text import encoder as encoder_module
from rnnsent.text import tokenize as tokenize_module
from rnnsent.text.encoder import TextEncoder, pad_rows
from rnnsent.text.tokenize import (
    KERAS_FILTERS,
    TEXT_BOUNDARY,
    tokenize,
    tokenize_head,
    tokenize_joined,
    tokenize_tail,
)
from rnnsent.text.vocabulary import OOV_TOKEN, START_ID, START_TOKEN, Vocabulary

WORDS = ("good", "bad", "movie", "σας", "שלום", "😀", "\ud800", "i̇stanbul")
# Pieces that stress the tokenizer's edges: case mapping that changes length (İ) or depends
# on context (final sigma), HTML breaks, Unicode whitespace, NUL, RTL marks, surrogates.
PIECES = [
    "good", "BAD", "Movie", "ΣΑΣ", "Σ", "İstanbul", "<br />", "<BR />", "<br", "/>", " ", "  ", "\t", "\n", "\r\n",
    "\u3000", "\x85", "\x1c", "\xa0", "\x00", "\u202e", "\u200f", "שלום", "😀", "👩‍👩‍👧", "\ud800", "\udcff", "a.b",
    "don't", "...", "!!", "é", "e\u0301",
]
any_text = st.one_of(
    st.text(st.characters(exclude_categories=[]), max_size=200),  # every code point, surrogates included
    st.lists(st.sampled_from(PIECES), max_size=60).map("".join),
)
TEXT_SETTINGS = [
    TextConfig(num_words=20, maxlen=maxlen, padding=padding, truncating=truncating, punctuation=punctuation)
    for maxlen in (1, 4) for padding in ("pre", "post") for truncating in ("pre", "post")
    for punctuation in ("drop", "words")
]
VOCABULARY = Vocabulary(WORDS)


@settings(max_examples=300, deadline=None)
@given(any_text)
def test_tokenize_gives_clean_words(value):
    for word in tokenize(value):
        assert word and not any(character.isspace() or character in KERAS_FILTERS for character in word)
    # With punctuation as words, a word is one mark or has none.
    for word in tokenize(value, "words"):
        assert word and not any(character.isspace() for character in word)
        assert len(word) == 1 or not any(character in KERAS_FILTERS for character in word)


@settings(max_examples=400, deadline=None)
@given(any_text, st.integers(1, 6))
def test_tokenizing_only_an_end_matches_the_whole_text(value, count):
    for punctuation in ("drop", "words"):
        words = tokenize(value, punctuation)
        assert tokenize_tail(value, count, punctuation) == words[-count:]
        assert tokenize_head(value, count, punctuation) == words[:count]


@settings(max_examples=300, deadline=None)
@given(st.lists(any_text, max_size=6))
def test_tokenizing_texts_together_matches_each_alone(values):
    values = [value for value in values if TEXT_BOUNDARY not in value]
    for punctuation in ("drop", "words"):
        expected = [word for value in values for word in (TEXT_BOUNDARY, *tokenize(value, punctuation))]
        assert tokenize_joined(values, punctuation) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(any_text, st.lists(st.sampled_from(PIECES), min_size=150, max_size=300).map("".join)),
                max_size=12),
       st.sampled_from(TEXT_SETTINGS))
def test_encode_batch_of_joined_long_and_boundary_texts_equals_each_alone(values, config):
    # Texts tokenized together in groups of 3 (JOINED_TEXTS patched), long ones (beyond the
    # first window) and ones holding the boundary character alone: every row as kept_ids says.
    encoder = TextEncoder(VOCABULARY, config)
    original = encoder_module.JOINED_TEXTS
    encoder_module.JOINED_TEXTS = 3
    try:
        ids, lengths = encoder.encode_batch(values)
    finally:
        encoder_module.JOINED_TEXTS = original
    expected_ids, expected_lengths = pad_rows([encoder.kept_ids(value)[0] for value in values], config.maxlen,
                                              config.padding)
    assert np.array_equal(ids, expected_ids) and np.array_equal(lengths, expected_lengths)


def keras_row(encoder: TextEncoder, value: str) -> list[int]:
    """The reference: the whole review's ids, then Keras' truncation and padding."""
    config = encoder.config
    sequence = encoder.encode(value)
    if len(sequence) > config.maxlen:
        sequence = sequence[-config.maxlen:] if config.truncating == "pre" else sequence[:config.maxlen]
    padding = [0] * (config.maxlen - len(sequence))
    return padding + sequence if config.padding == "pre" else sequence + padding


@settings(max_examples=150, deadline=None)
@given(st.lists(any_text, max_size=5), st.sampled_from(TEXT_SETTINGS))
def test_encode_batch_is_keras_truncation_and_padding(values, config):
    encoder = TextEncoder(VOCABULARY, config)
    ids, lengths = encoder.encode_batch(values)
    assert ids.shape == (len(values), config.maxlen) and ids.dtype == np.int64
    assert lengths.shape == (len(values),)
    for row, length, value in zip(ids, lengths, values):
        assert row.tolist() == keras_row(encoder, value)
        assert 1 <= length <= config.maxlen and int((row != 0).sum()) == length
        assert row.max() < config.num_words
        kept, cut = encoder.kept_tokens(value)
        assert cut == (len(encoder.encode(value)) > config.maxlen)
        # The kept words are the ones the model reads: same count, same ids.
        expected = [START_TOKEN if word == START_TOKEN else (word if VOCABULARY.id(word) != 2 else OOV_TOKEN) for word in kept]
        assert encoder.decode(row) == expected


def test_start_token_survives_only_when_the_text_fits():
    encoder = TextEncoder(VOCABULARY, TextConfig(maxlen=3, truncating="pre", padding="post"))
    ids, lengths = encoder.encode_batch(["good bad", "good bad movie", ""])
    assert ids.tolist() == [[START_ID, 3, 4], [3, 4, 5], [START_ID, 0, 0]]
    assert lengths.tolist() == [3, 3, 1]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    config = build_config("seed", {"num_words": 20, "maxlen": 6, "embedding_dim": 4, "hidden_size": 3})
    torch.manual_seed(0)
    model = RecurrentClassifier(config.model, config.text.num_words)
    directory = save_artifact(tmp_path_factory.mktemp("model") / "model", config, VOCABULARY, model)
    return Predictor.load(directory)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(any_text, max_size=6))
def test_predict_gives_a_probability_for_every_text(predictor, values):
    predictions = predictor.predict(values)
    assert len(predictions) == len(values)
    for prediction, value in zip(predictions, values):
        assert math.isfinite(prediction.probability) and 0.0 <= prediction.probability <= 1.0
        assert prediction.label == ("positive" if prediction.probability > 0.5 else "negative")
        assert prediction.empty == (tokenize(value) == [])


def test_texts_without_words_get_the_prior(predictor):
    """Empty, whitespace-only and punctuation-only texts all read the start token alone."""
    predictions = predictor.predict(["", " ", "\t\n\u3000", "!?...", "<br />", "\x00"])
    assert [p.empty for p in predictions] == [True, True, True, True, True, False]
    assert len({p.probability for p in predictions[:5]}) == 1


def test_non_strings_are_a_type_error(predictor):
    with pytest.raises(TypeError, match="a single string"):
        predictor.predict("good")
    with pytest.raises(TypeError, match="text 1 is bytes"):
        predictor.predict(["good", b"bad"])
    assert predictor.predict([]) == []
    with pytest.raises(TypeError, match="use predict_stream"):
        predictor.predict(text for text in ["good"])
    assert [p.label for p in predictor.predict_stream(text for text in ["good"])] == [predictor.predict(["good"])[0].label]
    assert predictor.probabilities(("good", "bad")).shape == (2,)
    assert predictor.probabilities(np.array(["good", "bad"])).shape == (2,)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_a_batch_size_under_one_is_refused(predictor, batch_size):
    # -1 once returned no rows for one text; 0 raised range()'s own error.
    with pytest.raises(ValueError, match="batch_size must be a whole number of at least 1"):
        predictor.probabilities(["good"], batch_size=batch_size)


def test_ten_megabyte_text_reads_only_its_kept_end(predictor, monkeypatch):
    """A 10 MB review costs what its last maxlen words cost: only they are normalised."""
    huge = "A long, long review <br />of a good movie. " * 250_000  # 10.75 MB, 2.25 million words
    normalised = []
    original = tokenize_module.normalize
    monkeypatch.setattr(tokenize_module, "normalize",
                        lambda value: normalised.append(len(value)) or original(value))
    ids, lengths = predictor.encoder.encode_batch([huge])
    assert sum(normalised) < 10_000
    monkeypatch.undo()
    assert ids[0].tolist() == keras_row(predictor.encoder, huge)
    assert predictor.encoder.kept_tokens(huge) == (tokenize(huge)[-6:], True)
    assert 0.0 <= predictor.predict([huge])[0].probability <= 1.0


def test_huge_text_without_spaces_is_still_scored(predictor):
    """No whitespace to cut at: the whole text is tokenized, once, in linear time."""
    (prediction,) = predictor.predict(["😀" * 1_000_000])
    assert not prediction.empty and 0.0 <= prediction.probability <= 1.0


# ----------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def model_dir(predictor):
    return str(predictor.artifact.path)


@pytest.mark.parametrize("encoding", ["utf-8", "ascii", "latin-1"])
def test_predict_prints_any_text_on_any_terminal(model_dir, encoding, monkeypatch):
    """Lone surrogates (e.g. undecodable argv bytes) and emoji print escaped, not as a crash."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors="strict", newline="\n")
    monkeypatch.setattr(sys, "stdout", stdout)
    texts = ["good \udcff movie", "\ud800", "😀 שלום", "", "nul\x00byte"]
    assert main(["predict", model_dir, *texts]) == 0
    stdout.flush()
    lines = stdout.buffer.getvalue().decode(encoding).splitlines()
    assert len(lines) == len(texts)
    assert lines[0].split("\t")[2] == "good \\udcff movie"
    assert lines[1].split("\t")[2] == "\\ud800"
    assert lines[3].split("\t")[2] == ""


def test_predict_json_round_trips_any_text(model_dir, capsys):
    texts = ["\ud800 good", "😀", "\x00"]
    assert main(["predict", model_dir, *texts, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["text"] for row in rows] == texts


def test_predict_file_with_invalid_utf8_names_the_line(model_dir, tmp_path, capsys):
    reviews = tmp_path / "reviews.txt"
    reviews.write_bytes(b"a good movie\nfine\n\xff\xfe broken\nnever read\n")
    assert main(["predict", model_dir, "--file", str(reviews), "--batch-size", "1"]) == 2
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2  # the batches before the bad line are printed
    assert captured.err.startswith(f"error: {reviews}:3: not UTF-8 text") and captured.err.count("\n") == 1


@pytest.mark.parametrize("line, message", [
    (b'{"text": "ok"}\nnot json\n', ":2: not valid JSON"),
    (b'{"text": 5}\n', ":1: each JSONL line needs a string 'text'"),
    (b'["a list"]\n', ":1: each JSONL line needs a string 'text'"),
])
def test_predict_bad_jsonl_names_the_line(model_dir, tmp_path, capsys, line, message):
    reviews = tmp_path / "reviews.jsonl"
    reviews.write_bytes(line)
    assert main(["predict", model_dir, "--file", str(reviews)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {reviews}{message}") and error.count("\n") == 1


def test_predict_streams_its_input(predictor):
    """Texts are read batch by batch: memory is bounded by --batch-size, not the input."""
    consumed = itertools.count()

    def endless():
        while True:
            next(consumed)
            yield "a good movie"

    results = itertools.chain.from_iterable(score_chunks(predictor, endless(), 8))
    first = list(itertools.islice(results, 10))
    assert len(first) == 10
    assert next(consumed) == 16  # two batches of 8 read to give 10 results, nothing more


def test_training_data_with_hostile_words_round_trips(tmp_path, capsys, monkeypatch):
    """Lone surrogates (legal JSON escapes), NUL and emoji become vocabulary words that
    survive the cache, vocabulary.json and predict."""
    monkeypatch.setenv("RNNSENT_CACHE", str(tmp_path / "cache"))
    hostile = ["\ud800", "nul\x00word", "😀", "\u202eevil"]
    records = [{"text": f"{hostile[i % 4]} {'good' if i % 2 else 'bad'} movie", "label": i % 2} for i in range(40)]
    source = tmp_path / "reviews.jsonl"
    source.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="ascii")
    threads = torch.get_num_threads()
    try:
        assert main(["train", "--data", str(source), "--out", str(tmp_path / "model"), "--epochs", "1", "--num-words", "20",
                     "--maxlen", "6", "--embedding-dim", "4", "--hidden-size", "3", "--threads", "1", "--quiet",
                     "--no-report-test"]) == 0
    finally:
        torch.set_num_threads(threads)
    words = Predictor.load(tmp_path / "model").encoder.vocabulary.words
    assert set(hostile) <= set(words)
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "model"), *hostile, "--json"]) == 0
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == hostile
