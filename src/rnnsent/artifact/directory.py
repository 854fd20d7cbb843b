"""The model artifact: a self-contained, versioned directory, and the one loader for it.

Layout of a model directory::

    config.json         format, versions, the resolved RunConfig, parameter count
    vocabulary.json     the words in id order (the exact training preprocessing)
    model.safetensors   the weights (never a pickle)
    metrics.json        test metrics written by training / ``rnnsent evaluate``
    history.json/.csv   one row per epoch
    curves.png          learning curves
    manifest.json       SHA-256 of every file above; written last, so its presence marks
                        a complete artifact

``evaluate``, ``predict``, ``serve`` and the Python API all go through :func:`load_artifact`.

Format versions: 1 (rnnsent 0.1.0) kept every weight on one module; 2 holds a model with an
n-gram branch as its two parts (``network.*`` and ``ngrams.*``) and names attention pooling's
vector ``pooling.score.weight``; 3 stores an n-gram table as the rows that hold a weight
(:data:`NGRAM_TABLE`). Version 3 is written; all three are read, version 1 through
:func:`_version_1_weights`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rnnsent import __version__
from rnnsent.artifact.curves import learning_curves_png
from rnnsent.artifact.files import (
    MAX_JSON_BYTES,
    compact_table,
    one_line,
    read_json,
    read_regular_file,
    read_tensors,
    sha256_bytes,
    tensors_to_bytes,
    whole_table,
    write_bytes_atomic,
    write_json_atomic,
)
from rnnsent.artifact.lock import owner
from rnnsent.config import ModelConfig, RunConfig
from rnnsent.errors import ArtifactError, ConfigError
from rnnsent.labels import BINARY_SENTIMENT, LabelSpace
from rnnsent.model.build import Classifier, build_model
from rnnsent.model.size import check_fits
from rnnsent.model.summary import count_parameters
from rnnsent.processes import sweep_temporaries
from rnnsent.text.encoder import TextEncoder
from rnnsent.text.vocabulary import Vocabulary

FORMAT_NAME = "rnnsent-model"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
# A stacked model's n-gram table has one row per possible feature (16 million hash buckets and
# the vocabulary for best), most of which no training text contains and which stay zero. Since
# format version 3 it is stored as the rows that hold a weight: NAME.rows, their ascending
# indices (int32, or int64 for a table of 2**31 rows or more), and NAME.values, those rows
# (rows, columns). IMDB's best: 3.8 of 16 million rows, 30 MB instead of 64; its 8 star
# ratings: 37 MB instead of 448.
NGRAM_TABLE = "ngrams.weight.weight"
REQUIRED_FILES = ("config.json", "vocabulary.json", "model.safetensors")
# The checksums of the files above, written last: a directory holding it holds a saved model.
MANIFEST = "manifest.json"
# Where a training run keeps the state it resumes from (rnnsent.training.checkpoint), inside
# its model directory; its state file is written last, so its presence marks a checkpoint.
CHECKPOINT_FOLDER, CHECKPOINT_STATE = "checkpoint", "state.json"


@dataclass
class Artifact:
    """A loaded model directory."""

    path: Path
    config: RunConfig
    vocabulary: Vocabulary
    model: Classifier
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    labels: LabelSpace = BINARY_SENTIMENT
    # Fitted on the validation split: the temperature dividing the logits (--calibrate) and,
    # for multilabel models, each label's decision threshold.
    temperature: float = 1.0
    thresholds: list[float] | None = None

    @property
    def encoder(self) -> TextEncoder:
        return TextEncoder(self.vocabulary, self.config.text)


# ----------------------------------------------------------------------------- save / load


def save_artifact(
    directory: Path,
    config: RunConfig,
    vocabulary: Vocabulary,
    model: Classifier,
    metrics: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    labels: LabelSpace = BINARY_SENTIMENT,
    temperature: float = 1.0,
    thresholds: list[float] | None = None,
) -> Path:
    """Write a complete model directory; the manifest goes last, so a crash leaves no usable half."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(directory)
    (directory / MANIFEST).unlink(missing_ok=True)
    files: dict[str, bytes] = {
        "config.json": _json_bytes({
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "rnnsent_version": __version__,
            "torch_version": torch.__version__,
            "parameters": count_parameters(model),
            "vocab_size": vocabulary.size,
            "config": config.to_dict(),
        }),
        "vocabulary.json": _json_bytes({"index_from": vocabulary.index_from, "words": list(vocabulary.words)}),
        "labels.json": _json_bytes({**labels.to_dict(), "temperature": temperature, "thresholds": thresholds}),
        "model.safetensors": tensors_to_bytes(compact_table(model.state_dict(), NGRAM_TABLE),
                                              {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)}),
        "metrics.json": _json_bytes(metrics or {}),
        "history.json": _json_bytes(history or []),
        "history.csv": _history_csv(history or []),
    }
    for name, data in files.items():
        write_bytes_atomic(directory / name, data)
    plot = learning_curves_png(history) if history else None
    if plot is not None:
        files["curves.png"] = plot
        write_bytes_atomic(directory / "curves.png", plot)
    else:
        (directory / "curves.png").unlink(missing_ok=True)  # a previous model's curves would mislead
    manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "files": {name: sha256_bytes(data) for name, data in files.items()}}
    write_json_atomic(directory / MANIFEST, manifest)
    return directory


