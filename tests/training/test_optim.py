"""The optimisers against hand-computed steps, the lazy sparse RMSprop against the dense one, schedules."""

from __future__ import annotations

import math

import pytest
import torch

from rnnsent.config import build_config
from rnnsent.training.optim import (
    Adam,
    AdamW,
    RMSprop,
    build_optimizer,
    clip_gradients,
    learning_rate,
)


def step_with(optimizer, parameter, gradient):
    parameter.grad = gradient.clone()
    optimizer.step()


def test_one_rmsprop_step_by_hand():
    # g = 1e-3: v = 0.1 * g^2 = 1e-7; v + eps = 2e-7; g / sqrt(2e-7) = sqrt(1e-6 / 2e-7) = sqrt(5).
    # (PyTorch's RMSprop, with eps outside the root, would give 1e-3 / (sqrt(1e-7) + 1e-7) = 3.1613.)
    parameter = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = RMSprop([parameter], lr=0.1, rho=0.9, eps=1e-7)
    step_with(optimizer, parameter, torch.tensor([1e-3], dtype=torch.float64))
    assert parameter.item() == pytest.approx(-0.1 * math.sqrt(5), rel=1e-12)
    assert optimizer.state[parameter]["square_avg"].item() == pytest.approx(1e-7, rel=1e-12)
    # Second step, g = 2e-3: v = 0.9e-7 + 0.1 * 4e-6 = 4.9e-7; g / sqrt(5.9e-7) = sqrt(400 / 59).
    step_with(optimizer, parameter, torch.tensor([2e-3], dtype=torch.float64))
    assert parameter.item() == pytest.approx(-0.1 * (math.sqrt(5) + math.sqrt(400 / 59)), rel=1e-12)
    assert optimizer.state[parameter]["square_avg"].item() == pytest.approx(4.9e-7, rel=1e-12)


def test_rmsprop_step_on_a_vector_with_a_negative_gradient():
    # g = (-0.5, 0): v = (0.025, 0); updates lr * g / sqrt(v + eps) = (-0.05 / sqrt(0.0250001), 0).
    parameter = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    optimizer = RMSprop([parameter], lr=0.1)
    step_with(optimizer, parameter, torch.tensor([-0.5, 0.0], dtype=torch.float64))
    assert parameter.tolist() == pytest.approx([1.0 + 0.05 / math.sqrt(0.0250001), 2.0], rel=1e-12)


# Row ids per step: row 1 rests for steps 2-4, row 6 is touched only at the end, row 9 never.
BATCHES = [[1, 2, 2], [3], [3, 4], [0, 4, 3], [1, 5], [2, 6, 6, 6], [1]]


def twin_embeddings(vocab=10, dim=3):
    torch.manual_seed(0)
    dense = torch.nn.Embedding(vocab, dim, sparse=False).double()
    sparse = torch.nn.Embedding(vocab, dim, sparse=True).double()
    sparse.load_state_dict(dense.state_dict())
    return dense, sparse


def train_step(embedding, optimizer, rows, step):
    ids = torch.tensor(rows)
    # A loss whose gradient differs per row and per step.
    target = torch.arange(embedding.embedding_dim, dtype=torch.float64) * (step + 1)
    loss = ((embedding(ids) * ids[:, None].double() - target) ** 2).sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def test_lazy_sparse_rmsprop_equals_dense():
    dense, sparse = twin_embeddings()
    dense_opt = RMSprop(dense.parameters(), lr=0.01, rho=0.9, eps=1e-7)
    sparse_opt = RMSprop(sparse.parameters(), lr=0.01, rho=0.9, eps=1e-7)
    for step, rows in enumerate(BATCHES):
        train_step(dense, dense_opt, rows, step)
        train_step(sparse, sparse_opt, rows, step)
        assert sparse.weight.grad.is_sparse
        assert torch.allclose(sparse.weight, dense.weight, rtol=1e-12, atol=1e-14)
    dense_avg = dense_opt.state[dense.weight]["square_avg"]
    sparse_avg = sparse_opt.state[sparse.weight]["square_avg"]
    assert not torch.allclose(sparse_avg, dense_avg)  # decays are still pending before materialize()
    sparse_opt.materialize()
    assert torch.allclose(sparse_avg, dense_avg, rtol=1e-12, atol=1e-20)
    # After materialize, the lazy bookkeeping keeps matching the dense optimiser.
    for step, rows in enumerate(BATCHES[::-1]):
        train_step(dense, dense_opt, rows, step)
        train_step(sparse, sparse_opt, rows, step)
    sparse_opt.materialize()
    assert torch.allclose(sparse.weight, dense.weight, rtol=1e-12, atol=1e-14)
    assert torch.allclose(sparse_avg, dense_avg, rtol=1e-12, atol=1e-20)


