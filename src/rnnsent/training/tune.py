"""Hyperparameter search with Optuna: ``rnnsent tune`` and ``rnnsent.tune``.

Every trial is a normal training run into ``OUT/trials/NNN`` whose recipe is the base recipe
(a preset plus the settings the caller fixed) with the searched settings on top. Trials are
chosen on the validation split only (one is forced when the recipe has none); the test split
is scored once, for the winner, at the end. Trial 0 is the base recipe itself (enqueued), so
the winner's validation score is never worse than the base recipe's.

The study lives in ``OUT/study.sqlite`` (Optuna's RDB storage): the same command run again
continues it, without repeating a finished trial; a trial cut short by Ctrl-C is run again.

Layout of ``OUT``::

    study.sqlite    the Optuna study (every trial, its settings, scores per epoch and state)
    trials/NNN/     each trial's model directory (trials/NNN.log: its training log)
    trials.csv      one row per trial: state, validation score, seconds, settings
    trials.png      validation score against trial (with matplotlib)
    best/           the winner's model directory, with its test metrics
    best.json       the winner's recipe: ``rnnsent train --config OUT/best.json`` reproduces it
    summary.json    metric, the base and best validation scores, the winner's test metrics, wall time
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rnnsent.artifact.files import write_json_atomic
from rnnsent.artifact.lock import run_lock
from rnnsent.config import RunConfig, RunOptions, build_config, field_owner
from rnnsent.errors import MissingExtraError, UsageError

TUNE_EXTRA_MESSAGE = "rnnsent tune needs optuna: pip install 'rnnsent[tune]'"
METRICS = {"accuracy": "maximize", "macro_f1": "maximize", "mae": "minimize", "log_loss": "minimize"}
FORCED_VALIDATION_SPLIT = 0.1
STUDY_NAME = "rnnsent-tune"
NGRAM_BUCKETS = 1 << 20  # the n-gram branch's size when the search turns it on
Log = Callable[[str], None]


def require_tune_extra():
    """The optuna module, or :class:`MissingExtraError` naming the extra to install."""
    try:
        import optuna
    except ImportError:
        raise MissingExtraError(TUNE_EXTRA_MESSAGE) from None
    return optuna


def parse_duration(text: str | float | int) -> float:
    """Seconds in a duration: ``"90s"``, ``"2m"``, ``"1h"``, ``"1h30m"``, or a number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        value = str(text).strip().lower()
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms]?)", value)
        if not value or not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([hms]?)", "", value).strip():
            raise UsageError(f"--budget must be a duration such as 90s, 20m or 1h; got {text!r}")
        seconds = sum(float(number) * {"h": 3600, "m": 60, "s": 1, "": 1}[unit] for number, unit in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"--budget must be a positive duration such as 90s, 20m or 1h; got {text!r}")
    return seconds


# ----------------------------------------------------------------------------- the search space


def _covering(low: float, high: float, value: float) -> tuple[float, float]:
    """A range widened to hold the base recipe's value, so that trial 0 lies inside it."""
    return min(low, value), max(high, value)


def _choices(options: tuple, value: Any) -> list:
    return list(options) if value in options else [*options, value]


