"""Records read lazily from a binary stream: plain lines, JSONL or CSV, with one set of errors.

Training data (a text and a label per record) and texts to score (a text per record, any
number of them, in constant memory) are read by this one reader. The rules are the same in
every format:

- the stream is UTF-8; a byte-order mark at its very start is skipped;
- records come one at a time, in order, and each knows the line it starts on;
- a problem is a :class:`~rnnsent.errors.DataError` with a one-line message that starts
  with ``file:line`` (or ``file`` for the CSV header) and says what is wrong.

Formats:

``lines``
    Every line is one text, empty lines included, so that output line ``i`` answers input
    line ``i``; the line end (``\\n`` or ``\\r\\n``) is not part of the text.
``jsonl``
    One JSON object per line; blank lines are skipped. The text field must be a string.
``csv``
    A header row naming the columns (surrounding spaces ignored), then one record per row;
    quoted fields may span lines, blank lines are skipped, and any line end is accepted.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Iterable, Iterator, Mapping, NamedTuple

from rnnsent.errors import DataError

FORMATS = ("lines", "jsonl", "csv")
SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
BYTE_ORDER_MARK = b"\xef\xbb\xbf"

# JSON's names for the Python types json.loads returns, for messages.
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}
# A carriage return that does not end a "\r\n" pair: an old-style line end inside a "\n" line.
_BARE_CARRIAGE_RETURN = re.compile(r"(?<=\r)(?!\n)")
_NO_FIELDS: Mapping[str, Any] = MappingProxyType({})  # plain lines have no fields


class Record(NamedTuple):
    """One record: its text, its raw label (``None`` when none was asked for), where it starts, and all its fields."""

    text: str
    label: Any
    name: str
    line: int
    fields: Mapping[str, Any]

    @property
    def where(self) -> str:
        """``file:line`` of the record's first line, for messages."""
        return f"{self.name}:{self.line}"


def detect_format(name: str, requested: str = "auto") -> str:
    """The format of a file: ``requested`` unless it is ``auto``, else from the suffix (plain lines by default)."""
    if requested != "auto":
        if requested not in FORMATS:
            raise DataError(f"unknown input format {requested!r}; choose auto, {', '.join(FORMATS)}")
        return requested
    return SUFFIX_FORMATS.get(Path(name).suffix.lower(), "lines")


def read_records(
    handle: IO[bytes], name: str, input_format: str, text_field: str = "text", label_field: str | None = None
) -> Iterator[Record]:
    """Records from a binary stream, lazily and in order (see the module docstring for the formats).

    ``name`` is how messages call the stream (a path, or ``<stdin>``). Every record must have
    a string ``text_field`` and, when ``label_field`` is given, a value for it; plain lines
    have no fields, so they cannot carry a label.
    """
    lines = decoded_lines(handle, name)
    if input_format == "lines":
        if label_field is not None:
            raise DataError(f"{name}: plain lines carry no {label_field!r}; use JSONL or CSV for labelled data")
        return _line_records(lines, name)
    if input_format == "jsonl":
        return _jsonl_records(lines, name, text_field, label_field)
    if input_format == "csv":
        return _csv_records(lines, name, text_field, label_field)
    raise DataError(f"unknown input format {input_format!r}; choose {', '.join(FORMATS)}")


def decode_utf8(raw: bytes, where: str) -> str:
    """``raw`` as UTF-8 text; anything else is a :class:`DataError` naming ``where``."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{where}: not UTF-8 text ({error.reason} at byte {error.start}); convert the file to UTF-8") from None


def decoded_lines(handle: IO[bytes], name: str) -> Iterator[tuple[int, str]]:
    """``(line number from 1, line with its line end)`` for each ``\\n``-ended line, the byte-order mark skipped."""
    for number, raw in enumerate(handle, start=1):
        if number == 1:
            raw = raw.removeprefix(BYTE_ORDER_MARK)
            if not raw:
                return  # the file held a byte-order mark and nothing else
        yield number, decode_utf8(raw, f"{name}:{number}")


def _line_records(lines: Iterable[tuple[int, str]], name: str) -> Iterator[Record]:
    for number, line in lines:
        yield Record(line.rstrip("\r\n"), None, name, number, _NO_FIELDS)


def _field_hint(label_field: str | None) -> str:
    """How to read other field or column names, said where the expected ones are missing."""
    return "name yours with --text-field" + (" and --label-field" if label_field is not None else "")


def _jsonl_records(lines: Iterable[tuple[int, str]], name: str, text_field: str, label_field: str | None) -> Iterator[Record]:
    needs = f"a string {text_field!r} field" + (f" and a {label_field!r} field" if label_field is not None else "")
    hint = _field_hint(label_field)
    for number, line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            fields = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{name}:{number}: not valid JSON ({error.msg})") from None
        problem = None
        if not isinstance(fields, dict):
            problem = f"this line is {_JSON_TYPES.get(type(fields), 'not an object')}"
        elif text_field not in fields:
            problem = f"no {text_field!r}; {hint}"
        elif not isinstance(fields[text_field], str):
            problem = f"{text_field!r} is {_JSON_TYPES.get(type(fields[text_field]), 'not a string')}"
        elif label_field is not None and label_field not in fields:
            problem = f"no {label_field!r}; {hint}"
        if problem:
            raise DataError(f"{name}:{number}: each JSONL line needs {needs} ({problem})")
        label = fields[label_field] if label_field is not None else None
        yield Record(fields[text_field], label, name, number, fields)


def _csv_lines(lines: Iterable[tuple[int, str]]) -> Iterator[str]:
    # Lines end at "\n"; a bare "\r" (old Mac files) also ends one, as in universal-newline mode.
    for _, line in lines:
        if "\r" in line and _BARE_CARRIAGE_RETURN.search(line):
            yield from (part for part in _BARE_CARRIAGE_RETURN.split(line) if part)
        else:
            yield line


def _csv_records(lines: Iterable[tuple[int, str]], name: str, text_field: str, label_field: str | None) -> Iterator[Record]:
    reader = csv.reader(_csv_lines(lines))
    wanted = [text_field] if label_field is None else [text_field, label_field]
    try:
        header = next(reader, None)
        if header is None:
            return
        header = [column.strip() for column in header]
        if any(field not in header for field in wanted):
            columns = f"a {text_field!r} column" if label_field is None else f"{text_field!r} and {label_field!r} columns"
            raise DataError(f"{name}: the CSV header needs {columns}, found {header}; {_field_hint(label_field)}")
        text_column = header.index(text_field)
        label_column = header.index(label_field) if label_field is not None else None
        needed = max(text_column, label_column or 0) + 1
        previous_end = reader.line_num
        for row in reader:
            # A record starts on the line after the previous one ended (quoted fields may span lines).
            start, previous_end = previous_end + 1, reader.line_num
            if not row:
                continue
            if len(row) < needed:
                raise DataError(f"{name}:{start}: row has {len(row)} columns, the header {len(header)}")
            label = row[label_column] if label_column is not None else None
            yield Record(row[text_column], label, name, start, dict(zip(header, row)))
    except csv.Error as error:
        raise DataError(f"{name}:{reader.line_num}: malformed CSV ({error})") from None
