"""Export of a trained model to other runtimes: the ONNX graph (:mod:`rnnsent.exporter.onnx`) and what a
deployment needs beside it to turn raw text into its inputs (:mod:`rnnsent.exporter.deployment`).

The exporter's dependencies (onnx, onnxruntime) are the ``export`` extra; :func:`require_export_extra`
checks for them before anything imports them.
"""

from __future__ import annotations

from rnnsent.errors import MissingExtraError

EXPORT_EXTRA_MESSAGE = "ONNX export needs the export extra: pip install 'rnnsent[export]'"


def require_export_extra() -> None:
    """Raise :class:`MissingExtraError` unless onnx and onnxruntime import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise MissingExtraError(EXPORT_EXTRA_MESSAGE) from None
