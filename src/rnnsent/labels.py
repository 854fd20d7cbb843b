"""The label names of binary sentiment models."""

from __future__ import annotations

LABELS = ("negative", "positive")
