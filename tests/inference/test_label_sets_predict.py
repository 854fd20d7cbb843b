"""Predict, explain and evaluate for every label space, end to end on tiny made-up data.

Four tiny models are trained once for the module: topics (three classes, CSV), star ratings
(1-5 as JSON integers, ordered), spam/ham (binary, not sentiment) and tags (multi-label JSONL
lists, some rows with none). Each word family below belongs to one class, so a few epochs
learn them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import rnnsent
from label_models import FAST, SPAM, STARS, TOPICS, one_label_rows, random_predictor, tag_rows
from rnnsent.cli.main import main
from rnnsent.cli.render import render_text
from rnnsent.inference.predictor import Predictor
from rnnsent.labels import LabelSpace
from rnnsent.model.build import recurrent_network


def write_csv(path: Path, rows, header=("text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows, text_field="text", label_field="label") -> Path:
    path.write_text("".join(json.dumps({"id": f"r{i}", text_field: text, label_field: label}) + "\n"
                            for i, (text, label) in enumerate(rows)), encoding="utf-8")
    return path


def train(directory: Path, data: Path, *extra: str) -> Path:
    out = directory / "model"
    assert main(["train", "--data", str(data), "--out", str(out), "--preset", "seed", *FAST, *extra]) == 0
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("label-sets")
    made = {}
    for name in ("topics", "stars", "spam", "tags"):
        (root / name).mkdir()
    made["topics"] = train(root / "topics", write_csv(root / "topics" / "topics.csv", one_label_rows(TOPICS, 300, 0)))
    made["stars"] = train(root / "stars", write_jsonl(root / "stars" / "stars.jsonl", one_label_rows(STARS, 400, 1),
                                                      label_field="stars"), "--label-field", "stars")
    made["spam"] = train(root / "spam", write_csv(root / "spam" / "spam.csv", one_label_rows(SPAM, 200, 2)))
    made["tags"] = train(root / "tags", write_jsonl(root / "tags" / "tags.jsonl", tag_rows(480, 3), text_field="review",
                                                    label_field="tags"),
                         "--text-field", "review", "--label-field", "tags", "--epochs", "10")
    return made


def predict_lines(capsys, model: Path, *arguments: str) -> list[str]:
    assert main(["predict", str(model), *arguments]) == 0
    return capsys.readouterr().out.splitlines()


def predict_json(capsys, model: Path, *arguments: str) -> list[dict]:
    return [json.loads(line) for line in predict_lines(capsys, model, "--json", *arguments)]


def test_the_models_have_their_label_spaces(models):
    spaces = {name: rnnsent.load(path).labels for name, path in models.items()}
    assert (spaces["topics"].task, spaces["topics"].names) == ("multiclass", ("politics", "sports", "tech"))
    assert (spaces["stars"].task, spaces["stars"].names, spaces["stars"].ordered) == (
        "multiclass", ("1", "2", "3", "4", "5"), True)
    assert (spaces["spam"].task, spaces["spam"].names) == ("binary", ("ham", "spam"))
    assert (spaces["tags"].task, spaces["tags"].names) == ("multilabel", ("politics", "sports", "tech"))


# ----------------------------------------------------------------------------- predict


def test_multiclass_predict_plain_and_json(models, capsys):
    texts = ["the senate vote on the law", "a goal in the match", "this chip runs the code"]
    lines = predict_lines(capsys, models["topics"], *texts)
    fields = [line.split("\t") for line in lines]
    assert [row[0] for row in fields] == ["politics", "sports", "tech"]
    assert [row[2] for row in fields] == texts
    assert all(0.0 < float(row[1]) <= 1.0 for row in fields)
    rows = predict_json(capsys, models["topics"], *texts)
    for row, plain in zip(rows, fields):
        assert list(row) == ["text", "label", "probability", "empty", "probabilities"]
        assert list(row["probabilities"]) == ["politics", "sports", "tech"]  # the model's label order
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get) == plain[0]
        assert row["probability"] == row["probabilities"][row["label"]]
        assert plain[1] == f"{row['probability']:.4f}"


def test_star_ratings_from_jsonl_integers_keep_their_ids(models, capsys, tmp_path):
    rows = [{"id": 7, "text": "an awful horrid film", "year": 1999}, {"id": 8, "text": "superb and brilliant"},
            {"id": 9, "text": ""}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    results = predict_json(capsys, models["stars"], "--file", str(path))
    assert [result["id"] for result in results] == [7, 8, 9]
    assert results[0]["year"] == 1999 and "year" not in results[1]
    assert [result["label"] for result in results[:2]] == ["1", "5"]
    assert results[2]["empty"]
    assert all(list(result["probabilities"]) == ["1", "2", "3", "4", "5"] for result in results)
    # The same fields in the file --output writes.
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(models["stars"]), "--file", str(path), "--json", "--output", str(out)]) == 0
    capsys.readouterr()
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == results
    # Plain lines: the star and its probability.
    lines = predict_lines(capsys, models["stars"], "--file", str(path))
    assert [line.split("\t")[0] for line in lines[:2]] == ["1", "5"]


def test_csv_columns_pass_through_with_json(models, capsys, tmp_path):
    path = write_csv(tmp_path / "in.csv", [("m1", "a free prize for the winner", "x"), ("m2", "lunch meeting report", "y")],
                     header=("id", "body", "note"))
    results = predict_json(capsys, models["spam"], "--file", str(path), "--text-field", "body")
    assert [(r["id"], r["note"], r["text"]) for r in results] == [
        ("m1", "x", "a free prize for the winner"), ("m2", "y", "lunch meeting report")]
    assert "body" not in results[0]  # the text field is the result's "text"
    assert [r["label"] for r in results] == ["spam", "ham"]


def test_input_fields_named_like_the_results_come_along_prefixed(models, capsys, tmp_path):
    # A file with its own labels: they stay beside the predicted ones instead of being replaced.
    rows = [{"text": "a free prize for the winner", "label": "ham", "probability": 5, "input_label": "kept"}]
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (result,) = predict_json(capsys, models["spam"], "--file", str(path))
    assert result["label"] == "spam" and 0 <= result["probability"] <= 1
    assert result["input_input_label"] == "ham" and result["input_label"] == "kept" and result["input_probability"] == 5
    gold = write_csv(tmp_path / "gold.csv", [("1", "a free prize for the winner", "ham")], header=("id", "text", "label"))
    (row,) = predict_json(capsys, models["spam"], "--file", str(gold))
    assert (row["id"], row["input_label"], row["label"]) == ("1", "ham", "spam")


def test_binary_other_names_predict_like_sentiment(models, capsys):
    lines = predict_lines(capsys, models["spam"], "free prize winner", "the lunch report")
    assert [line.split("\t")[0] for line in lines] == ["spam", "ham"]
    # As for sentiment, the probability is the scored (second) class's.
    assert float(lines[0].split("\t")[1]) > 0.5 > float(lines[1].split("\t")[1])
    rows = predict_json(capsys, models["spam"], "free prize winner")
    assert set(rows[0]) == {"text", "label", "probability", "empty"}


def test_multilabel_predict_sets_over_thresholds(models, capsys, tmp_path):
    model = rnnsent.load(models["tags"])
    thresholds = model.artifact.thresholds or [0.5, 0.5, 0.5]
    path = tmp_path / "in.jsonl"
    texts = ["the senate vote and the goal match", "this chip app", "the a it was and", "the law of the senate"]
    path.write_text("".join(json.dumps({"review": text, "id": i}) + "\n" for i, text in enumerate(texts)),
                    encoding="utf-8")
    results = predict_json(capsys, models["tags"], "--file", str(path), "--text-field", "review")
    assert [r["id"] for r in results] == [0, 1, 2, 3]
    for result in results:
        assert list(result) == ["text", "id", "label", "probability", "empty", "labels", "probabilities"]
        probabilities = result["probabilities"]
        assert list(probabilities) == ["politics", "sports", "tech"]
        assert result["labels"] == [name for name, cut in zip(probabilities, thresholds) if probabilities[name] > cut]
        # The label named first is one of those over their thresholds when any is.
        assert result["label"] == max(result["labels"] or probabilities, key=probabilities.get)
        assert result["probability"] == probabilities[result["label"]]
    assert [r["labels"] for r in results] == [["politics", "sports"], ["tech"], [], ["politics"]]
    lines = predict_lines(capsys, models["tags"], "--file", str(path), "--text-field", "review")
    assert [line.split("\t")[0] for line in lines] == ["politics,sports", "tech", "-", "politics"]
    assert [line.split("\t")[1] for line in lines] == [f"{r['probability']:.4f}" for r in results]


# ----------------------------------------------------------------------------- explain


def explain_json(capsys, model: Path, text: str, *extra: str) -> dict:
    assert main(["predict", str(model), "--explain", text, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_multiclass_explain_default_and_chosen_class(models, capsys):
    text = "the senate vote and a goal"
    record = explain_json(capsys, models["topics"], text, "--integrated-gradients")
    assert len(record["trajectory"]) == len(record["tokens"]) == len(record["influence"])
    assert record["target"] == record["label"] and record["target"] in ("politics", "sports")
    assert list(record["probabilities"]) == ["politics", "sports", "tech"]
    assert record["probability"] == pytest.approx(record["probabilities"][record["target"]], abs=1e-6)
    assert record["trajectory"][-1] == pytest.approx(record["probability"], abs=1e-5)  # "pre" padding reads to the end
    politics = explain_json(capsys, models["topics"], text, "--class", "politics")
    sports = explain_json(capsys, models["topics"], text, "--class", "sports")
    tech = explain_json(capsys, models["topics"], text, "--class", "tech")
    assert (politics["target"], sports["target"], tech["target"]) == ("politics", "sports", "tech")
    by_word = {name: dict(zip(r["tokens"], r["influence"])) for name, r in
               (("politics", politics), ("sports", sports))}
    # Each class's own word pushes towards it, more than the other class's word does.
    assert by_word["politics"]["senate"] > 0 and by_word["politics"]["vote"] > 0
    assert by_word["politics"]["senate"] > by_word["politics"]["goal"]
    assert by_word["sports"]["goal"] > 0 and by_word["sports"]["goal"] > by_word["sports"]["senate"]
    assert tech["probability"] == pytest.approx(tech["probabilities"]["tech"], abs=1e-6)
    assert sum(p for p in politics["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


def test_integrated_gradients_of_a_class_are_complete(models):
    """For a softmax, attributions add up to the class's log-odds, z_k - logsumexp(others), text minus baseline."""
    model = rnnsent.load(models["stars"])
    text = "superb and brilliant but weak"
    explanation = model.explain(text, integrated_gradients=True, steps=256, label="5")
    ids, lengths = model.encoder.encode_batch([text])
    ids_tensor = torch.from_numpy(ids)
    network = recurrent_network(model.model)
    with torch.no_grad():
        logits = model.model(ids_tensor, torch.from_numpy(lengths))[0][0].double()
        embedded = network.embedding(ids_tensor)
        keep = (ids_tensor <= 1).unsqueeze(-1)  # padding and the start token stay; words become zero
        baseline_embedded = embedded * keep

        def replace(module, inputs, output):
            return baseline_embedded

        hook = network.embedding.register_forward_hook(replace)
        try:
            baseline = model.model(ids_tensor, torch.from_numpy(lengths))[0][0].double()
        finally:
            hook.remove()

    def log_odds(z):
        return float(z[4] - torch.logsumexp(z[:4], dim=0))

    assert sum(explanation.integrated_gradients) == pytest.approx(log_odds(logits) - log_odds(baseline), rel=0.03, abs=2e-3)
    assert explanation.probability == pytest.approx(float(torch.softmax(logits, dim=0)[4]), abs=1e-6)


