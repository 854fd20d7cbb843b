"""One benchmark case per process, so that each reports its own peak memory.

``python -m benchmarks.cases CASE '{"option": value}'`` prints one JSON object on its last line.
Every case first loads the encoded dataset (from the rnnsent cache) and warms up the imports
both sides share (torch's optimiser machinery, the compiled kernels' on-disk cache), so the
timed part is training or scoring alone.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _corpus(maxlen: int, padding: str = "pre", truncating: str = "pre"):
    from rnnsent.config import TextConfig
    from rnnsent.data.cache import load_encoded
    from rnnsent.data.download import resolve_source

    config = TextConfig(maxlen=maxlen, padding=padding, truncating=truncating)
    return load_encoded(resolve_source(None), config, quiet=True), config


def _warm_up() -> None:
    # Both sides build torch optimisers, whose first construction imports torch._dynamo.
    torch.optim.RMSprop([torch.nn.Parameter(torch.zeros(1))])
    from rnnsent.training.compiled_step import warm_up

    warm_up()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _train_rnnsent(settings: dict, padding: str) -> dict:
    """Train through rnnsent's Trainer (per-epoch test report and checkpoints included), timed."""
    from rnnsent.config import build_config, build_options, split_settings
    from rnnsent.training.pipeline import train_tensors
    from rnnsent.training.tensors import prepare_data

    recipe, run_options = split_settings(settings)
    config, options = build_config("seed", recipe), build_options(run_options)
    corpus, _ = _corpus(config.text.maxlen, padding, padding)
    data = prepare_data(corpus, config, options.limit)
    _warm_up()
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        result = train_tensors(config, options, data, Path(run_dir), log=lambda m: print(m, file=sys.stderr))
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "epoch_seconds": [row["seconds"] for row in result.history],
            "accuracy": result.history[-1]["test_accuracy"], "peak_mb": _peak_mb(), "train_reviews": len(data.train),
            "real_tokens": int(data.train.lengths.sum()) * config.train.epochs,
            "tokens": len(data.train) * config.text.maxlen * config.train.epochs}


def seed_rnnsent(options: dict) -> dict:
    """The seed preset, 10 epochs."""
    result = _train_rnnsent({"epochs": options.get("epochs", 10), "seed": options.get("seed", 0)}, "pre")
    return {**result, "tokens_per_second": result["tokens"] / result["seconds"]}


def seed_reference(options: dict) -> dict:
    """The plain PyTorch loop of benchmarks/reference.py on the same padded arrays."""
    from benchmarks.reference import seed_reference as run

    corpus, config = _corpus(30)
    train_ids, _ = corpus.train.padded(config)
    test_ids, _ = corpus.test.padded(config)
    _warm_up()
    epochs = options.get("epochs", 10)
    start = time.perf_counter()
    result = run(train_ids, corpus.train.labels, test_ids, corpus.test.labels, epochs=epochs, seed=options.get("seed", 0),
                 log=lambda m: print(m, file=sys.stderr))
    seconds = time.perf_counter() - start
    tokens = len(train_ids) * 30 * epochs
    return {"seconds": seconds, "epoch_seconds": result["epoch_seconds"], "accuracy": result["accuracy"],
            "tokens_per_second": tokens / seconds, "peak_mb": _peak_mb()}


def _large_settings(options: dict) -> dict:
    return {
        "maxlen": 400, "padding": "post", "truncating": "post", "cell": options.get("cell", "gru"),
        "embedding_dim": 64, "hidden_size": 128, "bidirectional": True, "pooling": "max",
        "recurrent_init": "default", "input_init_std": 0.0, "use_lengths": True, "bucket_by_length": True,
        "optimizer": "adam", "lr": 2e-3, "eps": 1e-8, "batch_size": 64, "epochs": options.get("epochs", 2),
        "limit": options.get("limit", 0), "report_test": True, "seed": options.get("seed", 0),
    }


def large_rnnsent(options: dict) -> dict:
    """A BiGRU/BiLSTM of 128 units at maxlen 400: length-bucketed batches, padding never computed."""
    result = _train_rnnsent(_large_settings(options), "post")
    return {**result, "tokens_per_second": result["real_tokens"] / result["seconds"]}


