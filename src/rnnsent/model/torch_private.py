"""The only place rnnsent touches PyTorch internals.

Two things PyTorch has no public API for are needed:

* running one layer and one direction of a recurrent cell with given weights over dense
  rows (``torch._VF.lstm`` and friends, the kernels behind ``nn.LSTM.forward``), which the
  length-aware reader in :mod:`rnnsent.model.lengths` uses;
* removing a parameter from an ``nn.RNN`` after construction (``RNNBase._flat_weights_names``
  and ``RNNBase._init_flat_weights``), which :class:`rnnsent.model.recurrent.KerasSimpleRNN`
  uses to keep one bias vector;
* calling ``torch.optim.Optimizer``'s bookkeeping methods without the wrapper that imports
  ``torch._dynamo`` on first call (the function under ``functools.wraps``' ``__wrapped__``),
  which the eager optimisers in :mod:`rnnsent.training.optim` use.

``tests/test_torch_private.py`` checks each function against the public modules, so a PyTorch
release that changes these internals fails there first. They are tested on torch 2.13.
"""

from __future__ import annotations

import torch
from torch import nn


def run_cell(rnn: nn.RNNBase, sequence: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """Outputs ``(batch, time, hidden)`` of one layer, one direction of ``rnn``'s cell from a zero state.

    ``sequence`` is ``(batch, time, input)``; ``weights`` are that layer's and direction's
    ``[weight_ih, weight_hh, bias_ih, bias_hh]``. Equals ``nn.LSTM``/``nn.GRU``/``nn.RNN`` with
    one layer holding those weights, applied to ``sequence``.
    """
    zeros = sequence.new_zeros(1, sequence.shape[0], rnn.hidden_size)  # (layers 1, batch, hidden)
    # Arguments: biases, 1 layer, no dropout, training flag, unidirectional, batch first.
    arguments = (weights, True, 1, 0.0, rnn.training, False, True)
    if isinstance(rnn, nn.LSTM):
        return torch._VF.lstm(sequence, (zeros, zeros), *arguments)[0]
    if isinstance(rnn, nn.GRU):
        return torch._VF.gru(sequence, zeros, *arguments)[0]
    kernel = torch._VF.rnn_relu if rnn.nonlinearity == "relu" else torch._VF.rnn_tanh
    return kernel(sequence, zeros, *arguments)[0]


def flat_weight_names(rnn: nn.RNNBase) -> list[str]:
    """The names of ``rnn``'s weights in the order its kernels take them (``weight_ih_l0``, ...)."""
    return list(rnn._flat_weights_names)


def refresh_flat_weights(rnn: nn.RNNBase) -> None:
    """Make ``rnn`` pass its current parameters and buffers of those names to its kernels.

    Call it after replacing any of the tensors :func:`flat_weight_names` names.
    """
    rnn._init_flat_weights()


def unwrapped_optimizer_method(name: str):
    """``torch.optim.Optimizer.<name>`` without the wrapper that imports ``torch._dynamo`` on first call.

    torch decorates ``add_param_group``, ``state_dict``, ``load_state_dict`` and ``zero_grad``
    with ``torch._disable_dynamo``, whose wrapper runs the original function once dynamo is
    imported; the original is the wrapper's ``__wrapped__``.
    """
    method = getattr(torch.optim.Optimizer, name)
    return getattr(method, "__wrapped__", method)
