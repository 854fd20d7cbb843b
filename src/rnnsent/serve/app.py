"""The HTTP service: a JSON API and the web page for one loaded model (FastAPI on uvicorn).

``POST /predict`` and ``POST /explain`` score texts, ``GET /health`` and ``GET /model``
describe the service, ``/docs`` (Swagger UI, its scripts served by this server, see
:func:`docs_assets`) and ``/openapi.json`` document it, and ``/`` is the page.
Every label space is served: binary models answer as they always have; models of K classes
add every label's probability, and multi-label models the labels over their thresholds.

Requests that arrive together are scored together (:mod:`rnnsent.batching`), so concurrent
clients cost about as much as one batch. Scoring calls run one at a time on a worker thread,
which keeps torch off the event loop; explanations, which are much slower, run one at a time
on a second thread with their own copy of the model's modules (sharing its weights), so a
long explanation never holds up ``/predict``. Queued work whose client has gone is dropped.

Every request is bounded: its head by :mod:`rnnsent.serve.protocol` (size and time), its
body by :class:`RequestGuard`, its texts by :class:`ServeLimits`, an explanation by a
deadline. With an API key, every route but ``GET /health``, the page and the API's
documentation (``/docs`` and ``/openapi.json``, which hold nothing secret) needs it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import email.message
import hmac
import html
import importlib.util
import ipaddress
import itertools
import json
import logging
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from rnnsent import __version__
from rnnsent.inference.predictor import Prediction, Predictor
from rnnsent.labels import LabelSpace
from rnnsent.metrics import finite_for_json
from rnnsent.serve.batching import ClientGone, DeadlineExceeded, MicroBatcher, SerialWorker

STATIC_DIR = Path(__file__).resolve().parent / "static"
logger = logging.getLogger("rnnsent.serve")


def request_bytes(texts: int, chars: int, bytes_per_char: int) -> int:
    """The JSON body size of ``texts`` texts of ``chars`` characters each, at ``bytes_per_char``.

    Each text adds its two quotes, a comma and a space; 64 bytes cover the rest
    (``{"texts": [...]}`` or ``{"text": ..., "integrated_gradients": false}``).
    """
    return texts * (chars * bytes_per_char + 4) + 64


# UTF-8 takes at most 4 bytes for any character, and JSON's escapes of ASCII (\" \\ \n \t) take 2,
# so a body sized at 4 bytes a character holds any text within the limits, sent as UTF-8 JSON as
# browsers and most clients send it. (\uXXXX escapes, as Python's json.dumps writes non-ASCII by
# default, take 6 or 12 bytes: a request of only such characters at the full limits can get a 413.)
BODY_BYTES_PER_CHAR = 4


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask for, and how requests are grouped into model calls.

    ``max_body_bytes`` defaults to what the text limits need (``BODY_BYTES_PER_CHAR`` bytes a
    character); a value given must at least hold a full request of ASCII text.
    """

    max_texts: int = 256  # texts per /predict request
    max_text_chars: int = 20_000  # characters per text (the longest IMDB review has about 14,000)
    max_body_bytes: int | None = None  # request body, checked before it is read whole (None: from the text limits)
    max_batch_texts: int = 1024  # texts per model call when requests are grouped
    batch_wait_seconds: float = 0.0  # extra wait for more requests before a call (0: take what is queued)
    max_explain_chars: int = 5_000  # characters of the text of one /explain request
    explain_timeout_seconds: float = 10.0  # an explanation's deadline, from its arrival (waiting included)
    max_head_bytes: int = 64 * 1024  # request line and headers together
    head_timeout_seconds: float = 10.0  # time a client has to send the request line and headers
    body_timeout_seconds: float = 60.0  # time a client has to send a request's body, once its head is in

    def __post_init__(self) -> None:
        if self.max_body_bytes is None:
            derived = max(request_bytes(self.max_texts, self.max_text_chars, BODY_BYTES_PER_CHAR),
                          request_bytes(1, self.max_explain_chars, BODY_BYTES_PER_CHAR))
            object.__setattr__(self, "max_body_bytes", derived)
        for name in ("max_texts", "max_text_chars", "max_body_bytes", "max_batch_texts", "max_explain_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_head_bytes < 1024:
            raise ValueError("max_head_bytes must be at least 1024")
        if self.max_batch_texts < self.max_texts:
            raise ValueError("max_batch_texts must be at least max_texts, so that any request fits one call")
        if not 0 <= self.batch_wait_seconds <= 1:
            raise ValueError("the batch wait must be between 0 and 1 second")
        for name in ("explain_timeout_seconds", "head_timeout_seconds", "body_timeout_seconds"):
            if not 0 < getattr(self, name) <= 3600:
                raise ValueError(f"{name} must be more than 0 and at most 3600 seconds")
        predict_needs = request_bytes(self.max_texts, self.max_text_chars, 1)
        if self.max_body_bytes < predict_needs:
            raise ValueError(
                f"max_body_bytes {self.max_body_bytes} cannot hold a full /predict request: {self.max_texts} texts of "
                f"{self.max_text_chars} characters need {predict_needs} bytes even as ASCII; raise --max-body-bytes "
                "(or leave it out to derive it) or lower --max-texts or --max-text-chars")
        explain_needs = request_bytes(1, self.max_explain_chars, 1)
        if self.max_body_bytes < explain_needs:
            raise ValueError(
                f"max_body_bytes {self.max_body_bytes} cannot hold a full /explain request: {self.max_explain_chars} "
                f"characters need {explain_needs} bytes even as ASCII; raise --max-body-bytes or lower --max-explain-chars")


class ApiError(Exception):
    """A request the service refuses; becomes ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ----------------------------------------------------------------------------- request guard

# After a refusal, the rest of the body is read and thrown away (at most this much, for at most
# this long) before the connection closes, so that a client still sending it (Python's
# http.client and urllib send the whole body before they read) reads the answer, not a reset.
DRAIN_BYTES = 16 * 1024 * 1024
DRAIN_SECONDS = 10.0


PUBLIC_PATHS = ("/", "/health", "/docs", "/openapi.json")


def _is_public(scope) -> bool:
    """Routes open without an API key: ``GET /health``, the page with its files and the API's documentation."""
    path = scope["path"]
    return scope["method"] in ("GET", "HEAD") and (path in PUBLIC_PATHS or path.startswith("/static/"))


class RequestGuard:
    """ASGI middleware: the API key, then the body size, both before any of the body is read,
    then the body's deadline.

    With ``api_key``, requests other than :func:`_is_public` ones need ``Authorization: Bearer
    <key>`` (401 otherwise). Bodies over ``max_bytes`` are refused (413) without being read
    whole: a declared ``Content-Length`` over the limit is refused before any of the body is
    read; a body without one (chunked) is read chunk by chunk and refused as soon as it passes
    the limit, so at most ``max_bytes`` plus one chunk is ever held. A body not complete within
    ``body_timeout_seconds`` gets a 408 and the connection closes: a client that stops sending
    (or sends a byte now and then) does not hold a connection and its buffer for ever.
    """

    def __init__(self, app, max_bytes: int, api_key: str | None = None, body_timeout_seconds: float = 60.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.api_key = api_key.encode() if api_key else None
        self.body_timeout_seconds = body_timeout_seconds

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.api_key is not None and not _is_public(scope):
            refusal = self._check_key(dict(scope["headers"]).get(b"authorization"))
            if refusal:
                await _refuse(scope, receive, send, 401, refusal, [(b"www-authenticate", b"Bearer")])
                return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_error(send, 400, "Content-Length must be a whole number of bytes")
                return
            if int(declared) > self.max_bytes:
                await _refuse(scope, receive, send, 413, self._too_large())
                return
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.body_timeout_seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    more = message.get("more_body", False)
                    if size > self.max_bytes:
                        await _refuse(scope, receive, send, 413, self._too_large(), read=size, finished=not more)
                        return
                    chunks.append(chunk)
                    if not more:
                        break
        except TimeoutError:
            # The answer says "connection: close"; the server closes it once the answer is sent.
            await _send_error(send, 408, f"the request body did not arrive within {self.body_timeout_seconds:g} s "
                                         f"({size} bytes came); send it at once")
            return
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _check_key(self, authorization: bytes | None) -> str | None:
        """Why the request's credentials are refused, or None when they are right."""
        if not authorization:
            return "this server needs an API key; send the header Authorization: Bearer <key>"
        scheme, _, given = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not given.strip():
            return "the Authorization header must be Bearer <key>"
        if not hmac.compare_digest(given.strip(), self.api_key):
            return "the API key is wrong; send the server's key as Authorization: Bearer <key>"
        return None

    def _too_large(self) -> str:
        return f"request body is over {self.max_bytes} bytes; send fewer or shorter texts per request"


async def _send_error(send, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = (),
                      more_body: bool = False) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body, "more_body": more_body})


