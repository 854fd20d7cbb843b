"""The Python API: ``rnnsent.train``, ``rnnsent.evaluate``, ``rnnsent.load``.

    import rnnsent
    model = rnnsent.train(preset="seed", out="runs/seed")   # any setting as a keyword: maxlen=100, ...
    model.metrics["accuracy"], model.history[-1]
    model.predict(["A wonderful film.", "Dull."])
    rnnsent.evaluate(model)                                  # or rnnsent.evaluate("runs/seed")
    model = rnnsent.load("runs/seed")

Every mistake a caller can make raises a ``ValueError`` subclass (:mod:`rnnsent.errors`) whose
one-line message says what to do; the ``rnnsent`` command prints the same message.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnsent.artifact.directory import Artifact, load_artifact, save_artifact, update_metrics
from rnnsent.config import (
    PRESETS,
    RunConfig,
    build_config,
    build_options,
    split_settings,
)
from rnnsent.errors import DataError, UsageError
from rnnsent.inference.predictor import Predictor
from rnnsent.metrics import Metrics
from rnnsent.model.size import check_fits

if TYPE_CHECKING:
    from rnnsent.exporter.onnx import OnnxExport

PathLike = str | os.PathLike


class Model(Predictor):
    """A trained model: it predicts and explains raw text, and carries its recipe, metrics and history.

    ``model.predict(texts)``, ``model.probabilities(texts)``, ``model.explain(text)`` (see
    :class:`~rnnsent.inference.predictor.Predictor`); ``model.config`` is the recipe,
    ``model.metrics`` the test metrics, ``model.history`` one row per epoch, ``model.path`` the
    model directory it was loaded from or trained into.
    """

    @property
    def path(self) -> Path:
        return self.artifact.path

    @property
    def metrics(self) -> Metrics:
        return Metrics(self.artifact.metrics)

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.artifact.history

    @property
    def vocabulary(self):
        return self.artifact.vocabulary

    def summary(self) -> str:
        """The Keras-style table of the model's layers, then its task and label names."""
        from rnnsent.model.summary import summary_table

        return f"{summary_table(self.model, self.config.text.maxlen)}\nLabels: {self.labels.describe()}"

    def save(self, path: PathLike) -> Path:
        """Write this model as a complete model directory at ``path``; returns the path."""
        artifact = self.artifact
        return save_artifact(Path(path), artifact.config, artifact.vocabulary, artifact.model,
                             artifact.metrics, artifact.history, artifact.labels, artifact.temperature, artifact.thresholds)

    def export(self, out: PathLike, format: str = "onnx") -> OnnxExport:
        """Write this model as an ONNX graph ``out`` and its deployment settings ``out.json``; see :func:`export`."""
        return export(self, out, format)

    def __repr__(self) -> str:
        accuracy = self.artifact.metrics.get("accuracy")
        scored = f", test accuracy {accuracy:.4f}" if isinstance(accuracy, float) else ""
        return f"<rnnsent.Model {self.config.preset!r} at {str(self.path)!r}{scored}>"


def load(path: PathLike, device: str = "cpu", *, quantize: bool = False, threads: int | None = None) -> Model:
    """Load a saved model directory: ``rnnsent.load("runs/seed").predict(["..."])``.

    ``quantize`` converts the network's linear and recurrent layers to int8 dynamic
    quantization (CPU; faster, slightly different probabilities: see docs/performance.md).
    ``threads`` is the CPU thread count scoring uses: None (default) the cores other processes
    leave free, as long as torch's own count is untouched (see :mod:`rnnsent.threads`); 0
    torch's count as it is.

    Raises :class:`~rnnsent.errors.ArtifactError` naming the file when the directory is
    missing, incomplete, damaged or of an unknown format version.
    """
    return Model(load_artifact(path, device, quantize=quantize), threads=threads)


