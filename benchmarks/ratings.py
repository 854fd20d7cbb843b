"""IMDB star ratings (8 classes: 1-4 and 7-10 stars), rnnsent against two peers, side by side in one run.

    python -m benchmarks.ratings                       # rnnsent's best and bigru presets, TF-IDF + LR, fastText
    python -m benchmarks.ratings --rnnsent best        # one preset only
    python -m benchmarks.ratings --limit 2000          # a quick look on a stratified subset

Every system trains on the same 25,000 training reviews and is scored on the same 25,000 test
reviews, labelled by the rating in their file names (``ID_RATING.txt``):

- rnnsent: ``rnnsent.train(preset, labels="rating")``, as ``rnnsent train --labels rating``;
- scikit-learn: TF-IDF over word 1-2-grams (sublinear tf, min_df 2) and a multinomial logistic
  regression (C chosen on a held-out tenth of the training reviews from 1, 3 and 10);
- fastText supervised with word bigrams (``fasttext-numpy2``; 2 threads, 10 epochs, lr 0.5,
  Keras-style lower-casing and punctuation splitting as rnnsent's tokenizer does).

Reported per system: test accuracy, macro-F1, mean absolute error in stars, training seconds
and raw test reviews per second. Results go to benchmarks/results/ratings.json and a Markdown
table to stdout. Needs the ``bench`` extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def load_reviews(data: str | None, limit: int) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """Raw train and test reviews with their star ratings (the --limit subset is stratified and fixed)."""
    from rnnsent.config import DataConfig
    from rnnsent.data.download import resolve_source
    from rnnsent.data.sources import read_corpus
    from rnnsent.data.splits import limit_indices

    corpus = read_corpus(resolve_source(data), data=DataConfig(labels="rating"))
    splits = []
    for split in (corpus.train, corpus.test):
        chosen = limit_indices(split.strata(), limit)
        splits += [[split.texts[i] for i in chosen], np.array([int(split.labels[i]) for i in chosen])]
    return splits[0], splits[1], splits[2], splits[3]


def scores(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """Accuracy, macro-F1 and MAE in stars of predicted ratings."""
    from rnnsent.metrics import per_class_scores

    names = sorted(set(truth.tolist()))
    index = {name: i for i, name in enumerate(names)}
    confusion = np.zeros((len(names), len(names)), dtype=np.int64)
    for t, p in zip(truth, predicted):
        if p in index:
            confusion[index[t], index[p]] += 1
    per_class = per_class_scores(confusion, [str(n) for n in names])
    return {"accuracy": float((truth == predicted).mean()),
            "macro_f1": float(np.mean([s["f1"] for s in per_class.values()])),
            "mae": float(np.abs(truth - predicted).mean())}


def tfidf_logistic_regression(train_texts, train_labels, test_texts) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from rnnsent.text.tokenize import tokenize

    started = time.perf_counter()
    vectorizer = TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None, ngram_range=(1, 2),
                                 sublinear_tf=True, min_df=2)
    features = vectorizer.fit_transform(train_texts)
    fit_rows, held_rows = train_test_split(np.arange(len(train_texts)), test_size=0.1, random_state=0,
                                           stratify=train_labels)
    best_c, best_accuracy = 1.0, -1.0
    for c in (1.0, 3.0, 10.0):
        model = LogisticRegression(C=c, max_iter=1000).fit(features[fit_rows], train_labels[fit_rows])
        accuracy = float((model.predict(features[held_rows]) == train_labels[held_rows]).mean())
        if accuracy > best_accuracy:
            best_c, best_accuracy = c, accuracy
    model = LogisticRegression(C=best_c, max_iter=1000).fit(features, train_labels)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    predicted = model.predict(vectorizer.transform(test_texts))
    rate = len(test_texts) / (time.perf_counter() - started)
    return {"predicted": predicted, "train_seconds": seconds, "reviews_per_second": rate, "note": f"C={best_c}"}


def train_fasttext(train_texts, train_labels):
    """fastText supervised with word bigrams on rnnsent's tokens, labels as ``__label__<label>``: ``(model, seconds)``."""
    import fasttext

    from rnnsent.text.tokenize import tokenize

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "train.txt"
        path.write_text("".join(f"__label__{label} {' '.join(tokenize(text))}\n"
                                for text, label in zip(train_texts, train_labels)), encoding="utf-8")
        started = time.perf_counter()
        model = fasttext.train_supervised(str(path), wordNgrams=2, epoch=10, lr=0.5, thread=2, verbose=0)
        return model, time.perf_counter() - started


