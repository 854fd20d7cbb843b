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
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors_bytes
from safetensors.torch import save as save_tensors_bytes

from rnnsent import __version__
from rnnsent.config import RunConfig
from rnnsent.model import RecurrentClassifier, count_parameters
from rnnsent.text import TextEncoder, Vocabulary

FORMAT_NAME = "rnnsent-model"
FORMAT_VERSION = 1
REQUIRED_FILES = ("config.json", "vocabulary.json", "model.safetensors")


class ArtifactError(ValueError):
    """A model directory or checkpoint that cannot be used; the message names the file."""


@dataclass
class Artifact:
    """A loaded model directory."""

    path: Path
    config: RunConfig
    vocabulary: Vocabulary
    model: RecurrentClassifier
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def encoder(self) -> TextEncoder:
        return TextEncoder(self.vocabulary, self.config.text)


# ----------------------------------------------------------------------------- atomic files


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(temporary, 0o666 & ~_current_umask())
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _current_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; it is put back at once
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, value: Any) -> None:
    write_bytes_atomic(path, (json.dumps(value, indent=2, allow_nan=True) + "\n").encode("utf-8"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tensors_to_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """Safetensors bytes of contiguous CPU copies of ``tensors``, the same bytes for the same tensors."""
    data = save_tensors_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
    return _sorted_metadata(data) if metadata and len(metadata) > 1 else data


def _sorted_metadata(data: bytes) -> bytes:
    """The safetensors bytes with the ``__metadata__`` keys in sorted order.

    safetensors writes its metadata from a hash map, in an order that changes from process
    to process, so identical weights would get different bytes and checksums. Sorting the
    keys keeps the header's length (same text, other order), so the offsets stay valid.
    """
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size].decode("utf-8"), object_pairs_hook=dict)
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert len(text) <= size, "re-serialised safetensors header grew"
    return data[:8] + text + b" " * (size - len(text)) + data[8 + size:]


def read_tensors(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, checked against a checksum when one is given."""
    data = _read_file(path)
    if expected_sha256 is not None and sha256_bytes(data) != expected_sha256:
        raise ArtifactError(f"{path}: checksum mismatch (the file is truncated or corrupt); retrain or restore it")
    try:
        return load_tensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise ArtifactError(f"{path}: not a valid safetensors file ({error})") from None


def read_json(path: Path) -> Any:
    data = _read_file(path)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{path}: not valid JSON ({error}); the file is truncated or corrupt") from None


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: file is missing") from None
    except OSError as error:
        raise ArtifactError(f"{path}: cannot be read ({error.strerror})") from None


# ----------------------------------------------------------------------------- save / load


def save_artifact(
    directory: Path,
    config: RunConfig,
    vocabulary: Vocabulary,
    model: RecurrentClassifier,
    metrics: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a complete model directory; the manifest goes last, so a crash leaves no usable half."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").unlink(missing_ok=True)
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
        "model.safetensors": tensors_to_bytes(model.state_dict(), {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)}),
        "metrics.json": _json_bytes(metrics or {}),
        "history.json": _json_bytes(history or []),
        "history.csv": _history_csv(history or []),
    }
    for name, data in files.items():
        write_bytes_atomic(directory / name, data)
    plot = _learning_curves_png(history) if history else None
    if plot is not None:
        files["curves.png"] = plot
        write_bytes_atomic(directory / "curves.png", plot)
    else:
        (directory / "curves.png").unlink(missing_ok=True)  # a previous model's curves would mislead
    manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "files": {name: sha256_bytes(data) for name, data in files.items()}}
    write_json_atomic(directory / "manifest.json", manifest)
    return directory


def update_metrics(directory: Path, metrics: dict[str, Any]) -> None:
    """Replace ``metrics.json`` of a complete artifact and its manifest entry."""
    manifest = _read_manifest(Path(directory))
    data = _json_bytes(metrics)
    # Unlist the old metrics first: a crash between any two of these writes leaves a
    # loadable model (at worst without metrics), never a manifest that contradicts a file.
    manifest["files"].pop("metrics.json", None)
    write_json_atomic(Path(directory) / "manifest.json", manifest)
    write_bytes_atomic(Path(directory) / "metrics.json", data)
    manifest["files"]["metrics.json"] = sha256_bytes(data)
    write_json_atomic(Path(directory) / "manifest.json", manifest)


def load_artifact(directory: str | os.PathLike, device: str | torch.device = "cpu") -> Artifact:
    """Load and verify a model directory; raises :class:`ArtifactError` with the file at fault."""
    directory = Path(directory)
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
    if header.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{directory / 'config.json'}: format version {header.get('format_version')} is not supported "
            f"(this rnnsent reads version {FORMAT_VERSION}); use a matching rnnsent version"
        )
    try:
        config = RunConfig.from_dict(header["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(f"{directory / 'config.json'}: invalid config ({error})") from None
    words = _verified_json(directory / "vocabulary.json", checksums["vocabulary.json"])
    try:
        vocabulary = Vocabulary(tuple(words["words"]), int(words["index_from"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(f"{directory / 'vocabulary.json'}: invalid vocabulary ({error})") from None
    # Every id must have a row in the embedding table, and the encoder's conventions must match.
    if (not all(isinstance(word, str) for word in vocabulary.words) or vocabulary.index_from != config.text.index_from
            or vocabulary.size > config.text.num_words):
        raise ArtifactError(
            f"{directory / 'vocabulary.json'}: does not fit the config (index_from {vocabulary.index_from}, "
            f"{vocabulary.size} ids for num_words {config.text.num_words})"
        )
    tensors = read_tensors(directory / "model.safetensors", checksums["model.safetensors"])
    model = RecurrentClassifier(config.model, config.text.num_words)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise ArtifactError(f"{directory / 'model.safetensors'}: weights do not fit the config ({one_line(error)})") from None
    model.to(device).eval()
    optional = {}
    for name in ("metrics.json", "history.json"):
        path = directory / name
        optional[name] = _verified_json(path, checksums[name]) if name in checksums and path.exists() else None
    return Artifact(directory, config, vocabulary, model, optional["metrics.json"] or {}, optional["history.json"] or [])


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (torch's load_state_dict errors span several)."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / "manifest.json"
    if not path.exists():
        raise ArtifactError(f"{path}: missing, so {directory} is not a complete model (interrupted while saving?); retrain it")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME or not isinstance(manifest.get("files"), dict):
        raise ArtifactError(f"{path}: not an rnnsent manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format version {manifest.get('format_version')} is not supported (expected {FORMAT_VERSION})")
    return manifest


def _verified_json(path: Path, expected_sha256: str) -> Any:
    data = _read_file(path)
    if sha256_bytes(data) != expected_sha256:
        raise ArtifactError(f"{path}: checksum mismatch (the file is truncated or corrupt); retrain or restore it")
    return read_json(path)


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


def _learning_curves_png(history: list[dict[str, Any]]) -> bytes | None:
    """Loss and accuracy per epoch for every split the history has, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(9, 3.5), dpi=100)
    for position, metric in enumerate(("loss", "accuracy")):
        axes = figure.add_subplot(1, 2, position + 1)
        for prefix, label in (("", "train"), ("val_", "validation"), ("test_", "test")):
            values = [row.get(prefix + metric) for row in history]
            if any(value is not None for value in values):
                axes.plot(epochs, [float("nan") if v is None else v for v in values], marker="o", label=label)
        axes.set_xlabel("epoch")
        axes.set_title(metric)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
