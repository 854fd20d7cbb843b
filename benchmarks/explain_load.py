"""With a maximal and three abandoned /explain requests in flight, time 60 /predict requests.

    python benchmarks/explain_load.py MODEL_DIR PORT      # a real `rnnsent serve` on 127.0.0.1:PORT
"""
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

MODEL, PORT = sys.argv[1], int(sys.argv[2])
server = subprocess.Popen([sys.executable, "-m", "rnnsent", "serve", MODEL, "--port", str(PORT)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
url = f"http://127.0.0.1:{PORT}"
for _ in range(600):
    try:
        urllib.request.urlopen(url + "/health", timeout=1).read(); break
    except Exception:
        time.sleep(0.5)
review = ("The acting was wonderful but the plot dragged on and on, a dull mess at times. " * 70)[:5000]

def post(path, body, timeout=60):
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    started = time.perf_counter()
    try:
        urllib.request.urlopen(request, timeout=timeout).read()
        status = 200
    except urllib.error.HTTPError as error:
        status = error.code
    except Exception:
        status = -1
    return status, time.perf_counter() - started

def abandoned():
    with socket.create_connection(("127.0.0.1", PORT)) as sock:
        body = json.dumps({"text": review}).encode()
        sock.sendall(b"POST /explain HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        time.sleep(0.2)  # then hang up before the answer

explain_results = []
threads = [threading.Thread(target=lambda: explain_results.append(post("/explain", {"text": review, "integrated_gradients": True})))]
for _ in range(3):
    threads.append(threading.Thread(target=abandoned))
for t in threads:
    t.start()
time.sleep(1.0)
latencies = []
for _ in range(60):
    status, seconds = post("/predict", {"texts": ["A wonderful, moving film."]}, timeout=30)
    assert status == 200, status
    latencies.append(seconds)
for t in threads:
    t.join()
server.terminate(); server.wait(10)
latencies.sort()
print(json.dumps({"predict_p50_ms": round(1000 * statistics.median(latencies), 1),
                  "predict_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
                  "predict_max_ms": round(1000 * latencies[-1], 1),
                  "explain": [(s, round(t, 1)) for s, t in explain_results]}))