def search_space(base: RunConfig, task: str = "binary") -> dict[str, dict[str, Any]]:
    """The searched settings with their ranges: ``name -> {kind, low, high, log} or {kind, choices}``.

    Each range holds the base recipe's own value. The stacked n-gram regression is searched for
    binary tasks only (the one its fit supports)."""
    m, t, x = base.model, base.train, base.text
    ngram_modes = ("off", "joint", "stacked") if task == "binary" else ("off", "joint")
    space: dict[str, dict[str, Any]] = {
        "cell": {"kind": "categorical", "choices": _choices(("simple", "lstm", "gru"), m.cell)},
        "hidden_size": {"kind": "int", "range": _covering(4, 128, m.hidden_size), "log": True},
        "embedding_dim": {"kind": "int", "range": _covering(8, 128, m.embedding_dim), "log": True},
        "pooling": {"kind": "categorical", "choices": _choices(("last", "max", "mean", "maxmean", "attention"), m.pooling)},
        "embedding_dropout": {"kind": "float", "range": _covering(0.0, 0.5, m.embedding_dropout), "log": False},
        "dropout": {"kind": "float", "range": _covering(0.0, 0.5, m.dropout), "log": False},
        "optimizer": {"kind": "categorical", "choices": _choices(("rmsprop", "adam"), t.optimizer)},
        "lr": {"kind": "float", "range": _covering(1e-4, 3e-2, t.lr), "log": True},
        # The embedding's and recurrent layers' rate as a multiple of the head's: pretrained
        # layers need a faster one to adapt (docs/accuracy.md).
        "encoder_lr_scale": {"kind": "float", "range": _covering(0.3, 10.0, t.encoder_lr_scale), "log": True},
        "epochs": {"kind": "int", "range": (1, max(2 * t.epochs, 4)), "log": False},
        "maxlen": {"kind": "int", "range": _covering(16, 400, x.maxlen), "log": True},
        "class_weights": {"kind": "categorical", "choices": _choices(("none", "balanced"), t.class_weights)},
        # The n-gram branch: off, learned jointly with the network, or a stacked regression;
        # its order, and its strength (the joint fit's learning-rate scale, the stacked fit's C).
        "ngram": {"kind": "categorical", "choices": _choices(ngram_modes, _ngram_mode(base))},
        "ngram_order": {"kind": "int", "range": (1, 3), "log": False, "when": ("ngram", ("joint", "stacked", "ordinal"))},
        "ngram_lr_scale": {"kind": "float", "range": _covering(1.0, 1000.0, m.ngram_lr_scale), "log": True,
                           "when": ("ngram", ("joint",))},
        "ngram_c": {"kind": "float", "range": _covering(0.01, 100.0, m.ngram_c), "log": True,
                    "when": ("ngram", ("stacked", "ordinal"))},
    }
    return space


# Each searched name and the recipe settings it decides (a setting the caller fixed is not searched).
DECIDES = {"ngram": ("ngram_buckets", "ngram_fit")}


def _ngram_mode(config: RunConfig) -> str:
    return "off" if not config.model.ngram_buckets else config.model.ngram_fit


