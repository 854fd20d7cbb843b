"""``make bench``: rnnsent against a plain PyTorch loop, side by side in one run.

Sections (each case runs in its own process; runs alternate so that machine noise hits both):
  seed       the seed recipe, 10 epochs: wall time, per epoch, tokens/s, peak memory, test accuracy
  inference  25,000 raw test reviews -> probabilities: Python API, `rnnsent predict --file`, naive
  large      a bidirectional GRU of 128 units at maxlen 400 (padding not computed by rnnsent)
  startup    each command's start-up: `rnnsent --help`, `summary`, `predict MODEL "text"` (the
             seed and the best model) against `python -c "import torch"`, alternated in one run
  whole      `rnnsent train --preset seed --out DIR` against `python benchmarks/reference.py`, each
             a whole process (start-up, data from the cache, training, saving), alternated
  busy       `rnnsent predict BEST --file` on a few thousand reviews with one busy loop per core
             running: the default threads against --threads 1 and --threads 2
  accurate   the accurate presets (best, bigru), float32 and int8, through the Python API on the
             25,000 raw test reviews, beside fastText with word bigrams in the same process:
             reviews/s, the ratio to fastText, test accuracy, and the largest probability
             difference from the model's own forward

Results go to benchmarks/results/latest.json and a Markdown table on stdout. Medians are quoted.
"""

from __future__ import annotations

import argparse
import compileall
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
SECTIONS = ("seed", "inference", "large", "startup", "whole", "busy", "accurate")


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


def ensure_model(path: Path, preset: str) -> Path:
    """A model of ``preset`` at ``path``, trained there first (minutes for best and bigru) if absent."""
    if not (path / "manifest.json").exists():
        print(f"training a {preset} model into {path}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "rnnsent", "train", "--preset", preset, "--out", str(path), "--quiet"],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return path


def accurate_table(result: dict) -> list[str]:
    """The accurate section's Markdown table: each system's reviews/s, its ratio to fastText-bi, accuracy."""
    systems = result["systems"]
    peer = systems["fastText-bi (tokens given)"]["reviews_per_second"]
    lines = [f"| system ({result['reviews']:,} raw test reviews) | reviews/s | x fastText-bi | test accuracy | "
             "max prob. diff. |",
             "|---|---|---|---|---|"]
    for name, row in systems.items():
        difference = result["reference"].get(name, {}).get("max_probability_difference")
        lines.append(f"| {name} | {row['reviews_per_second']:,.0f} | {row['reviews_per_second'] / peer:.3f} | "
                     f"{row['accuracy']:.4f} | {'' if difference is None else f'{difference:.1e}'} |")
    for name, row in result["reference"].items():
        lines.append(f"| {name}, the model's own forward ({row['reviews']:,} reviews) | {row['reviews_per_second']:,.0f} | "
                     f"{row['reviews_per_second'] / peer:.3f} | | |")
    return lines


def timed(command: list[str], environment: dict | None = None) -> float:
    """Wall seconds of one whole process (its output discarded); fails loudly if it fails."""
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=environment or bench_environment())
    seconds = time.perf_counter() - start
    if completed.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    return seconds


def bench_environment() -> dict:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def side_by_side(commands: dict[str, list[str]], repeats: int) -> dict[str, dict]:
    """Run each command once per round, in turn, ``repeats`` rounds; medians and every run."""
    runs: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            runs[name].append(timed(command))
            print(f"  {name}: {runs[name][-1]:.2f}s", file=sys.stderr, flush=True)
    return {name: {"median": statistics.median(values), "runs": values} for name, values in runs.items()}


