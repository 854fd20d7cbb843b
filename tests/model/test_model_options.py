"""Model options on tiny tensors: shapes, padding invariance, pooling, the n-gram branch."""

from __future__ import annotations

import math

import pytest
import torch

from rnnsent.config import build_config, choices
from rnnsent.model.build import Classifier, build_model, recurrent_network
from rnnsent.model.ngrams import HASH_MODULUS, HASH_MULTIPLIER, NgramBranch, ngram_ids
from rnnsent.model.summary import count_parameters, summary_table

VOCAB = 50


def small_model(**overrides) -> Classifier:
    settings = {"embedding_dim": 6, "hidden_size": 5, "recurrent_init": "default", "input_init_std": 0.0,
                "padding": "post", "use_lengths": True, **overrides}
    config = build_config("seed", {"num_words": VOCAB, **settings})
    torch.manual_seed(0)
    return build_model(config.model, VOCAB).eval()


def rows_with_padding(extra: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three post-padded reviews of lengths 4, 2 and 6, with ``extra`` more padding columns."""
    reviews = [[1, 7, 9, 12], [1, 30], [1, 4, 4, 8, 49, 3]]
    width = 6 + extra
    ids = torch.zeros(len(reviews), width, dtype=torch.int64)
    for row, review in enumerate(reviews):
        ids[row, : len(review)] = torch.tensor(review)
    return ids, torch.tensor([len(review) for review in reviews])


@pytest.mark.parametrize("cell", choices("cell"))
@pytest.mark.parametrize("pooling", choices("pooling"))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_extra_padding_never_changes_a_prediction(cell, pooling, bidirectional):
    model = small_model(cell=cell, pooling=pooling, bidirectional=bidirectional, num_layers=2, ngram_buckets=97)
    with torch.no_grad():
        model.ngrams.weight.weight.normal_()  # non-zero n-gram weights, so the branch matters too
        reference, _ = model(*rows_with_padding(0))
        padded, _ = model(*rows_with_padding(9))
    assert reference.shape == (3,)
    torch.testing.assert_close(padded, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling, factor", [("last", 1), ("max", 1), ("mean", 1), ("attention", 1), ("maxmean", 2)])
@pytest.mark.parametrize("bidirectional, directions", [(False, 1), (True, 2)])
@pytest.mark.parametrize("cell", choices("cell"))
def test_state_and_summary_sizes(cell, pooling, factor, bidirectional, directions):
    model = small_model(cell=cell, pooling=pooling, bidirectional=bidirectional, num_layers=2)
    ids, lengths = rows_with_padding(2)
    states, summary = model.encode(ids, lengths)
    assert states.shape == (3, 8, 5 * directions)
    assert summary.shape == (3, 5 * directions * factor)
    assert model.head.in_features == 5 * directions * factor


def test_pooling_on_hand_made_states():
    states = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [100.0, 100.0]],
                           [[-1.0, 5.0], [-3.0, 1.0], [-5.0, 0.0]]])  # (batch 2, time 3, state 2)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    expected = {
        "max": torch.tensor([[3.0, 0.0], [-1.0, 5.0]]),
        "mean": torch.tensor([[2.0, -1.0], [-3.0, 2.0]]),
    }
    expected["maxmean"] = torch.cat([expected["max"], expected["mean"]], dim=-1)
    for pooling, wanted in expected.items():
        model = small_model(pooling=pooling, hidden_size=2)
        torch.testing.assert_close(model.pooling(states, None, mask), wanted)


def test_attention_pooling_weights_sum_to_one_over_real_steps():
    model = small_model(pooling="attention", hidden_size=2)
    with torch.no_grad():
        model.pooling.score.weight.copy_(torch.tensor([[1.0, 0.0]]))
    states = torch.tensor([[[0.0, 1.0], [math.atanh(0.5), 3.0], [50.0, 50.0]]])  # (1, 3, 2); step 3 is padding
    mask = torch.tensor([[True, True, False]])
    # Scores are tanh(state) . (1, 0) = 0 and 0.5, so the weights are softmax(0, 0.5).
    weight = torch.softmax(torch.tensor([0.0, 0.5]), dim=0)
    wanted = weight[0] * states[0, 0] + weight[1] * states[0, 1]
    torch.testing.assert_close(model.pooling(states, None, mask), wanted.unsqueeze(0))


def test_last_pooling_of_a_bidirectional_lstm_joins_both_directions():
    model = small_model(cell="lstm", pooling="last", bidirectional=True)
    ids, lengths = rows_with_padding(0)
    states, summary = model.encode(ids, lengths)
    hidden = 5
    for row, length in enumerate(lengths.tolist()):
        # Forward direction ends at the last real word; the backward one at the first.
        torch.testing.assert_close(summary[row, :hidden], states[row, length - 1, :hidden])
        torch.testing.assert_close(summary[row, hidden:], states[row, 0, hidden:])


# ----------------------------------------------------------------------------- n-gram branch


def bigram_feature(first: int, second: int, vocab: int, buckets: int) -> int:
    return vocab + ((first % HASH_MODULUS) * HASH_MULTIPLIER + second) % HASH_MODULUS % buckets


def test_ngram_ids_by_hand():
    ids = torch.tensor([[1, 5, 6, 0, 0]])
    features = ngram_ids(ids, vocab_size=10, buckets=7, order=2)
    wanted = [1, 5, 6, -1, -1, bigram_feature(1, 5, 10, 7), bigram_feature(5, 6, 10, 7), -1, -1, -1]
    assert features.tolist() == [wanted]
    assert ngram_ids(ids, 10, 7, order=1).tolist() == [[1, 5, 6, -1, -1]]
    trigrams = ngram_ids(ids, 10, 7, order=3)[0, 10:].tolist()
    assert trigrams[1:] == [-1, -1, -1, -1] and 10 <= trigrams[0] < 17


@pytest.mark.parametrize("order", [1, 2, 3])
def test_ngram_features_ignore_padding_side_and_amount(order):
    pre = torch.tensor([[0, 0, 0, 1, 8, 3, 8, 3]])
    post = torch.tensor([[1, 8, 3, 8, 3, 0]])
    count = 5 + 4 * (order >= 2) + 3 * (order >= 3)
    for row in (pre, post):
        features = ngram_ids(row, 10, 1000, order)
        assert int((features >= 0).sum()) == count
    as_sorted = [sorted(f for f in ngram_ids(row, 10, 1000, order)[0].tolist() if f >= 0) for row in (pre, post)]
    assert as_sorted[0] == as_sorted[1]


def test_ngram_branch_logit_is_the_scaled_mean_weight():
    branch = NgramBranch(vocab_size=10, buckets=7, order=2, lr_scale=3.0)
    with torch.no_grad():
        branch.weight.weight[:, 0] = torch.arange(18, dtype=torch.float32)
        branch.weight.weight[17] = 0.0  # the padding row stays zero
    ids = torch.tensor([[1, 5, 6, 0], [2, 0, 0, 0]])
    features = [1, 5, 6, bigram_feature(1, 5, 10, 7), bigram_feature(5, 6, 10, 7)]
    wanted = torch.tensor([3.0 * sum(features) / 5, 3.0 * 2.0])
    torch.testing.assert_close(branch(ids), wanted)


def test_ngram_branch_adds_its_parameters_and_logit():
    plain = small_model(pooling="max")
    wide = small_model(pooling="max", ngram_buckets=97, ngram_order=3)
    assert count_parameters(wide) == count_parameters(plain) + VOCAB + 97 + 1
    assert "ngrams (bag of 1..3-grams)" in summary_table(wide, 10)
    ids, lengths = rows_with_padding(0)
    with torch.no_grad():
        recurrent_network(wide).load_state_dict(plain.state_dict())  # same recurrent weights, n-gram weights zero
        torch.testing.assert_close(wide(ids, lengths)[0], plain(ids, lengths)[0])
        wide.ngrams.weight.weight.fill_(0.25)
        wide.ngrams.weight.weight[-1] = 0.0
        torch.testing.assert_close(wide(ids, lengths)[0], plain(ids, lengths)[0] + 0.25)


def test_ngram_gradients_reach_only_present_features():
    model = small_model(ngram_buckets=97)
    ids, lengths = rows_with_padding(3)
    _, loss = model(ids, lengths, torch.tensor([1.0, 0.0, 1.0]))
    loss.backward()
    touched = set(torch.nonzero(model.ngrams.weight.weight.grad[:, 0]).flatten().tolist())
    present = set(ngram_ids(ids, VOCAB, 97, 2).flatten().tolist()) - {-1}
    assert touched <= present and len(touched) > 0


@pytest.mark.parametrize("setting, value", [("ngram_buckets", -1), ("ngram_order", 0), ("ngram_order", 4),
                                            ("ngram_lr_scale", 0.0)])
def test_ngram_settings_are_validated(setting, value):
    with pytest.raises(ValueError, match=setting):
        build_config("seed", {setting: value})


@pytest.mark.parametrize("cell", choices("cell"))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_reading_within_lengths_matches_packed_sequences(cell, bidirectional):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from rnnsent.model.lengths import run_within_lengths

    model = small_model(cell=cell, bidirectional=bidirectional, num_layers=2)
    ids, lengths = rows_with_padding(3)
    embedded = model.embedding(ids)
    with torch.no_grad():
        states, final = run_within_lengths(model.rnn, embedded, lengths, dropout=0.0)
        packed, packed_final = model.rnn(pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False))
        packed_states, _ = pad_packed_sequence(packed, batch_first=True, total_length=ids.shape[1])
    packed_final = packed_final[0] if isinstance(packed_final, tuple) else packed_final
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1)
    torch.testing.assert_close(states * mask, packed_states, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(final, packed_final, rtol=1e-5, atol=1e-6)


def test_reverse_within_lengths_is_its_own_inverse():
    from rnnsent.model.lengths import reverse_within_lengths

    values = torch.arange(12, dtype=torch.float32).view(2, 6, 1)  # (batch 2, time 6, 1)
    lengths = torch.tensor([4, 6])
    reversed_values = reverse_within_lengths(values, lengths)
    assert reversed_values[..., 0].tolist() == [[3, 2, 1, 0, 4, 5], [11, 10, 9, 8, 7, 6]]
    torch.testing.assert_close(reverse_within_lengths(reversed_values, lengths), values)


def test_length_sorted_scoring_returns_logits_in_input_order():
    from rnnsent.model.scoring import predict_logits

    model = small_model(cell="gru", bidirectional=True, pooling="maxmean", ngram_buckets=31)
    ids, lengths = rows_with_padding(5)
    with torch.no_grad():
        expected = model(ids, lengths)[0].numpy()
    for batch_size in (1, 2, 3):
        torch.testing.assert_close(torch.from_numpy(predict_logits(model, ids, lengths, batch_size)),
                                   torch.from_numpy(expected), rtol=1e-5, atol=1e-6)
