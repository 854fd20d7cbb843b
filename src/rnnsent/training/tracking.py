"""Training logs in TensorBoard's format (``--tensorboard DIR``), written with tensorboardX.

Per report (every ``REPORT_EVERY`` steps and at each epoch's end, as the loop checks the loss):

    step/loss, step/accuracy        over the steps since the previous report
    step/lr                         the learning rate of the last step
    step/examples_per_second        training throughput over those steps

and per epoch (x axis: the epoch number), from the epoch's row of history:

    epoch/loss, epoch/accuracy, epoch/val_loss, epoch/val_accuracy, epoch/test_loss,
    epoch/test_accuracy (the ones the run has), epoch/lr, epoch/seconds

tensorboardX needs neither TensorFlow nor the tensorboard package (torch's own
``torch.utils.tensorboard`` imports tensorboard), so training with logs needs only the light
``[track]`` extra; ``tensorboard --logdir DIR`` shows them wherever tensorboard is installed.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

from rnnsent.errors import MissingExtraError

MISSING = "--tensorboard needs tensorboardX: pip install 'rnnsent[track]'"
EPOCH_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "lr", "seconds")


def check_available(logdir: str) -> None:
    """Raise a one-line :class:`MissingExtraError` when logs are asked for and tensorboardX is missing."""
    if not logdir:
        return
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise MissingExtraError(MISSING) from None


class Tracker:
    """Writes a run's scalars into an event file under ``logdir``."""

    def __init__(self, logdir: str) -> None:
        check_available(logdir)
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=logdir)
        self._last_totals: list[float] = [0.0, 0.0, 0.0]
        self._last_time = time.perf_counter()

    def start_epoch(self, totals: Any) -> None:
        """The epoch's sums so far (not zero when a resumed run continues mid-epoch)."""
        self._last_totals = [float(value) for value in totals]
        self._last_time = time.perf_counter()

    def steps(self, global_step: int, totals: Any, lr: float) -> None:
        """The steps since the previous report: their loss, accuracy and throughput, and the learning rate."""
        now, current = time.perf_counter(), [float(value) for value in totals]
        loss_sum, correct, count = (current[i] - self._last_totals[i] for i in range(3))
        seconds = now - self._last_time
        if count > 0:
            self.writer.add_scalar("step/loss", loss_sum / count, global_step)
            self.writer.add_scalar("step/accuracy", correct / count, global_step)
            if seconds > 0:
                self.writer.add_scalar("step/examples_per_second", count / seconds, global_step)
        self.writer.add_scalar("step/lr", float(lr), global_step)
        self._last_totals, self._last_time = current, now

    def epoch(self, row: dict[str, Any]) -> None:
        for key in EPOCH_KEYS:
            if key in row:
                self.writer.add_scalar(f"epoch/{key}", float(row[key]), int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_tracker(logdir: str | None) -> Tracker | None:
    """A :class:`Tracker` for ``logdir``, or None when logging is off (an empty ``logdir``)."""
    return Tracker(str(logdir)) if logdir else None


@contextmanager
def closing_tracker(tracker: Tracker | None) -> Iterator[None]:
    try:
        yield
    finally:
        if tracker is not None:
            tracker.close()
