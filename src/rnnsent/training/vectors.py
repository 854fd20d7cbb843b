"""Word vectors from unlabelled text, to initialise a model's embedding.

The vectors are a truncated SVD of the positive pointwise-mutual-information (PPMI) matrix
of word co-occurrences within a small window: a count-based relative of word2vec that is
deterministic and takes a minute or two on a laptop CPU. They are built from the training
reviews and IMDB's 50,000 unlabelled reviews, never from the test reviews, with the
training vocabulary, so row ``i`` is the vector of the word with id ``i``.

A vectors file is safetensors with one tensor, ``embedding`` ``(vocab_size, dim)``, and the
SHA-256 of the vocabulary in its metadata, so that it cannot be loaded for another vocabulary.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rnnsent.artifact.files import read_metadata, read_tensors, tensors_to_bytes, write_bytes_atomic
from rnnsent.errors import ArtifactError
from rnnsent.text.vocabulary import PAD_ID, START_ID, Vocabulary

VECTORS_FORMAT = "rnnsent-word-vectors"
CONTEXT_SMOOTHING = 0.75  # word2vec's exponent on context frequencies, which tames rare contexts


def vocabulary_fingerprint(vocabulary: Vocabulary) -> str:
    """SHA-256 of the words in id order and their first id."""
    data = json.dumps({"index_from": vocabulary.index_from, "words": list(vocabulary.words)}).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def cooccurrence(
    flat: np.ndarray, offsets: np.ndarray, vocab_size: int, window: int, counts: torch.Tensor | None = None
) -> torch.Tensor:
    """Weighted co-occurrence counts ``(vocab, vocab)`` float32 of words at most ``window`` apart.

    ``flat``/``offsets`` hold reviews as ids (review ``i`` is ``flat[offsets[i]:offsets[i+1]]``).
    A pair ``distance`` words apart counts ``1 / distance``, as in GloVe. Pairs across two
    reviews, and pairs with padding or the start token, are not counted. The matrix is
    symmetric: each pair is counted in both directions. With ``counts`` given, the counts
    are added to it in place (it saves a second vocab-by-vocab table).
    """
    ids = torch.from_numpy(np.asarray(flat, dtype=np.int64))
    review = torch.from_numpy(np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)))  # review of each token
    usable = (ids != PAD_ID) & (ids != START_ID) & (ids < vocab_size)
    if counts is None:
        counts = torch.zeros(vocab_size, vocab_size, dtype=torch.float32)
    assert counts.shape == (vocab_size, vocab_size) and counts.is_contiguous()
    flat_counts = counts.view(-1)
    for distance in range(1, window + 1):
        left, right = ids[:-distance], ids[distance:]
        keep = usable[:-distance] & usable[distance:] & (review[:-distance] == review[distance:])
        left, right = left[keep], right[keep]
        weight = torch.full((len(left),), 1.0 / distance)
        flat_counts.index_add_(0, left * vocab_size + right, weight)
        flat_counts.index_add_(0, right * vocab_size + left, weight)
    return counts


def ppmi_svd_vectors(counts: torch.Tensor, dim: int, seed: int = 0) -> torch.Tensor:
    """Word vectors ``(vocab, dim)`` from co-occurrence counts: SVD of the PPMI matrix.

    ``counts`` is overwritten (with the PPMI matrix) to spare a second vocab-by-vocab table.

    Rows of words never seen get zero vectors. Each vector is ``U * sqrt(S)``, the
    symmetric split of the singular values that works best for similarity, then the whole
    table is scaled to the standard deviation of the embedding's default initialisation.
    A vocabulary of fewer words than ``dim`` spans only that many dimensions: the columns
    beyond them are zero (the embedding learns them in training).
    """
    total = counts.sum()
    if total <= 0:
        raise ValueError("no co-occurring words in the unlabelled text; give it more text")
    row = counts.sum(dim=1, keepdim=True)  # (vocab, 1)
    unseen = row.squeeze(1) == 0
    context = counts.sum(dim=0, keepdim=True).pow(CONTEXT_SMOOTHING)  # (1, vocab)
    context = context / context.sum()
    # PPMI = max(0, log(p(w, c) / (p(w) p_smoothed(c)))), computed in place: the table can be 1.6 GB.
    pmi = counts.div_(total).div_(row.div(total).clamp(min=1e-30)).div_(context.clamp(min=1e-30))
    pmi.clamp_(min=1.0).log_()
    rank = min(dim, pmi.shape[0])
    if dim + 10 <= pmi.shape[0]:
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            left, singular, _ = torch.svd_lowrank(pmi, q=dim + 10, niter=2)
        finally:
            torch.random.set_rng_state(generator_state)
    else:
        # Too few words for the randomised SVD's oversampling: the exact one is cheap here.
        left, singular, _ = torch.linalg.svd(pmi)
    vectors = torch.zeros(pmi.shape[0], dim)
    vectors[:, :rank] = left[:, :rank] * singular[:rank].sqrt()  # (vocab, dim)
    vectors[unseen] = 0.0
    # Match the uniform(-0.05, 0.05) embedding initialisation's scale (std 0.05 / sqrt(3)).
    return vectors * (0.05 / math.sqrt(3.0) / vectors[:, :rank].std().clamp(min=1e-12))


def build_vectors(
    splits: list[tuple[np.ndarray, np.ndarray]],
    vocab_size: int,
    dim: int,
    window: int = 5,
    log: Callable[[str], None] = lambda message: None,
) -> torch.Tensor:
    """Word vectors ``(vocab_size, dim)`` from reviews given as ``(flat, offsets)`` pairs."""
    if window < 1:
        raise ValueError(f"--window must be at least 1; got {window}")
    # Ids above the largest one in the text never occur (a small data set's vocabulary can be
    # far below --num-words): the table covers the ids up to it, and their rows are zero.
    seen = min(vocab_size, 1 + max((int(flat.max()) for flat, _ in splits if len(flat)), default=0))
    counts = torch.zeros(seen, seen, dtype=torch.float32)
    for flat, offsets in splits:
        cooccurrence(flat, offsets, seen, window, counts)
    log(f"co-occurrences counted: {int((counts > 0).sum()):,} distinct word pairs")
    words = int((counts.sum(dim=1) > 0).sum())
    if words < dim:
        log(f"note: {words} distinct words span only {words} of the {dim} embedding dimensions; the rest start at zero")
    vectors = ppmi_svd_vectors(counts, dim)
    if seen == vocab_size:
        return vectors
    return torch.cat([vectors, torch.zeros(vocab_size - seen, dim)])


def pretraining_reviews(corpus, source: Path, config, limit: int = 0,
                        unlabelled=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(flat, offsets)`` id arrays of the reviews word vectors and the language model are built from.

    These are the training reviews a run of ``config`` trains on (the same ``limit`` subset,
    minus the held-out validation split, so a model selected on that split never saw its
    text) and the run's unlabelled texts: ``unlabelled`` (an :class:`EncodedSplit`) when the
    run has already read them for its unlabelled batches, else those of ``--unlabelled-data``
    or the source (:func:`rnnsent.data.unlabelled.read_unlabelled_texts`), read and encoded
    here. Test reviews are never used.
    """
    from rnnsent.data.splits import training_splits
    from rnnsent.data.unlabelled import read_unlabelled_texts
    from rnnsent.training.unlabelled import encode_unlabelled

    train, _ = training_splits(corpus.train, config.train.validation_split, limit, config.train.validation_by)
    reviews = [(train.flat, train.offsets)]
    if unlabelled is None:
        unlabelled = encode_unlabelled(read_unlabelled_texts(source, config.data)[0], corpus.vocabulary,
                                       config.text.punctuation)
    if len(unlabelled):
        reviews.append((unlabelled.flat, unlabelled.offsets))
    return reviews


