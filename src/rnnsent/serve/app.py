"""The HTTP service: a JSON API and the web page for one loaded model (FastAPI on uvicorn).

``POST /predict`` and ``POST /explain`` score texts, ``GET /health`` and ``GET /model``
describe the service, ``/docs`` and ``/openapi.json`` document it, and ``/`` is the page.

Requests that arrive together are scored together (:mod:`rnnsent.batching`), so concurrent
clients cost about as much as one batch. All model calls run one at a time on a single worker
thread, which keeps torch off the event loop and never runs two calls at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from rnnsent import __version__
from rnnsent.inference.predictor import Prediction, Predictor
from rnnsent.serve.batching import MicroBatcher

STATIC_DIR = Path(__file__).resolve().parent / "static"
logger = logging.getLogger("rnnsent.serve")


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask for, and how requests are grouped into model calls."""

    max_texts: int = 256  # texts per /predict request
    max_text_chars: int = 20_000  # characters per text (the longest IMDB review has about 14,000)
    max_body_bytes: int = 2 * 1024 * 1024  # request body, checked before it is read whole
    max_batch_texts: int = 1024  # texts per model call when requests are grouped
    batch_wait_seconds: float = 0.0  # extra wait for more requests before a call (0: take what is queued)

    def __post_init__(self) -> None:
        for name in ("max_texts", "max_text_chars", "max_body_bytes", "max_batch_texts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_batch_texts < self.max_texts:
            raise ValueError("max_batch_texts must be at least max_texts, so that any request fits one call")
        if not 0 <= self.batch_wait_seconds <= 1:
            raise ValueError("the batch wait must be between 0 and 1 second")


class ApiError(Exception):
    """A request the service refuses; becomes ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ----------------------------------------------------------------------------- request size


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` without reading them whole.

    A declared ``Content-Length`` over the limit is refused before any of the body is read;
    a body without one (chunked) is read chunk by chunk and refused as soon as it passes the
    limit, so at most ``max_bytes`` plus one chunk is ever held.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_error(send, 400, "Content-Length must be a whole number of bytes")
                return
            if int(declared) > self.max_bytes:
                await _send_error(send, 413, self._too_large())
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(send, 413, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"request body is over {self.max_bytes} bytes; send fewer or shorter texts per request"


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------- API schema


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"texts": ["A wonderful film.", "Dull."]}]})
    texts: list[StrictStr] = Field(description="raw reviews, one string each")


class PredictionOut(BaseModel):
    label: str = Field(description='"positive" or "negative"')
    probability: float = Field(description="probability of the positive class")
    empty: bool = Field(description="the text had no words; the probability is the model's prior")


class PredictResponse(BaseModel):
    predictions: list[PredictionOut]


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"text": "Great acting, dull plot."}]})
    text: StrictStr = Field(description="one raw review")
    integrated_gradients: StrictBool = Field(False, description="also compute integrated gradients (slower)")


class ExplainResponse(BaseModel):
    text: str
    label: str
    probability: float
    empty: bool
    truncated: bool = Field(description="maxlen cut words from the review")
    dropped_words: int
    tokens: list[str] = Field(description='the tokens the model read; "<start>" is the start token')
    token_ids: list[int]
    oov: list[bool] = Field(description="the word is out of the vocabulary")
    special: list[bool] = Field(description="the start token, not a word")
    trajectory: list[float] = Field(description="probability after each token")
    influence: list[float | None] = Field(description="p(review) - p(review without the word); null for the start token")
    integrated_gradients: list[float] | None = Field(description="per-token attributions in logit units, when asked for")


class ErrorResponse(BaseModel):
    error: str


ERRORS = {status: {"model": ErrorResponse} for status in (400, 413, 422)}


# ----------------------------------------------------------------------------- the app


def create_app(predictor: Predictor, limits: ServeLimits | None = None,
               score: Callable[[list[str]], Sequence[Prediction]] | None = None) -> FastAPI:
    """The FastAPI application for one loaded model.

    ``score`` replaces ``predictor.predict`` as the batched scoring function (tests use it
    to observe how requests are grouped).
    """
    limits = limits or ServeLimits()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rnnsent-model")
    batcher = MicroBatcher(score or predictor.predict, executor, limits.max_batch_texts, limits.batch_wait_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="rnnsent", version=__version__, lifespan=lifespan,
                  description="Sentiment of movie reviews from a recurrent network, with word-by-word explanations.")
    app.state.batcher = batcher
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    _add_error_handlers(app)

    @app.post("/predict", response_model=PredictResponse, responses=ERRORS, summary="Label texts")
    async def predict(request: PredictRequest) -> JSONResponse:
        _check_texts(request.texts, limits)
        predictions = await batcher.submit(request.texts)
        # A response object skips FastAPI's re-validation of the output, which costs more than the model here.
        return JSONResponse({"predictions": [prediction.to_dict() for prediction in predictions]})

    @app.post("/explain", response_model=ExplainResponse, responses=ERRORS, summary="Explain one text")
    async def explain(request: ExplainRequest) -> JSONResponse:
        _check_text("text", request.text, limits)
        loop = asyncio.get_running_loop()
        explanation = await loop.run_in_executor(
            executor, lambda: predictor.explain(request.text, integrated_gradients=request.integrated_gradients))
        return JSONResponse(_finite(explanation.to_dict()))

    @app.get("/health", summary="Liveness and batching counters")
    async def health() -> dict:
        return {"status": "ok", "batching": batcher.stats.to_dict()}

    @app.get("/model", summary="The loaded model: config, vocabulary size, metrics")
    async def model_info() -> dict:
        artifact = predictor.artifact
        return _finite({
            "name": Path(artifact.path).name, "preset": artifact.config.preset, "config": artifact.config.to_dict(),
            "vocab_size": artifact.vocabulary.size, "metrics": artifact.metrics,
            "limits": {"max_texts": limits.max_texts, "max_text_chars": limits.max_text_chars,
                       "max_body_bytes": limits.max_body_bytes},
        })

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _check_texts(texts: list[str], limits: ServeLimits) -> None:
    if not texts:
        raise ApiError(422, "texts is empty; send at least one text")
    if len(texts) > limits.max_texts:
        raise ApiError(422, f"{len(texts)} texts in one request; the limit is {limits.max_texts}, so split the list")
    for index, text in enumerate(texts):
        _check_text(f"texts[{index}]", text, limits)


def _check_text(where: str, text: str, limits: ServeLimits) -> None:
    if len(text) > limits.max_text_chars:
        raise ApiError(422, f"{where} has {len(text)} characters; the limit is {limits.max_text_chars}")


def _finite(value: Any) -> Any:
    """Replace NaN and infinities (which JSON cannot carry) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        status, message = _validation_message(error.errors())
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s", request.url.path)
        return JSONResponse({"error": "internal error; the request was not processed"}, status_code=500)


def _validation_message(errors: Sequence[dict]) -> tuple[int, str]:
    """One clear sentence (and a status) for the first problem pydantic found in a request."""
    if not errors:
        return 422, "invalid request"
    first = errors[0]
    kind = first.get("type", "")
    location = [part for part in first.get("loc", ()) if part != "body"]
    where = "".join(f"[{part}]" if isinstance(part, int) else (f".{part}" if i else str(part))
                    for i, part in enumerate(location))
    if kind == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "")
        return 400, f"the body is not valid JSON{f' ({reason})' if reason else ''}"
    if kind == "missing":
        if not location:
            return 400, "the request needs a JSON body"
        return 422, f"{where} is required"
    if kind in ("model_attributes_type", "dict_type") and not location:
        return 422, "the body must be a JSON object, sent with Content-Type: application/json"
    if kind == "string_type":
        return 422, f"{where} must be a string"
    if kind == "list_type":
        return 422, f"{where} must be a list of strings"
    if kind == "bool_type":
        return 422, f"{where} must be true or false"
    if kind == "extra_forbidden":
        return 422, f"unknown field {where}"
    return 422, f"{where or 'body'}: {first.get('msg', 'invalid value')}"


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, limits: ServeLimits | None = None,
          access_log: bool = False) -> None:
    """Load a model directory and serve it until interrupted.

    The address is taken before the model loads, so a busy port fails fast with a clear message.
    """
    import uvicorn

    sock = _listen(host, port)
    try:
        predictor = Predictor.load(model_dir)
        app = create_app(predictor, limits)
        bound_port = sock.getsockname()[1]
        print(f"serving {model_dir} on http://{host}:{bound_port}/  "
              f"(API: http://{host}:{bound_port}/docs; Ctrl+C stops)", flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=access_log))
        server.run(sockets=[sock])
    finally:
        sock.close()


def _listen(host: str, port: int) -> socket.socket:
    """A bound TCP socket for ``host:port`` (uvicorn listens on it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        reason = error.strerror or str(error)
        raise ValueError(f"cannot listen on {host}:{port} ({reason}); choose another --port or --host") from None
    return sock