def test_multilabel_explain_targets_the_top_label(models, capsys):
    record = explain_json(capsys, models["tags"], "this chip and the code app")
    assert record["target"] == record["label"] == "tech"
    assert record["labels"] == ["tech"]
    assert dict(zip(record["tokens"], record["influence"]))["chip"] > 0
    sports = explain_json(capsys, models["tags"], "this chip and the goal", "--class", "sports")
    assert sports["target"] == "sports"
    assert dict(zip(sports["tokens"], sports["influence"]))["goal"] > 0
    assert sports["probability"] == pytest.approx(sports["probabilities"]["sports"], abs=1e-6)


def test_binary_explain_keeps_its_keys_and_can_explain_the_other_class(models, capsys, tiny_model_dir):
    old_keys = {"text", "label", "probability", "empty", "truncated", "dropped_words", "tokens", "token_ids", "oov",
                "special", "trajectory", "influence", "integrated_gradients"}
    default = explain_json(capsys, models["spam"], "a free prize for the winner")
    assert set(default) == old_keys
    assert set(rnnsent.load(tiny_model_dir).explain("great fun").to_dict()) == old_keys
    ham = explain_json(capsys, models["spam"], "a free prize for the winner", "--class", "ham")
    assert ham["target"] == "ham" and ham["label"] == default["label"] == "spam"
    assert ham["probability"] == pytest.approx(1.0 - default["probability"], abs=1e-6)
    assert ham["trajectory"] == pytest.approx([1.0 - p for p in default["trajectory"]], abs=1e-6)
    assert ham["influence"][1:] == pytest.approx([-v for v in default["influence"][1:]], abs=1e-6)
    assert dict(zip(default["tokens"], default["influence"]))["prize"] > 0