async def _refuse(scope, receive, send, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = (),
                  read: int = 0, finished: bool = False) -> None:
    """Answer ``status`` and close, reading what is left of the body first (see ``DRAIN_BYTES``)."""
    drain = not finished and _body_left(scope, read)
    await _send_error(send, status, message, headers, more_body=drain)
    if not drain:
        return
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            discarded = 0
            while discarded <= DRAIN_BYTES:
                received = await receive()
                if received["type"] == "http.disconnect" or not received.get("more_body", False):
                    break
                discarded += len(received.get("body", b""))
    except TimeoutError:
        pass
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _body_left(scope, read: int) -> bool:
    """Whether a body is still to come that is worth reading before closing (at most ``DRAIN_BYTES``)."""
    headers = dict(scope["headers"])
    if headers.get(b"expect", b"").lower() == b"100-continue":
        return False  # the client waits for a go-ahead that will not come, and sends nothing
    declared = headers.get(b"content-length")
    if declared is not None:
        return declared.isdigit() and 0 < int(declared) - read <= DRAIN_BYTES
    return b"chunked" in headers.get(b"transfer-encoding", b"").lower()


# ----------------------------------------------------------------------------- request bodies


class BodyError(StarletteHTTPException):
    """A body that cannot be read as JSON; FastAPI passes it on as it is (``{"error": detail}``)."""


