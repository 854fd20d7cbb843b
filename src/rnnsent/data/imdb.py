"""The aclImdb layout: ``train/`` and ``test/``, each with one folder of reviews per label.

It is read from the official ``.tar.gz`` (streamed with :mod:`tarfile`, never unpacked) or
from a folder: aclImdb itself, or a person's own data in the same layout with labels
``neg``/``pos`` or ``0``/``1``. Only ``SPLIT/LABEL/NAME.txt`` files are reviews; anything
else (``urls_*.txt``, ``imdb.vocab``, the README, ``.feat`` files) is left alone. Reviews are
ordered by label, then by the numeric id that starts each file name.
"""

from __future__ import annotations

import gzip
import sys
import tarfile
from pathlib import Path

from rnnsent.data.corpus import Corpus, LabelledTexts
from rnnsent.data.records import decode_utf8
from rnnsent.errors import DataError

IMDB_SPLIT_SIZE = 12_500  # reviews per label and split in the official release
UNLABELLED = "unsup"  # aclImdb's folder of unlabelled training reviews

# (split, label folder) -> [(file name, review text), ...]
Buckets = dict[tuple[str, str], list[tuple[str, str]]]
# (split, label folder) -> the lines of its urls_LABEL.txt: line i names the film of review i.
Urls = dict[tuple[str, str], list[str]]


def _open_archive_stream(path: Path):
    """The archive's bytes as a stream, uncompressed when it is gzipped (``.tar.gz``, ``.tgz``)."""
    if path.name.lower().endswith((".gz", ".tgz")):
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_imdb_archive(path: Path, include_unlabelled: bool = False, labels: str = "sentiment") -> Corpus:
    """aclImdb from its ``.tar.gz``, read as a stream in one pass."""
    buckets: Buckets = {}
    urls: Urls = {}
    official = False  # the archive holds aclImdb's own files beside the reviews
    try:
        with _open_archive_stream(path) as raw, tarfile.open(fileobj=raw, mode="r|") as archive:
            for member in archive:
                parts = member.name.split("/")
                official = official or member.name == "aclImdb/imdb.vocab"
                if not member.isfile() or parts[0] != "aclImdb" or not parts[-1].endswith(".txt"):
                    continue
                if len(parts) == 3 and parts[1] in ("train", "test") and parts[2].startswith("urls_"):
                    # urls_LABEL.txt: line i is the film of review i of that folder.
                    stream = archive.extractfile(member)
                    assert stream is not None
                    label = parts[2][len("urls_"):-len(".txt")]
                    urls[(parts[1], label)] = decode_utf8(stream.read(), f"{path}:{member.name}").splitlines()
                    continue
                if len(parts) != 4:
                    continue
                split, label = parts[1], parts[2]
                if split not in ("train", "test") or label not in ("pos", "neg", UNLABELLED):
                    continue
                if label == UNLABELLED and not include_unlabelled:
                    continue
                stream = archive.extractfile(member)
                assert stream is not None
                text = decode_utf8(stream.read(), f"{path}:{member.name}")
                buckets.setdefault((split, label), []).append((parts[3], text))
            # tarfile ends where the entries end, and takes data that runs out cleanly between
            # two entries for the end; reading the compressed stream to its end makes gzip check
            # its end-of-stream marker, so a cut .tar.gz fails here instead of reading short.
            while raw.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{path}: archive is truncated or corrupt ({error}); download it again") from None
    if official:
        # tarfile takes an archive that ends cleanly between two entries as complete; aclImdb's
        # counts tell a cut one.
        for (split, label), reviews in sorted(buckets.items()):
            if label != UNLABELLED and len(reviews) != IMDB_SPLIT_SIZE:
                raise DataError(f"{path}: {split}/{label} holds {len(reviews)} reviews, not the {IMDB_SPLIT_SIZE} "
                                "of aclImdb v1.0; the archive is truncated: download it again")
    return _corpus(buckets, str(path), labels, urls)


