"""PyTorch internals are used in one module only, and each use still equals the public API.

``src/rnnsent/model/torch_private.py`` is the one place that calls ``torch._VF`` kernels and
private ``nn.RNNBase`` attributes. If a PyTorch release renames or changes them, these tests
fail first, before any model silently computes something else.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from rnnsent.model import torch_private
from rnnsent.model.recurrent import KerasSimpleRNN

SOURCE = Path(__file__).resolve().parents[2] / "src" / "rnnsent"
PRIVATE_MODULE = SOURCE / "model" / "torch_private.py"
# torch._anything (dunders such as torch.__version__ are public), the flat-weights internals of
# nn.RNNBase, and the _VF kernels.
PRIVATE_USE = re.compile(r"torch\._(?!_)|\._flat_weights|_init_flat_weights|\b_VF\b")


def test_private_torch_apis_are_used_only_in_torch_private():
    offenders = []
    for path in sorted(SOURCE.rglob("*.py")):
        if path == PRIVATE_MODULE:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if PRIVATE_USE.search(line):
                offenders.append(f"{path.relative_to(SOURCE)}:{number}: {line.strip()}")
    assert not offenders, "private torch APIs outside model/torch_private.py:\n" + "\n".join(offenders)
    assert PRIVATE_USE.search(PRIVATE_MODULE.read_text(encoding="utf-8")), "the guard's pattern no longer matches"


def _one_layer(kind: str, input_size: int, hidden: int) -> nn.RNNBase:
    if kind == "lstm":
        return nn.LSTM(input_size, hidden, batch_first=True)
    if kind == "gru":
        return nn.GRU(input_size, hidden, batch_first=True)
    return nn.RNN(input_size, hidden, nonlinearity=kind.removeprefix("rnn_"), batch_first=True)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_relu", "rnn_tanh"])
@pytest.mark.parametrize("training", [False, True])
def test_run_cell_equals_the_public_module(kind, training):
    torch.manual_seed(0)
    rnn = _one_layer(kind, input_size=5, hidden=4).train(training)
    sequence = torch.randn(3, 7, 5)  # (batch, time, input)
    weights = [rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0]
    wanted, _ = rnn(sequence)
    got = torch_private.run_cell(rnn, sequence, weights)
    assert got.shape == (3, 7, 4)
    torch.testing.assert_close(got, wanted, rtol=0, atol=1e-6)


def test_run_cell_keeps_gradients():
    torch.manual_seed(0)
    rnn = nn.GRU(3, 2, batch_first=True)
    sequence = torch.randn(2, 4, 3, requires_grad=True)
    weights = [rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0]
    torch_private.run_cell(rnn, sequence, weights).sum().backward()
    public = sequence.grad.clone()
    sequence.grad = None
    rnn(sequence)[0].sum().backward()
    torch.testing.assert_close(public, sequence.grad)


def test_flat_weight_names_are_the_parameters_in_kernel_order():
    rnn = nn.RNN(3, 2, num_layers=2, bidirectional=True, batch_first=True)
    names = torch_private.flat_weight_names(rnn)
    assert names == [name for name, _ in rnn.named_parameters()]
    assert names[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]


def test_keras_simple_rnn_has_one_bias_and_computes_like_nn_rnn():
    torch.manual_seed(0)
    keras = KerasSimpleRNN(3, 2, num_layers=2, bidirectional=True, batch_first=True)
    assert [name for name, _ in keras.named_parameters()] == [
        f"{kind}_l{layer}{suffix}" for layer in range(2) for suffix in ("", "_reverse")
        for kind in ("weight_ih", "weight_hh", "bias_ih")
    ]
    assert not any(name.startswith("bias_hh") for name in keras.state_dict())  # a fixed buffer, not saved
    assert all(torch.equal(getattr(keras, f"bias_hh_l{layer}{suffix}"), torch.zeros(2))
               for layer in range(2) for suffix in ("", "_reverse"))
    # The same weights in a plain nn.RNN with zero hidden biases give the same outputs.
    plain = nn.RNN(3, 2, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for name, parameter in plain.named_parameters():
            parameter.copy_(getattr(keras, name))
    sequence = torch.randn(4, 5, 3)
    torch.testing.assert_close(keras(sequence)[0], plain(sequence)[0], rtol=0, atol=1e-6)
    # A training step moves the kept bias and never the fixed one.
    keras(sequence)[0].sum().backward()
    assert keras.bias_ih_l0.grad is not None and keras.bias_hh_l0.grad is None
