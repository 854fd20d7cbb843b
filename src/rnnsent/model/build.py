"""Building a model from its config, and finding its parts.

A config without n-grams gives a plain :class:`RecurrentClassifier`; with n-grams, the
network composed with an :class:`NgramBranch`, summed (``ngram_fit joint``) or blended
(``ngram_fit stacked`` or ``ordinal``).
"""

from __future__ import annotations

from typing import Union

from rnnsent.config import STACKED_FITS, ModelConfig, resolve_ngram_fit
from rnnsent.labels import BINARY_SENTIMENT, LabelSpace
from rnnsent.model.composed import JointClassifier, StackedClassifier
from rnnsent.model.ngrams import NgramBranch
from rnnsent.model.recurrent import RecurrentClassifier

# Every model build_model makes: each has forward(ids, lengths, labels) -> (logits, loss),
# part_logits(ids, lengths), combine(parts) and .config.
Classifier = Union[RecurrentClassifier, JointClassifier, StackedClassifier]


def build_model(config: ModelConfig, vocab_size: int, sparse_embedding: bool = False,
                labels: LabelSpace = BINARY_SENTIMENT) -> Classifier:
    """The classifier a :class:`ModelConfig` describes for the label space ``labels``, freshly initialised.

    ``sparse_embedding`` gives the recurrent network's embedding sparse gradients.
    """
    outputs = labels.num_outputs
    network = RecurrentClassifier(config, vocab_size, sparse_embedding, outputs, labels.task)
    if not config.ngram_buckets:
        return network
    fit = resolve_ngram_fit(config.ngram_fit, labels.is_ordinal)
    assert fit != "ordinal" or labels.is_ordinal, "an ordinal n-gram fit needs three or more ordered labels"
    stacked = fit in STACKED_FITS
    ngrams = NgramBranch(vocab_size, config.ngram_buckets, config.ngram_order, config.ngram_lr_scale, binary=stacked,
                         outputs=outputs, ordinal=fit == "ordinal")
    return StackedClassifier(network, ngrams) if stacked else JointClassifier(network, ngrams)


def recurrent_network(model: Classifier) -> RecurrentClassifier:
    """The recurrent network inside ``model`` (the model itself when it has no other part)."""
    if isinstance(model, (JointClassifier, StackedClassifier)):
        return model.network
    return model


def ngram_branch(model: Classifier) -> NgramBranch | None:
    """The n-gram branch of ``model``, or None when it has none."""
    if isinstance(model, (JointClassifier, StackedClassifier)):
        return model.ngrams
    return None
