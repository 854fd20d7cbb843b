"""The stages of a training run, as plain functions called in order by :func:`run`.

data → sizing to the data → unlabelled texts → word vectors → language model → n-gram regression →
network → blend → test evaluation → model directory.

Every process of a torchrun launch runs the same stages on the same data and builds the same
starting weights; only rank 0 logs, writes checkpoints and the model directory.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rnnsent.artifact.directory import MANIFEST, save_artifact
from rnnsent.artifact.lock import run_lock
from rnnsent.config import STACKED_FITS, DataConfig, RunConfig, RunOptions, resolve_ngram_fit, resolve_preset
from rnnsent.data.cache import load_encoded
from rnnsent.data.corpus import EncodedCorpus, EncodedSplit
from rnnsent.data.download import source_identity
from rnnsent.data.sources import ARCHIVE_SUFFIXES
from rnnsent.data.splits import limit_split, resolve_validation_by
from rnnsent.errors import ConfigError
from rnnsent.inference.evaluate import evaluate_model
from rnnsent.labels import LabelSpace, joined_label_separator, names_differing_in_case
from rnnsent.metrics import format_metrics
from rnnsent.model.build import build_model, recurrent_network
from rnnsent.model.scoring import predict_cut_logits, predict_logits, predict_part_logits
from rnnsent.model.size import check_fits
from rnnsent.model.summary import count_parameters
from rnnsent.training import checkpoint as checkpoints
from rnnsent.training.distributed import World, barrier, setup, teardown
from rnnsent.training.loop import Trainer, TrainResult
from rnnsent.training.objectives import training_objective, without_distillation
from rnnsent.training.optim import build_optimizer, parameter_groups
from rnnsent.training.steps import choose_step, sparse_embedding_applies
from rnnsent.training.tensors import Tensors, TrainingData, prepare_data
from rnnsent.training.unlabelled import unlabelled_pool

Log = Callable[[str], None]
EpochHook = Callable[[dict[str, Any], Any], None]  # (row of history, validation logits or None)


@dataclass
class RunOutcome:
    """What :func:`run` produced: the trained model (on the CPU) and what was saved with it."""

    model: nn.Module
    vocabulary: Any
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    config: RunConfig | None = None  # the effective recipe (sized to the data), as saved
    labels: LabelSpace | None = None
    temperature: float = 1.0
    thresholds: list[float] | None = None


def run(config: RunConfig, options: RunOptions, source: Path, out: Path, *, resume: bool = False,
        log: Log = print, progress_bar: bool = False, on_epoch: EpochHook | None = None,
        score_test: bool = True, quiet: bool = False) -> RunOutcome:
    """Train ``config`` on ``source`` into the model directory ``out`` (continuing its checkpoint
    when ``resume``), evaluate on the test split and save. Returns the trained model.

    ``on_epoch(row, validation_logits)`` is called after each epoch (see :class:`Trainer`);
    ``score_test=False`` leaves the test split unscored (the saved metrics then hold no test figures);
    ``quiet`` also silences the note on standard error that a source is read for the first time."""
    world = setup(options.device)
    try:
        # Rank 0 holds the run directory's lock: the one writer of checkpoints and the model.
        with run_lock(out) if world.is_main else nullcontext():
            return _run(config, options, source, out, world, resume, log, progress_bar, on_epoch, score_test, quiet)
    finally:
        teardown(world)


def _run(config: RunConfig, options: RunOptions, source: Path, out: Path, world: World, resume: bool, log: Log,
         progress_bar: bool, on_epoch: EpochHook | None = None, score_test: bool = True,
         quiet: bool = False) -> RunOutcome:
    if options.threads:
        torch.set_num_threads(options.threads)
    log = log if world.is_main else (lambda message: None)
    corpus = read_data(source, config, world, quiet)
    config = fit_to_labels(config, corpus.labels)
    config = without_a_missing_teacher(config, log)
    if not resume:  # a checkpoint's recipe was sized when its run began
        # Sized to the texts this run trains on: the --limit subset when there is one.
        config = size_to_data(config, dataclasses.replace(corpus, train=limit_split(corpus.train, options.limit)), log)
    data = prepare_data(corpus, config, options.limit)
    config, data.unlabelled = unlabelled_pool(config, source, corpus.vocabulary, log)
    if not resume and (Path(out) / MANIFEST).exists():
        log(f"note: {out} holds a trained model, which this run replaces (give another --out to keep it)")
    elif not resume and checkpoints.has_checkpoint(out):
        log(f"note: starting afresh in {out} (its previous checkpoint is replaced)")
    validation = ""
    if data.validation is not None:
        by = resolve_validation_by(config.train.validation_by, corpus.train)
        validation = f", {len(data.validation)} validation" + (" (whole films)" if by == "movie" else "")
    log(f"preset {config.preset}: {len(data.train)} training texts{validation}, "
        f"maxlen {config.text.maxlen}, {config.model.cell} cell, device {world.device}")
    if not corpus.labels.is_sentiment:
        log(corpus.labels.describe())
    for message in label_notes(corpus.labels):
        log(message)
    check_fits(config, corpus.labels.num_outputs)
    started = time.perf_counter()
    figures: dict[str, Any] = {"pretrain_seconds": 0.0}

    def initialise(model: nn.Module) -> None:
        reviews = pretraining_reader(config, options, corpus, source, data.unlabelled)
        figures.update(initialise_word_vectors(model, config, corpus, reviews, log))
        figures.update(initialise_encoder(model, config, corpus, reviews, log))
        figures.update(fit_ngram_regression_stage(model, config, data, log))

    result = train_tensors(config, options, data, out, world=world, resume=resume, log=log,
                           progress_bar=progress_bar, initialise=initialise,
                           checkpoint_fields={"data": str(Path(source).resolve()),
                                              "data_identity": source_identity(Path(source))},
                           on_epoch=on_epoch)
    if getattr(result.model, "blend", None) is not None:
        figures["validation_accuracy"] = fit_blend_stage(result.model, config, data, log)
    decision = decision_stage(result.model, config, data, log)
    seconds = time.perf_counter() - started
    metrics: dict[str, Any] = {}
    if world.is_main:
        metrics = evaluate_on_test(result, config, options, corpus, decision) if score_test else {}
        # Where the texts came from, so that `rnnsent evaluate MODEL` scores the same test split.
        metrics.update({"train_seconds": round(seconds, 2), **figures, "training_data": str(Path(source).resolve())})
        if decision.figures:
            metrics["calibration"] = decision.figures
        save_artifact(out, config, corpus.vocabulary, result.model.cpu(), metrics, result.history, corpus.labels,
                      decision.temperature, decision.thresholds)
        log(f"trained in {seconds:.1f}s; model saved to {out}")
        if score_test:
            log(format_metrics(metrics))
        for warning in chance_warnings(metrics, corpus, options, config):
            log(warning)
    return RunOutcome(result.model.cpu(), corpus.vocabulary, metrics, result.history, config, corpus.labels,
                      decision.temperature, decision.thresholds)


def label_notes(labels: LabelSpace) -> list[str]:
    """What looks like a slip in the data's label names: several labels joined in one CSV cell
    (``db|python``) without ``--label-separator``, one label spelled in two cases."""
    notes = []
    separator = joined_label_separator(labels.names) if labels.task in ("multiclass", "multilabel") else None
    if separator is not None:
        example = next(name for name in labels.names if separator in name)
        notes.append(f"note: labels such as {example!r} look like several labels in one cell, each combination "
                     f"trained as a label of its own; for several labels per text use --label-separator '{separator}'")
    for spellings in names_differing_in_case(labels.names):
        notes.append(f"warning: the labels {' and '.join(repr(name) for name in spellings)} differ only in case, so "
                     "they are trained as different labels; spell them one way in the data if they are one")
    return notes


def read_data(source: Path, config: RunConfig, world: World, quiet: bool = False) -> EncodedCorpus:
    """The encoded corpus. One process per machine reads and encodes the source into the cache;
    the others wait for it and then read the cache, instead of all decoding the source at once."""
    if world.local_rank != 0:
        barrier(world)
    corpus = load_encoded(Path(source), config.text, quiet=quiet or not world.is_main, data=config.data)
    if world.local_rank == 0:
        barrier(world)
    return corpus


def choose_preset(preset: str, source: Path | None, data: DataConfig | None = None) -> str:
    """Resolve ``auto`` for ``source`` (:func:`rnnsent.config.resolve_preset`): aclImdb (its
    archive, a folder of its layout with ``train/pos`` and ``train/neg``, or None: the default
    source, aclImdb cached or downloaded) read for its sentiment labels counts as IMDB
    sentiment; anything else is other data. Looks only at names and folders, reads nothing."""
    data = data or DataConfig()
    if source is None:
        imdb = True
    else:
        source = Path(source)
        root = source / "aclImdb" if (source / "aclImdb").is_dir() else source
        imdb = (source.is_file() and source.name.lower().endswith(ARCHIVE_SUFFIXES)) or (
            source.is_dir() and (root / "train" / "pos").is_dir() and (root / "train" / "neg").is_dir())
    return resolve_preset(preset, imdb and data.labels == "sentiment" and data.task in ("auto", "binary"))


def fit_to_labels(config: RunConfig, labels: LabelSpace) -> RunConfig:
    """The recipe with ``ngram_fit auto`` resolved for ``labels`` (a copy when it changes): the
    saved recipe says which fit was made. Raises :class:`ConfigError` for an ordinal fit of
    labels that are not ordered."""
    fit = resolve_ngram_fit(config.model.ngram_fit, labels.is_ordinal)
    if config.model.ngram_buckets and fit == "ordinal" and not labels.is_ordinal:
        raise ConfigError(f"--ngram-fit ordinal needs three or more ordered labels (integer names such as star "
                          f"ratings), not {labels.describe()}; use --ngram-fit stacked")
    if fit == config.model.ngram_fit:
        return config
    resolved = copy.deepcopy(config)
    resolved.model.ngram_fit = fit
    return resolved.validate()


def without_a_missing_teacher(config: RunConfig, log: Log) -> RunConfig:
    """The recipe with distillation off (a copy, and a note logged) when it has no stacked n-gram
    regression to learn from: ``best --ngram-buckets 0``, the network alone, or a joint fit.
    Distillation's unlabelled batches go with it unless another loss reads them."""
    train, model = config.train, config.model
    if not train.distill_weight or (model.ngram_buckets and model.ngram_fit in STACKED_FITS):
        return config
    log("note: distillation is off: it learns from a stacked n-gram regression, which this recipe has not "
        f"(--ngram-buckets {model.ngram_buckets}, --ngram-fit {model.ngram_fit})")
    return without_distillation(config)


