"""Explanations: the trajectory, occlusion and integrated gradients against direct computations."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from rnnsent.artifact.directory import Artifact
from rnnsent.cli.main import main
from rnnsent.cli.render import render_text
from rnnsent.config import build_config
from rnnsent.inference.explain import explain
from rnnsent.inference.predictor import Predictor
from rnnsent.model.build import build_model, ngram_branch, recurrent_network
from rnnsent.model.composed import StackedClassifier
from rnnsent.text.vocabulary import Vocabulary

WORDS = tuple(f"w{i}" for i in range(40))

# Architectures whose prefix summaries are computed differently; random weights suffice.
VARIANTS = {
    "simple-last-pre": {},
    "lstm-2layers-max": {"cell": "lstm", "num_layers": 2, "pooling": "max"},
    "gru-mean": {"cell": "gru", "pooling": "mean"},
    "gru-maxmean-lengths-post": {"cell": "gru", "pooling": "maxmean", "use_lengths": True,
                                 "padding": "post", "truncating": "post"},
    "gru-2layers-last-lengths-post": {"cell": "gru", "num_layers": 2, "use_lengths": True, "padding": "post"},
    "simple-attention": {"pooling": "attention", "nonlinearity": "tanh"},
    "lstm-attention-post-no-lengths": {"cell": "lstm", "pooling": "attention", "padding": "post"},
    "bigru-maxmean-lengths": {"cell": "gru", "bidirectional": True, "pooling": "maxmean", "use_lengths": True,
                              "padding": "post", "truncating": "post"},
    "bilstm-last-pre": {"cell": "lstm", "bidirectional": True},
    # The n-gram branch adds to the logit, so a one-pass trajectory must add its prefix logits too.
    "simple-last-ngrams": {"ngram_buckets": 31, "ngram_order": 3},
    "gru-max-lengths-stacked-ngrams": {"cell": "gru", "pooling": "max", "use_lengths": True, "padding": "post",
                                       "ngram_buckets": 31, "ngram_fit": "stacked", "validation_split": 0.1},
}


def make_predictor(overrides: dict, maxlen: int = 12, seed: int = 0) -> Predictor:
    """A predictor over an untrained model whose outputs vary with the input."""
    settings = {"num_words": 3 + len(WORDS), "maxlen": maxlen, "embedding_dim": 6, "hidden_size": 4,
                "recurrent_init": "orthogonal", "input_init_std": 0.0, **overrides}
    config = build_config("seed", settings)
    torch.manual_seed(seed)
    model = build_model(config.model, config.text.num_words)
    with torch.no_grad():
        recurrent_network(model).embedding.weight.normal_(0.0, 1.0)
        recurrent_network(model).head.weight.normal_(0.0, 2.0)
        if ngram_branch(model) is not None:
            ngram_branch(model).weight.weight.normal_(0.0, 1.0)
        if isinstance(model, StackedClassifier):
            model.blend.copy_(torch.tensor([0.7, 1.3, -0.2]))
    model.eval()
    return Predictor(Artifact(Path("."), config, Vocabulary(WORDS), model))


def prefix_reference(predictor: Predictor, text: str) -> list[float]:
    """Probability after each token by running the model once per prefix of the padded row."""
    config = predictor.config
    ids, lengths = predictor.encoder.encode_batch([text])
    length = int(lengths[0])
    maxlen = config.text.maxlen
    first = maxlen - length if config.text.padding == "pre" else 0
    values = []
    with torch.no_grad():
        for column in range(first, first + length):
            prefix = torch.from_numpy(ids[:, :column + 1])
            prefix_lengths = torch.tensor([min(length, column + 1 - first)]) if config.model.use_lengths else None
            logits, _ = predictor.model(prefix, prefix_lengths)
            values.append(torch.sigmoid(logits).item())
    return values


@pytest.mark.parametrize("name", list(VARIANTS))
def test_trajectory_matches_per_prefix_runs(name):
    predictor = make_predictor(VARIANTS[name])
    words = ["w3", "w17", "w5", "unknownword", "w30", "w8", "w1"]
    text = " ".join(words)
    explanation = predictor.explain(text)
    assert explanation.tokens == ["<start>", *words]
    if predictor.config.model.bidirectional:
        # A bidirectional reader cannot give prefix verdicts from one pass: each prefix is a review.
        reference = [prediction.probability for prediction in
                     predictor.predict([" ".join(words[:count]) for count in range(len(words) + 1)])]
    else:
        reference = prefix_reference(predictor, text)
    assert explanation.trajectory == pytest.approx(reference, abs=1e-5)
    full = predictor.predict([text])[0].probability
    assert explanation.probability == pytest.approx(full, abs=1e-6)
    reads_to_the_end = predictor.config.text.padding == "pre" or predictor.config.model.use_lengths
    if reads_to_the_end:
        assert explanation.trajectory[-1] == pytest.approx(full, abs=1e-5)


def logit_and_baseline(predictor: Predictor, text: str) -> tuple[float, float]:
    """The model's logit for ``text``, and for the baseline of integrated gradients: every word's
    vector zero and, with an n-gram branch, the branch over the row without its words."""
    ids, lengths = predictor.encoder.encode_batch([text])
    ids_tensor = torch.from_numpy(ids)
    lengths_tensor = torch.from_numpy(lengths) if predictor.config.model.use_lengths else None
    model, network = predictor.model, recurrent_network(predictor.model)
    with torch.no_grad():
        words = ids_tensor > 1  # not padding, not the start token
        embedded = network.embedding(ids_tensor) * ~words.unsqueeze(-1)
        recurrent = network(ids_tensor, lengths_tensor, embedded=embedded)[0]
        if ngram_branch(model) is None:
            baseline = recurrent
        else:
            baseline = model.combine({"recurrent": recurrent, "ngrams": model.ngrams(ids_tensor.masked_fill(words, 0))})
        return model(ids_tensor, lengths_tensor)[0].item(), baseline.item()


@pytest.mark.parametrize("name", ["simple-last-pre", "gru-maxmean-lengths-post", "bilstm-last-pre",
                                  "simple-last-ngrams", "gru-max-lengths-stacked-ngrams"])
def test_integrated_gradients_complete(name):
    """Attributions add up to logit(text) - logit(every word's vector zero and, with an n-gram
    branch, none of the words' n-grams)."""
    predictor = make_predictor(VARIANTS[name])
    text = "w4 w11 w20 w4 w33"
    explanation = predictor.explain(text, integrated_gradients=True, steps=256)
    logit, baseline = logit_and_baseline(predictor, text)
    gradients = explanation.integrated_gradients
    assert gradients[0] == 0.0  # the start token keeps its vector in the baseline
    assert sum(gradients) == pytest.approx(logit - baseline, rel=0.03, abs=2e-3)
    assert math.isclose(explanation.probability, 1 / (1 + math.exp(-logit)), abs_tol=1e-6)


@pytest.mark.parametrize("name", ["simple-last-ngrams", "gru-max-lengths-stacked-ngrams"])
def test_a_words_ngram_weight_is_its_attribution(name):
    """Raise the n-gram branch's weight of one word: all of the logit's change is that word's
    attribution (the logit is linear in the branch's output; before, the branch was held fixed
    and the word got none of it)."""
    predictor = make_predictor(VARIANTS[name])
    text = "w4 w11 w20 w4 w33"
    heavy = copy.deepcopy(predictor)
    with torch.no_grad():
        heavy.model.ngrams.weight.weight[3 + WORDS.index("w33")] += 50.0
    change = logit_and_baseline(heavy, text)[0] - logit_and_baseline(predictor, text)[0]
    before = predictor.explain(text, integrated_gradients=True, steps=256).integrated_gradients[-1]
    after = heavy.explain(text, integrated_gradients=True, steps=256).integrated_gradients[-1]
    assert change > 3.0 and after - before == pytest.approx(change, rel=1e-3)


def test_ngram_word_shares_add_up_to_the_branch_without_the_words():
    from rnnsent.model.ngrams import NgramBranch

    torch.manual_seed(0)
    for branch in (NgramBranch(20, 13, 3), NgramBranch(20, 13, 3, binary=True),
                   NgramBranch(20, 13, 2, binary=True, outputs=4, ordinal=True)):
        with torch.no_grad():
            branch.weight.weight.normal_()
            if branch.ordinal:
                branch.readout.normal_()
        row = torch.tensor([1, 5, 7, 5, 7, 9, 0, 0])  # the start token, words (a repeated bigram), padding
        words = (row > 1)
        shares = branch.word_shares(row, words)
        assert torch.all(shares[~words] == 0)
        without = branch(row.masked_fill(words, 0).unsqueeze(0))[0]
        assert torch.allclose(shares.sum(dim=0), branch(row.unsqueeze(0))[0] - without, atol=1e-5)
    # Hand-derived: a stacked branch of unigrams and bigrams, words a b a (ids 4 5 4) after the
    # start token. The distinct n-grams are a, b, <start> a, a b, b a; "a" occurs twice, so each
    # occurrence carries half its weight; each bigram's weight is split over its words.
    branch = NgramBranch(6, 101, 2, binary=True)
    row = torch.tensor([1, 4, 5, 4])
    with torch.no_grad():
        branch.weight.weight.zero_()
        branch.weight.weight[4] = 2.0  # a
        branch.weight.weight[5] = 1.0  # b
        features = ngram_ids_of(row, branch)
        assert len(set(features[4:7].tolist())) == 3  # the three bigrams in buckets of their own
        for feature, value in zip(features[4:7].tolist(), (8.0, 4.0, 6.0)):  # <start> a, a b, b a
            branch.weight.weight[feature] += value
    shares = branch.word_shares(row, row > 1).tolist()
    # a (first): 2/2 + all of "<start> a" (8) + half of "a b" (2) = 11; b: 1 + 2 + 3 = 6;
    # a (second): 2/2 + half of "b a" (3) = 4.
    assert shares == pytest.approx([0.0, 11.0, 6.0, 4.0])


def ngram_ids_of(row, branch):
    from rnnsent.model.ngrams import ngram_ids

    return ngram_ids(row.unsqueeze(0), branch.vocab_size, branch.buckets, branch.order, mixed=True)[0]


def test_explain_rejects_bad_input():
    predictor = make_predictor({})
    with pytest.raises(TypeError):
        explain(predictor.artifact, ["not", "one", "text"])
    with pytest.raises(ValueError, match="step"):
        predictor.explain("w1", integrated_gradients=True, steps=0)


def test_render_text_plain_and_coloured():
    predictor = make_predictor({})
    explanation = predictor.explain("w1 w2 nonword w3", integrated_gradients=True)
    plain = render_text(explanation, color=False)
    assert "\x1b[" not in plain and "\nreview: " in plain  # a sentiment model reads reviews
    assert plain.splitlines()[0].startswith(f"{explanation.label}  {explanation.probability:.4f}")
    assert "nonword (oov)" in plain and "int. grad" in plain
    coloured = render_text(explanation, color=True)
    assert "\x1b[4m" in coloured or ";4m" in coloured  # the unknown word is underlined
    assert "\x1b[" in coloured.splitlines()[1]


def test_cli_explain_json_and_plain(tiny_model_dir, capsys):
    assert main(["predict", str(tiny_model_dir), "--explain", "The plot was awful but the cast was great",
                 "--json", "--integrated-gradients"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["tokens"][0] == "<start>" and len(record["trajectory"]) == len(record["tokens"])
    assert len(record["integrated_gradients"]) == len(record["tokens"])
    by_word = dict(zip(record["tokens"], record["influence"]))
    assert by_word["great"] > 0 > by_word["awful"]  # the tiny model learned these words' signs
    assert main(["predict", str(tiny_model_dir), "--explain", "great fun"]) == 0
    output = capsys.readouterr().out
    assert "\x1b[" not in output  # captured output is not a terminal
    assert "great" in output and "p after" in output


@pytest.mark.parametrize("arguments, message", [
    (["another text", "--explain", "x"], "--explain takes one text"),
    (["some text", "--integrated-gradients"], "--integrated-gradients goes with --explain"),
])
def test_cli_explain_usage_errors(tiny_model_dir, capsys, arguments, message):
    assert main(["predict", str(tiny_model_dir), *arguments]) == 2
    assert f"error: {message}" in capsys.readouterr().err