def read_split_folders(root: Path, include_unlabelled: bool = False, labels: str = "sentiment") -> Corpus:
    """A folder with ``train/`` and ``test/``, each holding one folder of ``.txt`` reviews per label (any names)."""
    buckets: Buckets = {}
    urls: Urls = {}
    for split in ("train", "test"):
        split_dir = root / split
        if not split_dir.is_dir():
            raise DataError(f"{root}: missing folder {split}/ (expected train/ and test/ with one folder per label)")
        folders = [d.name for d in sorted(split_dir.iterdir())
                   if d.is_dir() and (include_unlabelled or d.name != UNLABELLED)]
        for label in folders:
            label_dir = split_dir / label
            files = sorted(label_dir.glob("*.txt"))
            buckets[(split, label)] = [(f.name, decode_utf8(f.read_bytes(), str(f))) for f in files]
            listing = split_dir / f"urls_{label}.txt"
            if listing.is_file():
                urls[(split, label)] = decode_utf8(listing.read_bytes(), str(listing)).splitlines()
    return _corpus(buckets, str(root), labels, urls)


def _corpus(buckets: Buckets, where: str, labels: str = "sentiment", urls: Urls | None = None) -> Corpus:
    """The splits from the buckets: labels are the folder names, or with ``labels="rating"`` the
    star rating that ends each file name (``ID_RATING.txt``). With aclImdb's ``urls_*.txt``,
    each review's group is its film (for a validation split by film)."""
    splits = {}
    urls = urls or {}
    for split in ("train", "test"):
        texts, values, places, groups = [], [], [], []
        folders = sorted(name for (s, name) in buckets if s == split and name != UNLABELLED)
        for label_name in folders:
            reviews = sorted(buckets[(split, label_name)], key=lambda item: _review_sort_key(item[0]))
            place = f"{where}/{split}/{label_name}"
            texts.extend(text for _, text in reviews)
            values.extend(_rating(name, place) if labels == "rating" else label_name for name, _ in reviews)
            places.extend([place] * len(reviews))
            listing = urls.get((split, label_name))
            if listing is not None:
                groups.extend(_film(listing, name) for name, _ in reviews)
        if len(folders) < 2 or not texts:
            raise DataError(f"{where}: the {split} split needs reviews in both neg/ and pos/ (found {len(texts)} reviews); "
                            "other data needs two or more label folders")
        counts = {name: len(reviews) for (s, name), reviews in buckets.items() if s == split and name != UNLABELLED}
        if "aclImdb" in where and any(count != IMDB_SPLIT_SIZE for count in counts.values()):
            print(f"warning: {where}: {split} has {counts}, not {IMDB_SPLIT_SIZE} per label as in aclImdb v1.0", file=sys.stderr)
        splits[split] = LabelledTexts(texts, values, places, groups if len(groups) == len(texts) else [])
    unlabelled = sorted(buckets.get(("train", UNLABELLED), []), key=lambda item: _review_sort_key(item[0]))
    return Corpus(splits["train"], splits["test"], [text for _, text in unlabelled])


def _film(listing: list[str], file_name: str) -> str:
    """The film of review ``ID_RATING.txt`` from its folder's urls listing (its IMDB title id)."""
    head = file_name.split("_", 1)[0]
    if not head.isdigit() or int(head) >= len(listing):
        return ""
    url = listing[int(head)].strip()
    parts = [part for part in url.split("/") if part.startswith("tt")]
    return parts[0] if parts else url


def _rating(file_name: str, where: str) -> int:
    """The star rating of an aclImdb review file ``ID_RATING.txt``."""
    stem = file_name.rsplit(".", 1)[0]
    rating = stem.rsplit("_", 1)[-1]
    if "_" not in stem or not rating.isdigit():
        raise DataError(f"{where}/{file_name}: --labels rating reads the rating from names like 123_8.txt")
    return int(rating)


def _review_sort_key(file_name: str) -> tuple[int, str]:
    # aclImdb names are ID_RATING.txt: order by numeric id so the order is natural and stable.
    head = file_name.split("_", 1)[0]
    return (int(head), file_name) if head.isdigit() else (sys.maxsize, file_name)
