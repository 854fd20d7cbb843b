"""Streaming batch scoring: the three input formats, order, errors, and constant memory."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnsent.artifact.directory import save_artifact
from rnnsent.cli.main import main
from rnnsent.config import build_config
from rnnsent.errors import InputError
from rnnsent.inference.predictor import Predictor
from rnnsent.inference.streaming import ProgressBar, detect_format, read_texts, score_to
from rnnsent.model.recurrent import RecurrentClassifier
from rnnsent.text.vocabulary import Vocabulary

SOURCE_ROOT = Path(__file__).resolve().parents[2] / "src"
WORDS = "good bad great awful film plot actor boring superb dull loved hated scene story music".split()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A small model with large random weights, so that different texts get clearly different scores."""
    config = build_config("seed", {"num_words": 3 + len(WORDS), "maxlen": 12, "hidden_size": 4, "embedding_dim": 8,
                                   "nonlinearity": "tanh"})
    torch.manual_seed(3)
    model = RecurrentClassifier(config.model, config.text.num_words)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5)
    return save_artifact(tmp_path_factory.mktemp("model"), config, Vocabulary(tuple(WORDS)), model)


def review(index: int) -> str:
    """A deterministic review made of vocabulary words, different for each index."""
    picks = [WORDS[(index * 7 + step * (index % 5 + 1)) % len(WORDS)] for step in range(3 + index % 9)]
    return f"{index} " + " ".join(picks)


def parse(stream: str, input_format: str) -> list[str]:
    return list(read_texts(io.BytesIO(stream.encode("utf-8")), "input", input_format))


def test_formats_are_detected_from_the_suffix_unless_named():
    assert detect_format("reviews.jsonl") == "jsonl"
    assert detect_format("reviews.NDJSON") == "jsonl"
    assert detect_format("reviews.csv") == "csv"
    assert detect_format("reviews.txt") == "lines"
    assert detect_format("") == "lines"
    assert detect_format("reviews.txt", "csv") == "csv"
    with pytest.raises(InputError, match="unknown input format"):
        detect_format("x", "xml")


def test_plain_lines_keep_empty_lines_so_output_lines_answer_input_lines():
    assert parse("first\n\n  third \r\nlast", "lines") == ["first", "", "  third ", "last"]


def test_jsonl_reads_the_text_field_and_skips_blank_lines():
    stream = '{"text": "one", "id": 1}\n\n{"id": 2, "text": "two"}\n'
    assert parse(stream, "jsonl") == ["one", "two"]
    other = list(read_texts(io.BytesIO(b'{"review": "x"}\n'), "input", "jsonl", text_field="review"))
    assert other == ["x"]


def test_csv_reads_the_text_column_with_quoted_newlines_and_a_byte_order_mark():
    stream = '\ufeffid,text,label\n1,"line one\nline two",pos\n2,"say ""hi""",neg\n\n3,plain,pos\n'
    assert parse(stream, "csv") == ["line one\nline two", 'say "hi"', "plain"]
    assert parse("", "csv") == []


@pytest.mark.parametrize("input_format, stream, message", [
    ("jsonl", '{"text": "ok"}\n{"text": 3}\n', r"input:2: each JSONL line needs a string 'text'"),
    ("jsonl", '{"text": "ok"}\nnot json\n', r"input:2: not valid JSON"),
    ("csv", "review,label\nx,1\n", r"needs a 'text' column"),
    ("csv", "id,text\n1\n", r"input:2: row has 1 columns"),
])
def test_bad_input_names_the_line(input_format, stream, message):
    with pytest.raises(InputError, match=message):
        parse(stream, input_format)


@pytest.mark.parametrize("input_format", ["lines", "jsonl", "csv"])
def test_invalid_utf8_is_an_input_error(input_format):
    header = b"text\n" if input_format == "csv" else b""
    body = b'{"text": "\xff"}\n' if input_format == "jsonl" else b"ok\n\xff\xfe\n"
    with pytest.raises(InputError, match="not UTF-8"):
        list(read_texts(io.BytesIO(header + body), "input", input_format))


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_score_to_writes_every_text_in_order_whatever_the_batch_size(model_dir, batch_size):
    predictor = Predictor.load(model_dir)
    texts = [review(index) for index in range(50)] + ["", "!!!"]
    out, seen = io.StringIO(), []
    count = score_to(predictor, iter(texts), out, batch_size, as_json=True, progress=seen.append)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert count == len(texts) == len(rows)
    assert [row["text"] for row in rows] == texts
    expected = predictor.probabilities(texts)
    np.testing.assert_allclose([row["probability"] for row in rows], expected, rtol=1e-5)
    assert seen[-1] == len(texts) and seen == sorted(seen)
    assert rows[-2]["empty"] and rows[-1]["empty"]


