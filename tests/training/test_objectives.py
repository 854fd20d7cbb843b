"""Adversarial, virtual adversarial and entropy objectives; unlabelled batches; normalised embeddings."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training_options import VOCAB, tiny_data

from rnnsent.cli.main import main
from rnnsent.config import RunOptions, build_config
from rnnsent.data.corpus import EncodedSplit
from rnnsent.data.unlabelled import read_unlabelled_texts
from rnnsent.errors import ConfigError
from rnnsent.labels import LabelSpace
from rnnsent.model.build import build_model, recurrent_network
from rnnsent.model.loss import classification_loss
from rnnsent.model.scoring import predict_logits
from rnnsent.training import checkpoint as checkpoints
from rnnsent.training import loop
from rnnsent.training.distributed import World
from rnnsent.training.objectives import (
    TrainingObjective,
    adversarial_perturbation,
    direction_noise,
    prediction_divergence,
    prediction_entropy,
    scale_to_norm,
    virtual_adversarial_perturbation,
)
from rnnsent.training.optim import build_optimizer
from rnnsent.training.pipeline import train_tensors
from rnnsent.training.steps import AutogradStep, ObjectiveStep, choose_step, compiled_step_blockers
from rnnsent.training.tensors import Tensors, TrainingData
from rnnsent.training.unlabelled import UnlabelledSampler

WIDTH = 9
TASKS = {
    "binary": LabelSpace(),
    "multiclass": LabelSpace("multiclass", ("a", "b", "c")),
    "multilabel": LabelSpace("multilabel", ("a", "b", "c")),
}


def rows(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Post-padded random id rows ``(count, WIDTH)`` starting with the start id, and their lengths."""
    data = tiny_data(count, WIDTH, seed)
    return data.ids, data.lengths


def targets(ids: torch.Tensor, task: str) -> torch.Tensor:
    """Labels told by words 5 and 6: binary (5 occurs), three classes (how many of 5, 6 occur), three tags."""
    has5, has6 = (ids == 5).any(dim=1), (ids == 6).any(dim=1)
    if task == "binary":
        return has5.float()
    if task == "multiclass":
        return has5.long() + has6.long()
    return torch.stack([has5, has6, ~has5], dim=1).float()


def tiny_config(**overrides):
    settings = {"num_words": VOCAB, "maxlen": WIDTH, "padding": "post", "use_lengths": True, "cell": "gru",
                "embedding_dim": 6, "hidden_size": 4, "recurrent_init": "default", "input_init_std": 0.0,
                "pooling": "maxmean", "optimizer": "adam", "lr": 0.02, "batch_size": 8, "epochs": 2,
                "report_test": False, "seed": 3, **overrides}
    return build_config("seed", settings)


def tiny_model(task: str = "binary", **overrides):
    config = tiny_config(**overrides)
    torch.manual_seed(0)
    return build_model(config.model, VOCAB, labels=TASKS[task]).eval(), config


MODELS = [
    {"cell": "simple", "pooling": "last", "padding": "pre", "use_lengths": False, "nonlinearity": "tanh"},
    {"cell": "lstm", "pooling": "max", "bidirectional": True},
    {"cell": "gru", "pooling": "mean", "num_layers": 2},
    {"cell": "gru", "pooling": "attention", "bidirectional": True},
    {"cell": "gru", "pooling": "maxmean", "ngram_buckets": 64, "ngram_fit": "joint"},
]


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("settings", MODELS, ids=lambda s: f"{s['cell']}-{s['pooling']}")
def test_the_adversarial_perturbation_has_the_set_norm_per_row_and_raises_the_loss(settings, task):
    model, _ = tiny_model(task, **settings)
    ids, lengths = rows(12)
    labels = targets(ids, task)
    network = recurrent_network(model)
    embedded = network.embed(ids)  # (12, WIDTH, 6)
    loss = classification_loss(model(ids, lengths, embedded=embedded)[0], labels, task)
    perturbation = adversarial_perturbation(loss, embedded, 0.5)
    torch.testing.assert_close(perturbation.flatten(1).norm(dim=1), torch.full((12,), 0.5))
    if network.config.use_lengths:
        # The model never reads a row past its length, so the gradient there, and r, is zero.
        padding = torch.arange(WIDTH)[None, :] >= lengths[:, None]
        assert perturbation[padding].abs().max() == 0
    adversarial = classification_loss(model(ids, lengths, embedded=embedded + perturbation)[0], labels, task)
    generator = torch.Generator().manual_seed(1)
    random_direction = scale_to_norm(torch.randn(embedded.shape, generator=generator), 0.5)
    randomly_moved = classification_loss(model(ids, lengths, embedded=embedded + random_direction)[0], labels, task)
    assert adversarial > loss
    assert adversarial - loss > 3 * abs(randomly_moved - loss)


