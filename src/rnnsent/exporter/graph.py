"""A saved model's probabilities as one torch module over ``(ids, lengths)``, in the form the ONNX exporter traces.

:class:`ProbabilityGraph` runs the model's own ``forward`` (embedding, recurrent layers, pooling, head,
and the n-gram branch and blend when the model has them), divides the logits by the calibrated
temperature and applies the task's sigmoid or softmax, exactly as
:meth:`rnnsent.inference.predictor.Predictor.to_probabilities` does. What scoring may do instead of
that forward (the compiled numba kernel of small simple RNNs, chosen per batch in
:mod:`rnnsent.model.scoring`) is never traced; the tests in ``tests/exporter`` hold the two equal.

The one operation the TorchScript-based exporter has no rule for is the bitwise xor of integer
tensors, which the n-gram hash's bit mixer uses (:func:`rnnsent.model.ngrams.mix_bits`);
:class:`IntegerXorAsOnnx` routes it to ONNX's ``BitwiseXor`` while the model is traced.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnsent.model.build import Classifier


class ProbabilityGraph(nn.Module):
    """Probabilities ``(batch, K)`` float32 of id rows ``ids (batch, time)`` with true ``lengths (batch,)``.

    K is the model's number of outputs: 1 for a binary task (the probability of the second label),
    one per label otherwise, sigmoids (binary, multilabel) or a softmax (multiclass).
    """

    def __init__(self, model: Classifier, task: str, temperature: float) -> None:
        super().__init__()
        self.model, self.task, self.temperature = model, task, float(temperature)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        logits = self.model(ids, lengths)[0]  # (batch,) for one output, else (batch, K)
        scaled = logits.reshape(ids.shape[0], self.model.outputs) / self.temperature  # (batch, K)
        if self.task == "multiclass":
            return torch.softmax(scaled, dim=-1)
        return torch.sigmoid(scaled)


class _IntegerXor(torch.autograd.Function):
    """``a ^ b`` of two integer tensors, recorded by the exporter as one ONNX ``BitwiseXor`` (opset 18)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.bitwise_xor(a, b)

    @staticmethod
    def symbolic(g, a, b):
        return g.op("BitwiseXor", a, b)


_XOR_FUNCTIONS = {torch.Tensor.__xor__, torch.Tensor.bitwise_xor, torch.bitwise_xor}


class IntegerXorAsOnnx(torch.overrides.TorchFunctionMode):
    """While active, every xor of two integer tensors goes through :class:`_IntegerXor`.

    Eager results are unchanged (it computes the same xor); under the TorchScript exporter the xor
    becomes ``BitwiseXor`` instead of failing, as the exporter's own rule accepts booleans only.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if (func in _XOR_FUNCTIONS and not kwargs and len(args) == 2
                and all(isinstance(a, torch.Tensor) and not a.is_floating_point() and a.dtype != torch.bool for a in args)):
            return _IntegerXor.apply(*args)
        return func(*args, **kwargs)
