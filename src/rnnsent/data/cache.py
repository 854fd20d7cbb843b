"""The encoded-dataset cache, keyed by the source and the vocabulary settings."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from rnnsent.config import TextConfig
from rnnsent.data.corpus import EncodedCorpus, EncodedSplit
from rnnsent.data.sources import read_corpus
from rnnsent.text.encoder import encode_corpus
from rnnsent.text.tokenize import tokenize
from rnnsent.text.vocabulary import Vocabulary

CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$RNNSENT_CACHE``, else the user's cache directory."""
    configured = os.environ.get("RNNSENT_CACHE")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("rnnsent"))


def load_encoded(source: Path, config: TextConfig, cache_dir: Path | None = None, quiet: bool = False) -> EncodedCorpus:
    """Read and encode a source, through a cache keyed by the source and the text settings.

    The vocabulary is built on the training split only. Padding and truncation are not part
    of the cache: they are applied later, per run, by :meth:`EncodedSplit.padded`.
    """
    cache_dir = cache_dir or default_cache_dir()
    key = _cache_key(source, config)
    cached = cache_dir / "encoded" / f"{key}.npz"
    if cached.exists():
        try:
            return _read_cache(cached)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # A damaged cache entry is rebuilt below.
    if not quiet:
        print(f"reading {source} (first time; cached afterwards)", file=sys.stderr)
    corpus = read_corpus(source)
    vocabulary = Vocabulary.build((tokenize(text) for text in corpus.train.texts), config.num_words, config.index_from)
    encoded = EncodedCorpus(
        vocabulary,
        EncodedSplit(*encode_corpus(corpus.train.texts, vocabulary), corpus.train.labels),
        EncodedSplit(*encode_corpus(corpus.test.texts, vocabulary), corpus.test.labels),
    )
    try:
        _write_cache(cached, encoded)
    except OSError as error:
        print(f"warning: could not write the dataset cache {cached}: {error}", file=sys.stderr)
    return encoded


def _cache_key(source: Path, config: TextConfig) -> str:
    stat = source.stat()
    identity = {
        "format": CACHE_FORMAT,
        "source": str(source.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "num_words": config.num_words,
        "index_from": config.index_from,
    }
    if source.is_dir():
        identity["tree"] = sorted((str(p.relative_to(source)), p.stat().st_mtime_ns) for p in source.rglob("*"))
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def _write_cache(path: Path, corpus: EncodedCorpus) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    vocabulary = json.dumps({"index_from": corpus.vocabulary.index_from, "words": corpus.vocabulary.words})
    arrays = {"vocabulary": np.frombuffer(vocabulary.encode("utf-8"), dtype=np.uint8)}
    for name in ("train", "test"):
        split: EncodedSplit = getattr(corpus, name)
        arrays.update({f"{name}_flat": split.flat, f"{name}_offsets": split.offsets, f"{name}_labels": split.labels})
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "wb") as out:
        np.savez(out, **arrays)
    os.replace(temporary, path)


def _read_cache(path: Path) -> EncodedCorpus:
    with np.load(path, allow_pickle=False) as arrays:
        vocabulary = json.loads(arrays["vocabulary"].tobytes().decode("utf-8"))
        splits = {
            name: EncodedSplit(arrays[f"{name}_flat"], arrays[f"{name}_offsets"], arrays[f"{name}_labels"])
            for name in ("train", "test")
        }
    return EncodedCorpus(Vocabulary(tuple(vocabulary["words"]), vocabulary["index_from"]), splits["train"], splits["test"])
