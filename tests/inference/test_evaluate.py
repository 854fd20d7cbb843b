"""Classification metrics against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rnnsent.metrics import classification_metrics, format_metrics, roc_auc
from rnnsent.model.scoring import predict_logits


def test_metrics_known_answer():
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    logits = np.array([2.0, 0.5, -1.0, -2.0, 0.3, -0.1, -3.0, 1.0])
    # Predicted positive where logit > 0: tp = 3 (idx 0, 1, 7), fn = 1 (idx 2), fp = 1 (idx 4), tn = 3.
    metrics = classification_metrics(labels, logits)
    assert metrics["confusion_matrix"] == [[3, 1], [1, 3]]
    assert metrics["accuracy"] == 6 / 8
    assert metrics["precision"] == 3 / 4 and metrics["recall"] == 3 / 4 and metrics["f1"] == pytest.approx(3 / 4)
    # Pairs (positive, negative) ranked correctly: positive 2.0, 0.5, 1.0 beat all four negatives (12);
    # -1.0 beats -2.0 and -3.0 (2). AUC = 14 / 16.
    assert metrics["roc_auc"] == pytest.approx(14 / 16)
    expected_loss = np.mean([math.log1p(math.exp(-z)) if y else math.log1p(math.exp(z)) for y, z in zip(labels, logits)])
    assert metrics["loss"] == pytest.approx(expected_loss)
    assert metrics["count"] == 8


def test_roc_auc_counts_ties_as_half():
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([1.0, 1.0, 0.0, 2.0])) == pytest.approx((1.5 + 2) / 4)
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_degenerate_predictions_do_not_divide_by_zero():
    metrics = classification_metrics(np.array([0, 1]), np.array([-1.0, -2.0]))
    assert metrics["precision"] == 0.0 and metrics["recall"] == 0.0 and metrics["f1"] == 0.0
    assert metrics["roc_auc"] == 0.0


def test_loss_is_stable_for_extreme_logits():
    metrics = classification_metrics(np.array([1, 0]), np.array([1000.0, -1000.0]))
    assert metrics["loss"] == pytest.approx(0.0, abs=1e-12)
    assert classification_metrics(np.array([1]), np.array([-1000.0]))["loss"] == pytest.approx(1000.0)


def test_format_metrics():
    text = format_metrics(classification_metrics(np.array([1, 0]), np.array([1.0, -1.0])))
    assert "Test accuracy: 1.0000" in text and "[[1, 0], [0, 1]]" in text


def test_predict_logits_batches_and_restores_training_mode():
    model = torch.nn.Module()
    model.scale = torch.nn.Parameter(torch.tensor(2.0))
    model.forward = lambda ids, lengths=None: ((ids.float().sum(dim=1) * model.scale), None)
    model.train()
    ids = torch.arange(10).reshape(5, 2)
    logits = predict_logits(model, ids, batch_size=2)
    assert logits.tolist() == [2.0, 10.0, 18.0, 26.0, 34.0]
    assert model.training