def test_lazy_sparse_rmsprop_survives_a_state_dict_round_trip():
    dense, sparse = twin_embeddings()
    dense_opt = RMSprop(dense.parameters(), lr=0.01)
    sparse_opt = RMSprop(sparse.parameters(), lr=0.01)
    for step, rows in enumerate(BATCHES[:4]):
        train_step(dense, dense_opt, rows, step)
        train_step(sparse, sparse_opt, rows, step)
    resumed = torch.nn.Embedding(10, 3, sparse=True).double()
    resumed.load_state_dict(sparse.state_dict())
    resumed_opt = RMSprop(resumed.parameters(), lr=0.01)
    resumed_opt.load_state_dict(sparse_opt.state_dict())
    for step, rows in enumerate(BATCHES[4:]):
        train_step(dense, dense_opt, rows, step + 4)
        train_step(resumed, resumed_opt, rows, step + 4)
    assert torch.allclose(resumed.weight, dense.weight, rtol=1e-12, atol=1e-14)


def test_sparse_rmsprop_in_float32_on_the_seed_model_matches_dense():
    from rnnsent.model.recurrent import RecurrentClassifier

    config = build_config("seed", {"num_words": 60})
    torch.manual_seed(0)
    dense = RecurrentClassifier(config.model, 60)
    sparse = RecurrentClassifier(config.model, 60, sparse_embedding=True)
    sparse.load_state_dict(dense.state_dict())
    optimizers = [build_optimizer(config.train, model.parameters()) for model in (dense, sparse)]
    generator = torch.Generator().manual_seed(5)
    for _ in range(12):
        ids = torch.randint(0, 30, (4, 8), generator=generator)  # rows 30..59 are never touched
        labels = torch.randint(0, 2, (4,), generator=generator).float()
        for model, optimizer in zip((dense, sparse), optimizers):
            optimizer.zero_grad(set_to_none=True)
            model(ids, labels=labels)[1].backward()
            optimizer.step()
    for (name, left), right in zip(dense.named_parameters(), sparse.parameters()):
        assert torch.allclose(left, right, rtol=1e-5, atol=1e-7), name


def test_build_optimizer_choices():
    parameters = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(build_optimizer(build_config("seed").train, parameters), RMSprop)
    adam = build_optimizer(build_config("seed", {"optimizer": "adam", "lr": 0.01, "eps": 1e-8}).train, parameters)
    # torch's Adam and AdamW, eager-only (tests/test_startup.py checks them bit for bit against torch's)
    assert type(adam) is Adam and isinstance(adam, torch.optim.Adam) and adam.defaults["eps"] == 1e-8
    adamw = build_optimizer(build_config("seed", {"optimizer": "adamw", "weight_decay": 0.1}).train, parameters)
    assert type(adamw) is AdamW and isinstance(adamw, torch.optim.AdamW) and adamw.defaults["weight_decay"] == 0.1
    with pytest.raises(ValueError, match="adamw"):
        build_optimizer(build_config("seed", {"weight_decay": 0.1}).train, parameters)


@pytest.mark.parametrize("overrides, step, expected", [
    ({}, 0, 1e-2),
    ({}, 99, 1e-2),
    ({"warmup_steps": 4}, 0, 0.25e-2),  # linear warm-up: (step + 1) / warmup_steps
    ({"warmup_steps": 4}, 3, 1e-2),
    ({"schedule": "linear"}, 50, 0.5e-2),
    ({"schedule": "linear"}, 100, 0.0),
    ({"schedule": "cosine"}, 50, 0.5e-2),
    ({"schedule": "cosine"}, 0, 1e-2),
    ({"schedule": "linear", "warmup_steps": 20}, 60, 0.5e-2),  # halfway through the 80 steps after warm-up
])
def test_learning_rate_schedule(overrides, step, expected):
    config = build_config("seed", {"lr": 1e-2, **overrides}).train
    assert learning_rate(config, step, total_steps=100) == pytest.approx(expected, abs=1e-15)


def test_clip_gradients_over_dense_and_sparse():
    embedding = torch.nn.Embedding(5, 2, sparse=True)
    linear = torch.nn.Parameter(torch.zeros(2))
    embedding.weight.grad = torch.sparse_coo_tensor([[1, 3]], torch.tensor([[3.0, 0.0], [0.0, 0.0]]), (5, 2),
                                                    check_invariants=True)
    linear.grad = torch.tensor([0.0, 4.0])
    parameters = [embedding.weight, linear]
    assert clip_gradients(parameters, max_norm=10.0) == pytest.approx(5.0)  # sqrt(3^2 + 4^2), no clipping
    assert linear.grad.tolist() == [0.0, 4.0]
    assert clip_gradients(parameters, max_norm=1.0) == pytest.approx(5.0)
    assert linear.grad.tolist() == pytest.approx([0.0, 0.8], rel=1e-5)
    assert embedding.weight.grad.to_dense()[1].tolist() == pytest.approx([0.6, 0.0], rel=1e-5)
