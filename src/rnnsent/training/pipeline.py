"""The stages of a training run, as plain functions called in order by :func:`run`.

data → word vectors → n-gram regression → network → blend → test evaluation → model directory.

Every process of a torchrun launch runs the same stages on the same data and builds the same
starting weights; only rank 0 logs, writes checkpoints and the model directory.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rnnsent.artifact.directory import save_artifact
from rnnsent.artifact.lock import run_lock
from rnnsent.config import RunConfig, RunOptions
from rnnsent.data.cache import load_encoded
from rnnsent.data.download import source_identity
from rnnsent.data.corpus import EncodedCorpus
from rnnsent.data.splits import limit_split
from rnnsent.inference.evaluate import evaluate_model
from rnnsent.labels import LabelSpace
from rnnsent.metrics import format_metrics
from rnnsent.model.build import build_model, recurrent_network
from rnnsent.model.scoring import predict_logits, predict_part_logits
from rnnsent.model.size import check_fits
from rnnsent.model.summary import count_parameters
from rnnsent.training import checkpoint as checkpoints
from rnnsent.training.distributed import World, barrier, setup, teardown
from rnnsent.training.loop import Trainer, TrainResult
from rnnsent.training.optim import build_optimizer
from rnnsent.training.steps import choose_step, sparse_embedding_applies
from rnnsent.training.tensors import Tensors, TrainingData, prepare_data

Log = Callable[[str], None]
EpochHook = Callable[[dict[str, Any], Any], None]  # (row of history, validation logits or None)


@dataclass
class RunOutcome:
    """What :func:`run` produced: the trained model (on the CPU) and what was saved with it."""

    model: nn.Module
    vocabulary: Any
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    labels: LabelSpace
    temperature: float = 1.0
    thresholds: list[float] | None = None


def run(config: RunConfig, options: RunOptions, source: Path, out: Path, *, resume: bool = False,
        log: Log = print, progress_bar: bool = False, on_epoch: EpochHook | None = None,
        score_test: bool = True) -> RunOutcome:
    """Train ``config`` on ``source`` into the model directory ``out`` (continuing its checkpoint
    when ``resume``), evaluate on the test split and save. Returns the trained model.

    ``on_epoch(row, validation_logits)`` is called after each epoch (see :class:`Trainer`);
    ``score_test=False`` leaves the test split unscored (the saved metrics then hold no test figures)."""
    world = setup(options.device)
    try:
        # Rank 0 holds the run directory's lock: the one writer of checkpoints and the model.
        with run_lock(out) if world.is_main else nullcontext():
            return _run(config, options, source, out, world, resume, log, progress_bar, on_epoch, score_test)
    finally:
        teardown(world)


def _run(config: RunConfig, options: RunOptions, source: Path, out: Path, world: World, resume: bool, log: Log,
         progress_bar: bool, on_epoch: EpochHook | None = None, score_test: bool = True) -> RunOutcome:
    if options.threads:
        torch.set_num_threads(options.threads)
    log = log if world.is_main else (lambda message: None)
    corpus = read_data(source, config, world)
    data = prepare_data(corpus, config, options.limit)
    if not resume and checkpoints.has_checkpoint(out):
        log(f"note: starting afresh in {out} (its previous checkpoint is replaced)")
    validation = f", {len(data.validation)} validation" if data.validation is not None else ""
    log(f"preset {config.preset}: {len(data.train)} training reviews{validation}, "
        f"maxlen {config.text.maxlen}, {config.model.cell} cell, device {world.device}")
    if not corpus.labels.is_sentiment:
        log(corpus.labels.describe())
    check_fits(config, corpus.labels.num_outputs)
    started = time.perf_counter()
    figures: dict[str, Any] = {"pretrain_seconds": 0.0}

    def initialise(model: nn.Module) -> None:
        figures.update(initialise_word_vectors(model, config, options, corpus, source, log))
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
        metrics.update({"train_seconds": round(seconds, 2), **figures})
        if decision.figures:
            metrics["calibration"] = decision.figures
        save_artifact(out, config, corpus.vocabulary, result.model.cpu(), metrics, result.history, corpus.labels,
                      decision.temperature, decision.thresholds)
        log(f"trained in {seconds:.1f}s; model saved to {out}")
        if score_test:
            log(format_metrics(metrics))
        for warning in chance_warnings(metrics, corpus, options):
            log(warning)
    return RunOutcome(result.model.cpu(), corpus.vocabulary, metrics, result.history, corpus.labels,
                      decision.temperature, decision.thresholds)


def read_data(source: Path, config: RunConfig, world: World) -> EncodedCorpus:
    """The encoded corpus. One process per machine reads and encodes the source into the cache;
    the others wait for it and then read the cache, instead of all decoding the source at once."""
    if world.local_rank != 0:
        barrier(world)
    corpus = load_encoded(Path(source), config.text, quiet=not world.is_main, data=config.data)
    if world.local_rank == 0:
        barrier(world)
    return corpus


def initialise_word_vectors(model: nn.Module, config: RunConfig, options: RunOptions, corpus: EncodedCorpus,
                            source: Path, log: Log) -> dict[str, float]:
    """Put pretrained word vectors into the network's embedding: loaded from ``--embeddings``, or
    built from the training and unlabelled reviews (never validation or test) with
    ``--pretrain-window``. Returns the seconds spent building them."""
    from rnnsent.training.vectors import (
        build_vectors,
        load_vectors,
        pretraining_reviews,
    )

    recipe, vocab_size = config.model, config.text.num_words
    if recipe.embeddings:
        vectors = load_vectors(Path(recipe.embeddings), corpus.vocabulary, vocab_size, recipe.embedding_dim)
        seconds = 0.0
    elif recipe.pretrain_window:
        started = time.perf_counter()
        reviews = pretraining_reviews(corpus, source, config.train.validation_split, options.limit)
        vectors = build_vectors(reviews, vocab_size, recipe.embedding_dim, recipe.pretrain_window, log=log)
        seconds = round(time.perf_counter() - started, 2)
        log(f"word vectors built from {sum(len(r[1]) - 1 for r in reviews)} reviews in {seconds:.1f}s")
    else:
        return {}
    with torch.no_grad():
        recurrent_network(model).embedding.weight.copy_(vectors)
    return {"pretrain_seconds": seconds}


def fit_ngram_regression_stage(model: nn.Module, config: RunConfig, data: TrainingData, log: Log) -> dict[str, Any]:
    """Fit a stacked model's n-gram regression on the training split, before the network trains."""
    if not (config.model.ngram_buckets and config.model.ngram_fit == "stacked"):
        return {}
    from rnnsent.training.ngram_regression import fit_ngram_regression

    stats = fit_ngram_regression(model.ngrams, data.train.ids, data.train.labels, config.model.ngram_c, log=log)
    return {"ngram_regression": {key: round(value, 4) for key, value in stats.items()}}


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
    if initialise is not None and not resume:
        initialise(model)
    return train_network(model, config, options, data, out, world, resume, log, progress_bar, checkpoint_fields or {},
                         on_epoch)


