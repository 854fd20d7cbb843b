"""The service under hostile or careless clients: huge or slow headers, big bodies, bodies that
are not JSON, slow explanations, clients that leave, and the API key.

Tests that measure the server run `rnnsent serve` in its own process on a free loopback port,
so that the clients here never share its interpreter; tests that need to make the model slow
run it in this process with a slowed-down predictor. Every loop is bounded in count and time.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from rnnsent.cli.main import _api_key, build_parser, main
from rnnsent.inference.predictor import Predictor
from rnnsent.serve.app import ServeLimits, create_app, exposure_warning, request_bytes

API_KEY = "s3cret-key_for-tests"


# ----------------------------------------------------------------------------- helpers


def start_serve_process(model_dir: Path, *flags: str, env: dict[str, str] | None = None):
    """``rnnsent serve MODEL FLAGS`` in its own process on a free loopback port: ``(url, process)``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = str(Path(__file__).resolve().parents[2] / "src")
    environment = {**os.environ, "PYTHONPATH": source + os.pathsep + os.environ.get("PYTHONPATH", "")}
    environment.pop("RNNSENT_API_KEY", None)
    environment.update(env or {})
    process = subprocess.Popen([sys.executable, "-m", "rnnsent", "serve", str(model_dir), "--host", "127.0.0.1",
                                "--port", str(port), *flags],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"rnnsent serve stopped: {process.stdout.read().decode()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return url, process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("rnnsent serve did not start")
        time.sleep(0.2)


def stop_serve_process(process) -> str:
    process.terminate()
    try:
        return process.communicate(timeout=30)[0].decode()
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate(timeout=10)[0].decode()


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    """`rnnsent serve` with a 1 MiB body limit (and 16 texts a request, so that the limits agree)."""
    url, process = start_serve_process(tiny_model_dir, "--max-texts", "16", "--max-body-bytes", str(1024 * 1024))
    yield url
    stop_serve_process(process)


@pytest.fixture(scope="module")
def keyed_server(tiny_model_dir):
    """`rnnsent serve` with an API key from RNNSENT_API_KEY and 2 s limits for sending headers and a body."""
    url, process = start_serve_process(tiny_model_dir, "--header-timeout-seconds", "2", "--body-timeout-seconds", "2",
                                       env={"RNNSENT_API_KEY": API_KEY})
    yield url, process
    stop_serve_process(process)


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def read_answer(connection: socket.socket, seconds: float = 10) -> bytes:
    """Everything the server sends until it closes (``seconds`` at most)."""
    connection.settimeout(seconds)
    received = b""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            data = connection.recv(65536)
            if not data:
                break
            received += data
    except (socket.timeout, ConnectionResetError):
        pass
    return received


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


def timed_predicts(url: str, count: int, headers: dict[str, str] | None = None) -> list[float]:
    latencies = []
    with httpx.Client(timeout=10, headers=headers) as client:
        for index in range(count):
            started = time.perf_counter()
            response = client.post(f"{url}/predict", json={"texts": [f"great fun {index}"]})
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
    return latencies


def one_line_error(response) -> str:
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"]
    return body["error"]


# ----------------------------------------------------------------------------- request line and headers


def test_a_huge_header_neither_stalls_others_nor_is_read(server):
    """While clients send 128 MB headers, /predict answers at once, and no such header is read whole."""
    head = b"GET /health HTTP/1.1\r\nHost: test\r\nX-Filler: "
    filler = b"a" * (1024 * 1024)
    outcomes: list[str] = []
    stop = threading.Event()

    def send_huge_headers():
        deadline = time.monotonic() + 30
        for _ in range(20):  # each attempt sends up to 128 MiB on a new connection
            if stop.is_set() or time.monotonic() > deadline:
                return
            try:
                with socket.create_connection(address(server), timeout=10) as connection:
                    connection.sendall(head)
                    for _ in range(128):
                        connection.sendall(filler)
                outcomes.append("sent whole")
            except OSError as error:
                outcomes.append(type(error).__name__)

    sender = threading.Thread(target=send_huge_headers, daemon=True)
    sender.start()
    time.sleep(0.3)
    try:
        latencies = timed_predicts(server, 40)
    finally:
        stop.set()
        sender.join(timeout=60)
    assert not sender.is_alive()
    assert outcomes and "sent whole" not in outcomes, outcomes
    print(f"\n/predict with 128 MB headers in flight: median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms, "
          f"max {max(latencies) * 1000:.1f} ms over {len(latencies)} requests; {len(outcomes)} huge headers cut off")
    assert max(latencies) < 1.0


def test_headers_over_64_kib_get_a_431_and_within_it_work(server):
    with socket.create_connection(address(server), timeout=10) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Filler: " + b"a" * 100_000 + b"\r\n\r\n")
        answer = read_answer(connection)
    assert answer.startswith(b"HTTP/1.1 431")
    assert b"headers are over 65536 bytes" in answer
    # 60 KB of headers is within the limit, in one header or in many.
    assert httpx.get(f"{server}/health", headers={"X-Filler": "a" * 60_000}).status_code == 200
    many = {f"X-Filler-{i}": "b" * 1000 for i in range(50)}
    assert httpx.get(f"{server}/health", headers=many).status_code == 200


def test_headers_not_sent_in_time_get_a_408_and_slow_ones_within_it_work(keyed_server):
    url, _ = keyed_server
    with socket.create_connection(address(url), timeout=10) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n")  # and never the blank line
        started = time.monotonic()
        answer = read_answer(connection, seconds=10)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"did not arrive within 2 s" in answer and 1.5 < waited < 6
    # A head sent in pieces over one second is still within the limit.
    with socket.create_connection(address(url), timeout=10) as connection:
        request = b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        for start in range(0, len(request), 6):
            connection.sendall(request[start:start + 6])
            time.sleep(0.1)
        assert read_answer(connection).startswith(b"HTTP/1.1 200")


def test_a_body_not_sent_in_time_gets_a_408_and_a_slow_one_within_it_works(keyed_server):
    url, _ = keyed_server
    body = b'{"texts": ["a great film"]}'
    head = (f"POST /predict HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body) + 40}\r\n\r\n").encode()
    with socket.create_connection(address(url), timeout=10) as connection:
        connection.sendall(head + body)  # and never the 40 bytes more it declared
        started = time.monotonic()
        answer = read_answer(connection, seconds=10)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"the request body did not arrive within 2 s" in answer and 1.5 < waited < 6
    # A body sent in pieces over one second is within the limit.
    head = head.replace(str(len(body) + 40).encode(), str(len(body)).encode()).replace(
        b"Host: test\r\n", b"Host: test\r\nConnection: close\r\n")
    with socket.create_connection(address(url), timeout=10) as connection:
        connection.sendall(head)
        for start in range(0, len(body), 4):
            connection.sendall(body[start:start + 4])
            time.sleep(0.12)
        assert read_answer(connection).startswith(b"HTTP/1.1 200")


def test_many_slow_clients_delay_no_one(keyed_server):
    """200 connections sending a byte a second: others are served at once, and each slow one gets a 408."""
    url, _ = keyed_server
    sockets = [socket.create_connection(address(url), timeout=5) for _ in range(200)]
    try:
        request = b"POST /predict HTTP/1.1\r\nHost: test\r\n"
        latencies = []
        for second in range(4):  # 4 s in all: past the 2 s limit
            for connection in sockets:
                try:
                    connection.send(request[second:second + 1])
                except OSError:
                    pass
            latencies += timed_predicts(url, 5, headers={"Authorization": f"Bearer {API_KEY}"})
            time.sleep(max(0.0, 1.0 - sum(latencies[-5:])))
        assert max(latencies) < 1.0
        answers = []
        for connection in sockets[:20]:
            answers.append(read_answer(connection, seconds=5)[:12])
        assert answers == [b"HTTP/1.1 408"] * 20
    finally:
        for connection in sockets:
            connection.close()


# ----------------------------------------------------------------------------- bodies


def test_python_clients_read_the_413_for_an_oversize_body(server):
    body = json.dumps({"texts": ["a" * 5_000_000]}).encode()
    host, port = address(server)
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 413
        assert "request body is over 1048576 bytes" in json.loads(response.read())["error"]
    finally:
        connection.close()
    request = urllib.request.Request(f"{server}/predict", data=body, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    assert "request body is over" in json.loads(refused.value.read())["error"]
    assert httpx.post(f"{server}/predict", json={"texts": ["great"]}).status_code == 200


def test_the_default_body_limit_holds_a_full_request():
    limits = ServeLimits()
    ascii_request = json.dumps({"texts": ['"quoted"\n' * 2000] * limits.max_texts}).encode()  # escapes: 2 bytes each
    wide_request = json.dumps({"texts": ["\U0001F600" * limits.max_text_chars] * limits.max_texts},
                              ensure_ascii=False).encode()  # 4 bytes a character
    assert len(ascii_request) <= limits.max_body_bytes and len(wide_request) <= limits.max_body_bytes
    assert limits.max_body_bytes == request_bytes(256, 20_000, 4)
    # A limit given must hold at least a full request of ASCII text.
    with pytest.raises(ValueError, match="cannot hold a full /predict request"):
        ServeLimits(max_body_bytes=2 * 1024 * 1024)
    with pytest.raises(ValueError, match="cannot hold a full /explain request"):
        ServeLimits(max_texts=1, max_text_chars=10, max_explain_chars=5000, max_body_bytes=1000)


def test_a_full_size_request_is_served(tiny_server):
    texts = ["great fun " * 2000] * 256  # 256 texts of 20,000 characters: 5.1 MB, over the old 2 MiB default
    response = httpx.post(f"{tiny_server}/predict", json={"texts": texts}, timeout=120)
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 256


def test_cli_refuses_limits_that_disagree(tiny_model_dir, monkeypatch, capsys):
    def never_serve(*args, **kwargs):
        raise ValueError("the limits were not checked")

    monkeypatch.setattr(Predictor, "load", staticmethod(never_serve))  # the check comes first; never listen long
    assert main(["serve", str(tiny_model_dir), "--port", "0", "--max-body-bytes", str(2 * 1024 * 1024)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: max_body_bytes 2097152 cannot hold") and error.count("\n") == 1


@pytest.mark.parametrize("body, content_type, status, message", [
    (b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json", 400, "nested too deeply"),
    (b'{"texts": ["x"], "n": ' + b"7" * 5000 + b"}", "application/json", 400, "a number of 5000 digits"),
    (b'{"texts": ["caf\xe9"]}', "application/json", 400, "not UTF-8 (byte 0xe9 at position 15)"),
    (b'{"texts": ["caf\xe9"]}', "application/json; charset=latin-1", 415, "must be UTF-8 JSON, not charset=latin-1"),
])
def test_bodies_that_cannot_be_read_get_a_clear_error(server, body, content_type, status, message):
    response = httpx.post(f"{server}/predict", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert message in one_line_error(response)


def test_utf8_charset_and_ascii_bodies_still_work(server):
    for content_type in ("application/json; charset=utf-8", "application/json; charset=UTF8", "application/json"):
        response = httpx.post(f"{server}/predict", content='{"texts": ["café great"]}'.encode(),
                              headers={"Content-Type": content_type})
        assert response.status_code == 200


# ----------------------------------------------------------------------------- explanations


class SlowPredictor(Predictor):
    """Explanations of texts with "slow" in them take ``delay`` seconds more; records what it explained."""

    delay = 3.0
    explained: list[str] = []

    def explain(self, text, integrated_gradients=False, steps=32):
        SlowPredictor.explained.append(text)
        if "slow" in text:
            time.sleep(self.delay)
        return super().explain(text, integrated_gradients=integrated_gradients, steps=steps)


@pytest.fixture
def slow_predictor(tiny_predictor):
    SlowPredictor.explained = []
    return SlowPredictor(tiny_predictor.artifact)


def test_predict_keeps_answering_while_an_explanation_runs(server_factory, slow_predictor):
    url = server_factory(create_app(slow_predictor))
    with ThreadPoolExecutor(max_workers=1) as pool:
        started = time.monotonic()
        explanation = pool.submit(httpx.post, f"{url}/explain", json={"text": "a slow great film"}, timeout=30)
        deadline = time.monotonic() + 10
        while not SlowPredictor.explained and time.monotonic() < deadline:
            time.sleep(0.01)
        latencies = timed_predicts(url, 50)
        assert not explanation.done()  # all 50 ran while the explanation did
        assert explanation.result().status_code == 200
        assert time.monotonic() - started >= 2
    print(f"\n/predict with a 3 s explanation in flight: p99 {p99(latencies) * 1000:.1f} ms, "
          f"max {max(latencies) * 1000:.1f} ms over {len(latencies)} requests")
    assert p99(latencies) < 0.5


def test_explanations_past_their_deadline_get_a_503(server_factory, slow_predictor):
    SlowPredictor.delay = 1.5
    try:
        app = create_app(slow_predictor, ServeLimits(explain_timeout_seconds=0.5))
        url = server_factory(app)
        with ThreadPoolExecutor(max_workers=2) as pool:
            first = pool.submit(httpx.post, f"{url}/explain", json={"text": "slow one"}, timeout=30)
            time.sleep(0.2)
            second = pool.submit(httpx.post, f"{url}/explain", json={"text": "great"}, timeout=30)
            for response in (first.result(), second.result()):
                assert response.status_code == 503
                assert "did not finish within 0.5 s; retry with a shorter text" in one_line_error(response)
        # The second never started: it waited behind the first until its deadline.
        assert SlowPredictor.explained == ["slow one"] and app.state.explain_worker.dropped == 1
        time.sleep(1.5)  # the first finishes in the background
        assert httpx.post(f"{url}/explain", json={"text": "great"}).status_code == 200
    finally:
        SlowPredictor.delay = 3.0


def test_explain_texts_have_their_own_length_limit(server_factory, tiny_predictor):
    url = server_factory(create_app(tiny_predictor, ServeLimits(max_explain_chars=100)))
    response = httpx.post(f"{url}/explain", json={"text": "a" * 101})
    assert response.status_code == 422
    assert one_line_error(response) == "text has 101 characters; the limit is 100 for /explain; explain a shorter part of it"
    assert httpx.post(f"{url}/explain", json={"text": "a" * 100}).status_code == 200
    assert httpx.post(f"{url}/predict", json={"texts": ["a" * 101]}).status_code == 200
    assert httpx.get(f"{url}/model").json()["limits"]["max_explain_chars"] == 100


def send_and_leave(url: str, path: str, body: dict) -> None:
    """Send a whole request and disconnect without waiting for the answer."""
    data = json.dumps(body).encode()
    with socket.create_connection(address(url), timeout=5) as connection:
        connection.sendall(b"POST %s HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(data), data))


def test_queued_predictions_of_clients_that_left_are_dropped(server_factory, tiny_predictor):
    release = threading.Event()
    calls: list[list[str]] = []

    def score(texts):
        calls.append(list(texts))
        if len(calls) == 1:
            release.wait(timeout=30)
        return tiny_predictor.predict(texts)

    app = create_app(tiny_predictor, score=score)
    url = server_factory(app)
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(httpx.post, f"{url}/predict", json={"texts": ["first"]}, timeout=30)
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        send_and_leave(url, "/predict", {"texts": ["gone"]})
        while app.state.batcher.queued < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the server sees the connection close
        release.set()
        assert first.result().status_code == 200
    assert httpx.post(f"{url}/predict", json={"texts": ["last"]}).status_code == 200
    assert calls == [["first"], ["last"]]
    assert httpx.get(f"{url}/health").json()["batching"]["dropped_requests"] == 1


def test_queued_explanations_of_clients_that_left_are_dropped(server_factory, slow_predictor):
    SlowPredictor.delay = 1.0
    try:
        app = create_app(slow_predictor)
        url = server_factory(app)
        with ThreadPoolExecutor(max_workers=1) as pool:
            first = pool.submit(httpx.post, f"{url}/explain", json={"text": "slow one"}, timeout=30)
            deadline = time.monotonic() + 10
            while not SlowPredictor.explained and time.monotonic() < deadline:
                time.sleep(0.01)
            send_and_leave(url, "/explain", {"text": "gone"})
            assert first.result().status_code == 200
        assert httpx.post(f"{url}/explain", json={"text": "last"}).status_code == 200
        assert SlowPredictor.explained == ["slow one", "last"] and app.state.explain_worker.dropped == 1
    finally:
        SlowPredictor.delay = 3.0


def test_explanations_match_the_model_while_predictions_run(tiny_server, tiny_predictor):
    """Explanations (integrated gradients hook the model's modules) and predictions at the same time stay right."""
    texts = [f"great fun and a boring mess {i}" for i in range(8)]
    expected_predictions = [p.probability for p in tiny_predictor.predict(texts)]
    expected = tiny_predictor.explain(texts[0], integrated_gradients=True).to_dict()
    with ThreadPoolExecutor(max_workers=4) as pool:
        explanations = [pool.submit(httpx.post, f"{tiny_server}/explain",
                                    json={"text": texts[0], "integrated_gradients": True}, timeout=30) for _ in range(6)]
        predictions = [pool.submit(httpx.post, f"{tiny_server}/predict", json={"texts": texts}, timeout=30)
                       for _ in range(12)]
        for future in predictions:
            got = [p["probability"] for p in future.result().json()["predictions"]]
            assert got == pytest.approx(expected_predictions, abs=1e-6)
        for future in explanations:
            body = future.result().json()
            assert body["integrated_gradients"] == pytest.approx(expected["integrated_gradients"], abs=1e-5)
            assert body["trajectory"] == pytest.approx(expected["trajectory"], abs=1e-6)


# ----------------------------------------------------------------------------- API key


def test_with_an_api_key_only_health_the_page_and_the_api_docs_are_open(keyed_server):
    url, _ = keyed_server
    assert httpx.get(f"{url}/health").status_code == 200
    assert httpx.get(f"{url}/").status_code == 200
    assert httpx.get(f"{url}/static/app.js").status_code == 200
    # The API's description holds nothing secret, and Swagger UI needs it to offer "Authorize".
    for path in ("/docs", "/openapi.json", "/static/docs/swagger-ui-bundle.js"):
        assert httpx.get(f"{url}{path}").status_code == 200, path
    for method, path in [("POST", "/predict"), ("POST", "/explain"), ("GET", "/model"), ("POST", "/openapi.json"),
                         ("GET", "/docs/oauth2-redirect"), ("GET", "/nothing-here")]:
        response = httpx.request(method, f"{url}{path}", json={"texts": ["great"]} if method == "POST" else None)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert "needs an API key" in one_line_error(response)
    wrong = httpx.post(f"{url}/predict", json={"texts": ["great"]}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "the API key is wrong" in one_line_error(wrong)
    basic = httpx.post(f"{url}/predict", json={"texts": ["great"]}, headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401 and "must be Bearer <key>" in one_line_error(basic)
    right = {"Authorization": f"Bearer {API_KEY}"}
    assert httpx.post(f"{url}/predict", json={"texts": ["great"]}, headers=right).status_code == 200
    assert httpx.post(f"{url}/explain", json={"text": "great"}, headers=right).status_code == 200
    assert httpx.get(f"{url}/model", headers=right).status_code == 200


def test_a_python_client_without_the_key_reads_the_401(keyed_server):
    url, _ = keyed_server
    host, port = address(url)
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("POST", "/predict", body=b'{"texts": ["' + b"a" * 3_000_000 + b'"]}',
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 401 and "needs an API key" in json.loads(response.read())["error"]
    finally:
        connection.close()


def test_the_page_sends_the_key(keyed_server):
    url, _ = keyed_server
    script = httpx.get(f"{url}/static/app.js").text
    assert "Authorization = `Bearer ${key}`" in script  # on /explain and /model, from #key=KEY or a prompt
    assert "window.location.hash" in script and "window.prompt" in script


def test_api_key_sources(tmp_path, monkeypatch):
    parse = build_parser().parse_args
    monkeypatch.delenv("RNNSENT_API_KEY", raising=False)
    assert _api_key(parse(["serve", "m"])) is None
    monkeypatch.setenv("RNNSENT_API_KEY", "from-default")
    assert _api_key(parse(["serve", "m"])) == "from-default"
    monkeypatch.setenv("MY_KEY", "from-named")
    assert _api_key(parse(["serve", "m", "--api-key-env", "MY_KEY"])) == "from-named"
    (tmp_path / "key").write_text("from-file\n")
    assert _api_key(parse(["serve", "m", "--api-key-file", str(tmp_path / "key")])) == "from-file"
    with pytest.raises(ValueError, match="MY_OTHER_KEY.*empty or not set"):
        _api_key(parse(["serve", "m", "--api-key-env", "MY_OTHER_KEY"]))
    with pytest.raises(ValueError, match="cannot read --api-key-file"):
        _api_key(parse(["serve", "m", "--api-key-file", str(tmp_path / "missing")]))
    (tmp_path / "spaced").write_text("two words")
    with pytest.raises(ValueError, match="printable ASCII"):
        _api_key(parse(["serve", "m", "--api-key-file", str(tmp_path / "spaced")]))


def test_listening_beyond_loopback_without_a_key_warns():
    assert exposure_warning("127.0.0.1", False) is None and exposure_warning("::1", False) is None
    assert exposure_warning("0.0.0.0", True) is None
    for host in ("0.0.0.0", "::", "192.168.1.20"):
        warning = exposure_warning(host, False)
        assert warning and f"listening on {host}, beyond this machine, without an API key" in warning
        assert "\n" not in warning


def test_cli_serve_warns_on_stderr_beyond_loopback(tiny_model_dir, monkeypatch, capsys):
    """The warning is printed once, on stderr, before the model loads (stopped there, nothing listens)."""
    import rnnsent.serve.app as app_module

    listened = []

    def fake_listen(host, port):
        listened.append(host)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        return type("Bound", (), {"getsockname": lambda self: ("0.0.0.0", 8000), "close": sock.close})()

    def stop_loading(path):
        raise ValueError("stopped before loading")

    monkeypatch.setattr(app_module, "_listen", fake_listen)
    monkeypatch.setattr(app_module.Predictor, "load", staticmethod(stop_loading))
    monkeypatch.delenv("RNNSENT_API_KEY", raising=False)
    assert main(["serve", str(tiny_model_dir), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert listened == ["0.0.0.0"]
    assert err.splitlines()[0].startswith("warning: listening on 0.0.0.0, beyond this machine, without an API key")
