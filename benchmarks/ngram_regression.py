"""Fit only the stacked n-gram regression of a config and report its accuracy: a one-minute probe.

    python -m benchmarks.ngram_regression                                  # the best preset's branch
    python -m benchmarks.ngram_regression --set ngram_order=2 --set ngram_c=0.3

The regression is fitted exactly as `rnnsent train` fits it (same split, features and
objective); the validation accuracy is what a choice between settings may look at, the test
accuracy is printed for the record only.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rnnsent.config import build_config, resolve_ngram_fit
from rnnsent.data.cache import load_encoded
from rnnsent.data.download import resolve_source
from rnnsent.model.ngrams import NgramBranch
from rnnsent.training.ngram_regression import fit_ngram_regression
from rnnsent.training.tensors import Tensors, prepare_data


def accuracy(branch: NgramBranch, split: Tensors, batch_size: int = 2048) -> float:
    with torch.inference_mode():
        logits = torch.cat([branch(split.ids[start:start + batch_size]) for start in range(0, len(split), batch_size)])
    return round(float(((logits > 0).float() == split.labels).float().mean()), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="best")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting as in rnnsent's flags, e.g. ngram_c=0.3 or ngram-order=2")
    parser.add_argument("--data", help="data source (default: rnnsent's own lookup)")
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        try:
            overrides[name] = json.loads(value)
        except json.JSONDecodeError:
            overrides[name] = value
    try:
        config = build_config(args.preset, overrides)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    # This probe fits IMDB's sentiment labels, for which best's "auto" fit is the stacked one.
    if resolve_ngram_fit(config.model.ngram_fit, ordinal_labels=False) != "stacked":
        raise SystemExit("this probe fits a stacked n-gram branch: add --set ngram_fit=stacked and ngram_buckets")
    corpus = load_encoded(resolve_source(args.data), config.text, quiet=True)
    data = prepare_data(corpus, config)
    branch = NgramBranch(config.text.num_words, config.model.ngram_buckets, config.model.ngram_order, binary=True)
    started = time.perf_counter()
    stats = fit_ngram_regression(branch, data.train.ids, data.train.labels, config.model.ngram_c)
    result = {"settings": overrides, "features": stats["features"], "fit_seconds": round(time.perf_counter() - started, 1),
              "validation_accuracy": accuracy(branch, data.validation),
              "test_accuracy": accuracy(branch, Tensors.from_split(corpus.test, config))}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
