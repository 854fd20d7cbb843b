"""Errors a user can cause. Each is a ``ValueError`` whose message is one line saying what to do."""

from __future__ import annotations


class DataError(ValueError):
    """A problem in data the user gave, a training source or texts to score, that they can fix.

    The message says where (the file, and the line when there is one) and what to do.
    """


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite."""


class ArtifactError(ValueError):
    """A model directory or checkpoint that cannot be used; the message names the file."""


class ConfigError(ValueError):
    """A setting that is unknown, of the wrong type or out of range."""


class UsageError(ValueError):
    """Arguments that do not go together, or a missing one; the message says what to pass."""


class MissingExtraError(ValueError):
    """An optional dependency group is not installed; the message names the ``pip install`` to run."""


# Texts to score are read by the same reader as training data (rnnsent.data.records), so a
# problem in them is the same error; the second name is kept for the code that scores texts.
InputError = DataError


class TrainingInterrupted(Exception):
    """Raised after a SIGINT/SIGTERM once the checkpoint is safely written.

    Not a ``ValueError``: the run can continue with ``--resume``; nothing needs fixing.
    """
