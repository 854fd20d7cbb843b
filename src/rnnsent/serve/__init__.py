"""The HTTP service (:mod:`rnnsent.serve.app`), its micro-batcher and the web page.

The server's dependencies are the ``serve`` extra; :func:`require_serve_extra` checks for
them before :mod:`rnnsent.serve.app`, which imports them, is loaded.
"""

from __future__ import annotations

from rnnsent.errors import MissingExtraError

SERVE_EXTRA_MESSAGE = "the server needs the serve extra: pip install 'rnnsent[serve]'"


def require_serve_extra() -> None:
    """Raise :class:`MissingExtraError` unless the server's dependencies (fastapi, uvicorn) import."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MissingExtraError(SERVE_EXTRA_MESSAGE) from None
