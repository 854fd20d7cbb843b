"""How many CPU threads scoring uses by default, and the OpenMP setting the command starts with.

On a machine whose cores are busy with other work, torch's default (one OpenMP thread per
core, spinning while it waits for the others) can make a prediction ten times slower than one
thread: each parallel region waits for a thread the scheduler has given to another process.
Two measures keep the default steady (measured in docs/performance.md):

* :func:`configure_process` (the ``rnnsent`` command, before torch is imported) sets
  ``OMP_WAIT_POLICY=PASSIVE`` for the scoring commands (``predict``, ``evaluate``, ``serve``)
  unless the user set it: waiting threads sleep instead of spinning. Training (``train``,
  ``tune``, ``pretrain``) keeps OpenMP's default on an idle machine, since a GRU step runs
  thousands of short parallel regions and sleeping between them made a `bigru` epoch a third
  slower; but when other processes are running as it starts, it waits passively too: there,
  spinning made a small training run 30 to 47 times slower (docs/performance.md). The thread
  count, and so every result, stays the same either way.
* :func:`free_cores` is the default thread count for predict, evaluate and the Python API: the
  cores not already taken by running processes, at least one. It reads the 1-minute load
  average and the processes running right now (``/proc/loadavg``), and takes the busier view,
  so that a burst of work that the average has not caught up with yet counts.

Nothing here imports torch.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _running_now() -> int | None:
    """Processes running or runnable now, this one excluded; None where ``/proc/loadavg`` is absent."""
    try:
        with open("/proc/loadavg", encoding="ascii") as handle:
            running = int(handle.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(running - 1, 0)


def free_cores(cores: int | None = None) -> int:
    """The cores not busy with other processes: ``cores - busy`` rounded, between 1 and ``cores``."""
    cores = available_cores() if cores is None else cores
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    running = _running_now()
    if running is not None:
        busy = max(busy, float(running))
    return max(1, min(cores, int(cores - busy + 0.5)))


# The commands whose work is scoring, where a busy machine hurts most and spinning buys little.
SCORING_COMMANDS = ("predict", "evaluate", "serve")
# The commands that train, where spinning pays on an idle machine only.
TRAINING_COMMANDS = ("train", "tune", "pretrain")


def busy_now() -> bool:
    """Whether other processes keep a core busy now: both the 1-minute load average and the
    processes running at this moment say so (the average alone lingers after work ends; the
    count alone catches a passing process)."""
    running = _running_now()
    try:
        average = os.getloadavg()[0]
    except (AttributeError, OSError):
        return False
    return running is not None and min(average, float(running)) >= 0.5


def configure_process(command: str | None) -> None:
    """Settings that must precede ``import torch``: passive OpenMP waiting for the scoring
    commands, and for the training ones on a busy machine; never over the user's own setting."""
    if command in SCORING_COMMANDS or (command in TRAINING_COMMANDS and busy_now()):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def resolve_threads(threads: int) -> int:
    """The thread count to use for scoring: ``threads``, or :func:`free_cores` for 0."""
    return threads if threads > 0 else free_cores()


@contextmanager
def scoring_threads(threads: int | None) -> Iterator[None]:
    """Run the block with torch using ``threads`` threads (None: :func:`free_cores`, but only
    while torch's count is still its default of one per core; 0: torch's count as it is).

    The previous count is restored afterwards, so a caller's own ``torch.set_num_threads``
    outside the block is never overridden.
    """
    import torch

    previous = torch.get_num_threads()
    if threads is None:
        wanted = free_cores() if previous == available_cores() else previous
    else:
        wanted = threads if threads > 0 else previous
    if wanted == previous:
        yield
        return
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
