"""Language-model pretraining of the encoder: the loss, truncated back-propagation, the backward
stream, exact resume, the encoder file and its checks, and the commands."""

from __future__ import annotations

import copy
import json
import random

import numpy as np
import pytest
import torch
from tests.conftest import make_review, write_imdb_tree

from rnnsent.artifact.files import read_metadata, read_tensors
from rnnsent.cli.main import main
from rnnsent.config import RunOptions, build_config
from rnnsent.data.cache import load_encoded
from rnnsent.model.build import build_model, recurrent_network
from rnnsent.model.language_model import LanguageModel, copy_into_classifier
from rnnsent.training import checkpoint as checkpoints
from rnnsent.training.encoder_file import load_encoder, save_encoder
from rnnsent.training.language_model import (
    LanguageModelTrainer,
    PretrainingInterrupted,
    held_out_loss,
)
from rnnsent.training.pipeline import initialise_encoder, pretraining_reader
from rnnsent.training.token_streams import (
    TokenStreams,
    direction_rows,
    reversed_reviews,
    review_rows,
    token_streams,
)

SMALL = {"num_words": 30, "cell": "gru", "embedding_dim": 6, "hidden_size": 5, "bidirectional": True,
         "lm_batch_size": 4, "lm_bptt": 6, "lm_lr": 0.02}


def small_config(**settings):
    return build_config("seed", {**SMALL, **settings})


def pattern_reviews(count: int = 200) -> list[np.ndarray]:
    """Reviews ``<start> 3 4 ... 12``: every next token is predictable."""
    return [np.array([1, *range(3, 13)], dtype=np.int64) for _ in range(count)]


def random_reviews(count: int, seed: int = 0) -> list[np.ndarray]:
    """Reviews of 2 to 17 tokens: ``<start>`` and random word ids."""
    rng = np.random.default_rng(seed)
    return [np.array([1, *rng.integers(3, 30, rng.integers(1, 17))], dtype=np.int64) for _ in range(count)]


def trainer_for(config, reviews: list[np.ndarray], seed: int = 0, **kwargs) -> LanguageModelTrainer:
    torch.manual_seed(seed)
    model = LanguageModel(config.model, config.text.num_words)
    return LanguageModelTrainer(config, model, TokenStreams(reviews, reviews[:20], len(reviews), 0),
                                torch.device("cpu"), **kwargs)


def test_the_loss_falls_on_a_tiny_corpus():
    config = small_config()
    trainer = trainer_for(config, pattern_reviews())
    held_out = direction_rows(pattern_reviews(30), ["forward", "backward"], 3, config.train.lm_bptt, whole=True)
    before = held_out_loss(trainer.model, held_out)
    trainer.fit(checkpoints.Progress(), 150)
    after = held_out_loss(trainer.model, held_out)
    for name in ("forward", "backward"):
        assert before[name] > 2.0  # near uniform over the softmax head's 16 entries at the start
        assert after[name] < 0.25 * before[name]


def test_a_fixed_embedding_stays_as_it_starts_while_the_cells_learn():
    config = small_config(lm_embedding="fixed")
    trainer = trainer_for(config, pattern_reviews())
    embedding, cell = trainer.model.embedding.weight.clone(), trainer.model.cells[1].weight_hh_l0.clone()
    trainer.fit(checkpoints.Progress(), 5)
    assert torch.equal(trainer.model.embedding.weight, embedding)
    assert not torch.equal(trainer.model.cells[1].weight_hh_l0, cell)


def review_by_review_loss(model: LanguageModel, reviews: list[np.ndarray]) -> dict[str, float]:
    """The oracle: each review read whole, from a zero state, by each direction."""
    losses = {}
    with torch.no_grad():
        for index, name in enumerate(model.direction_names):
            total, count = 0.0, 0
            for review in reviews:
                tokens = torch.from_numpy(review[::-1].copy() if index else review)[None, :]  # (1, length)
                _, summed, _ = model(name, tokens[:, :-1], tokens[:, 1:], model.zero_state(name, 1))
                total, count = total + float(summed), count + tokens.shape[1] - 1
            losses[name] = total / count
    return losses