def large_reference(options: dict) -> dict:
    """The same network in the plain loop: every review padded to 400, a DataLoader, Adam."""
    from benchmarks.reference import RecurrentReference, train_reference
    from rnnsent.data.splits import limit_split

    settings = _large_settings(options)
    corpus, config = _corpus(400, "post", "post")
    train = limit_split(corpus.train, settings["limit"])
    test = limit_split(corpus.test, settings["limit"])
    train_ids, train_lengths = train.padded(config)
    test_ids, _ = test.padded(config)
    _warm_up()
    torch.manual_seed(settings["seed"])
    model = RecurrentReference(settings["cell"], 20000, 64, 128, bidirectional=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    start = time.perf_counter()
    result = train_reference(model, train_ids, train.labels, test_ids, test.labels, settings["epochs"], 64, optimizer,
                             settings["seed"], log=lambda m: print(m, file=sys.stderr))
    seconds = time.perf_counter() - start
    real_tokens = int(train_lengths.sum()) * settings["epochs"]
    return {"seconds": seconds, "epoch_seconds": result["epoch_seconds"], "accuracy": result["accuracy"],
            "tokens_per_second": real_tokens / seconds, "peak_mb": _peak_mb(), "train_reviews": len(train_ids)}


def _test_texts() -> tuple[list[str], np.ndarray]:
    from rnnsent.data.download import resolve_source
    from rnnsent.data.sources import read_corpus

    test = read_corpus(resolve_source(None)).test
    return test.texts, test.labels


def inference_api(options: dict) -> dict:
    """All test reviews as raw strings -> probabilities through ``rnnsent.load(...).predict``."""
    import rnnsent

    texts, labels = _test_texts()
    predictor = rnnsent.load(options["model"])
    predictor.predict(texts[:256])
    timings = []
    for _ in range(options.get("repeats", 3)):
        start = time.perf_counter()
        predictions = predictor.predict(texts)
        timings.append(time.perf_counter() - start)
    accuracy = float(np.mean([(p.label == "positive") == (y == "pos") for p, y in zip(predictions, labels)]))
    seconds = float(np.median(timings))
    return {"seconds": seconds, "reviews_per_second": len(texts) / seconds, "accuracy": accuracy, "peak_mb": _peak_mb()}


def inference_naive(options: dict) -> dict:
    """The same model run naively: one review at a time (tokenize, tensor, forward)."""
    import rnnsent

    texts, _ = _test_texts()
    count = options.get("count", 5000)
    predictor = rnnsent.load(options["model"])
    model, encoder = predictor.model, predictor.encoder
    start = time.perf_counter()
    with torch.no_grad():
        for text in texts[:count]:
            ids, _ = encoder.encode_batch([text])
            torch.sigmoid(model(torch.from_numpy(ids))[0])
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "reviews": count, "reviews_per_second": count / seconds, "peak_mb": _peak_mb()}


def inference_cli(options: dict) -> dict:
    """``rnnsent predict MODEL --file reviews.txt`` on all test reviews, one per line."""
    texts, _ = _test_texts()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "reviews.txt"
        path.write_text("".join(" ".join(text.split()) + "\n" for text in texts), encoding="utf-8")
        command = [sys.executable, "-m", "rnnsent", "predict", options["model"], "--file", str(path), "--json"]
        start = time.perf_counter()
        completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
        seconds = time.perf_counter() - start
    lines = completed.stdout.count(b"\n")
    assert lines == len(texts), (lines, len(texts))
    return {"seconds": seconds, "reviews_per_second": len(texts) / seconds, "process_start_included": True}


def _sentiment_reviews() -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """Raw train and test reviews with their labels (``neg``/``pos``), as arrays of strings."""
    from rnnsent.data.download import resolve_source
    from rnnsent.data.sources import read_corpus

    corpus = read_corpus(resolve_source(None))
    return corpus.train.texts, np.asarray(corpus.train.labels), corpus.test.texts, np.asarray(corpus.test.labels)


def _timed_rounds(systems: dict, repeats: int) -> dict[str, dict]:
    """Each system's ``run()`` once per round, in turn, ``repeats`` rounds: seconds, the last
    result, and the thread count rnnsent's default would pick (the free cores) as each run starts."""
    from rnnsent.threads import free_cores

    results = {name: {"seconds": [], "free_cores": []} for name in systems}
    for _ in range(repeats):
        for name, run in systems.items():
            results[name]["free_cores"].append(free_cores())
            start = time.perf_counter()
            results[name]["output"] = run()
            results[name]["seconds"].append(time.perf_counter() - start)
            print(f"    {name}: {results[name]['seconds'][-1]:.2f} s, load {os.getloadavg()[0]:.2f}", file=sys.stderr,
                  flush=True)
    return results


