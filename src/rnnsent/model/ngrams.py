"""The "wide" branch: a bag of word n-grams read straight from the id rows.

A review's unigrams and hashed bigrams (and trigrams, with ``ngram_order`` 3) each own one
weight. The branch learns in one of two ways (``ngram_fit``):

* ``joint``: the logit is the mean weight of the n-grams a review contains, a fastText-style
  linear model (embedding size 1), added to the recurrent model's logit and trained with it.
* ``stacked``: the logit is the sum of the weights of the distinct n-grams a review contains
  plus a bias: a logistic regression over n-gram presence, fitted on its own before the
  network trains (see :mod:`rnnsent.training.ngram_regression`).
* ``ordinal`` (K ordered labels, such as star ratings): K-1 such sums, one per cut between
  neighbouring labels (the logit of "the label is above cut j"), each its own stacked
  regression; a K x (K-1) readout turns the K-1 cut logits into the K labels' logits.

N-grams are built from the same padded id rows the recurrent encoder reads, so no extra
preprocessing is stored and prediction needs nothing new.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rnnsent.text.vocabulary import PAD_ID

# Multipliers of the n-gram hash. Partial hashes stay below 2**31 before each
# multiplication, so no product overflows int64 for any vocabulary size the config allows.
HASH_MODULUS = 2_147_483_647
HASH_MULTIPLIER = 1_000_003
# Odd multipliers of the bit mixer (below 2**31, so products of values below 2**31 fit int64).
MIX_MULTIPLIERS = (0x2C1B3C6D, 0x297A2D39)


def mix_bits(values: torch.Tensor) -> torch.Tensor:
    """Scramble hashes ``0 <= value < HASH_MODULUS`` (xor-shift, multiply, xor-shift, multiply, xor-shift).

    The polynomial hash is linear, so n-grams of frequent (small) ids land in overlapping runs
    of buckets and collide more often than random keys would; mixing the bits first makes
    ``hash % buckets`` collide no more than random (measured on IMDB's 4.3 million distinct
    bigrams and trigrams: 3.33 million occupied of 8 million buckets, against 2.82 unmixed).
    """
    values = values ^ (values >> 15)
    values = (values * MIX_MULTIPLIERS[0]) % HASH_MODULUS
    values = values ^ (values >> 12)
    values = (values * MIX_MULTIPLIERS[1]) % HASH_MODULUS
    return values ^ (values >> 15)


def ngram_ids(ids: torch.Tensor, vocab_size: int, buckets: int, order: int, mixed: bool = False) -> torch.Tensor:
    """Feature ids ``(batch, order * time)`` of every n-gram up to ``order``, -1 where absent.

    Unigram ``w`` has feature id ``w``; an n-gram of 2 or more words has ``vocab_size +
    hash(words) % buckets``, with the hash's bits scrambled by :func:`mix_bits` when ``mixed``
    (the stacked branch; the joint one keeps the plain hash its saved models were trained
    with). An n-gram is absent when any of its words is padding, so the features do not
    depend on how much padding a row has, or on which side it is.
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
        key = mix_bits(partial) if mixed else partial
        hashed = torch.where(valid, vocab_size + key % buckets, torch.full_like(partial, -1))
        features.append(nn.functional.pad(hashed, (0, n - 1), value=-1))  # back to (batch, time)
    return torch.cat(features, dim=1)


def _sorted_rows(features: torch.Tensor, bound: int) -> torch.Tensor:
    """``features (batch, features)`` int64, each row sorted ascending; every value is below ``bound``.

    On the CPU, when the values fit 32 bits (the config's ranges keep ``bound`` below 2**31),
    numpy sorts an int32 copy: its vectorised sort is several times faster than torch's, and
    sorted integers are the same whichever sort gives them. A traced forward (ONNX export)
    takes torch's sort, since a tracer records numpy's result as a constant of the example's shape.
    """
    if features.device.type != "cpu" or bound >= 2**31 or torch.jit.is_tracing():
        return features.sort(dim=1).values
    return torch.from_numpy(np.sort(features.numpy().astype(np.int32), axis=1).astype(np.int64))