def test_a_rows_adversarial_perturbation_is_the_same_alone_as_in_its_batch():
    model, _ = tiny_model()
    ids, lengths = rows(6)
    labels = targets(ids, "binary")
    network = recurrent_network(model)

    def perturbation(chosen):
        embedded = network.embed(ids[chosen])
        loss = classification_loss(model(ids[chosen], lengths[chosen], embedded=embedded)[0], labels[chosen])
        return adversarial_perturbation(loss, embedded, 2.0)

    torch.testing.assert_close(perturbation(slice(0, 6))[2:3], perturbation(slice(2, 3)))


@pytest.mark.parametrize("task", list(TASKS))
def test_entropy_and_divergence_match_their_definitions(task):
    generator = torch.Generator().manual_seed(2)
    shape = (5,) if task == "binary" else (5, 3)
    first, second = torch.randn(shape, generator=generator) * 3, torch.randn(shape, generator=generator) * 3
    if task == "multiclass":
        p, q = torch.softmax(first, dim=1), torch.softmax(second, dim=1)
        entropy, divergence = -(p * p.log()).sum(1), (p * (p / q).log()).sum(1)
    else:
        p, q = torch.sigmoid(first).double(), torch.sigmoid(second).double()
        entropy = -(p * p.log() + (1 - p) * (1 - p).log())
        divergence = p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()
        if task == "multilabel":
            entropy, divergence = entropy.mean(1), divergence.mean(1)
    torch.testing.assert_close(prediction_entropy(first, task).double(), entropy.double())
    torch.testing.assert_close(prediction_divergence(first, second, task).double(), divergence.double())
    assert prediction_divergence(first, first, task).abs().max() < 1e-6


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("settings", MODELS[:3], ids=lambda s: f"{s['cell']}-{s['pooling']}")
def test_the_virtual_adversarial_direction_moves_predictions_more_than_random_ones(settings, task):
    model, config = tiny_model(task, **settings)
    ids, lengths = rows(10)
    embedded = recurrent_network(model).embed(ids).detach()
    reference = model(ids, lengths, embedded=embedded)[0].detach()
    within = config.model.use_lengths
    noise = direction_noise(0, 0, 1, np.arange(10), lengths, WIDTH, 6, within)
    perturbation = virtual_adversarial_perturbation(model, ids, lengths, embedded, reference, noise, 1.0)
    torch.testing.assert_close(perturbation.flatten(1).norm(dim=1), torch.ones(10))

    def divergence(r):
        return prediction_divergence(reference, model(ids, lengths, embedded=embedded + r)[0], task)  # (10,)

    randoms = torch.stack([divergence(scale_to_norm(direction_noise(9, draw, 1, np.arange(10), lengths, WIDTH, 6,
                                                                    within), 1.0)) for draw in range(20)])
    found = divergence(perturbation)
    # Above what random directions do on average for every row, and above the best of them for
    # the batch as a whole (one power iteration need not find a row's very top direction when
    # several outputs bend the divergence).
    assert torch.all(found > randoms.mean(dim=0))
    assert found.mean() > randoms.mean(dim=1).max()