def inference_accurate(options: dict) -> dict:
    """The accurate presets' raw-text inference beside fastText with bigrams, on all test reviews.

    ``options["models"]`` maps a name (``best``, ``bigru``) to a model directory; ``limit``
    (0: all) takes every k-th review of each split instead, for a quick look. Each model
    runs through ``rnnsent.load(dir).predict(texts)`` as stored (float32; on the default
    threads, and on two), and int8-quantized (``quantize=True``); fastText (trained here on the training reviews, rnnsent's tokens,
    word bigrams) predicts from the tokens joined by spaces, as ``benchmarks/ratings.py``
    times it, and from the raw texts (rnnsent's tokenizer included). The systems alternate,
    ``repeats`` rounds. Each float32 model is also checked against its own (reference)
    forward on ``reference_reviews`` texts (every k-th): its speed and the largest probability
    difference.
    """
    import rnnsent
    from benchmarks.ratings import train_fasttext
    from rnnsent.model.scoring import predict_logits
    from rnnsent.text.tokenize import tokenize
    from rnnsent.threads import scoring_threads

    train_texts, train_labels, texts, labels = _sentiment_reviews()
    if options.get("limit"):  # every k-th review of each split, for a quick look
        train_step, test_step = max(1, len(train_texts) // options["limit"]), max(1, len(texts) // options["limit"])
        train_texts, train_labels = train_texts[::train_step][:options["limit"]], train_labels[::train_step][:options["limit"]]
        texts, labels = texts[::test_step][:options["limit"]], labels[::test_step][:options["limit"]]
    fast_text, _ = train_fasttext(train_texts, train_labels)
    lines = [" ".join(tokenize(text)) for text in texts]
    threads = options.get("threads") or None
    predictors = {}
    for name, path in options["models"].items():
        predictors[name] = rnnsent.load(path, threads=threads)
        if not threads and (os.cpu_count() or 1) >= 2:
            # The default threads are the free cores, which this process's own work soon takes
            # from the load average; two threads, asked for, show what the second core adds.
            predictors[f"{name}, 2 threads"] = rnnsent.load(path, threads=2)
        predictors[f"{name} int8"] = rnnsent.load(path, quantize=True, threads=threads)
    systems = {"fastText-bi (tokens given)": lambda: fast_text.predict(lines)[0],
               "fastText-bi (raw text)": lambda: fast_text.predict([" ".join(tokenize(text)) for text in texts])[0]}
    for name, predictor in predictors.items():
        predictor.predict(texts[:256])
        systems[name] = lambda predictor=predictor: predictor.predict(texts)
    fast_text.predict(lines[:256])
    rounds = _timed_rounds(systems, options.get("repeats", 3))
    report = {"reviews": len(texts), "load_average_at_start": options.get("load_average"), "systems": {}}
    for name, result in rounds.items():
        output = result.pop("output")
        if name.startswith("fastText"):
            positive = np.array([label[0] == "__label__pos" for label in output])
        else:
            positive = np.array([prediction.label == "positive" for prediction in output])
        seconds = float(np.median(result["seconds"]))
        report["systems"][name] = {"reviews_per_second": len(texts) / seconds, "seconds": result["seconds"],
                                   "free_cores": result["free_cores"],
                                   "accuracy": float(np.mean(positive == (labels == "pos")))}
    sample = texts[::max(1, len(texts) // options.get("reference_reviews", 2000))][:options.get("reference_reviews", 2000)]
    report["reference"] = {}
    for name in options["models"]:
        predictor = predictors[name]  # the reference forward on the default threads, as predict used them
        start = time.perf_counter()
        with torch.inference_mode(), scoring_threads(predictor.threads):
            ids, lengths = predictor.encoder.encode_batch(sample)
            expected = predictor.to_probabilities(predict_logits(predictor.model, ids, lengths, 256))
        seconds = time.perf_counter() - start
        difference = float(np.abs(predictor.probabilities(sample) - expected).max())
        report["reference"][name] = {"reviews": len(sample), "reviews_per_second": len(sample) / seconds,
                                     "max_probability_difference": difference}
    report["load_average_at_end"] = os.getloadavg()
    return report


CASES = {
    "seed_rnnsent": seed_rnnsent, "seed_reference": seed_reference,
    "large_rnnsent": large_rnnsent, "large_reference": large_reference,
    "inference_api": inference_api, "inference_naive": inference_naive, "inference_cli": inference_cli,
    "inference_accurate": inference_accurate,
}

if __name__ == "__main__":
    name, raw_options = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "{}")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    options = json.loads(raw_options)
    if options.get("threads"):
        torch.set_num_threads(options["threads"])
    print(json.dumps({**CASES[name](options), "threads": torch.get_num_threads()}))