def base_params(base: RunConfig, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The base recipe in the search space's terms: the settings of trial 0."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        when = spec.get("when")
        if when is not None and params.get(when[0]) not in when[1]:
            continue
        params[name] = _ngram_mode(base) if name == "ngram" else _recipe_value(base, name)
    return params


def _recipe_value(config: RunConfig, name: str) -> Any:
    return getattr(getattr(config, field_owner()[name]), name)


def active_space(space: dict[str, dict[str, Any]], fixed: set[str]) -> dict[str, dict[str, Any]]:
    """The space without the settings the caller fixed."""
    return {name: spec for name, spec in space.items() if not ({name, *DECIDES.get(name, ())} & fixed)}


def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Draw one trial's settings from ``space`` (conditional settings only where they apply)."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        when = spec.get("when")
        if when is not None and when[0] in space and params.get(when[0]) not in when[1]:
            continue
        if spec["kind"] == "categorical":
            params[name] = trial.suggest_categorical(name, spec["choices"])
        elif spec["kind"] == "int":
            params[name] = trial.suggest_int(name, int(spec["range"][0]), int(spec["range"][1]), log=spec["log"])
        else:
            params[name] = trial.suggest_float(name, float(spec["range"][0]), float(spec["range"][1]), log=spec["log"])
    return params


def recipe_overrides(params: dict[str, Any], base: RunConfig) -> dict[str, Any]:
    """Searched settings as recipe overrides (the n-gram mode becomes buckets and fit)."""
    overrides = {name: value for name, value in params.items() if name != "ngram"}
    if "ngram" in params:
        if params["ngram"] == "off":
            overrides["ngram_buckets"] = 0
        else:
            overrides["ngram_buckets"] = base.model.ngram_buckets or NGRAM_BUCKETS
            overrides["ngram_fit"] = params["ngram"]
    return overrides


# ----------------------------------------------------------------------------- the study


@dataclass
class TuneResult:
    """What :func:`tune` produced."""

    out: Path
    best_trial: int
    best_value: float
    base_value: float | None
    test_metrics: dict[str, Any]
    wall_seconds: float
    summary: dict[str, Any] = field(default_factory=dict)


class _BudgetSpent(Exception):
    """Raised from a trial's epoch hook once the budget is spent (the trial is then pruned)."""


def tune(source: Path, out: Path, *, budget: str | float = "20m", preset: str | None = None, metric: str = "accuracy",
         trials: int | None = None, settings: dict[str, Any] | None = None, options: RunOptions | None = None,
         log: Log = print) -> TuneResult:
    """Search recipes for ``source`` into ``out`` for at most ``budget``; see the module's docstring."""
    from rnnsent.config import build_options
    from rnnsent.training.pipeline import fit_to_labels

    optuna = require_tune_extra()
    started = time.perf_counter()
    budget_seconds = parse_duration(budget)
    if metric not in METRICS:
        raise UsageError(f"--metric must be one of {', '.join(METRICS)}; got {metric!r}")
    if trials is not None and trials < 1:
        raise UsageError(f"--trials must be at least 1; got {trials}")
    settings = dict(settings or {})
    options = options or build_options()
    preset = preset or "seed"  # the API passes the preset it chose from the data
    forced = {"report_test": False}
    if not build_config(preset, settings).train.validation_split:
        forced["validation_split"] = FORCED_VALIDATION_SPLIT
    base = build_config(preset, {**settings, **forced})
    out = Path(out)
    with run_lock(out):
        labels = _check_metric(source, base, metric)
        # The n-gram fit "auto" (best's) as the labels make it, so that the search names the fit made.
        base = fit_to_labels(base, labels)
        space = active_space(search_space(base, labels.task), set(settings))
        study = _open_study(optuna, out, base, metric, preset, settings, source)
        _recover(optuna, study, base, space)
        trial_dir = out / "trials"
        trial_dir.mkdir(parents=True, exist_ok=True)
        spent_before = float(study.user_attrs.get("spent_seconds", 0.0))
        log(f"tuning {metric} ({METRICS[metric]}) on the validation split of {source} from the {preset} recipe: "
            f"{len(space)} settings searched, "
            f"budget {budget_seconds:.0f}s" + (f" ({spent_before:.0f}s spent before)" if spent_before else "")
            + (f", up to {trials} trials" if trials else ""))
        try:
            while True:
                done = _done(optuna, study)
                if trials is not None and len(done) >= trials:
                    break
                remaining = budget_seconds - float(study.user_attrs.get("spent_seconds", 0.0))
                durations = [t.user_attrs["seconds"] for t in done if "seconds" in t.user_attrs]
                if remaining <= 0 or (durations and remaining < statistics.median(durations)):
                    log(f"budget: {max(remaining, 0):.0f}s left, less than a median trial "
                        f"({statistics.median(durations) if durations else 0:.0f}s); no more trials")
                    break
                _one_trial(optuna, study, space, base, settings, forced, preset, options, source, trial_dir, metric,
                           labels, deadline=time.perf_counter() + remaining, log=log)
                write_trials_table(optuna, study, out, metric)
        finally:
            write_trials_table(optuna, study, out, metric)
        return _finish(optuna, study, out, source, options, metric, started, log)


def _check_metric(source: Path, base: RunConfig, metric: str):
    """The label space of ``source``; refuse a metric its task does not have, before any trial."""
    from rnnsent.data.cache import load_encoded

    corpus = load_encoded(Path(source), base.text, quiet=True, data=base.data)
    if metric == "mae" and not (corpus.labels.task == "multiclass" and corpus.labels.ordered):
        raise UsageError("--metric mae needs ordered labels (star ratings, numbered classes); "
                         "use accuracy, macro_f1 or log_loss")
    return corpus.labels


def _open_study(optuna, out: Path, base: RunConfig, metric: str, preset: str, settings: dict[str, Any],
                source: Path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out.mkdir(parents=True, exist_ok=True)
    identity = json.dumps({"preset": preset, "metric": metric, "settings": settings}, sort_keys=True, default=str)
    sampler = optuna.samplers.TPESampler(seed=base.train.seed, n_startup_trials=5)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    study = optuna.create_study(storage=f"sqlite:///{(out / 'study.sqlite').resolve()}", study_name=STUDY_NAME,
                                direction=METRICS[metric], sampler=sampler, pruner=pruner, load_if_exists=True)
    saved = study.user_attrs.get("identity")
    if saved is None:
        study.set_user_attr("identity", identity)
    elif saved != identity:
        raise UsageError(f"{out} holds a tune of other settings ({saved}); run that command again to continue "
                         "it, or tune into another --out")
    # The data too: trials scored on other data (or on this file before it changed) would be
    # compared with these, and the winner could be a model of other labels.
    from rnnsent.data.download import source_identity

    data = {"path": str(Path(source).resolve()), **source_identity(Path(source))}
    saved_data = study.user_attrs.get("data")
    if saved_data is None:
        study.set_user_attr("data", data)
    elif saved_data != data:
        what = "other data" if saved_data.get("path") != data["path"] else "this data before it changed"
        raise UsageError(f"{out} holds a tune of {what} ({saved_data.get('path')}); tune into another --out")
    return study


def _recover(optuna, study, base: RunConfig, space: dict[str, dict[str, Any]]) -> None:
    """Enqueue the base recipe as trial 0; close trials left running by a killed tune; run an
    interrupted trial's settings again."""
    from optuna.trial import TrialState

    every = study.get_trials(deepcopy=False)
    if not every:
        study.enqueue_trial(base_params(base, space), user_attrs={"base": True})
        return
    for trial in every:
        if trial.state == TrialState.RUNNING:  # its process is gone: the tune's lock says so
            study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            study.tell(trial.number, state=TrialState.FAIL)
    every = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in every}
    for trial in every:
        if trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted") and trial.number not in retried:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number,
                                                          **({"base": True} if trial.user_attrs.get("base") else {})})