def test_unknown_class_is_one_line_listing_the_names(models, capsys):
    model = rnnsent.load(models["topics"])
    with pytest.raises(ValueError, match=r"^unknown class 'music'; the model's labels are politics, sports, tech$"):
        model.explain("a goal", label="music")
    assert main(["predict", str(models["topics"]), "--explain", "a goal", "--class", "music"]) == 2
    error = capsys.readouterr().err
    assert error.strip() == "error: unknown class 'music'; the model's labels are politics, sports, tech"
    assert main(["predict", str(models["topics"]), "a goal", "--class", "sports"]) == 2
    assert "--class goes with --explain" in capsys.readouterr().err


@pytest.mark.parametrize("name, label", [("topics", None), ("topics", "tech"), ("spam", None), ("spam", "ham"),
                                         ("tags", None), ("stars", "3")])
def test_rendering_names_the_class_in_the_models_words(models, name, label):
    model = rnnsent.load(models[name])
    explanation = model.explain("the goal of this free app was a weak vote", label=label)
    for color in (False, True):
        text = render_text(explanation, color)
        assert "positive" not in text and "negative" not in text and "review" not in text
        assert f"probability of {explanation.target} after reading" in text and "\ntext: " in text
        if color:
            assert f"green: pushes towards {explanation.target}" in text
    plain = render_text(explanation, False)
    first = plain.splitlines()[0]
    if model.labels.task == "multilabel":
        assert first.startswith((",".join(explanation.labels) or "-") + "  ")
    else:
        assert first.startswith(explanation.label + "  ")
    if label is not None:
        assert f"explaining: {label} (probability {explanation.probability:.4f})" in plain
    if model.labels.task != "binary":
        assert "probabilities: " + ", ".join(model.labels.names[:1]) in plain


