"""The Python API: rnnsent.train / evaluate / load, the same errors as the command line, the docs' example."""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import rnnsent
from conftest import write_csv, write_tiny_reviews
from rnnsent.cli.main import main
from rnnsent.errors import ArtifactError, ConfigError, DataError, UsageError

ROOT = Path(__file__).resolve().parents[1]
TINY = {"num_words": 40, "maxlen": 12, "embedding_dim": 8, "epochs": 2, "report_test": False, "lr": 0.005,
        "batch_size": 16, "threads": 1}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    return write_tiny_reviews(tmp_path_factory.mktemp("api-data") / "reviews.csv", count=300)


def test_importing_rnnsent_imports_no_torch():
    code = "import sys, rnnsent; print('torch' in sys.modules, sorted(rnnsent.__all__))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("False")
    assert "train" in result.stdout and "evaluate" in result.stdout and "load" in result.stdout


def test_train_returns_a_model_that_predicts_and_carries_its_history(reviews, tmp_path):
    model = rnnsent.train(data=reviews, out=tmp_path / "model", progress=False, verbose=False, **TINY)
    assert isinstance(model, rnnsent.Model)
    assert [row["epoch"] for row in model.history] == [1, 2]
    assert model.metrics["accuracy"] >= 0.9 and model.metrics["count"] == 60
    assert model.config.text.maxlen == 12 and model.config.train.epochs == 2
    (great, dull) = model.predict(["great wonderful film", "dull boring mess"])
    assert (great.label, dull.label) == ("positive", "negative")
    assert (tmp_path / "model" / "manifest.json").exists()
    loaded = rnnsent.load(tmp_path / "model")
    assert loaded.probabilities(["great film"]).tolist() == model.probabilities(["great film"]).tolist()


def test_python_and_the_command_line_train_bit_identical_weights(reviews, tmp_path):
    rnnsent.train(data=reviews, out=tmp_path / "py", progress=False, verbose=False, **TINY)
    flags = [f"--{name.replace('_', '-')}" if value is not False else f"--no-{name.replace('_', '-')}" for name, value in TINY.items()]
    argv = []
    for flag, value in zip(flags, TINY.values()):
        argv += [flag] if isinstance(value, bool) else [flag, str(value)]
    assert main(["train", "--data", str(reviews), "--out", str(tmp_path / "cli"), "--quiet", *argv]) == 0
    assert sha256(tmp_path / "py" / "model.safetensors") == sha256(tmp_path / "cli" / "model.safetensors")


def test_train_without_out_uses_a_fresh_directory_and_save_writes_a_complete_one(reviews, tmp_path):
    model = rnnsent.train(data=reviews, progress=False, verbose=False, **{**TINY, "epochs": 1})
    assert model.path.is_dir() and model.path != tmp_path
    saved = model.save(tmp_path / "kept")
    assert rnnsent.load(saved).probabilities(["dull"]).tolist() == model.probabilities(["dull"]).tolist()


@pytest.mark.parametrize("call, error, message", [
    (lambda data: rnnsent.train(data=data, hidden_sise=3), ConfigError, "unknown setting 'hidden_sise'"),
    (lambda data: rnnsent.train(data=data, maxlen=0), ConfigError, "maxlen must be in"),
    (lambda data: rnnsent.train(data=data, cell="transformer"), ConfigError, "cell must be one of simple, lstm, gru"),
    (lambda data: rnnsent.train("nope", data=data), ConfigError, "unknown preset 'nope'"),
    (lambda data: rnnsent.train(data=data, threads=-1), ConfigError, "--threads must be 0"),
    (lambda data: rnnsent.train(data=data, resume="x", maxlen=3), UsageError, "resume continues a run"),
    (lambda data: rnnsent.train(data=Path(data).parent / "missing.csv"), ValueError, "does not exist"),
    # A mapping of columns raised a bare TypeError from pathlib.
    (lambda data: rnnsent.train(data={"text": ["a b"], "label": ["x"]}), DataError, "data is a dict; give a path"),
    (lambda data: rnnsent.load(Path(data).parent / "no-model"), ArtifactError, "no such model directory"),
    (lambda data: rnnsent.evaluate(Path(data).parent / "no-model"), ArtifactError, "no such model directory"),
])
def test_mistakes_raise_value_errors_with_one_line(reviews, call, error, message):
    with pytest.raises(error) as raised:
        call(reviews)
    assert isinstance(raised.value, ValueError)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_evaluate_returns_metrics_that_print_as_the_report(reviews, tmp_path):
    model = rnnsent.train(data=reviews, out=tmp_path / "model", progress=False, verbose=False, **TINY)
    metrics = rnnsent.evaluate(tmp_path / "model", reviews)
    assert metrics["count"] == 60 and metrics["accuracy"] == model.metrics["accuracy"]
    assert str(metrics).splitlines()[1].startswith("Test accuracy: ")
    assert rnnsent.evaluate(model, reviews, limit=10)["count"] == 10


