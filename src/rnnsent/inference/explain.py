"""Why the model said what it said: per-token trajectory, occlusion and integrated gradients.

Every explanation is about one class, the *target*: the class a binary model's logit scores
(``positive`` for sentiment), the most probable class of a multi-class model, the label a
multi-label model names first (the most probable of those over their thresholds), or any
class asked for by name. For one raw text, :func:`explain` returns

* the tokens exactly as the model read them (after truncation), with out-of-vocabulary
  words marked and a ``truncated`` flag;
* the trajectory: the target's probability after each token. A unidirectional network
  reads left to right, so the hidden state at step ``t`` already is the state after the
  prefix ending at ``t``; one forward pass gives every prefix, and pooled summaries over
  each prefix come from cumulative max / mean / softmax sums;
* occlusion influence: ``p(review) - p(review without word i)`` for every word, all the
  shortened reviews scored in one batch, ``p`` being the target's probability;
* optionally integrated gradients on the word embeddings, in units of the target's
  log-odds (the logit for binary and multi-label models; for a softmax over K classes
  ``z_k - logsumexp(z_j, j != k)``, whose sigmoid is the class's probability), against a
  baseline where every word's vector is zero and, for a model with an n-gram branch, where
  the branch has no n-gram of the words: each word's attribution holds its part in both.

The calibrated temperature of the model divides its logits first, as in prediction.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from rnnsent.errors import UsageError
from rnnsent.labels import labels_over_thresholds
from rnnsent.model.build import ngram_branch, recurrent_network
from rnnsent.model.scoring import batch_logits
from rnnsent.text.encoder import kept_words, pad_rows
from rnnsent.text.tokenize import tokenize
from rnnsent.text.vocabulary import OOV_ID, START_ID, START_TOKEN

if TYPE_CHECKING:
    from rnnsent.artifact.directory import Artifact
    from rnnsent.labels import LabelSpace


DEFAULT_IG_STEPS = 32


@dataclass
class Explanation:
    """Everything known about one prediction; list fields run parallel to ``tokens``."""

    text: str
    label: str  # the predicted label (multi-label: the most probable one over its threshold, if any)
    probability: float  # the target's probability for the whole text
    tokens: list[str]  # as the model read them; "<start>" is the start-of-review token
    token_ids: list[int]
    oov: list[bool]  # the word is not in the vocabulary, so the model saw the OOV id
    special: list[bool]  # the start token: not a word of the review
    trajectory: list[float]  # the target's probability after reading each token
    influence: list[float | None]  # occlusion on the target's probability; None for the start token
    truncated: bool  # maxlen cut words from the review
    dropped_words: int  # how many words the cut removed
    integrated_gradients: list[float] | None = None  # target log-odds units; None when not asked for
    target: str | None = None  # the class explained (binary models: the scored class unless asked)
    task: str = "binary"
    probabilities: dict[str, float] | None = None  # K classes: every label's probability, in the model's order
    labels: list[str] | None = None  # multi-label: the labels over their thresholds
    names: tuple[str, ...] = ("negative", "positive")  # the model's labels, in its order

    @property
    def empty(self) -> bool:
        """The text had no words: the model read only the start token."""
        return not any(not special for special in self.special)

    @property
    def default_target(self) -> bool:
        """A binary model explained for the class its logit scores, as before targets could be chosen."""
        return self.task == "binary" and self.target == self.names[1]

    def to_dict(self) -> dict[str, Any]:
        result = {
            "text": self.text, "label": self.label, "probability": self.probability, "empty": self.empty,
            "truncated": self.truncated, "dropped_words": self.dropped_words,
            "tokens": self.tokens, "token_ids": self.token_ids, "oov": self.oov, "special": self.special,
            "trajectory": self.trajectory, "influence": self.influence,
            "integrated_gradients": self.integrated_gradients,
        }
        if not self.default_target:
            result["target"] = self.target
        if self.labels is not None:
            result["labels"] = self.labels
        if self.probabilities is not None:
            result["probabilities"] = self.probabilities
        return result


def explain(artifact: "Artifact", text: str, integrated_gradients: bool = False,
            steps: int = DEFAULT_IG_STEPS, label: str | int | None = None) -> Explanation:
    """Explain the prediction of a loaded model for one raw text (see the module docstring).

    ``label`` names the class to explain (default: see the module docstring); an integer
    stands for its name (star ratings: ``label=5`` is ``"5"``); a name the model does not
    know is a :class:`~rnnsent.errors.UsageError` listing its labels.
    """
    if not isinstance(text, str):
        raise TypeError("explain takes one text (a string)")
    if steps < 1:
        raise ValueError("integrated gradients need at least 1 step")
    space = artifact.labels
    if isinstance(label, int) and not isinstance(label, bool):
        label = str(label)  # label names are strings; integer labels are stored as their digits
    if label is not None and label not in space.names:
        raise UsageError(f"unknown class {label!r}; the model's labels are {', '.join(space.names)}")
    model, encoder, config = artifact.model, artifact.encoder, artifact.config
    # The same cut and lookup as the encoder's kept_ids, so the row is exactly what the model reads.
    words, start, truncated = kept_words(text, config.text.maxlen, config.text.truncating, config.text.punctuation)
    tokens = [START_TOKEN, *words] if start else list(words)
    special = [start and position == 0 for position in range(len(tokens))]
    row = ([START_ID] if start else []) + encoder.vocabulary.ids(words)
    dropped = len(tokenize(text, config.text.punctuation)) - len(words)
    device = next(model.parameters()).device
    with torch.inference_mode():
        ids, lengths = _padded([row], config)
        full_logits = _logits(model, ids.to(device), lengths.to(device), config)[0]  # () or (K,)
    temperature = artifact.temperature
    if space.task == "binary":
        full_logit = full_logits.item() / temperature
        label_index = int(_sigmoid(full_logit) > 0.5)
        predicted, probabilities, over = space.names[label_index], None, None
    else:
        scaled = full_logits.double() / temperature
        values = (torch.softmax(scaled, dim=-1) if space.task == "multiclass" else torch.sigmoid(scaled)).tolist()
        probabilities = {name: float(value) for name, value in zip(space.names, values)}
        predicted = space.names[int(np.argmax(values))]
        over = None
        if space.task == "multilabel":
            thresholds = artifact.thresholds or [0.5] * len(space.names)
            over, predicted = labels_over_thresholds(space.names, values, thresholds)
    target = label if label is not None else (space.names[1] if space.task == "binary" else predicted)
    score = _target_score(space, space.names.index(target), temperature)
    with torch.inference_mode():
        probability = _sigmoid(float(score(full_logits.unsqueeze(0))[0]))
        trajectory = _trajectory(model, row, config, device, score)
        influence = _occlusion(model, row, special, config, device, probability, score)
    gradients = _integrated_gradients(model, row, special, config, device, steps, score) if integrated_gradients else None
    return Explanation(
        text=text, label=predicted, probability=probability, tokens=tokens, token_ids=row,
        oov=[token_id == OOV_ID for token_id in row], special=special, trajectory=trajectory,
        influence=influence, truncated=truncated, dropped_words=dropped, integrated_gradients=gradients,
        target=target, task=space.task, probabilities=probabilities, labels=over, names=space.names,
    )


def _target_score(space: "LabelSpace", index: int, temperature: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The target's log-odds ``(batch,)`` from the model's logits ``(batch,)`` or ``(batch, K)``.

    Its sigmoid is the target's probability: for a binary model the logit (negated for the
    first class), for a multi-label one the class's logit, for a softmax ``z_k - logsumexp``
    of the other logits. Logits are divided by the calibrated temperature first.
    """
    if space.task == "binary":
        sign = 1.0 if index == 1 else -1.0

        def binary(logits: torch.Tensor) -> torch.Tensor:
            scaled = logits.float() / temperature
            return scaled if sign > 0 else -scaled

        return binary
    if space.task == "multilabel":
        return lambda logits: logits[:, index].double() / temperature
    others = [k for k in range(len(space.names)) if k != index]

    def multiclass(logits: torch.Tensor) -> torch.Tensor:
        scaled = logits.double() / temperature
        return scaled[:, index] - torch.logsumexp(scaled[:, others], dim=-1)

    return multiclass