def test_direction_noise_of_a_row_depends_on_the_row_and_step_alone():
    lengths = torch.tensor([3, 7, 5])
    together = direction_noise(4, 11, 1, np.array([20, 21, 22]), lengths, 8, 2, True)
    alone = direction_noise(4, 11, 1, np.array([21]), lengths[1:2], 7, 2, True)
    torch.testing.assert_close(together[1:2, :7], alone)
    assert together[0, 3:].abs().max() == 0 and together[0, :3].abs().min() > 0
    assert not torch.equal(together, direction_noise(4, 12, 1, np.array([20, 21, 22]), lengths, 8, 2, True))
    # Without true lengths a row's noise covers the whole width, padding included.
    assert direction_noise(4, 11, 1, np.array([20]), lengths[:1], 8, 2, False).abs().min() > 0


def unlabelled_split(count: int, seed: int = 7) -> EncodedSplit:
    ids, lengths = rows(count, seed)
    flat = np.concatenate([row[:length] for row, length in zip(ids.numpy(), lengths.numpy())]).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths.numpy())])
    return EncodedSplit(flat, offsets, np.zeros(count, dtype=np.int64))


def test_the_unlabelled_stream_reads_the_pool_in_passes_and_ranks_share_each_step():
    config = tiny_config(entropy_weight=1.0, unlabelled_batch_size=4, bucket_by_length=False)
    pool = unlabelled_split(10)
    sampler = UnlabelledSampler(pool, config)
    passes = [np.concatenate([sampler.global_rows(step) for step in range(start, start + 2)]) for start in (0, 2, 4)]
    for drawn in passes:  # two batches of 4 a pass; the short batch of the other 2 texts is left out
        assert len(set(drawn.tolist())) == 8 and set(drawn.tolist()) <= set(range(10))
    assert len(set(np.concatenate(passes).tolist())) == 10
    # A function of (seed, step): a fresh sampler, as a resumed run builds, draws the same rows.
    np.testing.assert_array_equal(UnlabelledSampler(pool, config).global_rows(7), sampler.global_rows(7))
    shares = [UnlabelledSampler(pool, config, World(rank, 3)).batch(5) for rank in range(3)]
    assert sorted(np.concatenate([share.rows for share in shares]).tolist()) == sorted(sampler.global_rows(5).tolist())
    assert [share.loss_scale for share in shares] == [pytest.approx(2 * 3 / 4), pytest.approx(3 / 4), pytest.approx(3 / 4)]
    batch = sampler.batch(5)
    assert batch.ids.shape[1] == int(batch.lengths.max())  # cut to its longest row: the model reads lengths
    with pytest.raises(ConfigError, match="smaller than the 5 processes"):
        UnlabelledSampler(pool, config, World(0, 5))
    with pytest.raises(ConfigError, match="more than the 10 unlabelled texts"):
        UnlabelledSampler(pool, tiny_config(entropy_weight=1.0, unlabelled_batch_size=11))


def test_unlabelled_batches_of_similar_lengths_with_bucketing():
    pool = unlabelled_split(400)
    lengths = np.diff(pool.offsets)
    spread = {}
    for bucketing in (False, True):
        sampler = UnlabelledSampler(pool, tiny_config(entropy_weight=1.0, unlabelled_batch_size=8,
                                                      bucket_by_length=bucketing))
        spread[bucketing] = np.mean([np.ptp(lengths[sampler.global_rows(step)]) for step in range(50)])
    assert spread[True] < 0.5 * spread[False]


def entropy_after_training(weight: float, tmp_path: Path) -> float:
    ids, lengths = rows(48)
    config = tiny_config(entropy_weight=weight, unlabelled_batch_size=8 if weight else 0, epochs=3)
    pool = unlabelled_split(40)
    data = TrainingData(Tensors(ids, lengths, targets(ids, "binary")), None, None, unlabelled=pool)
    model = train_tensors(config, RunOptions(threads=1), data, tmp_path / str(weight)).model
    pool_ids, pool_lengths = pool.padded(config.text)
    logits = torch.from_numpy(predict_logits(model, pool_ids, pool_lengths))
    return float(prediction_entropy(logits, "binary").mean())