# Python refuses to convert integers of more digits than this (sys.get_int_max_str_digits).
MAX_NUMBER_DIGITS = 4300


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise BodyError(400, f"the body has a number of {len(digits.lstrip('-'))} digits; "
                             f"numbers in a request have at most {MAX_NUMBER_DIGITS}")
    return int(digits)


def parse_json_body(body: bytes, content_type: str | None) -> Any:
    """The JSON value of a request body: UTF-8 only, each problem in one clear sentence.

    Syntax errors raise :class:`json.JSONDecodeError` (FastAPI reports them as invalid JSON,
    with the reason); everything else raises :class:`BodyError`.
    """
    if content_type:
        header = email.message.Message()
        header["content-type"] = content_type
        charset = header.get_param("charset")
        if isinstance(charset, str) and charset.strip().lower() not in ("utf-8", "utf8"):
            raise BodyError(415, f"the body must be UTF-8 JSON, not charset={charset}; "
                                 "send Content-Type: application/json with UTF-8 text")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BodyError(400, f"the body is not UTF-8 (byte 0x{body[error.start]:02x} at position {error.start}); "
                             "send JSON encoded as UTF-8") from None
    try:
        return json.loads(text, parse_int=_parse_int)
    except RecursionError:
        raise BodyError(400, 'the body\'s JSON is nested too deeply; send an object such as {"texts": ["..."]}') from None


class _JsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json_body(await self.body(), self.headers.get("content-type"))
        return self._json


