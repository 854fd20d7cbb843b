"""Optimisers and the learning-rate schedule.

:class:`RMSprop` follows Keras (epsilon inside the square root, no momentum) and accepts
sparse gradients: a row of the embedding that a step does not touch gets no update, and
its squared-gradient average only decays, so that decay is applied lazily, as ``rho**k``
for the ``k`` steps since the row was last touched, when the row is next touched. The
result equals the dense update up to float rounding, at a cost proportional to the rows a
batch touches instead of the whole table.

Every optimiser here is eager-only: ``torch.optim.Optimizer`` wraps ``add_param_group``,
``state_dict``, ``load_state_dict`` and ``zero_grad`` (and Adam its update) so that their first
call imports TorchDynamo, about 1.5-2 s of start-up that a run never compiling anything
does not need. :class:`EagerOptimizer` calls the same methods unwrapped (the functions torch
itself runs once dynamo steps aside), and :class:`Adam` / :class:`AdamW` run the CPU update of
``torch.optim.Adam`` (``_single_tensor_adam``) written out, falling back to torch's own step
for anything else (CUDA, foreach, fused, amsgrad, ...). State dicts are torch's, key for key.
"""

from __future__ import annotations

import math

import torch

from rnnsent.config import TrainConfig
from rnnsent.model.build import recurrent_network
from rnnsent.model.torch_private import unwrapped_optimizer_method as _unwrapped


class EagerOptimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose bookkeeping methods never import TorchDynamo.

    Put it first among the bases of an optimiser class (``class X(EagerOptimizer,
    torch.optim.SomeOptimizer)``): its methods are the base class's, unwrapped, so behaviour and
    state dicts are unchanged.
    """

    _add_param_group = _unwrapped("add_param_group")
    _state_dict = _unwrapped("state_dict")
    _load_state_dict = _unwrapped("load_state_dict")
    _zero_grad = _unwrapped("zero_grad")

    def add_param_group(self, param_group) -> None:
        return self._add_param_group(param_group)

    def state_dict(self):
        return self._state_dict()

    def load_state_dict(self, state_dict) -> None:
        return self._load_state_dict(state_dict)

    def zero_grad(self, set_to_none: bool = True) -> None:
        return self._zero_grad(set_to_none)


class RMSprop(EagerOptimizer):
    """Keras' RMSprop: ``v = rho*v + (1-rho)*g**2; p -= lr * g / sqrt(v + eps)``."""

    def __init__(self, params, lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-7) -> None:
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        assert closure is None, "closures are not supported"
        for group in self.param_groups:
            lr, rho, eps = group["lr"], group["rho"], group["eps"]
            for parameter in group["params"]:
                grad = parameter.grad
                if grad is None:
                    continue
                state = self.state[parameter]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.int64)
                    state["square_avg"] = torch.zeros_like(parameter)
                    if grad.is_sparse:
                        # The step at which each row's square_avg was last brought up to date.
                        state["row_step"] = torch.zeros(parameter.shape[0], dtype=torch.int64, device=parameter.device)
                state["step"] += 1
                square_avg = state["square_avg"]
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()  # (touched,), (touched, dim)
                    step = state["step"].to(rows.device)
                    # Decay for every step since the row was last touched, this one included.
                    decay = torch.pow(rho, (step - state["row_step"][rows]).to(values.dtype)).unsqueeze(-1)
                    row_avg = square_avg[rows].mul_(decay).addcmul_(values, values, value=1 - rho)
                    square_avg[rows] = row_avg
                    state["row_step"][rows] = step
                    parameter.index_add_(0, rows, values.div(row_avg.add(eps).sqrt_()), alpha=-lr)
                else:
                    square_avg.mul_(rho).addcmul_(grad, grad, value=1 - rho)
                    parameter.addcdiv_(grad, square_avg.add(eps).sqrt_(), value=-lr)
        return None

    def load_state_dict(self, state_dict) -> None:
        """Restore a saved state, keeping ``row_step`` the integer step counter it is.

        ``torch.optim.Optimizer.load_state_dict`` casts every state tensor except ``step`` to
        its parameter's dtype, which would turn ``row_step`` into floats (inexact past 2**24
        steps, and rejected by the integer index_put in :meth:`step`).
        """
        row_steps = {index: state["row_step"] for index, state in state_dict["state"].items() if "row_step" in state}
        super().load_state_dict(state_dict)
        saved_ids = [index for group in state_dict["param_groups"] for index in group["params"]]
        parameters = [parameter for group in self.param_groups for parameter in group["params"]]
        for index, parameter in zip(saved_ids, parameters):
            if index in row_steps:
                self.state[parameter]["row_step"] = row_steps[index].to(device=parameter.device, dtype=torch.int64, copy=True)

    @torch.no_grad()
    def materialize(self) -> None:
        """Apply every pending lazy decay, so ``square_avg`` equals the dense optimiser's."""
        for group in self.param_groups:
            for parameter in group["params"]:
                state = self.state.get(parameter)
                if state and "row_step" in state:
                    pending = (state["step"] - state["row_step"]).to(state["square_avg"].dtype)
                    state["square_avg"].mul_(torch.pow(group["rho"], pending).unsqueeze(-1))
                    state["row_step"].fill_(int(state["step"]))


