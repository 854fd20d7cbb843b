"""Limits a user can hit: model files that are not files, settings too big to build, two writers,
resuming on other data, empty splits, disk leaks. Each case failed (hung, crashed, or gave a
silent result) before it was handled; each now gets a one-line error or a stated result."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

import rnnsent
from conftest import write_imdb_tree, write_tiny_reviews
from rnnsent.artifact.files import sha256_bytes
from rnnsent.cli.main import main
from rnnsent.config import RunOptions, build_config
from rnnsent.errors import ArtifactError, ConfigError, DataError, UsageError
from rnnsent.model.size import check_fits

TINY = ["--num-words", "40", "--maxlen", "12", "--embedding-dim", "8", "--epochs", "2", "--no-report-test",
        "--lr", "0.005", "--batch-size", "16", "--threads", "1", "--quiet"]


def rewrite(directory: Path, name: str, data: bytes) -> None:
    """Replace a file of a model directory and its manifest entry, as a damaged copy that passes the checksum."""
    (directory / name).write_bytes(data)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"][name] = sha256_bytes(data)
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path) -> Path:
    copy = tmp_path / "model"
    copy.mkdir()
    for path in tiny_model_dir.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    return copy


# ----------------------------------------------------------------------------- model files


def test_a_fifo_manifest_is_refused_at_once(model_copy):
    (model_copy / "manifest.json").unlink()
    os.mkfifo(model_copy / "manifest.json")
    started = time.monotonic()
    with pytest.raises(ArtifactError, match="manifest.json: not a regular file"):
        rnnsent.load(model_copy)
    assert time.monotonic() - started < 5


def test_weights_linked_to_dev_zero_are_refused(model_copy):
    (model_copy / "model.safetensors").unlink()
    (model_copy / "model.safetensors").symlink_to("/dev/zero")
    with pytest.raises(ArtifactError, match="model.safetensors: not a regular file"):
        rnnsent.load(model_copy)


@pytest.mark.parametrize("change, message", [
    (lambda words: {**words, "words": words["words"][:-1] + [words["words"][0]]}, "a word appears twice"),
    (lambda words: {**words, "words": {word: i for i, word in enumerate(words["words"])}}, "'words' must be a list"),
    (lambda words: {**words, "words": words["words"][:10]}, "the model was saved with"),
    (lambda words: {**words, "words": []}, "the model was saved with"),
])
def test_a_vocabulary_the_config_says_cannot_be_is_refused(model_copy, change, message):
    words = json.loads((model_copy / "vocabulary.json").read_text())
    rewrite(model_copy, "vocabulary.json", json.dumps(change(words)).encode())
    with pytest.raises(ArtifactError, match=message):
        rnnsent.load(model_copy)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("name", ["head.bias", "embedding.weight"])
def test_nan_weights_are_refused_at_load(model_copy, name, value):
    from safetensors.torch import load_file, save_file

    weights = load_file(str(model_copy / "model.safetensors"))
    # One bad value among finite ones, away from either end of the tensor.
    flat = weights[name].flatten().clone()
    flat[flat.numel() // 2] = value
    weights[name] = flat.view_as(weights[name])
    save_file(weights, str(model_copy / "model.safetensors"))
    rewrite(model_copy, "model.safetensors", (model_copy / "model.safetensors").read_bytes())
    with pytest.raises(ArtifactError, match="NaN or infinite"):
        rnnsent.load(model_copy)


@pytest.mark.parametrize("settings, message", [
    ({"hidden_size": 4096}, "weights do not fit the config"),
    ({"num_words": 10_000_000, "embedding_dim": 4096}, "needs about 152.6 GiB"),
])
def test_a_config_edited_to_another_model_is_refused_before_building_it(model_copy, settings, message):
    header = json.loads((model_copy / "config.json").read_text())
    for name, value in settings.items():
        section = "text" if name == "num_words" else "model"
        header["config"][section][name] = value
    if "num_words" in settings:
        header["vocab_size"] = json.loads((model_copy / "vocabulary.json").read_text())["index_from"] + len(
            json.loads((model_copy / "vocabulary.json").read_text())["words"])
    rewrite(model_copy, "config.json", json.dumps(header).encode())
    with pytest.raises(ArtifactError, match=message):
        rnnsent.load(model_copy)


# ----------------------------------------------------------------------------- settings


def test_a_model_too_big_for_memory_is_refused_with_its_size():
    config = build_config("seed", {"cell": "lstm", "hidden_size": 8192, "num_layers": 16, "bidirectional": True})
    with pytest.raises(ConfigError, match=r"needs about .* GiB .* but .* GiB is available; lower"):
        check_fits(config, available=16 * 2**30)
    check_fits(build_config("best"), available=16 * 2**30)  # the presets fit a 16 GiB machine


def test_summary_of_a_model_too_big_is_one_line(capsys):
    assert main(["summary", "--cell", "lstm", "--hidden-size", "8192", "--num-layers", "16", "--bidirectional"]) == 2
    assert capsys.readouterr().err.startswith("error: this model needs about")


def test_threads_are_bounded_by_the_cores():
    cores = os.cpu_count()
    with pytest.raises(ConfigError, match=f"more than this machine's {cores} cores"):
        RunOptions(threads=cores + 1).validate()
    with pytest.raises(ConfigError, match="more than this machine's"):
        rnnsent.train(data="x.csv", threads=100_000)


# ----------------------------------------------------------------------------- one writer


def test_a_second_writer_is_refused_and_predict_says_the_directory_is_being_trained(tmp_path, capsys):
    data = write_tiny_reviews(tmp_path / "reviews.csv", count=300)
    out = tmp_path / "run"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename}))
        assert main(["train", "--data", str(data), "--out", str(out), *TINY]) == 2
        assert f"is being trained by process {sleeper.pid}" in capsys.readouterr().err
        assert main(["predict", str(out), "good"]) == 2
        assert f"is being trained (process {sleeper.pid})" in capsys.readouterr().err
    finally:
        sleeper.kill()
        sleeper.wait()
    # Its process gone, the lock is stale: the next run takes it over and removes it when done.
    assert main(["train", "--data", str(data), "--out", str(out), *TINY]) == 0
    assert not (out / ".lock").exists()


def test_an_unwritable_out_fails_before_reading_any_data(tmp_path, capsys):
    data = write_tiny_reviews(tmp_path / "reviews.csv", count=300)
    assert main(["train", "--data", str(data), "--out", "/proc/rnnsent-run", *TINY]) == 1
    assert "error: cannot create the run directory" in capsys.readouterr().err


# ----------------------------------------------------------------------------- resume


@pytest.fixture
def interrupted_run(tmp_path):
    """A run directory with a checkpoint, as a run stopped after some steps leaves it."""
    data = write_tiny_reviews(tmp_path / "reviews.csv", count=300)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, "--max-steps", "3"]) == 0
    (out / "manifest.json").unlink()
    return data, out


def test_resume_with_other_data_is_refused(interrupted_run, tmp_path, capsys):
    data, out = interrupted_run
    other = write_tiny_reviews(tmp_path / "other.csv", count=300, seed=1)
    assert main(["train", "--resume", str(out), "--data", str(other)]) == 2
    assert "continues on the data it started on" in capsys.readouterr().err


def test_resume_after_the_data_changed_is_refused(interrupted_run, capsys):
    data, out = interrupted_run
    data.write_text(data.read_text() + "a new review,1\n")
    assert main(["train", "--resume", str(out)]) == 2
    assert "changed since the run started" in capsys.readouterr().err


def test_resume_with_a_preset_is_refused(interrupted_run, capsys):
    assert main(["train", "--resume", str(interrupted_run[1]), "--preset", "best"]) == 2
    assert "drop --out, --preset and the setting flags" in capsys.readouterr().err
    with pytest.raises(UsageError, match="drop out, preset"):
        rnnsent.train("seed", resume=interrupted_run[1])


# ----------------------------------------------------------------------------- no silent results


def test_a_limit_that_keeps_no_review_is_an_error(tmp_path, capsys):
    data = write_tiny_reviews(tmp_path / "reviews.csv", count=300)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY, "--limit", "1"]) == 2
    assert "--limit 1 keeps no training reviews" in capsys.readouterr().err


def test_an_aclimdb_archive_cut_between_two_entries_is_refused(tmp_path):
    tree = write_imdb_tree(tmp_path / "tree", per_label=4)  # tree is .../aclImdb
    archive = tmp_path / "cut.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        vocabulary = tmp_path / "imdb.vocab"
        vocabulary.write_text("the\n")
        out.add(vocabulary, arcname="aclImdb/imdb.vocab")
        for path in sorted(tree.rglob("*.txt")):
            out.add(path, arcname="aclImdb/" + str(path.relative_to(tree)))
    from rnnsent.data.sources import read_corpus

    with pytest.raises(DataError, match="holds 4 reviews, not the 12500 of aclImdb v1.0; the archive is truncated"):
        read_corpus(archive)


# ----------------------------------------------------------------------------- disk


def test_a_failed_cache_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    from rnnsent.config import TextConfig
    from rnnsent.data import cache

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    data = write_tiny_reviews(tmp_path / "reviews.csv", count=60)
    cache.load_encoded(data, TextConfig(num_words=40), cache_dir=tmp_path / "cache", quiet=True)
    assert list((tmp_path / "cache" / "encoded").iterdir()) == []


def test_a_full_disk_names_the_file_and_stale_temporaries_are_swept(tmp_path, monkeypatch):
    from rnnsent.artifact import files
    from rnnsent.processes import sweep_temporaries

    stale = tmp_path / ".model.safetensors.999999999.abcd.tmp"  # no process has that PID
    stale.write_bytes(b"half")
    sweep_temporaries(tmp_path)
    assert not stale.exists()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError) as error:
        files.write_bytes_atomic(tmp_path / "model.safetensors", b"weights")
    assert error.value.filename == str(tmp_path / "model.safetensors") and error.value.errno == errno.ENOSPC
    assert [p.name for p in tmp_path.iterdir()] == []


def test_a_huge_line_is_shown_from_its_head_alone():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from rnnsent.inference.streaming import SNIPPET_LENGTH, snippet_of

    huge = "word " * 60_000_000  # 300 MB
    snippet = snippet_of(huge)
    assert len(snippet) > SNIPPET_LENGTH and len(snippet) < 10_000

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet=st.sampled_from(["a", "b", " ", "\n", "\t", "é"]), max_size=2000))
    def agrees_with_splitting_everything(text):
        whole, head = " ".join(text.split()), snippet_of(text)
        if len(whole) > SNIPPET_LENGTH:
            assert len(head) > SNIPPET_LENGTH and head[:SNIPPET_LENGTH - 3] == whole[:SNIPPET_LENGTH - 3]
        else:
            assert head == whole

    agrees_with_splitting_everything()