def _done(optuna, study) -> list:
    """Trials that count as done: complete, pruned, or failed with an error (not interrupted)."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and not t.user_attrs.get("interrupted"))]


def _one_trial(optuna, study, space, base: RunConfig, settings, forced, preset, options: RunOptions, source: Path,
               trial_dir: Path, metric: str, labels, deadline: float, log: Log) -> None:
    from optuna.trial import TrialState

    from rnnsent.errors import TrainingInterrupted

    trial = study.ask()
    started = time.perf_counter()
    params = suggest(trial, space)
    state, value, note = TrialState.FAIL, None, ""
    try:
        config = build_config(preset, {**settings, **forced, **recipe_overrides(params, base)})
        trial_options = options
        if options.tensorboard:
            trial_options = RunOptions(**{**options.to_dict(), "tensorboard": str(Path(options.tensorboard) / f"{trial.number:03d}")})
        value = train_trial(trial, config, trial_options, source, trial_dir / f"{trial.number:03d}", metric,
                            has_winner=bool(_complete(optuna, study)), deadline=deadline)
        state = TrialState.COMPLETE
    except optuna.TrialPruned:
        state, note = TrialState.PRUNED, "pruned"
    except _BudgetSpent:
        state, note = TrialState.PRUNED, "budget spent"
        trial.set_user_attr("reason", note)
    except (KeyboardInterrupt, TrainingInterrupted):
        trial.set_user_attr("interrupted", True)
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))
        study.tell(trial, state=TrialState.FAIL)
        _add_spent(study, time.perf_counter() - started)
        raise
    except ValueError as error:  # a recipe that cannot train: too large, diverged, settings that conflict
        note = str(error).splitlines()[0]
        trial.set_user_attr("error", note)
    seconds = time.perf_counter() - started
    trial.set_user_attr("seconds", round(seconds, 2))
    study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    _add_spent(study, seconds)
    best = _best(optuna, study)
    shown = f"{metric} {value:.4f}" if value is not None else note
    best_text = f" (best {best.value:.4f}, trial {best.number})" if best is not None else ""
    described = ", ".join(f"{k} {_short(v)}" for k, v in params.items())
    log(f"trial {trial.number:3d}: {shown}{best_text} in {seconds:.1f}s; {described}")


def _add_spent(study, seconds: float) -> None:
    study.set_user_attr("spent_seconds", float(study.user_attrs.get("spent_seconds", 0.0)) + seconds)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _complete(optuna, study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _best(optuna, study):
    return study.best_trial if _complete(optuna, study) else None


def train_trial(trial, config: RunConfig, options: RunOptions, source: Path, out: Path, metric: str, *,
                has_winner: bool, deadline: float) -> float:
    """Train one trial's recipe into ``out``, reporting its validation score each epoch to the
    pruner; returns the trained model's validation score (the test split is not scored)."""
    import optuna

    from rnnsent.data.cache import load_encoded
    from rnnsent.inference.evaluate import evaluate_model
    from rnnsent.metrics import task_metrics
    from rnnsent.training import pipeline
    from rnnsent.training.tensors import prepare_data

    corpus = load_encoded(Path(source), config.text, quiet=True, data=config.data)
    validation = prepare_data(corpus, config, options.limit).validation
    targets = validation.labels.numpy()
    log_file = open(out.parent / f"{out.name}.log", "w", encoding="utf-8")

    def log(message: str) -> None:
        log_file.write(message + "\n")
        log_file.flush()

    def on_epoch(row: dict[str, Any], logits) -> None:
        value = task_metrics(corpus.labels, targets, logits)[metric]
        trial.report(float(value), int(row["epoch"]))
        if trial.should_prune():
            log(f"pruned after epoch {row['epoch']}: validation {metric} {value:.4f}")
            raise optuna.TrialPruned()
        if has_winner and time.perf_counter() > deadline and row["epoch"] < config.train.epochs:
            log(f"stopped after epoch {row['epoch']}: the budget is spent")
            raise _BudgetSpent()

    try:
        outcome = pipeline.run(config, options, Path(source), out, log=log, on_epoch=on_epoch, score_test=False)
    finally:
        log_file.close()
    metrics = evaluate_model(outcome.model, validation.ids, validation.lengths, targets, outcome.labels,
                             outcome.thresholds, outcome.temperature)
    value = float(metrics[metric])
    if not math.isfinite(value):
        raise UsageError(f"the validation {metric} is not a number")
    return value


