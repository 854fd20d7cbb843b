"""Building a model from its config."""

from __future__ import annotations

from torch import nn

from rnnsent.config import ModelConfig
from rnnsent.model.recurrent import RecurrentClassifier


def build_model(config: ModelConfig, vocab_size: int, sparse_embedding: bool = False) -> nn.Module:
    """The classifier a :class:`ModelConfig` describes, with freshly initialised weights."""
    return RecurrentClassifier(config, vocab_size, sparse_embedding=sparse_embedding)


def recurrent_network(model: nn.Module) -> RecurrentClassifier:
    """The recurrent network inside ``model`` (whose embedding word vectors initialise)."""
    return model
