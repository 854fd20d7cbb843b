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


class MissingExtraError(ValueError):
    """An optional dependency group is not installed; the message names the ``pip install`` to run."""
