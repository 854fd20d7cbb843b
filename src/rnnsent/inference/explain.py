"""Why the model said what it said: per-token trajectory, occlusion and integrated gradients.

For one raw text, :func:`explain` returns

* the tokens exactly as the model read them (after truncation), with out-of-vocabulary
  words marked and a ``truncated`` flag;
* the trajectory: the positive-class probability after each token. A unidirectional
  network reads left to right, so the hidden state at step ``t`` already is the state
  after the prefix ending at ``t``; one forward pass gives every prefix, and pooled
  summaries over each prefix come from cumulative max / mean / softmax sums;
* occlusion influence: ``p(review) - p(review without word i)`` for every word, all the
  shortened reviews scored in one batch;
* optionally integrated gradients on the word embeddings (in logit units), against a
  baseline where every word's vector is zero.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rnnsent.labels import LABELS
from rnnsent.model.build import ngram_branch, recurrent_network
from rnnsent.model.scoring import batch_logits
from rnnsent.text.encoder import pad_rows
from rnnsent.text.vocabulary import OOV_ID, START_ID, START_TOKEN

if TYPE_CHECKING:
    from rnnsent.artifact.directory import Artifact


DEFAULT_IG_STEPS = 32


@dataclass
class Explanation:
    """Everything known about one prediction; list fields run parallel to ``tokens``."""

    text: str
    label: str
    probability: float  # the model's probability of the positive class for the whole text
    tokens: list[str]  # as the model read them; "<start>" is the start-of-review token
    token_ids: list[int]
    oov: list[bool]  # the word is not in the vocabulary, so the model saw the OOV id
    special: list[bool]  # the start token: not a word of the review
    trajectory: list[float]  # probability after reading each token
    influence: list[float | None]  # occlusion; None for the start token
    truncated: bool  # maxlen cut words from the review
    dropped_words: int  # how many words the cut removed
    integrated_gradients: list[float] | None = None  # logit units; None when not asked for

    @property
    def empty(self) -> bool:
        """The text had no words: the model read only the start token."""
        return not any(not special for special in self.special)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text, "label": self.label, "probability": self.probability, "empty": self.empty,
            "truncated": self.truncated, "dropped_words": self.dropped_words,
            "tokens": self.tokens, "token_ids": self.token_ids, "oov": self.oov, "special": self.special,
            "trajectory": self.trajectory, "influence": self.influence,
            "integrated_gradients": self.integrated_gradients,
        }


def explain(artifact: "Artifact", text: str, integrated_gradients: bool = False,
            steps: int = DEFAULT_IG_STEPS) -> Explanation:
    """Explain the prediction of a loaded model for one raw text (see the module docstring)."""
    if not isinstance(text, str):
        raise TypeError("explain takes one text (a string)")
    if steps < 1:
        raise ValueError("integrated gradients need at least 1 step")
    model, encoder, config = artifact.model, artifact.encoder, artifact.config
    tokens, truncated = encoder.kept_tokens(text)
    # Punctuation filters remove "<" and ">", so "<start>" in first place is always the start token.
    special = [position == 0 and token == START_TOKEN for position, token in enumerate(tokens)]
    row = [START_ID if is_start else encoder.vocabulary.id(token) for token, is_start in zip(tokens, special)]
    # kept_tokens and encode_batch must agree on what the model reads.
    assert row == _unpadded_row(encoder, text), "kept_tokens and encode_batch disagree"
    words_in_text = len(encoder.encode(text)) - 1
    dropped = words_in_text - sum(1 for is_start in special if not is_start)
    device = next(model.parameters()).device
    with torch.inference_mode():
        ids, lengths = _padded([row], config)
        full_logit = _logits(model, ids.to(device), lengths.to(device), config)[0].item()
        trajectory = _trajectory(model, row, config, device)
        influence = _occlusion(model, row, special, config, device, _sigmoid(full_logit))
    gradients = _integrated_gradients(model, row, special, config, device, steps) if integrated_gradients else None
    probability = _sigmoid(full_logit)
    return Explanation(
        text=text, label=LABELS[int(probability > 0.5)], probability=probability, tokens=tokens, token_ids=row,
        oov=[token_id == OOV_ID for token_id in row], special=special, trajectory=trajectory,
        influence=influence, truncated=truncated, dropped_words=dropped, integrated_gradients=gradients,
    )


def _unpadded_row(encoder, text: str) -> list[int]:
    ids, lengths = encoder.encode_batch([text])
    row = ids[0]
    kept = int(lengths[0])
    return [int(i) for i in (row[len(row) - kept:] if encoder.config.padding == "pre" else row[:kept])]


def _padded(rows: list[list[int]], config) -> tuple[torch.Tensor, torch.Tensor]:
    ids, lengths = pad_rows(rows, config.text.maxlen, config.text.padding)
    return torch.from_numpy(ids), torch.from_numpy(lengths)


def _logits(model, ids: torch.Tensor, lengths: torch.Tensor, config) -> torch.Tensor:
    """Logits ``(batch,)`` of padded rows ``(batch, time)`` with their true lengths ``(batch,)``."""
    return batch_logits(model, ids, lengths).float()


def _sigmoid(logit: float) -> float:
    return float(1.0 / (1.0 + math.exp(-logit))) if logit >= 0 else float(math.exp(logit) / (1.0 + math.exp(logit)))


def _trajectory(model, row: list[int], config, device) -> list[float]:
    """Probability after each token of ``row``, from one forward pass."""
    if config.model.bidirectional:
        # The backward reader's state at step t has seen the words after t, so no single
        # pass yields prefix verdicts; every prefix is scored instead, in one batched call.
        prefixes = [row[:end] for end in range(1, len(row) + 1)]
        ids, lengths = _padded(prefixes, config)
        return torch.sigmoid(_logits(model, ids.to(device), lengths.to(device), config)).cpu().tolist()
    ids, lengths = _padded([row], config)
    network, ngrams = recurrent_network(model), ngram_branch(model)
    states, _ = network.encode(ids.to(device), lengths.to(device))  # (1, time, state)
    # Prefixes start at column 0, which matches the model: without true lengths its pooling
    # reads the padding too, and with true lengths the padding is at the end.
    summaries = network.pooling.prefixes(states[0])  # (time, summary)
    # Token k of the row sits at column first + k: after the padding with "pre" padding.
    first = config.text.maxlen - len(row) if config.text.padding == "pre" else 0
    parts = {"recurrent": network.head_logits(summaries)[first:first + len(row)]}  # (tokens,)
    if ngrams is not None:
        # The n-gram branch does not see padding, so each prefix can be padded any way to batch them.
        prefixes, _ = pad_rows([row[:end] for end in range(1, len(row) + 1)], len(row), "post")
        parts["ngrams"] = ngrams(torch.from_numpy(prefixes).to(device))  # (tokens,)
    return torch.sigmoid(model.combine(parts).float()).cpu().tolist()


def _occlusion(model, row: list[int], special: list[bool], config, device, probability: float) -> list[float | None]:
    """``p(row) - p(row without token i)`` for each word, one batch for all words."""
    positions = [i for i, is_start in enumerate(special) if not is_start]
    influence: list[float | None] = [None] * len(row)
    if not positions:
        return influence
    variants = [row[:i] + row[i + 1:] for i in positions]
    ids, lengths = _padded(variants, config)
    without = torch.sigmoid(_logits(model, ids.to(device), lengths.to(device), config)).cpu().numpy()
    for position, value in zip(positions, without):
        influence[position] = float(probability - value)
    return influence


def _integrated_gradients(model, row: list[int], special: list[bool], config, device, steps: int) -> list[float]:
    """Integrated gradients of the logit with respect to each word's embedding.

    The baseline keeps padding and the start token as they are and sets every word's
    vector to zero; the path integral uses the midpoint rule over ``steps`` points, all in
    one batch. Attributions sum to ``logit(text) - logit(baseline)`` up to that rule's error.
    """
    ids, lengths = _padded([row], config)
    ids, lengths = ids.to(device), lengths.to(device)
    first = config.text.maxlen - len(row) if config.text.padding == "pre" else 0
    word_columns = torch.tensor([first + i for i, is_start in enumerate(special) if not is_start],
                                dtype=torch.long, device=device)
    word_mask = torch.zeros(ids.shape[1], 1, device=device)
    word_mask[word_columns] = 1.0
    alphas = (torch.arange(steps, device=device, dtype=torch.float32) + 0.5) / steps  # (steps,)
    embedding = recurrent_network(model).embedding
    with torch.no_grad():
        embedded = embedding(ids)[0]  # (time, embedding)
    # Each path point: words scaled by alpha, everything else unchanged.
    scale = 1.0 - word_mask + word_mask * alphas.view(steps, 1, 1)  # (steps, time, 1)
    path = (scale * embedded).detach().requires_grad_(True)  # (steps, time, embedding)

    def replace_embedding(module, inputs, output):
        return path

    # cuDNN cannot run an RNN backward in eval mode; the plain kernels can.
    cudnn_off = torch.backends.cudnn.flags(enabled=False) if ids.is_cuda else nullcontext()
    hook = embedding.register_forward_hook(replace_embedding)
    try:
        with torch.enable_grad(), cudnn_off:
            batch_ids = ids.expand(steps, -1)
            logits = _logits(model, batch_ids, lengths.expand(steps), config)  # (steps,)
            (gradients,) = torch.autograd.grad(logits.sum(), path)
    finally:
        hook.remove()
    average = gradients.mean(dim=0)  # (time, embedding)
    attributions = (average * embedded).sum(dim=-1)  # (time,)
    first_values = attributions[first:first + len(row)].detach().cpu().numpy().astype(np.float64)
    return [0.0 if is_start else float(value) for value, is_start in zip(first_values, special)]