def fasttext_bigrams(train_texts, train_labels, test_texts) -> dict:
    from rnnsent.text.tokenize import tokenize

    model, seconds = train_fasttext(train_texts, train_labels)
    lines = [" ".join(tokenize(text)) for text in test_texts]
    started = time.perf_counter()
    labels, _ = model.predict(lines)
    rate = len(lines) / (time.perf_counter() - started)
    predicted = np.array([int(label[0].replace("__label__", "")) for label in labels])
    return {"predicted": predicted, "train_seconds": seconds, "reviews_per_second": rate, "note": "wordNgrams 2"}


def _rnnsent_in_this_process(preset: str, data: str | None, limit: int, out: str, test_texts: list[str]) -> dict:
    import rnnsent

    started = time.perf_counter()
    model = rnnsent.train(preset, data, out, labels="rating", progress=False, verbose=False,
                          **({"limit": limit} if limit else {}))
    seconds = time.perf_counter() - started
    model.predict(test_texts[:256])
    started = time.perf_counter()
    predictions = model.predict(test_texts)
    rate = len(test_texts) / (time.perf_counter() - started)
    return {"predicted": [int(p.label) for p in predictions], "train_seconds": model.metrics["train_seconds"],
            "wall_seconds": seconds, "reviews_per_second": rate, "note": f"preset {preset}"}


def rnnsent_preset(preset: str, data: str | None, limit: int, out: Path, test_texts: list[str]) -> dict:
    """One rnnsent preset in a fresh process (its own memory and threads), timed."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result = pool.apply(_rnnsent_in_this_process, (preset, data, limit, str(out), test_texts))
    result["predicted"] = np.array(result["predicted"])
    return result


def table(rows: list[dict]) -> str:
    lines = ["| system | test accuracy | macro-F1 | MAE (stars) | training | inference |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['system']} ({row['note']}) | {row['accuracy']:.4f} | {row['macro_f1']:.4f} | "
                     f"{row['mae']:.3f} | {row['train_seconds'] / 60:.1f} min | {row['reviews_per_second']:,.0f} reviews/s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rnnsent", nargs="*", default=["best", "bigru"], help="rnnsent presets (default: best bigru)")
    parser.add_argument("--peers", nargs="*", default=["tfidf", "fasttext"], help="peers (default: tfidf fasttext)")
    parser.add_argument("--data", help="the aclImdb source (default: rnnsent's own lookup)")
    parser.add_argument("--limit", type=int, default=0, help="a stratified subset of N train and N test reviews")
    parser.add_argument("--runs", default=str(RESULTS / "ratings-runs"), help="where rnnsent's models go")
    args = parser.parse_args()
    train_texts, train_labels, test_texts, test_labels = load_reviews(args.data, args.limit)
    print(f"{len(train_texts)} training and {len(test_texts)} test reviews, load {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    peers = {"tfidf": ("TF-IDF 1-2-grams + logistic regression", tfidf_logistic_regression),
             "fasttext": ("fastText supervised, bigrams", fasttext_bigrams)}
    for name in args.peers:
        system, run = peers[name]
        result = run(train_texts, train_labels, test_texts)
        rows.append({"system": system, **scores(test_labels, result.pop("predicted")), **result})
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    for preset in args.rnnsent:
        result = rnnsent_preset(preset, args.data, args.limit, Path(args.runs) / preset, test_texts)
        rows.append({"system": "rnnsent", **scores(test_labels, result.pop("predicted")), **result})
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "limit": args.limit, "load_average": os.getloadavg(), "rows": rows}
    with open(RESULTS / "ratings.json", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