class Adam(EagerOptimizer, torch.optim.Adam):
    """``torch.optim.Adam``, exactly, without importing TorchDynamo (see the module docstring)."""

    def _plain(self) -> bool:
        """Whether every group takes the plain CPU float path that :meth:`step` writes out."""
        for group in self.param_groups:
            if (group["amsgrad"] or group["maximize"] or group["capturable"] or group["differentiable"]
                    or group["fused"] or group["foreach"] or torch.is_tensor(group["lr"])
                    or any(torch.is_tensor(beta) for beta in group["betas"])):
                return False
            for parameter in group["params"]:
                if parameter.grad is not None and (parameter.device.type != "cpu" or parameter.grad.is_sparse
                                                   or torch.is_complex(parameter)):
                    return False
        return True

    def step(self, closure=None):
        if not self._plain():
            return torch.optim.Adam.step(self, closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                self._plain_group_step(group)
        return loss

    def _plain_group_step(self, group) -> None:
        # torch.optim.adam._single_tensor_adam with amsgrad, maximize, capturable and
        # differentiable off, float hyper-parameters, real CPU tensors: the same operations in
        # the same order, so the same bits.
        beta1, beta2 = group["betas"]
        lr, weight_decay, eps = group["lr"], group["weight_decay"], group["eps"]
        for parameter in group["params"]:
            grad = parameter.grad
            if grad is None:
                continue
            state = self.state[parameter]
            if len(state) == 0:
                scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
                state["step"] = torch.tensor(0.0, dtype=scalar, device="cpu")
                state["exp_avg"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
            exp_avg, exp_avg_sq, step_t = state["exp_avg"], state["exp_avg_sq"], state["step"]
            step_t += 1
            if weight_decay != 0:
                if group["decoupled_weight_decay"]:
                    parameter.mul_(1 - lr * weight_decay)
                else:
                    grad = grad.add(parameter, alpha=weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = step_t.item()
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = lr / bias_correction1
            bias_correction2_sqrt = bias_correction2**0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            parameter.addcdiv_(exp_avg, denom, value=-step_size)


class AdamW(Adam, torch.optim.AdamW):
    """``torch.optim.AdamW``, exactly, without importing TorchDynamo (see :class:`Adam`)."""


class LBFGS(EagerOptimizer, torch.optim.LBFGS):
    """``torch.optim.LBFGS`` without importing TorchDynamo (its ``step`` never did)."""


def parameter_groups(model: torch.nn.Module, config: TrainConfig) -> list:
    """The trainable parameters of ``model`` as the optimiser takes them.

    With ``encoder_lr_scale`` 1 they are one list (one group at ``--lr``). Otherwise two groups:
    the embedding and recurrent layers, stepped at ``encoder_lr_scale`` times the rate, then
    the rest (pooling and head) at the rate itself (Howard and Ruder 2018's discriminative
    fine-tuning, for an encoder pretrained as a language model). Each group's ``lr_scale`` is
    what :func:`set_learning_rate` multiplies the schedule's rate by. Frozen tensors (a stacked
    model's n-gram weights) are left out: they are not the optimiser's to update.
    """
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    if config.encoder_lr_scale == 1.0:
        return trainable
    network = recurrent_network(model)
    encoder = {id(parameter) for module in (network.embedding, network.rnn) for parameter in module.parameters()}
    return [{"params": [p for p in trainable if id(p) in encoder], "lr_scale": config.encoder_lr_scale},
            {"params": [p for p in trainable if id(p) not in encoder], "lr_scale": 1.0}]


def set_learning_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    """Step every group of ``optimizer`` at ``rate`` times its ``lr_scale`` (1 when it has none)."""
    for group in optimizer.param_groups:
        group["lr"] = rate * group.get("lr_scale", 1.0)


def build_optimizer(config: TrainConfig, parameters) -> torch.optim.Optimizer:
    """The optimiser the config names, over ``parameters`` (a list, or :func:`parameter_groups`' groups)."""
    if config.optimizer == "rmsprop":
        if config.weight_decay:
            raise ValueError("weight decay is available with --optimizer adamw")
        return RMSprop(parameters, lr=config.lr, rho=config.rho, eps=config.eps)
    if config.optimizer == "adam":
        if config.weight_decay:
            raise ValueError("use --optimizer adamw for weight decay")
        return Adam(parameters, lr=config.lr, betas=(0.9, config.beta2), eps=config.eps)
    assert config.optimizer == "adamw"
    return AdamW(parameters, lr=config.lr, betas=(0.9, config.beta2), eps=config.eps,
                             weight_decay=config.weight_decay)


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate at optimiser step ``step`` (0-based): linear warm-up, then the schedule."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if config.schedule == "linear":
        return config.lr * (1.0 - progress)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def clip_gradients(parameters, max_norm: float) -> float:
    """Scale gradients (dense or sparse) so their global norm is at most ``max_norm``; return the norm."""
    grads = [p.grad for p in parameters if p.grad is not None]
    squares = []
    for index, grad in enumerate(grads):
        if grad.is_sparse:
            grad = grads[index] = grad.coalesce()
            squares.append(grad.values().pow(2).sum())
        else:
            squares.append(grad.pow(2).sum())
    total = float(torch.stack(squares).sum().sqrt()) if squares else 0.0
    if math.isfinite(total) and total > max_norm:
        scale = max_norm / (total + 1e-6)
        for parameter in parameters:
            if parameter.grad is not None:
                parameter.grad.mul_(scale)
    return total
