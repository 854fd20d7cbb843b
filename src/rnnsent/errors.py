"""Errors a user can cause. Each is a ``ValueError`` whose message is one line saying what to do."""

from __future__ import annotations


class DataError(ValueError):
    """A problem with a data source that the user can fix; the message says how."""


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite."""


class ArtifactError(ValueError):
    """A model directory or checkpoint that cannot be used; the message names the file."""


class InputError(ValueError):
    """A problem in the texts to score that the user can fix; the message says where."""


class ConfigError(ValueError):
    """A setting that is unknown, of the wrong type or out of range."""


class UsageError(ValueError):
    """Arguments that do not go together, or a missing one; the message says what to pass."""