def test_entropy_minimisation_lowers_the_entropy_of_predictions_on_unlabelled_rows(tmp_path):
    plain, minimised = entropy_after_training(0.0, tmp_path), entropy_after_training(3.0, tmp_path)
    assert minimised < 0.7 * plain


STACKED = {"ngram_buckets": 31, "ngram_fit": "stacked", "ngram_order": 2, "validation_split": 0.1}


def teach_word_five(model: torch.nn.Module) -> None:
    """Give a stacked model's n-gram regression a rule of its own: a text with word 5 is
    positive (logit +2.5), any other negative (-2.5); words 5 and 6 as they are in ``targets``."""
    with torch.no_grad():
        model.ngrams.weight.weight.zero_()
        model.ngrams.weight.weight[5] = 5.0  # unigram 5's feature row
        model.ngrams.bias.fill_(-2.5)


@pytest.mark.parametrize("task", list(TASKS))
def test_the_distillation_loss_is_the_divergence_from_the_regression_on_unlabelled_rows(task):
    model, _ = tiny_model(task, **STACKED)
    with torch.no_grad():  # a teacher with logits of every size, positive and negative
        generator = torch.Generator().manual_seed(4)
        model.ngrams.weight.weight.copy_(torch.randn(model.ngrams.weight.weight.shape, generator=generator))
    ids, lengths = rows(10)
    labels = targets(ids, task)
    unlabelled_ids, unlabelled_lengths = rows(6, seed=9)
    weight, temperature = 2.5, 3.0
    objective = TrainingObjective(model, tiny_config(**STACKED, distill_weight=weight, distill_temperature=temperature,
                                                     unlabelled_batch_size=6).train)
    _, supervised, total = objective(ids, lengths, labels, unlabelled_ids, unlabelled_lengths)
    # By hand: KL(q || p) with q from the regression's logits over the temperature, p the network's.
    teacher = model.ngrams(unlabelled_ids) / temperature
    student = model.network(unlabelled_ids, unlabelled_lengths)[0]
    if task != "multiclass":  # a Bernoulli per output, averaged over the labels for multilabel
        q, p = torch.sigmoid(teacher), torch.sigmoid(student)
        by_hand = (q * (q / p).log() + (1 - q) * ((1 - q) / (1 - p)).log()).mean()
    else:
        q, p = torch.softmax(teacher, -1), torch.softmax(student, -1)
        by_hand = (q * (q / p).log()).sum(-1).mean()
    assert by_hand > 0.01
    torch.testing.assert_close(total - supervised, weight * by_hand, rtol=1e-5, atol=1e-6)
    total.backward()
    # The regression only teaches: its frozen weights get no gradient, the network's do.
    assert model.ngrams.weight.weight.grad is None
    assert recurrent_network(model).embedding.weight.grad is not None


def agreement_with_word_five(distill_weight: float, tmp_path: Path) -> float:
    """Train a stacked model's network on 16 texts whose labels say nothing (alternating), with
    unlabelled texts and the regression of :func:`teach_word_five`; how often it then agrees with
    the regression on 200 unseen texts."""
    ids, lengths = rows(16)
    labels = (torch.arange(16) % 2).float()
    config = tiny_config(**STACKED, distill_weight=distill_weight, unlabelled_batch_size=16 if distill_weight else 0,
                         epochs=40, batch_size=8)
    data = TrainingData(Tensors(ids, lengths, labels), None, None, unlabelled=unlabelled_split(64, seed=2))
    model = train_tensors(config, RunOptions(threads=1), data, tmp_path / str(distill_weight),
                          initialise=teach_word_five).model
    unseen, unseen_lengths = rows(200, seed=11)
    network_says = predict_logits(model.network, unseen.numpy(), unseen_lengths.numpy()) > 0
    return float(np.mean(network_says == (unseen == 5).any(dim=1).numpy()))


