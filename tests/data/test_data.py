"""Data sources (aclImdb folder/.tar.gz, CSV, JSONL, label folders), their errors, download, cache, batches."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import shutil
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import make_reviews, write_csv, write_imdb_tree, write_jsonl
from rnnsent.config import TextConfig
from rnnsent.data import cache as cache_module
from rnnsent.data import download as download_module
from rnnsent.data import sources as data_module
from rnnsent.data.batches import epoch_batches
from rnnsent.data.cache import load_encoded
from rnnsent.data.corpus import EncodedSplit
from rnnsent.data.download import download_file, resolve_source
from rnnsent.data.sources import read_corpus
from rnnsent.data.splits import limit_split
from rnnsent.errors import DataError
from rnnsent.labels import BINARY_SENTIMENT
from rnnsent.text.vocabulary import START_ID


def make_archive(tree: Path, destination: Path) -> Path:
    with tarfile.open(destination, "w:gz") as archive:
        archive.add(tree, arcname="aclImdb")
    return destination


# ----------------------------------------------------------------------------- aclImdb


def test_imdb_folder_is_read_in_label_then_id_order(tmp_path):
    tree = write_imdb_tree(tmp_path, per_label=3)
    # An id of 10 must sort after 2 (numeric order, not text order).
    (tree / "train/pos/10_9.txt").write_text("ten is last", encoding="utf-8")
    corpus = read_corpus(tree)
    expected = [(tree / "train/neg" / f"{i}_2.txt").read_text() for i in range(3)]
    expected += [(tree / "train/pos" / f"{i}_8.txt").read_text() for i in range(3)] + ["ten is last"]
    assert corpus.train.texts == expected
    assert targets(corpus.train) == [0, 0, 0, 1, 1, 1, 1]
    assert len(corpus.test) == 6 and targets(corpus.test) == [0, 0, 0, 1, 1, 1]


def test_imdb_archive_reads_the_same_as_the_folder(tmp_path):
    tree = write_imdb_tree(tmp_path / "tree", per_label=3)
    (tree / "train/unsup").mkdir()
    (tree / "train/unsup/0_0.txt").write_text("no label here", encoding="utf-8")
    (tree / "README").write_text("not a review", encoding="utf-8")
    archive = make_archive(tree, tmp_path / "aclImdb.tar.gz")
    from_folder, from_parent, from_archive = read_corpus(tree), read_corpus(tmp_path / "tree"), read_corpus(archive)
    for corpus in (from_parent, from_archive):
        assert corpus.train.texts == from_folder.train.texts and corpus.test.texts == from_folder.test.texts
        assert np.array_equal(corpus.train.labels, from_folder.train.labels)
        assert np.array_equal(corpus.test.labels, from_folder.test.labels)
    assert from_archive.unlabelled == []
    assert read_corpus(archive, include_unlabelled=True).unlabelled == ["no label here"]
    assert data_module.read_unlabelled(tree) == ["no label here"]


def test_an_archive_cut_anywhere_is_a_clear_error(tmp_path):
    # A cut that falls between two entries once read as a shorter archive (about 1 cut in 14):
    # a missing split, or no error at all.
    tree = write_imdb_tree(tmp_path / "tree", per_label=20)
    data = make_archive(tree, tmp_path / "aclImdb.tar.gz").read_bytes()
    cut = tmp_path / "cut.tar.gz"
    for length in range(1, len(data), max(1, len(data) // 120)):
        cut.write_bytes(data[:length])
        with pytest.raises(DataError, match="truncated or corrupt"):
            read_corpus(cut)


def test_truncated_archive_is_a_clear_error(tmp_path):
    tree = write_imdb_tree(tmp_path / "tree", per_label=20)
    archive = make_archive(tree, tmp_path / "aclImdb.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_corpus(archive)


def test_archive_that_is_not_gzip_is_a_clear_error(tmp_path):
    archive = tmp_path / "aclImdb.tar.gz"
    archive.write_bytes(b"this is not an archive at all" * 10)
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_corpus(archive)


def test_archive_with_a_non_utf8_review_names_the_member(tmp_path):
    tree = write_imdb_tree(tmp_path / "tree", per_label=2)
    (tree / "test/pos/1_8.txt").write_bytes(b"caf\xe9 latin-1")
    archive = make_archive(tree, tmp_path / "aclImdb.tar.gz")
    with pytest.raises(DataError, match=r"aclImdb/test/pos/1_8\.txt: not UTF-8"):
        read_corpus(archive)


def test_missing_split_folder(tmp_path):
    tree = write_imdb_tree(tmp_path, per_label=2)
    shutil.rmtree(tree / "test")
    with pytest.raises(DataError, match="missing folder test/"):
        read_corpus(tree)


def test_archive_with_the_wrong_layout(tmp_path):
    tree = write_imdb_tree(tmp_path / "tree", per_label=2)
    archive = make_archive(tree, tmp_path / "reviews.tar.gz")
    with tarfile.open(archive, "w:gz") as out:
        out.add(tree, arcname="reviews")  # not under aclImdb/
    with pytest.raises(DataError, match=r"train split needs reviews in both neg/ and pos/ \(found 0 reviews\)"):
        read_corpus(archive)


def test_empty_folder_source(tmp_path):
    with pytest.raises(DataError, match="no train/ and test/ folders and no label folders"):
        read_corpus(tmp_path)


def test_archive_without_a_test_split(tmp_path):
    tree = write_imdb_tree(tmp_path / "tree", per_label=2)
    archive = tmp_path / "aclImdb.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        out.add(tree / "train", arcname="aclImdb/train")
    with pytest.raises(DataError, match="test split needs reviews in both neg/ and pos/"):
        read_corpus(archive)


def test_non_utf8_review_file_names_the_file(tmp_path):
    tree = write_imdb_tree(tmp_path, per_label=2)
    bad = tree / "train/neg/1_2.txt"
    bad.write_bytes(b"\xff\xfe broken")
    with pytest.raises(DataError) as error:
        read_corpus(tree)
    assert f"{bad}: not UTF-8" in str(error.value)


def test_a_third_label_folder_makes_a_multiclass_task(tmp_path):
    tree = write_imdb_tree(tmp_path, per_label=2)
    (tree / "train/maybe").mkdir()
    (tree / "train/maybe/0_5.txt").write_text("so-so", encoding="utf-8")
    corpus = load_encoded(tree, TextConfig(num_words=30), cache_dir=tmp_path / "cache", quiet=True)
    assert (corpus.labels.task, corpus.labels.names) == ("multiclass", ("maybe", "neg", "pos"))
    assert corpus.train.labels.tolist() == [0, 1, 1, 2, 2] and corpus.test.labels.tolist() == [1, 1, 2, 2]


def test_a_label_folder_only_in_test_is_refused(tmp_path):
    tree = write_imdb_tree(tmp_path, per_label=2)
    (tree / "test/maybe").mkdir()
    (tree / "test/maybe/0_5.txt").write_text("so-so", encoding="utf-8")
    with pytest.raises(DataError, match="label 'maybe' is not one of the training labels"):
        load_encoded(tree, TextConfig(num_words=30), cache_dir=tmp_path / "cache", quiet=True)


# ----------------------------------------------------------------------------- a person's own data


def test_label_folders_without_splits_hold_out_a_fifth(tmp_path):
    for name, label in (("negative", 0), ("positive", 1)):
        (tmp_path / name).mkdir()
        for index in range(10):
            (tmp_path / name / f"r{index}.txt").write_text(f"{name} review {index}", encoding="utf-8")
    corpus = read_corpus(tmp_path)
    assert len(corpus.train) == 16 and len(corpus.test) == 4
    assert sorted(targets(corpus.test)) == [0, 0, 1, 1]  # stratified
    everything = sorted(corpus.train.texts + corpus.test.texts)
    assert everything == sorted(f"{name} review {i}" for name in ("negative", "positive") for i in range(10))
    for split in (corpus.train, corpus.test):
        assert all(text.startswith("positive") == bool(label) for text, label in zip(split.texts, targets(split)))


def test_split_folders_with_numeric_labels(tmp_path):
    for split in ("train", "test"):
        for label in ("0", "1"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            (folder / "a.txt").write_text(f"{split} {label}", encoding="utf-8")
    corpus = read_corpus(tmp_path)
    assert corpus.train.texts == ["train 0", "train 1"] and targets(corpus.train) == [0, 1]
    assert corpus.test.texts == ["test 0", "test 1"]


@pytest.mark.parametrize("writer, suffix", [(write_csv, "csv"), (write_jsonl, "jsonl")])
def test_csv_and_jsonl(tmp_path, writer, suffix):
    reviews = make_reviews(50)
    spellings = {0: ["0", "neg", "Negative", "false", 0, "0.0"], 1: ["1", "pos", "POSITIVE", "true", 1, "1.0"]}
    rows = [(text, spellings[label][index % 6]) for index, (text, label) in enumerate(reviews)]
    rows[0] = ('He said "great", then\nleft; a, b', rows[0][1])  # quoting and a newline inside a field
    reviews[0] = (rows[0][0], reviews[0][1])
    corpus = read_corpus(writer(tmp_path / f"reviews.{suffix}", rows))
    assert len(corpus.train) == 40 and len(corpus.test) == 10
    truth = dict(reviews)
    for split in (corpus.train, corpus.test):
        assert [truth[text] for text in split.texts] == targets(split)
    assert sorted(corpus.train.texts + corpus.test.texts) == sorted(text for text, _ in reviews)


def targets(split) -> list[int]:
    """The 0/1 targets of a split of raw sentiment labels."""
    return BINARY_SENTIMENT.encode(split.labels).astype(int).tolist()


def test_held_out_split_does_not_depend_on_anything_but_the_file(tmp_path):
    path = write_csv(tmp_path / "r.csv", make_reviews(30))
    assert read_corpus(path).test.texts == read_corpus(path).test.texts


def test_a_third_csv_label_makes_a_multiclass_task(tmp_path):
    rows = make_reviews(30)
    rows[2:12:2] = [("meh", "neutral")] * 5
    path = write_csv(tmp_path / "r.csv", rows)
    corpus = load_encoded(path, TextConfig(num_words=30), cache_dir=tmp_path / "cache", quiet=True)
    assert (corpus.labels.task, corpus.labels.names) == ("multiclass", ("0", "1", "neutral"))


def test_a_label_with_a_single_csv_row_stays_in_training(tmp_path):
    rows = make_reviews(6)
    rows[2] = ("meh", "neutral")  # one row: a stratified fifth of it rounds to none, so it is not test-only
    path = write_csv(tmp_path / "r.csv", rows)
    corpus = read_corpus(path)
    assert "neutral" in corpus.train.labels and "neutral" not in corpus.test.labels


def test_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"text": "good", "label": 1}\n\n{"text": "bad", "label": ""}\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}:3: empty label"):
        load_encoded(path, TextConfig(num_words=30), cache_dir=tmp_path / "cache", quiet=True)
    path.write_text('{"text": "good", "label": 1}\n{"text": "bad"\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}:2: not valid JSON"):
        read_corpus(path)
    path.write_text('{"text": 5, "label": 1}\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}:1: each JSONL line needs a string 'text'"):
        read_corpus(path)
    path.write_bytes(b'{"text": "good", "label": 1}\n{"text": "caf\xe9", "label": 0}\n')
    with pytest.raises(DataError, match=rf"{path}:2: not UTF-8"):
        read_corpus(path)


def test_csv_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"text,label\ngood,1\nbad,0\ncaf\xe9,1\n")
    with pytest.raises(DataError, match=rf"{path}:4: not UTF-8"):
        read_corpus(path)


def test_csv_without_the_needed_columns(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("review,sentiment\nfine,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="'text' and 'label' columns"):
        read_corpus(path)


def test_single_label_data_is_rejected(tmp_path):
    path = write_csv(tmp_path / "r.csv", [("good", 1), ("great", 1)])
    with pytest.raises(DataError, match="needs examples of both labels"):
        read_corpus(path)
    # The label as the file spells it (it read "['1']" for pos, the number it stands for).
    spelled = write_csv(tmp_path / "p.csv", [("good", "pos"), ("great", "pos")])
    with pytest.raises(DataError, match=r"found 2 example\(s\) of pos; a classifier needs two or more labels$"):
        read_corpus(spelled)


def test_unsupported_source(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(DataError, match="unsupported data source"):
        read_corpus(path)


# ----------------------------------------------------------------------------- download


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def local_server(handler):
    """An HTTP server with ``handler`` on a free loopback port, in a thread; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def file_server(tmp_path):
    """A local HTTP server on a free port serving ``tmp_path/served``; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    with local_server(functools.partial(QuietHandler, directory=str(served))) as url:
        yield url, served


PAYLOAD = os.urandom(3 << 20 | 1234)  # more than one 1 MiB read chunk


def test_download_with_the_right_md5(file_server, tmp_path):
    url, served = file_server
    (served / "data.tar.gz").write_bytes(PAYLOAD)
    destination = tmp_path / "cache" / "data.tar.gz"
    assert download_file(f"{url}/data.tar.gz", destination, hashlib.md5(PAYLOAD).hexdigest(), quiet=True) == destination
    assert destination.read_bytes() == PAYLOAD
    assert os.listdir(destination.parent) == ["data.tar.gz"]  # no temporary file left


def test_download_with_a_wrong_md5_leaves_nothing(file_server, tmp_path):
    url, served = file_server
    (served / "data.tar.gz").write_bytes(PAYLOAD)
    destination = tmp_path / "cache" / "data.tar.gz"
    with pytest.raises(DataError, match="corrupt"):
        download_file(f"{url}/data.tar.gz", destination, "0" * 32, quiet=True)
    assert os.listdir(destination.parent) == []


def test_download_of_a_missing_file(file_server, tmp_path):
    url, _ = file_server
    destination = tmp_path / "cache" / "data.tar.gz"
    with pytest.raises(DataError, match="could not download"):
        download_file(f"{url}/nothing-here.tar.gz", destination, None, quiet=True)
    assert os.listdir(destination.parent) == []


class SilentHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


class ShortBodyHandler(SilentHandler):
    """Promises more bytes than it sends, as a dropped connection does."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(10_000))
        self.end_headers()
        self.wfile.write(b"only a few bytes")


