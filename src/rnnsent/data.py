"""Labelled text sources, the encoded-dataset cache, splits and batch order.

Sources: the aclImdb dataset as a directory or straight from its ``.tar.gz`` (streamed,
never unpacked), the official archive downloaded into a cache, or a person's own data as a
folder per label, a CSV or a JSONL file with ``text`` and ``label`` columns.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import json
import os
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from rnnsent.config import TextConfig
from rnnsent.text import Vocabulary, encode_corpus, pad_sequences, tokenize

IMDB_URL = "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
IMDB_ARCHIVE_NAME = "aclImdb_v1.tar.gz"
IMDB_SPLIT_SIZE = 12_500  # reviews per label and split in the official release
CACHE_FORMAT = 1
HELD_OUT_SEED = 20_110_619  # fixed: held-out splits never depend on the run's seed

# Label spellings accepted in a person's own data, mapped to 0 (negative) and 1 (positive).
LABEL_VALUES = {
    "0": 0, "neg": 0, "negative": 0, "false": 0,
    "1": 1, "pos": 1, "positive": 1, "true": 1,
}


class DataError(ValueError):
    """A problem with a data source that the user can fix; the message says how."""


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: np.ndarray  # (n,) int64 of 0/1

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Corpus:
    """Raw texts of a source: labelled train and test splits, and unlabelled reviews."""

    train: LabelledTexts
    test: LabelledTexts
    unlabelled: list[str] = field(default_factory=list)


@dataclass
class EncodedSplit:
    """Whole reviews as ids, stored flat: review ``i`` is ``flat[offsets[i]:offsets[i+1]]``."""

    flat: np.ndarray  # (total_tokens,) int32
    offsets: np.ndarray  # (n + 1,) int64
    labels: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def padded(self, config: TextConfig) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (n, maxlen) int64, lengths (n,) int64)`` with the config's padding and truncation."""
        return pad_sequences(self.flat, self.offsets, config.maxlen, config.padding, config.truncating)

    def subset(self, indices: np.ndarray) -> "EncodedSplit":
        starts, ends = self.offsets[indices], self.offsets[indices + 1]
        lengths = ends - starts
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        positions = np.repeat(starts - offsets[:-1], lengths) + np.arange(int(lengths.sum()))
        return EncodedSplit(self.flat[positions], offsets, self.labels[indices])


@dataclass
class EncodedCorpus:
    vocabulary: Vocabulary
    train: EncodedSplit
    test: EncodedSplit


# ----------------------------------------------------------------------------- sources


def default_cache_dir() -> Path:
    """``$RNNSENT_CACHE``, else the user's cache directory."""
    configured = os.environ.get("RNNSENT_CACHE")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("rnnsent"))


def resolve_source(path: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Where the data comes from: ``path``, else ``$RNNSENT_DATA``, else the cache, else a download."""
    chosen = path or os.environ.get("RNNSENT_DATA")
    if chosen:
        resolved = Path(chosen).expanduser()
        if not resolved.exists():
            origin = "--data" if path else "RNNSENT_DATA"
            raise DataError(f"data source {resolved} (from {origin}) does not exist; check the path")
        return resolved
    cached = default_cache_dir() / IMDB_ARCHIVE_NAME
    if cached.exists():
        return cached
    if not download:
        raise DataError("no data source: pass --data PATH or set RNNSENT_DATA")
    return download_file(IMDB_URL, cached, IMDB_MD5)


def download_file(url: str, destination: Path, md5: str | None, quiet: bool = False) -> Path:
    """Download ``url`` to ``destination`` atomically, checking its MD5 when given."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=destination.name, suffix=".tmp")
    digest = hashlib.md5()
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0)
            from tqdm import tqdm

            with tqdm(total=total or None, unit="B", unit_scale=True, desc=f"downloading {destination.name}",
                      disable=quiet or not sys.stderr.isatty()) as bar:
                received = 0
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
                    received += len(chunk)
            # A dropped connection can end the body early without an exception.
            if total and received != total:
                raise DataError(f"download of {url} was cut short ({received} of {total} bytes); try again")
            out.flush()
            os.fsync(out.fileno())
        if md5 and digest.hexdigest() != md5:
            raise DataError(f"download of {url} is corrupt (MD5 {digest.hexdigest()}, expected {md5}); try again")
        os.replace(temporary, destination)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise DataError(
            f"could not download {url} ({getattr(error, 'reason', error)}); "
            "without network access pass --data PATH to a local copy"
        ) from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return destination