def update_metrics(directory: Path, metrics: dict[str, Any]) -> None:
    """Replace ``metrics.json`` of a complete artifact and its manifest entry."""
    manifest = _read_manifest(Path(directory))
    data = _json_bytes(metrics)
    # Unlist the old metrics first: a crash between any two of these writes leaves a
    # loadable model (at worst without metrics), never a manifest that contradicts a file.
    manifest["files"].pop("metrics.json", None)
    write_json_atomic(Path(directory) / MANIFEST, manifest)
    write_bytes_atomic(Path(directory) / "metrics.json", data)
    manifest["files"]["metrics.json"] = sha256_bytes(data)
    write_json_atomic(Path(directory) / MANIFEST, manifest)


def load_artifact(directory: str | os.PathLike, device: str | torch.device = "cpu", quantize: bool = False) -> Artifact:
    """Load and verify a model directory; raises :class:`ArtifactError` with the file at fault.

    ``quantize``: int8 dynamic quantization for CPU inference (:mod:`rnnsent.model.quantize`).
    """
    directory = Path(directory)
    if directory.is_file():
        raise ArtifactError(f"{directory} is a file, not a model directory; name the folder 'rnnsent train --out' wrote")
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: no such model directory; train one with 'rnnsent train --out {directory}'")
    manifest = _read_manifest(directory)
    checksums = manifest["files"]
    for name in REQUIRED_FILES:
        if name not in checksums:
            raise ArtifactError(f"{directory / 'manifest.json'}: does not list {name}; the artifact is incomplete")
    header = _verified_json(directory / "config.json", checksums["config.json"])
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ArtifactError(f"{directory / 'config.json'}: not an rnnsent model")
    version = header.get("format_version")
    if not _readable(version):
        raise ArtifactError(
            f"{directory / 'config.json'}: format version {version} is not supported "
            f"(this rnnsent {__version__} reads versions {', '.join(map(str, READABLE_VERSIONS))}); "
            "load it with the rnnsent version that wrote it, or a newer one"
        )
    if version != manifest["format_version"]:
        raise ArtifactError(f"{directory / 'manifest.json'}: format version {manifest['format_version']} "
                            f"disagrees with config.json's {version}; the artifact is damaged")
    try:
        config = RunConfig.from_dict(header["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(f"{directory / 'config.json'}: invalid config ({error})") from None
    words = _verified_json(directory / "vocabulary.json", checksums["vocabulary.json"])
    try:
        if not isinstance(words, dict) or not isinstance(words.get("words"), list):
            raise ValueError("'words' must be a list of the words in id order")
        vocabulary = Vocabulary(tuple(words["words"]), int(words["index_from"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(f"{directory / 'vocabulary.json'}: invalid vocabulary ({error})") from None
    _check_vocabulary(directory / "vocabulary.json", vocabulary, header.get("vocab_size"))
    # Every id must have a row in the embedding table, and the encoder's conventions must match.
    if (not all(isinstance(word, str) for word in vocabulary.words) or vocabulary.index_from != config.text.index_from
            or vocabulary.size > config.text.num_words):
        raise ArtifactError(
            f"{directory / 'vocabulary.json'}: does not fit the config (index_from {vocabulary.index_from}, "
            f"{vocabulary.size} ids for num_words {config.text.num_words})"
        )
    labels, temperature, thresholds = _read_labels(directory, checksums)
    weights_path = directory / "model.safetensors"
    try:
        check_fits(config, labels.num_outputs, training=False)
    except ConfigError as error:
        raise ArtifactError(f"{directory / 'config.json'}: {error}") from None
    tensors = read_tensors(weights_path, checksums["model.safetensors"])
    if version == 1:
        tensors = _version_1_weights(tensors, config.model)
    # Compare the weights with the model the config describes, built without memory, before
    # building (and allocating) the real one: a config edited to a huge model is refused here.
    with torch.device("meta"), _ShapesOnly():
        expected = {name: tuple(t.shape) for name, t in build_model(config.model, config.text.num_words, labels=labels)
                    .state_dict().items()}
    tensors = _dense_table(tensors, expected, weights_path)
    shapes = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
    if shapes != expected:
        differ = sorted(set(shapes) ^ set(expected)) or [n for n in expected if shapes.get(n) != expected[n]]
        raise ArtifactError(f"{weights_path}: weights do not fit the config (first difference: {differ[0]}: "
                            f"{shapes.get(differ[0])} in the file, {expected.get(differ[0])} in the config)")
    if not all(_all_finite(t) for t in tensors.values() if t.is_floating_point()):
        raise ArtifactError(f"{weights_path}: the weights hold NaN or infinite values; retrain the model")
    model = build_model(config.model, config.text.num_words, labels=labels)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise ArtifactError(f"{weights_path}: weights do not fit the config ({one_line(error)})") from None
    model.to(device).eval()
    if quantize:
        from rnnsent.model.quantize import quantize_model

        model = quantize_model(model)
    optional = {}
    for name in ("metrics.json", "history.json"):
        path = directory / name
        optional[name] = _verified_json(path, checksums[name]) if name in checksums and path.exists() else None
    return Artifact(directory, config, vocabulary, model, optional["metrics.json"] or {}, optional["history.json"] or [],
                    labels, temperature, thresholds)


def _all_finite(tensor: torch.Tensor) -> bool:
    """Whether no value is NaN or infinite. The smallest and largest values tell (NaN propagates
    through both) in one pass without a mask as large as the tensor: about 10x faster than
    ``isfinite(...).all()`` on a ``best`` model's 16-million-row n-gram table."""
    if not tensor.numel():
        return True
    return all(bool(torch.isfinite(bound)) for bound in torch.aminmax(tensor))


class _ShapesOnly(torch.overrides.TorchFunctionMode):
    """Skips in-place initialisers on meta tensors: building a model there then costs only its
    shapes (meta ``normal_`` and friends run torch's Python references, which import
    TorchDynamo)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        target = args[0] if args else kwargs.get("tensor")
        if name.endswith("_") and not name.endswith("__") and isinstance(target, torch.Tensor) and target.is_meta:
            return target
        out = kwargs.get("out")
        if isinstance(out, torch.Tensor) and out.is_meta:  # torch.eye(..., out=) of nn.init.eye_
            return out
        return func(*args, **kwargs)


def _check_vocabulary(path: Path, vocabulary: Vocabulary, saved_size: Any) -> None:
    """Refuse a vocabulary the saved config says cannot be: repeated or empty words, or another size."""
    if not all(isinstance(word, str) for word in vocabulary.words):
        return  # the size check beside the config reports it
    if len(set(vocabulary.words)) != len(vocabulary.words):
        raise ArtifactError(f"{path}: a word appears twice; the vocabulary is damaged")
    if any(not word or word != word.strip() for word in vocabulary.words):
        raise ArtifactError(f"{path}: holds an empty word or one with spaces; the vocabulary is damaged")
    if isinstance(saved_size, int) and saved_size != vocabulary.size:
        raise ArtifactError(f"{path}: has {vocabulary.size} ids but the model was saved with {saved_size}; "
                            "the vocabulary is damaged")


def _read_labels(directory: Path, checksums: dict[str, str]) -> tuple[LabelSpace, float, list[float] | None]:
    """The label space, temperature and thresholds of ``labels.json``; binary sentiment for
    directories written before label spaces existed, which have no such file."""
    if "labels.json" not in checksums:
        return BINARY_SENTIMENT, 1.0, None
    path = directory / "labels.json"
    value = _verified_json(path, checksums["labels.json"])
    try:
        labels = LabelSpace.from_dict(value)
        temperature = float(value.get("temperature", 1.0))
        thresholds = value.get("thresholds")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature {temperature} is not a positive number")
        if thresholds is not None:
            thresholds = [float(t) for t in thresholds]
            if len(thresholds) != len(labels.names) or not all(0.0 <= t <= 1.0 for t in thresholds):
                raise ValueError("thresholds must be one number in [0, 1] per label")
    except (TypeError, ValueError, AttributeError) as error:
        raise ArtifactError(f"{path}: invalid labels ({one_line(error)})") from None
    if labels.task == "binary" and labels.names == BINARY_SENTIMENT.names:
        labels = BINARY_SENTIMENT  # keeps the usual spellings (0/1, neg/pos, ...) for evaluating on raw data
    return labels, temperature, thresholds


def _dense_table(tensors: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]],
                 path: Path) -> dict[str, torch.Tensor]:
    """``tensors`` with an n-gram table stored as its rows (:func:`compact_table`) made whole
    again, of the shape the config gives it; raises :class:`ArtifactError` when they do not fit."""
    try:
        return whole_table(tensors, NGRAM_TABLE, expected.get(NGRAM_TABLE))
    except ValueError:
        raise ArtifactError(f"{path}: the n-gram table's stored rows do not fit the config; retrain the model") from None


def _version_1_weights(tensors: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """The weights of a version-1 directory under their version-2 names.

    Version 1 kept the recurrent network's tensors at the top of the state dict beside the
    n-gram branch's (``ngrams.*``) and the blend, and attention pooling's vector as
    ``attention.weight``. This is the only place that knows the old names.
    """
    renamed = {}
    for name, tensor in tensors.items():
        if name == "attention.weight":
            name = "pooling.score.weight"
        if config.ngram_buckets and not (name.startswith("ngrams.") or name == "blend"):
            name = "network." + name
        renamed[name] = tensor
    return renamed


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.exists():
        pid = owner(directory)
        if pid is not None:
            raise ArtifactError(f"{directory} is being trained (process {pid}); its model is saved when training ends")
        if (directory / CHECKPOINT_FOLDER / CHECKPOINT_STATE).exists():
            raise ArtifactError(f"{directory} holds a training run that stopped before its model was saved; "
                                f"continue it with 'rnnsent train --resume {directory}'")
        if not any((directory / name).exists() for name in REQUIRED_FILES):
            raise ArtifactError(f"{directory} is not a model directory (it has no manifest.json); give the --out "
                                "folder of 'rnnsent train'")
        raise ArtifactError(f"{path}: missing, so {directory} is not a complete model (interrupted while saving?); retrain it")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME or not isinstance(manifest.get("files"), dict):
        raise ArtifactError(f"{path}: not an rnnsent manifest")
    if not _readable(manifest.get("format_version")):
        raise ArtifactError(f"{path}: format version {manifest.get('format_version')} is not supported "
                            f"(this rnnsent {__version__} reads versions {', '.join(map(str, READABLE_VERSIONS))})")
    return manifest


def _readable(version: Any) -> bool:
    """Whether ``version`` (a header's ``format_version``) is one this loader reads."""
    return isinstance(version, int) and not isinstance(version, bool) and version in READABLE_VERSIONS


def _verified_json(path: Path, expected_sha256: str) -> Any:
    data = read_regular_file(path, MAX_JSON_BYTES)
    if sha256_bytes(data) != expected_sha256:
        raise ArtifactError(f"{path}: checksum mismatch (the file is truncated or corrupt); retrain or restore it")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{path}: not valid JSON ({error}); the file is truncated or corrupt") from None


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, allow_nan=True) + "\n").encode("utf-8")


def _history_csv(history: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    if history:
        columns = list(dict.fromkeys(key for row in history for key in row))
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    return buffer.getvalue().encode("utf-8")