# ----------------------------------------------------------------------------- the end


def _finish(optuna, study, out: Path, source: Path, options: RunOptions, metric: str, started: float,
            log: Log) -> TuneResult:
    best = _best(optuna, study)
    if best is None:
        raise UsageError(f"no trial finished within the budget; see {out / 'trials.csv'} and give a larger --budget")
    winner_dir = out / "trials" / f"{best.number:03d}"
    best_dir = out / "best"
    if best_dir.exists():
        shutil.rmtree(best_dir)
    shutil.copytree(winner_dir, best_dir, ignore=shutil.ignore_patterns("checkpoint", ".lock", "*.tmp"))
    test = score_test_split(best_dir, source, options.limit)  # the one time the test split is scored
    config = json.loads((best_dir / "config.json").read_text(encoding="utf-8"))["config"]
    write_json_atomic(out / "best.json", config)
    base = [t for t in _complete(optuna, study) if t.user_attrs.get("base")]
    base_value = base[0].value if base else None
    wall = time.perf_counter() - started
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    test_figures = {key: test[key] for key in ("accuracy", "macro_f1", "mae", "log_loss", "loss", "count") if key in test}
    summary = {
        "metric": metric, "direction": METRICS[metric], "best_trial": best.number, "best_value": best.value,
        "base_value": base_value, "best_params": best.params, "test": test_figures, "trials": counts,
        "wall_seconds": round(wall, 1), "trial_seconds": round(float(study.user_attrs.get("spent_seconds", 0.0)), 1),
    }
    write_json_atomic(out / "summary.json", summary)
    base_text = f"; the base recipe (trial 0): {base_value:.4f}" if base_value is not None else ""
    log(f"best validation {metric} {best.value:.4f} (trial {best.number}){base_text}")
    log(f"winner's test accuracy {test['accuracy']:.4f}" + (f", test {metric} {test[metric]:.4f}"
                                                              if metric != "accuracy" and metric in test else ""))
    log(f"recipe: {out / 'best.json'}; model: {best_dir}; trials: {out / 'trials.csv'}; wall time {wall:.1f}s")
    return TuneResult(out, best.number, best.value, base_value, test, wall, summary)