def read_corpus(source: Path, include_unlabelled: bool = False) -> Corpus:
    """Read every review of a source; see the module docstring for the accepted forms."""
    name = source.name.lower()
    if source.is_file() and (name.endswith((".tar.gz", ".tgz", ".tar"))):
        return _read_imdb_archive(source, include_unlabelled)
    if source.is_file() and name.endswith(".csv"):
        return _with_held_out_test(_read_csv(source))
    if source.is_file() and name.endswith((".jsonl", ".ndjson")):
        return _with_held_out_test(_read_jsonl(source))
    if source.is_dir():
        return _read_directory(source, include_unlabelled)
    raise DataError(f"{source}: unsupported data source; use an aclImdb folder or .tar.gz, a label-folder tree, .csv or .jsonl")


def parse_label(value: object, where: str) -> int:
    """A binary label from its usual spellings; anything else is a :class:`DataError`."""
    key = str(value).strip().lower()
    if key.endswith(".0"):
        key = key[:-2]
    if key not in LABEL_VALUES:
        raise DataError(f"{where}: label {value!r} is not binary; use 0/1, neg/pos or negative/positive")
    return LABEL_VALUES[key]


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{where}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def _read_imdb_archive(path: Path, include_unlabelled: bool) -> Corpus:
    buckets: dict[tuple[str, str], list[tuple[str, str]]] = {}
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                parts = member.name.split("/")
                if not member.isfile() or len(parts) != 4 or parts[0] != "aclImdb" or not parts[3].endswith(".txt"):
                    continue
                split, label = parts[1], parts[2]
                if split not in ("train", "test") or label not in ("pos", "neg", "unsup"):
                    continue
                if label == "unsup" and not include_unlabelled:
                    continue
                stream = archive.extractfile(member)
                assert stream is not None
                text = _decode(stream.read(), f"{path}:{member.name}")
                buckets.setdefault((split, label), []).append((parts[3], text))
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{path}: archive is truncated or corrupt ({error}); download it again") from None
    return _imdb_corpus(buckets, str(path))


def _read_directory(path: Path, include_unlabelled: bool) -> Corpus:
    root = path / "aclImdb" if (path / "aclImdb").is_dir() else path
    if (root / "train").is_dir():
        buckets: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for split in ("train", "test"):
            split_dir = root / split
            if not split_dir.is_dir():
                raise DataError(f"{root}: missing folder {split}/ (expected train/ and test/ with one folder per label)")
            labels = [d.name for d in sorted(split_dir.iterdir()) if d.is_dir() and (include_unlabelled or d.name != "unsup")]
            for label in labels:
                files = sorted((label_dir := split_dir / label).glob("*.txt"))
                buckets[(split, label)] = [(f.name, _decode(f.read_bytes(), str(f))) for f in files]
                if label != "unsup":
                    parse_label(label, str(label_dir))
        return _imdb_corpus(buckets, str(root))
    if (root / "test").is_dir():
        raise DataError(f"{root}: missing folder train/ (expected train/ and test/ with one folder per label)")
    labels = [d for d in sorted(path.iterdir()) if d.is_dir()]
    if not labels:
        raise DataError(f"{path}: no train/ and test/ folders and no label folders; see 'rnnsent train --help'")
    texts, values = [], []
    for label_dir in labels:
        label = parse_label(label_dir.name, str(label_dir))
        for file in sorted(label_dir.glob("*.txt")):
            texts.append(_decode(file.read_bytes(), str(file)))
            values.append(label)
    return _with_held_out_test(LabelledTexts(texts, np.asarray(values, dtype=np.int64)))


def _imdb_corpus(buckets: dict[tuple[str, str], list[tuple[str, str]]], where: str) -> Corpus:
    splits = {}
    for split in ("train", "test"):
        texts, labels = [], []
        for label_name in sorted(name for (s, name) in buckets if s == split and name != "unsup"):
            label = parse_label(label_name, f"{where}/{split}/{label_name}")
            reviews = sorted(buckets[(split, label_name)], key=lambda item: _review_sort_key(item[0]))
            texts.extend(text for _, text in reviews)
            labels.extend([label] * len(reviews))
        present = {value for value in labels}
        if present != {0, 1}:
            raise DataError(f"{where}: the {split} split needs reviews in both neg/ and pos/ (found {len(texts)} reviews)")
        counts = {name: len(reviews) for (s, name), reviews in buckets.items() if s == split and name != "unsup"}
        if "aclImdb" in where and any(count != IMDB_SPLIT_SIZE for count in counts.values()):
            print(f"warning: {where}: {split} has {counts}, not {IMDB_SPLIT_SIZE} per label as in aclImdb v1.0", file=sys.stderr)
        splits[split] = LabelledTexts(texts, np.asarray(labels, dtype=np.int64))
    unlabelled = [text for _, text in sorted(buckets.get(("train", "unsup"), []), key=lambda item: _review_sort_key(item[0]))]
    return Corpus(splits["train"], splits["test"], unlabelled)