def train_network(model: nn.Module, config: RunConfig, options: RunOptions, data: TrainingData, out: Path,
                  world: World, resume: bool, log: Log, progress_bar: bool, checkpoint_fields: dict,
                  on_epoch: EpochHook | None = None) -> TrainResult:
    """The network's training: optimiser, checkpoint restore, the step, the loop."""
    # Frozen tensors (a stacked model's n-gram weights) are not the optimiser's to update.
    optimizer = build_optimizer(config.train, [p for p in model.parameters() if p.requires_grad])
    progress, best_state = checkpoints.Progress(), None
    if resume:
        meta, tensors = checkpoints.load_checkpoint(out)
        progress, best_state = checkpoints.restore(meta, tensors, model, optimizer)
        log(f"resuming at epoch {progress.epoch + 1}, step {progress.step_in_epoch} of it ({progress.global_step} steps done)")
    if config.train.sparse_embedding and config.train.optimizer == "rmsprop" and not sparse_embedding_applies(config, world):
        log("note: sparse embedding updates are off under DDP on GPUs (nccl); gradients are dense and all-reduced")
    # The model's buffers (KerasSimpleRNN's zero hidden bias, a stacked model's n-gram intercept
    # and blend) are the same on every rank and fixed while it trains, so DDP need not
    # broadcast them before every forward pass: that saves one collective per step.
    network = DistributedDataParallel(model, forward_sync_buffers=False) if world.distributed else model
    step = choose_step(config, options, model, network, optimizer, world)
    checkpoint_fields = {**checkpoint_fields, "options": options.to_dict()}
    trainer = Trainer(config, options, data, model, optimizer, step, out, world, log, progress_bar, checkpoint_fields,
                      on_epoch=on_epoch)
    return trainer.fit(progress, best_state)