def _padded(rows: list[list[int]], config) -> tuple[torch.Tensor, torch.Tensor]:
    ids, lengths = pad_rows(rows, config.text.maxlen, config.text.padding)
    return torch.from_numpy(ids), torch.from_numpy(lengths)


def _logits(model, ids: torch.Tensor, lengths: torch.Tensor, config) -> torch.Tensor:
    """Logits ``(batch,)`` of padded rows ``(batch, time)`` with their true lengths ``(batch,)``."""
    return batch_logits(model, ids, lengths).float()


def _sigmoid(logit: float) -> float:
    return float(1.0 / (1.0 + math.exp(-logit))) if logit >= 0 else float(math.exp(logit) / (1.0 + math.exp(logit)))


def _trajectory(model, row: list[int], config, device, score) -> list[float]:
    """The target's probability after each token of ``row``, from one forward pass.

    ``score`` turns logits ``(batch,)`` or ``(batch, K)`` into the target's log-odds ``(batch,)``.
    """
    if config.model.bidirectional:
        # The backward reader's state at step t has seen the words after t, so no single
        # pass yields prefix verdicts; every prefix is scored instead, in one batched call.
        prefixes = [row[:end] for end in range(1, len(row) + 1)]
        ids, lengths = _padded(prefixes, config)
        return torch.sigmoid(score(_logits(model, ids.to(device), lengths.to(device), config))).cpu().tolist()
    ids, lengths = _padded([row], config)
    network, ngrams = recurrent_network(model), ngram_branch(model)
    states, _ = network.encode(ids.to(device), lengths.to(device))  # (1, time, state)
    # Prefixes start at column 0, which matches the model: without true lengths its pooling
    # reads the padding too, and with true lengths the padding is at the end.
    summaries = network.pooling.prefixes(states[0])  # (time, summary)
    # Token k of the row sits at column first + k: after the padding with "pre" padding.
    first = config.text.maxlen - len(row) if config.text.padding == "pre" else 0
    parts = {"recurrent": network.head_logits(summaries)[first:first + len(row)]}  # (tokens,) or (tokens, K)
    if ngrams is not None:
        # The n-gram branch does not see padding, so each prefix can be padded any way to batch them.
        prefixes, _ = pad_rows([row[:end] for end in range(1, len(row) + 1)], len(row), "post")
        parts["ngrams"] = ngrams(torch.from_numpy(prefixes).to(device))  # (tokens,) or (tokens, K)
    return torch.sigmoid(score(model.combine(parts).float())).cpu().tolist()


