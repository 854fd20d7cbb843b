"""Score raw texts with an exported rnnsent graph, without rnnsent or torch: numpy and onnxruntime only.

    rnnsent export runs/seed --out runs/seed.onnx
    python docs/examples/onnx_deploy.py runs/seed.onnx "A wonderful film." "Dull, dull, dull."

Everything a deployment computes is here: the tokenizer and the padding that
``runs/seed.onnx.json`` describes (``encode``), the graph's two inputs, and the reading of its
output (``labels_of``). The test suite holds ``encode`` equal to rnnsent's own encoder and the
probabilities equal to ``rnnsent.load(...).probabilities``.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def load_settings(onnx_path: str) -> dict:
    """The deployment settings written beside the graph (``FILE.json``)."""
    with open(onnx_path + ".json", encoding="utf-8") as handle:
        return json.load(handle)


def tokenize(text: str, settings: dict) -> list[str]:
    """Lower-case, make the replacements, turn each filter character into a space (each mark
    into a word of its own), split on whitespace."""
    rules = settings["text"]
    text = text.lower() if rules["lowercase"] else text
    for old, new in rules["replace"].items():
        text = text.replace(old, new)
    table = {ord(character): " " for character in rules["filters"]}
    table.update({ord(character): f" {character} " for character in rules.get("marks", "")})
    return text.translate(table).split()


def encode(texts: list[str], settings: dict) -> tuple[np.ndarray, np.ndarray]:
    """The graph's inputs: ``ids (n, maxlen)`` and ``lengths (n,)``, both int64."""
    rules = settings["text"]
    index = {word: rules["index_from"] + i for i, word in enumerate(settings["vocabulary"])}
    maxlen = rules["maxlen"]
    ids = np.full((len(texts), maxlen), rules["pad_id"], dtype=np.int64)
    lengths = np.zeros(len(texts), dtype=np.int64)
    for row, text in enumerate(texts):
        tokens = [rules["start_id"], *(index.get(word, rules["oov_id"]) for word in tokenize(text, settings))]
        if len(tokens) > maxlen:
            tokens = tokens[-maxlen:] if rules["truncating"] == "pre" else tokens[:maxlen]
        lengths[row] = len(tokens)
        if rules["padding"] == "pre":
            ids[row, maxlen - len(tokens):] = tokens
        else:
            ids[row, :len(tokens)] = tokens
    return ids, lengths


def labels_of(probabilities: np.ndarray, settings: dict) -> list[list[str]]:
    """Each text's labels: one for binary and multiclass models, those over their thresholds for multilabel ones."""
    names = settings["labels"]
    if settings["task"] == "binary":
        return [[names[int(p > 0.5)]] for p in probabilities[:, 0]]
    if settings["task"] == "multiclass":
        return [[names[int(np.argmax(row))]] for row in probabilities]
    thresholds = settings["thresholds"] or [0.5] * len(names)
    return [[name for name, p, t in zip(names, row, thresholds) if p > t] for row in probabilities]


def score(onnx_path: str, texts: list[str]) -> np.ndarray:
    """Probabilities ``(n, K)`` float32 of raw texts."""
    import onnxruntime

    settings = load_settings(onnx_path)
    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    ids, lengths = encode(texts, settings)
    return session.run(["probabilities"], {"ids": ids, "lengths": lengths})[0]


if __name__ == "__main__":
    path, texts = sys.argv[1], sys.argv[2:]
    probabilities = score(path, texts)
    for text, row, chosen in zip(texts, probabilities, labels_of(probabilities, load_settings(path))):
        print(",".join(chosen) or "-", " ".join(f"{p:.4f}" for p in row), text, sep="\t")
