"""The stacked n-gram branch: binary features, NB ratios, the regression fit and the blend."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from tests.conftest import write_tiny_reviews

from rnnsent.cli.main import main
from rnnsent.config import build_config
from rnnsent.inference.predictor import Predictor
from rnnsent.model.build import build_model, ngram_branch
from rnnsent.model.composed import StackedClassifier
from rnnsent.model.ngrams import NgramBranch, distinct_ngram_ids, ngram_ids
from rnnsent.model.recurrent import RecurrentClassifier
from rnnsent.model.scoring import predict_logits, predict_part_logits
from rnnsent.training.ngram_regression import (
    fit_blend,
    fit_ngram_regression,
    log_count_ratios,
    presence_matrix,
)

VOCAB = 10


def test_distinct_ngram_ids_keep_each_feature_once():
    ids = torch.tensor([[1, 5, 5, 5, 0, 0]])
    # Unigrams 1, 5, 5, 5; bigrams (1 5), (5 5), (5 5): each distinct feature once.
    expected = sorted({f for f in ngram_ids(ids, VOCAB, 7, 2, mixed=True)[0].tolist() if f >= 0})
    distinct = distinct_ngram_ids(ids, VOCAB, 7, 2)[0].tolist()
    assert sorted(f for f in distinct if f >= 0) == expected
    assert len(expected) == 4 and distinct.count(-1) == len(distinct) - 4


def test_distinct_ngram_ids_are_each_rows_sorted_features_with_repeats_blanked():
    # The oracle: torch's sort of every feature, then -1 where a value repeats the one before it.
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 5000, (40, 30), generator=generator)
    ids[ids < 400] = 0  # padding (and n-grams it cuts) scattered through the rows
    ordered = ngram_ids(ids, 5000, 16_000_000, 3, mixed=True).sort(dim=1).values
    expected = ordered.clone()
    expected[:, 1:][ordered[:, 1:] == ordered[:, :-1]] = -1
    assert torch.equal(distinct_ngram_ids(ids, 5000, 16_000_000, 3), expected)


def test_binary_branch_is_the_sum_of_distinct_weights_plus_bias():
    branch = NgramBranch(VOCAB, 7, order=1, binary=True)
    with torch.no_grad():
        branch.weight.weight[:VOCAB, 0] = torch.arange(VOCAB, dtype=torch.float32)
        branch.bias.fill_(0.5)
    ids = torch.tensor([[1, 4, 4, 6, 0], [3, 0, 0, 0, 0]])
    torch.testing.assert_close(branch(ids), torch.tensor([1 + 4 + 6 + 0.5, 3 + 0.5]))
    assert not branch.weight.weight.requires_grad  # fitted on its own, never by the network's optimiser


def test_log_count_ratios_by_hand():
    # Feature 0 is in both positive reviews, feature 1 in the one negative review.
    rows = torch.tensor([0, 1, 2])
    features = torch.tensor([0, 0, 1])
    labels = torch.tensor([1.0, 1.0, 0.0])
    ratios = log_count_ratios(rows, features, labels, 2)
    # Smoothed counts: positive p = (2 + 1, 0 + 1) of total 4; negative q = (0 + 1, 1 + 1) of total 3.
    expected = [math.log((3 / 4) / (1 / 3)), math.log((1 / 4) / (2 / 3))]
    torch.testing.assert_close(ratios, torch.tensor(expected, dtype=torch.float64))


def noisy_reviews(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Post-padded id rows whose label is set by words 3 (positive) and 4 (negative), with noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.rand(count, generator=generator) < 0.5).float()
    ids = torch.randint(5, VOCAB, (count, 8), generator=generator)
    cue = torch.where(labels > 0, 3, 4)
    flipped = torch.rand(count, generator=generator) < 0.15  # a misleading cue on some reviews
    ids[:, 2] = torch.where(flipped, 7 - cue, cue)
    ids[:, 6:] = 0
    return ids, labels


def test_regression_reaches_the_optimum_of_its_objective():
    ids, labels = noisy_reviews(200)
    branch = NgramBranch(VOCAB, 13, order=2, binary=True)
    stats = fit_ngram_regression(branch, ids, labels, inverse_l2=0.5)
    # Rebuild the problem densely: presence scaled by the NB ratio, weights w = folded / ratio.
    rows, features = presence_matrix(branch, ids)
    seen, columns = torch.unique(features, return_inverse=True)
    ratios = log_count_ratios(rows, columns, labels, len(seen)).double()
    scaled = torch.zeros(len(ids), len(seen), dtype=torch.float64)
    scaled[rows, columns] = ratios[columns]
    weights = branch.weight.weight[seen, 0].double() / ratios
    logits = scaled @ weights + float(branch.bias)
    residual = 0.5 * (torch.sigmoid(logits) - labels.double())
    # At the optimum of 0.5 * sum(log loss) + |w|^2 / 2 both gradients vanish.
    assert (scaled.T @ residual + weights).abs().max() < 1e-3
    assert abs(float(residual.sum())) < 1e-3
    # Unseen n-grams keep weight zero; the fit explains the training data (85% clean cues).
    unseen = torch.ones(branch.weight.num_embeddings, dtype=torch.bool)
    unseen[seen] = False
    assert branch.weight.weight[unseen].abs().max() == 0
    assert stats["features"] == len(seen) and stats["train_accuracy"] >= 0.85
    torch.testing.assert_close(branch(ids).double(), logits, atol=1e-4, rtol=1e-4)


def test_regression_is_deterministic():
    ids, labels = noisy_reviews(300, seed=1)
    first, second = (NgramBranch(VOCAB, 13, order=3, binary=True) for _ in range(2))
    fit_ngram_regression(first, ids, labels, 1.0)
    fit_ngram_regression(second, ids, labels, 1.0)
    assert torch.equal(first.weight.weight, second.weight.weight) and torch.equal(first.bias, second.bias)


def stacked_model() -> StackedClassifier:
    config = build_config("seed", {"num_words": VOCAB, "embedding_dim": 4, "hidden_size": 3, "padding": "post",
                                   "use_lengths": True, "ngram_buckets": 13, "ngram_fit": "stacked",
                                   "validation_split": 0.1})
    torch.manual_seed(0)
    return build_model(config.model, VOCAB).eval()


def test_blend_recovers_known_coefficients():
    # Labels drawn from a logistic model of two logits with known coefficients (2, 0.5, -0.3).
    generator = np.random.default_rng(0)
    parts = {"recurrent": generator.normal(size=40_000), "ngrams": generator.normal(size=40_000) * 2}
    truth = 2.0 * parts["recurrent"] + 0.5 * parts["ngrams"] - 0.3
    labels = (generator.random(40_000) < 1 / (1 + np.exp(-truth))).astype(np.float64)
    model = stacked_model()
    stats = fit_blend(model, parts, labels)
    np.testing.assert_allclose(model.blend.numpy(), [2.0, 0.5, -0.3], atol=0.06)
    assert stats["blend_accuracy"] >= max(stats["recurrent_accuracy"], stats["ngrams_accuracy"])


def test_stacked_model_is_the_blend_of_its_parts():
    model = stacked_model()
    ids, labels = noisy_reviews(50)
    lengths = (ids != 0).sum(dim=1)
    with torch.no_grad():
        model.ngrams.weight.weight.normal_()
        model.blend.copy_(torch.tensor([0.5, 2.0, 0.25]))
    parts = predict_part_logits(model, ids, lengths)
    np.testing.assert_allclose(parts["model"], 0.5 * parts["recurrent"] + 2.0 * parts["ngrams"] + 0.25, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(predict_logits(model, ids, lengths), parts["model"], rtol=1e-6, atol=1e-6)
    assert predict_part_logits(model, ids[:0], lengths[:0])["ngrams"].shape == (0,)


def test_best_without_its_ngram_branch_is_a_plain_recurrent_model():
    # --ngram-buckets 0 turns the branch off, whatever --ngram-fit says (this was refused once).
    config = build_config("best", {"ngram_buckets": 0, "pretrain_window": 0, "num_words": VOCAB})
    model = build_model(config.model, VOCAB)
    assert type(model) is RecurrentClassifier and ngram_branch(model) is None


@pytest.mark.parametrize("overrides, message", [
    ({"ngram_fit": "stacked", "ngram_buckets": 13}, "--validation-split"),
    ({"ngram_fit": "boosted", "ngram_buckets": 13}, "ngram_fit"),
    ({"ngram_c": 0.0}, "ngram_c"),
])
def test_stacked_settings_are_validated(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_config("seed", overrides)


def test_cli_trains_a_stacked_model_end_to_end(tmp_path, capsys):
    data = write_tiny_reviews(tmp_path / "reviews.csv", count=400)
    out = tmp_path / "model"
    code = main(["train", "--data", str(data), "--out", str(out), "--quiet", "--threads", "1", "--num-words", "40",
                 "--maxlen", "12", "--padding", "post", "--use-lengths", "--embedding-dim", "4", "--hidden-size", "3",
                 "--epochs", "1", "--batch-size", "16", "--no-report-test", "--validation-split", "0.2",
                 "--ngram-buckets", "101", "--ngram-order", "2", "--ngram-fit", "stacked"])
    assert code == 0
    output = capsys.readouterr().out
    assert "n-gram regression:" in output and "blend on 64 validation texts" in output
    assert "Accuracy of each part alone: recurrent" in output
    metrics = json.loads((out / "metrics.json").read_text())
    # The tiny reviews' label is set by their sentiment words: the n-gram part alone learns it.
    assert metrics["part_accuracy"]["ngrams"] >= 0.9 and metrics["accuracy"] >= 0.9
    assert set(metrics["validation_accuracy"]) == {"recurrent_accuracy", "ngrams_accuracy", "blend_accuracy"}
    assert metrics["ngram_regression"]["train_accuracy"] >= 0.9 and metrics["ngram_regression"]["features"] > 40
    predictor = Predictor.load(out)
    assert predictor.model.blend[1] > 0  # the fitted blend was saved with the weights
    assert predictor.predict(["great wonderful superb"])[0].label == "positive"
    assert predictor.predict(["awful boring terrible"])[0].label == "negative"
    assert main(["evaluate", str(out), "--data", str(data), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == pytest.approx(metrics["accuracy"])
    assert evaluated["part_accuracy"] == pytest.approx(metrics["part_accuracy"])


def test_mixed_hashes_stay_in_range_and_collide_like_random_keys():
    from rnnsent.model.ngrams import HASH_MODULUS, mix_bits

    # The bigrams of the 300 most frequent words: the structured keys a linear hash crowds.
    words = torch.arange(3, 303)
    keys = ((words[:, None] * 1_000_003 + words[None, :]) % HASH_MODULUS).flatten()
    mixed = mix_bits(keys)
    assert int(mixed.min()) >= 0 and int(mixed.max()) < HASH_MODULUS
    assert len(torch.unique(mixed)) == len(keys)  # a bijection on these keys
    buckets = 100_000
    expected = buckets * (1 - math.exp(-len(keys) / buckets))  # occupied buckets for random keys
    assert abs(len(torch.unique(mixed % buckets)) - expected) < 0.01 * expected


def test_summary_counts_the_fitted_ngram_weights_apart():
    from rnnsent.model.summary import count_parameters, summary_table

    model = stacked_model()
    table = summary_table(model, 12)
    ngram_weights = VOCAB + 13 + 1
    assert count_parameters(model) == count_parameters(model, trainable_only=True) + ngram_weights
    assert f"Total params: {count_parameters(model):,}" in table
    assert f"Fitted by the n-gram regression: {ngram_weights:,}" in table


def test_blend_of_parts_that_separate_the_texts_is_bounded_and_optimal():
    # 32 validation texts that both parts classify correctly, mirrored (the texts of label 0 are
    # those of label 1 with their logits negated): unregularised, the loss has no minimum and the
    # coefficients grew until the optimiser stopped. With the penalty the optimum exists; by the
    # mirror symmetry its intercept is 0, and it must match scipy's minimum of the same objective.
    from scipy.optimize import minimize

    generator = np.random.default_rng(3)
    half = {"recurrent": generator.uniform(0.5, 3.0, 16), "ngrams": generator.uniform(0.2, 2.0, 16)}
    parts = {name: np.concatenate([values, -values]) for name, values in half.items()}
    labels = np.concatenate([np.ones(16), np.zeros(16)])
    model = stacked_model()
    fit_blend(model, parts, labels)
    inputs = np.stack([parts["recurrent"], parts["ngrams"]], axis=1)

    def objective(c: np.ndarray) -> float:
        logits = inputs @ c[:2] + c[2]
        return float(np.mean(np.logaddexp(0, -np.where(labels == 1, logits, -logits))) + c @ c / (2 * len(labels)))

    oracle = minimize(objective, np.zeros(3), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(model.blend.numpy(), oracle, atol=2e-3)
    assert abs(float(model.blend[2])) < 1e-3
    assert np.all(np.abs(model.blend.numpy()) < 10)
