"""Batch scoring of inputs of any size: texts are read lazily, scored in chunks, written in order.

The input is read by :mod:`rnnsent.data.records`: plain text (one text per line), JSONL (one
object per line with a string ``text`` field) or CSV (a header row with a ``text`` column).
Nothing holds more than one chunk of texts at a time, so memory stays constant however long
the input is, and each result line is written as soon as its chunk is scored, in input order.
``detect_format`` is the reader's, re-exported for the command line.

Result lines, for every label space:

* plain: ``label<TAB>probability<TAB>snippet``, the predicted label and the probability
  :class:`~rnnsent.inference.predictor.Prediction` gives (binary: of the scored class; else of
  the most probable label); a multi-label model prints the labels over their thresholds
  joined with ``,`` (``-`` for none) in place of the label.
* JSON: ``{"text": ..., **Prediction.to_dict()}``. The other fields of a JSONL object or CSV
  row come along unchanged, after ``text`` and before the prediction's keys; a field named
  like one of those (``text``, ``label``, ``probability``, ``empty``, ``labels``,
  ``probabilities``) comes along as ``input_`` and its name (``input_label``: a file's own
  labels stay beside the predicted ones).
"""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from typing import IO, Any, Iterable, Iterator, Mapping

from rnnsent.data.batches import iter_text_chunks
from rnnsent.data.records import detect_format as detect_format
from rnnsent.data.records import read_records
from rnnsent.inference.predictor import Prediction, Predictor

SNIPPET_LENGTH = 70


def read_texts(handle: IO[bytes], name: str, input_format: str, text_field: str = "text") -> Iterator[str]:
    """The texts of a binary stream, lazily and in order (:func:`rnnsent.data.records.read_records`)."""
    return (record.text for record in read_records(handle, name, input_format, text_field))


# Keys of a JSON result line that the result itself sets.
RESULT_KEYS = frozenset({"text", "label", "probability", "empty", "labels", "probabilities"})


def read_inputs(handle: IO[bytes], name: str, input_format: str,
                text_field: str = "text") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(text, the record's other fields)`` of a binary stream, lazily and in order (plain lines have no fields)."""
    for record in read_records(handle, name, input_format, text_field):
        yield record.text, {key: value for key, value in record.fields.items() if key != text_field}


def snippet_of(text: str) -> str:
    """``" ".join(text.split())`` as far as the snippet needs it: longer than ``SNIPPET_LENGTH``
    when the whole is. Only a growing head of the text is split, so a 300 MB line costs what a
    short one does (splitting it all once took gigabytes)."""
    window = 4 * SNIPPET_LENGTH
    while True:
        collapsed = " ".join(text[:window].split())
        if len(collapsed) > SNIPPET_LENGTH or window >= len(text):
            return collapsed
        window *= 4


def format_result(text: str, prediction: Prediction, as_json: bool, fields: Mapping[str, Any] | None = None) -> str:
    """One output line (newline included): JSON with the text and ``fields``, or
    ``label<TAB>probability<TAB>snippet`` (see the module docstring)."""
    if as_json:
        result = {"text": text}
        for key, value in (fields or {}).items():
            if key in RESULT_KEYS:
                key = "input_" + key
                while key in fields:  # the file has that name too
                    key = "input_" + key
            result[key] = value
        result.update(prediction.to_dict())
        return json.dumps(result) + "\n"
    snippet = snippet_of(text)
    if len(snippet) > SNIPPET_LENGTH:
        snippet = snippet[:SNIPPET_LENGTH - 3] + "..."
    label = prediction.label if prediction.labels is None else (",".join(prediction.labels) or "-")
    return f"{label}\t{prediction.probability:.4f}\t{snippet}\n"


def score_to(
    predictor: Predictor,
    texts: Iterable[str | tuple[str, Mapping[str, Any]]],
    out: IO[str],
    batch_size: int,
    as_json: bool = False,
    progress=None,
) -> int:
    """Score ``texts`` chunk by chunk, writing one line per text to ``out``; return the count.

    Each item is a text or a ``(text, fields)`` pair as :func:`read_inputs` gives; the fields
    go into JSON lines. ``progress``, when given, is called after each chunk with the number
    of texts done so far.
    """
    done = 0
    for chunk in iter_text_chunks(iter(texts), batch_size):
        items = [item if isinstance(item, tuple) else (item, None) for item in chunk]
        predictions = predictor.predict([text for text, _ in items], batch_size)
        out.write("".join(format_result(text, prediction, as_json, fields)
                          for (text, fields), prediction in zip(items, predictions)))
        out.flush()
        done += len(items)
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
