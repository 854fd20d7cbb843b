"""The training loop: batches cut from pre-built tensors, checkpoints, exact resume, DDP.

One loop serves every model: ``model(ids, lengths, labels)`` returns ``(logits, loss)``.
The order of batches is a pure function of ``(seed, epoch)`` and the dropout RNG is saved in
each checkpoint, so a resumed run takes exactly the steps an uninterrupted one would.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from rnnsent.config import RunConfig
from rnnsent.data.batches import epoch_batches
from rnnsent.errors import TrainingDiverged
from rnnsent.metrics import classification_metrics
from rnnsent.model.build import build_model, recurrent_network
from rnnsent.model.recurrent import RecurrentClassifier
from rnnsent.model.scoring import predict_logits
from rnnsent.training import checkpoint as checkpoints
from rnnsent.training.distributed import World, all_reduce_sum, any_rank
from rnnsent.training.optim import (
    RMSprop,
    build_optimizer,
    clip_gradients,
    learning_rate,
)
from rnnsent.training.tensors import Tensors, TrainingData


class TrainingInterrupted(Exception):
    """Raised after a SIGINT/SIGTERM once the checkpoint is safely written."""


@dataclass
class TrainResult:
    model: RecurrentClassifier
    history: list[dict[str, Any]]
    best_epoch: int
    steps: int


def uses_sparse_embedding(config: RunConfig, world: World | None = None) -> bool:
    """Sparse embedding gradients pay with RMSprop (the lazy update is exact).

    Under DDP, gloo (CPU) all-reduces sparse gradients, which sends only the rows a batch
    touched; nccl (GPU) cannot, so there the gradients stay dense.
    """
    on_nccl = world is not None and world.distributed and world.device.type == "cuda"
    return config.train.sparse_embedding and config.train.optimizer == "rmsprop" and not on_nccl


class EpochSums:
    """Loss sum, correct predictions and examples of the epoch so far.

    The autograd path adds tensors (no device sync per step); the compiled path adds floats.
    :meth:`flush` folds both into the float64 totals.
    """

    def __init__(self, initial: list[float]) -> None:
        self.totals = torch.tensor(initial, dtype=torch.float64)
        self.pending_tensor: torch.Tensor | None = None
        self.pending_floats = [0.0, 0.0, 0.0]

    def add_floats(self, mean_loss: float, correct: int, count: int) -> None:
        self.pending_floats[0] += mean_loss * count
        self.pending_floats[1] += correct
        self.pending_floats[2] += count

    @torch.no_grad()
    def add_tensors(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        count = labels.numel()
        step = torch.stack([
            loss.detach().double() * count,
            ((logits.detach() > 0) == (labels > 0.5)).sum().double(),
            torch.full((), float(count), dtype=torch.float64, device=logits.device),
        ])
        self.pending_tensor = step if self.pending_tensor is None else self.pending_tensor + step

    def flush(self) -> torch.Tensor:
        if self.pending_tensor is not None:
            self.totals += self.pending_tensor.cpu()
            self.pending_tensor = None
        self.totals += torch.tensor(self.pending_floats, dtype=torch.float64)
        self.pending_floats = [0.0, 0.0, 0.0]
        return self.totals


class Trainer:
    """Runs (or resumes) one training run, writing checkpoints into ``run_dir``."""

    def __init__(
        self,
        config: RunConfig,
        data: TrainingData,
        vocab_size: int,
        run_dir: Path,
        world: World = World(),
        log: Callable[[str], None] | None = None,
        progress_bar: bool | None = None,
        extra_checkpoint_fields: dict[str, Any] | None = None,
        initial_weights: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.config = config
        self.data = data
        self.vocab_size = vocab_size
        self.run_dir = Path(run_dir)
        self.world = world
        self.log = log or (lambda message: print(message, flush=True))
        self.progress_bar = sys.stderr.isatty() if progress_bar is None else progress_bar
        self.extra = extra_checkpoint_fields or {}
        # Starting values for some of the model's tensors, by state-dict name: pretrained word
        # vectors ("embedding.weight"), a stacked n-gram fit ("ngrams.weight.weight", "ngrams.bias").
        self.initial_weights = initial_weights or {}
        self._stop_requested = False
        if config.train.batch_size % world.size:
            raise ValueError(f"--batch-size {config.train.batch_size} must divide evenly over {world.size} processes")

    def fit(self, resume: bool = False) -> TrainResult:
        config, world = self.config, self.world
        torch.manual_seed(config.train.seed)
        sparse = uses_sparse_embedding(config, world)
        if config.train.sparse_embedding and config.train.optimizer == "rmsprop" and not sparse and world.is_main:
            self.log("note: sparse embedding updates are off under DDP on GPUs (nccl); gradients are dense and all-reduced")
        model = build_model(config.model, self.vocab_size, sparse_embedding=sparse).to(world.device)
        # Word vectors are named as the recurrent network's tensors, an n-gram fit as the model's.
        state = {**model.state_dict(), **recurrent_network(model).state_dict()}
        with torch.no_grad():
            for name, value in self.initial_weights.items():
                state[name].copy_(value)
        # Frozen tensors (a stacked model's n-gram weights) are not the optimiser's to update.
        optimizer = build_optimizer(config.train, [p for p in model.parameters() if p.requires_grad])
        progress, best_state = checkpoints.Progress(), None
        if resume:
            meta, tensors = checkpoints.load_checkpoint(self.run_dir)
            progress, best_state = checkpoints.restore(meta, tensors, model, optimizer)
            self.log(f"resuming at epoch {progress.epoch + 1}, step {progress.step_in_epoch} of it ({progress.global_step} steps done)")
        # The model's buffers (KerasSimpleRNN's zero hidden bias, a stacked model's n-gram intercept
        # and blend) are the same on every rank and fixed while it trains, so DDP need not
        # broadcast them before every forward pass: that saves one collective per step.
        network = DistributedDataParallel(model, forward_sync_buffers=False) if world.distributed else model
        fused_step = self._fused_step(model, optimizer)

        train = self.data.train
        steps_per_epoch = len(self._batches(0))
        total_steps = steps_per_epoch * config.train.epochs
        if config.train.max_steps:
            total_steps = min(total_steps, config.train.max_steps)

        with self._stop_signals():
            while progress.epoch < config.train.epochs and not progress.finished:
                epoch_start = time.perf_counter()
                batches = self._batches(progress.epoch)
                global_sizes = self._global_batch_sizes(progress.epoch) if world.distributed else None
                model.train()
                # A checkpoint holds the epoch's sums over all ranks: rank 0 carries them on.
                sums = EpochSums(progress.epoch_sums if world.is_main else [0.0, 0.0, 0.0])
                bar = self._bar(len(batches), progress)
                for index in range(progress.step_in_epoch, len(batches)):
                    batch = torch.from_numpy(batches[index])
                    lengths = train.lengths[batch]
                    # Trailing padding can be cut only when the model reads true lengths; otherwise it
                    # runs over the padding, and the cut would make a review's result depend on its
                    # batch (and differ from evaluation, which reads the full width).
                    width = int(lengths.max()) if config.model.use_lengths else train.ids.shape[1]
                    ids = train.ids[batch, :width].to(world.device)  # (batch, time): trailing padding cut
                    labels = train.labels[batch].to(world.device)
                    for group in optimizer.param_groups:
                        group["lr"] = learning_rate(config.train, progress.global_step, total_steps)
                    if fused_step is not None:
                        loss_value, correct = fused_step(ids, labels)
                        sums.add_floats(loss_value, correct, len(batch))
                    else:
                        logits, loss = network(ids, lengths.to(world.device), labels)
                        optimizer.zero_grad(set_to_none=True)
                        if global_sizes is not None:
                            # DDP averages the ranks' gradients. Weighting each rank's mean loss by its
                            # share of the global batch makes that average the gradient of the global
                            # batch's mean loss, also when a last batch does not split evenly.
                            (loss * (len(batch) * world.size / global_sizes[index])).backward()
                        else:
                            loss.backward()
                        if config.train.clip_norm:
                            clip_gradients(list(model.parameters()), config.train.clip_norm)
                        optimizer.step()
                        sums.add_tensors(loss, logits, labels)
                    progress.global_step += 1
                    progress.step_in_epoch = index + 1
                    if progress.global_step % 50 == 0 or index + 1 == len(batches):
                        totals = sums.flush()
                        self._check_finite(totals, progress)
                        if bar is not None:
                            bar.update(progress.step_in_epoch - bar.n)
                            bar.set_postfix(loss=f"{totals[0] / max(totals[2], 1):.4f}", acc=f"{totals[1] / max(totals[2], 1):.4f}")
                    reached_max = bool(config.train.max_steps) and progress.global_step >= config.train.max_steps
                    checkpoint_due = bool(config.train.checkpoint_every) and progress.global_step % config.train.checkpoint_every == 0
                    stop = any_rank(world, self._stop_requested) if world.distributed else self._stop_requested
                    if stop or (checkpoint_due and not reached_max):
                        progress.epoch_sums = all_reduce_sum(world, sums.flush().clone()).tolist()
                        self._save(progress, model, optimizer, best_state)
                    if stop:
                        if bar is not None:
                            bar.close()
                        raise TrainingInterrupted(f"stopped at step {progress.global_step}; checkpoint saved")
                    if reached_max:
                        break
                if bar is not None:
                    bar.close()
                best_state = self._end_epoch(progress, sums.flush(), model, best_state, time.perf_counter() - epoch_start,
                                             total_steps)
                self._save(progress, model, optimizer, best_state)
        if best_state is not None:
            # Model selection: keep the weights of the epoch with the best validation loss.
            model.load_state_dict(best_state)
            if progress.best_epoch and progress.best_epoch != len(progress.history):
                self.log(f"restored the weights of epoch {progress.best_epoch} (best validation loss)")
        if isinstance(optimizer, RMSprop):
            optimizer.materialize()
        return TrainResult(model, progress.history, progress.best_epoch, progress.global_step)

    # ------------------------------------------------------------------ helpers

    def _fused_step(self, model, optimizer):
        """The compiled CPU step when this run fits it (see :mod:`rnnsent.fused`), else None."""
        if not self.config.train.fused:
            return None
        try:
            from rnnsent.training.compiled_step import (
                FusedSimpleRNNStep,
                fused_step_supported,
            )
        except ImportError:
            return None
        if fused_step_supported(self.config, self.world.device, self.world.size) is not None:
            return None
        return FusedSimpleRNNStep(model, optimizer)

    def _batches(self, epoch: int) -> list[np.ndarray]:
        train, config = self.data.train, self.config.train
        lengths = train.lengths.numpy() if config.bucket_by_length else None
        return epoch_batches(len(train), config.batch_size, config.seed, epoch, lengths, self.world.rank, self.world.size)

    def _global_batch_sizes(self, epoch: int) -> list[int]:
        """Size of each global batch of the epoch whose per-rank shares :meth:`_batches` returns."""
        train, config = self.data.train, self.config.train
        lengths = train.lengths.numpy() if config.bucket_by_length else None
        whole = epoch_batches(len(train), config.batch_size, config.seed, epoch, lengths)
        return [len(batch) for batch in whole if len(batch) >= self.world.size]

    def _end_epoch(self, progress, sums, model, best_state, seconds, total_steps) -> dict[str, torch.Tensor] | None:
        config, world = self.config, self.world
        all_reduce_sum(world, sums)
        loss, accuracy = float(sums[0] / max(sums[2], 1)), float(sums[1] / max(sums[2], 1))
        row: dict[str, Any] = {"epoch": progress.epoch + 1, "loss": loss, "accuracy": accuracy}
        for prefix, split in (("val_", self.data.validation), ("test_", self.data.test)):
            # Every rank scores the validation split, as model selection and early stopping must
            # agree everywhere; the test report is only printed, so only rank 0 computes it.
            if split is not None and (prefix == "val_" or world.is_main):
                metrics = classification_metrics(split.labels.numpy(), self._logits(model, split))
                row[prefix + "loss"], row[prefix + "accuracy"] = metrics["loss"], metrics["accuracy"]
        row["seconds"] = round(seconds, 3)
        row["lr"] = learning_rate(config.train, max(progress.global_step - 1, 0), total_steps)  # the last step's
        progress.history.append(row)
        if world.is_main:
            self.log(_epoch_line(row, config.train.epochs))
        if "val_loss" in row:
            if progress.best_val_loss is None or row["val_loss"] < progress.best_val_loss:
                progress.best_val_loss, progress.best_epoch, progress.bad_epochs = row["val_loss"], row["epoch"], 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                progress.bad_epochs += 1
                if config.train.early_stopping and progress.bad_epochs >= config.train.early_stopping:
                    self.log(f"early stopping: no better validation loss for {progress.bad_epochs} epochs")
                    progress.finished = True
        progress.epoch += 1
        progress.step_in_epoch = 0
        progress.epoch_sums = [0.0, 0.0, 0.0]
        if config.train.max_steps and progress.global_step >= config.train.max_steps:
            progress.finished = True
        return best_state

    def _logits(self, model: RecurrentClassifier, split: Tensors) -> np.ndarray:
        lengths = split.lengths if self.config.model.use_lengths else None
        return predict_logits(model, split.ids, lengths)

    def _check_finite(self, sums: torch.Tensor, progress: checkpoints.Progress) -> None:
        if not math.isfinite(float(sums[0])):
            raise TrainingDiverged(
                f"the loss became NaN or infinite by step {progress.global_step}; "
                "lower --lr or set --clip-norm 1.0"
            )

    def _save(self, progress, model, optimizer, best_state) -> None:
        if self.world.is_main:
            checkpoints.save_checkpoint(self.run_dir, progress, self.config.to_dict(), model, optimizer, best_state, self.extra)

    def _bar(self, total: int, progress):
        if not self.progress_bar or not self.world.is_main:
            return None
        from tqdm import tqdm

        return tqdm(total=total, initial=progress.step_in_epoch, desc=f"epoch {progress.epoch + 1}/{self.config.train.epochs}",
                    leave=False, unit="batch", file=sys.stderr)

    @contextmanager
    def _stop_signals(self):
        """On SIGINT/SIGTERM, finish the current step, checkpoint and stop."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            self._stop_requested = True

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['loss']:.4f}", f"acc {row['accuracy']:.4f}"]
    for prefix, name in (("val_", "val"), ("test_", "test")):
        if prefix + "loss" in row:
            parts += [f"{name}_loss {row[prefix + 'loss']:.4f}", f"{name}_acc {row[prefix + 'accuracy']:.4f}"]
    parts.append(f"{row['seconds']:.1f}s")
    return "  ".join(parts)