def score_test_split(model_dir: Path, source: Path, limit: int = 0) -> dict[str, Any]:
    """The winner's metrics on the test split of its training data (``limit``: a fixed subset of N),
    written into its ``metrics.json`` when the whole test split was scored."""
    from rnnsent.artifact.directory import load_artifact, update_metrics
    from rnnsent.data.cache import load_encoded
    from rnnsent.data.splits import limit_split
    from rnnsent.inference.evaluate import evaluate_model

    artifact = load_artifact(model_dir)
    corpus = load_encoded(Path(source), artifact.config.text, quiet=True, data=artifact.config.data)
    test = limit_split(corpus.test, limit)
    ids, lengths = test.padded(artifact.config.text)
    metrics = evaluate_model(artifact.model, ids, lengths, test.labels, artifact.labels, artifact.thresholds,
                             artifact.temperature)
    metrics["source"] = f"{source} (test split{f', {limit} texts' if limit else ''})"
    if not limit:
        update_metrics(model_dir, {**artifact.metrics, **metrics})
    return metrics


def write_trials_table(optuna, study, out: Path, metric: str) -> None:
    """``trials.csv`` (and ``trials.png`` with matplotlib): every trial's state, score, seconds, settings."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({name for t in trials for name in t.params})
    rows = []
    for t in trials:
        value = t.value
        if value is None and t.intermediate_values:
            value = t.intermediate_values[max(t.intermediate_values)]  # a pruned trial's last epoch
        rows.append({"trial": t.number, "state": t.state.name.lower(), f"validation_{metric}": value,
                     "epochs_scored": len(t.intermediate_values), "seconds": t.user_attrs.get("seconds"),
                     "base": bool(t.user_attrs.get("base")),
                     "note": t.user_attrs.get("error") or t.user_attrs.get("reason")
                     or ("interrupted" if t.user_attrs.get("interrupted") else ""),
                     **{name: t.params.get(name, "") for name in names}})
    path = out / "trials.csv"
    temporary = path.with_suffix(".csv.tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["trial", "state", f"validation_{metric}", "epochs_scored", "seconds",
                                                    "base", "note", *names])
        writer.writeheader()
        writer.writerows(rows)
    temporary.replace(path)
    _plot(rows, out / "trials.png", metric)


def _plot(rows: list[dict[str, Any]], path: Path, metric: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    key = f"validation_{metric}"
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    for state, style in (("complete", dict(color="tab:blue", label="complete")),
                         ("pruned", dict(color="tab:gray", marker="x", label="pruned (last epoch)"))):
        chosen = [r for r in rows if r["state"] == state and r[key] is not None]
        if chosen:
            axes.scatter([r["trial"] for r in chosen], [r[key] for r in chosen], **style)
    complete = [r for r in rows if r["state"] == "complete" and r[key] is not None]
    if complete:
        better = max if METRICS[metric] == "maximize" else min
        best, xs, ys = None, [], []
        for r in complete:
            best = r[key] if best is None else better(best, r[key])
            xs.append(r["trial"])
            ys.append(best)
        axes.step(xs, ys, where="post", color="tab:orange", label="best so far")
    axes.set_xlabel("trial")
    axes.set_ylabel(f"validation {metric}")
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