def next_power_of_two(value: int) -> int:
    """The least power of two ``>= value`` (1 for 0 or less)."""
    return 1 << max(int(value) - 1, 0).bit_length()


def size_to_data(config: RunConfig, corpus: EncodedCorpus, log: Log = lambda message: None) -> RunConfig:
    """The recipe sized to the training data (a copy; ``config`` is left as it is).

    * ``num_words``: at most the vocabulary's real size (the reserved ids and every distinct
      training word), unless word vectors are loaded from a file (their table has the rows it
      was built with). The encoding is unchanged: its ids are already below that.
    * ``maxlen`` (with ``maxlen_quantile`` q > 0): at most the length that a fraction q of
      the training texts fit in.
    * ``ngram_buckets``: at most the least power of two holding 4 buckets per distinct n-gram
      of 2+ words in the training texts as the model reads them (cut to ``maxlen``; the
      validation texts count too, so it errs on the large side). The bucket a hash lands in
      then collides with another n-gram's about once in 8, as the full table does on IMDB.
    * ``warmup_steps``: a quarter of the run's steps when it is as many as the run's or more.

    On IMDB none of these change ``seed``, ``bigru`` or ``best`` (74,000+ distinct words against
    20,000; 4.3 million distinct 2-3-grams against 16 million buckets); the log says what changed.
    """
    sized = copy.deepcopy(config)
    text, model = sized.text, sized.model
    changes = []
    words = max(corpus.vocabulary.size, text.index_from + 1)
    # Word vectors loaded from a file (--embeddings, or an --encoder's) have the rows of the
    # num_words they were built with: the table keeps that size.
    if words < text.num_words and not model.embeddings and not model.encoder:
        changes.append(f"num_words {text.num_words:,} -> {words:,} (the training texts have "
                       f"{len(corpus.vocabulary.words):,} distinct words)")
        text.num_words = words
    lengths = np.diff(corpus.train.offsets)
    if text.maxlen_quantile and len(lengths):
        fitting = max(1, int(math.ceil(float(np.quantile(lengths, text.maxlen_quantile)))))
        if fitting < text.maxlen:
            changes.append(f"maxlen {text.maxlen:,} -> {fitting:,} ({text.maxlen_quantile:.0%} of the training texts "
                           f"are at most that long)")
            text.maxlen = fitting
    if model.ngram_buckets:
        from rnnsent.training.ngram_regression import count_distinct_ngrams

        started = time.perf_counter()
        distinct = count_distinct_ngrams(_padded_rows(corpus.train, sized), len(corpus.train), model.ngram_order)
        seconds = time.perf_counter() - started
        buckets = next_power_of_two(4 * distinct)
        kind = "2 words" if model.ngram_order == 2 else f"2-{model.ngram_order} words"
        if buckets < model.ngram_buckets:
            changes.append(f"ngram_buckets {model.ngram_buckets:,} -> {buckets:,} (4 per distinct n-gram of {kind}: "
                           f"{distinct:,}, counted in {seconds:.1f}s)")
            model.ngram_buckets = buckets
        else:
            log(f"n-gram table: {model.ngram_buckets:,} buckets for {distinct:,} distinct n-grams of {kind} "
                f"(counted in {seconds:.1f}s)")
    # A warm-up as long as the run or longer keeps the rate below --lr throughout (bigru's 100
    # steps against 8 on 300 texts): it is cut to a quarter of the run's steps.
    train = sized.train
    steps = train.epochs * math.ceil(len(corpus.train) * (1 - train.validation_split) / train.batch_size)
    if train.warmup_steps >= steps:
        changes.append(f"warmup_steps {train.warmup_steps:,} -> {steps // 4:,} (a quarter of the run's {steps:,} steps)")
        train.warmup_steps = steps // 4
    if changes:
        log("sized to the data: " + "; ".join(changes))
    return sized.validate()


