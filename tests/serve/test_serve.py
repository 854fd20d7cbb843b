"""The HTTP service, over real HTTP against uvicorn on a free loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from rnnsent.cli.main import main
from rnnsent.serve.app import ServeLimits, create_app

TEXTS = ["The acting was superb and great fun", "A dull, boring waste", "", "the plot"]


def test_health_model_and_schema(tiny_server, tiny_predictor):
    assert httpx.get(f"{tiny_server}/health").json()["status"] == "ok"
    info = httpx.get(f"{tiny_server}/model").json()
    artifact = tiny_predictor.artifact
    assert info["vocab_size"] == artifact.vocabulary.size
    assert info["config"] == artifact.config.to_dict()
    assert info["metrics"]["accuracy"] == pytest.approx(artifact.metrics["accuracy"])
    schema = httpx.get(f"{tiny_server}/openapi.json").json()
    assert {"/predict", "/explain", "/health", "/model"} <= set(schema["paths"])
    assert "texts" in schema["components"]["schemas"]["PredictRequest"]["properties"]


def test_predict_matches_the_python_api(tiny_server, tiny_predictor):
    response = httpx.post(f"{tiny_server}/predict", json={"texts": TEXTS})
    assert response.status_code == 200
    expected = [prediction.to_dict() for prediction in tiny_predictor.predict(TEXTS)]
    got = response.json()["predictions"]
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    assert [p["empty"] for p in got] == [False, False, True, False]
    assert [p["probability"] for p in got] == pytest.approx([p["probability"] for p in expected], abs=1e-6)


def test_explain_matches_the_python_api(tiny_server, tiny_predictor):
    text = "Great acting but a boring story, zzyzx"
    response = httpx.post(f"{tiny_server}/explain", json={"text": text, "integrated_gradients": True})
    assert response.status_code == 200
    body = response.json()
    expected = tiny_predictor.explain(text, integrated_gradients=True).to_dict()
    assert body["tokens"] == expected["tokens"] and body["oov"] == expected["oov"]
    assert body["label"] == expected["label"] and body["truncated"] == expected["truncated"]
    assert body["trajectory"] == pytest.approx(expected["trajectory"], abs=1e-6)
    assert body["influence"][0] is None
    assert body["influence"][1:] == pytest.approx(expected["influence"][1:], abs=1e-6)
    assert body["integrated_gradients"] == pytest.approx(expected["integrated_gradients"], abs=1e-5)


def test_page_and_static_files(tiny_server):
    page = httpx.get(f"{tiny_server}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="review"' in page.text and "/static/app.js" in page.text
    for name in ("app.js", "style.css"):
        assert httpx.get(f"{tiny_server}/static/{name}").status_code == 200


LONG = "a" * 20_001


@pytest.mark.parametrize("path, body, status, message", [
    ("/predict", b'{"texts": []}', 422, "texts is empty"),
    ("/predict", b'{"texts": ["fine", 3]}', 422, "texts[1] must be a string"),
    ("/predict", b'{"texts": ["fine", null]}', 422, "texts[1] must be a string"),
    ("/predict", b'{"texts": "one string"}', 422, "texts must be a list of strings"),
    ("/predict", b'{"texts": ["unclosed"', 400, "not valid JSON"),
    ("/predict", b"[1, 2]", 422, "must be a JSON object"),
    ("/predict", b"{}", 422, "texts is required"),
    ("/predict", b'{"text": "one"}', 422, 'texts is required: send {"texts": ["a text", ...]}'),
    ("/explain", b'{"texts": ["one"]}', 422, 'text is required: send {"text": "a text"}'),
    ("/predict", b'{"texts": ["x"], "extra": 1}', 422, "unknown field extra"),
    ("/predict", b"", 400, "needs a JSON body"),
    ("/predict", json.dumps({"texts": [LONG]}).encode(), 422, "texts[0] has 20001 characters; the limit is 20000"),
    ("/predict", json.dumps({"texts": ["x"] * 257}).encode(), 422, "257 texts in one request; the limit is 256"),
    ("/explain", b'{"text": 5}', 422, "text must be a string"),
    ("/explain", b'{"text": "x", "integrated_gradients": "yes"}', 422, "integrated_gradients must be true or false"),
    ("/explain", json.dumps({"text": LONG}).encode(), 422, "text has 20001 characters"),
])
def test_bad_requests_get_clear_4xx(tiny_server, path, body, status, message):
    response = httpx.post(f"{tiny_server}{path}", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert message in response.json()["error"]


def test_wrong_method_and_path(tiny_server):
    assert httpx.get(f"{tiny_server}/predict").status_code == 405
    missing = httpx.get(f"{tiny_server}/nothing-here")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}


def raw_request(url: str, head: bytes, body_chunks: list[bytes] = ()) -> bytes:
    """Send raw bytes and return everything the server answers before closing (5 s at most)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as connection:
        connection.sendall(head)
        for chunk in body_chunks:
            connection.sendall(chunk)
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            data = connection.recv(65536)
            if not data:
                break
            received += data
    return received