@pytest.mark.parametrize("cell", ["gru", "lstm", "simple"])
def test_segments_with_the_state_carried_within_reviews_equal_reading_each_review_whole(cell):
    config = small_config(cell=cell, num_layers=2)
    torch.manual_seed(1)
    model = LanguageModel(config.model, 30).eval()
    reviews = random_reviews(12)
    expected = review_by_review_loss(model, reviews)
    for batch, bptt in ((1, 1), (3, 4), (5, 7), (2, 40)):
        rows = direction_rows(reviews, model.direction_names, batch, bptt, whole=True)
        cut = held_out_loss(model, rows)
        for name in expected:
            assert cut[name] == pytest.approx(expected[name], rel=1e-5)


def test_training_carries_each_directions_state_within_a_review_and_resets_it_at_the_next():
    config = small_config()
    trainer = trainer_for(config, random_reviews(200))
    bptt, progress = config.train.lm_bptt, checkpoints.Progress()
    carried = reset = 0
    for step in range(6):
        before = copy.deepcopy(trainer.model)  # the weights the step reads with
        states = {name: state.clone() for name, state in trainer.states.items()}
        trainer.step(progress)
        for index, name in enumerate(("forward", "backward")):
            rows = trainer.rows[name]
            starts = rows.starts[:, step]
            inputs = rows.inputs[:, step * bptt:(step + 1) * bptt]
            start_state = torch.where(starts[None, :, None], torch.zeros_like(states[name]), states[name])
            _, expected = before.cells[index](before.embedding(inputs), start_state)
            torch.testing.assert_close(trainer.states[name], expected, rtol=0, atol=1e-6)
            carried += int((~starts).sum()) if step else 0
            reset += int(starts.sum())
    assert carried and reset  # both cases occurred


def test_the_backward_model_reads_every_review_reversed():
    config = small_config()
    trainer = trainer_for(config, random_reviews(200))

    def reviews_of(rows, row: int) -> list[list[int]]:
        """The reviews a row holds, read back from its inputs and targets."""
        found = []
        for segment in range(rows.segments):
            inputs, targets, starts = rows.segment(segment)
            if starts[row]:
                found.append([int(inputs[row, 0])])
            found[-1].extend(int(token) for token in targets[row] if token != 0)
        return found

    for row in range(config.train.lm_batch_size):
        forward, backward = reviews_of(trainer.rows["forward"], row), reviews_of(trainer.rows["backward"], row)
        assert forward and backward == [review[::-1] for review in forward]
    # The backward model's loss equals a forward model with its weights reading the reversed reviews.
    model = trainer.model
    mirrored = copy.deepcopy(model)
    mirrored.cells[0].load_state_dict(model.cells[1].state_dict())
    reviews = random_reviews(10, seed=5)
    backward = held_out_loss(model, direction_rows(reviews, ["forward", "backward"], 2, 4, whole=True))["backward"]
    reversed_forward = held_out_loss(mirrored, direction_rows(reversed_reviews(reviews), ["forward", "backward"], 2, 4,
                                                               whole=True))
    assert reversed_forward["forward"] == pytest.approx(backward, rel=1e-6)


def test_review_rows_start_every_review_on_a_segment_and_pad_its_last():
    reviews = [np.array([1, 3, 4, 5, 6], dtype=np.int64), np.array([1, 7], dtype=np.int64),
               np.array([1, 8, 9, 10], dtype=np.int64)]
    rows = review_rows(reviews, batch=1, bptt=3, whole=True)
    assert rows.inputs.tolist() == [[1, 3, 4, 5, 0, 0, 1, 0, 0, 1, 8, 9]]
    assert rows.targets.tolist() == [[3, 4, 5, 6, 0, 0, 7, 0, 0, 8, 9, 10]]
    assert rows.starts.tolist() == [[True, False, True, True]]
    assert rows.predicted().tolist() == [3, 1, 1, 3]
    two = review_rows(reviews, batch=2, bptt=3)  # 4 segments: 2 a row, the first review fills row 0
    assert two.starts.tolist() == [[True, False], [True, True]]