class JsonRoute(APIRoute):
    """A route whose JSON bodies are read by :func:`parse_json_body`."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route_handler(request: Request):
            return await handler(_JsonRequest(request.scope, request.receive, request._send))

        return route_handler


# ----------------------------------------------------------------------------- API schema


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"texts": ["A wonderful film.", "Dull."]}]})
    texts: list[StrictStr] = Field(description="raw texts, one string each")


PROBABILITIES = ("K classes only (absent for binary models): every label's probability, keyed by label name "
                 "in the model's order (GET /model lists them)")
OVER_THRESHOLD = "multi-label models only: the labels whose probability is over their threshold, possibly none"


class PredictionOut(BaseModel):
    label: str = Field(description='the predicted label, one of the model\'s labels (sentiment: "positive" or '
                                   '"negative"); multi-label: the most probable label')
    probability: float = Field(description="binary models: the probability of the second label (sentiment: positive); "
                                           "K classes: the probability of label")
    empty: bool = Field(description="the text had no words; the probability is the model's prior")
    labels: list[str] | None = Field(None, description=OVER_THRESHOLD)
    probabilities: dict[str, float] | None = Field(None, description=PROBABILITIES)


class PredictResponse(BaseModel):
    predictions: list[PredictionOut]


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True,
                              json_schema_extra={"examples": [{"text": "Great acting, dull plot."}]})
    text: StrictStr = Field(description="one raw text")
    integrated_gradients: StrictBool = Field(False, description="also compute integrated gradients (slower)")
    class_: StrictStr | None = Field(None, alias="class",
                                     description="the label to explain, one of the model's labels (GET /model; "
                                                 "an integer label such as a star rating may be given as a number); "
                                                 "default: the label a binary model scores (sentiment: positive), "
                                                 "else the most probable one")

    @field_validator("class_", mode="before")
    @classmethod
    def _integer_label(cls, value: Any) -> Any:
        # Integer labels (star ratings) are named by their digits; a JSON number names them too.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class ExplainResponse(BaseModel):
    text: str
    label: str = Field(description="the predicted label (multi-label: the most probable one)")
    probability: float = Field(description="the explained label's probability for the whole text")
    empty: bool
    truncated: bool = Field(description="maxlen cut words from the text")
    dropped_words: int
    tokens: list[str] = Field(description='the tokens the model read; "<start>" is the start token')
    token_ids: list[int]
    oov: list[bool] = Field(description="the word is out of the vocabulary")
    special: list[bool] = Field(description="the start token, not a word")
    trajectory: list[float] = Field(description="the explained label's probability after each token")
    influence: list[float | None] = Field(description="p(text) - p(text without the word), p being the explained "
                                                      "label's probability; null for the start token")
    integrated_gradients: list[float] | None = Field(description="per-token attributions in log-odds units of the "
                                                                 "explained label, when asked for")
    target: str | None = Field(None, description="the label explained; absent when a binary model explains the label "
                                                 "it scores (sentiment: positive), as it always did")
    labels: list[str] | None = Field(None, description=OVER_THRESHOLD)
    probabilities: dict[str, float] | None = Field(None, description=PROBABILITIES)


class ModelLimits(BaseModel):
    max_texts: int
    max_text_chars: int
    max_body_bytes: int
    max_explain_chars: int


class PageWording(BaseModel):
    title: str = Field(description="the page's title")
    placeholder: str = Field(description="the text box's placeholder")
    noun: str = Field(description='what a text is called on the page ("review" for sentiment models, else "text")')


class ModelResponse(BaseModel):
    name: str = Field(description="the model directory's name")
    preset: str | None
    task: str = Field(description='"binary", "multiclass" or "multilabel"')
    labels: list[str] = Field(description="the model's labels, in its order (binary: the second is the one scored)")
    ordered: bool = Field(description="the labels are ordered (integer names, such as star ratings)")
    sentiment: bool = Field(description="a binary negative/positive model")
    thresholds: dict[str, float] | None = Field(None, description="multi-label models only: each label's threshold")
    config: dict[str, Any]
    vocab_size: int
    metrics: dict[str, Any]
    limits: ModelLimits
    page: PageWording


class ErrorResponse(BaseModel):
    error: str


ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 413, 415, 422)}


# ----------------------------------------------------------------------------- the app


def create_app(predictor: Predictor, limits: ServeLimits | None = None,
               score: Callable[[list[str]], Sequence[Prediction]] | None = None,
               explainer: Predictor | None = None, api_key: str | None = None) -> FastAPI:
    """The FastAPI application for one loaded model.

    ``score`` replaces ``predictor.predict`` as the batched scoring function (tests use it
    to observe how requests are grouped). ``explainer`` answers ``/explain`` on its own
    thread; by default, a copy of ``predictor`` whose modules share its weights (an
    explanation hooks the model's modules, which must not touch a scoring call running at
    the same time). ``api_key``: required as a bearer token on all but the public routes.
    """
    limits = limits or ServeLimits()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rnnsent-model")
    batcher = MicroBatcher(score or predictor.predict, executor, limits.max_batch_texts, limits.batch_wait_seconds)
    explainer = explainer or _explaining_copy(predictor)
    explain_worker = SerialWorker("rnnsent-explain")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            executor.shutdown(wait=False, cancel_futures=True)
            explain_worker.shutdown()

    space: LabelSpace = predictor.labels
    assets = docs_assets()
    app = FastAPI(title="rnnsent", version=__version__, lifespan=lifespan,
                  description="Text classification by a recurrent network (IMDB sentiment first), with "
                              "word-by-word explanations. Binary, multi-class and multi-label models are served "
                              "alike; GET /model names the loaded model's labels.",
                  redoc_url=None, **({"docs_url": None} if assets else {}))
    app.router.route_class = JsonRoute
    app.state.batcher = batcher
    app.state.explain_worker = explain_worker
    app.add_middleware(RequestGuard, max_bytes=limits.max_body_bytes, api_key=api_key,
                       body_timeout_seconds=limits.body_timeout_seconds)
    _add_error_handlers(app)

    @app.post("/predict", response_model=PredictResponse, responses=ERRORS, summary="Label texts")
    async def predict(request: PredictRequest, http: Request) -> JSONResponse:
        _check_texts(request.texts, limits)
        predictions = await batcher.submit(request.texts, is_gone=http.is_disconnected)
        # A response object skips FastAPI's re-validation of the output, which costs more than the model here.
        return JSONResponse({"predictions": [prediction.to_dict() for prediction in predictions]})

    @app.post("/explain", response_model=ExplainResponse, responses={**ERRORS, 503: {"model": ErrorResponse}},
              summary="Explain one text")
    async def explain(request: ExplainRequest, http: Request) -> JSONResponse:
        _check_text("text", request.text, limits.max_explain_chars, " for /explain; explain a shorter part of it")
        target = request.class_
        if target is not None and target not in space.names:
            raise ApiError(422, f"unknown class {_quoted(target)}; the model's labels are {_listed(space.names)}")
        chosen = {"label": target} if target is not None else {}  # explainers of one class need not take it
        try:
            explanation = await explain_worker.run(
                lambda: explainer.explain(request.text, integrated_gradients=request.integrated_gradients, **chosen),
                limits.explain_timeout_seconds, is_gone=http.is_disconnected)
        except DeadlineExceeded:
            raise ApiError(503, f"the explanation did not finish within {limits.explain_timeout_seconds:g} s; "
                                "retry with a shorter text") from None
        return JSONResponse(finite_for_json(explanation.to_dict()))

    @app.get("/health", summary="Liveness and batching counters")
    async def health() -> dict:
        return {"status": "ok", "batching": batcher.stats.to_dict()}

    @app.get("/model", response_model=ModelResponse, responses={401: {"model": ErrorResponse}},
             summary="The loaded model: its labels, config, vocabulary size, metrics")
    async def model_info() -> JSONResponse:
        artifact = predictor.artifact
        info = {"name": Path(artifact.path).name, "preset": artifact.config.preset, **label_info(space, artifact.thresholds),
                "config": artifact.config.to_dict(), "vocab_size": artifact.vocabulary.size, "metrics": artifact.metrics,
                "limits": {"max_texts": limits.max_texts, "max_text_chars": limits.max_text_chars,
                           "max_body_bytes": limits.max_body_bytes, "max_explain_chars": limits.max_explain_chars},
                "page": page_wording(space)}
        return JSONResponse(finite_for_json(info))

    index = render_page(space)

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(index)

    if assets:
        _add_docs(app, assets)
    _declare_bearer(app, api_key is not None)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def label_info(space: LabelSpace, thresholds: Sequence[float] | None) -> dict[str, Any]:
    """What ``GET /model`` says about the labels: task, names, order and (multi-label) thresholds."""
    info: dict[str, Any] = {"task": space.task, "labels": list(space.names), "ordered": space.ordered,
                            "sentiment": space.is_sentiment}
    if space.task == "multilabel":
        cuts = list(thresholds) if thresholds else [0.5] * len(space.names)
        info["thresholds"] = {name: float(cut) for name, cut in zip(space.names, cuts)}
    return info


def _labels_phrase(space: LabelSpace) -> str:
    names = list(space.names)
    if space.task == "multiclass" and space.ordered:
        return f"ratings {names[0]} to {names[-1]}"  # ordered integer labels: star ratings and the like
    if len(names) > 6:
        return f"{len(names)} labels"
    joined = ", ".join(names[:-1]) + (" and " if space.task == "multilabel" else " or ") + names[-1]
    return f"{joined} labels" if space.task == "multilabel" else joined


def page_wording(space: LabelSpace) -> dict[str, str]:
    """The page's title, placeholder and name for a text: about reviews for sentiment models only."""
    if space.is_sentiment:
        return {"title": "rnnsent: review sentiment, word by word",
                "placeholder": "Type or paste a review, then press Analyse (or Ctrl+Enter)", "noun": "review"}
    return {"title": f"rnnsent: {_labels_phrase(space)}, word by word",
            "placeholder": "Type or paste a text, then press Analyse (or Ctrl+Enter)", "noun": "text"}