def test_oversize_body_refused_before_it_is_read(server_factory, tiny_predictor):
    limits = ServeLimits(max_texts=4, max_text_chars=200, max_explain_chars=200, max_body_bytes=1000)
    url = server_factory(create_app(tiny_predictor, limits))
    # The declared length is over the limit and no body follows: an answer proves nothing was read.
    answer = raw_request(url, b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 50000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"request body is over 1000 bytes" in answer
    # Without a declared length (chunked), the body is refused once it passes the limit.
    chunk = b'{"texts": ["' + b"a" * 700
    chunked = [b"%x\r\n%s\r\n" % (len(chunk), chunk), b"%x\r\n%s\r\n" % (len(chunk), chunk)]
    answer = raw_request(url, b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n", chunked)
    assert answer.startswith(b"HTTP/1.1 413")
    # A body under the limit still works, and so does the server.
    response = httpx.post(f"{url}/predict", json={"texts": ["great"]})
    assert response.status_code == 200


def test_a_failing_model_call_is_a_500_not_a_crash(server_factory, tiny_predictor):
    def score(texts):
        if "explode" in texts:
            raise RuntimeError("model failure")
        return tiny_predictor.predict(texts)

    url = server_factory(create_app(tiny_predictor, score=score))
    failed = httpx.post(f"{url}/predict", json={"texts": ["explode"]})
    assert failed.status_code == 500 and "internal error" in failed.json()["error"]
    assert httpx.post(f"{url}/predict", json={"texts": ["great"]}).status_code == 200


def test_concurrent_requests_share_one_model_call(server_factory, tiny_predictor):
    """While one call runs, the requests that arrive queue up and are scored in one call."""
    release = threading.Event()
    calls: list[list[str]] = []

    def score(texts):
        calls.append(list(texts))
        if len(calls) == 1:
            release.wait(timeout=30)  # hold the first call until the others are queued
        return tiny_predictor.predict(texts)

    app = create_app(tiny_predictor, score=score)
    url = server_factory(app)
    texts = [f"review {i} " + ("great fun" if i % 2 else "awful mess") for i in range(16)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        first = pool.submit(httpx.post, f"{url}/predict", json={"texts": [texts[0]]}, timeout=60)
        deadline = time.monotonic() + 30
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        others = [pool.submit(httpx.post, f"{url}/predict", json={"texts": [text]}, timeout=60) for text in texts[1:]]
        while app.state.batcher.queued < 15 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        responses = [first.result()] + [future.result() for future in others]
    assert [len(call) for call in calls] == [1, 15]
    assert sorted(calls[1]) == sorted(texts[1:])
    expected = tiny_predictor.predict(texts)
    for response, prediction in zip(responses, expected):
        assert response.status_code == 200
        assert response.json()["predictions"][0]["probability"] == pytest.approx(prediction.probability, abs=1e-6)
    stats = httpx.get(f"{url}/health").json()["batching"]
    assert stats["model_calls"] == 2 and stats["requests"] == 16 and stats["largest_call_requests"] == 15


def test_large_groups_are_split_by_max_batch_texts(server_factory, tiny_predictor):
    release = threading.Event()
    calls: list[int] = []

    def score(texts):
        calls.append(len(texts))
        if len(calls) == 1:
            release.wait(timeout=30)
        return tiny_predictor.predict(texts)

    app = create_app(tiny_predictor, ServeLimits(max_texts=4, max_batch_texts=6), score=score)
    url = server_factory(app)
    with ThreadPoolExecutor(max_workers=5) as pool:
        first = pool.submit(httpx.post, f"{url}/predict", json={"texts": ["a"]}, timeout=60)
        deadline = time.monotonic() + 30
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        others = [pool.submit(httpx.post, f"{url}/predict", json={"texts": ["great"] * 4}, timeout=60)
                  for _ in range(3)]
        while app.state.batcher.queued < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        assert all(future.result().status_code == 200 for future in [first, *others])
    # Three requests of 4 texts with at most 6 texts per call: one request per call.
    assert calls == [1, 4, 4, 4]


def test_limits_are_validated():
    with pytest.raises(ValueError, match="max_batch_texts"):
        ServeLimits(max_texts=10, max_batch_texts=5)
    with pytest.raises(ValueError, match="max_texts"):
        ServeLimits(max_texts=0)


def test_cli_serve_missing_model(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nothing")]) == 2
    assert "error:" in capsys.readouterr().err


def test_cli_serve_busy_port(tiny_model_dir, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(tiny_model_dir), "--port", str(port)]) == 2
    assert f"error: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_cli_serve_subprocess(tiny_model_dir):
    """`rnnsent serve` in its own process answers over HTTP and stops on SIGTERM."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = str(Path(__file__).resolve().parents[2] / "src")
    environment = {**os.environ, "PYTHONPATH": source + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen([sys.executable, "-m", "rnnsent", "serve", str(tiny_model_dir), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stdout.read().decode()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        response = httpx.post(f"{url}/predict", json={"texts": ["great fun", "awful mess"]})
        assert [p["label"] for p in response.json()["predictions"]] == ["positive", "negative"]
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert f"http://127.0.0.1:{port}/" in output
