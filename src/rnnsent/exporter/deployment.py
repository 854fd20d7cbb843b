"""What a deployment needs beside an exported graph: how raw text becomes its inputs, and what its outputs mean.

:func:`deployment_settings` describes a loaded model as one JSON object, written beside the ONNX
file as ``FILE.json``: the vocabulary, the tokenizer's rules, the text settings (``num_words``,
``index_from``, ``maxlen``, ``padding``, ``truncating``), the reserved ids, the task, the label
names and decision thresholds, and the graph's inputs and output. Following it gives the same
``(ids, lengths)`` as :meth:`rnnsent.text.encoder.TextEncoder.encode_batch`; the walk-through in
``docs/examples/onnx_deploy.py`` does it with the standard library and numpy alone, and the tests
hold it equal to the encoder.
"""

from __future__ import annotations

from typing import Any

from rnnsent import __version__
from rnnsent.artifact.directory import Artifact
from rnnsent.text.tokenize import HTML_LINE_BREAK, KERAS_FILTERS, PUNCTUATION_MARKS
from rnnsent.text.vocabulary import OOV_ID, PAD_ID, START_ID

SETTINGS_FORMAT = "rnnsent-onnx"
SETTINGS_VERSION = 1
INPUT_NAMES = ("ids", "lengths")
OUTPUT_NAME = "probabilities"
# Replacements made after lower-casing and before the punctuation filters (rnnsent.text.tokenize).
REPLACEMENTS = {HTML_LINE_BREAK: " "}


def deployment_settings(artifact: Artifact, onnx_name: str, opset: int) -> dict[str, Any]:
    """The JSON object written beside the graph ``onnx_name`` of ``artifact``'s model (see the module docstring)."""
    text, model, labels = artifact.config.text, artifact.config.model, artifact.labels
    outputs = labels.num_outputs
    if labels.task == "binary":
        meaning = f"column 0 is the probability of {labels.names[1]!r}; above 0.5 the label is {labels.names[1]!r}, else {labels.names[0]!r}"
    elif labels.task == "multiclass":
        meaning = "column i is the probability of labels[i] (a softmax: rows sum to 1); the label is the most probable one"
    else:
        meaning = "column i is the probability of labels[i] (one sigmoid each); a text has every label above its threshold"
    ngrams = None
    if model.ngram_buckets:
        ngrams = {"order": model.ngram_order, "buckets": model.ngram_buckets, "fit": model.ngram_fit,
                  "computed": "inside the graph, from the ids: nothing to compute beside them"}
    return {
        "format": SETTINGS_FORMAT,
        "format_version": SETTINGS_VERSION,
        "rnnsent_version": __version__,
        "onnx_file": onnx_name,
        "opset": opset,
        "inputs": {
            INPUT_NAMES[0]: {"type": "int64", "shape": ["batch", "time"],
                             "meaning": "each text's kept token ids, padded with 0 as text.padding says"},
            INPUT_NAMES[1]: {"type": "int64", "shape": ["batch"],
                             "meaning": "each row's count of kept (non-padding) tokens, at least 1"},
        },
        "output": {"name": OUTPUT_NAME, "type": "float32", "shape": ["batch", outputs], "meaning": meaning},
        # Without use_lengths the network reads the padding like any token, so rows must be padded
        # to exactly maxlen; with it, padding is never read and rows may be cut to the batch's
        # longest one.
        "reads_lengths": model.use_lengths,
        "time": "any width >= the longest row (rows padded at the end are never read past their length)"
        if model.use_lengths else f"exactly text.maxlen ({text.maxlen}): the model reads the padding",
        "task": labels.task,
        "labels": list(labels.names),
        "ordered": labels.ordered,
        "thresholds": artifact.thresholds if labels.task == "multilabel" else None,
        "temperature": artifact.temperature,
        "temperature_applied": "inside the graph: the output is already calibrated",
        "ngrams": ngrams,
        "text": {
            "steps": [
                "lower-case the text as Python's str.lower() does (full Unicode case mapping)",
                "replace each key of 'replace' by its value",
                "replace each character of 'filters' by a space, except those also in 'marks': each of "
                "those by itself with a space either side (a word of its own)",
                "split on runs of whitespace as Python's str.split() does (Unicode whitespace)",
                "look each word up in 'vocabulary': words[i] has id index_from + i; any other word is oov_id",
                "put start_id before the ids",
                "if more than maxlen ids: keep the last maxlen (truncating 'pre') or the first maxlen ('post')",
                "lengths = the number of ids kept; pad with pad_id to maxlen at the start ('pre') or the end ('post')",
            ],
            "lowercase": True,
            "replace": dict(REPLACEMENTS),
            "filters": KERAS_FILTERS,
            "marks": PUNCTUATION_MARKS if text.punctuation == "words" else "",
            "num_words": text.num_words,
            "index_from": artifact.vocabulary.index_from,
            "maxlen": text.maxlen,
            "padding": text.padding,
            "truncating": text.truncating,
            "pad_id": PAD_ID,
            "start_id": START_ID,
            "oov_id": OOV_ID,
        },
        "vocabulary": list(artifact.vocabulary.words),
    }
