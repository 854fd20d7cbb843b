"""The ordinal n-gram regression for ordered labels (star ratings): one binary regression per cut
between neighbouring labels over a shared presence matrix, its readout fitted on unseen texts,
the ``auto`` fit that ``best`` resolves from the labels, and what it costs."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from tests.conftest import write_jsonl
from tests.training.test_ngram_outputs import VOCAB, topic_text

import rnnsent
from rnnsent.config import BEST, RunConfig, build_config, resolve_ngram_fit
from rnnsent.errors import ConfigError
from rnnsent.labels import BINARY_SENTIMENT, LabelSpace
from rnnsent.model.build import build_model
from rnnsent.model.ngrams import NgramBranch
from rnnsent.model.scoring import predict_cut_logits
from rnnsent.model.size import parameter_count
from rnnsent.training.ngram_regression import (
    _logistic_fit,
    compact_presence,
    csr_pair,
    fit_ngram_regression,
    fit_ordinal_readout,
    log_count_ratios,
    ordinal_columns,
    regression_memory_estimate,
    row_pointers,
)
from rnnsent.training.pipeline import fit_to_labels

QUIET = {"progress": False, "verbose": False, "threads": 1}
STARS = LabelSpace("multiclass", ("1", "2", "3", "4"), ordered=True)


def rated_rows(count: int, classes: int = 4, noise: float = 0.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Post-padded id rows whose label k is cued by word 3 + k at position 2 (one step off on a
    ``noise`` share of rows), filler words elsewhere."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (count,), generator=generator)
    ids = torch.randint(3 + classes, VOCAB, (count, 8), generator=generator)
    off = torch.rand(count, generator=generator) < noise
    step = torch.where(labels == classes - 1, -1, 1)
    ids[:, 2] = 3 + torch.where(off, labels + step, labels)
    ids[:, 6:] = 0
    return ids, labels


def ordinal_branch(classes: int = 4) -> NgramBranch:
    return NgramBranch(VOCAB, 13, order=2, binary=True, outputs=classes, ordinal=True)


def test_ordinal_fit_of_separable_data_orders_its_cuts_and_predicts_every_label():
    ids, labels = rated_rows(160)
    branch = ordinal_branch()
    stats = fit_ngram_regression(branch, ids, labels, inverse_l2=1.0, task="multiclass")
    cuts = predict_cut_logits(branch, ids)  # (n, 3)
    # Each text is above exactly the cuts below its label: cut j's logit is positive iff label > j,
    # so the cuts' signs order the texts as their labels do.
    above = torch.arange(3)[None, :] < labels[:, None]
    assert torch.equal(cuts > 0, above)
    assert stats["train_accuracy"] == 1.0 and torch.equal(branch(ids).argmax(dim=1), labels)
    # The cut intercepts fall too: above a higher cut lie fewer texts.
    assert (branch.bias[1:] < branch.bias[:-1]).all()
    assert branch.weight.weight.shape == (VOCAB + 13 + 1, 3)


def test_each_cut_reaches_the_optimum_of_its_binary_objective():
    ids, labels = rated_rows(240, noise=0.2, seed=1)
    branch = ordinal_branch()
    fit_ngram_regression(branch, ids, labels, inverse_l2=0.5, task="multiclass")
    seen, rows, columns = ordinal_columns(*compact_presence(branch, ids))
    presence = torch.zeros(len(ids), len(seen), dtype=torch.float64)
    presence[rows, columns] = 1.0
    for cut in range(3):
        above = (labels > cut).double()
        ratios = log_count_ratios(rows, columns, above, len(seen))
        folded = branch.weight.weight[seen, cut].double()
        logits = presence @ folded + float(branch.bias[cut])
        residual = 0.5 * (torch.sigmoid(logits) - above)
        # At the optimum of 0.5 * sum(log loss) + |w|^2 / 2, with folded = ratios * w, both
        # gradients vanish: ratios * (X^T residual) + w and the intercept's sum(residual).
        assert (ratios * (presence.T @ residual) + folded / ratios).abs().max() < 2e-3, cut
        assert abs(float(residual.sum())) < 2e-3, cut


def test_ngrams_of_one_text_are_left_out_and_the_rest_renumbered():
    seen = torch.tensor([10, 20, 30, 40])
    # Row 0 holds columns 0, 1; row 1 columns 1, 2; row 2 columns 1, 3, 2.
    rows = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    columns = torch.tensor([0, 1, 1, 2, 1, 3, 2])
    kept_seen, kept_rows, kept_columns = ordinal_columns(seen, rows, columns)
    assert kept_seen.tolist() == [20, 30]  # in 3 and 2 rows; 10 and 40 in one row each
    assert kept_rows.tolist() == [0, 1, 1, 2, 2] and kept_columns.tolist() == [0, 0, 1, 0, 1]
    every = ordinal_columns(seen, rows, columns, min_texts=1)
    assert torch.equal(every[0], seen) and torch.equal(every[2], columns)


def test_a_fit_over_the_used_columns_equals_the_fit_over_every_bucket():
    ids, labels = rated_rows(200, noise=0.2, seed=2)
    branch = ordinal_branch()
    seen, rows, columns = compact_presence(branch, ids)
    above = (labels > 1).double()
    crow = row_pointers(rows, len(ids))
    ratios = log_count_ratios(rows, columns, above, len(seen))
    compact = _logistic_fit(*csr_pair(crow, columns, torch.ones(len(columns), dtype=torch.float64), len(seen)),
                            above, 1.0, scale=ratios)
    # The same problem over the whole table: every bucket a column, unused ones empty (ratio 1).
    width = branch.weight.num_embeddings
    full_ratios = torch.ones(width, dtype=torch.float64)
    full_ratios[seen] = ratios
    full = _logistic_fit(*csr_pair(crow, seen[columns], torch.ones(len(columns), dtype=torch.float64), width),
                         above, 1.0, scale=full_ratios)
    unused = torch.ones(width, dtype=torch.bool)
    unused[seen] = False
    assert full[0][unused].abs().max() == 0  # an empty column's gradient is its own weight: it stays at 0
    torch.testing.assert_close(full[0][seen], compact[0], atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(full[1], compact[1], atol=1e-7, rtol=1e-6)


def test_readout_recovers_known_coefficients():
    generator = np.random.default_rng(0)
    n, truth = 40_000, np.array([[0.0, 1.5, 2.0, 2.5], [0.0, -0.5, 1.0, 2.0], [0.0, 0.0, -1.0, 1.5]])  # (K-1, K)
    bias = np.array([0.2, 0.0, -0.3, 0.1])
    cuts = generator.normal(size=(n, 3))
    logits = cuts @ truth + bias
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    labels = (generator.random((n, 1)) > probabilities.cumsum(axis=1)).sum(axis=1)
    branch = ordinal_branch()
    assert branch.readout.tolist() == [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]]  # the sum of the cuts below
    stats = fit_ordinal_readout(branch, torch.tensor(cuts, dtype=torch.float32), torch.tensor(labels))
    # Softmax is unchanged by adding one number to every label: compare each row of the readout
    # (and the intercepts) centred.
    fitted = branch.readout.numpy()
    np.testing.assert_allclose(fitted - fitted.mean(axis=1, keepdims=True), truth - truth.mean(axis=1, keepdims=True),
                               atol=0.06)
    intercepts = branch.readout_bias.numpy()
    np.testing.assert_allclose(intercepts - intercepts.mean(), bias - bias.mean(), atol=0.06)
    assert stats["readout_accuracy"] >= stats["readout_accuracy_before"]


def test_auto_is_ordinal_for_ordered_labels_and_stacked_for_any_other():
    assert BEST["ngram_fit"] == "auto"
    best = build_config("best")
    assert fit_to_labels(best, STARS).model.ngram_fit == "ordinal"
    # Binary sentiment keeps best's recipe exactly as it was: the saved recipe says stacked.
    binary = fit_to_labels(best, BINARY_SENTIMENT)
    assert binary.model.ngram_fit == "stacked" and best.model.ngram_fit == "auto"
    assert {**binary.to_dict(), "model": {}} == {**best.to_dict(), "model": {}}
    topics = LabelSpace("multiclass", ("politics", "sports", "tech"))
    assert fit_to_labels(best, topics).model.ngram_fit == "stacked"
    assert fit_to_labels(best, LabelSpace("multiclass", ("1", "2"), ordered=True)).model.ngram_fit == "stacked"
    assert resolve_ngram_fit("joint", True) == "joint" and resolve_ngram_fit("stacked", True) == "stacked"
    with pytest.raises(ConfigError, match="ordered labels.*--ngram-fit stacked"):
        fit_to_labels(build_config("best", {"ngram_fit": "ordinal"}), topics)
    with pytest.raises(ConfigError, match="--ngram-fit ordinal blends"):
        build_config("seed", {"ngram_fit": "ordinal", "ngram_buckets": 13})


def test_an_ordinal_branch_holds_one_column_per_cut_and_the_fit_one_output_at_a_time():
    config = build_config("best", {"num_words": VOCAB, "ngram_buckets": 13, "pretrain_window": 0})
    ratings = LabelSpace("multiclass", tuple(str(k) for k in (1, 2, 3, 4, 7, 8, 9, 10)), ordered=True)
    model = build_model(config.model, VOCAB, labels=ratings)
    assert model.ngrams.ordinal and model.ngrams.weight.weight.shape == (VOCAB + 13 + 1, 7)
    ordinal = fit_to_labels(config, ratings)
    assert parameter_count(ordinal, 8) - parameter_count(config, 8) == -(VOCAB + 13 + 1)
    # A million IMDB-length texts read as best reads them: the ordinal fit holds the vectors of
    # one output at a time, as the binary fit, where 8 classes' multinomial fit held 8.
    entries, used = 1_000_000 * 585, 16_020_000
    assert regression_memory_estimate(entries, used, 1) < 40 * 2**30 < regression_memory_estimate(entries, used, 8)


def rating_rows(count_per_label: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    cues = {1: ["awful", "worst", "horrible"], 2: ["poor", "weak", "disappointing"], 3: ["okay", "average", "fine"],
            4: ["good", "nice", "enjoyable"], 5: ["superb", "masterpiece", "brilliant"]}
    return [(topic_text(rng, words), stars) for _ in range(count_per_label) for stars, words in cues.items()]


def test_best_learns_star_ratings_with_the_ordinal_fit_and_saves_it(tmp_path):
    data = write_jsonl(tmp_path / "stars.jsonl", rating_rows(60, seed=1))
    model = rnnsent.train("best", data=data, out=tmp_path / "model", epochs=1, pretrain_window=0, **QUIET)
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved.get("config", saved)["model"]["ngram_fit"] == "ordinal"
    assert model.labels.names == ("1", "2", "3", "4", "5") and model.metrics["accuracy"] >= 0.7  # chance: 1/5
    assert model.metrics["mae"] <= 0.5
    texts = ["a masterpiece , brilliant", "the worst , awful", "okay and average"]
    loaded = rnnsent.load(tmp_path / "model")
    assert [p.label for p in loaded.predict(texts)] == [p.label for p in model.predict(texts)]
    np.testing.assert_allclose(loaded.probabilities(texts), model.probabilities(texts), atol=1e-6)
    assert loaded.predict(texts[:1])[0].label == "5"


def test_checkpoint_writes_the_frozen_table_once_and_resume_restores_it(tmp_path):
    from rnnsent.artifact.directory import load_artifact
    from rnnsent.training import checkpoint as checkpoints
    from rnnsent.training.optim import parameter_groups

    data = write_jsonl(tmp_path / "stars.jsonl", rating_rows(30, seed=2))
    rnnsent.train("best", data=data, out=tmp_path / "model", epochs=2, pretrain_window=0, **QUIET)
    meta, tensors = checkpoints.load_checkpoint(tmp_path / "model")
    names = set(tensors)
    # Once, under "model.", as the rows that hold a weight.
    assert {"model.ngrams.weight.weight.rows", "model.ngrams.weight.weight.values"} <= names
    assert not {"model.ngrams.weight.weight", "best.ngrams.weight.weight"} & names
    assert "best.network.embedding.weight" in names
    config = RunConfig.from_dict(meta["config"])
    saved = load_artifact(tmp_path / "model").model.state_dict()
    # An older checkpoint held the table whole; both restore to the same model.
    whole = {name: tensor for name, tensor in tensors.items() if not name.startswith("model.ngrams.weight.weight.")}
    whole["model.ngrams.weight.weight"] = saved["ngrams.weight.weight"].clone()
    for stored in (tensors, whole):
        model = build_model(config.model, config.text.num_words,
                            labels=LabelSpace("multiclass", ("1", "2", "3", "4", "5"), ordered=True))
        optimizer = torch.optim.Adam(parameter_groups(model, config.train))
        _, best = checkpoints.restore(meta, stored, model, optimizer)
        assert set(best) == set(model.state_dict())
        assert best["ngrams.weight.weight"].data_ptr() == model.ngrams.weight.weight.data_ptr()
        assert torch.equal(best["ngrams.weight.weight"], saved["ngrams.weight.weight"])


def test_a_one_output_fit_over_folded_ratios_is_the_binary_fit():
    # The binary fit scales the matrix by the ratios; the ordinal cuts fold them into the
    # weights over a matrix of ones. The two reach the same weights.
    ids, labels = rated_rows(200, noise=0.2, seed=3)
    above = (labels > 1).float()
    binary = NgramBranch(VOCAB, 13, order=2, binary=True)
    fit_ngram_regression(binary, ids, above, inverse_l2=1.0)
    seen, rows, columns = compact_presence(binary, ids)
    ratios = log_count_ratios(rows, columns, above, len(seen))
    weights, bias, _ = _logistic_fit(*csr_pair(row_pointers(rows, len(ids)), columns,
                                               torch.ones(len(columns), dtype=torch.float64), len(seen)),
                                     above.double(), 1.0, scale=ratios)
    torch.testing.assert_close((ratios * weights).float(), binary.weight.weight[seen, 0], atol=1e-4, rtol=1e-4)
    assert abs(float(bias) - float(binary.bias)) < 1e-4


class Killed(BaseException):
    """Stands for the process dying just after a checkpoint is committed."""


def test_the_readout_is_fitted_before_the_network_and_a_distilled_run_resumes_exactly(tmp_path, monkeypatch):
    from rnnsent.artifact.directory import load_artifact
    from rnnsent.training import checkpoint as checkpoints
    from rnnsent.training import loop

    data = write_jsonl(tmp_path / "stars.jsonl", rating_rows(30, seed=2))
    unlabelled = tmp_path / "unlabelled.txt"
    unlabelled.write_text("".join(text + "\n" for text, _ in rating_rows(12, seed=3)), encoding="utf-8")
    settings = {"epochs": 2, "pretrain_window": 0, "batch_size": 16, "checkpoint_every": 3, "distill_weight": 1.0,
                "unlabelled_batch_size": 16, "unlabelled_data": str(unlabelled), **QUIET}
    rnnsent.train("best", data=data, out=tmp_path / "reference", **settings)
    # The distillation's teacher is the whole K-class branch: its readout is in the first checkpoint.
    first = {}
    save = checkpoints.save_checkpoint

    def save_then_die(run_dir, progress, *args):
        save(run_dir, progress, *args)
        if not first:
            args[-1].wait()  # the writer: checkpoints are committed in the background
            first.update(checkpoints.load_checkpoint(run_dir)[1])
        if progress.epoch == 1 and progress.step_in_epoch > 0:
            raise Killed

    monkeypatch.setattr(loop.checkpoints, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        rnnsent.train("best", data=data, out=tmp_path / "killed", **settings)
    monkeypatch.setattr(loop.checkpoints, "save_checkpoint", save)
    final = load_artifact(tmp_path / "reference").model.state_dict()
    torch.testing.assert_close(first["model.ngrams.readout"], final["ngrams.readout"], rtol=0, atol=0)
    assert not torch.equal(final["ngrams.readout"], torch.ones(4, 5).triu(diagonal=1))  # fitted, not the start
    rnnsent.train(resume=tmp_path / "killed", **QUIET)
    assert ((tmp_path / "killed" / "model.safetensors").read_bytes()
            == (tmp_path / "reference" / "model.safetensors").read_bytes())