def save_vectors(path: Path, vectors: torch.Tensor, vocabulary: Vocabulary) -> Path:
    """Write word vectors with their vocabulary's fingerprint."""
    metadata = {"format": VECTORS_FORMAT, "vocabulary_sha256": vocabulary_fingerprint(vocabulary)}
    write_bytes_atomic(Path(path), tensors_to_bytes({"embedding": vectors.float()}, metadata))
    return Path(path)


def load_vectors(path: Path, vocabulary: Vocabulary, vocab_size: int, dim: int) -> torch.Tensor:
    """Word vectors ``(vocab_size, dim)`` from :func:`save_vectors`, checked against the vocabulary."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--embeddings {path}: no such file; make one with 'rnnsent pretrain --out {path}'")
    metadata = read_metadata(path)
    if metadata.get("format") != VECTORS_FORMAT:
        raise ArtifactError(f"{path}: not an rnnsent word-vectors file; make one with 'rnnsent pretrain'")
    if metadata.get("vocabulary_sha256") != vocabulary_fingerprint(vocabulary):
        raise ValueError(f"--embeddings {path} was built for another vocabulary; rerun 'rnnsent pretrain' "
                         "with the same --num-words and data")
    vectors = read_tensors(path).get("embedding")
    if vectors is None or tuple(vectors.shape) != (vocab_size, dim):
        shape = None if vectors is None else tuple(vectors.shape)
        raise ValueError(f"--embeddings {path} holds vectors of shape {shape}; the model needs "
                         f"({vocab_size}, {dim}): set --embedding-dim to match")
    return vectors


def pretrain_vectors(config, source: Path, out: Path, log: Callable[[str], None] = lambda message: None) -> Path:
    """Build the word vectors a run of ``config`` would build, from ``source``, and write them to ``out``."""
    import time

    from rnnsent.data.cache import load_encoded

    started = time.perf_counter()
    corpus = load_encoded(source, config.text, data=config.data)
    reviews = pretraining_reviews(corpus, source, config)
    counts = [len(offsets) - 1 for _, offsets in reviews]
    log(f"{counts[0]} training and {sum(counts[1:])} unlabelled texts (validation and test texts are not used)")
    vectors = build_vectors(reviews, config.text.num_words, config.model.embedding_dim, config.model.pretrain_window, log=log)
    save_vectors(out, vectors, corpus.vocabulary)
    log(f"word vectors {tuple(vectors.shape)} written to {out} in {time.perf_counter() - started:.1f}s")
    return out
