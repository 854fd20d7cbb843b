"""``make bench``: rnnsent against a plain PyTorch loop, side by side in one run.

Sections (each case runs in its own process; runs alternate so that machine noise hits both):
  seed       the seed recipe, 10 epochs: wall time, per epoch, tokens/s, peak memory, test accuracy
  inference  25,000 raw test reviews -> probabilities: Python API, `rnnsent predict --file`, naive
  large      a bidirectional GRU of 128 units at maxlen 400 (padding not computed by rnnsent)

Results go to benchmarks/results/latest.json and a Markdown table on stdout. Medians are quoted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def run_case(name: str, options: dict) -> dict:
    """Run one case in a fresh process and return its JSON result."""
    environment = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    completed = subprocess.run([sys.executable, "-m", "benchmarks.cases", name, json.dumps(options)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    if completed.returncode:
        raise SystemExit(f"benchmark case {name} failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    print(f"  {name}: {result.get('seconds', 0):.2f}s {json.dumps({k: v for k, v in result.items() if k != 'epoch_seconds'})}",
          file=sys.stderr, flush=True)
    return result


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def alternate(first: str, second: str, options: dict, repeats: int) -> tuple[list[dict], list[dict]]:
    """Run the two cases in turn; repeat ``r`` uses seed ``r`` on both sides."""
    a, b = [], []
    for repeat in range(repeats):
        a.append(run_case(first, {**options, "seed": repeat}))
        b.append(run_case(second, {**options, "seed": repeat}))
    return a, b


def summarise(runs: list[dict]) -> dict:
    keys = [key for key in runs[0] if isinstance(runs[0][key], (int, float)) and not isinstance(runs[0][key], bool)]
    return {"median": {key: median_of(runs, key) for key in keys}, "runs": runs}


def ensure_seed_model(path: Path) -> Path:
    if not (path / "manifest.json").exists():
        print(f"training a seed model into {path} for the inference benchmark", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "rnnsent", "train", "--preset", "seed", "--out", str(path), "--quiet"],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="seed,inference,large", help="comma-separated: seed, inference, large")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each seed/inference case (median quoted)")
    parser.add_argument("--large-epochs", type=int, default=2)
    parser.add_argument("--large-limit", type=int, default=0, help="train/test reviews for the large model (0: all)")
    parser.add_argument("--large-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads for every case (0: torch's default)")
    parser.add_argument("--model", type=Path, help="seed model directory for inference (default: train one)")
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    RESULTS.mkdir(parents=True, exist_ok=True)
    report: dict = {"threads": args.threads, "load_average_at_start": os.getloadavg(), "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                                "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M")}}
    lines = ["| benchmark | rnnsent | plain PyTorch | ratio |", "|---|---|---|---|"]

    if "seed" in sections:
        print("seed recipe, 10 epochs", file=sys.stderr)
        ours, theirs = alternate("seed_rnnsent", "seed_reference", {"epochs": 10, "threads": args.threads}, args.repeats)
        report["seed"] = {"rnnsent": summarise(ours), "reference": summarise(theirs)}
        a, b = report["seed"]["rnnsent"]["median"], report["seed"]["reference"]["median"]
        report["seed"]["speedup"] = b["seconds"] / a["seconds"]
        lines += [
            f"| seed, 10 epochs: wall time | {a['seconds']:.2f} s | {b['seconds']:.2f} s | {b['seconds'] / a['seconds']:.1f}x faster |",
            f"| seed: time per epoch (incl. test report) | {a['seconds'] / 10:.3f} s | {b['seconds'] / 10:.3f} s | |",
            f"| seed: training tokens/s | {a['tokens_per_second']:,.0f} | {b['tokens_per_second']:,.0f} | |",
            f"| seed: peak memory | {a['peak_mb']:.0f} MB | {b['peak_mb']:.0f} MB | |",
            f"| seed: test accuracy (median over seeds 0..{args.repeats - 1}) | {a['accuracy']:.4f} | {b['accuracy']:.4f} | {100 * (a['accuracy'] - b['accuracy']):+.2f} pt |",
        ]

    if "inference" in sections:
        print("raw-text inference, 25,000 test reviews", file=sys.stderr)
        model = str(ensure_seed_model(args.model or RESULTS / "seed-model"))
        options = {"model": model, "threads": args.threads}
        api = [run_case("inference_api", options) for _ in range(args.repeats)]
        cli = [run_case("inference_cli", options) for _ in range(args.repeats)]
        naive = [run_case("inference_naive", options) for _ in range(max(1, args.repeats // 2))]
        report["inference"] = {"api": summarise(api), "cli": summarise(cli), "naive": summarise(naive)}
        api_rate, cli_rate = median_of(api, "reviews_per_second"), median_of(cli, "reviews_per_second")
        naive_rate = median_of(naive, "reviews_per_second")
        lines += [
            f"| inference, Python API: reviews/s | {api_rate:,.0f} | {naive_rate:,.0f} (one at a time) | {api_rate / naive_rate:.0f}x |",
            f"| inference, `rnnsent predict --file` (process start included): reviews/s | {cli_rate:,.0f} | | |",
        ]

    if "large" in sections:
        print(f"BiGRU 128 at maxlen 400, {args.large_epochs} epochs", file=sys.stderr)
        options = {"epochs": args.large_epochs, "limit": args.large_limit, "threads": args.threads}
        ours, theirs = alternate("large_rnnsent", "large_reference", options, args.large_repeats)
        report["large"] = {"options": options, "rnnsent": summarise(ours), "reference": summarise(theirs)}
        a, b = report["large"]["rnnsent"]["median"], report["large"]["reference"]["median"]
        epoch_a = statistics.median(s for run in ours for s in run["epoch_seconds"])
        epoch_b = statistics.median(s for run in theirs for s in run["epoch_seconds"])
        report["large"]["epoch_ratio"] = epoch_a / epoch_b
        lines += [
            f"| BiGRU-128, maxlen 400: time per epoch | {epoch_a:.1f} s | {epoch_b:.1f} s | {epoch_a / epoch_b:.2f}x the time |",
            f"| BiGRU-128: real tokens/s (training) | {a['tokens_per_second']:,.0f} | {b['tokens_per_second']:,.0f} | |",
            f"| BiGRU-128: peak memory | {a['peak_mb']:.0f} MB | {b['peak_mb']:.0f} MB | |",
            f"| BiGRU-128: test accuracy after {args.large_epochs} epochs | {a['accuracy']:.4f} | {b['accuracy']:.4f} | {100 * (a['accuracy'] - b['accuracy']):+.2f} pt |",
        ]

    table = "\n".join(lines)
    report["table"] = table
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table)
    print(f"\n(written to {RESULTS / 'latest.json'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
