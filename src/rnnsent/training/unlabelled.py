"""The unlabelled texts of a run, and the rows of them drawn with each training batch.

With ``unlabelled_batch_size`` U, every optimiser step also reads U unlabelled texts for the
virtual adversarial and entropy losses (:mod:`rnnsent.training.objectives`). Which texts is a
pure function of ``(seed, step)``: the pool is read in passes, each cut into batches as the
training reviews' epochs are (:func:`rnnsent.data.batches.epoch_batches`, of similar lengths
with ``bucket_by_length``, so that a batch is not computed to the width of its longest text
for nothing), in an order of its own; the pass's one short batch is left out (its texts
come in other passes), and step ``s`` takes the next batch. The step count a checkpoint holds
therefore says where the sampler stands, and a resumed run draws what the uninterrupted one
would. Under DistributedDataParallel every rank takes its interleaved share of the same U
texts, as with the labelled batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rnnsent.config import RunConfig
from rnnsent.data.batches import epoch_batches
from rnnsent.data.corpus import EncodedSplit
from rnnsent.data.unlabelled import read_unlabelled_texts
from rnnsent.errors import ConfigError, DataError
from rnnsent.text.encoder import encode_corpus
from rnnsent.text.vocabulary import Vocabulary
from rnnsent.training.distributed import World
from rnnsent.training.objectives import without_distillation

# The stream number of the unlabelled batches' order (see epoch_batches), so that it is not the
# training reviews'.
SHUFFLE_STREAM = 1


@dataclass
class UnlabelledRows:
    """One step's unlabelled texts on the training device: ids ``(u, time)``, lengths ``(u,)``, each
    text's place in the pool ``rows (u,)``, and this process's share weight under DDP (None alone)."""

    ids: torch.Tensor
    lengths: torch.Tensor
    rows: np.ndarray
    loss_scale: float | None = None


def unlabelled_pool(config: RunConfig, source: Path, vocabulary: Vocabulary,
                    log: Callable[[str], None] = lambda message: None) -> tuple[RunConfig, EncodedSplit | None]:
    """The recipe and the unlabelled texts a run draws from, encoded with its vocabulary (None
    when it draws none).

    When distillation is the only loss that reads unlabelled texts and there are none (``best``
    on a person's own file), the run goes on without it: the recipe comes back with
    ``distill_weight`` and ``unlabelled_batch_size`` 0 (a copy; the saved recipe says so) and a
    note is logged. Raises :class:`DataError` when another loss asks for unlabelled batches and
    neither ``--unlabelled-data`` nor the source (aclImdb's ``train/unsup``) has any texts.
    """
    train = config.train
    if not train.unlabelled_batch_size:
        return config, None
    started = time.perf_counter()
    texts, where = read_unlabelled_texts(source, config.data)
    if not texts and train.distill_weight and not (train.virtual_adversarial_weight or train.entropy_weight):
        log(f"note: {source} has no unlabelled texts, so the network learns without distillation from the n-gram "
            "regression (name some with --unlabelled-data PATH)")
        return without_distillation(config), None
    if not texts:
        raise DataError(f"{source} has no unlabelled texts for --unlabelled-batch-size; name some with "
                        "--unlabelled-data PATH (a .txt file of one text a line, a .jsonl/.csv file or a folder)")
    pool = encode_unlabelled(texts, vocabulary, config.text.punctuation)
    log(f"{len(texts):,} unlabelled texts from {where}, read and encoded in {time.perf_counter() - started:.1f}s")
    return config, pool


def encode_unlabelled(texts: list[str], vocabulary: Vocabulary, punctuation: str = "drop") -> EncodedSplit:
    """Unlabelled ``texts`` encoded with the run's vocabulary (and its ``punctuation`` setting),
    as a split whose labels are all 0."""
    flat, offsets = encode_corpus(texts, vocabulary, punctuation)
    return EncodedSplit(flat, offsets, np.zeros(len(texts), dtype=np.int64))


class UnlabelledSampler:
    """Each step's unlabelled rows from ``pool`` (see the module docstring)."""

    def __init__(self, pool: EncodedSplit | None, config: RunConfig, world: World = World()) -> None:
        self.batch_size = config.train.unlabelled_batch_size
        if pool is None or not len(pool):
            raise DataError("--unlabelled-batch-size needs unlabelled texts: name them with --unlabelled-data PATH")
        if self.batch_size > len(pool):
            raise ConfigError(f"--unlabelled-batch-size {self.batch_size} is more than the {len(pool)} unlabelled "
                              f"texts; use at most {len(pool)}")
        if self.batch_size < world.size:
            raise ConfigError(f"--unlabelled-batch-size {self.batch_size} is smaller than the {world.size} "
                              "processes that share it; use at least one text per process")
        self.pool, self.config, self.world = pool, config, world
        self.lengths = np.diff(pool.offsets) if config.train.bucket_by_length else None
        self.per_pass = len(pool) // self.batch_size  # full batches in each pass
        self._pass: tuple[int, list[np.ndarray]] | None = None  # (pass, its batches): the last one drawn

    def global_rows(self, step: int) -> np.ndarray:
        """The places in the pool ``(U,)`` of step ``step``'s texts, over all processes."""
        number, index = divmod(step, self.per_pass)
        if self._pass is None or self._pass[0] != number:
            batches = epoch_batches(len(self.pool), self.batch_size, self.config.train.seed, number, self.lengths,
                                    stream=SHUFFLE_STREAM)
            self._pass = (number, [batch for batch in batches if len(batch) == self.batch_size])
        return self._pass[1][index]

    def batch(self, step: int) -> UnlabelledRows:
        """This process's share of step ``step``'s texts, padded as the recipe pads and on the training device."""
        rows = self.global_rows(step)
        share = rows[self.world.rank::self.world.size]
        ids, lengths = self.pool.subset(share).padded(self.config.text)
        # As with the labelled batches: trailing padding is cut only for a model that reads true lengths.
        width = max(int(lengths.max()), 1) if self.config.model.use_lengths else ids.shape[1]
        scale = len(share) * self.world.size / len(rows) if self.world.distributed else None
        device = self.world.device
        return UnlabelledRows(torch.from_numpy(ids[:, :width]).to(device), torch.from_numpy(lengths).to(device),
                              share, scale)