def _padded_rows(split: EncodedSplit, config: RunConfig) -> Callable[[int, int], torch.Tensor]:
    """``rows(start, stop)``: the split's texts ``start..stop-1`` as the model reads them, padded."""

    def rows(start: int, stop: int) -> torch.Tensor:
        return torch.from_numpy(split.subset(np.arange(start, stop)).padded(config.text)[0])

    return rows


def pretraining_reader(config: RunConfig, options: RunOptions, corpus: EncodedCorpus, source: Path,
                       unlabelled: EncodedSplit | None = None) -> Callable[[], list]:
    """``reviews()``: the training and unlabelled reviews (never validation or test) that word
    vectors and the language model are built from, gathered on the first call only: both stages
    read the same ones. ``unlabelled`` is the run's pool of unlabelled texts when it has one
    (its unlabelled batches draw from it), so they are not read and encoded a second time;
    reading aclImdb's takes about 6-10 s."""
    from rnnsent.training.vectors import pretraining_reviews

    return functools.cache(lambda: pretraining_reviews(corpus, source, config, options.limit, unlabelled))


def initialise_word_vectors(model: nn.Module, config: RunConfig, corpus: EncodedCorpus,
                            reviews: Callable[[], list], log: Log) -> dict[str, float]:
    """Put pretrained word vectors into the network's embedding: loaded from ``--embeddings``, or
    built from ``reviews()`` (:func:`pretraining_reader`) with ``--pretrain-window``. Returns the
    seconds spent building them."""
    from rnnsent.training.vectors import build_vectors, load_vectors

    recipe, vocab_size = config.model, config.text.num_words
    if recipe.encoder:
        if recipe.pretrain_window:
            log("note: the encoder's embedding replaces the word vectors: --pretrain-window builds none")
        return {}
    if recipe.embeddings:
        vectors = load_vectors(Path(recipe.embeddings), corpus.vocabulary, vocab_size, recipe.embedding_dim)
        seconds = 0.0
    elif recipe.pretrain_window:
        started = time.perf_counter()
        texts = reviews()
        vectors = build_vectors(texts, vocab_size, recipe.embedding_dim, recipe.pretrain_window, log=log)
        seconds = round(time.perf_counter() - started, 2)
        log(f"word vectors built from {sum(len(r[1]) - 1 for r in texts)} texts in {seconds:.1f}s")
    else:
        return {}
    with torch.no_grad():
        recurrent_network(model).embedding.weight.copy_(vectors)
    return {"pretrain_seconds": seconds}


