"""Standard output and error for the commands that do long work (train, tune, pretrain).

``rnnsent train ... | head`` closes the pipe after a few lines. Python then raises
``BrokenPipeError`` at the next ``print``, which would end the run before its model is saved.
While :func:`reader_may_leave` is active, a stream whose reader has gone drops the rest of its
output (its descriptor is pointed at ``/dev/null``, so that the interpreter's final flush is
quiet too) and the work goes on.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator, TextIO


class OutputWithoutReader:
    """A text stream that writes to ``stream`` until its reader leaves, and to nowhere after."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._discard()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._discard()

    def _discard(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def reader_may_leave() -> Iterator[None]:
    """Within the block, ``sys.stdout`` and ``sys.stderr`` outlive their readers (see the module)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = OutputWithoutReader(sys.stdout), OutputWithoutReader(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
