"""Load check for ``rnnsent serve``: N concurrent clients on loopback for a bounded time.

    python benchmarks/load_serve.py --model runs/seed                 # starts the server itself
    python benchmarks/load_serve.py --url http://127.0.0.1:8000       # an already running server
    python benchmarks/load_serve.py --model runs/seed --clients 16 --seconds 10 --json results.json

Each client keeps one HTTP/1.1 connection open and sends ``POST /predict`` with one review
(``--texts-per-request`` to change that) as soon as the previous answer arrived. The clients
are plain asyncio sockets, so the load generator itself costs little CPU next to the
server. Reported: requests per second, latency percentiles, errors (any answer but 200, or a
broken connection), and how the server grouped the requests into model calls. With
``--model``, the throughput of the in-process batch API on the same reviews is reported too,
for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

REVIEWS = [
    "This movie was wonderful, I loved every minute of it.",
    "What a waste of time. The plot was predictable and the acting was awful.",
    "The cast is great and the first hour is fun, but the ending is a boring mess.",
    "One of the best films of the year: moving, funny and beautifully shot.",
    "I fell asleep halfway through. Dull, slow and far too long.",
    "Not bad, not great. A decent way to spend a rainy afternoon with the family.",
    "The director clearly had a vision, and the soundtrack is superb, though the script lets it down "
    "in the second act where the characters stop making any sense at all.",
    "Terrible.",
    "An absolute masterpiece; the performances are unforgettable and the story stays with you for days.",
    "I wanted to like it, I really did, but the jokes fall flat and the pacing is all over the place.",
    "Great special effects, wooden dialogue, and a villain you will forget before the credits roll.",
    "A charming little film with a big heart. Highly recommended.",
]


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, int(-(-fraction * len(sorted_values) // 1)))  # ceil(fraction * n), at least 1
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def client(host: str, port: int, deadline: float, bodies: list[bytes], latencies: list[float],
                 errors: list[str], offset: int) -> None:
    """Send requests back to back on one keep-alive connection until ``deadline``."""
    reader = writer = None
    sent = offset
    while time.perf_counter() < deadline:
        body = bodies[sent % len(bodies)]
        sent += 1
        request = (f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            status = int(status_line.split()[1]) if status_line else 0
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
            errors.append(f"{type(error).__name__}: {error}")
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        elapsed = time.perf_counter() - started
        if status != 200:
            errors.append(f"HTTP {status}")
        else:
            latencies.append(elapsed)
    if writer is not None:
        writer.close()


async def run_load(host: str, port: int, clients: int, seconds: float, texts_per_request: int) -> dict:
    bodies = [json.dumps({"texts": [REVIEWS[(start + i) % len(REVIEWS)] for i in range(texts_per_request)]}).encode()
              for start in range(len(REVIEWS))]
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(client(host, port, deadline, bodies, latencies, errors, index) for index in range(clients)))
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "clients": clients, "seconds": round(wall, 2), "texts_per_request": texts_per_request,
        "requests": len(latencies), "errors": len(errors), "error_examples": sorted(set(errors))[:5],
        "requests_per_second": round(len(latencies) / wall, 1),
        "texts_per_second": round(len(latencies) * texts_per_request / wall, 1),
        "latency_ms": {name: round(1000 * percentile(ordered, fraction), 2)
                       for name, fraction in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0))},
    }


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def wait_for_server(url: str, process: subprocess.Popen | None, timeout: float = 120.0) -> None:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"error: the server exited with code {process.returncode}")
        try:
            get_json(url + "/health")
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"error: no answer from {url} within {timeout:.0f}s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def batch_api_rate(model: str, seconds: float = 3.0) -> float:
    """Texts per second of ``Predictor.predict`` on batches of 1024 of the same reviews."""
    import torch

    from rnnsent.inference.predictor import Predictor

    torch.set_num_threads(1)
    predictor = Predictor.load(model)
    texts = [REVIEWS[i % len(REVIEWS)] for i in range(1024)]
    predictor.predict(texts)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        predictor.predict(texts)
        count += len(texts)
    return count / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", help="model directory: start 'rnnsent serve' on a free loopback port")
    target.add_argument("--url", help="base URL of a running server")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default: 16)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the measured run (default: 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured run first (default: 1 s)")
    parser.add_argument("--texts-per-request", type=int, default=1, help="reviews per request (default: 1)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.texts_per_request < 1:
        parser.error("--clients, --seconds and --texts-per-request must be positive")

    process = None
    if args.model:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        source = str(Path(__file__).resolve().parents[1] / "src")
        environment = {**os.environ, "PYTHONPATH": source + os.pathsep + os.environ.get("PYTHONPATH", "")}
        process = subprocess.Popen([sys.executable, "-m", "rnnsent", "serve", args.model, "--port", str(port)],
                                   env=environment)
    else:
        url = args.url.rstrip("/")
    try:
        wait_for_server(url, process)
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        if args.warmup > 0:
            asyncio.run(run_load(host, port, args.clients, args.warmup, args.texts_per_request))
        before = get_json(url + "/health")["batching"]
        result = asyncio.run(run_load(host, port, args.clients, args.seconds, args.texts_per_request))
        after = get_json(url + "/health")["batching"]
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    calls = after["model_calls"] - before["model_calls"]
    requests = after["requests"] - before["requests"]
    result["server_model_calls"] = calls
    result["server_requests_per_model_call"] = round(requests / calls, 2) if calls else 0.0
    if args.model:
        result["batch_api_texts_per_second"] = round(batch_api_rate(args.model), 1)
    latency = result["latency_ms"]
    print(f"{result['clients']} clients, {result['seconds']} s, {result['texts_per_request']} text(s) per request")
    print(f"requests: {result['requests']}  ({result['requests_per_second']}/s)  errors: {result['errors']}")
    print(f"latency ms: p50 {latency['p50']}  p90 {latency['p90']}  p99 {latency['p99']}  max {latency['max']}")
    print(f"server: {calls} model calls, {result['server_requests_per_model_call']} requests per call")
    if "batch_api_texts_per_second" in result:
        print(f"batch API in-process (1 thread): {result['batch_api_texts_per_second']} texts/s")
    if result["error_examples"]:
        print("errors seen: " + "; ".join(result["error_examples"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