def initialise_encoder(model: nn.Module, config: RunConfig, corpus: EncodedCorpus, reviews: Callable[[], list],
                       log: Log) -> dict[str, Any]:
    """Put a pretrained language model's embedding and recurrent layers into the network: loaded
    from ``--encoder``, or trained first for ``--lm-steps`` steps on ``reviews()``
    (:func:`pretraining_reader`). Returns the pretraining's figures."""
    from rnnsent.model.language_model import copy_into_classifier
    from rnnsent.training.encoder_file import load_encoder
    from rnnsent.training.language_model import language_model_stage

    network = recurrent_network(model)
    if config.model.encoder:
        pretrained = load_encoder(Path(config.model.encoder), config, corpus.vocabulary)
        copy_into_classifier(network, pretrained.to(network.embedding.weight.device))
        log(f"embedding and recurrent layers from the language model in {config.model.encoder}")
        return {}
    return language_model_stage(network, config, reviews, log)


def fit_ngram_regression_stage(model: nn.Module, config: RunConfig, data: TrainingData, log: Log) -> dict[str, Any]:
    """Fit a stacked model's n-gram regression on the training split, before the network trains."""
    if not (config.model.ngram_buckets and config.model.ngram_fit in STACKED_FITS):
        return {}
    from rnnsent.training.ngram_regression import fit_ngram_regression, regression_memory_estimate

    branch = model.ngrams
    # Upper bounds: every token of a row starts one n-gram of each order, all of them distinct.
    entries = int(data.train.lengths.clamp(max=config.text.maxlen).sum()) * branch.order
    estimate = regression_memory_estimate(entries, min(entries, branch.vocab_size + branch.buckets),
                                          1 if branch.ordinal else branch.outputs)
    available = _physical_memory()
    log(f"n-gram regression: at most {entries:,} (text, n-gram) entries, about {estimate / 2**30:.2f} GB at the peak")
    if available and estimate > 0.8 * available:
        log(f"warning: the n-gram regression may need about {estimate / 2**30:.1f} GB of this machine's "
            f"{available / 2**30:.1f} GB; fewer texts (--limit), a shorter --maxlen or --ngram-order 2 need less")
    stats = fit_ngram_regression(model.ngrams, data.train.ids, data.train.labels, config.model.ngram_c, log=log,
                                 task=data.labels.task)
    if branch.ordinal:
        # On its own training texts the regression is nearly always right, so the readout of
        # its cut logits is fitted on the validation split. It needs nothing of the network, so
        # it is fitted now, and the branch is a whole K-class model (distillation's teacher)
        # while the network trains.
        from rnnsent.training.ngram_regression import fit_ordinal_readout

        cuts = predict_cut_logits(branch, data.validation.ids)
        readout = fit_ordinal_readout(branch, cuts, data.validation.labels)
        log(f"ordinal readout on {len(cuts)} validation texts: n-gram accuracy "
            f"{readout['readout_accuracy_before']:.4f} -> {readout['readout_accuracy']:.4f}")
    return {"ngram_regression": {key: round(value, 4) for key, value in stats.items()}}


