"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is ``RUN_DIR/checkpoint/state.json`` plus the safetensors file it names. The
tensors (model, optimizer state including the lazy RMSprop rows, best weights so far, RNG
state) are written first under a new name; the JSON (counters, history, partial-epoch sums,
hyper-parameters, and the tensors' SHA-256) is renamed into place last, which is the commit
point. An interrupted write therefore leaves the previous checkpoint intact.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from rnnsent.artifact.directory import CHECKPOINT_FOLDER, CHECKPOINT_STATE, NGRAM_TABLE
from rnnsent.artifact.files import (
    compact_table,
    one_line,
    read_json,
    read_tensors,
    sha256_bytes,
    tensors_to_bytes,
    whole_table,
    write_bytes_atomic,
    write_json_atomic,
)
from rnnsent.config import RunConfig
from rnnsent.errors import ArtifactError

FORMAT_NAME = "rnnsent-checkpoint"
FORMAT_VERSION = 1
# The model's n-gram table under its checkpoint name; stored as its used rows (compact_table).
# Checkpoints written before that hold it whole, and restore reads both.
CHECKPOINT_TABLE = "model." + NGRAM_TABLE


@dataclass
class Progress:
    """Counters and bookkeeping of a run, saved as JSON in each checkpoint."""

    epoch: int = 0  # the epoch in progress (0-based)
    step_in_epoch: int = 0  # batches of that epoch already trained
    global_step: int = 0
    epoch_sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # loss sum, correct, count
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float | None = None
    bad_epochs: int = 0
    finished: bool = False


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_FOLDER


def has_checkpoint(run_dir: Path) -> bool:
    return (checkpoint_dir(run_dir) / CHECKPOINT_STATE).exists()


def save_checkpoint(
    run_dir: Path,
    progress: Progress,
    config: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    best_state: dict[str, torch.Tensor] | None,
    extra: dict[str, Any],
    writer: CheckpointWriter | None = None,
) -> None:
    """Write a checkpoint atomically and remove the one it replaces (through ``writer``, in the
    background, when given)."""
    directory = checkpoint_dir(run_dir)
    model_state = model.state_dict()
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model_state.items()}
    optimizer_state = optimizer.state_dict()
    for index, state in optimizer_state["state"].items():
        for key, value in state.items():
            assert isinstance(value, torch.Tensor), f"optimizer state {key} is not a tensor"
            tensors[f"optimizer.{index}.{key}"] = value
    if best_state is not None:
        # A frozen tensor (a stacked model's n-gram table) is the model's own in the best state
        # too: it is written once, under "model.", and restore takes it from there.
        tensors.update({f"best.{k}": v for k, v in best_state.items() if not _same_tensor(v, model_state.get(k))})
    # A stacked model's n-gram table is stored as the rows that hold a weight, as in the model
    # directory (IMDB star ratings: 37 MB instead of 448).
    tensors = compact_table(tensors, CHECKPOINT_TABLE)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    # Everything the checkpoint holds is copied now (the tensors serialised, the counters as a
    # new dict), so the writing below may run while training goes on and changes them.
    data = tensors_to_bytes(tensors, {"format": FORMAT_NAME})
    fields = {"progress": asdict(progress), "param_groups": optimizer_state["param_groups"], "config": config, **extra}
    step_and_epoch = f"{progress.global_step:09d}-{progress.epoch:05d}"

    def commit() -> None:
        previous = _current_tensor_file(directory)
        # Never overwrite the committed tensor file: the end-of-epoch checkpoint can fall on the
        # same step as a step-interval one, and a crash between the two renames would leave a
        # state.json whose checksum no longer matches its tensors.
        name = f"state-{step_and_epoch}.safetensors"
        if name == previous:
            name = name.replace(".safetensors", "b.safetensors")
        write_bytes_atomic(directory / name, data)
        write_json_atomic(directory / CHECKPOINT_STATE, {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "tensors": name, "sha256": sha256_bytes(data),
            **fields,
        })
        # Now that the new state is committed, clear the replaced one and anything a killed
        # process left half-written (tensor files never committed, temporary files).
        for stale in directory.iterdir():
            tensor_file = stale.name.startswith("state-") and stale.name.endswith(".safetensors")
            temporary = stale.name.startswith(".") and stale.name.endswith(".tmp")
            if stale.name != name and (tensor_file or temporary):
                stale.unlink(missing_ok=True)

    if writer is None:
        commit()
    else:
        writer.submit(commit)


