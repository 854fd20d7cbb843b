"""One optimiser step on one batch: the autograd step, or the compiled step where it is exact.

The training loop does not know which it runs: it hands each :class:`Batch` to a step, and
the step adds the batch's loss and correct predictions to the epoch's :class:`EpochSums`.
:func:`choose_step` is the one place that decides between them; a recipe with adversarial,
virtual adversarial, entropy or distillation losses takes the autograd step's variant, :class:`ObjectiveStep`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rnnsent.config import RunConfig, RunOptions
from rnnsent.model.compiled import numba_available
from rnnsent.model.loss import predicted_correct
from rnnsent.model.recurrent import RecurrentClassifier
from rnnsent.training.distributed import World
from rnnsent.training.objectives import LABELLED_STREAM, UNLABELLED_STREAM, direction_noise, objectives_on
from rnnsent.training.optim import RMSprop, clip_gradients
from rnnsent.training.tensors import Tensors
from rnnsent.training.unlabelled import UnlabelledRows


@dataclass
class Batch:
    """One batch on the training device: ids ``(batch, time)``, lengths ``(batch,)``, labels ``(batch,)``.

    ``loss_scale`` weights this process's mean loss by its share of the global batch under DDP
    (None in a single process).
    """

    ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    loss_scale: float | None = None
    # Read by the objective step only: each row's place in the training split ``(batch,)``, the
    # optimiser step (0-based) and the unlabelled rows drawn with the batch.
    rows: np.ndarray | None = None
    step: int = 0
    unlabelled: UnlabelledRows | None = None


class EpochSums:
    """Loss sum, correct predictions and examples of the epoch so far.

    The autograd step adds tensors (no device sync per step); the compiled step adds floats.
    :meth:`flush` folds both into the float64 totals ``(3,)``.
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
    def add_tensors(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, task: str = "binary") -> None:
        count = labels.shape[0]
        step = torch.stack([
            loss.detach().double() * count,
            predicted_correct(logits.detach(), labels, task).double(),
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


class AutogradStep:
    """Forward, backward, optional clipping and the optimiser's update, through PyTorch's autograd.

    ``network`` is the model itself, or its DistributedDataParallel wrapper under torchrun.
    """

    def __init__(self, network: nn.Module, model: nn.Module, optimizer: torch.optim.Optimizer, clip_norm: float) -> None:
        self.network, self.optimizer, self.clip_norm = network, optimizer, clip_norm
        self.parameters = list(model.parameters())
        self.task = model.task

    def __call__(self, batch: Batch, sums: EpochSums) -> None:
        logits, loss = self.network(batch.ids, batch.lengths, batch.labels)
        self.optimizer.zero_grad(set_to_none=True)
        if batch.loss_scale is not None:
            # DDP averages the ranks' gradients. Weighting each rank's mean loss by its share of
            # the global batch makes that average the gradient of the global batch's mean loss,
            # also when a last batch does not split evenly.
            (loss * batch.loss_scale).backward()
        else:
            loss.backward()
        self._update()
        sums.add_tensors(loss, logits, batch.labels, self.task)

    def _update(self) -> None:
        """Clip the gradients the backward pass left and take the optimiser's step."""
        if self.clip_norm:
            clip_gradients(self.parameters, self.clip_norm)
        self.optimizer.step()


class ObjectiveStep(AutogradStep):
    """The autograd step of a recipe with extra objectives (:mod:`rnnsent.training.objectives`).

    ``network`` is the model's :class:`~rnnsent.training.objectives.TrainingObjective`, or its
    DistributedDataParallel wrapper; the epoch's sums count the supervised loss alone.
    """

    def __init__(self, network: nn.Module, model: nn.Module, optimizer: torch.optim.Optimizer,
                 config: RunConfig) -> None:
        super().__init__(network, model, optimizer, config.train.clip_norm)
        self.config = config

    def __call__(self, batch: Batch, sums: EpochSums) -> None:
        unlabelled = batch.unlabelled
        # The rows the virtual adversarial and entropy losses read: the unlabelled ones, else the batch's.
        extra_ids, extra_lengths = (None, None) if unlabelled is None else (unlabelled.ids, unlabelled.lengths)
        noise = None
        if self.config.train.virtual_adversarial_weight:
            ids, lengths = (batch.ids, batch.lengths) if unlabelled is None else (extra_ids, extra_lengths)
            stream, rows = (LABELLED_STREAM, batch.rows) if unlabelled is None else (UNLABELLED_STREAM, unlabelled.rows)
            assert rows is not None, "the virtual adversarial loss draws each row's noise by its place"
            noise = direction_noise(self.config.train.seed, batch.step, stream, rows, lengths.cpu(), ids.shape[1],
                                    self.config.model.embedding_dim, self.config.model.use_lengths).to(ids.device)
        labelled_scale = 1.0 if batch.loss_scale is None else batch.loss_scale
        unlabelled_scale = labelled_scale if unlabelled is None else (
            1.0 if unlabelled.loss_scale is None else unlabelled.loss_scale)
        logits, loss, objective = self.network(batch.ids, batch.lengths, batch.labels, extra_ids, extra_lengths, noise,
                                               labelled_scale, unlabelled_scale)
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        self._update()
        sums.add_tensors(loss, logits, batch.labels, self.task)


class CompiledStep:
    """The whole step as one compiled function (:mod:`rnnsent.training.compiled_step`).

    Build it after any checkpoint has been restored: it views the optimiser's state tensors,
    which loading a state replaces.
    """

    def __init__(self, model: RecurrentClassifier, optimizer: RMSprop) -> None:
        from rnnsent.training.compiled_step import FusedSimpleRNNStep

        self.kernel = FusedSimpleRNNStep(model, optimizer)

    # The trainer may hand this step several batches at once (train_many).
    trains_many = True

    def __call__(self, batch: Batch, sums: EpochSums) -> None:
        loss, correct = self.kernel(batch.ids, batch.labels)
        sums.add_floats(loss, correct, len(batch.labels))

    def train_many(self, train: Tensors, batches: list[np.ndarray], rates: list[float], sums: EpochSums) -> None:
        """Train on each index batch of ``train`` in turn, at its own learning rate, in one kernel call."""
        losses, corrects = self.kernel.train_many(train.ids, train.labels, batches, rates)
        for loss, correct, batch in zip(losses.tolist(), corrects.tolist(), batches):
            sums.add_floats(loss, correct, len(batch))


def sparse_embedding_applies(config: RunConfig, world: World | None = None) -> bool:
    """Sparse embedding gradients pay with RMSprop (the lazy update is exact).

    Under DDP, gloo (CPU) all-reduces sparse gradients, which sends only the rows a batch
    touched; nccl (GPU) cannot, so there the gradients stay dense.
    """
    on_nccl = world is not None and world.distributed and world.device.type == "cuda"
    # A normalised embedding's every row moves the mean and variance: its gradient is dense.
    return (config.train.sparse_embedding and config.train.optimizer == "rmsprop" and not on_nccl
            and not config.model.normalize_embeddings)


def compiled_step_blockers(config: RunConfig, options: RunOptions, model: nn.Module, world: World) -> list[str]:
    """Why the compiled step cannot train this run exactly; empty when it can."""
    recipe, train = config.model, config.train
    checks = {
        "it is turned off": not options.fused,
        "numba is not installed": not numba_available(),
        "the model is not a plain recurrent network": type(model) is not RecurrentClassifier,
        "the cell is not 'simple'": recipe.cell != "simple",
        "more than one layer": recipe.num_layers != 1,
        "bidirectional": recipe.bidirectional,
        "pooling is not 'last'": recipe.pooling != "last",
        "dropout": bool(recipe.dropout or recipe.embedding_dropout),
        "use_lengths": recipe.use_lengths,
        "an n-gram branch": bool(recipe.ngram_buckets),
        "more than one output (not a binary task)": getattr(model, "outputs", 1) != 1,
        "class weights": train.class_weights != "none",
        "optimizer is not rmsprop": train.optimizer != "rmsprop",
        "an encoder learning-rate scale": train.encoder_lr_scale != 1.0,
        "dense embedding gradients": not sparse_embedding_applies(config, world),
        "gradient clipping": bool(train.clip_norm),
        "normalised embeddings": recipe.normalize_embeddings,
        "an adversarial, virtual adversarial, entropy or distillation loss": objectives_on(train),
        "not on the CPU": world.device.type != "cpu",
        "distributed": world.distributed,
    }
    return [reason for reason, blocks in checks.items() if blocks]


def choose_step(config: RunConfig, options: RunOptions, model: nn.Module, network: nn.Module,
                optimizer: torch.optim.Optimizer, world: World) -> AutogradStep | CompiledStep:
    """The compiled step when it is exact for this run (see :func:`compiled_step_blockers`), else
    autograd: the objective step when the recipe has extra objectives (then ``network`` wraps a
    :class:`~rnnsent.training.objectives.TrainingObjective`)."""
    if not compiled_step_blockers(config, options, model, world):
        return CompiledStep(model, optimizer)
    if objectives_on(config.train):
        return ObjectiveStep(network, model, optimizer, config)
    return AutogradStep(network, model, optimizer, config.train.clip_norm)