def _physical_memory() -> int:
    """This machine's memory in bytes (0 where the system does not say)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def train_tensors(config: RunConfig, options: RunOptions, data: TrainingData, out: Path, *, world: World = World(),
                  resume: bool = False, log: Log = lambda message: None, progress_bar: bool = False,
                  initialise: Callable[[nn.Module], None] | None = None,
                  checkpoint_fields: dict | None = None, on_epoch: EpochHook | None = None) -> TrainResult:
    """Seed, build the model, let ``initialise(model)`` put starting weights in (not on resume,
    where the checkpoint holds them), and train the network on ready tensors."""
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, config.text.num_words, sparse_embedding_applies(config, world),
                        data.labels).to(world.device)
    if config.train.class_weights == "balanced":
        recurrent_network(model).loss_weight = balanced_weights(data.train.labels, data.labels).to(world.device)
    if config.model.normalize_embeddings:
        recurrent_network(model).set_word_frequencies(data.train.ids)
    if initialise is not None and not resume:
        initialise(model)
    return train_network(model, config, options, data, out, world, resume, log, progress_bar, checkpoint_fields or {},
                         on_epoch)


def train_network(model: nn.Module, config: RunConfig, options: RunOptions, data: TrainingData, out: Path,
                  world: World, resume: bool, log: Log, progress_bar: bool, checkpoint_fields: dict,
                  on_epoch: EpochHook | None = None) -> TrainResult:
    """The network's training: optimiser, checkpoint restore, the step, the loop."""
    optimizer = build_optimizer(config.train, parameter_groups(model, config.train))
    progress, best_state = checkpoints.Progress(), None
    if resume:
        meta, tensors = checkpoints.load_checkpoint(out)
        progress, best_state = checkpoints.restore(meta, tensors, model, optimizer)
        log(f"resuming at epoch {progress.epoch + 1}, step {progress.step_in_epoch} of it ({progress.global_step} steps done)")
    if (config.train.sparse_embedding and config.train.optimizer == "rmsprop" and not config.model.normalize_embeddings
            and not sparse_embedding_applies(config, world)):
        log("note: sparse embedding updates are off under DDP on GPUs (nccl); gradients are dense and all-reduced")
    # The model's buffers (KerasSimpleRNN's zero hidden bias, a stacked model's n-gram intercept
    # and blend) are the same on every rank and fixed while it trains, so DDP need not
    # broadcast them before every forward pass: that saves one collective per step.
    # Extra objectives are computed by a module around the model, which DDP then wraps.
    objective = training_objective(model, config.train)
    module = model if objective is None else objective
    network = DistributedDataParallel(module, forward_sync_buffers=False) if world.distributed else module
    step = choose_step(config, options, model, network, optimizer, world)
    checkpoint_fields = {**checkpoint_fields, "options": options.to_dict()}
    trainer = Trainer(config, options, data, model, optimizer, step, out, world, log, progress_bar, checkpoint_fields,
                      on_epoch=on_epoch)
    return trainer.fit(progress, best_state)


