"""Next-word language models over a classifier's embedding and recurrent encoder.

:class:`LanguageModel` holds what a :class:`~rnnsent.model.recurrent.RecurrentClassifier`
would pretrain: its word embedding and, per reading direction, a one-direction recurrent
stack of the classifier's cell and sizes. Direction 0 (``forward``) reads reviews left to right
and predicts each next token; direction 1 (``backward``, bidirectional recipes only) reads
them reversed and predicts each previous token, so its weights learn to read right to left as
the classifier's reverse direction does. Both share the embedding and one adaptive softmax
(``torch.nn.AdaptiveLogSoftmaxWithLoss``): ids are ranked by frequency, so the head scores
the frequent words at full width and the rare ones in narrower tail clusters, which keeps a
20,000-word softmax cheap on a CPU.

:func:`copy_from_classifier` and :func:`copy_into_classifier` map the weights between the two.
In a bidirectional classifier, layers above the first read both directions' outputs
(``(batch, time, 2 * hidden)``); a one-direction language model cannot read the other
direction's states (they have seen the future), so its layer ``l > 0`` input weights are the
classifier's columns of its own direction only, and the other direction's columns keep the
classifier's initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnsent.config import ModelConfig
from rnnsent.model.recurrent import CELLS, RecurrentClassifier
from rnnsent.text.vocabulary import PAD_ID

DIRECTION_NAMES = ("forward", "backward")
# Boundaries of the adaptive softmax's clusters by id (ids are ranked by frequency): the head
# holds the ids below the first boundary, each tail cluster the next range. On IMDB's 20,000
# words the head's 250 ids are 64% of the tokens, the clusters up to 2,000 and 8,000 another 21%
# and 11%, and the last 12,000 ids 4%. Narrow ranges at the rare end keep the softmax cheap: its
# forward and backward pass over 3,200 IMDB tokens took 2.3 times longer with the boundaries
# (500, 4000) and projections a quarter as wide.
CUTOFFS = (250, 2_000, 8_000, 50_000, 200_000)
TAIL_SHRINK = 2.0  # each tail cluster's projection is this many times narrower than the one before

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def adaptive_cutoffs(vocab_size: int) -> list[int]:
    """The adaptive softmax's cluster boundaries for ``vocab_size`` ids (at least one)."""
    cutoffs = [cutoff for cutoff in CUTOFFS if cutoff < vocab_size - 1]
    return cutoffs or [max(1, vocab_size // 2)]


class LanguageModel(nn.Module):
    """Next-word models over id streams ``(batch, time)``: one per direction the recipe reads."""

    def __init__(self, config: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.config, self.vocab_size = config, vocab_size
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim)
        cell_options = {"nonlinearity": config.nonlinearity} if config.cell == "simple" else {}
        directions = 2 if config.bidirectional else 1
        # One one-direction stack per direction, in DIRECTION_NAMES order.
        self.cells = nn.ModuleList([
            CELLS[config.cell](input_size=config.embedding_dim, hidden_size=config.hidden_size,
                               num_layers=config.num_layers, batch_first=True, **cell_options)
            for _ in range(directions)
        ])
        self.softmax = nn.AdaptiveLogSoftmaxWithLoss(config.hidden_size, vocab_size, adaptive_cutoffs(vocab_size),
                                                     div_value=TAIL_SHRINK)

    @property
    def direction_names(self) -> list[str]:
        """``["forward"]``, or ``["forward", "backward"]`` for a bidirectional recipe."""
        return list(DIRECTION_NAMES[:len(self.cells)])

    def zero_state(self, direction: str, batch: int) -> State:
        """The initial recurrent state of one direction for ``batch`` streams: zeros
        ``(layers, batch, hidden)``, a pair of them (h, c) for the LSTM."""
        weight = self.embedding.weight
        zeros = weight.new_zeros(self.config.num_layers, batch, self.config.hidden_size)
        return (zeros, zeros.clone()) if self.config.cell == "lstm" else zeros

    def forward(self, direction: str, ids: torch.Tensor, targets: torch.Tensor,
                state: State) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Run one direction over ``ids (batch, time)`` from ``state``; score ``targets (batch,
        time)``, where the padding id marks positions with nothing to predict.

        Returns ``(mean negative log-likelihood (), summed negative log-likelihood (), final
        state)`` over the scored positions; the state is not detached (the caller decides where
        back-propagation stops).
        """
        embedded = self.embedding(ids)  # (batch, time, embedding)
        cell = self.cells[DIRECTION_NAMES.index(direction)]
        states, final = cell(embedded, state)  # (batch, time, hidden)
        keep = (targets != PAD_ID).reshape(-1)  # (batch * time,)
        if not bool(keep.any()):
            nothing = states.sum() * 0.0
            return nothing, nothing, final
        scored = self.softmax(states.reshape(-1, states.shape[-1])[keep], targets.reshape(-1)[keep])
        return scored.loss, -scored.output.sum(), final


def reset_state(state: State, starts: torch.Tensor) -> State:
    """The state with the rows where ``starts (batch,)`` is true set to zero (a review begins there)."""
    keep = (~starts).to(state[0].dtype if isinstance(state, tuple) else state.dtype)[None, :, None]  # (1, batch, 1)
    if isinstance(state, tuple):
        return tuple(part * keep for part in state)
    return state * keep


def detach_state(state: State) -> State:
    """The state as values only: back-propagation through the next segment stops at it."""
    if isinstance(state, tuple):
        return tuple(part.detach() for part in state)
    return state.detach()


def _pairs(network: RecurrentClassifier, model: LanguageModel):
    """``(classifier parameter, language-model parameter, input columns or None)`` for every
    recurrent weight the two share; columns are the classifier's slice the language model holds."""
    hidden = network.config.hidden_size
    bidirectional = network.config.bidirectional
    for index, cell in enumerate(model.cells):
        suffix = "_reverse" if index else ""
        for own_name, parameter in cell.named_parameters():
            target = getattr(network.rnn, own_name + suffix)
            layer = int(own_name.rsplit("_l", 1)[1])
            columns = None
            if bidirectional and layer > 0 and own_name.startswith("weight_ih"):
                columns = slice(index * hidden, (index + 1) * hidden)
            yield target, parameter, columns


@torch.no_grad()
def copy_from_classifier(model: LanguageModel, network: RecurrentClassifier) -> None:
    """Start the language model from the classifier's embedding and recurrent weights."""
    model.embedding.weight.copy_(network.embedding.weight)
    for target, parameter, columns in _pairs(network, model):
        parameter.copy_(target if columns is None else target[:, columns])


@torch.no_grad()
def copy_into_classifier(network: RecurrentClassifier, model: LanguageModel) -> list[str]:
    """Put the language model's embedding and recurrent weights into the classifier; returns the
    names of the classifier's parameters it wrote (whole or, for upper bidirectional layers, in part)."""
    network.embedding.weight.copy_(model.embedding.weight)
    written = ["embedding.weight"]
    names = {id(parameter): name for name, parameter in network.rnn.named_parameters()}
    for target, parameter, columns in _pairs(network, model):
        if columns is None:
            target.copy_(parameter)
        else:
            target[:, columns] = parameter
        written.append("rnn." + names[id(target)])
    return written
