"""The learning-curve picture (``curves.png``) of a model directory, drawn off the critical path.

Importing matplotlib and drawing the picture costs about a second, which a short training run
would otherwise spend after its last epoch. The training loop calls :func:`prepare` when it
starts, which imports matplotlib in a background thread while the first epochs run, and
:func:`draw_soon` with the final history as soon as training ends, which draws it in that
thread while the test set is scored. :func:`learning_curves_png`, called by the saver,
then only collects the bytes (or draws them itself when nothing was prepared, or the history
differs). Either way the PNG is the same, and it is written before the manifest.

Nothing here imports matplotlib at module import: prediction and serving never load it.
"""

from __future__ import annotations

import copy
import io
import threading
from typing import Any

_lock = threading.Lock()  # one drawing at a time (matplotlib's font cache is shared)
_state: dict[str, Any] = {"warm": None, "pending": None}


def _import_matplotlib() -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    from matplotlib.backends import backend_agg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401

    return True


def prepare() -> None:
    """Start importing matplotlib in a background thread (once per process; a no-op without it)."""
    if _state["warm"] is None:
        thread = threading.Thread(target=_import_matplotlib, name="rnnsent-curves-import", daemon=False)
        _state["warm"] = thread
        thread.start()


class _Drawing:
    """One history being drawn in a background thread."""

    def __init__(self, history: list[dict[str, Any]]) -> None:
        self.history = copy.deepcopy(history)
        self.result: bytes | None = None
        self.thread = threading.Thread(target=self._run, name="rnnsent-curves-draw", daemon=False)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = _draw(self.history)
        except Exception:  # drawn again in the foreground, where an error is reported
            self.result = None


def draw_soon(history: list[dict[str, Any]]) -> None:
    """Start drawing ``history`` in the background; :func:`learning_curves_png` collects it."""
    if history:
        _state["pending"] = _Drawing(history)


def learning_curves_png(history: list[dict[str, Any]]) -> bytes | None:
    """Loss and accuracy per epoch for every split the history has, as PNG bytes.

    None without matplotlib (the ``plot`` extra): the directory is then saved without
    ``curves.png``, which is optional.
    """
    pending, _state["pending"] = _state["pending"], None
    if pending is not None:
        pending.thread.join()
        if pending.result is not None and pending.history == history:
            return pending.result
    warm = _state["warm"]
    if warm is not None:
        warm.join()
    return _draw(history)


def _draw(history: list[dict[str, Any]]) -> bytes | None:
    if not _import_matplotlib():
        return None
    from matplotlib.figure import Figure

    with _lock:
        epochs = [row["epoch"] for row in history]
        figure = Figure(figsize=(9, 3.5), dpi=100)
        for position, metric in enumerate(("loss", "accuracy")):
            axes = figure.add_subplot(1, 2, position + 1)
            for prefix, label in (("", "train"), ("val_", "validation"), ("test_", "test")):
                values = [row.get(prefix + metric) for row in history]
                if any(value is not None for value in values):
                    axes.plot(epochs, [float("nan") if v is None else v for v in values], marker="o", label=label)
            axes.set_xlabel("epoch")
            axes.set_title(metric)
            axes.grid(alpha=0.3)
            axes.legend()
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