def test_distillation_teaches_the_network_what_only_the_regression_knows(tmp_path):
    assert agreement_with_word_five(0.0, tmp_path) < 0.75
    assert agreement_with_word_five(3.0, tmp_path) > 0.85


def test_defaults_take_the_plain_steps_and_objectives_take_the_objective_step():
    world = World()
    for config, expected in ((tiny_config(), AutogradStep), (tiny_config(adversarial_weight=1.0), ObjectiveStep),
                             (tiny_config(entropy_weight=1.0), ObjectiveStep)):
        model = build_model(config.model, VOCAB)
        optimizer = build_optimizer(config.train, model.parameters())
        assert type(choose_step(config, RunOptions(), model, model, optimizer, world)) is expected
    seed = build_config("seed", {"num_words": VOCAB, "adversarial_weight": 1.0})
    assert "an adversarial, virtual adversarial, entropy or distillation loss" in compiled_step_blockers(
        seed, RunOptions(), build_model(seed.model, VOCAB), world)


@pytest.mark.parametrize("settings, message", [
    ({"unlabelled_batch_size": 8}, "--unlabelled-batch-size feeds the virtual adversarial, entropy and distillation"),
    ({"distill_weight": 1.0}, "--distill-weight teaches the network on unlabelled texts: add --unlabelled-batch-size"),
    ({"unlabelled_data": "u.txt"}, "--unlabelled-data is read by the unlabelled batches"),
    ({"adversarial_weight": 1.0, "adversarial_norm": 0.0}, "adversarial_norm must be in (0.0"),
])
def test_settings_that_do_not_go_together_are_one_line_errors(settings, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_config("bigru", settings)


def test_normalised_embeddings_have_zero_mean_and_unit_variance_under_the_word_frequencies():
    model, _ = tiny_model(normalize_embeddings=True)
    ids, _ = rows(40)
    model.set_word_frequencies(ids)
    counts = torch.bincount(ids[ids != 0], minlength=VOCAB).double()
    torch.testing.assert_close(model.word_frequency.double(), counts / counts.sum(), rtol=1e-6, atol=1e-7)
    vocabulary = torch.arange(VOCAB).unsqueeze(0)  # (1, VOCAB): every word once
    table = model.embed(vocabulary)[0].double()  # (VOCAB, 6)
    weights = model.word_frequency.double().unsqueeze(1)
    mean = (weights * table).sum(0)
    torch.testing.assert_close(mean, torch.zeros(6, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close((weights * (table - mean) ** 2).sum(0), torch.ones(6, dtype=torch.float64), atol=5e-3,
                               rtol=0)


# ----------------------------------------------------------------------------- whole runs on files

WORDS = {0: ["bad", "awful", "dull"], 1: ["good", "great", "fine"]}


def write_run_files(root: Path) -> tuple[Path, Path]:
    """A JSONL of 120 labelled texts told by marker words, and a text file of 90 unlabelled ones."""
    rng = random.Random(3)

    def text(label: int) -> str:
        words = [f"w{rng.randrange(30)}" for _ in range(rng.randint(3, 10))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(WORDS[label]))
        return " ".join(words)

    labelled = root / "reviews.jsonl"
    labelled.write_text("".join(json.dumps({"text": text(i % 2), "label": i % 2}) + "\n" for i in range(120)))
    unlabelled = root / "unlabelled.txt"
    unlabelled.write_text("".join(text(rng.randrange(2)) + "\n" for _ in range(90)))
    return labelled, unlabelled


FLAGS = ["--preset", "bigru", "--num-words", "50", "--maxlen", "12", "--embedding-dim", "8", "--hidden-size", "4",
         "--epochs", "2", "--batch-size", "16", "--checkpoint-every", "2", "--threads", "1", "--lr", "0.01",
         "--quiet", "--seed", "5", "--warmup-steps", "2", "--early-stopping", "0"]
OBJECTIVES = {
    "adversarial": ["--adversarial-weight", "1", "--adversarial-norm", "0.5"],
    "virtual-adversarial": ["--virtual-adversarial-weight", "1", "--adversarial-norm", "0.5",
                            "--unlabelled-batch-size", "12", "--normalize-embeddings"],
    "entropy": ["--entropy-weight", "0.5", "--unlabelled-batch-size", "12"],
    "distillation": ["--distill-weight", "1", "--unlabelled-batch-size", "12", "--ngram-buckets", "64",
                     "--ngram-fit", "stacked"],
}
# Flags of the objectives above that change the model rather than the loss: the plain run keeps them.
MODEL_FLAGS = {"--normalize-embeddings": 0, "--ngram-buckets": 1, "--ngram-fit": 1}


class Killed(BaseException):
    """Stands for the process dying just after a checkpoint is committed."""


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_a_run_killed_mid_epoch_resumes_to_identical_weights(tmp_path, monkeypatch, name):
    labelled, unlabelled = write_run_files(tmp_path)
    plain = ["train", "--data", str(labelled), *FLAGS]
    flags = [*plain, *OBJECTIVES[name]]
    if "--unlabelled-batch-size" in flags:
        flags += ["--unlabelled-data", str(unlabelled)]
    assert main([*flags, "--out", str(tmp_path / "reference")]) == 0
    save = checkpoints.save_checkpoint

    def save_then_die(run_dir, progress, *args):
        save(run_dir, progress, *args)
        if progress.epoch == 1 and progress.step_in_epoch > 0:
            raise Killed

    monkeypatch.setattr(loop.checkpoints, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        main([*flags, "--out", str(tmp_path / "killed")])
    monkeypatch.setattr(loop.checkpoints, "save_checkpoint", save)
    stopped = checkpoints.load_checkpoint(tmp_path / "killed")[0]["progress"]
    assert stopped["epoch"] == 1 and stopped["step_in_epoch"] > 0
    assert main(["train", "--resume", str(tmp_path / "killed")]) == 0
    reference = (tmp_path / "reference" / "model.safetensors").read_bytes()
    assert (tmp_path / "killed" / "model.safetensors").read_bytes() == reference
    # Without the objective the same run learns other weights, so the comparison above could fail.
    kept = [item for index, flag in enumerate(flags) if flag in MODEL_FLAGS
            for item in flags[index:index + 1 + MODEL_FLAGS[flag]]]
    assert main([*plain, *kept, "--out", str(tmp_path / "plain")]) == 0
    assert (tmp_path / "plain" / "model.safetensors").read_bytes() != reference


def test_user_data_without_unlabelled_texts_is_refused_in_one_line(tmp_path, capsys):
    labelled, _ = write_run_files(tmp_path)
    code = main(["train", "--data", str(labelled), *FLAGS, "--entropy-weight", "1", "--unlabelled-batch-size", "8",
                 "--out", str(tmp_path / "model")])
    error = capsys.readouterr().err.splitlines()[-1]  # after the note that the file is read and cached
    assert code == 2 and error.startswith("error: ") and "--unlabelled-data PATH" in error, error
    assert not (tmp_path / "model" / "checkpoint").exists()


@pytest.mark.parametrize("case, flags, note", [
    # best on a person's own file: no unlabelled texts to distil on.
    ("no-texts", ["--ngram-buckets", "64"], "has no unlabelled texts, so the network learns without distillation"),
    # best --ngram-buckets 0: no regression to learn from.
    ("no-teacher", ["--ngram-buckets", "0"], "distillation is off: it learns from a stacked n-gram regression"),
])
def test_best_goes_on_without_distillation_it_cannot_do_and_says_so(tmp_path, capsys, case, flags, note):
    labelled, _ = write_run_files(tmp_path)
    small = ["--num-words", "50", "--maxlen", "12", "--embedding-dim", "8", "--hidden-size", "4", "--epochs", "1",
             "--pretrain-window", "0", "--threads", "1", "--batch-size", "16"]
    code = main(["train", "--data", str(labelled), "--preset", "best", *small, *flags, "--out", str(tmp_path / "m")])
    output = capsys.readouterr().out
    assert code == 0 and note in output, output
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["config"]["train"]
    assert saved["distill_weight"] == 0 and saved["unlabelled_batch_size"] == 0  # the saved recipe says what ran


def test_unlabelled_texts_come_from_train_unsup_never_from_the_test_split(tmp_path):
    from conftest import write_imdb_tree

    root = write_imdb_tree(tmp_path)
    (root / "train" / "unsup").mkdir()
    for index in range(3):
        (root / "train" / "unsup" / f"{index}_0.txt").write_text(f"unlabelled review number {index}")
    texts, where = read_unlabelled_texts(root, build_config("bigru").data)
    assert texts == [f"unlabelled review number {index}" for index in range(3)] and "train/unsup" in where
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text(json.dumps({"review": "one"}) + "\n" + json.dumps({"review": "two"}) + "\n")
    config = build_config("bigru", {"unlabelled_data": str(jsonl), "text_field": "review", "entropy_weight": 1.0,
                                    "unlabelled_batch_size": 2})
    assert read_unlabelled_texts(root, config.data)[0] == ["one", "two"]


def test_a_model_with_normalised_embeddings_keeps_its_word_frequencies(tmp_path):
    import rnnsent

    labelled, _ = write_run_files(tmp_path)
    out = tmp_path / "model"
    assert main(["train", "--data", str(labelled), *FLAGS, "--normalize-embeddings", "--out", str(out)]) == 0
    saved = json.loads((out / "metrics.json").read_text())
    network = recurrent_network(rnnsent.load(out).artifact.model)
    frequency = network.word_frequency
    assert float(frequency.sum()) == pytest.approx(1.0) and float(frequency.max()) > 2.0 / len(frequency)
    # Scored again from the saved files, the test split gives the training run's figures.
    again = rnnsent.evaluate(out, labelled)
    assert again["loss"] == pytest.approx(saved["loss"], rel=1e-6) and again["accuracy"] == saved["accuracy"]


@pytest.mark.parametrize("reader", [{"lm_steps": 10}, {"pretrain_window": 2}, {"unlabelled_batch_size": 8,
                                                                                "entropy_weight": 0.1}])
def test_unlabelled_data_is_accepted_by_whatever_reads_it(reader):
    assert build_config("bigru", {"unlabelled_data": "u.txt", **reader}).data.unlabelled_data == "u.txt"


@pytest.mark.parametrize("contents", ["", "\n  \n\n", None, "folder of empty files"])
def test_named_unlabelled_data_without_texts_is_a_one_line_error(tmp_path, contents, capsys):
    # An empty file once let a run go on without the texts it was told to read.
    from rnnsent.errors import DataError

    path = tmp_path / "nothing.txt"
    if contents is None:
        path = tmp_path / "empty-folder"
        path.mkdir()
    elif contents == "folder of empty files":
        path = tmp_path / "empty-files"
        path.mkdir()
        (path / "a.txt").write_text("")
    else:
        path.write_text(contents)
    config = build_config("bigru", {"unlabelled_data": str(path), "lm_steps": 10})
    with pytest.raises(DataError, match=f"--unlabelled-data {path} holds no texts"):
        read_unlabelled_texts(tmp_path, config.data)
    labelled, _ = write_run_files(tmp_path)
    assert main(["train", "--data", str(labelled), *FLAGS, "--lm-steps", "5", "--unlabelled-data", str(path),
                 "--out", str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: --unlabelled-data") and "Traceback" not in err