def test_token_streams_hold_out_unlabelled_reviews_and_keep_every_training_review():
    training = [np.array([1, 3 + i], dtype=np.int64) for i in range(10)]
    unlabelled = [np.array([1, 100 + i, 100 + i], dtype=np.int64) for i in range(40)]

    def pair(reviews):
        offsets = np.cumsum([0] + [len(review) for review in reviews])
        return np.concatenate(reviews), offsets

    streams = token_streams([pair(training), pair(unlabelled)], seed=0)
    assert (streams.training_reviews, streams.unlabelled_reviews, streams.held_out_reviews) == (10, 38, 2)
    held = {int(token) for review in streams.held_out for token in review} - {1}
    trained = {int(token) for review in streams.train for token in review} - {1}
    assert held and held <= set(range(100, 140)) and not held & trained
    assert set(range(3, 13)) <= trained and len(streams.train) == 48
    # Without unlabelled reviews, the held-out ones come from the training reviews.
    alone = token_streams([pair(training)], seed=0)
    assert (alone.training_reviews, alone.unlabelled_reviews, alone.held_out_reviews) == (9, 0, 1)


def test_a_stop_request_checkpoints_after_the_step(tmp_path):
    config = small_config()
    trainer = trainer_for(config, pattern_reviews(), run_dir=tmp_path)
    trainer._request_stop()
    with pytest.raises(PretrainingInterrupted, match="stopped at step 1"):
        trainer.fit(checkpoints.Progress(), 50, stop_on_signal=True)
    meta, _ = checkpoints.load_checkpoint(tmp_path)
    assert meta["progress"]["global_step"] == 1 and meta["kind"] == "language-model"


@pytest.fixture
def imdb(tmp_path, monkeypatch):
    """A small aclImdb tree with unlabelled reviews, and the flags of a small bidirectional GRU on it."""
    monkeypatch.setenv("RNNSENT_CACHE", str(tmp_path / "cache"))
    root = write_imdb_tree(tmp_path / "data", per_label=20)
    unsup = root / "train" / "unsup"
    unsup.mkdir()
    rng = random.Random(3)
    for index in range(60):
        (unsup / f"{index}_0.txt").write_text(make_review(index % 2, rng, 20), encoding="utf-8")
    flags = ["--data", str(root), "--num-words", "40", "--cell", "gru", "--embedding-dim", "6", "--hidden-size", "5",
             "--bidirectional", "--pretrain-window", "0", "--threads", "1"]
    return root, flags


LM_FLAGS = ["--lm-batch-size", "4", "--lm-bptt", "20", "--lm-lr", "0.01"]


