"""Batch scoring of inputs of any size: texts are read lazily, scored in chunks, written in order.

Three input formats are understood: plain text (one text per line), JSONL (one object per
line with a string ``text`` field) and CSV (a header row with a ``text`` column; other
columns are ignored). Nothing holds more than one chunk of texts at a time, so memory stays
constant however long the input is, and each result line is written as soon as its chunk is
scored, in input order.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import sys
from pathlib import Path
from typing import IO, Iterable, Iterator

from rnnsent.data.batches import iter_text_chunks
from rnnsent.errors import InputError
from rnnsent.inference.predictor import Prediction, Predictor

FORMATS = ("lines", "jsonl", "csv")
SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
SNIPPET_LENGTH = 70


def detect_format(name: str, requested: str = "auto") -> str:
    """The input format: ``requested`` unless it is ``auto``, else from the file suffix (plain lines by default)."""
    if requested != "auto":
        if requested not in FORMATS:
            raise InputError(f"unknown input format {requested!r}; choose auto, {', '.join(FORMATS)}")
        return requested
    return SUFFIX_FORMATS.get(Path(name).suffix.lower(), "lines")


def read_texts(handle: IO[bytes], name: str, input_format: str, text_field: str = "text") -> Iterator[str]:
    """Texts from a binary stream, lazily, in order; errors name the line they come from."""
    if input_format == "lines":
        return _plain_lines(handle, name)
    if input_format == "jsonl":
        return _jsonl_texts(handle, name, text_field)
    assert input_format == "csv", input_format
    return _csv_texts(handle, name, text_field)


def _decoded_lines(handle: IO[bytes], name: str) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(handle, start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as error:
            raise InputError(f"{name}:{number}: not UTF-8 text ({error.reason}); convert the file to UTF-8") from None
        if number == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark, as some editors write
        yield number, line


def _plain_lines(handle: IO[bytes], name: str) -> Iterator[str]:
    # Every line is a text, empty ones included, so that output line i answers input line i.
    for _, line in _decoded_lines(handle, name):
        yield line


def _jsonl_texts(handle: IO[bytes], name: str, text_field: str) -> Iterator[str]:
    for number, line in _decoded_lines(handle, name):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{name}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            raise InputError(f"{name}:{number}: each JSONL line needs a string {text_field!r} field")
        yield record[text_field]


def _csv_texts(handle: IO[bytes], name: str, text_field: str) -> Iterator[str]:
    # newline="" lets the csv module see the raw line ends, so quoted fields may span lines.
    text_stream = io.TextIOWrapper(handle, encoding="utf-8", newline="")
    reader = csv.reader(text_stream)
    try:
        header = next(reader, None)
        if header is None:
            return
        header = [column.strip().lstrip("\ufeff") for column in header]
        if text_field not in header:
            raise InputError(f"{name}: the CSV header needs a {text_field!r} column, found {header}")
        column = header.index(text_field)
        for row in reader:
            if not row:
                continue
            if column >= len(row):
                raise InputError(f"{name}:{reader.line_num}: row has {len(row)} columns, the header {len(header)}")
            yield row[column]
    except UnicodeDecodeError as error:
        raise InputError(f"{name}:{reader.line_num + 1}: not UTF-8 text ({error.reason}); convert the file to UTF-8") from None
    except csv.Error as error:
        raise InputError(f"{name}:{reader.line_num}: malformed CSV ({error})") from None


def format_result(text: str, prediction: Prediction, as_json: bool) -> str:
    """One output line (newline included): JSON with the text, or ``label<TAB>probability<TAB>snippet``."""
    if as_json:
        return json.dumps({"text": text, **prediction.to_dict()}) + "\n"
    snippet = " ".join(text.split())
    if len(snippet) > SNIPPET_LENGTH:
        snippet = snippet[:SNIPPET_LENGTH - 3] + "..."
    return f"{prediction.label}\t{prediction.probability:.4f}\t{snippet}\n"


def score_to(
    predictor: Predictor,
    texts: Iterable[str],
    out: IO[str],
    batch_size: int,
    as_json: bool = False,
    progress=None,
) -> int:
    """Score ``texts`` chunk by chunk, writing one line per text to ``out``; return the count.

    ``progress``, when given, is called after each chunk with the number of texts done so far.
    """
    done = 0
    for pairs in score_chunks(predictor, texts, batch_size):
        out.write("".join(format_result(text, prediction, as_json) for text, prediction in pairs))
        out.flush()
        done += len(pairs)
        if progress is not None:
            progress(done)
    return done


def score_chunks(predictor: Predictor, texts: Iterable[str], batch_size: int) -> Iterator[list[tuple[str, Prediction]]]:
    """Lists of ``(text, prediction)`` in input order; reads only ``batch_size`` texts ahead."""
    for chunk in iter_text_chunks(iter(texts), batch_size):
        yield list(zip(chunk, predictor.predict(chunk, batch_size)))


class ProgressBar:
    """A progress bar on standard error over a file's bytes (or over texts for a pipe)."""

    def __init__(self, handle: IO[bytes] | None, enabled: bool) -> None:
        self.handle = handle
        self.bar = None
        if not enabled:
            return
        from tqdm import tqdm

        size = _regular_file_size(handle)
        if size is not None:
            self.bar = tqdm(total=size, unit="B", unit_scale=True, desc="scoring", file=sys.stderr, dynamic_ncols=True)
        else:
            self.handle = None
            self.bar = tqdm(unit=" texts", desc="scoring", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, done: int) -> None:
        if self.bar is None:
            return
        if self.handle is not None:
            try:
                self.bar.update(self.handle.tell() - self.bar.n)
            except (OSError, ValueError):
                pass  # A stream that cannot tell its position simply shows no byte progress.
            self.bar.set_postfix(texts=done, refresh=False)
        else:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _regular_file_size(handle: IO[bytes] | None) -> int | None:
    if handle is None:
        return None
    try:
        status = os.fstat(handle.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return status.st_size if stat.S_ISREG(status.st_mode) else None