def _review_file(path: Path, count: int) -> Path:
    from rnnsent.data.download import resolve_source
    from rnnsent.data.sources import read_corpus

    texts = read_corpus(resolve_source(None)).test.texts
    step = max(1, len(texts) // count)
    path.write_text("".join(" ".join(text.split()) + "\n" for text in texts[::step][:count]), encoding="utf-8")
    return path


def busy_loops(count: int, seconds: float) -> list[subprocess.Popen]:
    """``count`` processes spinning on a core each, every one ending by itself after ``seconds``."""
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--repeats", type=int, default=3, help="runs of each seed/inference case (median quoted)")
    parser.add_argument("--large-epochs", type=int, default=2)
    parser.add_argument("--large-limit", type=int, default=0, help="train/test reviews for the large model (0: all)")
    parser.add_argument("--large-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads for every case (0: torch's default)")
    parser.add_argument("--model", type=Path, help="seed model directory for inference (default: train one)")
    parser.add_argument("--busy-model", type=Path, help="model for the busy section (default: the best model)")
    parser.add_argument("--busy-reviews", type=int, default=3000, help="reviews scored in the busy section")
    parser.add_argument("--best-model", type=Path, help="best model for the startup, busy and accurate sections (default: train one)")
    parser.add_argument("--bigru-model", type=Path, help="bigru model for the accurate section (default: train one)")
    parser.add_argument("--accurate-limit", type=int, default=0,
                        help="accurate section: every k-th of N train and N test reviews (0: all)")
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    RESULTS.mkdir(parents=True, exist_ok=True)
    # The package's bytecode, as pip writes it when installing (an editable checkout has none
    # until a first run writes it, and never where PYTHONDONTWRITEBYTECODE is set).
    compileall.compile_dir(str(ROOT / "src" / "rnnsent"), quiet=1)
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
        model = str(ensure_model(args.model or RESULTS / "seed-model", "seed"))
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

    if "startup" in sections:
        print("start-up of each command", file=sys.stderr)
        model = str(ensure_model(args.model or RESULTS / "seed-model", "seed"))
        best_model = str(args.best_model or ensure_model(RESULTS / "best-model", "best"))
        rnnsent = [sys.executable, "-m", "rnnsent"]
        startup = side_by_side({
            "import torch": [sys.executable, "-c", "import torch"],
            "rnnsent --help": [*rnnsent, "--help"],
            "rnnsent summary": [*rnnsent, "summary"],
            "rnnsent predict SEED text": [*rnnsent, "predict", model, "A wonderful film."],
            "rnnsent predict BEST text": [*rnnsent, "predict", best_model, "A wonderful film."],
        }, args.repeats)
        report["startup"] = startup
        torch_import = startup["import torch"]["median"]
        for name, row in startup.items():
            over = "" if name == "import torch" else f"{row['median'] - torch_import:+.2f} s"
            lines.append(f"| start-up: `{name}` | {row['median']:.2f} s | | {over} |")

    if "whole" in sections:
        print("seed recipe as whole processes: rnnsent train against the reference script", file=sys.stderr)
        ensure_model(RESULTS / "seed-model", "seed")  # encodes the data into the cache for both sides
        out = RESULTS / "whole-run"
        whole = side_by_side({
            "rnnsent train --preset seed": [sys.executable, "-m", "rnnsent", "train", "--preset", "seed", "--out",
                                            str(out), "--quiet"],
            "python benchmarks/reference.py": [sys.executable, str(ROOT / "benchmarks" / "reference.py")],
        }, args.repeats)
        report["whole"] = whole
        ours, theirs = whole["rnnsent train --preset seed"]["median"], whole["python benchmarks/reference.py"]["median"]
        report["whole"]["ratio"] = ours / theirs
        lines.append(f"| seed recipe, whole process (start-up and saving included) | {ours:.2f} s | {theirs:.2f} s | "
                     f"{ours / theirs:.3f}x the time |")

    if "busy" in sections:
        cores = os.cpu_count() or 1
        print(f"predict --file under {cores} busy loops", file=sys.stderr)
        model = str(args.busy_model or args.best_model or ensure_model(RESULTS / "best-model", "best"))
        reviews = _review_file(RESULTS / "busy-reviews.txt", args.busy_reviews)
        base = [sys.executable, "-m", "rnnsent", "predict", model, "--file", str(reviews), "--quiet"]
        commands = {"default": base, "--threads 1": [*base, "--threads", "1"]}
        if cores >= 2:
            commands["--threads 2"] = [*base, "--threads", "2"]
        loops = busy_loops(cores, 1800)
        try:
            time.sleep(2)
            busy = side_by_side(commands, args.repeats)
        finally:
            for loop in loops:
                loop.kill()
                loop.wait()
        best = min(row["median"] for name, row in busy.items() if name != "default")
        busy["default_over_best"] = busy["default"]["median"] / best
        report["busy"] = {"model": model, "reviews": args.busy_reviews, "busy_loops": cores, **busy}
        for name in commands:
            lines.append(f"| predict --file, {args.busy_reviews} reviews, {cores} busy loops: {name} | "
                         f"{busy[name]['median']:.2f} s | | {busy[name]['median'] / best:.2f}x the best |")

    if "accurate" in sections:
        print("accurate presets against fastText-bi on the raw test reviews", file=sys.stderr)
        models = {preset: str(getattr(args, f"{preset}_model") or ensure_model(RESULTS / f"{preset}-model", preset))
                  for preset in ("best", "bigru")}
        result = run_case("inference_accurate", {"models": models, "threads": args.threads, "repeats": args.repeats,
                                                 "limit": args.accurate_limit, "load_average": os.getloadavg()})
        report["accurate"] = {"models": models, **result}
        # A table of its own, after the first one when that has rows.
        lines = [*lines, "", *accurate_table(result)] if len(lines) > 2 else accurate_table(result)

    table = "\n".join(lines)
    report["table"] = table
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table)
    print(f"\n(written to {RESULTS / 'latest.json'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