def train(preset: str | None = None, data: PathLike | tuple | None = None, out: PathLike | None = None, *,
          resume: PathLike | None = None, progress: bool | None = None, verbose: bool = True,
          config: PathLike | dict[str, Any] | RunConfig | None = None, **settings: Any) -> Model:
    """Train a model and save it as a model directory; returns the trained :class:`Model`.

    ``preset`` is the starting recipe (``seed``, ``bigru``, ``best``, ``small``; by default ``auto``:
    ``seed`` on aclImdb's sentiment labels and ``small`` on any other data); any recipe setting
    (``maxlen=100``, ``cell="gru"``, ...) or run option (``threads=1``, ``device="cpu"``,
    ``limit=1000``, ``max_steps``, ``checkpoint_every``, ``fused``) may be given as a keyword,
    checked exactly like the command-line flags. ``data`` is a data source (see the README's
    Data section; default ``$RNNSENT_DATA``, the cache, or a download of aclImdb), or texts and
    labels in memory, ``data=(texts, labels)`` (labels as names, integers or lists of names). ``out`` is
    the model directory to write (default: a new temporary directory). ``resume`` continues an
    interrupted run in that directory with its saved recipe (only ``threads`` and ``device`` may
    change). ``progress`` shows a progress bar (default: on a terminal or in a notebook);
    ``verbose`` prints the training log. ``config`` starts from a whole saved recipe instead of a
    preset: a JSON file as ``rnnsent tune`` writes (``best.json``) or as a model directory's
    ``config.json`` holds it, a mapping, or a :class:`RunConfig`; the settings still override it.
    """
    from rnnsent.data.download import check_data_argument, resolve_source
    from rnnsent.data.in_memory import in_memory_source, is_in_memory
    from rnnsent.training import checkpoint, pipeline
    from rnnsent.training.tracking import check_available

    recipe_settings, option_settings = split_settings(settings)
    if config is not None and (preset is not None or resume is not None):
        raise UsageError("config is a whole recipe: drop preset" + (" and resume" if resume is not None else ""))
    if resume is not None:
        if out is not None or recipe_settings or preset is not None:
            raise UsageError("resume continues a run with its saved recipe: drop out, preset and the recipe settings")
        changed = set(option_settings) - {"threads", "device"}
        if changed:
            raise UsageError(f"resume keeps the run's options; only threads and device may change, not {', '.join(sorted(changed))}")
        meta, _ = checkpoint.load_checkpoint(Path(resume))
        if meta.get("kind") == "language-model":
            raise UsageError(f"{resume} holds a language-model pretraining; continue it with "
                             f"'rnnsent pretrain --language-model --resume {resume}'")
        config = RunConfig.from_dict(meta["config"])
        if _finished_and_saved(meta, config, Path(resume)):
            if verbose:
                print(f"{resume}: this run finished training and its model is saved; nothing to resume (score it "
                      f"with 'rnnsent evaluate {resume}')", flush=True)
            return load(resume)
        options = build_options({**meta.get("options", {}), **option_settings})
        run_dir = Path(resume)
        data = _resumed_data(meta, data)
        source = resolve_source(data)
    else:
        check_data_argument(data)
        if is_in_memory(data):
            data = in_memory_source(data)  # a JSONL file in the cache, read as any other
        if config is not None:
            config = recipe_from(config, recipe_settings)
        else:
            config = build_config(_chosen_preset(preset, data, recipe_settings), recipe_settings)
        options = build_options(option_settings)
        check_fits(config)
        source = resolve_source(data)
        run_dir = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="rnnsent-"))
    check_available(options.tensorboard)
    log = (lambda message: print(message, flush=True)) if verbose else (lambda message: None)
    show_bar = _interactive() if progress is None else progress
    outcome = pipeline.run(config, options, source, run_dir, resume=resume is not None, log=log, progress_bar=show_bar,
                           quiet=not verbose)
    # Under torchrun only rank 0 writes the directory; every rank returns the model it trained.
    extras = {"labels": outcome.labels} if outcome.labels is not None else {}
    return Model(Artifact(run_dir, outcome.config or config, outcome.vocabulary, outcome.model.eval(), outcome.metrics,
                          outcome.history, temperature=outcome.temperature, thresholds=outcome.thresholds, **extras))


