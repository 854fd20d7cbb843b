"""The command line end to end on tiny generated data: train, evaluate, predict, and every bad input."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

import rnnsent
from conftest import make_reviews, write_csv, write_imdb_tree, write_jsonl, write_tiny_reviews
from rnnsent.artifact.directory import load_artifact
from rnnsent.cli.main import main

SOURCE_ROOT = Path(rnnsent.__file__).resolve().parents[1]  # the src/ folder these tests import
TRAIN_FLAGS = ["--preset", "seed", "--epochs", "3", "--lr", "0.01", "--batch-size", "16", "--maxlen", "20", "--num-words", "100",
               "--threads", "1", "--quiet"]
POSITIVE = "A great, wonderful film. I loved it, the best!"
NEGATIVE = "Awful and boring, the worst waste of time. Hated it."
ARTIFACT_FILES = {"labels.json", "config.json", "vocabulary.json", "model.safetensors", "metrics.json", "history.json",
                  "history.csv", "curves.png", "manifest.json"}
METRIC_KEYS = {"loss", "accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix"}


def run_cli(*args: str, stdin: bytes | None = None, env: dict | None = None, cwd: Path | None = None):
    """``python -m rnnsent ARGS`` in a real subprocess, with this checkout's package."""
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE_ROOT), environment.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "rnnsent", *args], input=stdin, capture_output=True, env=environment,
                          cwd=cwd, timeout=300)


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    """The CLI's contract for a user's mistake: one ``error:`` line last, and no traceback."""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert lines, "nothing on stderr"
    assert lines[-1].startswith("error: ")
    assert sum(line.startswith("error") for line in lines) == 1
    for fragment in fragments:
        assert fragment in lines[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One model trained in-process on 200 generated reviews (160 train, 40 held-out test)."""
    root = tmp_path_factory.mktemp("trained")
    data = write_csv(root / "reviews.csv", make_reviews(200))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RNNSENT_CACHE", str(root / "cache"))
        patch.delenv("RNNSENT_DATA", raising=False)
        stdout = io.StringIO()
        patch.setattr(sys, "stdout", stdout)
        code = main(["train", "--data", str(data), "--out", str(root / "model"), *TRAIN_FLAGS])
    assert code == 0
    return root / "model", data, stdout.getvalue()


@pytest.fixture
def model_copy(trained, tmp_path):
    return Path(shutil.copytree(trained[0], tmp_path / "model"))


# ----------------------------------------------------------------------------- train / evaluate


def test_train_writes_a_complete_artifact(trained):
    model, _, stdout = trained
    assert ARTIFACT_FILES <= {path.name for path in model.iterdir()}
    assert (model / "checkpoint" / "state.json").exists()
    manifest = json.loads((model / "manifest.json").read_text())
    assert set(manifest["files"]) == ARTIFACT_FILES - {"manifest.json"}
    assert "160 training texts" in stdout
    for epoch in (1, 2, 3):
        assert f"epoch {epoch}/3  loss " in stdout
    assert "Test accuracy: " in stdout
    artifact = load_artifact(model)
    assert [row["epoch"] for row in artifact.history] == [1, 2, 3]
    assert {"loss", "accuracy", "test_loss", "test_accuracy", "seconds"} <= set(artifact.history[0])
    # The words are obvious: a working model separates the 40 held-out reviews.
    assert artifact.metrics["accuracy"] >= 0.9
    assert artifact.metrics["count"] == 40
    assert artifact.config.text.maxlen == 20 and artifact.config.train.epochs == 3


def test_train_in_a_subprocess_from_an_imdb_archive(tmp_path):
    tree = write_imdb_tree(tmp_path / "tree", per_label=12)
    archive = tmp_path / "aclImdb.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        out.add(tree, arcname="aclImdb")
    result = run_cli("train", "--out", str(tmp_path / "model"), "--epochs", "1", "--threads", "1", "--quiet",
                     "--num-words", "50", env={"RNNSENT_DATA": str(archive), "RNNSENT_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr.decode()
    stdout = result.stdout.decode()
    assert "24 training texts" in stdout and "epoch 1/1" in stdout
    accuracy_lines = [line for line in stdout.splitlines() if line.startswith("Test accuracy: ")]
    assert len(accuracy_lines) == 1 and 0.0 <= float(accuracy_lines[0].split(": ")[1]) <= 1.0
    assert ARTIFACT_FILES <= {path.name for path in (tmp_path / "model").iterdir()}
    assert load_artifact(tmp_path / "model").metrics["count"] == 24


def test_evaluate_json(trained, model_copy, capsys):
    _, data, _ = trained
    assert main(["evaluate", str(model_copy), "--data", str(data), "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    metrics = json.loads(out)
    assert METRIC_KEYS <= set(metrics)
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    assert tn + fp + fn + tp == 40
    assert metrics["accuracy"] == pytest.approx((tn + tp) / 40)
    assert metrics["accuracy"] == pytest.approx(load_artifact(trained[0]).metrics["accuracy"])
    assert 0.0 <= metrics["roc_auc"] <= 1.0 and metrics["loss"] > 0


def test_evaluate_text_report_and_another_source(trained, model_copy, capsys, tmp_path):
    jsonl = write_jsonl(tmp_path / "other.jsonl", make_reviews(50, seed=9))
    assert main(["evaluate", str(model_copy), "--data", str(jsonl)]) == 0
    out = capsys.readouterr().out
    assert "Test accuracy: " in out and "Confusion matrix" in out
    # Scores on other data are printed, but the model's recorded test metrics stay those of its own test split.
    assert load_artifact(model_copy).metrics["count"] == load_artifact(trained[0]).metrics["count"] == 40
    assert main(["evaluate", str(model_copy), "--data", str(jsonl), "--json"]) == 0
    # Every row of a file the model was not trained on, encoded with the model's vocabulary.
    assert json.loads(capsys.readouterr().out)["count"] == 50


def test_ctrl_c_then_resume_gives_the_uninterrupted_model(trained, tmp_path, capsys, monkeypatch):
    from rnnsent.training import loop as train_module

    epoch_line = train_module.epoch_line

    def interrupt_after_epoch_one(row, epochs):
        if row["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)  # the loop finishes this step, checkpoints and stops
        return epoch_line(row, epochs)

    monkeypatch.setattr(train_module, "epoch_line", interrupt_after_epoch_one)
    out = tmp_path / "model"
    assert main(["train", "--data", str(trained[1]), "--out", str(out), *TRAIN_FLAGS]) == 130
    err = capsys.readouterr().err
    assert f"continue with 'rnnsent train --resume {out}'" in err and "Traceback" not in err
    assert not (out / "manifest.json").exists()  # no model yet, only the checkpoint
    monkeypatch.setattr(train_module, "epoch_line", epoch_line)
    assert main(["train", "--resume", str(out)]) == 0
    resumed, reference = load_artifact(out), load_artifact(trained[0])
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    assert resumed.metrics["accuracy"] == reference.metrics["accuracy"]


# ----------------------------------------------------------------------------- predict


def predict_json(capsys, *args) -> list[dict]:
    assert main(["predict", *args, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_predict_labels_obvious_reviews(trained, capsys):
    assert main(["predict", str(trained[0]), POSITIVE, NEGATIVE]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["positive", "negative"]
    assert lines[0].split("\t")[2] == POSITIVE
    assert 0.5 < float(lines[0].split("\t")[1]) <= 1.0


def test_predict_json_and_every_input_route_agree(trained, capsys, monkeypatch, tmp_path):
    model = str(trained[0])
    texts = [POSITIVE, NEGATIVE, "plain plot"]
    from_args = predict_json(capsys, model, *texts)
    assert [set(row) for row in from_args] == [{"text", "label", "probability", "empty"}] * 3
    assert [row["text"] for row in from_args] == texts
    assert [row["label"] for row in from_args[:2]] == ["positive", "negative"]

    plain = tmp_path / "reviews.txt"
    plain.write_text("\n".join(texts) + "\n", encoding="utf-8")
    jsonl = tmp_path / "reviews.jsonl"
    jsonl.write_text("".join(json.dumps({"text": text, "id": i}) + "\n\n" for i, text in enumerate(texts)), encoding="utf-8")
    from_file = predict_json(capsys, model, "--file", str(plain))
    from_jsonl = predict_json(capsys, model, "--file", str(jsonl))
    # The other fields of a JSONL object come along unchanged, after the text.
    assert [list(row)[:2] for row in from_jsonl] == [["text", "id"]] * 3
    assert [row.pop("id") for row in from_jsonl] == [0, 1, 2]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(plain.read_bytes())))
    from_stdin = predict_json(capsys, model)
    assert from_file == from_jsonl == from_stdin == from_args
    # Windows line ends and a byte-order mark (as Notepad writes) change nothing.
    windows = tmp_path / "windows.txt"
    windows.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(texts).encode("utf-8") + b"\r\n")
    assert predict_json(capsys, model, "--file", str(windows)) == from_args
    jsonl.write_bytes(b"\xef\xbb\xbf" + jsonl.read_bytes())
    with_mark = predict_json(capsys, model, "--file", str(jsonl))
    assert [row.pop("id") for row in with_mark] == [0, 1, 2]
    assert with_mark == from_args
    # Small batches give the same answers as one large one (up to float rounding: BLAS may
    # sum in another order for another batch size).
    one_by_one = predict_json(capsys, model, "--file", str(plain), "--batch-size", "1")
    assert [row["label"] for row in one_by_one] == [row["label"] for row in from_args]
    assert [row["probability"] for row in one_by_one] == pytest.approx([row["probability"] for row in from_args], rel=1e-5)


@pytest.mark.parametrize("text", ["", "   ", "\t", "?!?"])
def test_empty_and_whitespace_text_is_scored_and_marked(trained, capsys, text):
    (row,) = predict_json(capsys, str(trained[0]), text)
    assert row["empty"] is True and row["text"] == text
    assert 0.0 <= row["probability"] <= 1.0
    assert row["label"] == ("positive" if row["probability"] > 0.5 else "negative")


def test_a_1_megabyte_review(trained, capsys, tmp_path):
    review = (NEGATIVE + " ") * (1_000_000 // (len(NEGATIVE) + 1) + 1)
    assert len(review.encode()) > 1_000_000
    path = tmp_path / "long.txt"
    path.write_text(review + "\n", encoding="utf-8")
    (row,) = predict_json(capsys, str(trained[0]), "--file", str(path))
    assert row["label"] == "negative" and row["empty"] is False
    # Only the last maxlen tokens matter ("pre" truncation), so the long review scores as its tail does.
    (tail,) = predict_json(capsys, str(trained[0]), " ".join(review.split()[-30:]))
    assert row["probability"] == pytest.approx(tail["probability"], abs=1e-6)


def test_a_1_megabyte_review_in_a_subprocess_on_stdin(trained):
    review = (POSITIVE + " ") * (1_000_000 // (len(POSITIVE) + 1) + 1)
    result = run_cli("predict", str(trained[0]), "--json", stdin=review.encode())
    assert result.returncode == 0, result.stderr.decode()
    (line,) = result.stdout.decode().splitlines()
    assert json.loads(line)["label"] == "positive"


# ----------------------------------------------------------------------------- bad input


def test_unknown_flag_in_a_subprocess():
    result = run_cli("train", "--no-such-flag", "3")
    assert result.returncode == 2
    assert_one_line_error(result.stderr.decode(), "--no-such-flag")
    assert result.stdout == b""


@pytest.mark.parametrize("args, fragments", [
    (["train", "--epochs", "many"], ["--epochs", "invalid int value"]),
    (["train", "--cell", "transformer", "--out", "x"], ["cell must be one of"]),
    (["train", "--maxlen", "0", "--out", "x"], ["maxlen must be in"]),
    (["train", "--preset", "nope"], ["invalid choice: 'nope'"]),
    (["frobnicate"], ["invalid choice"]),
    ([], ["required: COMMAND"]),
    (["predict"], ["required: model"]),
    (["evaluate", "runs/x", "--threads", "-1"], ["--threads must be 0 (all cores) or more"]),
    (["predict", "runs/x", "hello", "--threads", "-2"], ["--threads must be 0 (all cores) or more"]),
    (["train", "--ngram-fit", "stacked", "--ngram-buckets", "9", "--out", "x"], ["--ngram-fit stacked", "--validation-split"]),
])
def test_bad_command_lines_exit_2_with_one_line(capsys, args, fragments):
    with pytest.raises(SystemExit) as stop:
        code = main(args)
        raise SystemExit(code)
    assert stop.value.code == 2
    assert_one_line_error(capsys.readouterr().err, *fragments)


def test_train_needs_out(capsys):
    assert main(["train"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--out DIR")


def test_missing_model_dir(capsys, tmp_path):
    for command in ("predict", "evaluate"):
        assert main([command, str(tmp_path / "nowhere"), *(["hello"] if command == "predict" else [])]) == 2
        assert_one_line_error(capsys.readouterr().err, "no such model directory")


@pytest.mark.parametrize("name, change, fragment", [
    ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[:-10]), "checksum mismatch"),
    ("manifest.json", lambda p: (p.unlink(), shutil.rmtree(p.parent / "checkpoint")), "not a complete model"),
    ("config.json", lambda p: p.write_text("{"), "checksum mismatch"),
])
def test_corrupt_model_dir(model_copy, capsys, name, change, fragment):
    change(model_copy / name)
    assert main(["predict", str(model_copy), "hello"]) == 2
    assert_one_line_error(capsys.readouterr().err, name, fragment)


def test_a_run_stopped_before_saving_says_to_resume_and_a_folder_of_other_files_says_what_it_is(model_copy, capsys,
                                                                                                    tmp_path):
    (model_copy / "manifest.json").unlink()  # its checkpoint/ is still there
    assert main(["predict", str(model_copy), "hello"]) == 2
    assert_one_line_error(capsys.readouterr().err, f"continue it with 'rnnsent train --resume {model_copy}'")
    (tmp_path / "notes.txt").write_text("not a model", encoding="utf-8")
    assert main(["evaluate", str(tmp_path)]) == 2
    assert_one_line_error(capsys.readouterr().err, f"{tmp_path} is not a model directory")


def test_non_utf8_file(trained, capsys, tmp_path):
    path = tmp_path / "reviews.txt"
    path.write_bytes(b"fine first line\ncaf\xe9 au lait\n")
    assert main(["predict", str(trained[0]), "--file", str(path)]) == 2
    assert_one_line_error(capsys.readouterr().err, f"{path}:2: not UTF-8")


def test_non_utf8_stdin(trained, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\xff\xfe\n")))
    assert main(["predict", str(trained[0])]) == 2
    assert_one_line_error(capsys.readouterr().err, "<stdin>:2: not UTF-8")


@pytest.mark.parametrize("content, fragment", [
    ('{"text": "fine"}\nnot json\n', ":2: not valid JSON"),
    ('{"review": "no text key"}\n', ":1: each JSONL line needs a string 'text'"),
])
def test_bad_jsonl_file(trained, capsys, tmp_path, content, fragment):
    path = tmp_path / "reviews.jsonl"
    path.write_text(content, encoding="utf-8")
    assert main(["predict", str(trained[0]), "--file", str(path)]) == 2
    assert_one_line_error(capsys.readouterr().err, fragment)


def test_predict_without_texts_on_a_terminal(trained, capsys, monkeypatch):
    terminal = io.TextIOWrapper(io.BytesIO(b""))
    monkeypatch.setattr(terminal, "isatty", lambda: True)
    monkeypatch.setattr(sys, "stdin", terminal)
    assert main(["predict", str(trained[0])]) == 2
    assert_one_line_error(capsys.readouterr().err, "no texts")


def test_predict_argument_conflicts(trained, capsys, tmp_path):
    assert main(["predict", str(trained[0]), "text", "--file", "x.txt"]) == 2
    assert_one_line_error(capsys.readouterr().err, "not both")
    assert main(["predict", str(trained[0]), "--file", str(tmp_path / "missing.txt")]) == 2
    assert_one_line_error(capsys.readouterr().err, "no such file")
    assert main(["predict", str(trained[0]), "text", "--batch-size", "0"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--batch-size")


def test_a_third_label_in_a_csv_trains_a_multiclass_model(capsys, tmp_path):
    rows = make_reviews(30)
    rows[5:25:4] = [("it was fine", "3")] * 5
    data = write_csv(tmp_path / "reviews.csv", rows)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "model"), *TRAIN_FLAGS]) == 0
    assert "multiclass task, 3 labels, ordered: 0, 1, 3" in capsys.readouterr().out
    labels = json.loads((tmp_path / "model" / "labels.json").read_text())
    assert (labels["task"], labels["names"], labels["ordered"]) == ("multiclass", ["0", "1", "3"], True)


def test_a_failed_read_leaves_no_model_directory(capsys, tmp_path):
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\ngood,1\nbad,0\nso so,\n", encoding="utf-8")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "model"), *TRAIN_FLAGS]) == 2
    assert_one_line_error(capsys.readouterr().err, f"{data}:4: empty label")
    assert not (tmp_path / "model").exists()  # nothing half-written


def test_missing_data_source(capsys, tmp_path):
    assert main(["train", "--data", str(tmp_path / "nothing.csv"), "--out", str(tmp_path / "m")]) == 2
    assert_one_line_error(capsys.readouterr().err, "does not exist")


def test_resume_without_a_checkpoint(capsys, tmp_path):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert_one_line_error(capsys.readouterr().err, "no checkpoint to resume from")


def test_version_in_a_subprocess():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.decode().strip() == f"rnnsent {rnnsent.__version__}"


def test_predict_takes_texts_after_flags(trained, capsys):
    """`rnnsent predict MODEL --json TEXT` (flags before the texts) used to be refused."""
    assert main(["predict", str(trained[0]), "--json", "a wonderful film", "a dull film"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(line)["text"] for line in lines] == ["a wonderful film", "a dull film"]


def test_train_piped_into_a_reader_that_leaves_still_saves_its_model(tmp_path):
    # `rnnsent train ... | head -2` closed stdout after two lines; the next print raised
    # BrokenPipeError and the run ended with exit 0 and no model directory.
    data = write_tiny_reviews(tmp_path / "reviews.csv", count=200)
    out = tmp_path / "model"
    environment = {**os.environ, "RNNSENT_CACHE": str(tmp_path / "cache")}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE_ROOT), environment.get("PYTHONPATH")]))
    process = subprocess.Popen([sys.executable, "-m", "rnnsent", "train", "--data", str(data), "--out", str(out),
                                "--epochs", "3", "--threads", "1", "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment)
    process.stdout.readline()
    process.stdout.close()  # the reader leaves, as head does
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr.decode()
    assert (out / "model.safetensors").is_file() and (out / "manifest.json").is_file()
    assert b"Traceback" not in stderr and b"Exception ignored" not in stderr


def test_predict_reads_the_column_the_model_was_trained_from(tmp_path, capsys):
    # Trained on a CSV whose texts are under "body": predict on a file of that layout needs no
    # --text-field (it asked for a "text" column); another column is still named with the flag.
    rows = make_reviews(120)
    data = tmp_path / "bodies.csv"
    data.write_text("id,body,topic\n" + "".join(f'{i},"{text}",{label}\n' for i, (text, label) in enumerate(rows)),
                    encoding="utf-8")
    out = tmp_path / "model"
    assert main(["train", "--data", str(data), "--text-field", "body", "--label-field", "topic", "--out", str(out),
                 *TRAIN_FLAGS]) == 0
    capsys.readouterr()
    assert main(["predict", str(out), "--file", str(data), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 120 and json.loads(lines[0])["text"] == rows[0][0] and json.loads(lines[0])["id"] == "0"
    other = tmp_path / "other.csv"
    other.write_text("review\nA great film.\n", encoding="utf-8")
    assert main(["predict", str(out), "--file", str(other), "--text-field", "review"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_training_into_a_model_directory_says_that_model_is_replaced(tmp_path, capsys):
    data = write_csv(tmp_path / "reviews.csv", make_reviews(60))
    out = tmp_path / "model"
    assert main(["train", "--data", str(data), "--out", str(out), *TRAIN_FLAGS]) == 0
    assert "replaces" not in capsys.readouterr().out
    assert main(["train", "--data", str(data), "--out", str(out), *TRAIN_FLAGS]) == 0
    assert f"note: {out} holds a trained model, which this run replaces" in capsys.readouterr().out


def test_too_few_texts_for_a_validation_split_is_a_one_line_error(tmp_path, capsys):
    # Eight texts of three labels: a fifth of each label's two or three texts rounds to none.
    rows = [(f"text number {i}", ("politics", "sports", "tech")[i % 3]) for i in range(8)]
    data = write_csv(tmp_path / "tiny.csv", rows)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--quiet", "--threads", "1"]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("error: too few texts for a validation split: 6 training texts leave none")
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_calibrate_keeps_temperature_one_when_validation_is_all_right(tmp_path, capsys):
    # Texts a word decides: every validation text is answered right, and a fitted temperature
    # would run to its search's edge (0.001), making every answer 0 or 1.
    rows = [(f"{'great' if i % 2 else 'awful'} film number {i}", i % 2) for i in range(200)]
    data = write_csv(tmp_path / "easy.csv", rows)
    out = tmp_path / "m"
    assert main(["train", "--data", str(data), "--out", str(out), "--calibrate", "--quiet", "--threads", "1"]) == 0
    assert "--calibrate kept temperature 1" in capsys.readouterr().out
    assert json.loads((out / "labels.json").read_text())["temperature"] == 1.0
    probability = rnnsent.load(out).predict(["a film"])[0].probability
    assert 0.01 < probability < 0.99