def distinct_ngram_ids(ids: torch.Tensor, vocab_size: int, buckets: int, order: int) -> torch.Tensor:
    """Like :func:`ngram_ids` (mixed), but each feature id appears once per row (sorted, -1 elsewhere).

    This is the binary "does the review contain this n-gram" view that a logistic regression
    over n-grams reads: a phrase repeated ten times counts once.
    """
    ordered = _sorted_rows(ngram_ids(ids, vocab_size, buckets, order, mixed=True), vocab_size + buckets)
    repeated = torch.zeros_like(ordered, dtype=torch.bool)
    repeated[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    return ordered.masked_fill(repeated, -1)


class NgramBranch(nn.Module):
    """One weight per n-gram feature and output, read as a logit ``(batch,)`` (or ``(batch, K)``
    with K outputs) per id row.

    ``binary=False`` (joint training): ``lr_scale`` times the mean weight of the present
    n-grams, repeats included. ``binary=True`` (stacked fit): the sum of the weights of the
    distinct present n-grams, plus ``bias``. ``ordinal=True`` (a stacked fit for K ordered
    labels): K-1 such sums plus their ``bias``, the cut logits (:meth:`cut_logits`), read as K
    logits through ``readout`` ``(K-1, K)`` and ``readout_bias`` ``(K,)``.
    """

    def __init__(self, vocab_size: int, buckets: int, order: int, lr_scale: float = 1.0, binary: bool = False,
                 outputs: int = 1, ordinal: bool = False) -> None:
        super().__init__()
        assert not ordinal or (binary and outputs > 2), "an ordinal branch is a stacked one for 3 or more labels"
        self.vocab_size, self.buckets, self.order, self.binary = vocab_size, buckets, order, binary
        self.outputs, self.ordinal = outputs, ordinal
        # The logit is lr_scale times the mean weight. Adam and RMSprop step each weight by
        # about the learning rate whatever its gradient's size, so this fixed factor makes the
        # branch learn lr_scale times faster than the recurrent network: a linear model over
        # sparse features wants a far larger learning rate than a recurrent one.
        self.lr_scale = lr_scale
        # Row i is the weight of feature id i; the last row is a fixed zero for absent n-grams.
        # All weights start at zero (drawing nothing from the random generator, so the network
        # built beside the branch starts as it would alone). The stacked fit sets the weights and
        # the intercept; the network's optimiser never touches them, so they are frozen there.
        rows = vocab_size + buckets + 1
        columns = outputs - 1 if ordinal else outputs
        self.weight = nn.Embedding.from_pretrained(torch.zeros(rows, columns), freeze=binary, padding_idx=rows - 1)
        if ordinal:
            self.register_buffer("bias", torch.zeros(columns))
            # Until the readout is fitted (on the validation split, after the network trains),
            # label k's logit is the sum of the cut logits below it: log P(k) - log P(k-1) is
            # then cut k-1's logit, and a higher score on every cut moves the labels up.
            self.register_buffer("readout", torch.ones(columns, outputs).triu(diagonal=1))  # (K-1, K)
            self.register_buffer("readout_bias", torch.zeros(outputs))
        elif binary:
            self.register_buffer("bias", torch.zeros(()) if outputs == 1 else torch.zeros(outputs))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """The branch's logits ``(batch,)`` (or ``(batch, K)``) for id rows ``(batch, time)``."""
        return self.logits(ids)

    def logits(self, ids: torch.Tensor, accumulate: torch.dtype = torch.float32) -> torch.Tensor:
        """:meth:`forward`, each row's weights summed in ``accumulate`` (float64: the rounded sum
        then does not depend on how many absent n-grams, other rows' padding, sit beside them)."""
        columns = self._columns(ids, accumulate)  # (batch, columns)
        if self.ordinal:
            return columns @ self.readout + self.readout_bias
        return columns.squeeze(-1) if self.outputs == 1 else columns

    def word_shares(self, row: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """What each token of one id row ``(time,)`` adds to the branch's output, ``(time,)`` or
        ``(time, K)``: zero where ``words`` ``(time,)`` is false (padding, the start token).

        The shares sum to the output for the row minus the output for the row without its
        words (only the tokens that are not words kept): each n-gram's weight is split equally
        over its occurrences and each occurrence's share over the words it spans (for a joint
        branch, whose output is a mean, what the changed count adds is spread over every word).
        An ordinal branch's cut shares go through its readout, which is linear.
        """
        time = row.shape[0]
        features = ngram_ids(row.unsqueeze(0), self.vocab_size, self.buckets, self.order, mixed=self.binary)[0]
        present = features >= 0  # (order * time,): occurrence j is an n-gram of j // time + 1 words from j % time
        spans = torch.zeros(len(features), time, dtype=torch.float64)  # occurrence x the words it spans
        for n in range(1, self.order + 1):
            block = torch.arange((n - 1) * time, n * time)
            for offset in range(n):
                positions = torch.arange(time) + offset
                inside = positions < time
                spans[block[inside], positions[inside]] = words[positions[inside]].double()
        spans *= present.unsqueeze(1)
        weights = self.weight.weight.detach()[features.clamp(min=0)].double() * present.unsqueeze(1)  # (occ, columns)
        if self.binary:
            # A distinct n-gram counts once, however often it occurs: split its weight over its occurrences.
            _, inverse, counts = torch.unique(features, return_inverse=True, return_counts=True)
            weights = weights / counts[inverse].unsqueeze(1).double()
        else:
            weights = self.lr_scale * weights / present.sum().clamp(min=1)
        covered = spans.sum(dim=1, keepdim=True)
        shares = (spans / covered.clamp(min=1)).T @ (weights * (covered > 0))  # (time, columns)
        without_words = torch.where(words, torch.full_like(row, PAD_ID), row)
        columns = self._columns(torch.stack([row, without_words]), torch.float64)
        total = (columns[0] - columns[1]).double()
        if words.any():
            shares += words.double().unsqueeze(1) * (total - shares.sum(dim=0)) / words.sum()
        if self.ordinal:
            shares = shares @ self.readout.double()
        shares = shares.to(self.weight.weight.dtype)
        return shares.squeeze(1) if self.outputs == 1 else shares

    def _columns(self, ids: torch.Tensor, accumulate: torch.dtype) -> torch.Tensor:
        """The branch's output before an ordinal readout ``(batch, columns)``: a stacked branch's
        sums plus their bias, a joint branch's ``lr_scale`` times its mean weight."""
        total, present = self._sums(ids, accumulate)  # (batch, columns), (batch, features)
        if self.binary:
            return total + self.bias.reshape(1, -1)
        return self.lr_scale * total / present.sum(dim=1, keepdim=True).clamp(min=1)

    def cut_logits(self, ids: torch.Tensor, accumulate: torch.dtype = torch.float32) -> torch.Tensor:
        """An ordinal branch's K-1 cut logits ``(batch, K-1)``: column j scores "the label is above cut j"."""
        assert self.ordinal, "only an ordinal branch has cut logits"
        return self._columns(ids, accumulate)

    def _sums(self, ids: torch.Tensor, accumulate: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's summed weights ``(batch, columns)`` over its n-grams (distinct ones for a
        stacked branch), and which of its feature slots hold one ``(batch, features)``."""
        if self.binary:
            features = distinct_ngram_ids(ids, self.vocab_size, self.buckets, self.order)
        else:
            features = ngram_ids(ids, self.vocab_size, self.buckets, self.order)  # (batch, features)
        present = features >= 0
        rows = torch.where(present, features, torch.full_like(features, self.weight.padding_idx))
        weights = self.weight(rows).to(accumulate)  # (batch, features, columns)
        return (weights * present.unsqueeze(-1)).sum(dim=1).to(self.weight.weight.dtype), present
