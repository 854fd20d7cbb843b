"""The fast inference forward against the model's own forward, the oracle it must equal to float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnsent.artifact.directory import save_artifact
from rnnsent.config import build_config, choices
from rnnsent.inference.predictor import Predictor
from rnnsent.labels import BINARY_SENTIMENT, LabelSpace
from rnnsent.model.build import build_model
from rnnsent.model.fast_forward import fast_forward_supported, fast_part_logits
from rnnsent.model.quantize import quantize_model
from rnnsent.model.scoring import predict_logits, predict_part_logits
from rnnsent.text.vocabulary import Vocabulary

VOCAB = 60


def random_model(outputs: int = 1, vocab: int = VOCAB, **overrides):
    """A small model of the given options with every weight drawn large, so each part matters."""
    settings = {"embedding_dim": 6, "hidden_size": 5, "recurrent_init": "default", "input_init_std": 0.0,
                "num_words": vocab, "padding": "post", "use_lengths": True, **overrides}
    if settings.get("ngram_fit") == "stacked":
        settings["validation_split"] = 0.1
    config = build_config("seed", settings)
    torch.manual_seed(0)
    labels = LabelSpace("multiclass", tuple(f"c{i}" for i in range(outputs))) if outputs > 1 else BINARY_SENTIMENT
    model = build_model(config.model, vocab, labels=labels).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5)
        if hasattr(model, "blend"):
            model.blend.copy_(torch.tensor([0.7, 0.4, -0.2]))
    return config, model


def ragged_rows(count: int = 37, width: int = 15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Post-padded id rows ``(count, width)`` of lengths 1 to ``width`` (one of each end), and the lengths."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, width + 1, count)
    lengths[:2] = (1, width)
    ids = np.zeros((count, width), dtype=np.int64)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(1, VOCAB, length)
    return ids, lengths


CELLS = [("simple", "tanh"), ("simple", "relu"), ("gru", "tanh"), ("lstm", "tanh")]
NGRAMS = [{}, {"ngram_buckets": 31, "ngram_fit": "joint"}, {"ngram_buckets": 31, "ngram_fit": "stacked", "ngram_order": 3}]


@pytest.mark.parametrize("cell, nonlinearity", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", choices("pooling"))
@pytest.mark.parametrize("ngrams", NGRAMS, ids=["no-ngrams", "joint", "stacked"])
def test_fast_forward_equals_the_model_forward(cell, nonlinearity, bidirectional, pooling, ngrams):
    _, model = random_model(cell=cell, nonlinearity=nonlinearity, bidirectional=bidirectional, pooling=pooling,
                            **ngrams)
    ids, lengths = ragged_rows()
    expected = predict_part_logits(model, ids, lengths, batch_size=8)
    assert fast_forward_supported(model)
    for batch_size, workers in ((8, 1), (5, 2), (100, 1)):
        fast = fast_part_logits(model, ids, lengths, batch_size, workers)
        assert set(fast) == set(expected)
        for name, logits in expected.items():
            np.testing.assert_allclose(fast[name].numpy(), logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell, nonlinearity", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "max", "mean", "maxmean"])
@pytest.mark.parametrize("ngrams", NGRAMS, ids=["no-ngrams", "joint", "stacked"])
def test_a_rows_logits_do_not_depend_on_the_rows_beside_it(cell, nonlinearity, bidirectional, pooling, ngrams):
    # Bit for bit: each row alone, all rows in batches of 8, and in one batch on two threads.
    # (Attention pooling is equal to float32 rounding only: its softmax runs over the batch's longest row.)
    _, model = random_model(cell=cell, nonlinearity=nonlinearity, bidirectional=bidirectional, pooling=pooling,
                            **ngrams)
    ids, lengths = ragged_rows()
    together = fast_part_logits(model, ids, lengths, 8)["model"]
    alone = torch.cat([fast_part_logits(model, ids[i:i + 1], lengths[i:i + 1], 8)["model"] for i in range(len(ids))])
    assert torch.equal(alone, together)
    assert torch.equal(fast_part_logits(model, ids, lengths, 100, 2)["model"], together)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("pooling", ["last", "maxmean", "attention"])
def test_fast_forward_reads_every_column_without_use_lengths(cell, pooling):
    # Pre-padded rows read whole, padding included, as the model's forward reads them.
    _, model = random_model(cell=cell, pooling=pooling, bidirectional=True, padding="pre", use_lengths=False)
    ids, lengths = ragged_rows()
    ids = np.ascontiguousarray(ids[:, ::-1])
    expected = predict_logits(model, ids, lengths)
    np.testing.assert_allclose(fast_part_logits(model, ids, lengths, 8, 2)["model"].numpy(), expected,
                               rtol=1e-5, atol=1e-5)


def test_fast_forward_with_several_outputs():
    _, model = random_model(outputs=4, cell="gru", bidirectional=True, pooling="maxmean", ngram_buckets=31,
                            ngram_fit="joint")
    ids, lengths = ragged_rows()
    fast = fast_part_logits(model, ids, lengths, 6, 2)["model"]
    assert fast.shape == (len(ids), 4)
    np.testing.assert_allclose(fast.numpy(), predict_logits(model, ids, lengths), rtol=1e-5, atol=1e-5)


def test_fast_forward_with_a_vocabulary_far_larger_than_the_ids_read():
    # Few ids against a large vocabulary are found by sorting them, not by a table of the vocabulary.
    _, model = random_model(vocab=50_000, cell="gru", bidirectional=True, pooling="maxmean", ngram_buckets=31,
                            ngram_fit="joint")
    ids, lengths = ragged_rows()
    ids[ids > 0] += 49_000
    np.testing.assert_allclose(fast_part_logits(model, ids, lengths, 8)["model"].numpy(),
                               predict_logits(model, ids, lengths), rtol=1e-5, atol=1e-5)


def test_fast_forward_of_no_rows_and_of_rows_without_length():
    _, model = random_model(cell="gru", bidirectional=True, pooling="maxmean")
    ids, lengths = ragged_rows()
    assert fast_part_logits(model, ids[:0], lengths[:0], 8)["model"].shape == (0,)
    # A length of 0 reads one step, as the model's forward does (it clamps lengths to 1).
    lengths[3] = 0
    np.testing.assert_allclose(fast_part_logits(model, ids, lengths, 8)["model"].numpy(),
                               predict_logits(model, ids, lengths), rtol=1e-5, atol=1e-5)


def test_models_the_fast_forward_does_not_take_are_scored_by_their_own_forward():
    ids, lengths = ragged_rows()
    _, stacked = random_model(cell="gru", num_layers=2)
    _, gru = random_model(cell="gru", bidirectional=True)
    quantized = quantize_model(gru)
    assert not fast_forward_supported(stacked) and not fast_forward_supported(quantized)
    assert not fast_forward_supported(gru.train())
    for model in (stacked, quantized):
        np.testing.assert_array_equal(predict_logits(model, ids, lengths, fast=True), predict_logits(model, ids, lengths))


def test_predictor_probabilities_equal_the_reference_forward(tmp_path):
    words = tuple(f"w{i}" for i in range(VOCAB - 3))
    config, model = random_model(cell="gru", bidirectional=True, pooling="maxmean", ngram_buckets=31,
                                 ngram_fit="stacked", ngram_order=3, maxlen=12)
    predictor = Predictor.load(save_artifact(tmp_path / "model", config, Vocabulary(words), model))
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(words + ("unknown", "W3,"), size=rng.integers(0, 20))) for _ in range(300)]
    ids, lengths = predictor.encoder.encode_batch(texts)
    expected = predictor.to_probabilities(predict_logits(predictor.model, ids, lengths))
    np.testing.assert_allclose(predictor.probabilities(texts, batch_size=128), expected, rtol=0, atol=1e-5)
    assert [p.probability for p in predictor.predict(texts[:5])] == pytest.approx(expected[:5].tolist(), abs=1e-5)
