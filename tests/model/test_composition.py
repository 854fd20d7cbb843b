"""build_model's compositions, their forward passes, and where the compiled forward is chosen."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from rnnsent.config import RunOptions, build_config
from rnnsent.model import compiled
from rnnsent.model.build import build_model, ngram_branch, recurrent_network
from rnnsent.model.composed import JointClassifier, StackedClassifier
from rnnsent.model.ngrams import NgramBranch
from rnnsent.model.recurrent import RecurrentClassifier
from rnnsent.model.scoring import batch_logits, predict_logits, predict_part_logits
from rnnsent.model.summary import summary_table
from rnnsent.training.distributed import World
from rnnsent.training.ngram_regression import fit_ngram_regression
from rnnsent.training.steps import compiled_step_blockers

VOCAB = 40
STACKED = {"ngram_buckets": 13, "ngram_fit": "stacked", "validation_split": 0.1}
JOINT = {"ngram_buckets": 13, "ngram_fit": "joint"}


def config_for(**overrides):
    settings = {"num_words": VOCAB, "embedding_dim": 4, "hidden_size": 3, "input_init_std": 0.3, **overrides}
    return build_config("seed", settings)


def rows(count: int = 6, time: int = 9, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, VOCAB, (count, time), generator=generator)


@pytest.mark.parametrize("overrides, kind", [
    ({}, RecurrentClassifier),
    ({"cell": "gru", "pooling": "attention", "bidirectional": True}, RecurrentClassifier),
    (JOINT, JointClassifier),
    (STACKED, StackedClassifier),
    ({**STACKED, "ngram_buckets": 0}, RecurrentClassifier),  # no buckets, no branch, whatever ngram_fit says
])
def test_build_model_composes_what_the_config_asks_for(overrides, kind):
    config = config_for(**overrides)
    model = build_model(config.model, VOCAB)
    assert type(model) is kind
    assert model.config == config.model
    assert isinstance(recurrent_network(model), RecurrentClassifier)
    if kind is RecurrentClassifier:
        assert recurrent_network(model) is model and ngram_branch(model) is None
        assert set(model.part_logits(rows())) == {"recurrent"}
    else:
        assert recurrent_network(model) is model.network and ngram_branch(model) is model.ngrams
        assert isinstance(model.ngrams, NgramBranch) and model.ngrams.binary == (kind is StackedClassifier)
        assert set(model.part_logits(rows())) == {"recurrent", "ngrams"}
    assert hasattr(model, "blend") == (kind is StackedClassifier)
    logits, loss = model(rows(), labels=torch.ones(6))
    assert logits.shape == (6,) and loss.shape == ()


def test_the_ngram_branch_does_not_change_the_networks_initial_weights():
    torch.manual_seed(5)
    plain = build_model(config_for().model, VOCAB)
    torch.manual_seed(5)
    stacked = build_model(config_for(**STACKED).model, VOCAB)
    for name, tensor in plain.state_dict().items():
        assert torch.equal(stacked.network.state_dict()[name], tensor), name


def test_stacked_forward_is_the_blend_written_out():
    torch.manual_seed(0)
    model = build_model(config_for(**STACKED).model, VOCAB).eval()
    with torch.no_grad():
        model.ngrams.weight.weight.normal_()
        model.ngrams.bias.fill_(0.4)
        model.blend.copy_(torch.tensor([0.5, 2.0, -0.25]))
    ids, labels = rows(), torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    with torch.no_grad():
        logits, loss = model(ids, labels=labels)
        recurrent = model.network.head_logits(model.network.encode(ids)[1])
        # The branch by hand: the sum of the weights of the distinct n-grams of each row, plus the bias.
        ngrams = torch.stack([
            model.ngrams.weight.weight[sorted(set(features.tolist()) - {-1}), 0].sum() + 0.4
            for features in _distinct_features(model.ngrams, ids)
        ])
    torch.testing.assert_close(logits, 0.5 * recurrent + 2.0 * ngrams - 0.25)
    # Mean binary cross-entropy, written in the stable form for large logits.
    wanted_loss = (logits.clamp(min=0) - logits * labels + torch.log1p(torch.exp(-logits.abs()))).mean()
    torch.testing.assert_close(loss, wanted_loss)


def _distinct_features(branch: NgramBranch, ids: torch.Tensor) -> torch.Tensor:
    from rnnsent.model.ngrams import ngram_ids

    return ngram_ids(ids, branch.vocab_size, branch.buckets, branch.order, mixed=True)


def test_joint_forward_is_the_sum_of_its_parts():
    torch.manual_seed(0)
    model = build_model(config_for(**JOINT).model, VOCAB).eval()
    with torch.no_grad():
        model.ngrams.weight.weight.normal_()
        ids = rows()
        parts = model.part_logits(ids)
        torch.testing.assert_close(model(ids)[0], model.network(ids)[0] + model.ngrams(ids))
        torch.testing.assert_close(model(ids)[0], parts["recurrent"] + parts["ngrams"])


def test_ngram_regression_is_fitted_in_place_on_model_ngrams():
    model = build_model(config_for(**STACKED).model, VOCAB)
    ids = torch.cat([rows(40, seed=1), rows(40, seed=2)])
    labels = (ids[:, 0] > VOCAB // 2).float()
    fit_ngram_regression(model.ngrams, ids, labels, inverse_l2=1.0)
    assert model.ngrams.weight.weight.abs().sum() > 0 and float(model.ngrams.bias) != 0.0
    assert not model.ngrams.weight.weight.requires_grad  # still frozen for the network's training


def test_summary_table_has_the_ngram_row_for_composed_models():
    for overrides in (JOINT, STACKED):
        table = summary_table(build_model(config_for(**overrides).model, VOCAB), 9)
        assert "ngrams (bag of 1..2-grams)" in table and "embedding (Embedding)" in table


# ----------------------------------------------------------------------------- scoring


def seed_like_model(**overrides) -> RecurrentClassifier:
    torch.manual_seed(3)
    return build_model(config_for(recurrent_init="orthogonal", **overrides).model, VOCAB).eval()


@pytest.mark.skipif(not compiled.numba_available(), reason="numba (the fast extra) is not installed")
@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
def test_scoring_takes_the_compiled_forward_and_it_agrees_with_torch(nonlinearity, monkeypatch):
    model = seed_like_model(nonlinearity=nonlinearity)
    ids = rows(200, 12)
    calls = []
    original = compiled.compiled_logits
    monkeypatch.setattr("rnnsent.model.scoring.compiled_logits",
                        lambda *args: calls.append(len(args[1])) or original(*args))
    fast = predict_logits(model, ids, batch_size=100)
    # The compiled forward takes up to COMPILED_BATCH_TOKENS tokens a call, whatever batch_size
    # says, and each row's logit does not depend on the rows beside it, bit for bit.
    assert calls == [200]
    monkeypatch.setattr("rnnsent.model.scoring.COMPILED_BATCH_TOKENS", 100 * 12)
    assert np.array_equal(predict_logits(model, ids, batch_size=100), fast)
    assert calls == [200, 100, 100]
    with torch.inference_mode():
        plain = model(ids)[0].numpy()  # forward is always the torch computation
    np.testing.assert_allclose(fast, plain, rtol=0, atol=1e-5)
    # Small batches, gradients, training mode: torch.
    calls.clear()
    predict_logits(model, ids[:63])
    with torch.no_grad():
        assert torch.equal(batch_logits(model.train(), ids), model(ids)[0])
    assert calls == []


def test_compiled_forward_eligibility():
    ids = rows(64, 5)
    with torch.inference_mode():
        assert compiled.compiled_forward_supported(seed_like_model(), ids) == compiled.numba_available()
        assert not compiled.compiled_forward_supported(seed_like_model(), ids[:63])
        for overrides in ({"cell": "gru"}, {"num_layers": 2}, {"bidirectional": True}, {"pooling": "max"},
                          {"padding": "post", "use_lengths": True}, JOINT, STACKED):
            assert not compiled.compiled_forward_supported(seed_like_model(**overrides), ids), overrides
        assert not compiled.compiled_forward_supported(seed_like_model().double(), ids)
    with torch.no_grad():
        assert not compiled.compiled_forward_supported(seed_like_model().train(), ids)
    assert not compiled.compiled_forward_supported(seed_like_model(), ids)  # gradients enabled


@pytest.mark.skipif(not compiled.numba_available(), reason="numba (the fast extra) is not installed")
def test_numba_threading_layer_is_chosen_once():
    model = seed_like_model()
    with torch.inference_mode():
        compiled.compiled_logits(model, rows(64, 5))
        misses = compiled._forward_kernels.cache_info().misses
        compiled.compiled_logits(model, rows(64, 5))
        compiled.compiled_logits(model, rows(80, 5))
    assert misses == 1 and compiled._forward_kernels.cache_info().misses == 1
    import numba

    assert numba.config.THREADING_LAYER == "workqueue"


def test_without_numba_every_compiled_path_falls_back_to_torch(monkeypatch):
    model = seed_like_model()
    ids = rows(128, 6)
    with torch.inference_mode():
        expected = model(ids)[0].numpy()
    monkeypatch.setitem(sys.modules, "numba", None)  # "import numba" now raises ImportError
    assert not compiled.numba_available()
    with torch.inference_mode():
        assert not compiled.compiled_forward_supported(model, ids)
    np.testing.assert_array_equal(predict_logits(model, ids), expected)
    config = build_config("seed", {"num_words": VOCAB})
    assert "numba is not installed" in compiled_step_blockers(config, RunOptions(), build_model(config.model, VOCAB), World())


def test_true_lengths_are_ignored_by_models_that_do_not_read_them():
    model = seed_like_model(cell="gru", pooling="max")
    ids = rows(5, 8)
    lengths = torch.tensor([1, 3, 8, 2, 5])
    with torch.no_grad():
        torch.testing.assert_close(model(ids, lengths)[0], model(ids)[0], rtol=0, atol=0)
    np.testing.assert_array_equal(predict_logits(model, ids, lengths), predict_logits(model, ids))
    parts = predict_part_logits(model, ids, lengths)
    np.testing.assert_array_equal(parts["model"], predict_logits(model, ids))
