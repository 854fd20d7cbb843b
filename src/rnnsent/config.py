"""Typed configuration: the recipe a model is trained by, the options of one run, and the presets.

A model's *recipe* (:class:`RunConfig`: text, model and training sections) is saved in every
model directory and checkpoint; it alone decides what is learned. How one run executes
(:class:`RunOptions`: device, threads, the compiled step, limits, checkpoint interval) is never
part of a recipe. The dataclass defaults are the one source of defaults, and they are the
seed notebook's recipe. Ranges and choices are declared beside each field and checked by one
function, and the command-line flags (with their ``--help``) are generated from the same fields.

A preset is plain data: a mapping of field name to value applied on top of the defaults, and
presets are composed from each other (``best`` is ``bigru`` plus what it adds). Every field
name is unique across all sections, so a flat ``{"maxlen": 100}`` mapping addresses any
setting, and an unknown name is an error.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

from rnnsent.errors import ConfigError


def setting(default: Any, help: str = "", *, choices: tuple[str, ...] | None = None,
            low: float | None = None, high: float | None = None,
            low_inclusive: bool = True, high_inclusive: bool = True) -> Any:
    """A config field with its help text and the values it accepts (a range or choices)."""
    metadata = {"help": help, "choices": choices, "range": None}
    if low is not None:
        metadata["range"] = (low, high, low_inclusive, high_inclusive)
    return field(default=default, metadata=metadata)


def check_fields(section: Any) -> None:
    """Check every field of a config section against the range or choices declared beside it."""
    for f in fields(section):
        value = getattr(section, f.name)
        choices, bounds = f.metadata.get("choices"), f.metadata.get("range")
        if choices is not None and value not in choices:
            raise ConfigError(f"{f.name} must be one of {', '.join(choices)}; got {value!r}")
        if bounds is not None:
            low, high, low_inclusive, high_inclusive = bounds
            too_low = value < low if low_inclusive else value <= low
            too_high = value > high if high_inclusive else value >= high
            if too_low or too_high:
                lo, hi = "[" if low_inclusive else "(", "]" if high_inclusive else ")"
                raise ConfigError(f"{f.name} must be in {lo}{low}, {high}{hi}; got {value}")


@dataclass
class TextConfig:
    """How raw text becomes a fixed-length row of token ids (Keras' IMDB conventions)."""

    num_words: int = setting(20000, "ids are < num_words; rarer words become the OOV id", low=4, high=10_000_000)
    index_from: int = setting(3, "ids 0, 1, 2 are padding, start-of-review and out-of-vocabulary", low=3, high=1000)
    maxlen: int = setting(30, "tokens kept per review, start token included", low=1, high=100_000)
    padding: str = setting("pre", "where padding goes: pre (left, as Keras) or post", choices=("pre", "post"))
    truncating: str = setting("pre", "which end is cut: pre keeps the last maxlen tokens", choices=("pre", "post"))
    maxlen_quantile: float = setting(0.0, "size maxlen from the data: the length this fraction of training texts fit "
                                          "in, at most maxlen (0: maxlen as given)", low=0.0, high=1.0)
    punctuation: str = setting("drop", "Keras' punctuation marks: drop (word separators, as Keras) or words (each "
                                       "mark a word of its own)", choices=("drop", "words"))

    def validate(self) -> None:
        check_fields(self)
        if self.num_words < self.index_from + 1:
            raise ConfigError(f"num_words must be in [{self.index_from + 1}, 10000000]; got {self.num_words}")


@dataclass
class DataConfig:
    """Which labels a model learns and where they are read from."""

    task: str = setting("auto", "binary, multiclass or multilabel (auto: chosen from the training labels)",
                        choices=("auto", "binary", "multiclass", "multilabel"))
    labels: str = setting("sentiment", "aclImdb only: sentiment (neg/pos) or rating (the 8 star ratings in the file names)",
                          choices=("sentiment", "rating"))
    text_field: str = setting("text", "CSV column or JSONL field holding the text")
    label_field: str = setting("label", "CSV column or JSONL field holding the label (a list in JSONL for multilabel)")
    label_separator: str = setting("", "CSV only: split each label cell on this string into several labels (multilabel)")
    unlabelled_data: str = setting("", "unlabelled texts for --unlabelled-batch-size, the word vectors and the language "
                                       "model: a .txt file (one text a line), a .jsonl or .csv file (its text field) "
                                       "or a folder of .txt files; empty: aclImdb's train/unsup, and none for other "
                                       "sources")

    def validate(self) -> None:
        check_fields(self)
        for name in ("text_field", "label_field"):
            if not getattr(self, name).strip():
                raise ConfigError(f"--{name.replace('_', '-')} must name a column or field")
        if self.text_field == self.label_field:
            raise ConfigError("--text-field and --label-field must name different columns")


@dataclass
class ModelConfig:
    """The network: embedding -> recurrent encoder -> sequence summary -> logistic head."""

    cell: str = setting("simple", "simple (Keras SimpleRNN), lstm or gru", choices=("simple", "lstm", "gru"))
    embedding_dim: int = setting(50, "size of each word vector", low=1, high=4096)
    hidden_size: int = setting(5, "recurrent units per layer and direction", low=1, high=8192)
    num_layers: int = setting(1, "stacked recurrent layers", low=1, high=16)
    bidirectional: bool = setting(False, "also read each review right to left")
    nonlinearity: str = setting("relu", "for the simple cell only", choices=("relu", "tanh"))
    recurrent_init: str = setting("identity", "recurrent kernel init: identity, orthogonal or torch's default",
                                  choices=("identity", "orthogonal", "default"))
    input_init_std: float = setting(0.001, "std of the Normal init of the input kernel (0: torch's default)",
                                    low=0.0, high=10.0)
    pooling: str = setting("last", "how the sequence of hidden states becomes one vector",
                           choices=("last", "max", "mean", "maxmean", "attention"))
    embedding_dropout: float = setting(0.0, "dropout on the word vectors", low=0.0, high=0.95)
    dropout: float = setting(0.0, "between recurrent layers and before the head", low=0.0, high=0.95)
    use_lengths: bool = setting(False, "honour true lengths so that padding cannot change a prediction")
    ngram_buckets: int = setting(0, "hashed n-gram buckets of the bag-of-n-grams branch added to the logit (0: off)",
                                 low=0, high=50_000_000)
    ngram_order: int = setting(2, "longest n-gram of that branch: 1 words, 2 adds bigrams, 3 adds trigrams",
                               low=1, high=3)
    ngram_lr_scale: float = setting(1.0, "joint fit: the n-gram weights learn this many times faster than the network",
                                    low=0.0, high=10_000.0, low_inclusive=False)
    ngram_fit: str = setting("joint", "how the n-gram branch learns: joint with the network; stacked: a logistic "
                                      "regression fitted first, blended with the network on the validation split; "
                                      "ordinal (ordered labels such as star ratings): stacked, one regression per cut "
                                      "between neighbouring labels; auto: ordinal for ordered labels, else stacked",
                             choices=("joint", "stacked", "ordinal", "auto"))
    ngram_c: float = setting(1.0, "stacked fit: inverse L2 strength of the n-gram regression, as liblinear's C",
                             low=0.0, high=1e6, low_inclusive=False)
    embeddings: str = setting("", "initialise the embedding with word vectors from 'rnnsent pretrain' (a .safetensors path)")
    pretrain_window: int = setting(0, "build the initial word vectors first, with this context window, from the "
                                      "training and unlabelled reviews (0: off)", low=0, high=100)
    encoder: str = setting("", "initialise the embedding and recurrent layers from a language model of "
                               "'rnnsent pretrain --language-model' (its folder or encoder.safetensors); it replaces "
                               "the word vectors")
    normalize_embeddings: bool = setting(False, "standardise each embedding dimension by its mean and variance over "
                                                "the training words, weighted by frequency (Miyato et al. 2016)")

    def validate(self) -> None:
        check_fields(self)
        if self.embeddings and self.pretrain_window:
            raise ConfigError("--embeddings loads word vectors and --pretrain-window builds them: choose one")
        if self.encoder and self.embeddings:
            raise ConfigError("--encoder holds its own word vectors: drop --embeddings")


@dataclass
class TrainConfig:
    """The optimisation recipe."""

    epochs: int = setting(10, "passes over the training reviews", low=1, high=100_000)
    batch_size: int = setting(32, "reviews per optimiser step (over all processes)", low=1, high=1_000_000)
    optimizer: str = setting("rmsprop", "rmsprop (Keras semantics), adam or adamw", choices=("rmsprop", "adam", "adamw"))
    lr: float = setting(1e-4, "peak learning rate", low=0.0, high=100.0, low_inclusive=False)
    encoder_lr_scale: float = setting(1.0, "the embedding's and recurrent layers' learning rate as a multiple of "
                                           "--lr, the head's staying --lr (above 1: a pretrained encoder adapts "
                                           "faster to the task; best: 3)",
                                      low=0.0, high=100.0, low_inclusive=False)
    rho: float = setting(0.9, "RMSprop's decay of the squared-gradient average", low=0.0, high=1.0, high_inclusive=False)
    beta2: float = setting(0.999, "Adam's decay of the squared-gradient average", low=0.0, high=1.0, high_inclusive=False)
    eps: float = setting(1e-7, "RMSprop: inside the square root, as Keras does", low=0.0, high=1.0, low_inclusive=False)
    weight_decay: float = setting(0.0, "decoupled weight decay (adamw)", low=0.0, high=10.0)
    schedule: str = setting("constant", "learning-rate schedule after warm-up", choices=("constant", "linear", "cosine"))
    warmup_steps: int = setting(0, "steps of linear learning-rate warm-up", low=0, high=10_000_000)
    clip_norm: float = setting(0.0, "clip the global gradient norm (0: off)", low=0.0, high=1e6)
    validation_split: float = setting(0.0, "fraction of training reviews held out for model selection", low=0.0, high=0.9)
    validation_by: str = setting("random", "how the validation split is drawn: random reviews, whole films "
                                           "(aclImdb: no film on both sides), or auto: films where the data "
                                           "names them, else random", choices=("random", "movie", "auto"))
    early_stopping: int = setting(0, "stop after this many epochs without a better validation loss (0: off)",
                                  low=0, high=10_000)
    report_test: bool = setting(True, "the notebook's per-epoch test-set report (never used for selection)")
    sparse_embedding: bool = setting(True, "sparse embedding gradients with a lazy, exact optimizer update")
    bucket_by_length: bool = setting(False, "batch reviews of similar length so padding is not computed")
    class_weights: str = setting("none", "weigh each class's loss: none, or balanced (inversely to its training frequency)",
                                 choices=("none", "balanced"))
    calibrate: bool = setting(False, "fit a temperature to the validation split so probabilities are calibrated")
    adversarial_weight: float = setting(0.0, "weight of the adversarial loss: the loss of each review with its "
                                             "embedded words moved by --adversarial-norm the way that raises it most "
                                             "(0: off)", low=0.0, high=1000.0)
    adversarial_norm: float = setting(5.0, "L2 norm of the adversarial and virtual-adversarial perturbation of each "
                                           "review's embedded words", low=0.0, high=1000.0, low_inclusive=False)
    virtual_adversarial_weight: float = setting(0.0, "weight of the virtual adversarial loss: the KL divergence of the "
                                                     "predictions from those of the perturbation that moves them most "
                                                     "(unlabelled rows, else the labelled ones; 0: off)",
                                                low=0.0, high=1000.0)
    entropy_weight: float = setting(0.0, "weight of the mean prediction entropy (unlabelled rows, else the labelled "
                                         "ones), which minimising makes predictions confident (0: off)",
                                    low=0.0, high=1000.0)
    distill_weight: float = setting(0.0, "weight of the divergence of the network's predictions on the unlabelled "
                                         "texts from the stacked n-gram regression's, which teaches the network "
                                         "what the regression knows (needs --unlabelled-batch-size; 0: off)",
                                    low=0.0, high=1000.0)
    distill_temperature: float = setting(1.0, "the n-gram regression's logits are divided by this before they "
                                              "teach the network (above 1: softer targets)",
                                         low=0.0, high=100.0, low_inclusive=False)
    unlabelled_batch_size: int = setting(0, "unlabelled texts drawn with each batch for the virtual adversarial, "
                                            "entropy and distillation losses (0: they use the labelled batch)",
                                         low=0, high=1_000_000)
    seed: int = setting(0, "seed of initialisation, batch order and dropout: same seed, same run")
    lm_steps: int = setting(0, "first train the embedding and recurrent layers as next-word language models (one per "
                               "direction) for this many steps on the training and unlabelled texts (0: off; in "
                               "train, at most one pass over them)",
                            low=0, high=10**9)
    lm_batch_size: int = setting(128, "language model: parallel token streams per step", low=1, high=100_000)
    lm_bptt: int = setting(25, "language model: tokens per truncated back-propagation segment", low=1, high=100_000)
    lm_lr: float = setting(3e-3, "language model: Adam's learning rate", low=0.0, high=100.0, low_inclusive=False)
    lm_embedding: str = setting("train", "language model: train the word embedding too, or keep it fixed as it "
                                         "starts (word vectors, when the recipe builds them)", choices=("train", "fixed"))

    def validate(self) -> None:
        check_fields(self)
        if self.unlabelled_batch_size and not (self.virtual_adversarial_weight or self.entropy_weight
                                               or self.distill_weight):
            raise ConfigError("--unlabelled-batch-size feeds the virtual adversarial, entropy and distillation "
                              "losses: add --virtual-adversarial-weight, --entropy-weight or --distill-weight, "
                              "or set --unlabelled-batch-size 0")
        if self.distill_weight and not self.unlabelled_batch_size:
            # On the training reviews the regression is nearly always right (it was fitted to
            # them), so only texts it has not seen carry anything to learn.
            raise ConfigError("--distill-weight teaches the network on unlabelled texts: add --unlabelled-batch-size 64")


# The n-gram fits that fit a regression before the network trains and blend the two on the
# validation split; "auto" is one of the other two, chosen from the labels (resolve_ngram_fit).
STACKED_FITS = ("stacked", "ordinal", "auto")


def resolve_ngram_fit(fit: str, ordinal_labels: bool) -> str:
    """The n-gram fit ``auto`` stands for: ``ordinal`` for ordered labels (three or more integer
    names, such as star ratings), ``stacked`` for any other. Any other value is itself."""
    if fit != "auto":
        return fit
    return "ordinal" if ordinal_labels else "stacked"


# Settings that version-1 model directories saved in their recipe but that only say how a run
# executed; they are read from such files and dropped.
FORMER_RECIPE_FIELDS = {"train": ("threads", "fused", "max_steps", "limit", "checkpoint_every")}


@dataclass
class RunConfig:
    """A model's recipe; saved, resolved, in every model directory and checkpoint."""

    text: TextConfig = field(default_factory=TextConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "seed"

    def validate(self) -> "RunConfig":
        self.text.validate()
        self.data.validate()
        self.model.validate()
        self.train.validate()
        self._check_validation_needs()
        if self.model.use_lengths and self.text.padding != "post":
            raise ConfigError("--use-lengths reads each review up to its true length: add --padding post")
        if self.data.unlabelled_data and not (self.train.unlabelled_batch_size or self.model.pretrain_window
                                              or self.train.lm_steps):
            raise ConfigError("--unlabelled-data is read by the unlabelled batches, the word vectors and the "
                              "language model, and this recipe has none: add --unlabelled-batch-size 64, "
                              "--pretrain-window 5 or --lm-steps 1000")
        if self.model.encoder and self.train.lm_steps:
            raise ConfigError("--encoder loads a pretrained language model and --lm-steps trains one: choose one")
        return self

    def _check_validation_needs(self) -> None:
        """Without a validation split, every setting that reads one: one alone gets its own
        message, several are named in one."""
        if self.train.validation_split:
            return
        # (setting, how to go without it, the message when it is the only one)
        needs = []
        if self.train.early_stopping:
            needs.append(("--early-stopping", "--early-stopping 0",
                          "--early-stopping needs a validation split: add --validation-split 0.1"))
        if self.train.calibrate:
            needs.append(("--calibrate", "no --calibrate",
                          "--calibrate fits a temperature on a validation split: add --validation-split 0.1"))
        if self.model.ngram_buckets and self.model.ngram_fit in STACKED_FITS:
            needs.append((f"--ngram-fit {self.model.ngram_fit}", "--ngram-fit joint or --ngram-buckets 0",
                          f"--ngram-fit {self.model.ngram_fit} blends the two parts on a validation split: "
                          "add --validation-split 0.1"))
        if len(needs) == 1:
            raise ConfigError(needs[0][2])
        if needs:
            raise ConfigError(f"{', '.join(need[0] for need in needs)} read a validation split: keep one "
                              f"(--validation-split 0.1), or go without all of them "
                              f"({'; '.join(need[1] for need in needs)})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """Rebuild a recipe saved by :meth:`to_dict`; unknown keys are errors."""
        if not isinstance(data, dict):
            raise ConfigError("config must be a JSON object")
        unknown = set(data) - {*SECTIONS, "preset"}
        if unknown:
            raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")
        sections = {}
        for name, section_type in SECTIONS.items():
            values = data.get(name, {})
            if not isinstance(values, dict):
                raise ConfigError(f"config section {name!r} must be a JSON object, got {values!r}")
            values = {key: value for key, value in values.items() if key not in FORMER_RECIPE_FIELDS.get(name, ())}
            sections[name] = _section_from(section_type, values, f"{name} setting")
        return cls(**sections, preset=data.get("preset", "custom")).validate()


@dataclass
class RunOptions:
    """How one run executes. Never part of a model's recipe: the same recipe under other
    options learns the same model (``limit`` and ``max_steps`` aside, which cut it short)."""

    device: str = setting("auto", "where to train: cpu, cuda or auto", choices=("auto", "cpu", "cuda"))
    threads: int = setting(0, "CPU threads for torch (0: all cores)", low=0, high=1024)
    fused: bool = setting(True, "use the compiled CPU step for single-layer simple RNNs when it applies")
    limit: int = setting(0, "use a fixed random subset of N training and N test reviews (0: all)", low=0, high=10**9)
    max_steps: int = setting(0, "stop after this many optimiser steps in total (0: no limit)", low=0, high=10**12)
    checkpoint_every: int = setting(0, "also checkpoint every N steps within an epoch (0: per epoch only)",
                                    low=0, high=10**12)
    tensorboard: str = setting("", "write TensorBoard logs (loss, accuracy, learning rate, examples/s per 50 steps; "
                                   "each epoch's scores) into this folder; off unless given (needs pip install "
                                   "'rnnsent[track]')")

    def validate(self) -> "RunOptions":
        if isinstance(self.threads, int) and self.threads < 0:
            raise ConfigError("--threads must be 0 (all cores) or more")
        cores = os.cpu_count() or 1
        if isinstance(self.threads, int) and self.threads > cores:
            raise ConfigError(f"--threads {self.threads} is more than this machine's {cores} cores; "
                              f"use at most {cores} (0: all cores)")
        check_fields(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunOptions":
        """Rebuild options saved in a checkpoint by :meth:`to_dict`."""
        if not isinstance(data, dict):
            raise ConfigError("run options must be a JSON object")
        return _section_from(cls, data, "run option").validate()


SECTIONS = {"text": TextConfig, "data": DataConfig, "model": ModelConfig, "train": TrainConfig}

# Presets are data: overrides on top of the defaults above (which are the seed notebook's),
# composed from each other.
SEED: dict[str, Any] = {}
# The recurrent model alone: a bidirectional GRU reading whole reviews (up to 1000 words, each
# row only up to its own length), max and mean pooled, trained with Adam for 4 epochs and
# selected on a held-out validation split. See docs/accuracy.md.
BIGRU: dict[str, Any] = {
    "maxlen": 1000, "padding": "post", "truncating": "pre",
    "cell": "gru", "embedding_dim": 64, "hidden_size": 64, "bidirectional": True,
    "recurrent_init": "default", "input_init_std": 0.0, "pooling": "maxmean",
    "embedding_dropout": 0.2, "dropout": 0.2, "use_lengths": True,
    "optimizer": "adam", "lr": 3e-3, "eps": 1e-8, "batch_size": 128, "epochs": 4,
    "schedule": "cosine", "warmup_steps": 100, "clip_norm": 1.0,
    "validation_split": 0.1, "early_stopping": 2, "report_test": False, "bucket_by_length": True,
}
# The most accurate recipe (docs/accuracy.md): bigru, its embedding initialised from word
# vectors built first from the training and unlabelled reviews (PPMI + SVD, window 5), stacked
# with a logistic regression over NB-weighted word 1- to 3-grams that is fitted before the GRU
# trains; the two logits are blended on the validation split. While the GRU trains, each step
# also reads 128 unlabelled texts, on which it learns the regression's predictions
# (distillation; without unlabelled texts the run goes on without it). The vectors and the
# regression count as training time. 3 epochs. For ordered labels (star ratings) the
# regression is the ordinal one: a binary regression per cut between neighbouring labels
# (docs/labels.md). The validation split holds out whole films where the data names them
# (aclImdb), so that it is as new to the model as the test films are. Before any of that,
# the embedding and both GRU directions are pretrained as next-word language models on the
# training and unlabelled texts for 4,000 steps (on IMDB 72% of a pass; a smaller data set
# gets one pass); while the classifier trains, the pretrained embedding and GRU step at 3
# times the head's rate (at the head's own rate they adapt too slowly to the task, and star
# ratings lost more than the pretraining gave). The recipes before, each with --encoder-lr-scale 1:
# nothing more (one rate for every layer), --lm-steps 2500 --epochs 4 (shorter pretraining),
# --lm-steps 0 --epochs 4 (before language-model pretraining), and before distillation also
# --distill-weight 0 --unlabelled-batch-size 0 --epochs 2 --validation-by random.
BEST: dict[str, Any] = {
    **BIGRU,
    "ngram_buckets": 16_000_000, "ngram_order": 3, "ngram_fit": "auto", "ngram_c": 1.0, "pretrain_window": 5,
    "epochs": 3, "distill_weight": 1.0, "unlabelled_batch_size": 128, "validation_by": "auto", "lm_steps": 4000,
    "encoder_lr_scale": 3.0,
}
# For data of a few hundred to a few thousand texts: bigru made smaller (32 units per
# direction, 32-wide word vectors) and stacked with an NB-weighted 1-2-gram regression, which
# is what learns from so few texts; the blend leans on whichever part the validation split
# trusts. Reads the whole texts (maxlen: the length 95% of training texts fit in, at most 400
# tokens), up to 40 epochs of Adam at a constant rate, stopped when the validation loss has not
# improved for 5. The vocabulary and the n-gram table are sized to the data by the pipeline
# (every preset is), so a small data set makes a small model.
SMALL: dict[str, Any] = {
    **BIGRU,
    "maxlen": 400, "maxlen_quantile": 0.95, "embedding_dim": 32, "hidden_size": 32,
    "ngram_buckets": 16_000_000, "ngram_order": 2, "ngram_fit": "stacked", "ngram_c": 1.0,
    "batch_size": 32, "epochs": 40, "schedule": "constant", "warmup_steps": 0,
    "validation_split": 0.2, "early_stopping": 5,
}
PRESETS: dict[str, dict[str, Any]] = {"seed": SEED, "bigru": BIGRU, "best": BEST, "small": SMALL}
# Not a recipe of its own: "auto" resolves to a preset from the data (see resolve_preset).
AUTO_PRESET = "auto"


def resolve_preset(preset: str, imdb_sentiment: bool) -> str:
    """The preset ``auto`` stands for: ``seed`` on aclImdb's sentiment labels (the notebook's
    problem, so every IMDB result stays what it was), ``small`` on any other data. Any other
    name is itself."""
    if preset != AUTO_PRESET:
        return preset
    return "seed" if imdb_sentiment else "small"


def field_owner() -> dict[str, str]:
    """Map each recipe setting's name to the section that holds it."""
    owner: dict[str, str] = {}
    for section, section_type in SECTIONS.items():
        for f in fields(section_type):
            assert f.name not in owner, f"setting {f.name} is defined twice"
            owner[f.name] = section
    assert not set(owner) & {f.name for f in fields(RunOptions)}, "a run option shares a recipe setting's name"
    return owner


def section_fields() -> dict[str, list[dataclasses.Field]]:
    """The fields of each recipe section, for building command-line flags."""
    return {name: list(fields(section_type)) for name, section_type in SECTIONS.items()}


def option_fields() -> list[dataclasses.Field]:
    """The fields of :class:`RunOptions`, for building command-line flags."""
    return list(fields(RunOptions))


def choices(name: str) -> tuple[str, ...]:
    """The values a choice setting accepts, as declared beside its field."""
    for section_type in (*SECTIONS.values(), RunOptions):
        for f in fields(section_type):
            if f.name == name and f.metadata.get("choices"):
                return f.metadata["choices"]
    raise KeyError(f"{name} is not a choice setting")


def split_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split flat ``name: value`` settings into recipe overrides and run options.

    Raises :class:`ConfigError` for a name that is neither.
    """
    owner, options = field_owner(), {f.name for f in fields(RunOptions)}
    recipe, run = {}, {}
    for name, value in settings.items():
        if name in owner:
            recipe[name] = value
        elif name in options:
            run[name] = value
        else:
            raise unknown_setting(name, [*owner, *options])
    return recipe, run


def nearest_name(name: str, known: Sequence[str]) -> str | None:
    """The one of ``known`` that ``name`` most likely mistypes (``epocs`` -> ``epochs``), or None."""
    import difflib

    near = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
    return near[0] if near else None


def unknown_setting(name: str, known: list[str]) -> ConfigError:
    """The error for a setting ``name`` that is not one of ``known``, naming the nearest."""
    near = nearest_name(name, known)
    hint = f"did you mean {near!r}? " if near else ""
    return ConfigError(f"unknown setting {name!r}; {hint}run 'rnnsent train --help' for the list")


def build_config(preset: str = "seed", overrides: dict[str, Any] | None = None) -> RunConfig:
    """Resolve defaults <- preset <- overrides into a validated :class:`RunConfig` (the recipe).

    Raises :class:`ConfigError` (a ValueError) for an unknown preset or setting, or an
    out-of-range value.
    """
    if preset == AUTO_PRESET:
        raise ConfigError("preset auto is chosen from the data: train resolves it (resolve_preset); name a preset here")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    config = RunConfig(preset=preset)
    apply_overrides(config, PRESETS[preset])
    apply_overrides(config, overrides or {})
    return config.validate()


def build_options(overrides: dict[str, Any] | None = None) -> RunOptions:
    """Defaults <- overrides into validated :class:`RunOptions`."""
    return _section_from(RunOptions, overrides or {}, "run option").validate()


# Settings that load what a stage of the recipe would otherwise build, and that stage's
# setting: naming the file turns the stage off, so that ``--preset best --embeddings FILE``
# starts from the file rather than refusing because best builds its own vectors. Naming both
# in the same overrides is still refused by validate ("choose one").
LOADED_INSTEAD_OF: dict[str, str] = {"embeddings": "pretrain_window", "encoder": "lm_steps"}


def apply_overrides(config: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Set flat ``name: value`` recipe overrides on the right sections, with type checks.

    A file to load (``embeddings``, ``encoder``) turns off the stage that would build it
    (``pretrain_window``, ``lm_steps``) unless the overrides set that stage too.
    """
    owner = field_owner()
    types = {f.name: f.type for fs in section_fields().values() for f in fs}
    for name, value in overrides.items():
        if name not in owner:
            if name in {f.name for f in fields(RunOptions)}:
                raise ConfigError(f"{name} says how a run executes, not what it learns: pass it as a run option")
            raise unknown_setting(name, list(owner))
        setattr(getattr(config, owner[name]), name, _coerce(name, value, types[name]))
    for loaded, stage in LOADED_INSTEAD_OF.items():
        if overrides.get(loaded) and stage not in overrides:
            setattr(getattr(config, owner[stage]), stage, 0)
    return config


def _section_from(section_type: type, values: dict[str, Any], kind: str) -> Any:
    """A section built from a mapping, each value type-checked as a flag's would be."""
    types = {f.name: f.type for f in fields(section_type)}
    bad = set(values) - set(types)
    if bad:
        raise ConfigError(f"unknown {kind}(s): {', '.join(sorted(bad))}")
    return section_type(**{key: _coerce(key, value, types[key]) for key, value in values.items()})


def _coerce(name: str, value: Any, type_name: Any) -> Any:
    type_name = type_name if isinstance(type_name, str) else type_name.__name__
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if type_name == "int":
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit())):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        return int(value)
    if type_name == "float":
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
        if result != result or result in (float("inf"), float("-inf")):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        return result
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return value
