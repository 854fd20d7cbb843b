"""The encoded-dataset cache, keyed by the source and the vocabulary settings."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from rnnsent.config import DataConfig, TextConfig
from rnnsent.data.corpus import Corpus, EncodedCorpus, EncodedSplit
from rnnsent.data.sources import read_corpus
from rnnsent.labels import BINARY_SENTIMENT, LabelSpace
from rnnsent.processes import sweep_temporaries
from rnnsent.text.encoder import encode_corpus
from rnnsent.text.tokenize import tokenize
from rnnsent.text.vocabulary import Vocabulary

CACHE_FORMAT = 3


def default_cache_dir() -> Path:
    """``$RNNSENT_CACHE``, else the user's cache directory."""
    configured = os.environ.get("RNNSENT_CACHE")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("rnnsent"))


def load_encoded(source: Path, config: TextConfig, cache_dir: Path | None = None, quiet: bool = False,
                 data: DataConfig = DataConfig()) -> EncodedCorpus:
    """Read and encode a source, through a cache keyed by the source, the text and the label settings.

    The vocabulary and the label space are built on the training split only; a test label the
    training split lacks is an error naming where it is. Padding and truncation are not part
    of the cache: they are applied later, per run, by :meth:`EncodedSplit.padded`.
    """
    cache_dir = cache_dir or default_cache_dir()
    key = _cache_key(source, config, data)
    cached = cache_dir / "encoded" / f"{key}.npz"
    if cached.exists():
        try:
            return _read_cache(cached)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # A damaged cache entry is rebuilt below.
    if not quiet:
        print(f"reading {source} (first time; cached afterwards)", file=sys.stderr)
    encoded = encode(read_corpus(source, data=data), config, data)
    try:
        _write_cache(cached, encoded)
    except OSError as error:
        print(f"warning: could not write the dataset cache {cached}: {error}", file=sys.stderr)
    return encoded


def encode(corpus: Corpus, config: TextConfig, data: DataConfig = DataConfig()) -> EncodedCorpus:
    """A corpus of raw texts and labels encoded with the vocabulary and label space of its training split."""
    vocabulary = Vocabulary.build((tokenize(text, config.punctuation) for text in corpus.train.texts), config.num_words,
                                  config.index_from)
    places = [corpus.train.place(i) for i in range(len(corpus.train))]
    labels = LabelSpace.infer(corpus.train.labels, data.task, places, data.label_separator or None)
    targets = {name: labels.encode(split.labels, [split.place(i) for i in range(len(split))]).astype(
        np.float32 if labels.task == "multilabel" else np.int64) for name, split in (("train", corpus.train), ("test", corpus.test))}
    # Groups (films) as numbers, in order of first appearance in the training split.
    groups = np.unique(corpus.train.groups, return_inverse=True)[1].astype(np.int64) if corpus.train.groups else None
    return EncodedCorpus(
        vocabulary,
        EncodedSplit(*encode_corpus(corpus.train.texts, vocabulary, config.punctuation), targets["train"], groups),
        EncodedSplit(*encode_corpus(corpus.test.texts, vocabulary, config.punctuation), targets["test"]),
        labels,
    )


def _cache_key(source: Path, config: TextConfig, data: DataConfig) -> str:
    stat = source.stat()
    identity = {
        "format": CACHE_FORMAT,
        "source": str(source.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "num_words": config.num_words,
        "index_from": config.index_from,
        "data": dataclasses.asdict(data),
        # Only when it is not the default, so that the caches written before the setting existed are still found.
        **({"punctuation": config.punctuation} if config.punctuation != "drop" else {}),
    }
    if source.is_dir():
        identity["tree"] = sorted((str(p.relative_to(source)), p.stat().st_mtime_ns) for p in source.rglob("*"))
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def _write_cache(path: Path, corpus: EncodedCorpus) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    vocabulary = json.dumps({"index_from": corpus.vocabulary.index_from, "words": corpus.vocabulary.words,
                             "labels": corpus.labels.to_dict()})
    arrays = {"vocabulary": np.frombuffer(vocabulary.encode("utf-8"), dtype=np.uint8)}
    for name in ("train", "test"):
        split: EncodedSplit = getattr(corpus, name)
        arrays.update({f"{name}_flat": split.flat, f"{name}_offsets": split.offsets, f"{name}_labels": split.labels})
        if split.groups is not None:
            arrays[f"{name}_groups"] = split.groups
    sweep_temporaries(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **arrays)
        os.replace(temporary, path)
    except BaseException:
        # A full disk must not stay full of a half-written cache entry.
        Path(temporary).unlink(missing_ok=True)
        raise


def _read_cache(path: Path) -> EncodedCorpus:
    with np.load(path, allow_pickle=False) as arrays:
        vocabulary = json.loads(arrays["vocabulary"].tobytes().decode("utf-8"))
        splits = {
            name: EncodedSplit(arrays[f"{name}_flat"], arrays[f"{name}_offsets"], arrays[f"{name}_labels"],
                               arrays[f"{name}_groups"] if f"{name}_groups" in arrays.files else None)
            for name in ("train", "test")
        }
    labels = LabelSpace.from_dict(vocabulary["labels"]) if "labels" in vocabulary else BINARY_SENTIMENT
    return EncodedCorpus(Vocabulary(tuple(vocabulary["words"]), vocabulary["index_from"]), splits["train"], splits["test"],
                         labels)
