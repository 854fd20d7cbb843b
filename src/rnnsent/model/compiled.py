"""A compiled (numba) CPU forward for single-layer simple RNNs read to their last state.

:func:`compiled_forward_supported` says whether it applies to a model and a batch;
:mod:`rnnsent.model.scoring` asks it for every batch it scores and otherwise runs the model's
own (torch) forward. numba is optional (the ``fast`` extra): without it nothing is compiled
and every path is torch's.
"""

from __future__ import annotations

import functools
from types import ModuleType

import torch

from rnnsent.model.recurrent import RecurrentClassifier

# Smaller batches do not pay for leaving PyTorch.
MIN_COMPILED_BATCH = 64


def numba_available() -> bool:
    """Whether numba can be imported (it is the ``fast`` extra)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def compiled_forward_supported(model: torch.nn.Module, ids: torch.Tensor) -> bool:
    """Whether :func:`compiled_logits` computes ``model``'s logits for id rows ``ids (batch, time)``.

    It does for inference (eval mode, no gradient) on the CPU in float32, in batches of at
    least ``MIN_COMPILED_BATCH`` rows, of a plain :class:`RecurrentClassifier` with one simple
    layer read in one direction to its last state over every column (no ``use_lengths``), with
    its embedding as it is (no ``normalize_embeddings``),
    when numba is installed.
    """
    if not isinstance(model, RecurrentClassifier):
        return False
    config = model.config
    return (
        model.outputs == 1 and config.cell == "simple" and config.num_layers == 1 and not config.bidirectional
        and config.pooling == "last" and not config.use_lengths and not config.ngram_buckets
        and not config.normalize_embeddings
        and not model.training and not torch.is_grad_enabled()
        and ids.device.type == "cpu" and ids.shape[0] >= MIN_COMPILED_BATCH
        and model.embedding.weight.dtype == torch.float32 and type(model.head) is torch.nn.Linear
        and numba_available()
    )


def compiled_logits(model: RecurrentClassifier, ids: torch.Tensor) -> torch.Tensor:
    """Logits ``(batch,)`` of id rows ``(batch, time)`` by the compiled kernel (see the module docstring).

    Rows are independent, so they are spread over as many cores as torch uses.
    """
    kernels = _forward_kernels()
    parameters = [model.embedding.weight, model.rnn.weight_ih_l0, model.rnn.weight_hh_l0, model.rnn.bias_ih_l0,
                  model.head.weight, model.head.bias]
    views = [p.detach().numpy() for p in parameters]
    relu = model.config.nonlinearity == "relu"
    kernels.set_threads(torch.get_num_threads())
    return torch.from_numpy(kernels.forward_logits(ids.contiguous().numpy(), *views, relu))


@functools.lru_cache(maxsize=None)
def _forward_kernels() -> ModuleType:
    """The kernel module, imported at the first compiled call, after choosing numba's threading layer.

    numba's OpenMP layer would reset torch's OpenMP thread count (``--threads``); its own work
    queue does not. The layer is chosen when numba first starts threads, so it is set here,
    once, before any parallel kernel runs.
    """
    import numba

    numba.config.THREADING_LAYER = "workqueue"
    from rnnsent.model import compiled_kernels

    return compiled_kernels
