"""The accuracy table of docs/accuracy.md: train each configuration through the Python API and tabulate it.

    python -m benchmarks.ablation                       # every row, seed 0, then `best` for seeds 1 and 2
    python -m benchmarks.ablation --rows best --seeds 0 1 2
    python -m benchmarks.ablation --rows ngrams-joint --inference

Each row is one ``rnnsent.train(preset, out=DIR, **settings)`` call (the command line's
``rnnsent train --preset ... --out DIR`` is the same call), run in a fresh process of its own,
one after the other (they would slow each other down on 2 cores). The table reports the test
accuracy (the run's final report on all 25,000 test reviews; the test set plays no part in
any choice within a run), ``train_seconds`` (data already encoded and cached; the word vectors
and the n-gram regression included), the parameter count and, with ``--inference``, raw test
reviews per second through ``rnnsent.load(dir).predict(texts)``. Results are appended to
benchmarks/results/ablation.json and the table goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# best before language-model pretraining (and so with one learning rate for every layer):
# each row below spells out what it leaves out, so that it trains what it trained when it
# was measured, whatever best has become since.
UNPRETRAINED = {"lm_steps": 0, "encoder_lr_scale": 1.0}
# Before validation held out whole films it drew random reviews.
RANDOM_VALIDATION = {**UNPRETRAINED, "validation_by": "random"}
# best before distillation (rnnsent 0.2.0's best): no unlabelled batches, 2 epochs.
UNDISTILLED = {**RANDOM_VALIDATION, "distill_weight": 0.0, "unlabelled_batch_size": 0, "epochs": 2}
# Row name -> (what it is, the preset, its settings). Order is the table's order.
ROWS: dict[str, tuple[str, str, dict]] = {
    "seed": ("the notebook's vanilla RNN", "seed", {}),
    "bigru": ("recurrent model alone (BiGRU 64, max+mean pooling, 4 epochs)", "bigru", {}),
    "bigru-vectors": ("+ word vectors from train + unlabelled reviews, 2 epochs", "best",
                      {**RANDOM_VALIDATION, "ngram_buckets": 0, "epochs": 2}),
    "ngrams-joint": ("+ unigrams and hashed bigrams added to the logit, trained jointly (an earlier best recipe)",
                     "best", {**RANDOM_VALIDATION, "ngram_fit": "joint", "ngram_order": 2, "ngram_buckets": 2_000_000,
                              "ngram_lr_scale": 100, "epochs": 2}),
    "stacked-bigrams": ("+ NB-weighted 1-2-gram regression instead, stacked and blended on validation",
                        "best", {**UNDISTILLED, "ngram_order": 2}),
    "stacked-no-vectors": ("the same with 1-3-grams, without the word vectors", "best",
                           {**UNDISTILLED, "pretrain_window": 0}),
    "stacked": ("stacked 1-3-gram regression + BiGRU with word vectors (best before distillation)", "best", UNDISTILLED),
    "distilled-2-epochs": ("+ the regression distilled into the BiGRU on unlabelled reviews, 2 epochs", "best",
                           {**RANDOM_VALIDATION, "epochs": 2}),
    "distilled": ("the same, 4 epochs, validation by film", "best", {**UNPRETRAINED, "epochs": 4}),
    "pretrained": ("+ the encoder pretrained as language models for 4,000 steps first, 3 epochs", "best",
                   {"encoder_lr_scale": 1.0}),
    "best": ("best: the same, the pretrained layers stepping at 3 times the head's rate", "best", {}),
}


def command_line(preset: str, settings: dict) -> str:
    """The ``rnnsent train`` command that makes the same call."""
    flags = [f"--{name.replace('_', '-')} {value}" for name, value in settings.items()]
    return " ".join(["rnnsent train --preset", preset, *flags])


def _train_in_this_process(preset: str, settings: dict, out: str, data: str | None) -> dict:
    import rnnsent

    return dict(rnnsent.train(preset, data, out, progress=False, verbose=False, **settings).metrics)


def train(row: str, seed: int, out: Path, data: str | None, threads: int) -> dict:
    """Train one row in a fresh process; return its metrics plus the command and wall time."""
    _, preset, settings = ROWS[row]
    settings = {**settings, "seed": seed, **({"threads": threads} if threads else {})}
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        metrics = pool.apply(_train_in_this_process, (preset, settings, str(out), data))
    wall = time.perf_counter() - started
    shown = command_line(preset, {k: v for k, v in ROWS[row][2].items()})
    return {"row": row, "seed": seed, "command": shown, "wall_seconds": round(wall, 1), **metrics}


def inference_rate(out: Path, texts: list[str]) -> float:
    """Raw reviews per second through the Python API (encoding included), after a warm-up."""
    import rnnsent

    predictor = rnnsent.load(out)
    predictor.predict(texts[:256])
    started = time.perf_counter()
    predictor.predict(texts)
    return len(texts) / (time.perf_counter() - started)


def table(results: list[dict]) -> str:
    """One Markdown line per row: accuracy per seed (mean and spread when several), medians of the rest."""
    lines = ["| configuration | command | seeds | test accuracy | recurrent part alone | training time | parameters | "
             "inference |", "|---|---|---|---|---|---|---|---|"]
    for row in ROWS:
        runs = [result for result in results if result["row"] == row]
        if not runs:
            continue
        accuracies = [run["accuracy"] for run in runs]
        accuracy = ", ".join(f"{value:.4f}" for value in accuracies)
        if len(runs) > 1:
            accuracy += f" (mean {statistics.mean(accuracies):.4f}, spread {max(accuracies) - min(accuracies):.4f})"
        minutes = statistics.median(run["train_seconds"] for run in runs) / 60
        rates = [run["reviews_per_second"] for run in runs if "reviews_per_second" in run]
        rate = f"{statistics.median(rates):,.0f} reviews/s" if rates else ""
        parts = [run["part_accuracy"]["recurrent"] for run in runs if "part_accuracy" in run]
        recurrent = ", ".join(f"{value:.4f}" for value in parts)
        if len(parts) > 1:
            recurrent += f" (mean {statistics.mean(parts):.4f})"
        command = runs[0]["command"]
        seeds = ", ".join(str(run["seed"]) for run in runs)
        lines.append(f"| {ROWS[row][0]} | `{command}` | {seeds} | {accuracy} | {recurrent} | {minutes:.1f} min | "
                     f"{runs[0]['parameters']:,} | {rate} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), help="rows to run (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: 0, and 0 1 2 for best)")
    parser.add_argument("--data", help="data source (default: rnnsent's own lookup)")
    parser.add_argument("--threads", type=int, default=0, help="--threads for training (0: all cores)")
    parser.add_argument("--inference", action="store_true", help="also time inference on the raw test reviews")
    parser.add_argument("--runs", default=str(RESULTS / "ablation-runs"), help="where the trained models go")
    args = parser.parse_args()
    texts = None
    if args.inference:
        from rnnsent.data.download import resolve_source
        from rnnsent.data.sources import read_corpus

        texts = read_corpus(resolve_source(args.data)).test.texts
    results = []
    for row in args.rows or list(ROWS):
        for seed in args.seeds or ([0, 1, 2] if row == "best" else [0]):
            out = Path(args.runs) / f"{row}-s{seed}"
            result = train(row, seed, out, args.data, args.threads)
            if texts is not None:
                result["reviews_per_second"] = round(inference_rate(out, texts), 1)
            print(f"{row} seed {seed}: test accuracy {result['accuracy']:.4f}, "
                  f"train {result['train_seconds'] / 60:.1f} min, wall {result['wall_seconds'] / 60:.1f} min",
                  file=sys.stderr, flush=True)
            results.append(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "ablation.json", "a", encoding="utf-8") as handle:
        for result in results:
            handle.write(json.dumps(result) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
