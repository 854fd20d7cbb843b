"""The "wide" branch: a bag of word n-grams read straight from the id rows.

A review's unigrams and hashed bigrams (and trigrams, with ``ngram_order`` 3) each own one
learned weight; the branch's logit is the mean weight of the n-grams a review contains,
which is a fastText-style linear model (embedding size 1). It is added to the recurrent
model's logit and trained jointly, so the recurrent encoder only has to learn what a bag
of phrases cannot see. N-grams are built from the same padded id rows the recurrent
encoder reads, so no extra preprocessing is stored and prediction needs nothing new.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnsent.text import PAD_ID

# Multipliers of the n-gram hash. Partial hashes stay below 2**31 before each
# multiplication, so no product overflows int64 for any vocabulary size the config allows.
HASH_MODULUS = 2_147_483_647
HASH_MULTIPLIER = 1_000_003


def ngram_ids(ids: torch.Tensor, vocab_size: int, buckets: int, order: int) -> torch.Tensor:
    """Feature ids ``(batch, order * time)`` of every n-gram up to ``order``, -1 where absent.

    Unigram ``w`` has feature id ``w``; an n-gram of 2 or more words has ``vocab_size +
    hash(words) % buckets``. An n-gram is absent when any of its words is padding, so the
    features do not depend on how much padding a row has, or on which side it is.
    """
    batch, time = ids.shape
    present = ids != PAD_ID  # (batch, time)
    features = [torch.where(present, ids, torch.full_like(ids, -1))]
    partial = ids % HASH_MODULUS
    valid = present
    for n in range(2, order + 1):
        # The n-gram starting at t: extend the (n-1)-gram starting at t with the word at t+n-1.
        following = ids[:, n - 1:]  # (batch, time - n + 1)
        partial = (partial[:, : time - n + 1] * HASH_MULTIPLIER + following) % HASH_MODULUS
        valid = valid[:, : time - n + 1] & present[:, n - 1:]
        hashed = torch.where(valid, vocab_size + partial % buckets, torch.full_like(partial, -1))
        features.append(nn.functional.pad(hashed, (0, n - 1), value=-1))  # back to (batch, time)
    return torch.cat(features, dim=1)


class NgramBranch(nn.Module):
    """Mean of one learned weight per present n-gram: a logit ``(batch,)`` per id row."""

    def __init__(self, vocab_size: int, buckets: int, order: int, lr_scale: float = 1.0) -> None:
        super().__init__()
        self.vocab_size, self.buckets, self.order = vocab_size, buckets, order
        # The logit is lr_scale times the mean weight. Adam and RMSprop step each weight by
        # about the learning rate whatever its gradient's size, so this fixed factor makes the
        # branch learn lr_scale times faster than the recurrent network: a linear model over
        # sparse features wants a far larger learning rate than a recurrent one.
        self.lr_scale = lr_scale
        # Row i is the weight of feature id i; the last row is a fixed zero for absent n-grams.
        self.weight = nn.Embedding(vocab_size + buckets + 1, 1, padding_idx=vocab_size + buckets)
        nn.init.zeros_(self.weight.weight)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        features = ngram_ids(ids, self.vocab_size, self.buckets, self.order)  # (batch, features)
        present = features >= 0
        rows = torch.where(present, features, torch.full_like(features, self.weight.padding_idx))
        total = (self.weight(rows).squeeze(-1) * present).sum(dim=1)  # (batch,)
        return self.lr_scale * total / present.sum(dim=1).clamp(min=1)
