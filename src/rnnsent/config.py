"""Typed configuration: preprocessing, model and training settings, and the presets.

The dataclass defaults are the one source of defaults, and they are the seed notebook's
recipe. A preset is plain data: a mapping of field name to value applied on top of the
defaults. Command-line flags are generated from the same fields and applied last. Every
field name is unique across the three sections, so a flat ``{"maxlen": 100}`` mapping is
enough to address any setting, and an unknown name is an error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

CELLS = ("simple", "lstm", "gru")
NONLINEARITIES = ("relu", "tanh")
RECURRENT_INITS = ("identity", "orthogonal", "default")
POOLINGS = ("last", "max", "mean", "maxmean", "attention")
PADDINGS = ("pre", "post")
OPTIMIZERS = ("rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "linear", "cosine")
NGRAM_FITS = ("joint", "stacked")


def setting(default: Any, help: str = "") -> Any:
    """A config field with its help text (shown by the CLI's --help)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TextConfig:
    """How raw text becomes a fixed-length row of token ids (Keras' IMDB conventions)."""

    num_words: int = setting(20000, "ids are < num_words; rarer words become the OOV id")
    index_from: int = setting(3, "ids 0, 1, 2 are padding, start-of-review and out-of-vocabulary")
    maxlen: int = setting(30, "tokens kept per review, start token included")
    padding: str = setting("pre", "where padding goes: \"pre\" (left, as Keras) or \"post\"")
    truncating: str = setting("pre", "which end is cut: \"pre\" keeps the last maxlen tokens")

    def validate(self) -> None:
        _check_range("num_words", self.num_words, self.index_from + 1, 10_000_000)
        _check_range("index_from", self.index_from, 3, 1000)
        _check_range("maxlen", self.maxlen, 1, 100_000)
        _check_choice("padding", self.padding, PADDINGS)
        _check_choice("truncating", self.truncating, PADDINGS)


@dataclass
class ModelConfig:
    """The network: embedding -> recurrent encoder -> sequence summary -> logistic head."""

    cell: str = setting("simple", "\"simple\" (Keras SimpleRNN), \"lstm\" or \"gru\"")
    embedding_dim: int = setting(50, "size of each word vector")
    hidden_size: int = setting(5, "recurrent units per layer and direction")
    num_layers: int = setting(1, "stacked recurrent layers")
    bidirectional: bool = setting(False, "also read each review right to left")
    nonlinearity: str = setting("relu", "for the simple cell only")
    recurrent_init: str = setting("identity", "recurrent kernel init: identity, orthogonal or torch's default")
    input_init_std: float = setting(0.001, "std of the Normal init of the input kernel (0: torch's default)")
    pooling: str = setting("last", "how the sequence of hidden states becomes one vector")
    embedding_dropout: float = setting(0.0, "dropout on the word vectors")
    dropout: float = setting(0.0, "between recurrent layers and before the head")
    use_lengths: bool = setting(False, "honour true lengths so that padding cannot change a prediction")
    ngram_buckets: int = setting(0, "hashed n-gram buckets of the bag-of-n-grams branch added to the logit (0: off)")
    ngram_order: int = setting(2, "longest n-gram of that branch: 1 words, 2 adds bigrams, 3 adds trigrams")
    ngram_lr_scale: float = setting(1.0, "joint fit: the n-gram weights learn this many times faster than the network")
    ngram_fit: str = setting("joint", "how the n-gram branch learns: \"joint\" with the network, or \"stacked\": "
                                      "a logistic regression fitted first, blended with the network on the validation split")
    ngram_c: float = setting(1.0, "stacked fit: inverse L2 strength of the n-gram regression, as liblinear's C")
    embeddings: str = setting("", "initialise the embedding with word vectors from 'rnnsent pretrain' (a .safetensors path)")
    pretrain_window: int = setting(0, "build the initial word vectors first, with this context window, from the "
                                      "training and unlabelled reviews (0: off)")

    def validate(self) -> None:
        _check_choice("cell", self.cell, CELLS)
        _check_range("embedding_dim", self.embedding_dim, 1, 4096)
        _check_range("hidden_size", self.hidden_size, 1, 8192)
        _check_range("num_layers", self.num_layers, 1, 16)
        _check_choice("nonlinearity", self.nonlinearity, NONLINEARITIES)
        _check_choice("recurrent_init", self.recurrent_init, RECURRENT_INITS)
        _check_range("input_init_std", self.input_init_std, 0.0, 10.0)
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_range("embedding_dropout", self.embedding_dropout, 0.0, 0.95)
        _check_range("dropout", self.dropout, 0.0, 0.95)
        _check_range("ngram_buckets", self.ngram_buckets, 0, 50_000_000)
        _check_range("ngram_order", self.ngram_order, 1, 3)
        _check_range("ngram_lr_scale", self.ngram_lr_scale, 0.0, 10_000.0, low_inclusive=False)
        _check_choice("ngram_fit", self.ngram_fit, NGRAM_FITS)
        _check_range("ngram_c", self.ngram_c, 0.0, 1e6, low_inclusive=False)
        _check_range("pretrain_window", self.pretrain_window, 0, 100)
        if self.embeddings and self.pretrain_window:
            raise ValueError("--embeddings loads word vectors and --pretrain-window builds them: choose one")


@dataclass
class TrainConfig:
    """The optimisation recipe and the run's bookkeeping."""

    epochs: int = setting(10, "passes over the training reviews")
    batch_size: int = setting(32, "reviews per optimiser step (over all processes)")
    optimizer: str = setting("rmsprop", "rmsprop (Keras semantics), adam or adamw")
    lr: float = setting(1e-4, "peak learning rate")
    rho: float = setting(0.9, "RMSprop's decay of the squared-gradient average")
    beta2: float = setting(0.999, "Adam's decay of the squared-gradient average")
    eps: float = setting(1e-7, "RMSprop: inside the square root, as Keras does")
    weight_decay: float = setting(0.0, "decoupled weight decay (adamw)")
    schedule: str = setting("constant", "learning-rate schedule after warm-up")
    warmup_steps: int = setting(0, "steps of linear learning-rate warm-up")
    clip_norm: float = setting(0.0, "clip the global gradient norm (0: off)")
    validation_split: float = setting(0.0, "fraction of training reviews held out for model selection")
    early_stopping: int = setting(0, "stop after this many epochs without a better validation loss (0: off)")
    report_test: bool = setting(True, "the notebook's per-epoch test-set report (never used for selection)")
    sparse_embedding: bool = setting(True, "sparse embedding gradients with a lazy, exact optimizer update")
    fused: bool = setting(True, "use the compiled CPU step for single-layer simple RNNs when it applies")
    bucket_by_length: bool = setting(False, "batch reviews of similar length so padding is not computed")
    seed: int = setting(0, "seed of initialisation, batch order and dropout: same seed, same run")
    threads: int = setting(0, "CPU threads for torch (0: all cores)")
    max_steps: int = setting(0, "stop after this many optimiser steps in total (0: no limit)")
    limit: int = setting(0, "use a fixed random subset of N training and N test reviews (0: all)")
    checkpoint_every: int = setting(0, "also checkpoint every N steps within an epoch (0: per epoch only)")

    def validate(self) -> None:
        _check_range("epochs", self.epochs, 1, 100_000)
        _check_range("batch_size", self.batch_size, 1, 1_000_000)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_range("lr", self.lr, 0.0, 100.0, low_inclusive=False)
        _check_range("rho", self.rho, 0.0, 1.0, high_inclusive=False)
        _check_range("beta2", self.beta2, 0.0, 1.0, high_inclusive=False)
        _check_range("eps", self.eps, 0.0, 1.0, low_inclusive=False)
        _check_range("weight_decay", self.weight_decay, 0.0, 10.0)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_range("warmup_steps", self.warmup_steps, 0, 10_000_000)
        _check_range("clip_norm", self.clip_norm, 0.0, 1e6)
        _check_range("validation_split", self.validation_split, 0.0, 0.9)
        _check_range("early_stopping", self.early_stopping, 0, 10_000)
        _check_range("threads", self.threads, 0, 1024)
        _check_range("max_steps", self.max_steps, 0, 10**12)
        _check_range("limit", self.limit, 0, 10**9)
        _check_range("checkpoint_every", self.checkpoint_every, 0, 10**12)
        if self.early_stopping and not self.validation_split:
            raise ValueError("--early-stopping needs a validation split: add --validation-split 0.1")


@dataclass
class RunConfig:
    """Everything a run needs; saved, resolved, in every artifact and checkpoint."""

    text: TextConfig = field(default_factory=TextConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "seed"

    def validate(self) -> "RunConfig":
        self.text.validate()
        self.model.validate()
        self.train.validate()
        if self.model.use_lengths and self.text.padding != "post":
            raise ValueError("--use-lengths reads each review up to its true length: add --padding post")
        if self.model.ngram_buckets and self.model.ngram_fit == "stacked" and not self.train.validation_split:
            raise ValueError("--ngram-fit stacked blends the two parts on a validation split: add --validation-split 0.1")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """Rebuild a config saved by :meth:`to_dict`; unknown keys are errors."""
        if not isinstance(data, dict):
            raise ValueError("config must be a JSON object")
        unknown = set(data) - {"text", "model", "train", "preset"}
        if unknown:
            raise ValueError(f"unknown config section(s): {', '.join(sorted(unknown))}")
        sections = {}
        for name, section_type in SECTIONS.items():
            values = data.get(name, {})
            if not isinstance(values, dict):
                raise ValueError(f"config section {name!r} must be a JSON object, got {values!r}")
            types = {f.name: f.type for f in fields(section_type)}
            bad = set(values) - set(types)
            if bad:
                raise ValueError(f"unknown {name} setting(s): {', '.join(sorted(bad))}")
            # Saved values get the same type checks as flags, so a hand-edited file fails clearly.
            sections[name] = section_type(**{key: _coerce(key, value, types[key]) for key, value in values.items()})
        return cls(**sections, preset=data.get("preset", "custom")).validate()


SECTIONS = {"text": TextConfig, "model": ModelConfig, "train": TrainConfig}

# Presets are data: overrides on top of the defaults above (which are the seed notebook's).
PRESETS: dict[str, dict[str, Any]] = {
    # The Keras notebook: Embedding(20000, 50) -> SimpleRNN(5, relu, identity) -> sigmoid,
    # RMSprop(1e-4), batch 32, 10 epochs, last 30 words, test set reported each epoch.
    "seed": {},
    # The recurrent model alone: a bidirectional GRU reading whole reviews (up to 1000
    # words, each row only up to its own length), max and mean pooled, trained with Adam
    # for 4 epochs and selected on a held-out validation split. See docs/accuracy.md.
    "bigru": {
        "maxlen": 1000, "padding": "post", "truncating": "pre",
        "cell": "gru", "embedding_dim": 64, "hidden_size": 64, "bidirectional": True,
        "recurrent_init": "default", "input_init_std": 0.0, "pooling": "maxmean",
        "embedding_dropout": 0.2, "dropout": 0.2, "use_lengths": True,
        "optimizer": "adam", "lr": 3e-3, "eps": 1e-8, "batch_size": 128, "epochs": 4,
        "schedule": "cosine", "warmup_steps": 100, "clip_norm": 1.0,
        "validation_split": 0.1, "early_stopping": 2, "report_test": False, "bucket_by_length": True,
    },
    # The most accurate recipe (issue 7; docs/accuracy.md): bigru, its embedding initialised
    # from word vectors built first from the training and unlabelled reviews (PPMI + SVD,
    # window 5), stacked with a logistic regression over NB-weighted word 1- to 3-grams that
    # is fitted before the GRU trains; the two logits are blended on the validation split.
    # The vectors and the regression count as training time. 2 epochs, cosine schedule.
    "best": {
        "maxlen": 1000, "padding": "post", "truncating": "pre",
        "cell": "gru", "embedding_dim": 64, "hidden_size": 64, "bidirectional": True,
        "recurrent_init": "default", "input_init_std": 0.0, "pooling": "maxmean",
        "embedding_dropout": 0.2, "dropout": 0.2, "use_lengths": True,
        "ngram_buckets": 16_000_000, "ngram_order": 3, "ngram_fit": "stacked", "ngram_c": 1.0, "pretrain_window": 5,
        "optimizer": "adam", "lr": 3e-3, "eps": 1e-8, "batch_size": 128, "epochs": 2,
        "schedule": "cosine", "warmup_steps": 100, "clip_norm": 1.0,
        "validation_split": 0.1, "early_stopping": 2, "report_test": False, "bucket_by_length": True,
    },
}


def field_owner() -> dict[str, str]:
    """Map each setting name to the section that holds it."""
    owner: dict[str, str] = {}
    for section, section_type in SECTIONS.items():
        for f in fields(section_type):
            assert f.name not in owner, f"setting {f.name} is defined twice"
            owner[f.name] = section
    return owner


def section_fields() -> dict[str, list[dataclasses.Field]]:
    """The fields of each section, for building command-line flags."""
    return {name: list(fields(section_type)) for name, section_type in SECTIONS.items()}


def build_config(preset: str = "seed", overrides: dict[str, Any] | None = None) -> RunConfig:
    """Resolve defaults <- preset <- overrides into a validated :class:`RunConfig`.

    Raises ValueError for an unknown preset or setting, or an out-of-range value.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    config = RunConfig(preset=preset)
    apply_overrides(config, PRESETS[preset])
    apply_overrides(config, overrides or {})
    return config.validate()


def apply_overrides(config: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Set flat ``name: value`` overrides on the right sections, with type checks."""
    owner = field_owner()
    types = {f.name: f.type for fs in section_fields().values() for f in fs}
    for name, value in overrides.items():
        if name not in owner:
            raise ValueError(f"unknown setting {name!r}; run 'rnnsent train --help' for the list")
        setattr(getattr(config, owner[name]), name, _coerce(name, value, types[name]))
    return config


def _coerce(name: str, value: Any, type_name: Any) -> Any:
    type_name = type_name if isinstance(type_name, str) else type_name.__name__
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if type_name == "int":
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit())):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        return int(value)
    if type_name == "float":
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a number, got {value!r}")
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {value!r}") from None
        if result != result or result in (float("inf"), float("-inf")):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        return result
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_range(name, value, low, high, low_inclusive=True, high_inclusive=True) -> None:
    too_low = value < low if low_inclusive else value <= low
    too_high = value > high if high_inclusive else value >= high
    if too_low or too_high:
        lo = "[" if low_inclusive else "("
        hi = "]" if high_inclusive else ")"
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}; got {value}")
