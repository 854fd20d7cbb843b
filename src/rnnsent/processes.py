"""Whether a process lives, and the temporary files of those that died while writing.

Every temporary file rnnsent writes is named ``.NAME.PID.XXXX.tmp``: the PID says whose it is,
so a later writer removes those whose process is gone (killed mid-write, a full disk) and
leaves a live writer's alone.
"""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temporaries(directory: Path) -> None:
    """Remove the ``.*.tmp`` files in ``directory`` whose writing process is gone (or unnamed)."""
    if not directory.is_dir():
        return
    for stale in directory.glob(".*.tmp"):
        parts = stale.name.split(".")
        pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
        if pid is None or (pid != os.getpid() and not alive(pid)):
            stale.unlink(missing_ok=True)