def fit_blend_stage(model: nn.Module, config: RunConfig, data: TrainingData, log: Log) -> dict[str, float]:
    """Fit a stacked model's blend of its two parts on the validation split (an ordinal n-gram
    branch's readout was fitted on the same split before the network trained)."""
    from rnnsent.training.ngram_regression import fit_blend

    validation = data.validation
    parts = predict_part_logits(model, validation.ids, validation.lengths)
    return fit_blend(model, parts, validation.labels.numpy(), log=log)


@dataclass
class Decision:
    """How logits become decisions, fitted on the validation split: the temperature that divides
    them (``--calibrate``), each label's threshold (multilabel), and the figures of the fit."""

    temperature: float = 1.0
    thresholds: list[float] | None = None
    figures: dict[str, Any] = field(default_factory=dict)


def balanced_weights(targets: torch.Tensor, labels: LabelSpace) -> torch.Tensor:
    """Per-class loss weights inversely proportional to each class's training frequency.

    Binary and multiclass: ``n / (K * count_k)`` for class k (scikit-learn's "balanced");
    multilabel: each label's positives weigh ``negatives / positives`` (``pos_weight``).
    """
    if labels.task == "multilabel":
        positives = targets.sum(dim=0).double()
        return ((len(targets) - positives) / positives.clamp(min=1)).float()
    k = len(labels.names)
    counts = torch.bincount(targets.long(), minlength=k).double()
    return (len(targets) / (k * counts.clamp(min=1))).float()