def test_evaluate_without_data_scores_the_data_the_model_was_trained_on(reviews, tmp_path, capsys, monkeypatch):
    # It once fell back to $RNNSENT_DATA or a download of aclImdb, which a model trained on
    # a person's CSV file cannot be scored on (and offline the download fails).
    model = rnnsent.train(data=reviews, out=tmp_path / "model", progress=False, verbose=False, **TINY)
    assert model.metrics["training_data"] == str(reviews.resolve())
    metrics = rnnsent.evaluate(tmp_path / "model")
    assert metrics["count"] == 60 and metrics["accuracy"] == model.metrics["accuracy"]
    assert main(["evaluate", str(tmp_path / "model"), "--threads", "1"]) == 0
    assert f"{reviews.resolve()} (test split)" in capsys.readouterr().out
    # A copy of the training file elsewhere is still the training source: its test split, not every row.
    copy = tmp_path / "copy.csv"
    copy.write_bytes(reviews.read_bytes())
    assert rnnsent.evaluate(tmp_path / "model", copy)["count"] == 60
    # Rows of one label, the model never trained on: every row is scored, and the undefined
    # ROC-AUC is said so (null in JSON), not printed as nan.
    lines = reviews.read_text(encoding="utf-8").splitlines()
    (tmp_path / "one.csv").write_text("\n".join([lines[0], *[line for line in lines[1:] if line.endswith(",1")][:7]]) + "\n",
                                      encoding="utf-8")
    assert main(["evaluate", str(tmp_path / "model"), "--data", str(tmp_path / "one.csv"), "--threads", "1"]) == 0
    report = capsys.readouterr().out
    assert "ROC-AUC: n/a (the texts hold one label)" in report and "Scored 7 texts" in report and "(every row)" in report
    assert main(["evaluate", str(tmp_path / "model"), "--data", str(tmp_path / "one.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["roc_auc"] is None
    # When the training file has moved, evaluate says so rather than scoring other data
    # ($RNNSENT_DATA, or a download of aclImdb whose labels the model does not have).
    monkeypatch.setenv("RNNSENT_DATA", str(tmp_path / "elsewhere.csv"))
    moved = reviews.with_name("moved.csv")
    reviews.rename(moved)
    try:
        with pytest.raises(DataError, match="reviews.csv, the data .* was trained on, no longer exists; say what to score"):
            rnnsent.evaluate(tmp_path / "model")
        assert main(["evaluate", str(tmp_path / "model"), "--threads", "1"]) == 2
        assert "no longer exists" in capsys.readouterr().err
    finally:
        moved.rename(reviews)


def test_the_docs_python_example_runs(reviews, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNSENT_EXAMPLE_DATA", str(reviews))
    monkeypatch.setenv("RNNSENT_EXAMPLE_OUT", str(tmp_path / "example"))
    runpy.run_path(str(ROOT / "docs" / "examples" / "python_api.py"), run_name="__main__")
    output = capsys.readouterr().out
    assert "refused: unknown setting 'hidden_sise'" in output
    assert "Test accuracy: " in output
    assert (tmp_path / "example-copy" / "manifest.json").exists()
    assert os.environ["RNNSENT_EXAMPLE_OUT"] == str(tmp_path / "example")


def test_train_returns_a_model_with_its_label_names(tmp_path):
    """The model rnnsent.train returns carries the label space it was trained on (as a loaded one does)."""
    from conftest import make_reviews, write_csv

    rows = [(text, ["bad", "good"][label]) for text, label in make_reviews(60)]
    rows += [(f"so so average film {i}", "meh") for i in range(30)]
    data = write_csv(tmp_path / "three.csv", rows)
    model = rnnsent.train(data=data, out=tmp_path / "model", progress=False, verbose=False,
                          **{**TINY, "epochs": 3, "optimizer": "adam", "lr": 0.02, "cell": "gru"})
    assert model.labels.names == ("bad", "good", "meh") == rnnsent.load(tmp_path / "model").labels.names
    assert rnnsent.load(model.save(tmp_path / "copy")).labels.names == ("bad", "good", "meh")
    (prediction,) = model.predict(["so so average film"])
    assert prediction.label in {"bad", "good", "meh"} and set(prediction.probabilities) == {"bad", "good", "meh"}


def test_labels_spelled_two_ways_are_warned_of(tmp_path, capsys):
    # One row's 'Spam' made a third class beside 'spam' and 'ham' without a word.
    texts = [f"word{i % 7} filler text {'win cash' if i % 2 else 'see you'}" for i in range(120)]
    labels = ["spam" if i % 2 else "ham" for i in range(120)]
    labels[1] = "Spam"
    rnnsent.train(data=(texts, labels), out=tmp_path / "model", progress=False, **TINY)
    assert "warning: the labels 'Spam' and 'spam' differ only in case" in capsys.readouterr().out


def test_summary_of_a_model_directory(reviews, tmp_path):
    # It took the directory for a preset's name: "unknown preset 'runs/...'".
    model = rnnsent.train(data=reviews, out=tmp_path / "model", progress=False, verbose=False, **TINY)
    assert rnnsent.summary(tmp_path / "model") == rnnsent.summary(str(tmp_path / "model")) == model.summary()
    assert "Labels: binary task" in model.summary()
    with pytest.raises(UsageError, match="takes no settings"):
        rnnsent.summary(tmp_path / "model", hidden_size=3)
    assert rnnsent.summary(model) == model.summary()  # a Model too (it was a TypeError)
    with pytest.raises(ArtifactError, match="no such model directory"):  # it said "unknown preset"
        rnnsent.summary(str(tmp_path / "missing" / "model"))
    with pytest.raises(ArtifactError, match="is a file, not a model directory"):
        rnnsent.summary(reviews)


@pytest.mark.parametrize("task", ["auto", "multilabel"])
def test_a_csv_of_joined_labels_without_a_separator_gets_a_note(tmp_path, capsys, task):
    # "db|python" cells trained as classes (or labels) of their own without a word.
    rows = [(f"word{i % 5} {'query index' if i % 3 else 'def class'} text", ["db", "python", "db|python"][i % 3])
            for i in range(90)]
    write_csv(tmp_path / "tags.csv", rows)
    rnnsent.train(data=tmp_path / "tags.csv", out=tmp_path / "model", progress=False, task=task, **TINY)
    assert "for several labels per text use --label-separator '|'" in capsys.readouterr().out


def test_punctuation_as_words_is_learned_from_and_kept_by_the_model(tmp_path):
    # "!" alone tells the labels apart; with punctuation dropped (the default) the texts are the
    # same words, so only a model that reads marks as words can learn it.
    rows = [(f"the film was {'ok!' if index % 2 else 'ok.'}", "loud" if index % 2 else "calm") for index in range(200)]
    data = write_csv(tmp_path / "marks.csv", rows)
    settings = {**TINY, "epochs": 8, "maxlen": 8}
    model = rnnsent.train(data=data, out=tmp_path / "words", punctuation="words", verbose=False, **settings)
    assert {"!", "."} <= set(json.loads((tmp_path / "words" / "vocabulary.json").read_text())["words"])
    loaded = rnnsent.load(tmp_path / "words")
    assert loaded.config.text.punctuation == "words"
    assert [p.label for p in loaded.predict(["the film was ok!", "the film was ok."])] == ["loud", "calm"]
    assert "!" in loaded.explain("the film was ok!").to_dict()["tokens"]
    dropped = rnnsent.train(data=data, out=tmp_path / "drop", verbose=False, **settings)
    assert dropped.config.text.punctuation == "drop"
    assert "!" not in json.loads((tmp_path / "drop" / "vocabulary.json").read_text())["words"]


def test_evaluate_takes_other_column_names_as_keywords(reviews, tmp_path):
    model = rnnsent.train(data=reviews, out=tmp_path / "m", verbose=False, **TINY)
    other = tmp_path / "other.csv"
    other.write_text("body,stars\nA wonderful superb film.,1\nAwful boring mess.,0\n", encoding="utf-8")
    metrics = rnnsent.evaluate(model, data=other, text_field="body", label_field="stars")
    assert metrics["count"] == 2
    assert rnnsent.evaluate(model, data=other, fields={"text_field": "body", "label_field": "stars"}) == metrics
    with pytest.raises(DataError, match="--text-field"):
        rnnsent.evaluate(model, data=other)
