"""Optimisers and the learning-rate schedule.

:class:`RMSprop` follows Keras (epsilon inside the square root, no momentum) and accepts
sparse gradients: a row of the embedding that a step does not touch gets no update, and
its squared-gradient average only decays, so that decay is applied lazily, as ``rho**k``
for the ``k`` steps since the row was last touched, when the row is next touched. The
result equals the dense update up to float rounding, at a cost proportional to the rows a
batch touches instead of the whole table.
"""

from __future__ import annotations

import math

import torch

from rnnsent.config import TrainConfig


class RMSprop(torch.optim.Optimizer):
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


def build_optimizer(config: TrainConfig, parameters) -> torch.optim.Optimizer:
    """The optimiser the config names, over ``parameters``."""
    if config.optimizer == "rmsprop":
        if config.weight_decay:
            raise ValueError("weight decay is available with --optimizer adamw")
        return RMSprop(parameters, lr=config.lr, rho=config.rho, eps=config.eps)
    if config.optimizer == "adam":
        if config.weight_decay:
            raise ValueError("use --optimizer adamw for weight decay")
        return torch.optim.Adam(parameters, lr=config.lr, betas=(0.9, config.beta2), eps=config.eps)
    assert config.optimizer == "adamw"
    return torch.optim.AdamW(parameters, lr=config.lr, betas=(0.9, config.beta2), eps=config.eps,
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