def _review_sort_key(file_name: str) -> tuple[int, str]:
    # aclImdb names are ID_RATING.txt: order by numeric id so the order is natural and stable.
    head = file_name.split("_", 1)[0]
    return (int(head), file_name) if head.isdigit() else (sys.maxsize, file_name)


def _read_csv(path: Path) -> LabelledTexts:
    texts, labels = [], []
    with open(path, "rb") as raw:
        # Lines are decoded one by one, so an encoding error can name its line.
        # A UTF-8 byte-order mark, as spreadsheet programs write, is not part of the first column's name.
        lines = (_decode(line.removeprefix(b"\xef\xbb\xbf") if number == 1 else line, f"{path}:{number}")
                 for number, line in enumerate(raw, start=1))
        reader = csv.DictReader(lines)
        try:
            if not reader.fieldnames or "text" not in reader.fieldnames or "label" not in reader.fieldnames:
                raise DataError(f"{path}: needs a header with 'text' and 'label' columns, found {reader.fieldnames}")
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if row.get("text") is None or row.get("label") is None:
                    raise DataError(f"{where}: row has missing columns")
                texts.append(row["text"])
                labels.append(parse_label(row["label"], where))
        except csv.Error as error:
            raise DataError(f"{path}:{reader.reader.line_num}: malformed CSV ({error})") from None
    return _labelled(texts, labels, path)


def _read_jsonl(path: Path) -> LabelledTexts:
    texts, labels = [], []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            line = _decode(raw, where).strip()
            if number == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark, as some editors write
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{where}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str) or "label" not in record:
                raise DataError(f"{where}: each line must be an object with a string 'text' and a 'label'")
            texts.append(record["text"])
            labels.append(parse_label(record["label"], where))
    return _labelled(texts, labels, path)


def _labelled(texts: list[str], labels: list[int], path: Path) -> LabelledTexts:
    if len(set(labels)) < 2:
        raise DataError(f"{path}: needs examples of both labels, found {len(texts)} example(s) of {sorted(set(labels))}")
    return LabelledTexts(texts, np.asarray(labels, dtype=np.int64))


def _with_held_out_test(data: LabelledTexts, fraction: float = 0.2) -> Corpus:
    """A source without a test split: hold out a fixed, stratified 20% as the test set."""
    train_index, test_index = stratified_split(data.labels, fraction, HELD_OUT_SEED)
    pick = lambda index: LabelledTexts([data.texts[i] for i in index], data.labels[index])  # noqa: E731
    return Corpus(pick(train_index), pick(test_index))


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(kept, held_out)``: ``fraction`` of each label held out, chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for value in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == value))
        count = int(round(len(index) * fraction))
        held.append(index[:count])
        kept.append(index[count:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


# ----------------------------------------------------------------------------- encoding cache


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


def read_unlabelled(source: Path) -> list[str]:
    """The unlabelled reviews of an aclImdb source (``train/unsup``), for pretraining."""
    return read_corpus(source, include_unlabelled=True).unlabelled


def limit_split(split: EncodedSplit, limit: int) -> EncodedSplit:
    """A fixed random subset of ``limit`` reviews (stratified, independent of the run's seed)."""
    if not limit or limit >= len(split):
        return split
    _, chosen = stratified_split(split.labels, limit / len(split), HELD_OUT_SEED)
    return split.subset(chosen)


# ----------------------------------------------------------------------------- batch order


def epoch_batches(
    count: int,
    batch_size: int,
    seed: int,
    epoch: int,
    lengths: np.ndarray | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> list[np.ndarray]:
    """The index batches of one epoch, a pure function of ``(seed, epoch)``.

    Every rank computes the same global batches of ``batch_size`` and takes its own
    interleaved share of each, so that N ranks with batch B/N see exactly the examples one
    process with batch B would. With ``lengths`` given, reviews of similar length are batched
    together (sorted within large random windows) and the batch order is shuffled.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(count)
    if lengths is not None:
        window = batch_size * 50
        order = np.concatenate([
            chunk[np.argsort(-lengths[chunk], kind="stable")] for chunk in np.array_split(order, max(1, -(-count // window)))
        ]) if count else order
    batches = [order[start:start + batch_size] for start in range(0, count, batch_size)]
    if lengths is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    if world_size > 1:
        batches = [batch[rank::world_size] for batch in batches if len(batch) >= world_size]
    return batches


def iter_text_chunks(texts: Iterator[str], size: int) -> Iterator[list[str]]:
    """Group a stream of texts into lists of at most ``size``."""
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__ = [
    "Corpus", "DataError", "EncodedCorpus", "EncodedSplit", "LabelledTexts", "epoch_batches",
    "limit_split", "load_encoded", "read_corpus", "resolve_source", "stratified_split",
]