class GarbageHandler(SilentHandler):
    """Answers with something that is not HTTP."""

    def do_GET(self):
        self.wfile.write(b"SSH-2.0-not-http\r\n\r\n")


@pytest.mark.parametrize("handler, message", [
    (ShortBodyHandler, r"cut short \(16 of 10000 bytes\)"),
    (GarbageHandler, "could not download"),
])
def test_download_from_a_bad_server_is_a_data_error_and_leaves_nothing(tmp_path, handler, message):
    destination = tmp_path / "cache" / "data.tar.gz"
    with local_server(handler) as url:
        with pytest.raises(DataError, match=message):
            download_file(f"{url}/x", destination, None, quiet=True)
    assert os.listdir(destination.parent) == []


def test_download_from_an_unreachable_host(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    destination = tmp_path / "cache" / "data.tar.gz"
    with pytest.raises(DataError, match="without network access pass --data"):
        download_file(f"http://127.0.0.1:{port}/data.tar.gz", destination, None, quiet=True)
    assert not destination.exists()


# ----------------------------------------------------------------------------- where the data comes from


def test_resolve_source_precedence(tmp_path, monkeypatch):
    flag, environment = tmp_path / "flag.csv", tmp_path / "env.csv"
    flag.write_text("x", encoding="utf-8")
    environment.write_text("x", encoding="utf-8")
    monkeypatch.setenv("RNNSENT_DATA", str(environment))
    assert resolve_source(str(flag)) == flag
    assert resolve_source(None) == environment
    monkeypatch.setenv("RNNSENT_DATA", str(tmp_path / "gone.csv"))
    with pytest.raises(DataError, match=r"from RNNSENT_DATA\) does not exist"):
        resolve_source(None)
    with pytest.raises(DataError, match=r"from --data\) does not exist"):
        resolve_source(str(tmp_path / "missing.csv"))


def test_resolve_source_falls_back_to_the_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("RNNSENT_CACHE", str(cache))
    with pytest.raises(DataError, match="no data source"):
        resolve_source(None, download=False)
    cache.mkdir()
    (cache / "aclImdb_v1.tar.gz").write_bytes(b"cached")
    assert resolve_source(None) == cache / "aclImdb_v1.tar.gz"


def test_resolve_source_downloads_into_the_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("RNNSENT_CACHE", str(cache))
    calls = []
    monkeypatch.setattr(download_module, "download_file",
                        lambda url, destination, md5: calls.append((url, destination, md5)) or destination)
    assert resolve_source(None) == cache / "aclImdb_v1.tar.gz"
    assert calls == [(download_module.IMDB_URL, cache / "aclImdb_v1.tar.gz", "7c2ac02c03563afcf9b574c7e56c153a")]


# ----------------------------------------------------------------------------- encoded cache


def test_encoded_cache_is_hit_on_the_second_call(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "r.csv", make_reviews(40))
    config = TextConfig(num_words=30)
    first = load_encoded(path, config, cache_dir=tmp_path / "cache", quiet=True)
    assert len(list((tmp_path / "cache" / "encoded").glob("*.npz"))) == 1

    def no_reading(*args, **kwargs):
        raise AssertionError("the source was read again instead of the cache")

    monkeypatch.setattr(cache_module, "read_corpus", no_reading)
    second = load_encoded(path, config, cache_dir=tmp_path / "cache", quiet=True)
    assert second.vocabulary == first.vocabulary
    for name in ("train", "test"):
        for field in ("flat", "offsets", "labels"):
            assert np.array_equal(getattr(getattr(second, name), field), getattr(getattr(first, name), field))
    # Other text settings are another cache entry, so the source must be read.
    with pytest.raises(AssertionError, match="read again"):
        load_encoded(path, TextConfig(num_words=40), cache_dir=tmp_path / "cache", quiet=True)


def test_encoded_cache_notices_a_changed_source(tmp_path):
    path = write_csv(tmp_path / "r.csv", make_reviews(40))
    first = load_encoded(path, TextConfig(), cache_dir=tmp_path / "cache", quiet=True)
    write_csv(path, make_reviews(60, seed=1))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = load_encoded(path, TextConfig(), cache_dir=tmp_path / "cache", quiet=True)
    assert len(second.train) + len(second.test) == 60 != len(first.train) + len(first.test)


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    path = write_csv(tmp_path / "r.csv", make_reviews(40))
    first = load_encoded(path, TextConfig(), cache_dir=tmp_path / "cache", quiet=True)
    (entry,) = (tmp_path / "cache" / "encoded").glob("*.npz")
    entry.write_bytes(b"garbage")
    second = load_encoded(path, TextConfig(), cache_dir=tmp_path / "cache", quiet=True)
    assert np.array_equal(second.train.flat, first.train.flat)


def test_encoded_vocabulary_comes_from_the_training_split_only(tmp_path):
    tree = write_imdb_tree(tmp_path, per_label=2)
    (tree / "test/pos/0_8.txt").write_text("onlyintest onlyintest onlyintest", encoding="utf-8")
    corpus = load_encoded(tree, TextConfig(), cache_dir=tmp_path / "cache", quiet=True)
    assert "onlyintest" not in corpus.vocabulary.words
    row = corpus.test.flat[corpus.test.offsets[2]:corpus.test.offsets[3]]
    assert row.tolist() == [START_ID, 2, 2, 2]


# ----------------------------------------------------------------------------- splits and batches


def split_of(lengths, labels) -> EncodedSplit:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return EncodedSplit(np.arange(offsets[-1], dtype=np.int32), offsets, np.asarray(labels, dtype=np.int64))


def test_subset_keeps_rows_and_labels():
    split = split_of([2, 3, 1], [0, 1, 1])
    subset = split.subset(np.array([2, 0]))
    assert subset.offsets.tolist() == [0, 1, 3]
    assert subset.flat.tolist() == [5, 0, 1]
    assert subset.labels.tolist() == [1, 0]


def test_limit_split_is_stratified_and_fixed():
    split = split_of([1] * 100, [0] * 50 + [1] * 50)
    limited = limit_split(split, 10)
    assert len(limited) == 10 and limited.labels.sum() == 5
    assert np.array_equal(limit_split(split, 10).flat, limited.flat)
    assert limit_split(split, 0) is split and limit_split(split, 500) is split


def test_epoch_batches_cover_every_example_once_and_depend_on_seed_and_epoch():
    batches = epoch_batches(103, 10, seed=1, epoch=0)
    assert [len(batch) for batch in batches] == [10] * 10 + [3]
    assert sorted(np.concatenate(batches).tolist()) == list(range(103))
    same = epoch_batches(103, 10, seed=1, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(batches, same))
    assert not np.array_equal(np.concatenate(batches), np.concatenate(epoch_batches(103, 10, seed=1, epoch=1)))
    assert not np.array_equal(np.concatenate(batches), np.concatenate(epoch_batches(103, 10, seed=2, epoch=0)))


def test_epoch_batches_ranks_share_each_global_batch():
    single = epoch_batches(40, 8, seed=3, epoch=2)
    ranks = [epoch_batches(40, 8, seed=3, epoch=2, rank=rank, world_size=2) for rank in range(2)]
    for global_batch, first, second in zip(single, *ranks):
        assert sorted(np.concatenate([first, second]).tolist()) == sorted(global_batch.tolist())
        assert len(first) == len(second) == 4


def test_epoch_batches_by_length_group_similar_lengths():
    lengths = np.random.default_rng(0).integers(1, 400, size=1000)
    batches = epoch_batches(1000, 20, seed=0, epoch=0, lengths=lengths)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    spread = np.mean([np.ptp(lengths[batch]) for batch in batches])
    assert spread < 0.2 * np.ptp(lengths)


def test_csv_with_a_byte_order_mark(tmp_path):
    path = write_csv(tmp_path / "r.csv", make_reviews(10))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    corpus = read_corpus(path)
    assert len(corpus.train) + len(corpus.test) == 10


def test_jsonl_with_a_byte_order_mark(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", make_reviews(10))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    corpus = read_corpus(path)
    assert len(corpus.train) + len(corpus.test) == 10


def test_held_out_splits_are_the_fixed_seed_stratified_split():
    from rnnsent.data.splits import (
        HELD_OUT_SEED,
        held_out_split,
        limit_indices,
        stratified_split,
        training_splits,
    )

    labels = np.array([0] * 37 + [1] * 63)
    kept, held = held_out_split(labels, 0.1)
    reference = stratified_split(labels, 0.1, HELD_OUT_SEED)
    assert np.array_equal(kept, reference[0]) and np.array_equal(held, reference[1])
    assert len(held) == 10 and labels[held].sum() == 6 and sorted([*kept, *held]) == list(range(100))
    assert limit_indices(labels, 0).tolist() == limit_indices(labels, 500).tolist() == list(range(100))
    assert np.array_equal(limit_indices(labels, 20), held_out_split(labels, 0.2)[1])
    empty = held_out_split(np.zeros(0, dtype=np.int64), 0.5)
    assert [part.tolist() for part in empty] == [[], []]

    split = split_of([1] * 100, labels)
    train, validation = training_splits(split, 0.25, limit=40)
    limited = limit_split(split, 40)
    kept, held = stratified_split(limited.labels, 0.25, HELD_OUT_SEED)
    assert np.array_equal(train.flat, limited.subset(kept).flat) and np.array_equal(validation.flat, limited.subset(held).flat)
    assert training_splits(split, 0.0) == (split, None)


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_an_empty_records_file_has_no_examples(tmp_path, suffix):
    path = tmp_path / f"r.{suffix}"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=rf"{path}: holds no labelled texts; give it rows of a text and its label"):
        read_corpus(path)


def test_csv_header_names_may_have_spaces_and_rows_old_mac_line_ends(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"\xef\xbb\xbf text , label \r" + b"".join(b"review %d,%d\r" % (i, i % 2) for i in range(10)))
    corpus = read_corpus(path)
    assert sorted(corpus.train.texts + corpus.test.texts) == sorted(f"review {i}" for i in range(10))


def test_aclimdb_urls_give_each_review_its_film_and_a_validation_split_by_film(tmp_path):
    from rnnsent.data.splits import training_splits

    tree = write_imdb_tree(tmp_path, per_label=6)
    for split in ("train", "test"):
        for label in ("neg", "pos"):
            # Reviews 0-1 are of film tt1, 2-3 of tt2, 4-5 of tt3 (the same films for both labels).
            lines = [f"http://www.imdb.com/title/tt{1 + i // 2}/usercomments" for i in range(6)]
            (tree / split / f"urls_{label}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = read_corpus(tree)
    assert corpus.train.groups == ["tt1", "tt1", "tt2", "tt2", "tt3", "tt3"] * 2
    encoded = load_encoded(tree, TextConfig(num_words=30), cache_dir=tmp_path / "cache", quiet=True)
    for _ in range(2):  # built, then read back from the cache
        train, validation = training_splits(encoded.train, 1 / 3, by="movie")
        assert set(train.groups.tolist()).isdisjoint(validation.groups.tolist()) and len(validation) == 4
        encoded = load_encoded(tree, TextConfig(num_words=30), cache_dir=tmp_path / "cache", quiet=True)
    # auto: by film where the data names the films, as best asks.
    by_film = training_splits(encoded.train, 1 / 3, by="movie")
    assert all(np.array_equal(a.flat, b.flat) for a, b in zip(training_splits(encoded.train, 1 / 3, by="auto"), by_film))
    csv_split = load_encoded(write_csv(tmp_path / "r.csv", make_reviews(30)), TextConfig(num_words=30),
                             cache_dir=tmp_path / "cache", quiet=True).train
    with pytest.raises(DataError, match="--validation-by movie needs the film of each review"):
        training_splits(csv_split, 0.2, by="movie")
    # ... and random reviews where it does not.
    assert all(np.array_equal(a.flat, b.flat)
               for a, b in zip(training_splits(csv_split, 0.2, by="auto"), training_splits(csv_split, 0.2)))


def test_ratings_are_read_from_the_file_names_of_a_folder_and_an_archive(tmp_path):
    from rnnsent.config import DataConfig

    tree = write_imdb_tree(tmp_path / "tree", per_label=3)
    (tree / "train/pos/7_10.txt").write_text("a ten", encoding="utf-8")
    for source in (tree, make_archive(tree, tmp_path / "aclImdb.tar.gz")):
        corpus = load_encoded(source, TextConfig(num_words=30), cache_dir=tmp_path / "cache", quiet=True,
                              data=DataConfig(labels="rating"))
        assert (corpus.labels.task, corpus.labels.names, corpus.labels.ordered) == ("multiclass", ("2", "8", "10"), True)


def test_best_holds_out_whole_films_of_aclimdb_and_says_so(tmp_path, capsys):
    import json

    from rnnsent.cli.main import main

    tree = write_imdb_tree(tmp_path, per_label=20)
    for label in ("neg", "pos"):
        lines = [f"http://www.imdb.com/title/tt{1 + i // 4}/usercomments" for i in range(20)]  # 5 films, 4 reviews each
        (tree / "train" / f"urls_{label}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code = main(["train", "--data", str(tree), "--preset", "best", "--num-words", "60", "--maxlen", "20",
                 "--embedding-dim", "4", "--hidden-size", "3", "--epochs", "1", "--pretrain-window", "0",
                 "--ngram-buckets", "64", "--threads", "1", "--quiet", "--out", str(tmp_path / "model")])
    output = capsys.readouterr().out
    assert code == 0 and "validation (whole films)" in output, output
    saved = json.loads((tmp_path / "model" / "config.json").read_text())["config"]["train"]
    assert saved["validation_by"] == "auto"


def test_a_validation_split_by_film_holds_out_at_least_one_film():
    from rnnsent.data.splits import grouped_held_out_split

    # 4 films of 10 reviews: a tenth is less than one film, which once left the validation split empty.
    groups = np.repeat(["tt1", "tt2", "tt3", "tt4"], 10)
    kept, held = grouped_held_out_split(groups, 0.1)
    assert len(held) == 10 and len(set(groups[held])) == 1 and len(kept) == 30
    assert set(groups[kept]).isdisjoint(groups[held])
    with pytest.raises(DataError, match="all 6 training reviews are of one film"):
        grouped_held_out_split(np.repeat(["tt1"], 6), 0.1)
