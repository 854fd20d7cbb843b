"""Label spaces: inferred from raw training labels, names kept and sorted, targets encoded, errors named."""

from __future__ import annotations

import numpy as np
import pytest

from rnnsent.errors import DataError
from rnnsent.labels import SENTIMENT, LabelSpace, label_name, label_set, labels_over_thresholds


@pytest.mark.parametrize("values", [
    [0, 1, 1, 0], ["neg", "pos"], ["negative", "Positive"], [False, True], ["0", "1.0"], [0.0, 1.0], ["false", "TRUE"],
])
def test_sentiment_spellings_stay_negative_and_positive(values):
    space = LabelSpace.infer(values)
    assert (space.task, space.names, space.num_outputs) == ("binary", SENTIMENT, 1)
    assert space.is_sentiment
    assert space.encode(values).tolist() == [float(label_name(v).lower() in ("1", "pos", "positive", "true"))
                                             for v in values]


def test_two_other_names_are_kept_sorted_and_the_second_is_scored():
    space = LabelSpace.infer(["spam", "ham", "ham"])
    assert (space.task, space.names) == ("binary", ("ham", "spam"))
    assert space.encode(["spam", "ham"]).tolist() == [1.0, 0.0]
    assert not space.is_sentiment


def test_three_names_are_multiclass_sorted_alphabetically():
    space = LabelSpace.infer(["neutral", "positive", "negative", "neutral"])
    assert (space.task, space.names, space.ordered) == ("multiclass", ("negative", "neutral", "positive"), False)
    assert space.encode(["positive", "negative"]).tolist() == [2, 0]
    assert space.encode(["positive"]).dtype == np.int64


def test_integer_labels_are_ordered_and_sorted_numerically():
    space = LabelSpace.infer([10, 2, 1, 7, "3", 4.0])
    assert space.names == ("1", "2", "3", "4", "7", "10")
    assert space.ordered and space.task == "multiclass" and space.num_outputs == 6


def test_lists_make_a_multilabel_space_with_multi_hot_targets():
    space = LabelSpace.infer([["drama", "comedy"], [], ["horror"], ["comedy"]])
    assert (space.task, space.names) == ("multilabel", ("comedy", "drama", "horror"))
    assert space.encode([["drama"], [], ["horror", "comedy"]]).tolist() == [[0, 1, 0], [0, 0, 0], [1, 0, 1]]


def test_a_separator_splits_csv_labels():
    assert label_set("drama|comedy||drama", separator="|") == ("comedy", "drama")
    space = LabelSpace.infer(["drama|comedy", "horror"], separator="|")
    assert space.task == "multilabel" and space.names == ("comedy", "drama", "horror")


def test_task_can_be_forced():
    assert LabelSpace.infer(["a", "b"], task="multiclass").task == "multiclass"
    assert LabelSpace.infer(["a", "b"], task="multilabel").encode(["b"]).tolist() == [[0, 1]]


@pytest.mark.parametrize("values, task, message", [
    (["pos", "pos"], "auto", "only one label (pos)"),
    (["a", "b", "c"], "binary", "needs exactly two labels"),
    (["a", ""], "auto", "empty label"),
    ([[], []], "multilabel", "only one label"),
    ([{"x": 1}, "a"], "auto", "must be a string or a number"),
])
def test_bad_label_sets_are_refused_with_one_line(values, task, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LabelSpace.infer(values, task=task, where="data.csv")


def test_a_label_seen_only_in_test_names_its_place():
    space = LabelSpace.infer(["a", "b", "c"])
    with pytest.raises(DataError, match="data.csv:7: label 'd' is not one of the training labels"):
        space.encode(["a", "d"], where=["data.csv:6", "data.csv:7"])


def test_labels_joined_in_one_cell_get_the_separator_to_use():
    tags = LabelSpace.infer([["politics"], ["sports", "tech"]])
    with pytest.raises(DataError, match=r"tags.csv:4: label 'tech\|politics' is not one of the training labels "
                                        r"\(politics, sports, tech\); it looks like several labels joined by '\|': "
                                        r"read it with --label-separator '\|'$"):
        tags.encode([["tech|politics"]], where="tags.csv:4")
    with pytest.raises(DataError, match="every label must occur in the training data$"):
        tags.encode([["tech|music"]], where="tags.csv:4")


@pytest.mark.parametrize("space", [
    LabelSpace.infer([0, 1]), LabelSpace.infer(["ham", "spam"]), LabelSpace.infer(["1", "2", "10"]),
    LabelSpace.infer([["x"], ["y", "z"]]),
])
def test_round_trip_through_a_dict(space):
    again = LabelSpace.from_dict(space.to_dict())
    assert again == space
    assert again.names == space.names and again.task == space.task and again.ordered == space.ordered


@pytest.mark.parametrize("probabilities, thresholds, chosen, first", [
    # The most probable label is under its high threshold while a less probable one is over a
    # low one: the label named first is the one over, with its own probability.
    ([0.4704, 0.2669, 0.1658], [0.924, 0.2, 0.5], ["python"], "python"),
    ([0.9, 0.7, 0.1], [0.5, 0.5, 0.5], ["db", "python"], "db"),
    ([0.6, 0.8, 0.1], [0.7, 0.5, 0.05], ["python", "web"], "python"),
    # None over: the most probable of all, the first of equals.
    ([0.3, 0.4, 0.4], [0.5, 0.5, 0.5], [], "python"),
])
def test_a_multilabel_decision_names_a_label_over_its_threshold(probabilities, thresholds, chosen, first):
    assert labels_over_thresholds(["db", "python", "web"], probabilities, thresholds) == (chosen, first)


def test_names_differing_only_in_case_are_found():
    from rnnsent.labels import names_differing_in_case

    assert names_differing_in_case(["Spam", "ham", "spam", "HAM", "eggs"]) == [("Spam", "spam"), ("ham", "HAM")]
    assert names_differing_in_case(["negative", "positive"]) == []


@pytest.mark.parametrize("names, separator", [
    (["db", "db|python", "python", "python|web", "web"], "|"),
    (["a;b", "b;c", "c"], ";"),
    (["db", "python", "db|python"], "|"),
    (["sci-fi", "drama", "comedy"], None),  # a hyphen is part of a name
    (["yes, sir", "no"], None),  # one name with a comma is a name
    (["positive", "negative"], None),
])
def test_class_names_that_join_several_labels_are_recognised(names, separator):
    from rnnsent.labels import joined_label_separator

    assert joined_label_separator(names) == separator
