"""Raw text in, probabilities out, with the training preprocessing stored in the model."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from rnnsent.artifact.directory import Artifact, load_artifact
from rnnsent.data.batches import iter_text_chunks
from rnnsent.labels import LABELS
from rnnsent.model.scoring import predict_logits
from rnnsent.text.tokenize import tokenize

PREDICT_BATCH_SIZE = 4096
# Rows scored at once within a chunk of texts: small enough that, sorted by length, each
# batch is cut close to its own longest review instead of the chunk's.
SCORE_BATCH_SIZE = 256


@dataclass
class Prediction:
    label: str
    probability: float  # probability of the positive class
    empty: bool = False  # the text had no words: the model saw only the start token

    def to_dict(self) -> dict:
        return {"label": self.label, "probability": self.probability, "empty": self.empty}


class Predictor:
    """A loaded model that scores raw text: ``rnnsent.load(path).predict(["..."])``."""

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact
        self.model = artifact.model
        self.encoder = artifact.encoder
        self.config = artifact.config

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> "Predictor":
        return cls(load_artifact(path, device))

    def probabilities(self, texts: Sequence[str], batch_size: int = PREDICT_BATCH_SIZE) -> np.ndarray:
        """Positive-class probabilities ``(n,)`` float32 for raw texts."""
        return self._score(texts, batch_size)[0]

    def predict(self, texts: Sequence[str], batch_size: int = PREDICT_BATCH_SIZE) -> list[Prediction]:
        """Label and probability per text.

        A text with no words (empty, whitespace or punctuation only) is still scored: the
        model reads only the start token, which gives its prior. Such results are marked
        ``empty=True`` so a caller can treat them as "no opinion".
        """
        probabilities, lengths = self._score(texts, batch_size)
        # One kept token is the start token alone, unless truncation to maxlen 1 kept a word instead.
        return [Prediction(LABELS[int(p > 0.5)], float(p), empty=bool(n <= 1 and not tokenize(text)))
                for p, n, text in zip(probabilities, lengths, texts)]

    def _score(self, texts: Sequence[str], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities (n,) float32, kept token counts (n,) int64)``."""
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not a single string")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts must be str; text {index} is {type(text).__name__}")
        probabilities, lengths = [], []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                ids, kept = self.encoder.encode_batch(texts[start:start + batch_size])
                logits = predict_logits(self.model, ids, kept, min(batch_size, SCORE_BATCH_SIZE))
                probabilities.append(torch.sigmoid(torch.from_numpy(logits)).numpy())
                lengths.append(kept)
        if not probabilities:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        return np.concatenate(probabilities), np.concatenate(lengths)

    def explain(self, text: str, integrated_gradients: bool = False, steps: int = 32):
        """Tokens, probability after each token and per-word influence for one text.

        Returns an :class:`rnnsent.inference.explain.Explanation`; see that module for the methods.
        """
        from rnnsent.inference.explain import explain

        return explain(self.artifact, text, integrated_gradients=integrated_gradients, steps=steps)

    def predict_stream(self, texts: Iterable[str], batch_size: int = PREDICT_BATCH_SIZE) -> Iterator[Prediction]:
        """Score an iterable of any length in batches, yielding in input order (constant memory)."""
        for chunk in iter_text_chunks(iter(texts), batch_size):
            yield from self.predict(chunk, batch_size)