GENERIC_TITLE = "rnnsent: text classification, word by word"
SENTIMENT_TAGLINE = ("A recurrent network reads a movie review left to right. See its verdict after every word, "
                     "and which words moved it.")
TEXT_TAGLINE = "A recurrent network reads a text left to right. See its verdict after every word, and which words moved it."


def render_page(space: LabelSpace) -> str:
    """``index.html`` with the wording of ``space``'s model filled in.

    The page is open without the API key, so it names no labels: its title is generic until
    ``GET /model`` answers, when the page takes the title from there.
    """
    wording = page_wording(space)
    sentiment = space.is_sentiment
    title = wording["title"] if sentiment else GENERIC_TITLE
    values = {"title": title, "placeholder": wording["placeholder"], "noun": wording["noun"],
              "sentiment": "true" if sentiment else "false",
              "tagline": SENTIMENT_TAGLINE if sentiment else TEXT_TAGLINE,
              "text_label": "Movie review" if sentiment else "Text",
              "words_heading": f"The {wording['noun']} as the model read it"}
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    for key, value in values.items():
        page = page.replace("{{" + key + "}}", html.escape(value))
    if not sentiment:  # the example reviews are movie reviews
        start, end = page.index("<!-- examples -->"), page.index("<!-- /examples -->")
        page = page[:start] + page[end + len("<!-- /examples -->"):]
    return page


