"""int8 dynamic quantization of a loaded model (``rnnsent.load(path, quantize=True)``, ``predict --quantize``).

The linear layers and the LSTM/GRU layers get int8 weights, with activations quantized on the
fly (``torch.ao.quantization.quantize_dynamic``); embeddings, the n-gram weights, pooling and
simple RNNs (already served by the compiled forward) stay float32. A recurrent layer becomes a
:class:`QuantizedRecurrent`, which runs whole rows with the quantized multi-layer module and,
for models that read true lengths, each layer and direction with its own quantized one-layer
module (:func:`rnnsent.model.lengths.run_within_lengths` asks it through ``run_direction``).

Inference only, on the CPU. The speed and accuracy cost are in docs/performance.md.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from rnnsent.errors import UsageError
from rnnsent.model.torch_private import flat_weight_names


def _dynamic(module: nn.Module) -> nn.Module:
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch 2.13 announces the quantized tensor types' future removal on every conversion.
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions", category=UserWarning)
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning)
        return quantize_dynamic(module, {nn.Linear, nn.LSTM, nn.GRU}, dtype=torch.qint8)


class QuantizedRecurrent(nn.Module):
    """A quantized stand-in for an ``nn.LSTM``/``nn.GRU`` with the same forward and attributes."""

    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        self.hidden_size, self.num_layers, self.bidirectional = rnn.hidden_size, rnn.num_layers, rnn.bidirectional
        self.mode = "LSTM" if isinstance(rnn, nn.LSTM) else "GRU"
        self.whole = _dynamic(nn.Sequential(copy.deepcopy(rnn)))[0]
        directions = 2 if rnn.bidirectional else 1
        cells = []
        for layer in range(rnn.num_layers):
            for direction in range(directions):
                suffix = "_reverse" if direction else ""
                input_size = rnn.input_size if layer == 0 else rnn.hidden_size * directions
                one = type(rnn)(input_size, rnn.hidden_size, num_layers=1, batch_first=True)
                with torch.no_grad():
                    for name in flat_weight_names(one):
                        kind = name[: -len("_l0")]
                        getattr(one, name).copy_(getattr(rnn, f"{kind}_l{layer}{suffix}"))
                cells.append(one.eval())
        self.cells = _dynamic(nn.ModuleList(cells))

    def forward(self, inputs: torch.Tensor, state=None):
        return self.whole(inputs, state)

    def run_direction(self, layer: int, direction: int, sequence: torch.Tensor) -> torch.Tensor:
        """Outputs ``(batch, time, hidden)`` of one layer and direction from a zero state (see ``run_cell``)."""
        directions = 2 if self.bidirectional else 1
        return self.cells[layer * directions + direction](sequence)[0]


def quantize_model(model: nn.Module) -> nn.Module:
    """The model with int8 dynamic quantization of its linear and LSTM/GRU layers (a copy; eval mode)."""
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise UsageError("--quantize runs on the CPU: load the model with device 'cpu'")
    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.LSTM, nn.GRU)):
                setattr(parent, name, QuantizedRecurrent(child))
            elif type(child) is nn.Linear:
                setattr(parent, name, _dynamic(nn.Sequential(child))[0])
    return model
