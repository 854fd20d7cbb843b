"""Presets, overrides and validation of the typed configuration."""

from __future__ import annotations

import json

import pytest

from rnnsent.config import (
    PRESETS,
    ModelConfig,
    RunConfig,
    TextConfig,
    TrainConfig,
    apply_overrides,
    build_config,
)
from rnnsent.errors import ConfigError


def test_seed_preset_is_the_notebook_recipe():
    config = build_config("seed")
    assert (config.text.num_words, config.text.index_from, config.text.maxlen) == (20000, 3, 30)
    assert (config.text.padding, config.text.truncating) == ("pre", "pre")
    assert (config.model.cell, config.model.embedding_dim, config.model.hidden_size) == ("simple", 50, 5)
    assert (config.model.nonlinearity, config.model.recurrent_init, config.model.input_init_std) == ("relu", "identity", 0.001)
    assert (config.train.optimizer, config.train.lr, config.train.rho, config.train.eps) == ("rmsprop", 1e-4, 0.9, 1e-7)
    assert (config.train.batch_size, config.train.epochs) == (32, 10)
    assert config.preset == "seed"


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_builds_and_applies_its_values(preset):
    config = build_config(preset)
    flat = {**vars(config.text), **vars(config.model), **vars(config.train)}
    for name, value in PRESETS[preset].items():
        assert flat[name] == value


def test_overrides_win_over_the_preset_and_are_coerced():
    config = build_config("bigru", {"maxlen": "100", "epochs": 3, "hidden_size": 32, "cell": "simple",
                                    "lr": "0.01", "bidirectional": "false"})
    assert config.text.maxlen == 100 and isinstance(config.text.maxlen, int)
    assert config.train.epochs == 3
    assert config.model.hidden_size == 32
    assert config.model.cell == "simple"
    assert config.train.lr == 0.01
    assert config.model.bidirectional is False
    # Untouched preset values stay.
    assert config.model.pooling == "maxmean"


@pytest.mark.parametrize("loaded, stage, value", [
    ("embeddings", "pretrain_window", "vectors.safetensors"),
    ("encoder", "lm_steps", "runs/encoder"),
])
def test_a_file_to_load_turns_off_the_preset_stage_that_would_build_it(loaded, stage, value):
    # A recipe that builds the thing (as best builds its word vectors), then the file named on
    # top, as the command line does with a preset or a saved recipe: the file is the start instead.
    config = build_config("best", {stage: 7})
    assert {**vars(config.model), **vars(config.train)}[stage] == 7
    apply_overrides(config, {loaded: value}).validate()
    flat = {**vars(config.model), **vars(config.train)}
    assert (flat[loaded], flat[stage]) == (value, 0)
    # Both named by the user: a contradiction, refused with a one-line hint.
    with pytest.raises(ValueError, match="choose one"):
        build_config("best", {stage: 7, loaded: value})


def test_defaults_are_not_shared_between_configs():
    first, second = build_config("seed"), build_config("seed", {"maxlen": 7})
    assert first.text.maxlen == 30 and second.text.maxlen == 7


@pytest.mark.parametrize("preset, overrides, message", [
    ("nope", {}, "unknown preset"),
    ("seed", {"max_len": 10}, "unknown setting 'max_len'; did you mean 'maxlen'?"),
    ("seed", {"zzz": 10}, "unknown setting 'zzz'; run 'rnnsent train --help'"),
    ("seed", {"maxlen": 0}, "maxlen must be in"),
    ("seed", {"lr": 0.0}, "lr must be in (0"),
    ("seed", {"rho": 1.0}, "rho must be in"),
    ("seed", {"dropout": 0.99}, "dropout must be in"),
    ("seed", {"num_words": 3}, "num_words must be in"),
    ("seed", {"cell": "transformer"}, "cell must be one of simple, lstm, gru"),
    ("seed", {"padding": "left"}, "padding must be one of pre, post"),
    ("seed", {"maxlen": 2.5}, "maxlen must be a whole number"),
    ("seed", {"maxlen": "thirty"}, "maxlen must be a whole number"),
    ("seed", {"maxlen": True}, "maxlen must be a whole number"),
    ("seed", {"lr": "fast"}, "lr must be a number"),
    ("seed", {"lr": float("nan")}, "lr must be a finite number"),
    ("seed", {"lr": True}, "lr must be a number"),
    ("seed", {"bidirectional": "maybe"}, "bidirectional must be true or false"),
    ("seed", {"cell": 3}, "cell must be a string"),
    ("seed", {"early_stopping": 2}, "needs a validation split"),
    ("seed", {"use_lengths": True}, "add --padding post"),
])
def test_invalid_settings_are_value_errors(preset, overrides, message):
    with pytest.raises(ValueError) as error:
        build_config(preset, overrides)
    assert message in str(error.value)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_from_dict_round_trip(preset):
    config = build_config(preset, {"maxlen": 77})
    rebuilt = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert rebuilt == config


def test_from_dict_fills_missing_fields_with_defaults():
    rebuilt = RunConfig.from_dict({"text": {"maxlen": 12}})
    assert rebuilt.text == TextConfig(maxlen=12)
    assert rebuilt.model == ModelConfig() and rebuilt.train == TrainConfig()


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(extra={}), "unknown config section"),
    (lambda d: d["model"].update(hiden_size=3), "unknown model setting(s): hiden_size"),
    (lambda d: d["text"].update(maxlen=-1), "maxlen must be in"),
    (lambda d: d["text"].update(maxlen="thirty"), "maxlen must be a whole number"),
    (lambda d: d["model"].update(bidirectional="maybe"), "bidirectional must be true or false"),
    (lambda d: d["model"].update(bidirectional=1.5), "bidirectional must be true or false"),
    (lambda d: d["train"].update(lr=None), "lr must be a number"),
    (lambda d: d.update(model="simple"), "section 'model' must be a JSON object"),
])
def test_from_dict_rejects_bad_input_with_value_error(change, message):
    data = build_config("seed").to_dict()
    change(data)
    with pytest.raises(ValueError) as error:
        RunConfig.from_dict(data)
    assert message in str(error.value)


def test_from_dict_coerces_like_the_command_line():
    data = build_config("seed").to_dict()
    data["text"]["maxlen"], data["model"]["bidirectional"], data["train"]["lr"] = "40", "yes", 1
    rebuilt = RunConfig.from_dict(data)
    assert (rebuilt.text.maxlen, rebuilt.model.bidirectional, rebuilt.train.lr) == (40, True, 1.0)


def test_from_dict_rejects_non_objects():
    with pytest.raises(ValueError, match="JSON object"):
        RunConfig.from_dict([])  # type: ignore[arg-type]


def test_without_a_validation_split_every_setting_that_reads_one_is_named_at_once():
    # small has early stopping and a stacked n-gram fit: both were refused one after the other,
    # each message advising to put the split back.
    with pytest.raises(ConfigError) as raised:
        build_config("small", {"validation_split": 0.0, "calibrate": True})
    message = str(raised.value)
    assert message.startswith("--early-stopping, --calibrate, --ngram-fit stacked read a validation split")
    assert "--early-stopping 0; no --calibrate; --ngram-fit joint or --ngram-buckets 0" in message
    config = build_config("small", {"validation_split": 0.0, "early_stopping": 0, "ngram_fit": "joint"})
    assert config.train.validation_split == 0.0
    with pytest.raises(ConfigError, match="^--early-stopping needs a validation split"):  # one alone: as before
        build_config("bigru", {"validation_split": 0.0})
