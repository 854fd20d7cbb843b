"""Training options on tiny data: early stopping, the NaN guard, pretrained embeddings, presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnsent.config import PRESETS, RunOptions, build_config
from rnnsent.errors import TrainingDiverged
from rnnsent.model.build import build_model
from rnnsent.model.recurrent import RecurrentClassifier
from rnnsent.model.summary import count_parameters
from rnnsent.training.checkpoint import Progress
from rnnsent.training.loop import Trainer
from rnnsent.training.optim import build_optimizer
from rnnsent.training.pipeline import train_tensors
from rnnsent.training.steps import AutogradStep
from rnnsent.training.tensors import Tensors, TrainingData

VOCAB = 30


def tiny_data(count: int = 40, width: int = 7, seed: int = 0) -> Tensors:
    """Random post-padded reviews whose label is whether word 5 occurs."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, width + 1, size=count)
    ids = np.zeros((count, width), dtype=np.int64)
    for row, length in enumerate(lengths):
        ids[row, 0] = 1
        ids[row, 1:length] = rng.integers(3, VOCAB, size=length - 1)
    labels = (ids == 5).any(axis=1).astype(np.float32)
    return Tensors(torch.from_numpy(ids), torch.from_numpy(lengths.astype(np.int64)), torch.from_numpy(labels))


def tiny_config(**overrides):
    settings = {"num_words": VOCAB, "maxlen": 7, "padding": "post", "use_lengths": True, "cell": "gru",
                "embedding_dim": 4, "hidden_size": 3, "recurrent_init": "default", "input_init_std": 0.0,
                "pooling": "max", "optimizer": "adam", "lr": 0.01, "batch_size": 8, "epochs": 3,
                "report_test": False, **overrides}
    return build_config("seed", settings)


class ScriptedValidation(Trainer):
    """A Trainer whose validation logits follow a script, recording the weights each epoch.

    The validation loss of epoch ``e`` is ``log(1 + exp(-quality[e]))``: higher quality,
    lower loss. The weights seen when each epoch is scored are kept for comparison.
    """

    def __init__(self, *args, quality, **kwargs):
        super().__init__(*args, **kwargs)
        self.quality = list(quality)
        self.snapshots = []

    def _logits(self, split):
        self.snapshots.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        signs = split.labels.numpy() * 2 - 1
        return signs * self.quality[len(self.snapshots) - 1]


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    config = tiny_config(validation_split=0.2, early_stopping=2, epochs=10)
    data = TrainingData(tiny_data(), tiny_data(10, seed=1), None)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, VOCAB)
    optimizer = build_optimizer(config.train, model.parameters())
    step = AutogradStep(model, model, optimizer, config.train.clip_norm)
    trainer = ScriptedValidation(config, RunOptions(), data, model, optimizer, step, tmp_path,
                                 quality=[1.0, 3.0, 2.0, 1.5, 5.0])
    result = trainer.fit(Progress())
    # Epoch 2 is best; epochs 3 and 4 are worse, so training stops after epoch 4, before epoch 5's better score.
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert result.best_epoch == 2
    assert result.history[1]["val_loss"] == pytest.approx(np.log1p(np.exp(-3.0)))
    for name, value in result.model.state_dict().items():
        torch.testing.assert_close(value, trainer.snapshots[1][name])
    assert any(not torch.equal(trainer.snapshots[1][name], trainer.snapshots[3][name]) for name in trainer.snapshots[1])


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_history_records_the_learning_rate_of_each_epochs_last_step(tmp_path, schedule):
    from rnnsent.training.optim import learning_rate

    config = tiny_config(schedule=schedule, warmup_steps=2, epochs=2, lr=0.1)
    history = train_tensors(config, RunOptions(), TrainingData(tiny_data(), None, None), tmp_path).history
    steps = 5  # 40 reviews in batches of 8, per epoch
    # Once the schedule's length was taken to be the steps done so far, so every epoch logged ~0.
    assert history[0]["lr"] == pytest.approx(learning_rate(config.train, steps - 1, 2 * steps))
    assert history[1]["lr"] == pytest.approx(learning_rate(config.train, 2 * steps - 1, 2 * steps))
    assert history[0]["lr"] > 0.04 > history[1]["lr"]


