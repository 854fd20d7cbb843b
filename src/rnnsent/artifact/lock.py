"""One writer per run directory: a lock file holding the owner's PID.

``train`` takes ``RUN_DIR/.lock`` before it reads any data (so an unwritable ``--out`` fails at
once) and removes it when it ends, however it ends. A second ``train`` into the same
directory is refused while the owner lives; a lock left by a process that has died (kill -9,
a power cut) is stale and taken over. ``evaluate``/``predict`` use :func:`owner` to say that a
directory without a complete model is still being trained.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rnnsent.errors import UsageError
from rnnsent.processes import alive

LOCK_NAME = ".lock"


def owner(run_dir: Path) -> int | None:
    """The PID of the live process training into ``run_dir`` on this machine, or None."""
    try:
        record = json.loads((Path(run_dir) / LOCK_NAME).read_text(encoding="utf-8"))
        pid, host = int(record["pid"]), record.get("host")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname() or not alive(pid):
        return None
    return pid


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the lock of ``run_dir`` for the duration of the block."""
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(error.errno, f"cannot create the run directory ({error.strerror})", str(run_dir)) from None
    path = run_dir / LOCK_NAME
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pid = owner(run_dir)
            if pid is not None and pid != os.getpid():
                raise UsageError(f"{run_dir} is being trained by process {pid}; wait for it to finish or use "
                                 "another --out") from None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        except OSError as error:
            raise OSError(error.errno, f"cannot write in the run directory ({error.strerror})", str(path)) from None
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(record)
        break
    else:
        raise UsageError(f"{run_dir}: another process took the lock at the same time; try again")
    try:
        yield
    finally:
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass
        if created:
            try:
                run_dir.rmdir()  # a run that failed before writing anything leaves no directory behind
            except OSError:
                pass

