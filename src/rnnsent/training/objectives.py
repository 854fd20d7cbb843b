"""Training objectives beyond the supervised loss, computed on the embedded sequence.

- **Adversarial training** (Goodfellow et al. 2015; Miyato, Dai and Goodfellow 2016): the loss
  of each labelled review with its embedded words ``s`` moved by ``r = eps * g / ||g||``, where
  ``g`` is the gradient of the loss with respect to ``s`` (held constant) and the norm is taken
  per review over all its words and dimensions.
- **Virtual adversarial training** (Miyato et al. 2016): ``KL(p(s) || p(s + r))`` with ``p(s)``
  held constant and ``r`` the direction that raises that divergence most, found by one power
  iteration from random noise scaled to ``XI``; it needs no labels.
- **Entropy minimisation** (Grandvalet and Bengio 2005; Sachan et al. 2019): the mean entropy
  of the predictions, which pushes the decision boundary away from the data.
- **Distillation from the n-gram regression** (Hinton, Vinyals and Dean 2015): ``KL(q || p)``
  on unlabelled rows, ``q`` the prediction of a stacked model's n-gram regression (fitted
  before the network trains, frozen; its logits divided by ``distill_temperature``) and ``p``
  the network's. The regression fits the training reviews almost perfectly, so on them it
  would teach nothing beyond the labels; on texts it has not seen it passes on what its
  millions of n-gram weights know.

Virtual adversarial training and entropy minimisation read the unlabelled rows drawn with each
batch (``unlabelled_batch_size``), or the labelled batch's rows when there are none;
distillation reads only unlabelled rows. Binary (one sigmoid), multiclass (softmax) and
multilabel (one sigmoid per label, averaged over the labels, as the loss is) are all handled.

:class:`TrainingObjective` computes the whole weighted objective in one ``forward`` so that
DistributedDataParallel wraps it like a model: the inner gradients (``torch.autograd.grad``
with respect to the embedded sequence or the noise) accumulate nothing into the parameters.
The noise of the power iteration is a pure function of ``(seed, step, row)``
(:func:`direction_noise`), so resumed and data-parallel runs draw the same noise.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rnnsent.config import RunConfig, TrainConfig
from rnnsent.model.build import recurrent_network
from rnnsent.model.loss import classification_loss

# The norm of the power iteration's random step, as in Miyato et al.'s code
# (small_constant_for_finite_diff): small against the perturbation norm, large enough
# against float32 rounding of the embedded words.
XI = 0.1
# Streams of direction_noise: the labelled rows and the unlabelled ones never share noise.
LABELLED_STREAM, UNLABELLED_STREAM = 0, 1


def objectives_on(train: TrainConfig) -> bool:
    """Whether the recipe asks for any objective beyond the supervised loss."""
    return bool(train.adversarial_weight or train.virtual_adversarial_weight or train.entropy_weight
                or train.distill_weight)


def scale_to_norm(directions: torch.Tensor, norm: float) -> torch.Tensor:
    """Each row of ``directions`` ``(batch, ...)`` scaled to L2 norm ``norm`` over all its other
    dimensions; an all-zero row stays zero."""
    lengths = directions.flatten(1).norm(dim=1).clamp(min=1e-12)  # (batch,)
    return directions * (norm / lengths).view(-1, *([1] * (directions.dim() - 1)))


def adversarial_perturbation(loss: torch.Tensor, embedded: torch.Tensor, norm: float) -> torch.Tensor:
    """``r`` ``(batch, time, embedding)``: per row, ``norm`` times the unit gradient of ``loss``
    with respect to ``embedded``, held constant (the graph of ``loss`` is kept for its backward)."""
    gradient, = torch.autograd.grad(loss, embedded, retain_graph=True)
    return scale_to_norm(gradient.detach(), norm)


def prediction_entropy(logits: torch.Tensor, task: str) -> torch.Tensor:
    """The entropy ``(batch,)`` in nats of each row's prediction (multilabel: the mean over labels)."""
    if task == "multiclass":
        log_p = F.log_softmax(logits, dim=-1)  # (batch, K)
        return -(log_p.exp() * log_p).sum(dim=-1)
    # A Bernoulli of logit z: -(p log p + (1 - p) log(1 - p)), with log p = logsigmoid(z).
    p = torch.sigmoid(logits)
    entropy = -(p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits))  # (batch,) or (batch, K)
    return entropy.mean(dim=-1) if task == "multilabel" else entropy