def test_nan_loss_stops_training_with_a_clear_message(tmp_path):
    config = tiny_config()
    data = TrainingData(tiny_data(), None, None)
    poisoned = torch.full((VOCAB, 4), float("nan"))
    with pytest.raises(TrainingDiverged, match="NaN or infinite.*--lr"):
        train_tensors(config, RunOptions(), data, tmp_path, initialise=lambda model: model.embedding.weight.data.copy_(poisoned))


def test_initial_embedding_is_the_starting_point(tmp_path):
    config = tiny_config(lr=1e-9, epochs=1)
    data = TrainingData(tiny_data(), None, None)
    vectors = torch.arange(VOCAB * 4, dtype=torch.float32).view(VOCAB, 4) / 100
    result = train_tensors(config, RunOptions(max_steps=1), data, tmp_path,
                           initialise=lambda model: model.embedding.weight.data.copy_(vectors))
    torch.testing.assert_close(result.model.embedding.weight.detach(), vectors, atol=1e-6, rtol=0)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_builds_and_scores_a_batch(preset):
    config = build_config(preset, {"num_words": 200})
    model = RecurrentClassifier(config.model, config.text.num_words)
    assert count_parameters(model) > 0
    ids = torch.randint(3, 200, (2, 9))
    lengths = torch.tensor([9, 4])
    ids[1, 4:] = 0
    if config.text.padding == "pre":
        ids = torch.stack([ids[0], torch.cat([ids[1, 4:], ids[1, :4]])])
    logits, loss = model(ids, lengths, torch.tensor([1.0, 0.0]))
    assert logits.shape == (2,) and torch.isfinite(loss)


def test_best_preset_selects_on_validation_only():
    config = build_config("best")
    assert config.train.validation_split > 0 and config.train.early_stopping > 0
    assert not config.train.report_test
    assert config.model.use_lengths and config.text.padding == "post"


def test_one_group_at_lr_unless_the_encoder_is_scaled():
    from rnnsent.training.optim import parameter_groups

    config = tiny_config()
    model = build_model(config.model, VOCAB)
    # The scale's default keeps the single list of parameters every run had before it existed.
    assert parameter_groups(model, config.train) == list(model.parameters())
    scaled = tiny_config(encoder_lr_scale=0.25)
    encoder, rest = parameter_groups(model, scaled.train)
    named = {id(parameter): name for name, parameter in model.named_parameters()}
    assert encoder["lr_scale"] == 0.25 and rest["lr_scale"] == 1.0
    assert {named[id(p)].split(".")[0] for p in encoder["params"]} == {"embedding", "rnn"}
    assert {named[id(p)].split(".")[0] for p in rest["params"]} == {"head"}
    assert len(encoder["params"]) + len(rest["params"]) == len(list(model.parameters()))


def test_encoder_lr_scale_slows_the_encoders_first_adam_step(tmp_path):
    # Adam's first step moves every parameter with a non-zero gradient by its group's rate
    # (m / sqrt(v) = sign(g) after bias correction, eps aside): 0.01 for the head and
    # 0.25 * 0.01 for the embedding and recurrent layers.
    config = tiny_config(encoder_lr_scale=0.25, lr=0.01, schedule="constant")
    start = {}
    result = train_tensors(config, RunOptions(max_steps=1), TrainingData(tiny_data(), None, None), tmp_path,
                           initialise=lambda model: start.update({k: v.clone() for k, v in model.state_dict().items()}))
    moved = {name: (value - start[name]).abs().max().item() for name, value in result.model.state_dict().items()}
    assert moved["head.weight"] == pytest.approx(0.01, rel=1e-3)
    assert moved["rnn.weight_hh_l0"] == pytest.approx(0.0025, rel=1e-3)
    assert moved["embedding.weight"] == pytest.approx(0.0025, rel=1e-3)
    assert result.history[0]["lr"] == pytest.approx(0.01)