def _quoted(name: str) -> str:
    return repr(name if len(name) <= 60 else name[:57] + "...")


def _listed(names: Sequence[str], most: int = 20) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more (GET /model lists them)" if len(names) > most else "")


# ----------------------------------------------------------------------------- API documentation

DOCS_PACKAGE = "fastapi_offline"  # MIT; ships a build of Swagger UI 5 (Apache-2.0)
DOCS_STATIC = "/static/docs"


def docs_assets() -> Path | None:
    """The folder of Swagger UI's script and style sheet in the installed ``fastapi-offline`` package.

    None when it is not installed: FastAPI's own ``/docs`` is used then, which loads them from
    a CDN (so it needs internet access).
    """
    spec = importlib.util.find_spec(DOCS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    needed = ("swagger-ui-bundle.js", "swagger-ui.css")
    return folder if all((folder / name).is_file() for name in needed) else None


def _add_docs(app: FastAPI, assets: Path) -> None:
    """``/docs`` (Swagger UI) with every file served from ``assets`` (no internet needed)."""
    favicon = f"{DOCS_STATIC}/favicon.png" if (assets / "favicon.png").is_file() else "data:,"

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="rnnsent API",
                                   swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css", swagger_favicon_url=favicon,
                                   swagger_ui_parameters={"persistAuthorization": False})

    app.mount(DOCS_STATIC, StaticFiles(directory=assets), name="docs-static")


