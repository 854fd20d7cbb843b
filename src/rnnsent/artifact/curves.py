"""The learning-curve picture (``curves.png``) of a model directory."""

from __future__ import annotations

import io
from typing import Any


def _learning_curves_png(history: list[dict[str, Any]]) -> bytes | None:
    """Loss and accuracy per epoch for every split the history has, as PNG bytes.

    None without matplotlib (the ``plot`` extra): the directory is then saved without
    ``curves.png``, which is optional.
    """
    try:
        import matplotlib
    except ImportError:
        return None

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

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
