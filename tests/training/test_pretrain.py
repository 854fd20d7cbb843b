"""Word vectors from unlabelled text: counts by hand, the vectors file, and the CLI round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rnnsent.cli.main import main
from rnnsent.config import build_config
from rnnsent.data.cache import load_encoded
from rnnsent.text.vocabulary import Vocabulary
from rnnsent.training.vectors import (
    build_vectors,
    cooccurrence,
    load_vectors,
    ppmi_svd_vectors,
    save_vectors,
)

POSITIVE = ["a wonderful film, great acting and a great story", "great fun, wonderful music, loved it",
            "loved the story and the acting", "wonderful and great, a joy"]
NEGATIVE = ["an awful film, boring acting and a dull story", "boring, dull and awful music, hated it",
            "hated the story and the acting", "awful and boring, a mess"]
UNLABELLED = ["great and wonderful story", "boring and awful story", "dull and boring film", "a great joy"] * 3


def test_cooccurrence_counts_by_hand():
    # Two reviews: <start> 3 4 3 and <start> 4 0(pad) 5; window 2, weight 1/distance.
    flat = np.array([1, 3, 4, 3, 1, 4, 0, 5], dtype=np.int32)
    offsets = np.array([0, 4, 8])
    counts = cooccurrence(flat, offsets, vocab_size=6, window=2)
    expected = torch.zeros(6, 6)
    expected[3, 4] = expected[4, 3] = 2.0  # 3-4 and 4-3 at distance 1 in review one, both directions
    expected[3, 3] = 2 * 0.5  # 3 .. 3 at distance 2, counted in both directions
    expected[4, 5] = expected[5, 4] = 0.5  # 4 _ 5 at distance 2 in review two; the pad is skipped, not removed
    torch.testing.assert_close(counts, expected)


def test_pairs_never_cross_reviews():
    flat = np.array([1, 3, 1, 4], dtype=np.int32)
    counts = cooccurrence(flat, np.array([0, 2, 4]), vocab_size=5, window=3)
    assert float(counts.sum()) == 0.0


def test_ppmi_svd_vectors_are_deterministic_and_skip_unseen_words():
    counts = torch.zeros(8, 8)
    counts[3:, 3:] = torch.rand(5, 5, generator=torch.Generator().manual_seed(1)) * 10
    counts = counts + counts.T
    first, second = ppmi_svd_vectors(counts.clone(), 3), ppmi_svd_vectors(counts.clone(), 3)
    assert first.shape == (8, 3)
    torch.testing.assert_close(first, second)
    assert torch.count_nonzero(first[:3]) == 0
    assert float(first[3:].std()) == pytest.approx(0.05 / 3 ** 0.5, rel=0.3)
    # More dimensions than words: the five seen words span at most five of them, the rest are zero.
    wide = ppmi_svd_vectors(counts.clone(), 9)
    assert wide.shape == (8, 9) and torch.count_nonzero(wide[:, 8:]) == 0
    assert torch.count_nonzero(wide[:3]) == 0 and torch.linalg.matrix_rank(wide) <= 5


def test_vectors_of_a_small_vocabulary_cover_only_the_ids_in_the_text():
    # Ids 3-6 occur; a 20,000-id table must not cost a 20,000 x 20,000 co-occurrence matrix.
    flat = np.array([1, 3, 4, 5, 6, 3, 1, 4, 6, 5, 3], dtype=np.int32)
    splits = [(flat, np.array([0, 6, 11]))]
    notes = []
    vectors = build_vectors(splits, vocab_size=20_000, dim=8, window=2, log=notes.append)
    assert vectors.shape == (20_000, 8)
    assert torch.count_nonzero(vectors[7:]) == 0 and torch.count_nonzero(vectors[:3]) == 0
    assert torch.count_nonzero(vectors[3:7]) > 0
    assert any("4 distinct words span only 4 of the 8" in note for note in notes)
    # The same as the vectors of a table sized to the text.
    torch.testing.assert_close(vectors[:7], build_vectors(splits, vocab_size=7, dim=8, window=2))


def test_vectors_file_round_trip_and_checks(tmp_path):
    vocabulary = Vocabulary(("good", "bad", "film"))
    other = Vocabulary(("good", "bad", "movie"))
    vectors = torch.randn(6, 4)
    path = save_vectors(tmp_path / "vectors.safetensors", vectors, vocabulary)
    torch.testing.assert_close(load_vectors(path, vocabulary, 6, 4), vectors)
    with pytest.raises(ValueError, match="another vocabulary"):
        load_vectors(path, other, 6, 4)
    with pytest.raises(ValueError, match="--embedding-dim"):
        load_vectors(path, vocabulary, 6, 8)
    with pytest.raises(ValueError, match="no such file"):
        load_vectors(tmp_path / "missing.safetensors", vocabulary, 6, 4)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="safetensors"):
        load_vectors(tmp_path / "junk.safetensors", vocabulary, 6, 4)


@pytest.fixture
def imdb_folder(tmp_path):
    root = tmp_path / "aclImdb"
    for split, label, texts in [("train", "pos", POSITIVE), ("train", "neg", NEGATIVE), ("train", "unsup", UNLABELLED),
                                ("test", "pos", POSITIVE[::-1]), ("test", "neg", NEGATIVE[::-1])]:
        folder = root / split / label
        folder.mkdir(parents=True)
        for number, text in enumerate(texts):
            (folder / f"{number}_{7 if label == 'pos' else 2}.txt").write_text(text)
    return root


def test_pretrain_then_train_with_the_vectors(imdb_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNSENT_CACHE", str(tmp_path / "cache"))
    vectors = tmp_path / "vectors.safetensors"
    assert main(["pretrain", "--data", str(imdb_folder), "--num-words", "40", "--embedding-dim", "4",
                 "--pretrain-window", "2", "--threads", "1", "--out", str(vectors)]) == 0
    output = capsys.readouterr().out
    assert "8 training and 12 unlabelled texts" in output and "(40, 4)" in output
    settings = ["--data", str(imdb_folder), "--num-words", "40", "--embedding-dim", "4", "--hidden-size", "3",
                "--cell", "gru", "--maxlen", "12", "--padding", "post", "--use-lengths", "--epochs", "1",
                "--batch-size", "4", "--threads", "1", "--quiet", "--no-report-test"]
    out = tmp_path / "model"
    assert main(["train", *settings, "--embeddings", str(vectors), "--ngram-buckets", "64", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["model"]["embeddings"] == str(vectors)
    assert config["model"]["ngram_buckets"] == 64
    capsys.readouterr()
    # Vectors made for another vocabulary are refused with a one-line error.
    assert main(["train", *settings[:2], "--num-words", "20", *settings[4:], "--embeddings", str(vectors),
                 "--out", str(tmp_path / "other")]) == 2
    assert "another vocabulary" in capsys.readouterr().err


def test_cli_reports_a_diverged_run_without_a_traceback(imdb_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNSENT_CACHE", str(tmp_path / "cache"))
    config = build_config("seed", {"num_words": 40})
    corpus = load_encoded(imdb_folder, config.text)
    poisoned = save_vectors(tmp_path / "nan.safetensors", torch.full((40, 4), float("nan")), corpus.vocabulary)
    capsys.readouterr()
    code = main(["train", "--data", str(imdb_folder), "--num-words", "40", "--embedding-dim", "4", "--hidden-size", "3",
                 "--epochs", "1", "--batch-size", "4", "--threads", "1", "--quiet", "--embeddings", str(poisoned),
                 "--out", str(tmp_path / "model")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.splitlines()[-1].startswith("error: the loss became NaN or infinite")
    assert "Traceback" not in captured.err


def test_train_can_build_its_own_vectors_first(imdb_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNSENT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "model"
    settings = ["--data", str(imdb_folder), "--num-words", "40", "--embedding-dim", "3", "--hidden-size", "3",
                "--epochs", "1", "--batch-size", "4", "--threads", "1", "--quiet"]
    assert main(["train", *settings, "--pretrain-window", "2", "--out", str(out)]) == 0
    assert "word vectors built from 20 texts" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    # Building the vectors is part of the training time (on this tiny data it can round to 0.0 s).
    assert 0 <= metrics["pretrain_seconds"] <= metrics["train_seconds"]
    assert main(["train", *settings, "--pretrain-window", "2", "--embeddings", "x.safetensors", "--out", str(out)]) == 2
    assert "choose one" in capsys.readouterr().err


@pytest.mark.parametrize("validation_split, limit", [(0.0, 0), (0.25, 0), (0.2, 30), (0.0, 30)])
def test_pretraining_reads_exactly_the_training_reviews_minus_validation(tmp_path, validation_split, limit):
    """Word vectors see the reviews prepare_data trains on, in the same order, and never a validation one."""
    from rnnsent.data.corpus import EncodedCorpus, EncodedSplit
    from rnnsent.training.tensors import prepare_data
    from rnnsent.training.vectors import pretraining_reviews

    # Review i is <start> followed by the one word id 3 + i, so every row names its review.
    count = 50
    labels = np.array([index % 3 == 0 for index in range(count)], dtype=np.int64)
    flat = np.stack([np.ones(count), 3 + np.arange(count)], axis=1).astype(np.int32).ravel()
    split = EncodedSplit(flat, np.arange(0, 2 * count + 1, 2, dtype=np.int64), labels)
    corpus = EncodedCorpus(Vocabulary(tuple(f"w{i}" for i in range(count))), split, split)
    config = build_config("seed", {"num_words": 3 + count, "maxlen": 2, "padding": "post",
                                   "validation_split": validation_split})
    data = prepare_data(corpus, config, limit)
    source = tmp_path / "reviews.csv"  # a CSV source has no unlabelled reviews
    source.write_text("text,label\ngood,1\nbad,0\n")
    (pretraining,) = pretraining_reviews(corpus, source, config, limit)

    def reviews(ids) -> list[int]:
        return [int(row[1]) - 3 for row in ids]

    trained = reviews(data.train.ids)
    validation = reviews(data.validation.ids) if data.validation is not None else []
    pretrain_flat, pretrain_offsets = pretraining
    assert pretrain_offsets.tolist() == list(range(0, 2 * len(trained) + 1, 2))
    assert reviews(pretrain_flat.reshape(-1, 2)) == trained
    assert not set(trained) & set(validation)
    assert len(trained) + len(validation) == (limit or count)
    assert (data.validation is None) == (validation_split == 0)


def test_a_run_reads_its_unlabelled_texts_once(imdb_folder, tmp_path, monkeypatch, capsys):
    # The word vectors and the unlabelled batches once read and encoded train/unsup each.
    import rnnsent.data.unlabelled
    import rnnsent.training.unlabelled

    monkeypatch.setenv("RNNSENT_CACHE", str(tmp_path / "cache"))
    reads = []
    original = rnnsent.data.unlabelled.read_unlabelled_texts
    for module in (rnnsent.data.unlabelled, rnnsent.training.unlabelled):  # the reader and the one who imports it
        monkeypatch.setattr(module, "read_unlabelled_texts", lambda *args: reads.append(args) or original(*args))
    settings = ["--data", str(imdb_folder), "--num-words", "40", "--embedding-dim", "3", "--hidden-size", "3",
                "--epochs", "1", "--batch-size", "4", "--threads", "1", "--quiet", "--pretrain-window", "2",
                "--entropy-weight", "0.1", "--unlabelled-batch-size", "4"]
    assert main(["train", *settings, "--out", str(tmp_path / "model")]) == 0
    assert "word vectors built from 20 texts" in capsys.readouterr().out
    assert len(reads) == 1


def test_pretraining_reads_the_named_unlabelled_texts(imdb_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNSENT_CACHE", str(tmp_path / "cache"))
    extra = tmp_path / "more.txt"
    extra.write_text("\n".join(UNLABELLED[:5]) + "\n")
    assert main(["pretrain", "--data", str(imdb_folder), "--num-words", "40", "--embedding-dim", "4",
                 "--pretrain-window", "2", "--threads", "1", "--unlabelled-data", str(extra),
                 "--out", str(tmp_path / "vectors.safetensors")]) == 0
    assert "8 training and 5 unlabelled texts" in capsys.readouterr().out


def test_a_wide_embedding_on_a_few_words_trains_with_word_vectors(imdb_folder, tmp_path, monkeypatch, capsys):
    # bigru's 64-wide embedding over a vocabulary of about 30 words: before, the vectors'
    # SVD refused ("--embedding-dim 64 is larger than the vocabulary") after counting.
    monkeypatch.setenv("RNNSENT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "model"
    # A quarter held out: bigru's tenth of 8 texts would leave no validation text (an error).
    assert main(["train", "--data", str(imdb_folder), "--preset", "bigru", "--pretrain-window", "2", "--epochs", "1",
                 "--validation-split", "0.25", "--threads", "1", "--out", str(out)]) == 0
    output = capsys.readouterr().out
    assert "embedding dimensions; the rest start at zero" in output and "Test accuracy" in output