PROTECTED_PATHS = ("/predict", "/explain", "/model")


def _declare_bearer(app: FastAPI, keyed: bool) -> None:
    """With an API key, the schema declares the bearer scheme on the routes that need it (Swagger's Authorize)."""
    if not keyed:
        return

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "apiKey": {"type": "http", "scheme": "bearer",
                           "description": "the server's API key (--api-key-env, --api-key-file or RNNSENT_API_KEY)"}}
            for path in PROTECTED_PATHS:
                for operation in schema.get("paths", {}).get(path, {}).values():
                    operation["security"] = [{"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def _check_texts(texts: list[str], limits: ServeLimits) -> None:
    if not texts:
        raise ApiError(422, "texts is empty; send at least one text")
    if len(texts) > limits.max_texts:
        raise ApiError(422, f"{len(texts)} texts in one request; the limit is {limits.max_texts}, so split the list")
    for index, text in enumerate(texts):
        _check_text(f"texts[{index}]", text, limits.max_text_chars)


def _check_text(where: str, text: str, limit: int, advice: str = "") -> None:
    if len(text) > limit:
        raise ApiError(422, f"{where} has {len(text)} characters; the limit is {limit}{advice}")


def _explaining_copy(predictor: Predictor) -> Predictor:
    """A predictor with its own copy of ``predictor``'s modules, sharing the weights (no extra memory)."""
    artifact = predictor.artifact
    model = artifact.model
    shared = {id(tensor): tensor for tensor in itertools.chain(model.parameters(), model.buffers())}
    return type(predictor)(dataclasses.replace(artifact, model=copy.deepcopy(model, memo=shared)))


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, error: ClientGone) -> JSONResponse:
        # Nobody reads this: the client has gone. 499 keeps it apart in access logs.
        return JSONResponse({"error": "the client disconnected before its request was processed"}, status_code=499)

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


# What a body with each required field looks like, for the message when it is missing
# ({"text": ...} sent to /predict, which reads a list).
REQUIRED_FIELD_EXAMPLES = {"texts": '{"texts": ["a text", ...]}', "text": '{"text": "a text"}'}


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
        return 422, f"{where} is required" + (f": send {REQUIRED_FIELD_EXAMPLES[where]}" if where in REQUIRED_FIELD_EXAMPLES else "")
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
          access_log: bool = False, api_key: str | None = None) -> None:
    """Load a model directory and serve it until interrupted.

    The address is taken before the model loads, so a busy port fails fast with a clear message.
    """
    import uvicorn

    limits = limits or ServeLimits()
    sock = _listen(host, port)
    try:
        warning = exposure_warning(sock.getsockname()[0], api_key is not None)
        if warning:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        predictor = Predictor.load(model_dir)
        app = create_app(predictor, limits, api_key=api_key)
        bound_port = sock.getsockname()[1]
        online = "" if docs_assets() else ", which loads Swagger UI from a CDN: pip install fastapi-offline to serve it here"
        print(f"serving {model_dir} on http://{host}:{bound_port}/  "
              f"(API: http://{host}:{bound_port}/docs{online}; Ctrl+C stops)", flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=access_log, **_http_options(limits)))
        server.run(sockets=[sock])
    finally:
        sock.close()


def _http_options(limits: ServeLimits) -> dict[str, Any]:
    """uvicorn's HTTP protocol, with the limits on each request's head."""
    try:
        from rnnsent.serve.protocol import guarded_protocol

        return {"http": guarded_protocol(limits.max_head_bytes, limits.head_timeout_seconds)}
    except ImportError:  # no httptools: h11 limits the size of a head (answering 400), not its time
        return {"http": "h11", "h11_max_incomplete_event_size": limits.max_head_bytes}


def exposure_warning(address: str, has_key: bool) -> str | None:
    """A warning when a server listens beyond this machine without an API key, else None."""
    try:
        loopback = ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        loopback = False
    if loopback or has_key:
        return None
    return (f"listening on {address}, beyond this machine, without an API key: anyone who can reach it can use it "
            "(set RNNSENT_API_KEY, or use --api-key-file)")


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