def decision_stage(model: nn.Module, config: RunConfig, data: TrainingData, log: Log) -> Decision:
    """Fit the temperature (``--calibrate``) and multilabel thresholds on the validation split."""
    from rnnsent.metrics import choose_thresholds, fit_temperature, separated, task_metrics

    decision = Decision()
    if data.validation is None or not (config.train.calibrate or data.labels.task == "multilabel"):
        return decision
    logits = predict_logits(model, data.validation.ids, data.validation.lengths)
    targets = data.validation.labels.numpy()
    if config.train.calibrate:
        before = task_metrics(data.labels, targets, logits)["ece"]
        decision.temperature = fit_temperature(logits, targets, data.labels.task)
        if separated(decision.temperature):
            # Every validation text is right by a margin: sharper is always better there, and a
            # temperature at the search's edge would answer 0 or 1 for every text.
            log(f"note: --calibrate kept temperature 1: the {len(targets)} validation texts are all answered right, "
                "so they cannot tell how sure the model should be; give more validation texts to calibrate")
            decision.temperature = 1.0
        after = task_metrics(data.labels, targets, logits / decision.temperature)["ece"]
        decision.figures = {"temperature": decision.temperature, "ece_before": before, "ece_after": after}
        log(f"calibration: temperature {decision.temperature:.3f}; validation ECE {before:.4f} -> {after:.4f}")
    if data.labels.task == "multilabel":
        probabilities = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64) / decision.temperature))
        decision.thresholds = choose_thresholds(targets, probabilities)
        log("thresholds chosen on the validation split: " +
            ", ".join(f"{name} {t:.3f}" for name, t in zip(data.labels.names, decision.thresholds)))
    return decision


def chance_warnings(metrics: dict[str, Any], corpus: EncodedCorpus, options: RunOptions,
                    config: RunConfig) -> list[str]:
    """Warnings for a model no better than always answering the most frequent label, with
    advice that fits ``config`` (it does not suggest what the recipe already does)."""
    labels = corpus.labels
    if labels.task == "multilabel" or not metrics.get("count"):
        return []
    test = limit_split(corpus.test, options.limit).labels
    majority = float(np.bincount(test.astype(np.int64)).max() / len(test))
    confusion = np.asarray(metrics["confusion_matrix"])
    columns_used = int((confusion.sum(axis=0) > 0).sum())
    advice = "try " + ", ".join(chance_advice(config, len(limit_split(corpus.train, options.limit))))
    if columns_used <= 1:
        return [f"warning: the model predicts '{labels.names[int(confusion.sum(axis=0).argmax())]}' for every test "
                f"text; it has not learned from the data: {advice}"]
    if metrics["accuracy"] <= majority + 0.01:
        return [f"warning: test accuracy {metrics['accuracy']:.4f} is no better than always answering the most "
                f"frequent label ({majority:.4f}): {advice}"]
    return []


# Below this many training texts `small` is the preset to suggest; above, `best`.
SMALL_DATA_TEXTS = 10_000


def chance_advice(config: RunConfig, training_texts: int) -> list[str]:
    """What to change in ``config`` when its run learned nothing: more epochs always, and each of
    a faster optimiser, a larger GRU and the preset for the data's size where ``config`` lacks it."""
    model, train = config.model, config.train
    advice = [f"more epochs (--epochs {2 * train.epochs})"]
    if train.optimizer != "adam" or train.lr < 3e-3:
        advice.append("a larger learning rate (--optimizer adam --lr 0.003)")
    if model.cell != "gru" or model.hidden_size < 32:
        advice.append("a larger model (--cell gru --hidden-size 32)")
    preset = "small" if training_texts < SMALL_DATA_TEXTS else "best"
    if config.preset != preset:
        advice.append(f"--preset {preset}" + (" (made for a few hundred to a few thousand texts)" if preset == "small" else ""))
    return advice


def evaluate_on_test(result: TrainResult, config: RunConfig, options: RunOptions, corpus: EncodedCorpus,
                     decision: Decision = Decision()) -> dict[str, Any]:
    """The trained model's test metrics, with its size and the run's step counts."""
    test = Tensors.from_split(limit_split(corpus.test, options.limit), config, corpus.labels.task)
    metrics = evaluate_model(result.model, test.ids, test.lengths, test.labels.numpy(), corpus.labels,
                             decision.thresholds, decision.temperature)
    metrics.update({"parameters": count_parameters(result.model), "steps": result.steps, "best_epoch": result.best_epoch})
    return metrics
