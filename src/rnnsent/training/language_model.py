"""Language-model pretraining of a recipe's embedding and recurrent encoder.

The recipe's network is built and initialised as a training run would build it (the same
seed; word vectors first when the recipe builds them), and its embedding and recurrent
layers become a :class:`~rnnsent.model.language_model.LanguageModel`: a forward next-word model
and, for a bidirectional recipe, a backward one over every review reversed. Each step trains
both on one segment of ``lm_bptt`` tokens of ``lm_batch_size`` rows of the training and
unlabelled reviews laid end to end (never validation or test reviews; see
:mod:`rnnsent.training.token_streams`), carrying each direction's recurrent state from the
segment before within a review, detached (truncated back-propagation through time), and
starting it from zero at each review's first segment, with Adam at ``lm_lr`` after a short
linear warm-up and the recipe's gradient clipping.

Two ways in: :func:`pretrain_language_model` (``rnnsent pretrain --language-model``), which
checkpoints into its folder, resumes bit-exactly, stops at a step or time limit and writes the
encoder file; and :func:`language_model_stage`, which a training run with ``lm_steps`` calls
on its freshly built network before fine-tuning.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from rnnsent.config import RunConfig, RunOptions
from rnnsent.errors import TrainingDiverged, UsageError
from rnnsent.model.language_model import (
    LanguageModel,
    State,
    copy_from_classifier,
    copy_into_classifier,
    detach_state,
    reset_state,
)
from rnnsent.model.recurrent import RecurrentClassifier
from rnnsent.training import checkpoint as checkpoints
from rnnsent.training.optim import Adam, clip_gradients
from rnnsent.training.signals import stop_signals
from rnnsent.training.token_streams import (
    HELD_OUT_ROWS,
    SegmentRows,
    TokenStreams,
    direction_rows,
    segment_count,
    token_streams,
)

Log = Callable[[str], None]
REPORT_EVERY = 100  # steps between progress lines
EVALUATE_EVERY = 500  # steps between held-out perplexities (and one at the end)
CHECKPOINT_EVERY = 500  # steps between checkpoints of a standalone pretraining (and one at the end)
WARMUP_STEPS = 100  # linear learning-rate warm-up; constant after it, as a time limit leaves the length open
CHECKPOINT_KIND = "language-model"


class PretrainingInterrupted(Exception):
    """Raised after a SIGINT/SIGTERM once the pretraining checkpoint is written."""


@dataclass
class Pretrained:
    """What a pretraining produced: the language model and its figures (steps, tokens, seconds,
    tokens per second, held-out perplexity per direction), and whether it ran all ``lm_steps``."""

    model: LanguageModel
    figures: dict[str, Any]
    finished: bool


class _Checkpointed(nn.Module):
    """The language model and each direction's carried state, as the one state dict a checkpoint saves."""

    def __init__(self, model: LanguageModel, states: dict[str, State]) -> None:
        super().__init__()
        self.model = model
        for name, state in states.items():
            for index, part in enumerate(state if isinstance(state, tuple) else (state,)):
                self.register_buffer(f"state_{name}_{index}", part.detach().clone())

    def states(self) -> dict[str, State]:
        states: dict[str, State] = {}
        for name in self.model.direction_names:
            parts = [getattr(self, f"state_{name}_{index}") for index in range(2 if self.model.config.cell == "lstm" else 1)]
            states[name] = tuple(parts) if len(parts) == 2 else parts[0]
        return states


def held_out_loss(model: LanguageModel, rows: dict[str, SegmentRows]) -> dict[str, float]:
    """Mean negative log-likelihood per predicted token of each direction over its held-out rows,
    read segment by segment with the state carried within each review and reset at its start."""
    losses = {}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for name in model.direction_names:
            direction = rows[name]
            state, total = model.zero_state(name, direction.starts.shape[0]), 0.0
            for index in range(direction.segments):
                inputs, targets, starts = direction.segment(index)
                _, summed, state = model(name, inputs, targets, reset_state(state, starts))
                total += float(summed)
            losses[name] = total / max(int(direction.predicted().sum()), 1)
    model.train(was_training)
    return losses


