"""Atomic writes, checksums and safetensors (de)serialisation shared by model directories and checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors_bytes
from safetensors.torch import save as save_tensors_bytes

from rnnsent.errors import ArtifactError

# ----------------------------------------------------------------------------- atomic files


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename.

    The temporary file (``.NAME.PID.XXXX.tmp``) is removed on every error; one left by a
    killed process is removed by :func:`rnnsent.processes.sweep_temporaries`. An OSError (a full disk, a
    read-only place) names ``path``.
    """
    try:
        _write_bytes_atomic(path, data)
    except OSError as error:
        if error.filename:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from None


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
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


def compact_table(tensors: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """``tensors`` with the 2-d table ``name`` replaced by the rows that hold a weight, when
    those are at most half of its rows: ``name.rows``, their ascending indices (int32, or
    int64 for 2**31 rows or more), and ``name.values`` ``(rows, columns)``. Otherwise (or
    without such a table) ``tensors`` as they are. :func:`whole_table` undoes it exactly."""
    table = tensors.get(name)
    if table is None or table.dim() != 2:
        return tensors
    present = torch.nonzero(table.ne(0).any(dim=1)).squeeze(1)  # (rows with a weight,), ascending
    if 2 * len(present) > len(table):
        return tensors
    index_type = torch.int32 if len(table) < 2**31 else torch.int64
    compact = {key: tensor for key, tensor in tensors.items() if key != name}
    compact[name + ".rows"] = present.to(index_type)
    compact[name + ".values"] = table[present]  # (rows with a weight, columns)
    return compact


def whole_table(tensors: dict[str, torch.Tensor], name: str, shape: tuple[int, ...] | None) -> dict[str, torch.Tensor]:
    """``tensors`` with a table that :func:`compact_table` stored as its rows made whole again,
    of ``shape`` (the shape the model gives it); as they are when it was stored whole. Raises
    ``ValueError`` when the stored rows do not fit ``shape`` (indices out of range or out of
    order, values of another width, one of the pair missing)."""
    rows, values = tensors.get(name + ".rows"), tensors.get(name + ".values")
    if rows is None and values is None:
        return tensors
    fits = (rows is not None and values is not None and shape is not None and len(shape) == 2 and rows.dim() == 1
            and rows.dtype in (torch.int32, torch.int64) and tuple(values.shape) == (len(rows), shape[1])
            and name not in tensors)
    if fits and len(rows):
        fits = int(rows.min()) >= 0 and int(rows.max()) < shape[0] and bool((rows[1:] > rows[:-1]).all())
    if not fits:
        raise ValueError(f"the stored rows of {name} do not fit a table of shape {shape}")
    table = torch.zeros(shape, dtype=values.dtype)
    table[rows.long()] = values
    whole = {key: tensor for key, tensor in tensors.items() if key not in (name + ".rows", name + ".values")}
    whole[name] = table
    return whole


def read_tensors(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, checked against a checksum when one is given."""
    data = read_regular_file(path)
    if expected_sha256 is not None and sha256_bytes(data) != expected_sha256:
        raise ArtifactError(f"{path}: checksum mismatch (the file is truncated or corrupt); retrain or restore it")
    try:
        return load_tensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise ArtifactError(f"{path}: not a valid safetensors file ({error})") from None


def read_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (empty when it has none), its tensors left unread."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for a damaged header
        raise ArtifactError(f"{path}: not a valid safetensors file ({error})") from None


def read_json(path: Path) -> Any:
    data = read_regular_file(path, MAX_JSON_BYTES)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{path}: not valid JSON ({error}); the file is truncated or corrupt") from None


# The largest JSON file of a model directory or checkpoint read (a vocabulary of 10 million words
# is about 150 MB); anything larger is not one of ours.
MAX_JSON_BYTES = 512 * 1024 * 1024


def read_regular_file(path: Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Links are followed, but what they lead to must be a regular file: a FIFO, a device such as
    /dev/zero or a directory is refused at once (opened without blocking, then checked),
    instead of hanging or reading without end.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: file is missing") from None
    except OSError as error:
        raise ArtifactError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise ArtifactError(f"{path}: not a regular file; restore the model directory's files")
        if limit is not None and status.st_size > limit:
            raise ArtifactError(f"{path}: {status.st_size:,} bytes is larger than such a file can be ({limit:,})")
        os.set_blocking(descriptor, True)
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            data = handle.read(status.st_size + 1)
        if len(data) != status.st_size:
            raise ArtifactError(f"{path}: changed while it was read; try again")
        return data
    except OSError as error:
        raise ArtifactError(f"{path}: cannot be read ({error.strerror})") from None
    finally:
        os.close(descriptor)


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (torch's load_state_dict errors span several)."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