def test_pretraining_resumes_bit_exactly(imdb, tmp_path, capsys):
    root, flags = imdb
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    # About 1,900 tokens in 8 rows: 11 segments of 20 a pass, so 20 steps cross into a second pass.
    lm = [*LM_FLAGS, "--lm-batch-size", "8", "--lm-steps", "20"]
    assert main(["pretrain", "--language-model", *flags, *lm, "--out", str(straight)]) == 0
    assert main(["pretrain", "--language-model", *flags, *lm, "--max-steps", "7", "--out", str(resumed)]) == 0
    output = capsys.readouterr().out
    assert "7 steps" in output and f"continue with --resume {resumed}" in output
    assert main(["pretrain", "--language-model", "--resume", str(resumed), "--threads", "1"]) == 0
    assert "resuming the language model at step 7" in capsys.readouterr().out
    first = read_tensors(straight / "encoder.safetensors")
    second = read_tensors(resumed / "encoder.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    meta, _ = checkpoints.load_checkpoint(resumed)
    assert meta["progress"]["global_step"] == 20 and meta["progress"]["epoch"] >= 1


def test_an_encoder_initialises_exactly_its_weights(imdb, tmp_path):
    root, _ = imdb
    config = build_config("bigru", {"num_words": 40, "embedding_dim": 6, "hidden_size": 5, "num_layers": 2,
                                    "pretrain_window": 0})
    corpus = load_encoded(root, config.text)
    torch.manual_seed(7)
    pretrained = LanguageModel(config.model, 40)
    for parameter in pretrained.parameters():
        torch.nn.init.normal_(parameter)  # weights no initialisation would give
    folder = tmp_path / "encoder"
    save_encoder(folder, pretrained, corpus.vocabulary, config, {"steps": 0})
    config.model.encoder = str(folder)
    model = build_model(config.model, 40)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    initialise_encoder(model, config, corpus, pretraining_reader(config, RunOptions(), corpus, root),
                       log=lambda message: None)
    network, after = recurrent_network(model), model.state_dict()
    assert torch.equal(network.embedding.weight, pretrained.embedding.weight)
    hidden = 5
    for layer in range(2):
        for index, suffix in enumerate(("", "_reverse")):
            cell = pretrained.cells[index]
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                own = getattr(cell, f"{kind}_l{layer}")
                mine = getattr(network.rnn, f"{kind}_l{layer}{suffix}")
                if kind == "weight_ih" and layer:
                    # The upper layer reads both directions: its own direction's columns are the
                    # language model's, the other direction's keep their initialisation.
                    own_columns = slice(index * hidden, (index + 1) * hidden)
                    other_columns = slice((1 - index) * hidden, (2 - index) * hidden)
                    assert torch.equal(mine[:, own_columns], own)
                    assert torch.equal(mine[:, other_columns], before[f"rnn.{kind}_l{layer}{suffix}"][:, other_columns])
                else:
                    assert torch.equal(mine, own)
    for name in ("head.weight", "head.bias"):
        assert torch.equal(after[name], before[name])
    # Loaded back, the file gives the same embedding and recurrent weights (the softmax is not kept).
    loaded, saved = load_encoder(folder, config, corpus.vocabulary).state_dict(), pretrained.state_dict()
    kept = [name for name in saved if not name.startswith("softmax.")]
    assert kept and set(read_tensors(folder / "encoder.safetensors")) == set(kept)
    assert all(torch.equal(loaded[name], saved[name]) for name in kept)
    # The copy into a classifier writes every recurrent parameter and the embedding.
    fresh = build_model(config.model, 40)
    written = copy_into_classifier(recurrent_network(fresh), pretrained)
    assert set(written) == {"embedding.weight", *(f"rnn.{name}" for name, _ in recurrent_network(fresh).rnn.named_parameters())}


def test_pretrain_then_train_with_the_encoder_and_its_refusals(imdb, tmp_path, capsys):
    root, flags = imdb
    encoder = tmp_path / "encoder"
    assert main(["pretrain", "--language-model", *flags, *LM_FLAGS, "--lm-steps", "12", "--out", str(encoder)]) == 0
    output = capsys.readouterr().out
    assert "held-out perplexity forward" in output and "backward" in output and "tokens/s" in output
    assert "validation and test texts are not read" in output
    metadata = json.loads(read_metadata(encoder / "encoder.safetensors")["pretraining"])
    # Tokens predicted: at most 4 rows x 20 a step, fewer where a review's last segment is padded.
    assert metadata["steps"] == 12 and 0.5 * 12 * 4 * 20 < metadata["tokens"] <= 12 * 4 * 20
    train = ["train", "--preset", "bigru", *flags, "--epochs", "1", "--quiet", "--no-report-test"]
    out = tmp_path / "model"
    assert main([*train, "--encoder", str(encoder), "--out", str(out)]) == 0
    assert f"language model in {encoder}" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["config"]["model"]["encoder"] == str(encoder)
    # An encoder of other sizes, of another vocabulary, or a file of another kind: one line each.
    refusals = [
        ([*train, "--hidden-size", "7", "--encoder", str(encoder)], "was pretrained with hidden_size 5; this recipe has hidden_size 7"),
        ([*train, "--no-bidirectional", "--encoder", str(encoder)], "bidirectional true"),
        ([*train, "--num-words", "30", "--encoder", str(encoder)], "num_words 40"),
        ([*train, "--encoder", str(tmp_path / "missing")], "no such encoder"),
        ([*train, "--encoder", str(out / "model.safetensors")], "not an rnnsent encoder file"),
        ([*train, "--encoder", str(encoder), "--lm-steps", "5"], "choose one"),
        (["train", "--resume", str(encoder)], "continue it with 'rnnsent pretrain --language-model --resume"),
    ]
    for argv, message in refusals:
        assert main([*argv, "--out", str(tmp_path / "refused")] if "--resume" not in argv else argv) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]  # after the data's own notes
        assert last.startswith("error: ") and message in last
    other = write_imdb_tree(tmp_path / "other", per_label=20, seed=9)
    (other / "train" / "pos" / "extra_9.txt").write_text("an entirely new vocabulary of words here", encoding="utf-8")
    assert main([*train, "--data", str(other), "--encoder", str(encoder), "--out", str(tmp_path / "refused")]) == 2
    assert "another vocabulary" in capsys.readouterr().err