def prediction_divergence(reference: torch.Tensor, logits: torch.Tensor, task: str) -> torch.Tensor:
    """``KL(p(reference) || p(logits))`` ``(batch,)`` of each row's predictions (multilabel: the mean over labels)."""
    if task == "multiclass":
        log_p, log_q = F.log_softmax(reference, dim=-1), F.log_softmax(logits, dim=-1)  # (batch, K)
        return (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    p = torch.sigmoid(reference)
    divergence = (p * (F.logsigmoid(reference) - F.logsigmoid(logits))
                  + (1 - p) * (F.logsigmoid(-reference) - F.logsigmoid(-logits)))  # (batch,) or (batch, K)
    return divergence.mean(dim=-1) if task == "multilabel" else divergence


def direction_noise(seed: int, step: int, stream: int, rows: np.ndarray, lengths: torch.Tensor, width: int,
                    dim: int, within_lengths: bool) -> torch.Tensor:
    """Standard normal noise ``(batch, width, dim)`` float32, each row's drawn from its own generator
    keyed by ``(seed, step, stream, row)``: the same whatever batch or process the row is in.

    With ``within_lengths`` (models that read true lengths) a row's noise covers only its first
    ``lengths[i]`` steps and is zero on its padding, which such a model never reads.
    """
    noise = np.zeros((len(rows), width, dim), dtype=np.float32)
    for index, (row, length) in enumerate(zip(np.asarray(rows).tolist(), lengths.tolist())):
        steps = min(max(int(length), 1), width) if within_lengths else width
        generator = np.random.default_rng([seed, step, stream, int(row)])
        noise[index, :steps] = generator.standard_normal((steps, dim), dtype=np.float32)
    return torch.from_numpy(noise)


class TrainingObjective(nn.Module):
    """The supervised loss plus the weighted adversarial, virtual adversarial, entropy and
    distillation losses of ``model`` (any classifier :func:`rnnsent.model.build.build_model` makes;
    distillation needs a stacked one)."""

    def __init__(self, model: nn.Module, train: TrainConfig) -> None:
        super().__init__()
        self.model, self.task = model, model.task
        self.adversarial_weight, self.norm = train.adversarial_weight, train.adversarial_norm
        self.virtual_adversarial_weight, self.entropy_weight = train.virtual_adversarial_weight, train.entropy_weight
        self.distill_weight, self.distill_temperature = train.distill_weight, train.distill_temperature
        assert not self.distill_weight or hasattr(model, "ngrams"), "distillation reads a stacked model's n-gram regression"

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                unlabelled_ids: torch.Tensor | None = None, unlabelled_lengths: torch.Tensor | None = None,
                noise: torch.Tensor | None = None, labelled_scale: float = 1.0,
                unlabelled_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits, supervised loss, objective)`` of labelled rows ``ids (batch, time)`` with their
        ``lengths`` and ``labels``.

        ``unlabelled_ids`` ``(u, time')`` and their lengths are the rows the virtual adversarial
        and entropy losses read (the labelled ones when None); ``noise`` is the power
        iteration's start for those rows, ``(rows, time, embedding)``, needed only with a
        virtual adversarial weight. The objective weighs the labelled terms by
        ``labelled_scale`` and the others by ``unlabelled_scale``: each process's share of the
        global batch under DistributedDataParallel (1 in a single process).
        """
        network = recurrent_network(self.model)
        embedded = network.embed(ids)  # (batch, time, embedding), after embedding dropout
        logits = self.model(ids, lengths, embedded=embedded)[0]  # (batch,) or (batch, K)
        supervised = classification_loss(logits, labels, self.task, network.loss_weight)
        objective = supervised * labelled_scale
        if self.adversarial_weight:
            perturbed = embedded + adversarial_perturbation(supervised, embedded, self.norm)
            adversarial_logits = self.model(ids, lengths, embedded=perturbed)[0]
            adversarial = classification_loss(adversarial_logits, labels, self.task, network.loss_weight)
            objective = objective + self.adversarial_weight * adversarial * labelled_scale
        if self.virtual_adversarial_weight or self.entropy_weight or self.distill_weight:
            if unlabelled_ids is None:
                rows, row_lengths, row_embedded, row_logits = ids, lengths, embedded, logits
            else:
                rows, row_lengths = unlabelled_ids, unlabelled_lengths
                row_embedded = network.embed(rows)
                # One pass gives the network's logits and the frozen regression's (the teacher):
                # (u,) or (u, K) each. While the network trains the blend is (1, 0, 0), so the
                # model's logit is the network's.
                if self.distill_weight:
                    parts = self.model.part_logits(rows, row_lengths, embedded=row_embedded)
                    row_logits = self.model.combine(parts)
                else:
                    row_logits = self.model(rows, row_lengths, embedded=row_embedded)[0]
            if self.entropy_weight:
                entropy = prediction_entropy(row_logits, self.task).mean()
                objective = objective + self.entropy_weight * entropy * unlabelled_scale
            if self.distill_weight:
                assert unlabelled_ids is not None, "distillation reads unlabelled rows"
                teacher = parts["ngrams"].detach() / self.distill_temperature  # (u,) or (u, K)
                divergence = prediction_divergence(teacher, row_logits, self.task).mean()
                objective = objective + self.distill_weight * divergence * unlabelled_scale
            if self.virtual_adversarial_weight:
                assert noise is not None, "the virtual adversarial loss starts its power iteration from noise"
                divergence = self.virtual_adversarial_loss(rows, row_lengths, row_embedded, row_logits, noise)
                objective = objective + self.virtual_adversarial_weight * divergence * unlabelled_scale
        return logits, supervised, objective

    def virtual_adversarial_loss(self, ids: torch.Tensor, lengths: torch.Tensor, embedded: torch.Tensor,
                                 logits: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The mean ``KL(p(s) || p(s + r))`` over rows ``ids (rows, time)`` read from ``embedded`` (with
        ``logits``), ``r`` found from ``noise`` (see :func:`virtual_adversarial_perturbation`)."""
        reference = logits.detach()
        perturbation = virtual_adversarial_perturbation(self.model, ids, lengths, embedded, reference, noise, self.norm)
        perturbed_logits = self.model(ids, lengths, embedded=embedded + perturbation)[0]
        return prediction_divergence(reference, perturbed_logits, self.task).mean()


def virtual_adversarial_perturbation(model: nn.Module, ids: torch.Tensor, lengths: torch.Tensor,
                                     embedded: torch.Tensor, reference: torch.Tensor, noise: torch.Tensor,
                                     norm: float) -> torch.Tensor:
    """``r`` ``(rows, time, embedding)`` of L2 norm ``norm`` per row that raises ``KL(p(reference) ||
    p(embedded + r))`` most, to second order, by one power iteration from ``noise``; held constant.

    At ``r = 0`` the divergence is at its minimum, so its gradient at a small random step ``d`` is,
    to first order, its Hessian times ``d``: one step of the power iteration towards the
    Hessian's top eigenvector.
    """
    step = scale_to_norm(noise, XI).requires_grad_(True)
    nudged = model(ids, lengths, embedded=embedded.detach() + step)[0]
    gradient, = torch.autograd.grad(prediction_divergence(reference, nudged, model.task).sum(), step)
    return scale_to_norm(gradient.detach(), norm)


def without_distillation(config: RunConfig) -> RunConfig:
    """A copy of ``config`` with distillation off, and its unlabelled batches too unless the
    virtual adversarial or entropy loss reads them; validated."""
    resolved = copy.deepcopy(config)
    resolved.train.distill_weight = 0.0
    if not (config.train.virtual_adversarial_weight or config.train.entropy_weight):
        resolved.train.unlabelled_batch_size = 0
    return resolved.validate()


def training_objective(model: nn.Module, train: TrainConfig) -> TrainingObjective | None:
    """The :class:`TrainingObjective` of a recipe that asks for extra objectives, else None."""
    return TrainingObjective(model, train) if objectives_on(train) else None
