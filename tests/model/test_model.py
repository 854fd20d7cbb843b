"""The network: parameter counts, Keras initialisers, the SimpleRNN recurrence and every variant's shapes."""

from __future__ import annotations

import itertools

import pytest
import torch

from rnnsent.cli.main import main
from rnnsent.config import build_config, choices
from rnnsent.model.recurrent import RecurrentClassifier
from rnnsent.model.summary import count_parameters, summary_table


def seed_model() -> RecurrentClassifier:
    config = build_config("seed")
    torch.manual_seed(0)
    return RecurrentClassifier(config.model, config.text.num_words)


def test_seed_has_exactly_1_000_286_parameters():
    model = seed_model()
    assert count_parameters(model) == 1_000_286
    assert model.embedding.weight.numel() == 20000 * 50
    assert sum(p.numel() for p in model.rnn.parameters()) == 50 * 5 + 5 * 5 + 5
    assert sum(p.numel() for p in model.head.parameters()) == 5 + 1


def test_simple_cell_has_one_bias_per_layer_and_direction():
    config = build_config("seed", {"num_layers": 2, "bidirectional": True, "hidden_size": 4, "embedding_dim": 6})
    model = RecurrentClassifier(config.model, 100)
    names = {name for name, _ in model.rnn.named_parameters()}
    assert not any(name.startswith("bias_hh") for name in names)
    # Keras: per layer and direction, input * hidden + hidden * hidden + hidden.
    expected = 2 * (6 * 4 + 4 * 4 + 4) + 2 * (8 * 4 + 4 * 4 + 4)
    assert sum(p.numel() for p in model.rnn.parameters()) == expected
    assert count_parameters(model) == 100 * 6 + expected + 8 + 1


def test_keras_initialisers():
    model = seed_model()
    embedding = model.embedding.weight
    assert embedding.abs().max() <= 0.05
    assert embedding.abs().max() > 0.049  # uniform over the whole range, not a narrower init
    assert abs(float(embedding.detach().mean())) < 1e-3
    assert torch.equal(model.rnn.weight_hh_l0, torch.eye(5))
    assert torch.equal(model.rnn.bias_ih_l0, torch.zeros(5))
    assert torch.equal(model.rnn.bias_hh_l0, torch.zeros(5))  # the fixed, non-trainable buffer
    assert 0.0008 < float(model.rnn.weight_ih_l0.detach().std()) < 0.0012  # Normal(0, 0.001), 250 samples
    # Glorot uniform for Dense(5 -> 1): limit sqrt(6 / (5 + 1)) = 1.
    assert model.head.weight.abs().max() <= 1.0
    assert torch.equal(model.head.bias, torch.zeros(1))


@pytest.mark.parametrize("cell, blocks", [("gru", 3), ("lstm", 4)])
def test_identity_init_of_gated_cells_is_per_gate(cell, blocks):
    config = build_config("seed", {"cell": cell, "hidden_size": 3})
    model = RecurrentClassifier(config.model, 50)
    assert torch.equal(model.rnn.weight_hh_l0, torch.eye(3).repeat(blocks, 1))


def test_simple_rnn_computes_the_keras_recurrence():
    """h_t = relu(x_t W + h_{t-1} U + b); logit = h_T w + c — written out step by step."""
    config = build_config("seed", {"input_init_std": 0.5})
    torch.manual_seed(3)
    model = RecurrentClassifier(config.model, 40)
    with torch.no_grad():
        model.rnn.bias_ih_l0.uniform_(-0.5, 0.5)  # a non-zero bias, so that it is tested too
        model.rnn.weight_hh_l0.add_(torch.randn(5, 5) * 0.1)
    ids = torch.randint(0, 40, (3, 7))
    logits, _ = model(ids)
    weight_ih, weight_hh, bias = model.rnn.weight_ih_l0, model.rnn.weight_hh_l0, model.rnn.bias_ih_l0
    hidden = torch.zeros(3, 5)
    for step in range(7):
        hidden = torch.relu(model.embedding(ids[:, step]) @ weight_ih.T + hidden @ weight_hh.T + bias)
    expected = (hidden @ model.head.weight.T + model.head.bias).squeeze(-1)
    assert torch.allclose(logits, expected, atol=1e-6)


def test_loss_is_mean_binary_cross_entropy():
    model = seed_model()
    ids = torch.randint(0, 20000, (4, 30))
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0])
    logits, loss = model(ids, labels=labels)
    probabilities = torch.sigmoid(logits)
    expected = -(labels * probabilities.log() + (1 - labels) * (1 - probabilities).log()).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    assert model(ids)[1] is None


VARIANTS = list(itertools.product(("simple", "lstm", "gru"), choices("pooling"), (False, True)))


@pytest.mark.parametrize("cell, pooling, bidirectional", VARIANTS)
def test_output_shapes_of_every_variant(cell, pooling, bidirectional):
    hidden = 4
    config = build_config("seed", {"cell": cell, "pooling": pooling, "bidirectional": bidirectional,
                                   "hidden_size": hidden, "embedding_dim": 6, "num_layers": 2})
    model = RecurrentClassifier(config.model, 30)
    ids = torch.randint(0, 30, (3, 9))
    states, summary = model.encode(ids)
    directions = 2 if bidirectional else 1
    assert states.shape == (3, 9, hidden * directions)
    assert summary.shape == (3, hidden * directions * (2 if pooling == "maxmean" else 1))
    logits, loss = model(ids, labels=torch.ones(3))
    assert logits.shape == (3,) and loss.shape == ()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert f"Total params: {count_parameters(model):,}" in summary_table(model, 9)


@pytest.mark.parametrize("cell, pooling, bidirectional", VARIANTS)
def test_with_lengths_trailing_padding_cannot_change_a_prediction(cell, pooling, bidirectional):
    config = build_config("seed", {"cell": cell, "pooling": pooling, "bidirectional": bidirectional, "hidden_size": 4,
                                   "embedding_dim": 6, "padding": "post", "use_lengths": True,
                                   "input_init_std": 0.3})
    torch.manual_seed(1)
    model = RecurrentClassifier(config.model, 30).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    lengths = torch.tensor([3, 5])
    padded = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    short, _ = model(ids, lengths)
    longer, _ = model(padded, lengths)
    assert torch.allclose(short, longer, atol=1e-6)
    alone, _ = model(ids[:1, :3], lengths[:1])
    assert torch.allclose(short[:1], alone, atol=1e-6)


def test_sparse_embedding_gives_sparse_gradients():
    config = build_config("seed")
    model = RecurrentClassifier(config.model, 100, sparse_embedding=True)
    _, loss = model(torch.randint(0, 100, (2, 5)), labels=torch.ones(2))
    loss.backward()
    assert model.embedding.weight.grad.is_sparse
    assert not model.head.weight.grad.is_sparse


def test_summary_command_prints_the_seed_parameter_count(capsys):
    assert main(["summary", "--preset", "seed"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 1,000,286" in out
    assert "1,000,000" in out and "280" in out
    assert "(None, 30, 50)" in out


def test_summary_command_applies_overrides(capsys):
    assert main(["summary", "--hidden-size", "7", "--num-words", "1000"]) == 0
    # 1000 * 50 + (50 * 7 + 7 * 7 + 7) + (7 + 1)
    assert f"Total params: {1000 * 50 + 406 + 8:,}" in capsys.readouterr().out
