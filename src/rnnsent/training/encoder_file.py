"""The pretrained-encoder file: a language model's weights, tied to its vocabulary and recipe.

``ENC/encoder.safetensors`` holds the :class:`~rnnsent.model.language_model.LanguageModel`'s
encoder tensors (the embedding, each direction's recurrent stack) and, in its
metadata, the SHA-256 of the vocabulary (as word-vectors files do), the recipe settings the
weights' shapes and meaning depend on, and what the pretraining did (steps, tokens, held-out
perplexity). It is written atomically. Loading it for another vocabulary or recipe is refused
with one line naming the settings that differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from rnnsent.artifact.files import one_line, read_metadata, read_tensors, tensors_to_bytes, write_bytes_atomic
from rnnsent.config import RunConfig
from rnnsent.errors import ArtifactError, ConfigError, UsageError
from rnnsent.model.language_model import LanguageModel
from rnnsent.text.vocabulary import Vocabulary
from rnnsent.training.vectors import vocabulary_fingerprint

ENCODER_FORMAT = "rnnsent-encoder"
ENCODER_FORMAT_VERSION = "1"
ENCODER_FILE = "encoder.safetensors"
# The recipe settings an encoder's weights depend on, by section.
ENCODER_SETTINGS = {"text": ("num_words", "index_from"),
                    "model": ("cell", "embedding_dim", "hidden_size", "num_layers", "bidirectional", "nonlinearity")}


def encoder_settings(config: RunConfig) -> dict[str, Any]:
    """The settings of ``config`` an encoder must share; ``nonlinearity`` only for the simple cell."""
    settings = {name: getattr(getattr(config, section), name)
                for section, names in ENCODER_SETTINGS.items() for name in names}
    if config.model.cell != "simple":
        settings["nonlinearity"] = None
    return settings


def encoder_path(path: Path) -> Path:
    """The encoder file of ``path``: the path itself, or ``encoder.safetensors`` in a folder."""
    path = Path(path)
    return path / ENCODER_FILE if path.is_dir() else path


def save_encoder(out: Path, model: LanguageModel, vocabulary: Vocabulary, config: RunConfig,
                 figures: dict[str, Any]) -> Path:
    """Write ``model``'s weights as ``out/encoder.safetensors``; returns the file's path."""
    path = Path(out) / ENCODER_FILE
    metadata = {"format": ENCODER_FORMAT, "format_version": ENCODER_FORMAT_VERSION,
                "vocabulary_sha256": vocabulary_fingerprint(vocabulary),
                "settings": json.dumps(encoder_settings(config), sort_keys=True),
                "pretraining": json.dumps(figures, sort_keys=True)}
    write_bytes_atomic(path, tensors_to_bytes(encoder_tensors(model), metadata))
    return path


def encoder_tensors(model: LanguageModel) -> dict[str, torch.Tensor]:
    """What an encoder file holds: the embedding and each direction's recurrent stack, by their
    names in the language model (the softmax, which only pretraining uses, is left out)."""
    return {name: value for name, value in model.state_dict().items() if not name.startswith("softmax.")}


def read_encoder_metadata(path: Path) -> dict[str, str]:
    """The metadata of an encoder file; raises :class:`ArtifactError` for anything else."""
    metadata = read_metadata(path)
    if metadata.get("format") != ENCODER_FORMAT:
        raise ArtifactError(f"{path}: not an rnnsent encoder file; make one with 'rnnsent pretrain --language-model'")
    if metadata.get("format_version") != ENCODER_FORMAT_VERSION:
        raise ArtifactError(f"{path}: encoder format version {metadata.get('format_version')} is not supported")
    return metadata


def load_encoder(path: Path, config: RunConfig, vocabulary: Vocabulary) -> LanguageModel:
    """The language model saved at ``path`` (a folder or its file), checked against the recipe
    and the vocabulary the run reads its texts with."""
    file = encoder_path(path)
    if not file.is_file():
        raise UsageError(f"--encoder {path}: no such encoder; make one with "
                         f"'rnnsent pretrain --language-model --out {path}'")
    metadata = read_encoder_metadata(file)
    try:
        saved = json.loads(metadata.get("settings", ""))
    except json.JSONDecodeError:
        raise ArtifactError(f"{file}: its settings are not valid JSON; pretrain it again") from None
    wanted = encoder_settings(config)
    differ = [name for name in wanted if saved.get(name) != wanted[name]]
    if differ:
        described = ", ".join(f"{name} {json.dumps(saved.get(name))}" for name in differ)
        ours = ", ".join(f"{name} {json.dumps(wanted[name])}" for name in differ)
        raise ConfigError(f"--encoder {path} was pretrained with {described}; this recipe has {ours}: use its "
                          "settings or pretrain again with these")
    if metadata.get("vocabulary_sha256") != vocabulary_fingerprint(vocabulary):
        raise ConfigError(f"--encoder {path} was pretrained for another vocabulary; pretrain again on this data "
                          "with the same --num-words and --punctuation")
    model = LanguageModel(config.model, config.text.num_words)
    tensors = read_tensors(file)
    expected = encoder_tensors(model)
    try:
        if set(tensors) != set(expected):
            raise RuntimeError(f"it holds {', '.join(sorted(set(tensors) ^ set(expected)))} or lacks them")
        model.load_state_dict(tensors, strict=False)
    except RuntimeError as error:
        raise ArtifactError(f"{file}: its tensors do not fit its settings ({one_line(error)})") from None
    return model
