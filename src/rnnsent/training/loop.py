"""The training loop: batches cut from pre-built tensors, checkpoints, exact resume, DDP.

The loop takes a built model, its optimiser and a step (:mod:`rnnsent.training.steps`) and
knows nothing of the architecture. The order of batches is a pure function of ``(seed,
epoch)`` and the dropout RNG is saved in each checkpoint, so a resumed run takes exactly the
steps an uninterrupted one would.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from rnnsent.artifact import curves
from rnnsent.config import RunConfig, RunOptions
from rnnsent.data.batches import epoch_batches
from rnnsent.errors import TrainingDiverged, TrainingInterrupted
from rnnsent.metrics import loss_and_accuracy
from rnnsent.model.scoring import predict_logits
from rnnsent.training import checkpoint as checkpoints
from rnnsent.training.distributed import World, all_reduce_sum, any_rank
from rnnsent.training.optim import RMSprop, learning_rate, set_learning_rate
from rnnsent.training.signals import stop_signals
from rnnsent.training.steps import AutogradStep, Batch, CompiledStep, EpochSums
from rnnsent.training.tensors import Tensors, TrainingData
from rnnsent.training.tracking import closing_tracker, open_tracker
from rnnsent.training.unlabelled import UnlabelledSampler

REPORT_EVERY = 50  # steps between loss checks and progress-bar updates


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict[str, Any]]
    best_epoch: int
    steps: int


class Trainer:
    """Trains ``model`` on ``data`` from a given :class:`~rnnsent.training.checkpoint.Progress`,
    writing checkpoints into ``run_dir``."""

    def __init__(
        self,
        config: RunConfig,
        options: RunOptions,
        data: TrainingData,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        step: AutogradStep | CompiledStep,
        run_dir: Path,
        world: World = World(),
        log: Callable[[str], None] | None = None,
        progress_bar: bool = False,
        checkpoint_fields: dict[str, Any] | None = None,
        on_epoch: Callable[[dict[str, Any], np.ndarray | None], None] | None = None,
    ) -> None:
        self.config, self.options, self.data = config, options, data
        self.model, self.optimizer, self.step = model, optimizer, step
        self.run_dir, self.world = Path(run_dir), world
        self.log = log or (lambda message: None)
        self.progress_bar = progress_bar and world.is_main
        self.checkpoint_fields = checkpoint_fields or {}
        self.writer = checkpoints.CheckpointWriter()  # checkpoints are written while the next steps run
        self._stop_requested = False
        # Optional observers: ``on_epoch(row, validation_logits)`` after each epoch's row of
        # history (logits None without a validation split), and TensorBoard logs (--tensorboard).
        self.on_epoch = on_epoch
        self.tracker = None
        self._validation_logits: np.ndarray | None = None
        self.total_steps = len(self._batches(0)) * config.train.epochs
        # The unlabelled texts drawn with each batch, a function of the step (rnnsent.training.unlabelled).
        self.unlabelled = (UnlabelledSampler(data.unlabelled, config, world)
                           if config.train.unlabelled_batch_size else None)
        if options.max_steps:
            self.total_steps = min(self.total_steps, options.max_steps)

    def fit(self, progress: checkpoints.Progress, best_state: dict[str, torch.Tensor] | None = None) -> TrainResult:
        """Train until the last epoch, an early stop or ``max_steps``; return the selected model."""
        self.tracker = open_tracker(self.options.tensorboard) if self.world.is_main else None
        if self.world.is_main:
            curves.prepare()  # matplotlib imports in a child process while the epochs run, for curves.png
        try:
            with self._stop_signals(), closing_tracker(self.tracker):
                while progress.epoch < self.config.train.epochs and not progress.finished:
                    started = time.perf_counter()
                    sums = self._train_epoch(progress, best_state)
                    best_state = self._end_epoch(progress, sums, best_state, time.perf_counter() - started)
                    if self.world.is_main and (progress.finished or progress.epoch >= self.config.train.epochs):
                        curves.draw_soon(progress.history)  # drawn while the checkpoint is written and the test set scored
                    self._save(progress, best_state)
                    if self.on_epoch is not None:
                        self.on_epoch(progress.history[-1], self._validation_logits)
        except BaseException as failure:
            curves.cancel()  # no directory will be saved from this run
            try:
                self.writer.wait()
            except Exception as write_error:
                # The run's own error is the one to report; a checkpoint that failed to write
                # at the same time goes beside it rather than in its place.
                failure.add_note(f"also, the last checkpoint was not written: {write_error}")
            raise
        self.writer.wait()
        if best_state is not None:
            # Model selection: keep the weights of the epoch with the best validation loss.
            self.model.load_state_dict(best_state)
            if progress.best_epoch and progress.best_epoch != len(progress.history):
                self.log(f"restored the weights of epoch {progress.best_epoch} (best validation loss)")
        if isinstance(self.optimizer, RMSprop):
            self.optimizer.materialize()
        return TrainResult(self.model, progress.history, progress.best_epoch, progress.global_step)

    def _train_epoch(self, progress: checkpoints.Progress, best_state) -> torch.Tensor:
        """The remaining steps of the epoch in progress; returns its (loss sum, correct, count)."""
        batches = self._batches(progress.epoch)
        scales = self._loss_scales(progress.epoch, len(batches))
        self.model.train()
        # A checkpoint holds the epoch's sums over all ranks: rank 0 carries them on.
        sums = EpochSums(progress.epoch_sums if self.world.is_main else [0.0, 0.0, 0.0])
        bar = self._bar(len(batches), progress)
        if self.tracker is not None:
            self.tracker.start_epoch(sums.flush())
        try:
            index = progress.step_in_epoch
            while index < len(batches):
                count = self._steps_at_once(progress.global_step, len(batches) - index)
                rates = [learning_rate(self.config.train, progress.global_step + k, self.total_steps) for k in range(count)]
                set_learning_rate(self.optimizer, rates[-1])
                if count == 1:
                    self.step(self._batch(batches[index], scales[index], progress.global_step), sums)
                else:
                    self.step.train_many(self.data.train, batches[index:index + count], rates, sums)
                index += count
                progress.global_step += count
                progress.step_in_epoch = index
                if progress.global_step % REPORT_EVERY == 0 or index == len(batches):
                    totals = sums.flush()
                    self._report(totals, progress, bar)
                    if self.tracker is not None:
                        self.tracker.steps(progress.global_step, totals, rates[-1])
                reached_max = bool(self.options.max_steps) and progress.global_step >= self.options.max_steps
                every = self.options.checkpoint_every
                checkpoint_due = bool(every) and progress.global_step % every == 0 and not reached_max
                stop = any_rank(self.world, self._stop_requested)
                if stop or checkpoint_due:
                    progress.epoch_sums = all_reduce_sum(self.world, sums.flush().clone()).tolist()
                    self._save(progress, best_state)
                if stop:
                    self.writer.wait()
                    raise TrainingInterrupted(f"stopped at step {progress.global_step}; checkpoint saved")
                if reached_max:
                    break
        finally:
            if bar is not None:
                bar.close()
        return sums.flush()

    # ------------------------------------------------------------------ helpers

    def _steps_at_once(self, global_step: int, remaining: int) -> int:
        """How many steps to take before the loop looks up again: one, or for a step that trains
        several batches in one call (the compiled step), all of them up to the next report,
        checkpoint or ``max_steps``, which therefore fall where they would one step at a time.
        A stop asked for during such a call (Ctrl-C) takes effect when the call returns."""
        if not getattr(self.step, "trains_many", False) or self._stop_requested:
            return 1  # a stop asked for before the call takes effect after one step, as without it
        count = min(remaining, REPORT_EVERY - global_step % REPORT_EVERY)
        if self.options.checkpoint_every:
            count = min(count, self.options.checkpoint_every - global_step % self.options.checkpoint_every)
        if self.options.max_steps:
            count = min(count, max(1, self.options.max_steps - global_step))
        return count

    def _batches(self, epoch: int) -> list[np.ndarray]:
        """This process's share of each batch of ``epoch``: index arrays into the training split."""
        train, config = self.data.train, self.config.train
        lengths = train.lengths.numpy() if config.bucket_by_length else None
        return epoch_batches(len(train), config.batch_size, config.seed, epoch, lengths, self.world.rank, self.world.size)

    def _loss_scales(self, epoch: int, count: int) -> list[float | None]:
        """Each step's weight of this rank's mean loss under DDP (None in a single process)."""
        if not self.world.distributed:
            return [None] * count
        train, config = self.data.train, self.config.train
        lengths = train.lengths.numpy() if config.bucket_by_length else None
        whole = epoch_batches(len(train), config.batch_size, config.seed, epoch, lengths)
        global_sizes = [len(batch) for batch in whole if len(batch) >= self.world.size]
        shares = [len(batch) for batch in self._batches(epoch)]
        return [share * self.world.size / size for share, size in zip(shares, global_sizes)]

    def _batch(self, indices: np.ndarray, loss_scale: float | None, step: int) -> Batch:
        train, device = self.data.train, self.world.device
        rows = torch.from_numpy(indices)
        lengths = train.lengths[rows]
        # Trailing padding can be cut only when the model reads true lengths; otherwise it runs
        # over the padding, and the cut would make a review's result depend on its batch (and
        # differ from evaluation, which reads the full width).
        width = int(lengths.max()) if self.config.model.use_lengths else train.ids.shape[1]
        unlabelled = self.unlabelled.batch(step) if self.unlabelled is not None else None
        return Batch(train.ids[rows, :width].to(device), lengths.to(device), train.labels[rows].to(device), loss_scale,
                     indices, step, unlabelled)

    def _report(self, totals: torch.Tensor, progress: checkpoints.Progress, bar) -> None:
        """Stop on a NaN or infinite loss; show the running loss and accuracy."""
        if not math.isfinite(float(totals[0])):
            raise TrainingDiverged(
                f"the loss became NaN or infinite by step {progress.global_step}; lower --lr or set --clip-norm 1.0"
            )
        if bar is not None:
            count = max(float(totals[2]), 1.0)
            bar.update(progress.step_in_epoch - bar.n)
            bar.set_postfix(loss=f"{totals[0] / count:.4f}", acc=f"{totals[1] / count:.4f}")

    def _end_epoch(self, progress, sums, best_state, seconds) -> dict[str, torch.Tensor] | None:
        """Record the epoch's row of history, select the best weights, decide on early stopping."""
        config, world = self.config, self.world
        all_reduce_sum(world, sums)
        loss, accuracy = float(sums[0] / max(sums[2], 1)), float(sums[1] / max(sums[2], 1))
        row: dict[str, Any] = {"epoch": progress.epoch + 1, "loss": loss, "accuracy": accuracy}
        self._validation_logits = None
        for prefix, split in (("val_", self.data.validation), ("test_", self.data.test)):
            # Every rank scores the validation split, as model selection and early stopping must
            # agree everywhere; the test report is only printed, so only rank 0 computes it.
            if split is not None and (prefix == "val_" or world.is_main):
                logits = self._logits(split)
                if prefix == "val_":
                    self._validation_logits = logits
                row[prefix + "loss"], row[prefix + "accuracy"] = loss_and_accuracy(
                    split.labels.numpy(), logits, self.model.task)
        row["seconds"] = round(seconds, 3)
        row["lr"] = learning_rate(config.train, max(progress.global_step - 1, 0), self.total_steps)  # the last step's
        progress.history.append(row)
        if world.is_main:
            self.log(epoch_line(row, config.train.epochs))
        if self.tracker is not None:
            self.tracker.epoch(row)
        if "val_loss" in row:
            if progress.best_val_loss is None or row["val_loss"] < progress.best_val_loss:
                progress.best_val_loss, progress.best_epoch, progress.bad_epochs = row["val_loss"], row["epoch"], 0
                best_state = best_weights(self.model)
            else:
                progress.bad_epochs += 1
                if config.train.early_stopping and progress.bad_epochs >= config.train.early_stopping:
                    self.log(f"early stopping: no better validation loss for {progress.bad_epochs} epochs")
                    progress.finished = True
        progress.epoch += 1
        progress.step_in_epoch = 0
        progress.epoch_sums = [0.0, 0.0, 0.0]
        if self.options.max_steps and progress.global_step >= self.options.max_steps and not progress.finished:
            if progress.epoch < config.train.epochs:
                self.log(f"stopped at --max-steps {self.options.max_steps:,}, in epoch {progress.epoch} of "
                         f"{config.train.epochs}")
            progress.finished = True
        return best_state

    def _logits(self, split: Tensors) -> np.ndarray:
        return predict_logits(self.model, split.ids, split.lengths)

    def _save(self, progress, best_state) -> None:
        if self.world.is_main:
            checkpoints.save_checkpoint(self.run_dir, progress, self.config.to_dict(), self.model, self.optimizer,
                                        best_state, self.checkpoint_fields, self.writer)

    def _bar(self, total: int, progress):
        if not self.progress_bar:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=progress.step_in_epoch, desc=f"epoch {progress.epoch + 1}/{self.config.train.epochs}",
                    leave=False, unit="batch", file=sys.stderr)

    def _stop_signals(self):
        """On SIGINT/SIGTERM, finish the current step (or the compiled step's run of them), checkpoint and stop."""
        return stop_signals(self._request_stop)

    def _request_stop(self) -> None:
        self._stop_requested = True


def best_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s state to restore later, sharing (not copying) its frozen parameters.

    A stacked model's n-gram table (16 million rows or more) is fitted before the network
    trains and never changes afterwards: a clone would double its memory, and the checkpoint
    writes a shared tensor once (see :func:`rnnsent.training.checkpoint.save_checkpoint`).
    """
    frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    state = model.state_dict(keep_vars=True)
    return {k: v.detach() if id(v) in frozen else v.detach().clone() for k, v in state.items()}


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """One epoch's row of history as the line the training log prints."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['loss']:.4f}", f"acc {row['accuracy']:.4f}"]
    for prefix, name in (("val_", "val"), ("test_", "test")):
        if prefix + "loss" in row:
            parts += [f"{name}_loss {row[prefix + 'loss']:.4f}", f"{name}_acc {row[prefix + 'accuracy']:.4f}"]
    parts.append(f"{row['seconds']:.1f}s")
    return "  ".join(parts)