def test_plain_explain_on_the_command_line(models, capsys):
    assert main(["predict", str(models["topics"]), "--explain", "a goal in the match", "--class", "sports"]) == 0
    output = capsys.readouterr().out
    assert output.startswith("sports  ") and "explaining: sports" in output and "p after" in output


# ----------------------------------------------------------------------------- evaluate


def evaluate_json(capsys, model: Path, *arguments: str) -> dict:
    assert main(["evaluate", str(model), "--json", "--threads", "1", *arguments]) == 0
    return json.loads(capsys.readouterr().out)


def test_evaluate_multiclass_has_per_class_scores_and_a_named_matrix(models, capsys):
    data = models["topics"].parent / "topics.csv"
    metrics = evaluate_json(capsys, models["topics"], "--data", str(data))
    assert metrics["task"] == "multiclass" and metrics["labels"] == ["politics", "sports", "tech"]
    assert set(metrics["per_class"]) == {"politics", "sports", "tech"}
    assert all(set(score) == {"precision", "recall", "f1", "support"} for score in metrics["per_class"].values())
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == metrics["count"] == 60  # 20% of 300 held out
    assert metrics["accuracy"] > 0.9 and "source" in metrics


def test_evaluate_star_ratings_on_other_columns(models, capsys, tmp_path):
    rows = one_label_rows(STARS, 100, 9)
    other = tmp_path / "other.csv"
    write_csv(other, [(label, text) for text, label in rows], header=("stars", "review"))
    metrics = evaluate_json(capsys, models["stars"], "--data", str(other), "--text-field", "review",
                            "--label-field", "stars")
    assert metrics["labels"] == ["1", "2", "3", "4", "5"] and np.array(metrics["confusion_matrix"]).shape == (5, 5)
    assert {"mae", "mae_steps"} <= set(metrics) and 0.0 <= metrics["mae"] < 1.0
    # Data the model was not trained on is scored whole (it once scored a held-out fifth, 20).
    assert metrics["count"] == 100 and str(other) in metrics["source"]
    assert main(["evaluate", str(models["stars"]), "--data", str(other), "--text-field", "review",
                 "--label-field", "stars", "--threads", "1"]) == 0
    report = capsys.readouterr().out
    assert "Mean absolute error" in report
    assert f"Scored 100 texts of {other} (every row)" in report
    # Without the flags the model's own field names are looked for, and the message says which.
    assert main(["evaluate", str(models["stars"]), "--data", str(other), "--threads", "1"]) == 2
    error = capsys.readouterr().err
    assert "needs 'text' and 'stars' columns" in error


