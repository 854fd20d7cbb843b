"""Stopping a long computation cleanly: SIGINT and SIGTERM as a request, not an interruption."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def stop_signals(on_signal: Callable[[], None]) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM call ``on_signal()`` instead of interrupting it,
    so that the caller can finish its step, checkpoint and stop; the previous handlers come back
    after. Signals reach only the main thread, so elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: on_signal()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