class CheckpointWriter:
    """Writes checkpoints in a background thread, one at a time, while training goes on.

    Writing and syncing a checkpoint to disk waits on the disk, not on a core: the seed run's
    ten checkpoints cost 0.2 s in line. A checkpoint is still committed atomically and in
    order; :meth:`submit` first waits for the one before, and the trainer calls :meth:`wait`
    before it reports a checkpoint saved, stops or returns. A write's error is raised there.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, commit: Callable[[], None]) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(commit,), name="rnnsent-checkpoint", daemon=False)
        self._thread.start()

    def _run(self, commit: Callable[[], None]) -> None:
        try:
            commit()
        except BaseException as error:  # raised in the training thread by wait()
            self._error = error

    def wait(self) -> None:
        """Block until the checkpoint in flight is committed; raise its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def load_checkpoint(run_dir: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The checkpoint's JSON and tensors, verified; raises :class:`ArtifactError`."""
    directory = checkpoint_dir(run_dir)
    path = directory / CHECKPOINT_STATE
    if not path.exists():
        raise ArtifactError(f"{path}: no checkpoint to resume from; start the run without --resume")
    meta = read_json(path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ArtifactError(f"{path}: not an rnnsent checkpoint")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: checkpoint format version {meta.get('format_version')} is not supported")
    _check_fields(path, meta)
    tensors = read_tensors(directory / meta["tensors"], meta["sha256"])
    missing = [name for name in ("rng.torch",) if name not in tensors]
    if missing or not any(name.startswith("model.") for name in tensors):
        raise ArtifactError(f"{directory / meta['tensors']}: not the tensors of an rnnsent checkpoint")
    return meta, tensors


def _check_fields(path: Path, meta: dict[str, Any]) -> None:
    """Reject a state.json whose fields are missing or malformed, naming the file."""
    name = meta.get("tensors")
    # The tensor file must be a plain name inside the checkpoint folder.
    if not isinstance(name, str) or not name.endswith(".safetensors") or Path(name).name != name:
        raise ArtifactError(f"{path}: 'tensors' must name a .safetensors file in {path.parent}")
    if not isinstance(meta.get("sha256"), str):
        raise ArtifactError(f"{path}: 'sha256' is missing")
    if not isinstance(meta.get("param_groups"), list):
        raise ArtifactError(f"{path}: 'param_groups' is missing")
    try:
        Progress(**meta["progress"])
        RunConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(f"{path}: invalid checkpoint ({error})") from None


def restore(
    meta: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
) -> tuple[Progress, dict[str, torch.Tensor] | None]:
    """Put a checkpoint's state back into ``model``, ``optimizer`` and the RNG.

    Raises :class:`ArtifactError` when the tensors do not fit the model and optimiser that
    the checkpoint's own config describes (a checkpoint edited or mixed from two runs).
    """
    try:
        return _restore(meta, tensors, model, optimizer)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ArtifactError(
            f"checkpoint/{meta.get('tensors')}: does not fit the model and optimizer of its config ({one_line(error)})"
        ) from None


def _restore(meta, tensors, model, optimizer) -> tuple[Progress, dict[str, torch.Tensor] | None]:
    table = model.state_dict().get(NGRAM_TABLE)
    tensors = whole_table(tensors, CHECKPOINT_TABLE, None if table is None else tuple(table.shape))
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    # RMSprop.load_state_dict keeps its integer per-row step counters integer.
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    best = {k[len("best."):]: v for k, v in tensors.items() if k.startswith("best.")} or None
    if best is not None:
        # The frozen tensors the checkpoint wrote once (checkpoints of older versions wrote
        # them twice and lack nothing here).
        frozen = {name: p.detach() for name, p in model.named_parameters() if not p.requires_grad}
        best = {**frozen, **best}
    return Progress(**meta["progress"]), best


def _same_tensor(a: torch.Tensor, b: torch.Tensor | None) -> bool:
    """Whether ``a`` and ``b`` are views of the same memory with the same shape."""
    return (b is not None and a.numel() > 0 and a.data_ptr() == b.data_ptr() and a.shape == b.shape
            and a.dtype == b.dtype)


def _current_tensor_file(directory: Path) -> str | None:
    path = directory / CHECKPOINT_STATE
    if not path.exists():
        return None
    try:
        return read_json(path).get("tensors")
    except ArtifactError:
        return None