class LanguageModelTrainer:
    """Trains a :class:`LanguageModel` on review rows by truncated back-propagation through time."""

    def __init__(self, config: RunConfig, model: LanguageModel, streams: TokenStreams, device: torch.device,
                 log: Log = lambda message: None, run_dir: Path | None = None,
                 checkpoint_fields: dict[str, Any] | None = None) -> None:
        train = config.train
        self.config, self.log, self.device = config, log, device
        self.model = model.to(device)
        self.bptt, self.batch = train.lm_bptt, train.lm_batch_size
        names = model.direction_names
        self.rows = {name: rows.to(device) for name, rows in
                     direction_rows(streams.train, names, self.batch, self.bptt).items()}
        self.held_out = None
        if streams.held_out:
            held = direction_rows(streams.held_out, names, min(HELD_OUT_ROWS, len(streams.held_out)), self.bptt,
                                  whole=True)
            self.held_out = {name: rows.to(device) for name, rows in held.items()}
        self.steps_per_pass = self.rows["forward"].segments
        # Tokens predicted per direction after each step of a pass: (segments + 1,), from 0.
        self.predicted = torch.cat([torch.zeros(1, dtype=torch.int64), self.rows["forward"].predicted().cpu().cumsum(0)])
        if train.lm_embedding == "fixed":
            model.embedding.weight.requires_grad_(False)
        self.optimizer = Adam([p for p in model.parameters() if p.requires_grad], lr=train.lm_lr)
        self.states = self._zero_states()
        self.run_dir, self.checkpoint_fields = run_dir, checkpoint_fields or {}
        self.seconds_before = 0.0  # seconds of the sessions before this one (a resumed pretraining)
        self._stop_requested = False

    def _zero_states(self) -> dict[str, State]:
        return {name: self.model.zero_state(name, self.batch) for name in self.model.direction_names}

    def tokens(self, steps: int) -> int:
        """Tokens each direction has predicted after ``steps`` steps."""
        passes, within = divmod(steps, self.steps_per_pass)
        return passes * int(self.predicted[-1]) + int(self.predicted[within])

    def restore(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> checkpoints.Progress:
        """Put a pretraining checkpoint back: weights, optimiser, carried states, RNG; returns its progress."""
        container = _Checkpointed(self.model, self.states)
        progress, _ = checkpoints.restore(meta, tensors, container, self.optimizer)
        self.states = container.states()
        self.seconds_before = float(meta.get("seconds", 0.0))
        return progress

    def step(self, progress: checkpoints.Progress) -> dict[str, float]:
        """One optimiser step on the next segment of every direction; returns each direction's mean loss."""
        lr = self.config.train.lm_lr * min(1.0, (progress.global_step + 1) / WARMUP_STEPS)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad()
        losses = {}
        directions = self.model.direction_names
        for name in directions:
            inputs, targets, starts = self.rows[name].segment(progress.step_in_epoch)  # (batch, bptt) x 2, (batch,)
            state = reset_state(self.states[name], starts)
            loss, _, state = self.model(name, inputs, targets, state)
            # The directions' losses are averaged; each is back-propagated at once to free its graph.
            (loss / len(directions)).backward()
            self.states[name] = detach_state(state)
            losses[name] = float(loss.detach())
        if self.config.train.clip_norm:
            clip_gradients([p for p in self.model.parameters() if p.requires_grad], self.config.train.clip_norm)
        self.optimizer.step()
        progress.global_step += 1
        progress.step_in_epoch += 1
        if progress.step_in_epoch == self.steps_per_pass:
            # The next pass reads the rows again from their first review.
            progress.epoch, progress.step_in_epoch = progress.epoch + 1, 0
            self.states = self._zero_states()
        return losses

    def fit(self, progress: checkpoints.Progress, steps: int, deadline: float | None = None,
            stop_on_signal: bool = False) -> bool:
        """Train until ``steps`` steps in all (0: until the deadline) or ``deadline`` (a
        ``time.perf_counter()`` value); returns whether all ``steps`` are done."""
        started = report_started = time.perf_counter()
        window: dict[str, float] = dict.fromkeys(self.model.direction_names, 0.0)
        window_steps = 0
        self.model.train()
        with self._stop_signals(stop_on_signal):
            while not steps or progress.global_step < steps:
                if deadline is not None and time.perf_counter() >= deadline:
                    break
                losses = self.step(progress)
                for name, value in losses.items():
                    window[name] += value
                window_steps += 1
                if not all(math.isfinite(value) for value in losses.values()):
                    raise TrainingDiverged(f"the language model's loss became NaN or infinite by step "
                                           f"{progress.global_step}; lower --lm-lr or set --clip-norm 1.0")
                if progress.global_step % REPORT_EVERY == 0:
                    now = time.perf_counter()
                    self._report(progress, window, window_steps, now - report_started, now - started)
                    window, window_steps, report_started = dict.fromkeys(window, 0.0), 0, now
                if progress.global_step % EVALUATE_EVERY == 0:
                    self._evaluate(progress, time.perf_counter() - started)
                if self.run_dir is not None and (progress.global_step % CHECKPOINT_EVERY == 0 or self._stop_requested):
                    self.save(progress, time.perf_counter() - started)
                if self._stop_requested:
                    raise PretrainingInterrupted(f"stopped at step {progress.global_step}; checkpoint saved")
        seconds = time.perf_counter() - started
        finished = bool(steps) and progress.global_step >= steps
        if not progress.history or progress.history[-1]["step"] != progress.global_step:
            self._evaluate(progress, seconds)
        progress.finished = finished
        if self.run_dir is not None:
            self.save(progress, seconds)
        self.seconds_before += seconds
        return finished

    def figures(self, progress: checkpoints.Progress) -> dict[str, Any]:
        """Steps, tokens predicted per direction, seconds, tokens per second and the last held-out perplexity."""
        tokens = self.tokens(progress.global_step)
        seconds = round(self.seconds_before, 2)
        last = progress.history[-1] if progress.history else {}
        return {"steps": progress.global_step, "tokens": tokens, "passes": round(progress.global_step / self.steps_per_pass, 3),
                "seconds": seconds, "tokens_per_second": round(tokens / seconds) if seconds else None,
                "held_out_perplexity": last.get("held_out_perplexity")}

    def save(self, progress: checkpoints.Progress, seconds: float) -> None:
        """Checkpoint the pretraining into ``run_dir`` (atomically; see :mod:`rnnsent.training.checkpoint`)."""
        assert self.run_dir is not None
        extra = {"kind": CHECKPOINT_KIND, "seconds": self.seconds_before + seconds, **self.checkpoint_fields}
        checkpoints.save_checkpoint(self.run_dir, progress, self.config.to_dict(), _Checkpointed(self.model, self.states),
                                    self.optimizer, None, extra)

    def _report(self, progress, window: dict[str, float], window_steps: int, window_seconds: float,
                seconds: float) -> None:
        parts = ", ".join(f"{name} {value / window_steps:.3f}" for name, value in window.items())
        mean = sum(window.values()) / window_steps / len(window)
        window_tokens = self.tokens(progress.global_step) - self.tokens(progress.global_step - window_steps)
        rate = window_tokens / max(window_seconds, 1e-9)
        self.log(f"lm step {progress.global_step:,}  pass {progress.epoch + 1}  loss {mean:.3f} ({parts})  "
                 f"{rate:,.0f} tokens/s  {self.seconds_before + seconds:.0f}s")

    def _evaluate(self, progress, seconds: float) -> None:
        """Score the held-out stream and record a row of history."""
        row: dict[str, Any] = {"step": progress.global_step, "seconds": round(self.seconds_before + seconds, 2)}
        if self.held_out is not None:
            losses = held_out_loss(self.model, self.held_out)
            row["held_out_perplexity"] = {name: round(math.exp(min(value, 50.0)), 2) for name, value in losses.items()}
            described = ", ".join(f"{name} {value:.1f}" for name, value in row["held_out_perplexity"].items())
            self.log(f"lm step {progress.global_step:,}: held-out perplexity {described} "
                     f"({int(self.held_out['forward'].predicted().sum()):,} tokens)")
        progress.history.append(row)

    def _stop_signals(self, enabled: bool):
        """With ``enabled``, SIGINT/SIGTERM finish the current step, checkpoint and stop."""
        return stop_signals(self._request_stop) if enabled else nullcontext()

    def _request_stop(self) -> None:
        self._stop_requested = True


def starting_model(config: RunConfig, network: RecurrentClassifier) -> LanguageModel:
    """A language model whose embedding and recurrent weights are ``network``'s."""
    model = LanguageModel(config.model, config.text.num_words).to(network.embedding.weight.device)
    copy_from_classifier(model, network)
    return model


def _streams(config: RunConfig, reviews, log: Log) -> TokenStreams:
    streams = token_streams(reviews, config.train.seed)
    tokens = sum(len(review) for review in streams.train)
    log(f"language model: {streams.training_reviews:,} training and {streams.unlabelled_reviews:,} unlabelled "
        f"texts ({tokens:,} tokens); {streams.held_out_reviews:,} held out for perplexity; validation and test "
        "texts are not read")
    return streams


def language_model_stage(network: RecurrentClassifier, config: RunConfig,
                         reviews: Callable[[], list], log: Log) -> dict[str, Any]:
    """Pretrain ``network``'s embedding and recurrent layers as language models for ``lm_steps``
    steps on ``reviews()`` (the texts the run trains on and the unlabelled ones, as
    :func:`rnnsent.training.vectors.pretraining_reviews` gives them), then put them back into it.
    Returns the figures for the run's metrics (nothing when ``lm_steps`` is 0)."""
    if not config.train.lm_steps:
        return {}
    streams = _streams(config, reviews(), log)
    segments, rows = segment_count(streams.train, config.train.lm_bptt), config.train.lm_batch_size
    if segments < rows:
        # Too little text for one step (a few hundred short texts): the network starts from its
        # word vectors instead, as it would without the stage, rather than the run failing.
        log(f"language model: these texts fill {segments:,} segments of --lm-bptt {config.train.lm_bptt}, fewer "
            f"than --lm-batch-size {rows:,} rows; the network trains without language-model pretraining")
        return {}
    device = network.embedding.weight.device
    trainer = LanguageModelTrainer(config, starting_model(config, network), streams, device, log)
    # Inside a training run the pretraining reads the texts at most once: more passes over a
    # small data set cost minutes and teach the encoder little the fine-tuning will not.
    steps = min(config.train.lm_steps, trainer.steps_per_pass)
    if steps < config.train.lm_steps:
        log(f"language model: one pass over these texts is {steps:,} step{'' if steps == 1 else 's'}, fewer than --lm-steps "
            f"{config.train.lm_steps:,}; running one pass (rnnsent pretrain --language-model runs more)")
    progress = checkpoints.Progress()
    trainer.fit(progress, steps)
    copy_into_classifier(network, trainer.model)
    figures = trainer.figures(progress)
    log(f"language model: {figures['steps']:,} step{'' if figures['steps'] == 1 else 's'}, {figures['tokens']:,} "
        f"tokens per direction in {figures['seconds']:.1f}s")
    return {"language_model": figures}


def pretrain_language_model(config: RunConfig, options: RunOptions, source: Path, out: Path, *, resume: bool = False,
                            max_minutes: float = 0.0, log: Log = print,
                            checkpoint_fields: dict[str, Any] | None = None) -> Path:
    """Pretrain the recipe's encoder as language models into the folder ``out``: checkpoints in
    ``out/checkpoint`` (continued when ``resume``), the encoder in ``out/encoder.safetensors``
    (written at the end, also after a time or step limit). Runs ``lm_steps`` steps in all,
    fewer when ``options.max_steps`` or ``max_minutes`` stop it first. Returns the encoder's path."""
    from rnnsent.artifact.lock import run_lock
    from rnnsent.data.cache import load_encoded
    from rnnsent.training.distributed import setup
    from rnnsent.training.encoder_file import save_encoder
    from rnnsent.training.vectors import build_vectors, pretraining_reviews

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("language-model pretraining runs in one process: start it without torchrun")
    steps = _step_limit(config, options)
    deadline = time.perf_counter() + 60.0 * max_minutes if max_minutes else None
    device = setup(options.device).device
    if options.threads:
        torch.set_num_threads(options.threads)
    with run_lock(out):
        corpus = load_encoded(source, config.text, data=config.data)
        reviews = pretraining_reviews(corpus, source, config, options.limit)
        streams = _streams(config, reviews, log)
        torch.manual_seed(config.train.seed)
        network = RecurrentClassifier(config.model, config.text.num_words)
        if config.model.pretrain_window and not resume:
            vectors = build_vectors(reviews, config.text.num_words, config.model.embedding_dim,
                                    config.model.pretrain_window, log=log)
            with torch.no_grad():
                network.embedding.weight.copy_(vectors)
        fields = {**(checkpoint_fields or {}), "options": options.to_dict()}
        trainer = LanguageModelTrainer(config, starting_model(config, network.to(device)), streams, device, log, out,
                                       fields)
        progress = checkpoints.Progress()
        if resume:
            meta, tensors = checkpoints.load_checkpoint(out)
            progress = trainer.restore(meta, tensors)
            log(f"resuming the language model at step {progress.global_step:,}")
        elif checkpoints.has_checkpoint(out):
            log(f"note: starting afresh in {out} (its previous checkpoint is replaced)")
        trainer.fit(progress, steps, deadline, stop_on_signal=True)
        figures = trainer.figures(progress)
        path = save_encoder(out, trainer.model.cpu(), corpus.vocabulary, config, figures)
    ended = "" if progress.global_step >= config.train.lm_steps else (
        f" (stopped by a limit before --lm-steps {config.train.lm_steps:,}; continue with --resume {out})")
    log(f"encoder written to {path}: {figures['steps']:,} steps, {figures['tokens']:,} tokens per direction, "
        f"{figures['seconds']:.0f}s, {figures['tokens_per_second'] or 0:,} tokens/s{ended}")
    return path


def _step_limit(config: RunConfig, options: RunOptions) -> int:
    """The step the pretraining stops at (0: none but the time limit)."""
    limits = [limit for limit in (config.train.lm_steps, options.max_steps) if limit]
    return min(limits) if limits else 0