def test_pretrain_command_errors(imdb, tmp_path, capsys):
    root, flags = imdb
    cases = [
        (["pretrain", "--language-model", *flags], "say where to write the encoder"),
        # bigru's recipe has no --lm-steps of its own (best's has 4,000).
        (["pretrain", "--language-model", "--preset", "bigru", *flags, "--out", str(tmp_path / "e")],
         "say how long to pretrain"),
        (["pretrain", *flags, "--max-minutes", "1", "--out", str(tmp_path / "v.safetensors")], "go with --language-model"),
        (["pretrain", "--language-model", "--resume", str(tmp_path / "none")], "no checkpoint to resume from"),
        (["pretrain", "--language-model", "--resume", str(tmp_path), "--hidden-size", "3"], "drop --out and the setting flags"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("error: ") and message in last


def test_train_with_lm_steps_pretrains_first_and_counts_it_as_training(imdb, tmp_path, capsys):
    root, flags = imdb
    out = tmp_path / "model"
    assert main(["train", "--preset", "bigru", *flags, *LM_FLAGS, "--lm-steps", "5", "--epochs", "1", "--quiet",
                 "--no-report-test", "--out", str(out)]) == 0
    assert "language model: 5 steps" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["language_model"]["steps"] == 5
    assert 0 < metrics["language_model"]["seconds"] <= metrics["train_seconds"]


def test_train_pretrains_for_at_most_one_pass_over_its_texts(imdb, tmp_path, capsys):
    # A preset's step count is sized for IMDB; on a small data set it would read the same few
    # texts hundreds of times, so inside train the pretraining stops after one pass.
    root, flags = imdb
    out = tmp_path / "model"
    assert main(["train", "--preset", "bigru", *flags, *LM_FLAGS, "--lm-steps", "100000", "--epochs", "1", "--quiet",
                 "--no-report-test", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    figures = json.loads((out / "metrics.json").read_text())["language_model"]
    assert 0 < figures["steps"] < 100000
    assert figures["passes"] == 1.0
    assert f"one pass over these texts is {figures['steps']:,} steps, fewer than --lm-steps 100,000" in printed


def test_train_on_too_little_text_for_one_step_goes_on_without_pretraining(imdb, tmp_path, capsys):
    # best's 128 rows of 25 tokens need 3,200 tokens for one step; a few hundred short texts
    # have fewer, and the run trains from the word vectors instead of failing.
    root, flags = imdb
    out = tmp_path / "model"
    assert main(["train", "--preset", "bigru", *flags, "--lm-steps", "5", "--lm-batch-size", "128", "--lm-bptt", "25",
                 "--epochs", "1", "--quiet", "--no-report-test", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fewer than --lm-batch-size 128 rows; the network trains without language-model pretraining" in printed
    assert "language_model" not in json.loads((out / "metrics.json").read_text())
    # With rows the text fills, the same run pretrains.
    assert main(["train", "--preset", "bigru", *flags, "--lm-steps", "5", "--lm-batch-size", "4", "--lm-bptt", "25",
                 "--epochs", "1", "--quiet", "--no-report-test", "--out", str(tmp_path / "filled")]) == 0
    assert json.loads((tmp_path / "filled" / "metrics.json").read_text())["language_model"]["steps"] == 5