def _finished_and_saved(meta: dict[str, Any], config: RunConfig, run_dir: Path) -> bool:
    """Whether the checkpoint ``meta`` of ``run_dir`` is that of a run whose training ended (its
    last epoch, an early stop or --max-steps) and whose model directory was saved after it: a
    resume would only train nothing and write the same model again."""
    from rnnsent.artifact.directory import MANIFEST
    from rnnsent.training.checkpoint import CHECKPOINT_STATE, checkpoint_dir

    progress = meta.get("progress", {})
    ended = bool(progress.get("finished")) or progress.get("epoch", 0) >= config.train.epochs
    manifest = run_dir / MANIFEST
    return ended and manifest.exists() and (
        manifest.stat().st_mtime >= (checkpoint_dir(run_dir) / CHECKPOINT_STATE).stat().st_mtime)


def recipe_from(config: PathLike | dict[str, Any] | RunConfig, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A whole recipe (a JSON file, a mapping or a :class:`RunConfig`) with ``overrides`` on top, checked."""
    import json

    from rnnsent.config import apply_overrides
    from rnnsent.errors import ConfigError

    if isinstance(config, RunConfig):
        data: Any = config.to_dict()
    elif isinstance(config, dict):
        data = config
    else:
        path = Path(config)
        if not path.is_file():
            raise UsageError(f"{path}: no such recipe file (a JSON recipe, such as rnnsent tune's best.json)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConfigError(f"{path}: not a JSON recipe ({error})") from None
        if isinstance(data, dict) and isinstance(data.get("config"), dict) and "format" in data:
            data = data["config"]  # a model directory's config.json: its recipe
    recipe = RunConfig.from_dict(data)
    apply_overrides(recipe, overrides or {})
    return recipe.validate()


def _chosen_preset(preset: str | None, data: PathLike | None, recipe_settings: dict[str, Any]) -> str:
    """The named preset that ``preset`` (None: ``auto``) stands for on ``data``: ``auto`` becomes
    one from the data (the saved recipe records that name). The data are named by a path,
    $RNNSENT_DATA, or else they are aclImdb (cached or downloaded): this reads nothing, so the
    settings are checked before anything is downloaded."""
    from rnnsent.training.pipeline import choose_preset

    named = data or os.environ.get("RNNSENT_DATA")
    data_settings = build_config("seed", {k: v for k, v in recipe_settings.items() if k in ("labels", "task")}).data
    return choose_preset(preset or "auto", Path(named).expanduser() if named else None, data_settings)


def tune(data: PathLike | None = None, out: PathLike | None = None, budget: str | float = "20m",
         preset: str | None = None, metric: str = "accuracy", *, trials: int | None = None, verbose: bool = True,
         **fixed_settings: Any) -> Model:
    """Search recipes with Optuna for at most ``budget`` (``"90s"``, ``"20m"``, ``"1h"``, or
    seconds) and return the winner, trained into ``out/best`` and scored once on the test split.

    ``preset`` is the base recipe (by default ``auto``: ``seed`` on aclImdb's sentiment labels,
    ``small`` on any other data, as :func:`train` chooses), which is trial 0; ``metric`` (``accuracy``,
    ``macro_f1``, ``mae``, ``log_loss``) is read from the validation split. Recipe settings given
    as keywords are fixed (not searched); run options (``threads``, ``limit``, ...) apply to every
    trial. ``trials`` caps the number of trials. The same call again continues an interrupted
    tune. Needs the ``tune`` extra (optuna). See docs/tune.md.
    """
    from rnnsent.data.download import check_data_argument, resolve_source
    from rnnsent.data.in_memory import in_memory_source, is_in_memory
    from rnnsent.training.tracking import check_available
    from rnnsent.training.tune import require_tune_extra
    from rnnsent.training.tune import tune as run_tune

    require_tune_extra()
    if out is None:
        raise UsageError("say where to keep the study and its trials: out=DIR")
    recipe_settings, option_settings = split_settings(fixed_settings)
    check_data_argument(data)
    if is_in_memory(data):
        data = in_memory_source(data)
    preset = _chosen_preset(preset, data, recipe_settings)
    build_config(preset, recipe_settings)  # check the fixed settings before anything runs
    options = build_options(option_settings)
    check_available(options.tensorboard)
    log = (lambda message: print(message, flush=True)) if verbose else (lambda message: None)
    result = run_tune(resolve_source(data), Path(out), budget=budget, preset=preset, metric=metric, trials=trials,
                      settings=recipe_settings, options=options, log=log)
    return load(result.out / "best")


def _resumed_data(meta: dict[str, Any], data: PathLike | None) -> str:
    """The data a resumed run continues on: the one it started on, unchanged since."""
    from rnnsent.data.download import source_identity

    started_on = meta.get("data")
    if not started_on:
        raise UsageError("the checkpoint does not say which data the run started on; start the run afresh")
    if data is not None and Path(data).expanduser().resolve() != Path(started_on):
        raise UsageError(f"a resumed run continues on the data it started on ({started_on}); drop --data")
    if not Path(started_on).exists():
        raise UsageError(f"the run started on {started_on}, which no longer exists; put it back or start afresh")
    saved = meta.get("data_identity")
    if saved is not None and source_identity(Path(started_on)) != saved:
        raise UsageError(f"{started_on} changed since the run started; resuming would mix two datasets, so start afresh")
    return started_on


def evaluate(model: Model | PathLike, data: PathLike | None = None, *, limit: int = 0, threads: int = 0,
             verbose: bool = False, text_field: str | None = None, label_field: str | None = None,
             label_separator: str | None = None, fields: dict[str, str] | None = None) -> Metrics:
    """Score a model on the test split of ``data`` and return its metrics.

    Without ``data``, the source the model was trained on (its ``metrics.json`` names it) while
    that path exists; when it was a CSV or JSONL file that is gone, a :class:`DataError` says so;
    else as for :func:`train` (``$RNNSENT_DATA``, the cache, a download).
    Data other than the training source is scored whole when it has no test split of its own
    (a CSV or JSONL file, a folder of label folders): every row, none of them seen in training.

    ``model`` is a :class:`Model` or a model directory. On the training source's full test split
    the model directory's ``metrics.json`` is refreshed; other data or a ``limit`` subset of N
    test reviews leave it as it is. ``text_field``, ``label_field`` and ``label_separator``
    (or the same as a ``fields`` mapping) read other column names than the model was trained with.
    """
    from rnnsent.data.cache import load_encoded
    from rnnsent.data.download import resolve_source
    from rnnsent.data.records import SUFFIX_FORMATS
    from rnnsent.data.sources import read_corpus, read_every_row
    from rnnsent.data.splits import limit_indices, limit_split
    from rnnsent.inference.evaluate import evaluate_model

    if limit < 0:
        raise UsageError(f"limit must be 0 (all test reviews) or more; got {limit}")
    set_threads(threads)
    model = model if isinstance(model, Model) else load(model)
    artifact, config = model.artifact, model.config
    trained_on = artifact.metrics.get("training_data")
    if data is None and isinstance(trained_on, str):
        if Path(trained_on).exists():
            data = trained_on
        elif Path(trained_on).suffix.lower() in SUFFIX_FORMATS:
            # A person's own file is gone: $RNNSENT_DATA or aclImdb would be other data.
            raise DataError(f"{trained_on}, the data {artifact.path} was trained on, no longer exists; "
                            "say what to score: data=PATH (--data PATH)")
    source = resolve_source(data)
    keywords = {"text_field": text_field, "label_field": label_field, "label_separator": label_separator}
    named = {**(fields or {}), **{k: v for k, v in keywords.items() if v is not None}}
    data_config = dataclasses.replace(config.data, **{k: v for k, v in named.items() if v is not None})
    same_path = isinstance(trained_on, str) and Path(trained_on).resolve() == Path(source).resolve()
    every_row = None
    try:
        corpus = load_encoded(source, config.text, quiet=not verbose, data=data_config)
    except DataError:
        # A file of one label, or too few rows to hold out a test fifth, is no training source
        # but may still be scored whole.
        every_row = None if same_path else read_every_row(source, data_config)
        if every_row is None:
            raise
        corpus = None
    # The training source, at its recorded path or a copy of it (the same vocabulary and labels).
    training_source = same_path or (corpus is not None and corpus.vocabulary.words == artifact.vocabulary.words
                                    and corpus.labels == artifact.labels)
    if training_source:
        available = len(corpus.test)
        test = limit_split(corpus.test, limit)
        ids, lengths = test.padded(config.text)
        targets = test.labels
    else:
        # Another source than the training one: encode its raw texts (every row of a file, the
        # test split of a source that has one) with the model's vocabulary, and its labels with
        # the model's label space.
        every_row = every_row or read_every_row(source, data_config)
        raw = every_row if every_row is not None else read_corpus(source, data=data_config).test
        ids, lengths = artifact.encoder.encode_batch(raw.texts)
        targets = artifact.labels.encode(raw.labels, [raw.place(i) for i in range(len(raw))])
        available = len(targets)
        if limit:
            chosen = limit_indices(raw.strata(), limit)
            ids, lengths, targets = ids[chosen], lengths[chosen], targets[chosen]
    metrics = evaluate_model(artifact.model, ids, lengths, targets, artifact.labels, artifact.thresholds,
                             artifact.temperature)
    part = "every row" if every_row is not None else "test split"
    limited = bool(limit) and limit < available  # a limit of all the texts or more cuts none
    metrics["source"] = f"{source} ({part}{f', {limit} texts' if limited else ''})"
    if training_source and not limited:
        # Only the full test split of the training data may replace the model's recorded metrics.
        update_metrics(artifact.path, {**artifact.metrics, **metrics})
        artifact.metrics.update(metrics)
    return Metrics(metrics)


def pretrain(out: PathLike | None = None, data: PathLike | None = None, preset: str = "best", *,
             language_model: bool = False, resume: PathLike | None = None, max_minutes: float = 0.0,
             threads: int = 0, verbose: bool = True, **settings: Any) -> Path:
    """Build word vectors for ``embeddings=`` from the training and unlabelled reviews; returns ``out``.

    The recipe's ``num_words``, ``embedding_dim``, ``pretrain_window`` and ``validation_split``
    (from ``preset``, default ``best``, and ``settings``) decide the vectors; use the same ones
    for the training run that loads them.

    With ``language_model=True``, pretrain the recipe's embedding and recurrent encoder instead
    as next-word language models (a backward one too for a bidirectional recipe) on the same
    reviews, into the folder ``out``, for ``encoder=``; returns the encoder file's path. It runs
    ``lm_steps`` steps, or stops earlier at the run option ``max_steps`` or after
    ``max_minutes``; ``resume=FOLDER`` continues a stopped one with its saved recipe (only
    ``threads``, ``device`` and ``max_steps`` may change). See docs/accuracy.md.
    """
    from rnnsent.data.download import resolve_source, source_identity

    recipe_settings, option_settings = split_settings(settings)
    if isinstance(max_minutes, bool) or not isinstance(max_minutes, (int, float)) or not 0 <= max_minutes <= 10**7:
        raise UsageError(f"max_minutes must be a number of minutes, 0 (no limit) or more; got {max_minutes!r}")
    log = (lambda message: print(message, flush=True)) if verbose else (lambda message: None)
    if not language_model:
        if resume is not None or max_minutes or option_settings:
            raise UsageError("resume, max_minutes and run options go with language_model=True (--language-model)")
        if out is None:
            raise UsageError("say where to write the word vectors: out=FILE (--out runs/vectors.safetensors)")
        config = build_config(preset, recipe_settings)
        if not config.model.pretrain_window:
            raise UsageError("pretrain needs a context window: add --pretrain-window 5")
        set_threads(threads)
        from rnnsent.training.vectors import pretrain_vectors

        return pretrain_vectors(config, resolve_source(data), Path(out), log=log)
    from rnnsent.training import checkpoint
    from rnnsent.training.language_model import CHECKPOINT_KIND, pretrain_language_model

    if resume is not None:
        if out is not None or recipe_settings:
            raise UsageError("resume continues a pretraining with its saved recipe: drop out and the recipe settings")
        changed = set(option_settings) - {"threads", "device", "max_steps"}
        if changed:
            raise UsageError(f"resume keeps the pretraining's options; only threads, device and max_steps may change, "
                             f"not {', '.join(sorted(changed))}")
        meta, _ = checkpoint.load_checkpoint(Path(resume))
        if meta.get("kind") != CHECKPOINT_KIND:
            raise UsageError(f"{resume} holds a training run, not a language-model pretraining; continue it with "
                             f"'rnnsent train --resume {resume}'")
        config = RunConfig.from_dict(meta["config"])
        # A step limit stopped the earlier run; the resumed one runs on to lm_steps unless given one.
        saved = {key: value for key, value in meta.get("options", {}).items() if key != "max_steps"}
        options = build_options({**saved, **option_settings})
        source, out = resolve_source(_resumed_data(meta, data)), Path(resume)
    else:
        if out is None:
            raise UsageError("say where to write the encoder: out=FOLDER (--out runs/encoder)")
        config = build_config(preset, recipe_settings)
        options = build_options(option_settings)
        source = resolve_source(data)
    if not (config.train.lm_steps or options.max_steps or max_minutes):
        raise UsageError("say how long to pretrain: --lm-steps N (the recipe's), --max-steps N or --max-minutes M")
    set_threads(threads)
    fields = {"data": str(Path(source).resolve()), "data_identity": source_identity(Path(source))}
    return pretrain_language_model(config, options, source, Path(out), resume=resume is not None,
                                   max_minutes=float(max_minutes), log=log, checkpoint_fields=fields)


def summary(preset: PathLike | Model = "seed", **settings: Any) -> str:
    """The Keras-style table of the model a recipe builds: layers, output shapes, parameter counts.

    ``preset`` may instead be a model directory (``summary("runs/spam")``) or a :class:`Model`:
    its model's table and label names, as :meth:`Model.summary` gives them."""
    from rnnsent.model.build import build_model
    from rnnsent.model.summary import summary_table

    if isinstance(preset, Model) or (str(preset) not in PRESETS and (Path(preset).exists() or os.sep in str(preset))):
        if settings:
            raise UsageError("a model's summary takes no settings: it is of the model as saved")
        return (preset if isinstance(preset, Model) else load(preset)).summary()

    config = build_config(preset, settings)
    check_fits(config, training=False)
    return summary_table(build_model(config.model, config.text.num_words), config.text.maxlen)


EXPORT_FORMATS = ("onnx",)


def export(model: Model | PathLike, out: PathLike, format: str = "onnx") -> OnnxExport:
    """Write a model as an ONNX graph ``out`` and, beside it, ``out.json``: what a deployment needs to tokenize.

    ``model`` is a :class:`Model` or a model directory. The graph takes token ids ``(batch, time)``
    and true lengths ``(batch,)`` (int64) and returns probabilities ``(batch, K)`` (float32), the
    n-gram branch and the calibrated temperature included; ``out.json`` holds the vocabulary, the
    text settings, the tokenizer's rules and the labels (docs/cli.md#export). Before
    writing, onnxruntime scores 64 check rows; the result
    (:class:`~rnnsent.exporter.onnx.OnnxExport`) has the paths and the largest difference from
    rnnsent's probabilities. Needs the ``export`` extra (onnx, onnxruntime).
    """
    if format not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {format!r}; the formats are: {', '.join(EXPORT_FORMATS)}")
    from rnnsent.exporter import require_export_extra

    require_export_extra()
    from rnnsent.exporter.onnx import export_onnx

    model = model if isinstance(model, Model) else load(model)
    return export_onnx(model, out)


def set_threads(threads: int) -> int:
    """Use ``threads`` CPU threads for torch (0: the cores other processes leave free, see
    :func:`rnnsent.threads.free_cores`); returns the count set."""
    from rnnsent.threads import resolve_threads

    options = build_options({"threads": threads})
    import torch

    count = resolve_threads(options.threads)
    torch.set_num_threads(count)
    return count


def _interactive() -> bool:
    """A progress bar pays where a person watches: a terminal, or a Jupyter notebook."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


__all__ = ["Model", "evaluate", "export", "load", "pretrain", "summary", "train", "tune"]
