"""A compiled training step for small single-layer simple RNNs on the CPU.

The seed model does almost no arithmetic per step (32 reviews x 30 tokens, 5 hidden units):
in an autograd loop nearly all of a step's time is framework overhead, per tiny operation.
This module does the whole step (embedding gather, recurrence, head, loss, backpropagation
through time and the RMSprop update with lazy sparse embedding rows) in one function
compiled by numba, working in place on the very tensors of the model and of
:class:`rnnsent.training.optim.RMSprop`. Checkpoints, resume and evaluation therefore see no
difference; ``tests/test_fused.py`` checks that the loss trajectory and the weights match the
autograd path step for step. The kernels are in :mod:`rnnsent.training.compiled_step_kernels`,
imported only when a step is built, so that without numba (the ``fast`` extra) training
takes the autograd path.
"""

from __future__ import annotations

import numpy as np
import torch

from rnnsent.model.compiled import compiled_logits


class FusedSimpleRNNStep:
    """One optimiser step of embedding -> SimpleRNN (last state) -> dense -> sigmoid, compiled.

    Holds numpy views of the model's parameters and the optimiser's state, so updates land
    in the torch tensors directly. Build it after any checkpoint has been restored: loading
    an optimiser state replaces the state tensors this object views.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        from rnnsent.training import compiled_step_kernels
        from rnnsent.training.optim import RMSprop

        assert isinstance(optimizer, RMSprop)
        self.kernel = compiled_step_kernels.train_step
        self.many_kernel = compiled_step_kernels.train_steps
        nonlinearity = model.config.nonlinearity
        self.relu = nonlinearity == "relu"
        parameters = [
            model.embedding.weight, model.rnn.weight_ih_l0, model.rnn.weight_hh_l0, model.rnn.bias_ih_l0,
            model.head.weight, model.head.bias,
        ]
        assert len(list(model.parameters())) == len(parameters), "unexpected parameters for the fused step"
        self.optimizer = optimizer
        self.parameters = parameters
        self._ensure_state()
        self.views = [p.detach().numpy() for p in parameters]
        vocab_size, embedding_dim = parameters[0].shape
        # Scratch: a slot per vocabulary row, -1 when the row is not touched by the batch.
        self.slot = np.full(vocab_size, -1, dtype=np.int64)

    def _ensure_state(self) -> None:
        # Create the optimiser state the way RMSprop.step would, so the layouts agree.
        state = self.optimizer.state
        for index, parameter in enumerate(self.parameters):
            if not state[parameter]:
                state[parameter]["step"] = torch.zeros((), dtype=torch.int64)
                state[parameter]["square_avg"] = torch.zeros_like(parameter)
                if index == 0:
                    state[parameter]["row_step"] = torch.zeros(parameter.shape[0], dtype=torch.int64)
        self.square_avgs = [state[p]["square_avg"].numpy() for p in self.parameters]
        self.row_step = state[self.parameters[0]]["row_step"].numpy()
        self.steps = [state[p]["step"].view(1).numpy() for p in self.parameters]

    def __call__(self, ids: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
        """Train on one batch; returns ``(mean loss, correct predictions)``."""
        group = self.optimizer.param_groups[0]
        loss, correct = self.kernel(
            ids.numpy(), labels.numpy(), *self.views, *self.square_avgs, self.row_step, *self.steps, self.slot,
            group["lr"], group["rho"], group["eps"], self.relu,
        )
        return loss, int(correct)

    def train_many(self, ids: torch.Tensor, labels: torch.Tensor, batches: list[np.ndarray],
                   lrs: list[float]) -> tuple[np.ndarray, np.ndarray]:
        """Train on several batches in one kernel call, as successive calls would, bit for bit.

        ``ids (examples, time)`` and ``labels (examples,)`` are the whole training split and
        each batch an index array into it, stepped at its own learning rate; returns each
        step's mean loss ``(steps,)`` and correct predictions ``(steps,)``. One call per step
        costs about as much Python as the seed model's arithmetic, so the trainer runs the
        steps between two of its reports in one call.
        """
        group = self.optimizer.param_groups[0]
        rows = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
        starts = np.zeros(len(batches) + 1, dtype=np.int64)
        np.cumsum([len(batch) for batch in batches], out=starts[1:])
        losses = np.empty(len(batches), dtype=np.float64)
        corrects = np.empty(len(batches), dtype=np.int64)
        self.many_kernel(
            ids.numpy(), labels.numpy(), rows, starts, np.asarray(lrs, dtype=np.float64), *self.views,
            *self.square_avgs, self.row_step, *self.steps, self.slot, group["rho"], group["eps"], self.relu,
            losses, corrects,
        )
        return losses, corrects


def warm_up() -> None:
    """Compile (or load from the on-disk cache) the kernel now rather than inside the first step."""
    from rnnsent.config import build_config
    from rnnsent.model.build import build_model
    from rnnsent.training.optim import RMSprop

    config = build_config("seed", {"num_words": 8, "embedding_dim": 2, "hidden_size": 2})
    model = build_model(config.model, 8, sparse_embedding=True)
    FusedSimpleRNNStep(model, RMSprop(model.parameters()))(torch.ones(1, 2, dtype=torch.int64), torch.ones(1))
    compiled_logits(model.eval(), torch.ones(1, 2, dtype=torch.int64))
