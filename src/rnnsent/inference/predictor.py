"""Raw text in, probabilities out, with the training preprocessing stored in the model."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from rnnsent.artifact.directory import Artifact, load_artifact
from rnnsent.data.batches import iter_text_chunks
from rnnsent.errors import UsageError
from rnnsent.labels import labels_over_thresholds
from rnnsent.model.scoring import predict_logits
from rnnsent.text.tokenize import tokenize
from rnnsent.threads import scoring_threads

PREDICT_BATCH_SIZE = 4096
# Rows scored at once within a chunk of texts: small enough that, sorted by length, each
# batch is cut close to its own longest review instead of the chunk's, and that a step's
# buffers stay in a core's cache; large enough that a step's matrix product is efficient.
SCORE_BATCH_SIZE = 256


@dataclass
class Prediction:
    """One text's prediction.

    Binary models: ``label`` and ``probability``, the probability of the second label (the
    positive one for sentiment). Multi-class: the most probable label and its probability,
    with every label's in ``probabilities``. Multi-label: ``labels``, those over their
    thresholds (possibly none), ``label`` the most probable of those (of all labels when none
    is over), and ``probabilities``.
    """

    label: str
    probability: float
    empty: bool = False  # the text had no words: the model saw only the start token
    probabilities: dict[str, float] | None = None
    labels: list[str] | None = None

    def to_dict(self) -> dict:
        result = {"label": self.label, "probability": self.probability, "empty": self.empty}
        if self.labels is not None:
            result["labels"] = self.labels
        if self.probabilities is not None:
            result["probabilities"] = self.probabilities
        return result


class Predictor:
    """A loaded model that scores raw text: ``rnnsent.load(path).predict(["..."])``."""

    def __init__(self, artifact: Artifact, threads: int | None = None) -> None:
        self.artifact = artifact
        # CPU threads while scoring: None, the free cores (see rnnsent.threads.scoring_threads).
        self.threads = threads
        self.model = artifact.model
        self.encoder = artifact.encoder
        self.labels = artifact.labels
        self.config = artifact.config

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu", quantize: bool = False,
             threads: int | None = None) -> "Predictor":
        return cls(load_artifact(path, device, quantize=quantize), threads=threads)

    def probabilities(self, texts: Sequence[str], batch_size: int = PREDICT_BATCH_SIZE) -> np.ndarray:
        """Probabilities for raw texts: of the second (positive) label ``(n,)`` for binary models,
        of every label ``(n, K)`` otherwise (float32)."""
        return self._score(texts, batch_size)[0]

    def predict(self, texts: Sequence[str], batch_size: int = PREDICT_BATCH_SIZE) -> list[Prediction]:
        """Label and probability per text.

        A text with no words (empty, whitespace or punctuation only) is still scored: the
        model reads only the start token, which gives its prior. Such results are marked
        ``empty=True`` so a caller can treat them as "no opinion".
        """
        probabilities, lengths = self._score(texts, batch_size)
        # One kept token is the start token alone, unless truncation to maxlen 1 kept a word instead.
        empty = [bool(n <= 1 and not tokenize(text, self.config.text.punctuation)) for n, text in zip(lengths, texts)]
        names = self.labels.names
        if self.labels.task == "binary":
            return [Prediction(names[int(p > 0.5)], float(p), e) for p, e in zip(probabilities, empty)]
        predictions = []
        thresholds = self.artifact.thresholds or [0.5] * len(names)
        for row, e in zip(probabilities, empty):
            chosen, label = None, names[int(np.argmax(row))]
            if self.labels.task == "multilabel":
                chosen, label = labels_over_thresholds(names, row.tolist(), thresholds)
            by_name = {name: float(p) for name, p in zip(names, row)}
            predictions.append(Prediction(label, by_name[label], e, by_name, chosen))
        return predictions

    def to_probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities from the model's logits, divided by its calibrated temperature: sigmoids
        (binary ``(n,)``, multilabel ``(n, K)``) or a softmax over the K labels."""
        scaled = torch.from_numpy(np.asarray(logits, dtype=np.float32)) / self.artifact.temperature
        if self.labels.task == "multiclass":
            return torch.softmax(scaled, dim=-1).numpy()
        return torch.sigmoid(scaled).numpy()

    def _score(self, texts: Sequence[str], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities (n,) or (n, K) float32, kept token counts (n,) int64)``."""
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not a single string")
        if not (hasattr(texts, "__len__") and hasattr(texts, "__getitem__")):  # a list, a tuple, an array, a Series
            raise TypeError(f"texts must be a list (or another sequence), not a {type(texts).__name__}; "
                            "for an iterator of texts use predict_stream, which reads it in batches")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch_size must be a whole number of at least 1; got {batch_size!r}")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts must be str; text {index} is {type(text).__name__}")
        probabilities, lengths = [], []
        with torch.inference_mode(), scoring_threads(self.threads):
            for start in range(0, len(texts), batch_size):
                ids, kept = self.encoder.encode_batch(texts[start:start + batch_size])
                logits = predict_logits(self.model, ids, kept, min(batch_size, SCORE_BATCH_SIZE), fast=True)
                probabilities.append(self.to_probabilities(logits))
                lengths.append(kept)
        if not probabilities:
            shape = (0,) if self.labels.task == "binary" else (0, len(self.labels.names))
            return np.zeros(shape, dtype=np.float32), np.zeros(0, dtype=np.int64)
        return np.concatenate(probabilities), np.concatenate(lengths)

    def explain(self, text: str, integrated_gradients: bool = False, steps: int = 32, label: str | None = None):
        """Tokens, a class's probability after each token and per-word influence for one text.

        The class explained is ``label`` when given (one of ``self.labels.names``), else the one
        a binary model's logit scores or the most probable one. Returns an
        :class:`rnnsent.inference.explain.Explanation`; see that module for the methods.
        """
        from rnnsent.inference.explain import explain

        return explain(self.artifact, text, integrated_gradients=integrated_gradients, steps=steps, label=label)

    def predict_stream(self, texts: Iterable[str], batch_size: int = PREDICT_BATCH_SIZE) -> Iterator[Prediction]:
        """Score an iterable of any length in batches, yielding in input order (constant memory)."""
        for chunk in iter_text_chunks(iter(texts), batch_size):
            yield from self.predict(chunk, batch_size)