def test_evaluate_multilabel_and_binary_names(models, capsys):
    tags = evaluate_json(capsys, models["tags"], "--data", str(models["tags"].parent / "tags.jsonl"))
    assert tags["task"] == "multilabel" and set(tags["per_class"]) == {"politics", "sports", "tech"}
    assert len(tags["thresholds"]) == 3 and tags["micro_f1"] > 0.8
    spam = evaluate_json(capsys, models["spam"], "--data", str(models["spam"].parent / "spam.csv"))
    assert spam["labels"] == ["ham", "spam"] and set(spam["per_class"]) == {"ham", "spam"}


# ----------------------------------------------------------------------------- one-pass trajectories, K outputs

VARIANTS = {
    "simple-last-pre": {},
    "gru-maxmean-lengths-post": {"cell": "gru", "pooling": "maxmean", "use_lengths": True, "padding": "post",
                                 "truncating": "post"},
    "lstm-attention": {"cell": "lstm", "pooling": "attention"},
    "bigru-mean": {"cell": "gru", "bidirectional": True, "pooling": "mean"},
    "gru-joint-ngrams": {"cell": "gru", "ngram_buckets": 31, "ngram_order": 2},
}


def prefix_probabilities(predictor: Predictor, text: str) -> np.ndarray:
    """Every label's probability after each token ``(tokens, K)``, running the model once per
    prefix of the padded row (a bidirectional reader: once per prefix of the text)."""
    config = predictor.config
    ids, lengths = predictor.encoder.encode_batch([text])
    length = int(lengths[0])
    if config.model.bidirectional:
        words = text.split()
        return predictor.probabilities([" ".join(words[:count]) for count in range(length)])
    first = config.text.maxlen - length if config.text.padding == "pre" else 0
    rows = []
    with torch.no_grad():
        for column in range(first, first + length):
            prefix = torch.from_numpy(ids[:, :column + 1])
            prefix_lengths = torch.tensor([min(length, column + 1 - first)]) if config.model.use_lengths else None
            rows.append(predictor.to_probabilities(predictor.model(prefix, prefix_lengths)[0].numpy())[0])
    return np.array(rows)


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_k_output_trajectory_is_each_prefix_scored(name, task):
    space = LabelSpace(task, ("a", "b", "c", "d"))
    predictor = random_predictor(VARIANTS[name], space, temperature=1.7)
    words = ["w3", "w17", "nope", "w5", "w28", "w1"]
    text = " ".join(words)
    full = predictor.predict([text])[0]
    reference = prefix_probabilities(predictor, text)
    assert reference.shape == (len(words) + 1, 4)
    for index, target in enumerate(space.names):
        explanation = predictor.explain(text, label=target)
        assert explanation.tokens == ["<start>", *words] and explanation.target == target
        assert explanation.probabilities == pytest.approx(full.probabilities, abs=1e-6)
        assert explanation.probability == pytest.approx(full.probabilities[target], abs=1e-6)
        assert explanation.trajectory == pytest.approx(reference[:, index].tolist(), abs=1e-5)
    assert predictor.explain(text).target == full.label


def test_k_output_occlusion_is_the_class_probability_drop():
    space = LabelSpace("multiclass", ("a", "b", "c"))
    predictor = random_predictor({"cell": "gru", "pooling": "max"}, space)
    words = ["w12", "w3", "w25", "zzz", "w9"]
    explanation = predictor.explain(" ".join(words), label="b")
    full = predictor.probabilities([" ".join(words)])[0, 1]
    shortened = predictor.probabilities([" ".join(words[:i] + words[i + 1:]) for i in range(len(words))])[:, 1]
    assert explanation.influence[0] is None
    assert explanation.influence[1:] == pytest.approx((full - shortened).tolist(), abs=1e-5)


def test_a_multilabel_prediction_names_a_label_over_its_threshold(models):
    # The most probable label made unreachable by its threshold, every other one reachable:
    # the label named first (and its probability) must be one of those over, in predict and explain.
    model = rnnsent.load(models["tags"])
    text = "the senate vote and the goal match"
    probabilities = model.predict([text])[0].probabilities
    top = max(probabilities, key=probabilities.get)
    model.artifact.thresholds = [1.0 if name == top else 0.0 for name in probabilities]
    prediction = model.predict([text])[0]
    assert top not in prediction.labels and prediction.label in prediction.labels
    assert prediction.probability == prediction.probabilities[prediction.label]
    assert model.explain(text).label == prediction.label