def test_progress_bar_follows_the_bytes_read(tmp_path, capsys):
    path = tmp_path / "texts.txt"
    path.write_text("".join(review(index) + "\n" for index in range(100)))
    with open(path, "rb") as handle:
        bar = ProgressBar(handle, enabled=True)
        texts = list(read_texts(handle, str(path), "lines"))
        bar(len(texts))
        bar.close()
    error = capsys.readouterr().err
    assert "scoring" in error and "100%" in error


@pytest.mark.parametrize("suffix, content", [
    (".txt", "{}\n"),
    (".jsonl", '{{"text": {}}}\n'),
    (".csv", None),
])
def test_cli_scores_each_format_into_an_output_file(model_dir, tmp_path, capsys, suffix, content):
    texts = [review(index) for index in range(30)]
    path = tmp_path / f"input{suffix}"
    if suffix == ".csv":
        path.write_text("id,text\n" + "".join(f'{index},"{text}"\n' for index, text in enumerate(texts)))
    else:
        path.write_text("".join(content.format(json.dumps(text) if suffix == ".jsonl" else text) for text in texts))
    output = tmp_path / "scores.jsonl"
    code = main(["predict", str(model_dir), "--file", str(path), "--json", "--output", str(output), "--batch-size", "7"])
    assert code == 0
    assert f"scored {len(texts)} texts into {output}" in capsys.readouterr().err
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["text"] for row in rows] == texts


def test_cli_reports_bad_input_without_a_traceback(model_dir, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("review\nx\n")
    assert main(["predict", str(model_dir), "--file", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "needs a 'text' column" in error and "Traceback" not in error
    assert main(["predict", str(model_dir), "--file", str(path), "--output", str(path)]) == 2
    assert "must not be the input file" in capsys.readouterr().err
    assert main(["predict", str(model_dir), "--file", str(tmp_path / "missing.txt")]) == 2


def peak_memory_of(command: list[str], stdout: Path, numba_cache: Path) -> int:
    """Run ``command`` and return its peak resident memory in bytes (from the kernel's rusage).

    The compiled inference kernel is loaded from ``numba_cache``: compiling it instead costs
    about 26 MB once, which must not be counted as memory that grows with the input.
    """
    env = {**os.environ, "PYTHONPATH": str(SOURCE_ROOT), "OMP_NUM_THREADS": "1", "NUMBA_CACHE_DIR": str(numba_cache)}
    with open(stdout, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0, process.stderr.read().decode()
    process.stderr.close()
    return usage.ru_maxrss * 1024  # Linux reports kilobytes


@pytest.mark.slow
def test_a_large_file_is_scored_in_constant_memory_and_in_order(model_dir, tmp_path):
    """200,000 reviews take no more memory than 5,000: only one batch is held at a time."""
    def write(path: Path, count: int) -> None:
        with open(path, "w") as handle:
            handle.writelines(review(index) + "\n" for index in range(count))

    warm_up, small, large = tmp_path / "warm_up.txt", tmp_path / "small.txt", tmp_path / "large.txt"
    write(warm_up, 1_000)  # one full batch: the compiled kernel serves batches of 64 rows or more
    write(small, 5_000)
    write(large, 200_000)
    command = [sys.executable, "-m", "rnnsent", "predict", str(model_dir), "--json", "--batch-size", "1000", "--file"]
    # A private kernel cache, filled by a first run that is not measured: one-time compilation
    # (or a shared cache that another process is rewriting) would otherwise land in one
    # measured run but not the other.
    numba_cache = tmp_path / "numba-cache"
    peak_memory_of(command + [str(warm_up)], tmp_path / "warm_up.out", numba_cache)
    small_peak = peak_memory_of(command + [str(small)], tmp_path / "small.out", numba_cache)
    large_peak = peak_memory_of(command + [str(large)], tmp_path / "large.out", numba_cache)
    # Holding the 200,000 texts alone would take about 20 MB, their ids another 19 MB.
    print(f"peak memory: {small_peak / 2**20:.1f} MB for 5,000 texts, {large_peak / 2**20:.1f} MB for 200,000")
    assert large_peak - small_peak < 12 * 2**20, (small_peak, large_peak)

    predictor = Predictor.load(model_dir)
    sample = {}
    with open(large) as inputs, open(tmp_path / "large.out") as outputs:
        for index, (text, line) in enumerate(zip(inputs, outputs, strict=True)):
            row = json.loads(line)
            assert row["text"] == text.rstrip("\n"), f"line {index + 1} is out of order"
            if index % 997 == 0:
                sample[row["text"]] = row["probability"]
    expected = predictor.probabilities(list(sample))
    np.testing.assert_allclose(list(sample.values()), expected, rtol=1e-5)
    assert np.ptp(expected) > 0.05, "the model scores every text alike, so the pairing check proves nothing"
