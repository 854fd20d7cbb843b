"""The one records reader: plain lines, JSONL and CSV from a binary stream, its errors and its byte-order-mark rule."""

from __future__ import annotations

import io
import itertools

import pytest

from rnnsent.data.records import (
    FORMATS,
    Record,
    decode_utf8,
    detect_format,
    read_records,
)
from rnnsent.errors import DataError, InputError

BOM = b"\xef\xbb\xbf"


def records(data: bytes, input_format: str, **fields) -> list[Record]:
    return list(read_records(io.BytesIO(data), "f", input_format, **fields))


SAMPLES = {
    "lines": b"good film\nbad film\n",
    "jsonl": b'{"text": "good film", "label": 1}\n{"text": "bad film", "label": 0}\n',
    "csv": b"text,label\ngood film,1\nbad film,0\n",
}


@pytest.mark.parametrize("input_format", FORMATS)
def test_a_byte_order_mark_at_the_start_is_skipped_in_every_format(input_format):
    plain = records(SAMPLES[input_format], input_format)
    marked = records(BOM + SAMPLES[input_format], input_format)
    assert [r.text for r in marked] == [r.text for r in plain] == ["good film", "bad film"]
    assert [r.fields for r in marked] == [r.fields for r in plain]


def test_a_byte_order_mark_later_in_the_file_is_text():
    assert [r.text for r in records(b"one\n" + BOM + b"two\n", "lines")] == ["one", "\ufefftwo"]


def test_records_carry_their_label_line_and_other_fields():
    jsonl = records(b'{"text": "a", "label": 1, "id": 7}\n\n{"label": "neg", "text": "b"}\n', "jsonl", label_field="label")
    assert [(r.text, r.label, r.where) for r in jsonl] == [("a", 1, "f:1"), ("b", "neg", "f:3")]
    assert jsonl[0].fields == {"text": "a", "label": 1, "id": 7}
    csv = records(b"id, text ,label\n7,a,pos\n\n8,b,neg\n", "csv", label_field="label")
    assert [(r.text, r.label, r.where) for r in csv] == [("a", "pos", "f:2"), ("b", "neg", "f:4")]
    assert csv[0].fields == {"id": "7", "text": "a", "label": "pos"}
    assert [r.label for r in records(SAMPLES["csv"], "csv")] == [None, None]
    lines = records(b"a\r\n\nb", "lines")
    assert [(r.text, r.where, dict(r.fields)) for r in lines] == [("a", "f:1", {}), ("", "f:2", {}), ("b", "f:3", {})]


def test_a_csv_record_spanning_lines_names_the_line_it_starts_on():
    data = b'text,label\n"one\ntwo\nthree",1\nfour,0\n"five\n",1\n'
    assert [(r.text, r.line) for r in records(data, "csv", label_field="label")] == [
        ("one\ntwo\nthree", 2), ("four", 5), ("five\n", 6)]


def test_csv_accepts_every_line_end():
    for end in (b"\n", b"\r\n", b"\r"):
        data = end.join([b"text,label", b"a,1", b'"b' + end + b'c",0', b""])
        assert [(r.text, r.line) for r in records(data, "csv", label_field="label")] == [
            ("a", 2), ("b" + end.decode() + "c", 3)], end


@pytest.mark.parametrize("input_format, data, fields, message", [
    ("lines", b"ok\ncaf\xe9\n", {}, r"^f:2: not UTF-8 text \(invalid continuation byte at byte 3\); convert the file to UTF-8$"),
    ("jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', {}, r"^f:2: not UTF-8 text"),
    ("csv", b"text\nok\ncaf\xe9\n", {}, r"^f:3: not UTF-8 text"),
    ("jsonl", b'{"text": "ok"}\n{"text": \n', {}, r"^f:2: not valid JSON \(Expecting value\)$"),
    ("jsonl", b'["a"]\n', {}, r"^f:1: each JSONL line needs a string 'text' field \(this line is an array\)$"),
    ("jsonl", b'{"review": "a"}\n', {}, r"^f:1: each JSONL line needs a string 'text' field \(no 'text'; name yours with --text-field\)$"),
    ("jsonl", b'{"text": null}\n', {}, r"^f:1: each JSONL line needs a string 'text' field \('text' is null\)$"),
    ("jsonl", b'{"text": "a"}\n', {"label_field": "label"},
     r"^f:1: each JSONL line needs a string 'text' field and a 'label' field \(no 'label'; name yours with --text-field and --label-field\)$"),
    ("csv", b"review,label\na,1\n", {}, r"^f: the CSV header needs a 'text' column, found \['review', 'label'\]; name yours with --text-field$"),
    ("csv", b"text,stars\na,1\n", {"label_field": "label"},
     r"^f: the CSV header needs 'text' and 'label' columns, found \['text', 'stars'\]; name yours with --text-field and --label-field$"),
    ("csv", b"text,label\na,1\nb\n", {"label_field": "label"}, r"^f:3: row has 1 columns, the header 2$"),
    ("csv", b'text\nok\n"' + b"x" * 200_000 + b'"\n', {}, r"^f:3: malformed CSV \(field larger than field limit"),
    ("lines", b"a\n", {"label_field": "label"}, r"^f: plain lines carry no 'label'; use JSONL or CSV"),
    ("xml", b"", {}, r"^unknown input format 'xml'"),
])
def test_every_problem_is_one_line_naming_file_and_line(input_format, data, fields, message):
    with pytest.raises(DataError, match=message) as error:
        records(data, input_format, **fields)
    assert "\n" not in str(error.value)


def test_a_non_utf8_csv_line_is_named_exactly_however_far_into_the_file():
    data = b"text\n" + b"fine\n" * 20_000 + b"caf\xe9\n"
    with pytest.raises(DataError, match=r"^f:20002: not UTF-8 text"):
        records(data, "csv")


def test_an_empty_stream_has_no_records():
    for input_format in FORMATS:
        assert records(b"", input_format) == []
        assert records(BOM, input_format) == []


def test_records_are_read_lazily():
    """An endless stream yields its first records at once: nothing is read ahead but a line."""
    endless = itertools.chain([b"text\n"], itertools.repeat(b"again\n"))

    class Stream(io.RawIOBase):
        def readable(self):
            return True

        def __iter__(self):
            return endless

    first = list(itertools.islice(read_records(Stream(), "f", "csv"), 3))
    assert [r.text for r in first] == ["again"] * 3


def test_detect_format_and_the_error_class():
    assert [detect_format(name) for name in ("a.jsonl", "a.NDJSON", "a.csv", "a.txt", "")] == [
        "jsonl", "jsonl", "csv", "lines", "lines"]
    assert detect_format("a.csv", "lines") == "lines"
    assert InputError is DataError and issubclass(DataError, ValueError)


def test_decode_utf8_names_where():
    assert decode_utf8("é".encode(), "x") == "é"
    with pytest.raises(DataError, match=r"^r\.txt: not UTF-8 text \(invalid start byte at byte 0\)"):
        decode_utf8(b"\x80", "r.txt")