def fit_blend_stage(model: nn.Module, config: RunConfig, data: TrainingData, log: Log) -> dict[str, float]:
    """Fit a stacked model's blend of its two parts on the validation split."""
    from rnnsent.training.ngram_regression import fit_blend

    parts = predict_part_logits(model, data.validation.ids, data.validation.lengths)
    return fit_blend(model, parts, data.validation.labels.numpy(), log=log)


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
    from rnnsent.metrics import choose_thresholds, fit_temperature, task_metrics

    decision = Decision()
    if data.validation is None or not (config.train.calibrate or data.labels.task == "multilabel"):
        return decision
    logits = predict_logits(model, data.validation.ids, data.validation.lengths)
    targets = data.validation.labels.numpy()
    if config.train.calibrate:
        before = task_metrics(data.labels, targets, logits)["ece"]
        decision.temperature = fit_temperature(logits, targets, data.labels.task)
        after = task_metrics(data.labels, targets, logits / decision.temperature)["ece"]
        decision.figures = {"temperature": decision.temperature, "ece_before": before, "ece_after": after}
        log(f"calibration: temperature {decision.temperature:.3f}; validation ECE {before:.4f} -> {after:.4f}")
    if data.labels.task == "multilabel":
        probabilities = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64) / decision.temperature))
        decision.thresholds = choose_thresholds(targets, probabilities)
        log("thresholds chosen on the validation split: " +
            ", ".join(f"{name} {t:.3f}" for name, t in zip(data.labels.names, decision.thresholds)))
    return decision


def chance_warnings(metrics: dict[str, Any], corpus: EncodedCorpus, options: RunOptions) -> list[str]:
    """Warnings for a model no better than always answering the most frequent label."""
    labels = corpus.labels
    if labels.task == "multilabel" or not metrics.get("count"):
        return []
    test = limit_split(corpus.test, options.limit).labels
    majority = float(np.bincount(test.astype(np.int64)).max() / len(test))
    confusion = np.asarray(metrics["confusion_matrix"])
    columns_used = int((confusion.sum(axis=0) > 0).sum())
    advice = ("try more epochs (--epochs), a larger learning rate (--lr 0.003 --optimizer adam), a larger model "
              "(--cell gru --hidden-size 32), or --preset best")
    if columns_used <= 1:
        return [f"warning: the model predicts '{labels.names[int(confusion.sum(axis=0).argmax())]}' for every test "
                f"text; it has not learned from the data: {advice}"]
    if metrics["accuracy"] <= majority + 0.01:
        return [f"warning: test accuracy {metrics['accuracy']:.4f} is no better than always answering the most "
                f"frequent label ({majority:.4f}): {advice}"]
    return []


def evaluate_on_test(result: TrainResult, config: RunConfig, options: RunOptions, corpus: EncodedCorpus,
                     decision: Decision = Decision()) -> dict[str, Any]:
    """The trained model's test metrics, with its size and the run's step counts."""
    test = Tensors.from_split(limit_split(corpus.test, options.limit), config, corpus.labels.task)
    metrics = evaluate_model(result.model, test.ids, test.lengths, test.labels.numpy(), corpus.labels,
                             decision.thresholds, decision.temperature)
    metrics.update({"parameters": count_parameters(result.model), "steps": result.steps, "best_epoch": result.best_epoch})
    return metrics
