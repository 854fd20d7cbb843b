"""Metrics of every task against hand-computed answers and, where installed, scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest

from rnnsent.labels import LabelSpace
from rnnsent.metrics import (
    choose_thresholds,
    expected_calibration_error,
    fit_temperature,
    loss_and_accuracy,
    multiclass_metrics,
    multilabel_metrics,
    task_metrics,
)

NAMES = ("a", "b", "c")
# Four texts: true classes a, b, c, c; logits put them at a, b, b, c.
LABELS = np.array([0, 1, 2, 2])
LOGITS = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]))


def test_multiclass_known_answers():
    metrics = multiclass_metrics(LABELS, LOGITS, NAMES)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    # a: P=1 R=1 F1=1; b: P=1/2 R=1 F1=2/3; c: P=1 R=1/2 F1=2/3.
    assert metrics["per_class"]["b"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert metrics["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert metrics["weighted_f1"] == pytest.approx((1 + 2 / 3 + 2 * 2 / 3) / 4)
    assert metrics["loss"] == pytest.approx(-np.mean(np.log([0.7, 0.8, 0.3, 0.8])))
    # ECE over 15 bins: confidences 0.7, 0.8, 0.5, 0.8 with correctness 1, 1, 0, 1.
    # Bins: 0.5 alone (gap 0.5), 0.7 alone (gap 0.3), 0.8 twice (gap 0.2).
    assert metrics["ece"] == pytest.approx((0.5 + 0.3 + 2 * 0.2) / 4)


def test_ordered_labels_report_mae_in_values_and_steps():
    metrics = multiclass_metrics(LABELS, LOGITS, ("1", "2", "10"), ordered_values=[1, 2, 10])
    # The one mistake is a 10 predicted as 2: 8 stars, one step.
    assert metrics["mae"] == pytest.approx(8 / 4) and metrics["mae_steps"] == pytest.approx(1 / 4)


def test_multilabel_known_answers():
    targets = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 0]])
    probabilities = np.array([[0.9, 0.2, 0.4], [0.1, 0.6, 0.2], [0.8, 0.7, 0.1]])
    logits = np.log(probabilities / (1 - probabilities))
    metrics = multilabel_metrics(targets, logits, NAMES)
    # Predicted at 0.5: [1,0,0], [0,1,0], [1,1,0]. TP 3, FP 1, FN 1.
    assert metrics["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert metrics["subset_accuracy"] == pytest.approx(1 / 3)
    assert metrics["hamming_loss"] == pytest.approx(2 / 9)
    assert metrics["per_class"]["c"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    # With label c's threshold at 0.3 its one positive (0.4) is found.
    assert multilabel_metrics(targets, logits, NAMES, [0.5, 0.5, 0.3])["subset_accuracy"] == pytest.approx(2 / 3)


def test_binary_task_metrics_keep_the_old_keys_and_add_the_per_class_ones():
    labels, logits = np.array([0, 1, 1, 0]), np.array([-2.0, 1.0, -0.5, 0.5])
    metrics = task_metrics(LabelSpace.infer([0, 1]), labels, logits)
    assert {"loss", "accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix", "count"} <= set(metrics)
    assert metrics["confusion_matrix"] == [[1, 1], [1, 1]] and metrics["accuracy"] == 0.5
    assert metrics["per_class"]["positive"]["f1"] == pytest.approx(0.5) and metrics["macro_f1"] == pytest.approx(0.5)
    assert metrics["labels"] == ["negative", "positive"] and metrics["task"] == "binary"


def test_expected_calibration_error_of_a_calibrated_and_an_overconfident_model():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 200_000)
    assert expected_calibration_error(confidence, rng.uniform(size=confidence.size) < confidence) < 0.01
    assert expected_calibration_error(np.full(10, 0.9), np.zeros(10)) == pytest.approx(0.9)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_temperature_scaling_recovers_the_temperature_that_made_logits_overconfident(task):
    rng = np.random.default_rng(1)
    if task == "multiclass":
        true_logits = rng.normal(size=(20_000, 4)) * 2
        probabilities = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
        labels = np.array([rng.choice(4, p=p) for p in probabilities])
    else:
        true_logits = rng.normal(size=20_000) * 2
        labels = (rng.uniform(size=20_000) < 1 / (1 + np.exp(-true_logits))).astype(float)
    temperature = fit_temperature(true_logits * 3.0, labels, task)  # three times too confident
    assert temperature == pytest.approx(3.0, rel=0.05)
    assert loss_and_accuracy(labels, true_logits * 3.0 / temperature, task)[0] < loss_and_accuracy(
        labels, true_logits * 3.0, task)[0]


def test_a_separated_split_has_no_temperature_but_the_search_edge():
    from rnnsent.metrics import separated

    labels = np.array([0, 1, 0, 1])
    assert separated(fit_temperature(np.array([-2.0, 1.0, -0.5, 3.0]), labels, "binary"))  # all right
    assert not separated(fit_temperature(np.array([-2.0, 1.0, 0.5, 3.0]), labels, "binary"))  # one wrong


def test_thresholds_maximise_each_labels_f1_and_keep_one_half_when_nothing_tells():
    targets = np.array([[1, 0], [1, 0], [0, 0], [0, 0]])  # the second label never occurs: no threshold helps
    probabilities = np.array([[0.35, 0.5], [0.4, 0.5], [0.2, 0.5], [0.1, 0.5]])
    first, second = choose_thresholds(targets, probabilities)
    assert 0.2 < first < 0.35  # between the negatives' and the positives' probabilities
    assert second == pytest.approx(0.5)


def test_against_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, 500)
    logits = rng.normal(size=(500, 4)) + np.eye(4)[labels] * 1.5
    ours = multiclass_metrics(labels, logits, tuple("wxyz"))
    predicted = logits.argmax(axis=1)
    assert ours["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(labels, predicted, average="macro"))
    assert ours["weighted_f1"] == pytest.approx(sklearn_metrics.f1_score(labels, predicted, average="weighted"))
    assert ours["confusion_matrix"] == sklearn_metrics.confusion_matrix(labels, predicted).tolist()
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert ours["log_loss"] == pytest.approx(sklearn_metrics.log_loss(labels, probabilities))
    targets = rng.integers(0, 2, (300, 3))
    multi_logits = rng.normal(size=(300, 3)) + (targets * 2 - 1)
    mine = multilabel_metrics(targets, multi_logits, tuple("pqr"))
    guessed = multi_logits > 0
    assert mine["micro_f1"] == pytest.approx(sklearn_metrics.f1_score(targets, guessed, average="micro"))
    assert mine["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(targets, guessed, average="macro"))
    assert mine["hamming_loss"] == pytest.approx(sklearn_metrics.hamming_loss(targets, guessed))
    assert mine["subset_accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(targets, guessed))


def test_classes_absent_from_the_data_and_the_predictions_do_not_count_in_the_averages():
    # Three classes, data of the first alone, all predicted right: each class that is there has
    # F1 1, so both averages are 1 (a model's other classes are not scored as F1 0).
    logits = np.array([[3.0, 0.0, 0.0], [2.0, 1.0, 0.0]])
    ours = multiclass_metrics(np.array([0, 0]), logits, ("politics", "sports", "tech"))
    assert ours["macro_f1"] == 1.0 and ours["weighted_f1"] == 1.0
    # One wrong answer brings a predicted class in: its F1 is 0 and it counts (mean of 2/3 and 0).
    mixed = multiclass_metrics(np.array([0, 0]), np.array([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), ("a", "b", "c"))
    assert mixed["macro_f1"] == pytest.approx(1 / 3)
    from rnnsent.labels import LabelSpace
    from rnnsent.metrics import task_metrics

    binary = task_metrics(LabelSpace("binary", ("ham", "spam")), np.array([1, 1]), np.array([2.0, 3.0]))
    assert binary["macro_f1"] == 1.0
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    assert mixed["macro_f1"] == pytest.approx(sklearn_metrics.f1_score([0, 0], [0, 1], average="macro"))
    assert ours["macro_f1"] == sklearn_metrics.f1_score([0, 0], [0, 0], average="macro")


def test_binary_metrics_of_saturated_logits_are_finite_and_warn_of_nothing():
    import warnings

    from rnnsent.metrics import task_metrics

    targets = np.array([0.0, 1.0, 0.0, 1.0])
    logits = np.array([-1000.0, 1000.0, -40.0, 3.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exp(1000) overflowed here once
        metrics = task_metrics(LabelSpace(), targets, logits)
    assert metrics["accuracy"] == 1.0 and np.isfinite(metrics["ece"]) and metrics["ece"] < 0.02