def _occlusion(model, row: list[int], special: list[bool], config, device, probability: float,
               score) -> list[float | None]:
    """``p(row) - p(row without token i)`` of the target for each word, one batch for all words."""
    positions = [i for i, is_start in enumerate(special) if not is_start]
    influence: list[float | None] = [None] * len(row)
    if not positions:
        return influence
    variants = [row[:i] + row[i + 1:] for i in positions]
    ids, lengths = _padded(variants, config)
    without = torch.sigmoid(score(_logits(model, ids.to(device), lengths.to(device), config))).cpu().numpy()
    for position, value in zip(positions, without):
        influence[position] = float(probability - value)
    return influence


def _integrated_gradients(model, row: list[int], special: list[bool], config, device, steps: int,
                          score) -> list[float]:
    """Integrated gradients of the target's log-odds with respect to each word's embedding and,
    for a model with an n-gram branch, each word's share of that branch's output.

    The baseline keeps padding and the start token as they are, sets every word's vector to
    zero and, with an n-gram branch, gives that branch its output for the row without its
    words; the path scales both from there (the branch's output along the straight line, its
    words' shares in proportion: :meth:`~rnnsent.model.ngrams.NgramBranch.word_shares`). The
    path integral uses the midpoint rule over ``steps`` points, all in one batch. Attributions
    sum to ``score(text) - score(baseline)`` up to that rule's error.
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

    branch = ngram_branch(model)
    # cuDNN cannot run an RNN backward in eval mode; the plain kernels can.
    cudnn_off = torch.backends.cudnn.flags(enabled=False) if ids.is_cuda else nullcontext()
    with torch.enable_grad(), cudnn_off:
        # The network reads the path's word vectors instead of embedding the ids.
        recurrent = recurrent_network(model)(ids.expand(steps, -1), lengths.expand(steps), embedded=path)[0]
        if branch is None:
            scores = score(recurrent.float())  # (steps,)
            (gradients,) = torch.autograd.grad(scores.sum(), path)
        else:
            with torch.no_grad():
                shares = branch.word_shares(ids[0], word_mask[:, 0].bool())  # (time,) or (time, K)
                full = branch(ids)[0]  # () or (K,)
            base = full - shares.sum(dim=0)
            scale_shape = (steps,) + (1,) * full.dim()
            ngram_path = (base + alphas.view(scale_shape) * (full - base)).detach().requires_grad_(True)  # (steps[, K])
            scores = score(model.combine({"recurrent": recurrent, "ngrams": ngram_path}).float())  # (steps,)
            gradients, ngram_gradients = torch.autograd.grad(scores.sum(), (path, ngram_path))
    average = gradients.mean(dim=0)  # (time, embedding)
    attributions = (average * embedded).sum(dim=-1)  # (time,)
    if branch is not None:
        # Each word's share of the branch's output, times the mean gradient along the path.
        ngram_average = ngram_gradients.mean(dim=0)  # () or (K,)
        attributions = attributions + (shares * ngram_average if full.dim() == 0 else shares @ ngram_average)
    first_values = attributions[first:first + len(row)].detach().cpu().numpy().astype(np.float64)
    return [0.0 if is_start else float(value) for value, is_start in zip(first_values, special)]
