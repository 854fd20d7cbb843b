"""Parameter counts and the Keras-style summary table."""

from __future__ import annotations

from torch import nn

from rnnsent.model.build import Classifier, ngram_branch, recurrent_network


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Learned numbers: all parameters, or only those gradient descent updates.

    A stacked n-gram branch's weights are learned too, by their own regression, but frozen
    while the network trains.
    """
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad or not trainable_only)


def summary_table(model: Classifier, maxlen: int) -> str:
    """A Keras-style table of any model :func:`~rnnsent.model.build.build_model` makes: layer, output shape, parameter count, total."""
    config = model.config
    network, ngrams = recurrent_network(model), ngram_branch(model)
    directions = 2 if config.bidirectional else 1
    recurrent_out = (None, maxlen, config.hidden_size * directions) if config.pooling != "last" else (None, config.hidden_size * directions)
    rows = [
        ("embedding (Embedding)", (None, maxlen, config.embedding_dim), network.embedding.weight.numel()),
        (f"rnn ({type(network.rnn).__name__}, {config.cell})", recurrent_out, sum(p.numel() for p in network.rnn.parameters())),
    ]
    if config.pooling != "last":
        pool_params = sum(p.numel() for p in network.pooling.parameters())
        rows.append((f"pooling ({config.pooling})", (None, network.head.in_features), pool_params))
    activation = "softmax" if network.task == "multiclass" else "sigmoid"
    outputs = (None, network.outputs)
    rows.append((f"head (Dense, {activation})", outputs, sum(p.numel() for p in network.head.parameters())))
    if ngrams is not None:
        rows.append((f"ngrams (bag of 1..{config.ngram_order}-grams)", outputs, ngrams.weight.weight.numel()))
    width = 34
    lines = [f"{'Layer (type)':<{width}}{'Output Shape':<22}{'Param #':>12}", "=" * (width + 34)]
    for name, shape, count in rows:
        lines.append(f"{name:<{width}}{str(shape):<22}{count:>12,}")
    total, trainable = count_parameters(model), count_parameters(model, trainable_only=True)
    lines += ["=" * (width + 34), f"Total params: {total:,}", f"Trainable params: {trainable:,}"]
    if total > trainable:
        lines.append(f"Fitted by the n-gram regression: {total - trainable:,}")
    else:
        lines.append("Non-trainable params: 0")
    return "\n".join(lines)
