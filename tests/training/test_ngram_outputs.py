"""The stacked n-gram regression and blend for K outputs, sizing a recipe to its data, and the
``auto`` and ``small`` presets that let a few hundred texts of any label space train with no flags."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.conftest import FILLER_WORDS, make_reviews, write_csv, write_imdb_tree, write_jsonl

import rnnsent
from rnnsent.config import BEST, PRESETS, SMALL, build_config, resolve_preset
from rnnsent.data.corpus import EncodedCorpus, EncodedSplit
from rnnsent.labels import LabelSpace
from rnnsent.model.build import build_model
from rnnsent.model.composed import JointClassifier, StackedClassifier
from rnnsent.model.ngrams import NgramBranch
from rnnsent.text.vocabulary import Vocabulary
from rnnsent.training.ngram_regression import (
    count_distinct_ngrams,
    fit_blend,
    fit_ngram_regression,
    log_count_ratio_matrix,
    log_count_ratios,
    presence_matrix,
    regression_memory_estimate,
)
from rnnsent.training.pipeline import chance_advice, choose_preset, next_power_of_two, size_to_data

VOCAB = 12
QUIET = {"progress": False, "verbose": False, "threads": 1}


def cued_rows(count: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Post-padded id rows whose class k is cued by word 3 + k at position 2, misleading on some rows."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (count,), generator=generator)
    ids = torch.randint(3 + classes, VOCAB, (count, 8), generator=generator)
    flipped = torch.rand(count, generator=generator) < 0.15
    cue = torch.where(flipped, (labels + 1) % classes, labels)
    ids[:, 2] = 3 + cue
    ids[:, 6:] = 0
    return ids, labels


def dense_problem(branch: NgramBranch, ids: torch.Tensor, targets: torch.Tensor):
    """The fitted problem rebuilt densely: presence ``(n, used)``, ratios ``(used, K)``, weights ``w``."""
    rows, features = presence_matrix(branch, ids)
    seen, columns = torch.unique(features, return_inverse=True)
    ratios = log_count_ratio_matrix(rows, columns, targets, len(seen))
    presence = torch.zeros(len(ids), len(seen), dtype=torch.float64)
    presence[rows, columns] = 1.0
    weights = branch.weight.weight[seen].double() / ratios
    return presence, ratios, weights, seen


def test_multiclass_regression_reaches_the_optimum_of_its_objective():
    ids, labels = cued_rows(240, 3)
    branch = NgramBranch(VOCAB, 13, order=2, binary=True, outputs=3)
    stats = fit_ngram_regression(branch, ids, labels, inverse_l2=0.5, task="multiclass")
    targets = F.one_hot(labels, 3).double()
    presence, ratios, weights, seen = dense_problem(branch, ids, targets)
    logits = presence @ (ratios * weights) + branch.bias.double()
    residual = 0.5 * (torch.softmax(logits, dim=1) - targets)
    # At the optimum of 0.5 * sum(softmax cross-entropy) + |w|^2 / 2 both gradients vanish.
    assert (ratios * (presence.T @ residual) + weights).abs().max() < 1e-3
    assert residual.sum(dim=0).abs().max() < 1e-3
    unseen = torch.ones(branch.weight.num_embeddings, dtype=torch.bool)
    unseen[seen] = False
    assert branch.weight.weight[unseen].abs().max() == 0
    assert stats["features"] == len(seen) and stats["train_accuracy"] >= 0.8
    torch.testing.assert_close(branch(ids).double(), logits, atol=1e-4, rtol=1e-4)


def test_multilabel_regression_is_one_binary_regression_per_label():
    ids, classes = cued_rows(200, 2, seed=3)
    # Label 0: the class-0 cue; label 1: word 5 (or 6) at position 3, independent of label 0.
    generator = torch.Generator().manual_seed(4)
    second = (torch.rand(len(ids), generator=generator) < 0.5)
    ids[:, 3] = torch.where(second, 5, 6)
    targets = torch.stack([(classes == 0).float(), second.float()], dim=1)
    joint = NgramBranch(VOCAB, 13, order=2, binary=True, outputs=2)
    fit_ngram_regression(joint, ids, targets, inverse_l2=1.0, task="multilabel")
    presence, ratios, weights, _ = dense_problem(joint, ids, targets.double())
    logits = presence @ (ratios * weights) + joint.bias.double()
    residual = torch.sigmoid(logits) - targets.double()
    assert (ratios * (presence.T @ residual) + weights).abs().max() < 1e-3
    # Each label's weights are its own binary fit's: the same optimum, reached independently.
    for k in range(2):
        alone = NgramBranch(VOCAB, 13, order=2, binary=True)
        fit_ngram_regression(alone, ids, targets[:, k], inverse_l2=1.0)
        torch.testing.assert_close(joint.weight.weight[:, k], alone.weight.weight[:, 0], atol=2e-3, rtol=1e-3)
        assert abs(float(joint.bias[k]) - float(alone.bias)) < 2e-3


def test_log_count_ratios_of_three_classes_by_hand():
    # Rows 0, 1 are class 0; row 2 class 1; row 3 class 2. Feature 0 in rows 0, 1; feature 1 in
    # rows 1, 2; feature 2 in row 3.
    rows = torch.tensor([0, 1, 1, 2, 3])
    features = torch.tensor([0, 0, 1, 1, 2])
    targets = F.one_hot(torch.tensor([0, 0, 1, 2]), 3).double()
    ratios = log_count_ratio_matrix(rows, features, targets, 3)
    # Class k against the rest, counts smoothed by 1. Class 0: p = (2, 1, 0) + 1 = (3, 2, 1) of 6,
    # q = (0, 1, 1) + 1 = (1, 2, 2) of 5. Class 1: p = (0, 1, 0) + 1 of 4, q = (2, 1, 1) + 1 of 7.
    # Class 2: p = (0, 0, 1) + 1 of 4, q = (2, 2, 0) + 1 of 7.
    expected = [[math.log((3 / 6) / (1 / 5)), math.log((1 / 4) / (3 / 7)), math.log((1 / 4) / (3 / 7))],
                [math.log((2 / 6) / (2 / 5)), math.log((2 / 4) / (2 / 7)), math.log((1 / 4) / (3 / 7))],
                [math.log((1 / 6) / (2 / 5)), math.log((1 / 4) / (2 / 7)), math.log((2 / 4) / (1 / 7))]]
    torch.testing.assert_close(ratios, torch.tensor(expected, dtype=torch.float64))
    # Each column is the binary ratio of its class against the rest.
    torch.testing.assert_close(ratios[:, 1], log_count_ratios(rows, features, targets[:, 1], 3))


def stacked_k_model(labels: LabelSpace) -> StackedClassifier:
    config = build_config("seed", {"num_words": VOCAB, "embedding_dim": 4, "hidden_size": 3, "ngram_buckets": 13,
                                   "ngram_fit": "stacked", "validation_split": 0.1})
    torch.manual_seed(0)
    return build_model(config.model, VOCAB, labels=labels).eval()


def test_multiclass_blend_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    n, truth_bias = 40_000, np.array([-0.3, 0.2, 0.4])
    parts = {"recurrent": rng.normal(size=(n, 3)), "ngrams": rng.normal(size=(n, 3)) * 2}
    logits = 2.0 * parts["recurrent"] + 0.5 * parts["ngrams"] + truth_bias
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    labels = (rng.random((n, 1)) > probabilities.cumsum(axis=1)).sum(axis=1)
    model = stacked_k_model(LabelSpace("multiclass", ("a", "b", "c")))
    assert model.blend.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    stats = fit_blend(model, parts, labels)
    blend = model.blend.numpy()
    np.testing.assert_allclose(blend[:2], [2.0, 0.5], atol=0.06)
    # Softmax is unchanged by adding one number to every intercept: compare them centred.
    np.testing.assert_allclose(blend[2:] - blend[2:].mean(), truth_bias - truth_bias.mean(), atol=0.06)
    assert stats["blend_accuracy"] >= max(stats["recurrent_accuracy"], stats["ngrams_accuracy"])
    ids = torch.randint(1, VOCAB, (5, 7))
    with torch.no_grad():
        parts_now = model.part_logits(ids)
        torch.testing.assert_close(model(ids)[0], model.blend[0] * parts_now["recurrent"]
                                   + model.blend[1] * parts_now["ngrams"] + model.blend[2:])


def test_multilabel_blend_recovers_known_coefficients():
    rng = np.random.default_rng(1)
    n, truth_bias = 40_000, np.array([-0.5, 0.3])
    parts = {"recurrent": rng.normal(size=(n, 2)), "ngrams": rng.normal(size=(n, 2))}
    logits = 1.5 * parts["recurrent"] + 0.8 * parts["ngrams"] + truth_bias
    labels = (rng.random((n, 2)) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    model = stacked_k_model(LabelSpace("multilabel", ("x", "y")))
    fit_blend(model, parts, labels)
    np.testing.assert_allclose(model.blend.numpy(), [1.5, 0.8, *truth_bias], atol=0.06)


def test_joint_branch_with_k_outputs_trains():
    config = build_config("seed", {"num_words": VOCAB, "embedding_dim": 4, "hidden_size": 3, "ngram_buckets": 13,
                                   "ngram_fit": "joint", "ngram_lr_scale": 50.0})
    torch.manual_seed(0)
    model = build_model(config.model, VOCAB, labels=LabelSpace("multiclass", ("a", "b", "c")))
    assert isinstance(model, JointClassifier) and model.ngrams.weight.weight.shape == (VOCAB + 13 + 1, 3)
    ids, labels = cued_rows(120, 3)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        logits, loss = model(ids, labels=labels)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert logits.shape == (120, 3) and losses[-1] < 0.7 * losses[0]
    assert float((logits.argmax(dim=1) == labels).float().mean()) >= 0.8


# ----------------------------------------------------------------------------- sizing to the data


def tiny_corpus(texts: list[list[int]], words: int, labels=None) -> EncodedCorpus:
    flat = np.concatenate([np.asarray(t, dtype=np.int32) for t in texts])
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in texts])]).astype(np.int64)
    targets = np.asarray(labels if labels is not None else [i % 2 for i in range(len(texts))], dtype=np.int64)
    split = EncodedSplit(flat, offsets, targets)
    return EncodedCorpus(Vocabulary(tuple(f"w{i}" for i in range(words))), split, split)


def test_size_to_data_caps_words_buckets_and_length_and_says_so():
    # 5 words (ids 3..7) in texts of 2 to 6 ids; their distinct bigrams and trigrams counted by hand.
    texts = [[1, 3, 4], [1, 3, 4, 5], [1, 5, 6, 7, 3, 4], [1, 7]]
    corpus = tiny_corpus(texts, 5)
    bigrams = {tuple(t[i:i + 2]) for t in texts for i in range(len(t) - 1)}
    trigrams = {tuple(t[i:i + 3]) for t in texts for i in range(len(t) - 2)}
    config = build_config("small", {"ngram_order": 3})
    messages = []
    sized = size_to_data(config, corpus, messages.append)
    assert config.text.num_words == 20_000 and config.model.ngram_buckets == 16_000_000  # the original is kept
    assert sized.text.num_words == 3 + 5
    assert sized.model.ngram_buckets == next_power_of_two(4 * (len(bigrams) + len(trigrams))) == 64
    assert sized.text.maxlen == math.ceil(np.quantile([3, 4, 6, 2], 0.95))
    assert len(messages) == 1 and "num_words 20,000 -> 8" in messages[0] and "ngram_buckets 16,000,000 -> 64" in messages[0]
    assert size_to_data(sized, corpus).to_dict() == sized.to_dict()  # sizing twice changes nothing more


def test_distinct_ngrams_are_counted_as_the_model_reads_the_texts():
    ids = torch.tensor([[1, 3, 4, 3, 4, 0], [1, 3, 4, 5, 0, 0], [5, 5, 5, 5, 5, 5]])
    # (1 3) (3 4) (4 3) (4 5) (5 5); with trigrams also (1 3 4) (3 4 3) (4 3 4) (3 4 5) (5 5 5).
    assert count_distinct_ngrams(lambda a, b: ids[a:b], 3, 2, chunk=2) == 5
    assert count_distinct_ngrams(lambda a, b: ids[a:b], 3, 3, chunk=1) == 10
    assert count_distinct_ngrams(lambda a, b: ids[a:b], 3, 1) == 0


def test_sizing_leaves_the_imdb_presets_as_they_are():
    # IMDB's 25,000 training reviews hold 74,000+ distinct words (num_words keeps 20,000) and,
    # read as best reads them (maxlen 1000), 4,670,821 distinct 2-3-grams (count_distinct_ngrams,
    # 4.5 s on one core). A cap of 4 buckets per n-gram is 2**25, above best's 16 million.
    assert next_power_of_two(4 * 4_670_821) == 2 ** 25 > BEST["ngram_buckets"]
    # best keeps its table unless the data had fewer than 2.1 million distinct n-grams.
    assert next_power_of_two(4 * 2_097_153) > BEST["ngram_buckets"] >= next_power_of_two(4 * 2_000_000)
    assert resolve_preset("auto", imdb_sentiment=True) == "seed"


def test_memory_estimate_of_the_regression_grows_with_rows_and_features():
    # Measured: 3,000 IMDB reviews as best reads them peaked 233-272 MB above the start.
    assert 200e6 < regression_memory_estimate(1_755_069, 747_047) < 300e6
    # A million IMDB-length texts (about 585 distinct 1-3-grams each, 16 million n-grams used).
    assert 30 * 2**30 < regression_memory_estimate(1_000_000 * 585, 16_020_000) < 40 * 2**30
    assert regression_memory_estimate(300 * 585, 100_000, outputs=3) < 100e6


def test_a_small_best_run_makes_a_small_model_directory(tmp_path):
    # 300 texts over a 3,000-word vocabulary, their labels set by two cue words each.
    rng = random.Random(2)
    pool = [f"word{i}" for i in range(3000)]
    rows = [(" ".join(rng.choices(pool, k=60) + [("great" if i % 2 else "awful")] * 2), i % 2) for i in range(300)]
    data = write_csv(tmp_path / "reviews.csv", rows)
    model = rnnsent.train("best", data=data, out=tmp_path / "model", epochs=1, **QUIET)
    size = sum(path.stat().st_size for path in (tmp_path / "model").rglob("*") if path.is_file())
    assert size < 10_000_000, size  # 6.3 MB, of which 4.8 MB the checkpoint (weights and Adam state)
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    recipe = saved.get("config", saved)
    assert recipe["preset"] == "best" and recipe["model"]["ngram_buckets"] == model.config.model.ngram_buckets <= 2 ** 17
    assert recipe["text"]["num_words"] == model.config.text.num_words == len(model.vocabulary.words) + 3


# ----------------------------------------------------------------------------- auto and small


def test_auto_is_seed_on_imdb_sentiment_and_small_elsewhere(tmp_path):
    imdb = write_imdb_tree(tmp_path / "imdb")
    assert choose_preset("auto", imdb) == "seed" and choose_preset("auto", tmp_path / "imdb") == "seed"
    archive = tmp_path / "aclImdb_v1.tar.gz"
    archive.write_bytes(b"")
    assert choose_preset("auto", archive) == "seed"
    assert choose_preset("auto", write_csv(tmp_path / "r.csv", make_reviews(4))) == "small"
    rating = build_config("seed", {"labels": "rating"}).data
    assert choose_preset("auto", imdb, rating) == "small"
    assert choose_preset("bigru", tmp_path / "r.csv") == "bigru"
    assert "auto" not in PRESETS and SMALL["ngram_fit"] == "stacked"
    with pytest.raises(ValueError, match="preset auto"):
        build_config("auto")


def train_no_flags(tmp_path, path):
    model = rnnsent.train(data=path, out=tmp_path / "model", **QUIET)
    assert model.config.preset == "small"
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved.get("config", saved)["preset"] == "small"
    return model


def test_small_data_learns_192_binary_reviews(tmp_path):
    model = train_no_flags(tmp_path, write_csv(tmp_path / "reviews.csv", make_reviews(192)))
    assert model.metrics["accuracy"] >= 0.95
    assert model.predict(["a wonderful superb film"])[0].label == "positive"


def topic_text(rng: random.Random, cues: list[str], length: int = 10) -> str:
    words = [rng.choice(FILLER_WORDS) for _ in range(length)]
    for cue in rng.sample(cues, 2):
        words.insert(rng.randrange(len(words) + 1), cue)
    return " ".join(words)


TOPICS = {"sports": ["goal", "match", "team", "coach", "league"],
          "politics": ["vote", "senate", "party", "election", "minister"],
          "science": ["atom", "cell", "theory", "experiment", "laboratory"]}


def test_small_data_learns_three_classes(tmp_path):
    rng = random.Random(0)
    rows = [(topic_text(rng, cues), name) for i in range(80) for name, cues in TOPICS.items()]
    model = train_no_flags(tmp_path, write_csv(tmp_path / "topics.csv", rows))
    assert model.config.model.ngram_fit == "stacked" and model.metrics["accuracy"] >= 0.85  # chance: 1/3


def test_small_data_learns_star_ratings(tmp_path):
    rng = random.Random(1)
    cues = {1: ["awful", "worst", "horrible"], 2: ["poor", "weak", "disappointing"], 3: ["okay", "average", "fine"],
            4: ["good", "nice", "enjoyable"], 5: ["superb", "masterpiece", "brilliant"]}
    rows = [(topic_text(rng, words), stars) for _ in range(50) for stars, words in cues.items()]
    model = train_no_flags(tmp_path, write_jsonl(tmp_path / "stars.jsonl", rows))
    assert model.labels.names == ("1", "2", "3", "4", "5") and model.metrics["accuracy"] >= 0.7  # chance: 1/5
    assert model.predict(["a masterpiece , brilliant"])[0].label == "5"


def test_small_data_learns_spam(tmp_path):
    rng = random.Random(2)
    spam = ["free", "winner", "prize", "click", "offer", "cash"]
    ham = ["meeting", "lunch", "tomorrow", "report", "thanks", "family"]
    rows = [(topic_text(rng, spam if i % 2 else ham), "spam" if i % 2 else "ham") for i in range(200)]
    model = train_no_flags(tmp_path, write_csv(tmp_path / "spam.csv", rows))
    assert model.labels.task == "binary" and model.metrics["accuracy"] >= 0.9


def test_small_data_learns_several_labels_per_text(tmp_path):
    rng = random.Random(3)
    rows = []
    for i in range(240):
        chosen = [name for name in TOPICS if rng.random() < 0.5] or [rng.choice(list(TOPICS))]
        words = [rng.choice(FILLER_WORDS) for _ in range(8)]
        for name in chosen:
            words += rng.sample(TOPICS[name], 2)
        rng.shuffle(words)
        rows.append((" ".join(words), chosen))
    model = train_no_flags(tmp_path, write_jsonl(tmp_path / "tags.jsonl", rows))
    # Chance (the most frequent label set) is about 1/7 of texts exactly right.
    assert model.labels.task == "multilabel" and model.metrics["subset_accuracy"] >= 0.7


@pytest.mark.parametrize("texts, epochs, expected", [
    # 40 texts, a tenth held out: 36 / 128 is 1 step an epoch, 4 in all; warm-up 100 -> 1.
    (40, 4, 1),
    # IMDB's 25,000 with best's 3 epochs: 3 x 176 = 528 steps, more than 100: kept.
    (25_000, 3, 100),
    # Just past the run's length: 800 texts, 720 / 128 -> 6 steps x 16 epochs = 96 <= 100 -> 24.
    (800, 16, 24),
])
def test_a_warm_up_as_long_as_the_run_is_cut_to_a_quarter_of_it(texts, epochs, expected):
    corpus = tiny_corpus([[1, 3 + i % 5, 4] for i in range(texts)], 5)
    config = build_config("bigru", {"epochs": epochs})
    messages = []
    sized = size_to_data(config, corpus, messages.append)
    assert config.train.warmup_steps == 100 and sized.train.warmup_steps == expected
    assert ("warmup_steps 100 -> " in " ".join(messages)) == (expected != 100)
    assert size_to_data(sized, corpus).train.warmup_steps == expected  # sizing twice changes nothing more


def test_chance_advice_suggests_only_what_the_recipe_lacks():
    seed = build_config("seed")
    assert chance_advice(seed, 300) == ["more epochs (--epochs 20)", "a larger learning rate (--optimizer adam --lr 0.003)",
                                        "a larger model (--cell gru --hidden-size 32)",
                                        "--preset small (made for a few hundred to a few thousand texts)"]
    # bigru already has Adam at 0.003 and 64 GRU units: only more epochs and the preset for the data's size.
    assert chance_advice(build_config("bigru"), 300) == [
        "more epochs (--epochs 8)", "--preset small (made for a few hundred to a few thousand texts)"]
    assert chance_advice(build_config("best"), 50_000) == ["more epochs (--epochs 6)"]
    assert chance_advice(build_config("small"), 50_000)[-1] == "--preset best"


def test_a_run_that_learns_nothing_says_so_with_advice_for_its_recipe(tmp_path, capsys):
    import rnnsent

    # Every text the same: no model can tell the labels apart, so it answers one label for all.
    texts, labels = ["the same words every time"] * 80, ["spam", "ham"] * 40
    rnnsent.train("seed", data=(texts, labels), out=tmp_path / "model", epochs=1, threads=1, progress=False)
    output = capsys.readouterr().out
    assert "warning: the model predicts '" in output and "for every test text; it has not learned" in output
    assert "try more epochs (--epochs 2), a larger learning rate (--optimizer adam --lr 0.003)" in output
