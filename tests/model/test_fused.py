"""The compiled CPU step must train exactly like the plain autograd path."""

import copy

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

from rnnsent.config import RunOptions, build_config  # noqa: E402
from rnnsent.model.build import build_model  # noqa: E402
from rnnsent.model.compiled import compiled_forward_supported  # noqa: E402
from rnnsent.model.recurrent import RecurrentClassifier  # noqa: E402
from rnnsent.model.scoring import batch_logits  # noqa: E402
from rnnsent.training.compiled_step import FusedSimpleRNNStep  # noqa: E402
from rnnsent.training.distributed import World  # noqa: E402
from rnnsent.training.optim import RMSprop  # noqa: E402
from rnnsent.training.steps import compiled_step_blockers  # noqa: E402

VOCAB, TIME, BATCH, STEPS = 40, 12, 8, 60


def tiny_config(nonlinearity: str, recurrent_init: str = "identity"):
    return build_config("seed", {
        "num_words": VOCAB, "maxlen": TIME, "embedding_dim": 6, "hidden_size": 4,
        "nonlinearity": nonlinearity, "recurrent_init": recurrent_init, "input_init_std": 0.3, "lr": 3e-3,
    })


def batches(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(STEPS):
        # Ids concentrated on a few rows, so rows repeat within a batch and rest between batches.
        ids = torch.randint(0, VOCAB // 2, (BATCH, TIME), generator=generator) * torch.randint(1, 3, (1,), generator=generator)
        labels = torch.randint(0, 2, (BATCH,), generator=generator).float()
        yield ids.clamp(max=VOCAB - 1), labels


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
@pytest.mark.parametrize("sparse", [True, False])
def test_fused_matches_autograd_step_for_step(nonlinearity, sparse):
    config = tiny_config(nonlinearity, "orthogonal" if nonlinearity == "tanh" else "identity")
    torch.manual_seed(0)
    reference = RecurrentClassifier(config.model, VOCAB, sparse_embedding=sparse)
    fused_model = copy.deepcopy(reference)
    fused_model.embedding.sparse = True
    reference_optimizer = RMSprop(reference.parameters(), lr=config.train.lr, rho=0.9, eps=1e-7)
    fused_optimizer = RMSprop(fused_model.parameters(), lr=config.train.lr, rho=0.9, eps=1e-7)
    step = FusedSimpleRNNStep(fused_model, fused_optimizer)
    reference_losses, fused_losses, agreements = [], [], []
    for ids, labels in batches():
        logits, loss = reference(ids, None, labels)
        reference_optimizer.zero_grad()
        loss.backward()
        reference_optimizer.step()
        reference_losses.append(loss.item())
        fused_loss, correct = step(ids, labels)
        fused_losses.append(fused_loss)
        agreements.append(correct == int(((logits > 0) == (labels > 0.5)).sum()))
    np.testing.assert_allclose(fused_losses, reference_losses, rtol=1e-5, atol=1e-6)
    assert all(agreements)
    # The weights moved, and moved the same way.
    assert not torch.allclose(fused_model.embedding.weight, RecurrentClassifier(config.model, VOCAB).embedding.weight)
    for (name, a), b in zip(reference.state_dict().items(), fused_model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)
    reference_optimizer.materialize()
    fused_optimizer.materialize()
    for a, b in zip(reference.parameters(), fused_model.parameters()):
        torch.testing.assert_close(fused_optimizer.state[b]["square_avg"], reference_optimizer.state[a]["square_avg"],
                                   rtol=1e-4, atol=1e-9)


def blockers(settings=None, world=World(), options=RunOptions()) -> str:
    config = build_config("seed", {"num_words": VOCAB, **(settings or {})})
    return ", ".join(compiled_step_blockers(config, options, build_model(config.model, VOCAB), world))


def test_fused_step_applies_only_where_it_is_exact():
    assert blockers() == ""
    assert "cell" in blockers({"cell": "gru"})
    assert "dropout" in blockers({"dropout": 0.1})
    assert "distributed" in blockers(world=World(rank=0, size=2))
    assert "optimizer" in blockers({"optimizer": "adam"})
    assert "n-gram" in blockers({"ngram_buckets": 64})
    assert "turned off" in blockers(options=RunOptions(fused=False))


def test_fused_and_plain_training_runs_agree(tmp_path):
    """Whole runs through the Trainer, with and without the compiled step, end with the same weights."""
    from rnnsent.training.pipeline import train_tensors
    from rnnsent.training.tensors import Tensors, TrainingData

    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(0, VOCAB, (96, TIME), generator=generator)
    labels = (ids[:, -1] % 2).float()
    data = TrainingData(Tensors(ids, torch.full((96,), TIME), labels), None, None)
    results = {}
    for fused in (True, False):
        config = build_config("seed", {**{k: v for k, v in tiny_config("relu").to_dict()["model"].items() if k == "hidden_size"},
                                       "num_words": VOCAB, "maxlen": TIME, "embedding_dim": 6, "input_init_std": 0.3,
                                       "lr": 3e-3, "epochs": 2, "batch_size": 16})
        results[fused] = train_tensors(config, RunOptions(fused=fused), data, tmp_path / str(fused))
    for a, b in zip(results[True].model.state_dict().values(), results[False].model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert results[True].history[-1]["loss"] == pytest.approx(results[False].history[-1]["loss"], rel=1e-5)


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
def test_compiled_inference_matches_pytorch(nonlinearity):
    config = tiny_config(nonlinearity, "orthogonal")
    torch.manual_seed(1)
    model = RecurrentClassifier(config.model, VOCAB).eval()
    ids = torch.randint(0, VOCAB, (300, TIME))
    with torch.inference_mode():
        assert compiled_forward_supported(model, ids)
        compiled = batch_logits(model, ids)
        plain = model.head_logits(model.encode(ids)[1])
    torch.testing.assert_close(compiled, plain, rtol=1e-4, atol=1e-5)
    # Gradients never take the compiled path.
    logits, loss = model.train()(ids[:80], None, torch.ones(80))
    assert loss.requires_grad


def test_compiled_inference_keeps_torch_thread_count():
    """numba's OpenMP layer used to reset torch's thread count (--threads 1 became 2)."""
    config = tiny_config("relu")
    model = RecurrentClassifier(config.model, VOCAB).eval()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.inference_mode():
            batch_logits(model, torch.randint(0, VOCAB, (100, TIME)))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
def test_many_steps_in_one_call_equal_one_call_per_step_bit_for_bit(nonlinearity):
    config = tiny_config(nonlinearity, "orthogonal" if nonlinearity == "tanh" else "identity")
    torch.manual_seed(0)
    one_by_one = RecurrentClassifier(config.model, VOCAB, sparse_embedding=True)
    together = copy.deepcopy(one_by_one)
    steps = [FusedSimpleRNNStep(model, RMSprop(model.parameters(), lr=config.train.lr, rho=0.9, eps=1e-7))
             for model in (one_by_one, together)]
    generator = np.random.default_rng(3)
    ids = torch.from_numpy(generator.integers(0, VOCAB, (200, TIME)))
    labels = torch.from_numpy(generator.integers(0, 2, 200).astype(np.float32))
    # Batches of uneven sizes (a short last one), rows repeated across batches, a varying rate.
    order = generator.permutation(200)
    batches = [order[start:start + 24] for start in range(0, 200, 24)] * 3
    lrs = [config.train.lr * (1.0 - index / len(batches)) for index in range(len(batches))]
    expected = [steps[0].kernel(ids[batch].numpy(), labels[batch].numpy(), *steps[0].views, *steps[0].square_avgs,
                                steps[0].row_step, *steps[0].steps, steps[0].slot, lr, 0.9, 1e-7, steps[0].relu)
                for batch, lr in zip(batches, lrs)]
    # Two calls, split mid-epoch, as the trainer splits at its reports.
    first = steps[1].train_many(ids, labels, batches[:10], lrs[:10])
    second = steps[1].train_many(ids, labels, batches[10:], lrs[10:])
    assert np.concatenate([first[0], second[0]]).tolist() == [loss for loss, _ in expected]
    assert np.concatenate([first[1], second[1]]).tolist() == [int(correct) for _, correct in expected]
    for (name, a), b in zip(one_by_one.state_dict().items(), together.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(steps[0].square_avgs + steps[0].steps + [steps[0].row_step],
                    steps[1].square_avgs + steps[1].steps + [steps[1].row_step]):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("options", [{}, {"max_steps": 45}, {"checkpoint_every": 7}])
def test_the_trainer_taking_many_steps_per_call_trains_as_one_step_per_call(tmp_path, monkeypatch, options):
    from rnnsent import train
    from rnnsent.training.steps import CompiledStep

    generator = np.random.default_rng(5)
    words = [f"w{index}" for index in range(50)]
    texts = [" ".join(generator.choice(words, 10)) for _ in range(300)]
    labels = [int("w3" in text.split()) for text in texts]
    settings = dict(preset="seed", data=(texts, labels), num_words=60, maxlen=12, embedding_dim=6, hidden_size=4,
                    epochs=2, batch_size=8, threads=1, verbose=False, progress=False, **options)
    # 240 training texts, 30 steps an epoch: the report at step 50 falls inside the second
    # epoch, and so does max_steps.
    many = train(out=tmp_path / "many", **settings)
    assert len(many.history) == 2
    monkeypatch.setattr(CompiledStep, "trains_many", False)
    one = train(out=tmp_path / "one", **settings)
    assert (tmp_path / "many" / "model.safetensors").read_bytes() == (tmp_path / "one" / "model.safetensors").read_bytes()
    assert [row["loss"] for row in many.history] == [row["loss"] for row in one.history]
