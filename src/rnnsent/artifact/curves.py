"""The learning-curve picture (``curves.png``) of a model directory, drawn off the critical path.

Importing matplotlib and drawing the picture costs about a second of Python, which would hold
the interpreter lock that the training loop needs between its compiled calls, or follow the
last epoch. So the picture is drawn by a child process, on another core: the training loop
calls :func:`prepare` when it starts, which starts the child (it imports matplotlib at once
and waits), and :func:`draw_soon` with the final history as soon as training ends, which hands
it to the child while the test set is scored. :func:`learning_curves_png`, called by the saver,
then only collects the bytes; it draws them itself when no child was started, the child failed
or the history differs. Either way the PNG is the same, and it is written before the manifest.
:func:`cancel` stops a child whose run ended without a picture.

Nothing here imports matplotlib at module import: prediction and serving never load it.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_lock = threading.Lock()  # one drawing at a time (matplotlib's font cache is shared)
# The drawing process started by prepare() and the history draw_soon() sent it (None: not yet).
_state: dict[str, Any] = {"child": None, "sent": None}
# The child runs this module's _child_main, from the copy of rnnsent this process imported.
_CHILD_CODE = ("import sys; sys.path.insert(0, {root!r}); "
               "from rnnsent.artifact.curves import _child_main; _child_main()")


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
    """Start the drawing process, which imports matplotlib while the epochs run (a no-op without
    matplotlib, or while a process started earlier still waits for its history)."""
    if _state["child"] is not None and _state["sent"] is not None:
        cancel()  # an earlier run's picture that no saver collected
    if _state["child"] is not None or importlib.util.find_spec("matplotlib") is None:
        return
    root = str(Path(__file__).resolve().parents[2])
    try:
        _state["child"] = subprocess.Popen([sys.executable, "-c", _CHILD_CODE.format(root=root)],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError:
        _state["child"] = None  # drawn in this process by the saver instead


def draw_soon(history: list[dict[str, Any]]) -> None:
    """Hand ``history`` to the drawing process; :func:`learning_curves_png` collects the picture."""
    child = _state["child"]
    if child is None or not history:
        return
    _state["sent"] = copy.deepcopy(history)
    try:
        child.stdin.write(json.dumps(history).encode("utf-8"))
        child.stdin.close()
    except OSError:  # the child has gone; the saver draws instead
        cancel()


def cancel() -> None:
    """Stop the drawing process, if any (a run that ended without saving its directory)."""
    child, _state["child"], _state["sent"] = _state["child"], None, None
    if child is not None:
        child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout):
            stream.close()


def learning_curves_png(history: list[dict[str, Any]]) -> bytes | None:
    """Loss and accuracy per epoch for every split the history has, as PNG bytes.

    None without matplotlib (the ``plot`` extra): the directory is then saved without
    ``curves.png``, which is optional.
    """
    child, sent = _state["child"], _state["sent"]
    if child is not None and sent is not None:
        _state["child"] = _state["sent"] = None
        picture = child.stdout.read()
        child.stdout.close()
        if child.wait() == 0 and picture.startswith(PNG_SIGNATURE) and sent == history:
            return picture
    elif child is not None:
        cancel()  # never given a history
    return _draw(history)


def _child_main() -> None:
    """The drawing process: import matplotlib at once, then draw the JSON history read from
    stdin as PNG bytes on stdout (exit status 1, and nothing written, when it cannot)."""
    if not _import_matplotlib():
        sys.exit(1)
    payload = sys.stdin.buffer.read()
    if not payload:
        sys.exit(1)
    picture = _draw(json.loads(payload))
    if picture is None:
        sys.exit(1)
    sys.stdout.buffer.write(picture)


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
        # Fixed margins rather than tight_layout(), which measures every label and took 40% of
        # the drawing time; the labels here are short and always fit.
        figure.subplots_adjust(left=0.07, right=0.985, bottom=0.14, top=0.91, wspace=0.2)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
