"""Compositions of the recurrent network with the n-gram branch.

Both hold the network (``network``) and the branch (``ngrams``) side by side and read the
same id rows; they differ in how the two logits make one:

* :class:`JointClassifier` (``ngram_fit joint``): the sum, both parts trained together.
* :class:`StackedClassifier` (``ngram_fit stacked``): a blend ``blend[0] * recurrent +
  blend[1] * ngrams + blend[2]`` (with K outputs, ``blend[2:]``: one intercept per output)
  whose numbers are fitted on validation reviews after
  the network trains (:func:`rnnsent.training.ngram_regression.fit_blend`); the branch is fitted
  on its own before (:func:`rnnsent.training.ngram_regression.fit_ngram_regression`).
"""

from __future__ import annotations

import torch
from torch import nn

from rnnsent.model.loss import classification_loss
from rnnsent.model.ngrams import NgramBranch
from rnnsent.model.recurrent import RecurrentClassifier


class _TwoPartClassifier(nn.Module):
    """A recurrent network and an n-gram branch over the same id rows ``(batch, time)``."""

    def __init__(self, network: RecurrentClassifier, ngrams: NgramBranch) -> None:
        super().__init__()
        self.network = network
        self.ngrams = ngrams
        self.config, self.outputs, self.task = network.config, network.outputs, network.task

    def part_logits(self, ids: torch.Tensor, lengths: torch.Tensor | None = None,
                    embedded: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Each part's own logit ``(batch,)``: ``recurrent`` (read from ``embedded`` when given) and ``ngrams``."""
        return {"recurrent": self.network(ids, lengths, embedded=embedded)[0], "ngrams": self.ngrams(ids)}

    def combine(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, ids: torch.Tensor, lengths: torch.Tensor | None = None, labels: torch.Tensor | None = None,
        embedded: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, mean loss or None)`` for id rows ``(batch, time)`` (see :mod:`rnnsent.model.loss`); the
        network reads ``embedded`` ``(batch, time, embedding)`` instead of its embedding of the ids when given."""
        logits = self.combine(self.part_logits(ids, lengths, embedded))
        return logits, classification_loss(logits, labels, self.task, self.network.loss_weight)


class JointClassifier(_TwoPartClassifier):
    """The network and a fastText-style n-gram branch trained together; the logit is their sum."""

    def combine(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's logit ``(batch,)``: the sum of the parts' logits."""
        return parts["recurrent"] + parts["ngrams"]


class StackedClassifier(_TwoPartClassifier):
    """The network and a separately fitted n-gram regression, blended by three fitted numbers."""

    def __init__(self, network: RecurrentClassifier, ngrams: NgramBranch) -> None:
        super().__init__(network, ngrams)
        assert ngrams.binary, "a stacked model's n-gram branch is the binary regression"
        # Until the blend is fitted (after the network trains) it is (1, 0, 0): the network
        # trains on its own loss, not on what the n-gram regression leaves over, because on
        # the reviews the regression was fitted to it is nearly always right and would leave
        # nothing to learn.
        # With K outputs it is (1, 0, 0, ..., 0): a, c, then one intercept per output.
        self.register_buffer("blend", torch.tensor([1.0, 0.0, 0.0]) if self.outputs == 1
                             else torch.cat([torch.tensor([1.0]), torch.zeros(1 + self.outputs)]))

    def combine(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's logit ``(batch,)``: ``blend[0] * recurrent + blend[1] * ngrams + blend[2]``
        (``(batch, K)`` with K outputs: ``blend[2:]`` adds one intercept per output)."""
        if self.outputs == 1:
            return self.blend[0] * parts["recurrent"] + self.blend[1] * parts["ngrams"] + self.blend[2]
        return self.blend[0] * parts["recurrent"] + self.blend[1] * parts["ngrams"] + self.blend[2:]
