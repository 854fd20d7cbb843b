"""The plain PyTorch reference: the seed recipe written the way a PyTorch user would.

nn.Embedding + nn.RNN(relu) + nn.Linear, a DataLoader of batch 32 over a TensorDataset,
torch.optim.RMSprop, and the test set checked after every epoch, as the notebook did. It takes
the same padded id arrays as rnnsent so that only the training machinery differs.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class VanillaRNN(nn.Module):
    def __init__(self, vocab_size: int = 20000, embedding_dim: int = 50, hidden_size: int = 5) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = nn.RNN(embedding_dim, hidden_size, nonlinearity="relu", batch_first=True)
        self.fc = nn.Linear(hidden_size, 1)
        nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
        nn.init.normal_(self.rnn.weight_ih_l0, 0.0, 0.001)
        nn.init.eye_(self.rnn.weight_hh_l0)
        nn.init.zeros_(self.rnn.bias_ih_l0)
        nn.init.zeros_(self.rnn.bias_hh_l0)

    def forward(self, x):
        _, hidden = self.rnn(self.embedding(x))
        return self.fc(hidden[-1]).squeeze(-1)


class RecurrentReference(nn.Module):
    """A generic reference for the larger benchmark: embedding -> (Bi)LSTM/GRU -> max pool -> linear."""

    def __init__(self, cell: str, vocab_size: int, embedding_dim: int, hidden_size: int, bidirectional: bool) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](embedding_dim, hidden_size, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(hidden_size * (2 if bidirectional else 1), 1)

    def forward(self, x):
        states, _ = self.rnn(self.embedding(x))  # (batch, time, state)
        return self.fc(states.max(dim=1).values).squeeze(-1)


def train_reference(model: nn.Module, train_ids, train_labels, test_ids, test_labels, epochs: int, batch_size: int,
                    optimizer: torch.optim.Optimizer, seed: int = 0, max_batches: int | None = None, log=print) -> dict:
    """Train with a DataLoader and check the test set after each epoch; returns timings and accuracy."""
    torch.manual_seed(seed)
    loader = DataLoader(TensorDataset(torch.as_tensor(train_ids), torch.as_tensor(train_labels, dtype=torch.float32)),
                        batch_size=batch_size, shuffle=True)
    loss_function = nn.BCEWithLogitsLoss()
    epoch_seconds, accuracy = [], float("nan")
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        for index, (x, y) in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            optimizer.zero_grad()
            loss = loss_function(model(x), y)
            loss.backward()
            optimizer.step()
        model.eval()
        correct, total_loss = 0, 0.0
        with torch.no_grad():
            for start_row in range(0, len(test_ids), 1024):
                x = torch.as_tensor(test_ids[start_row:start_row + 1024])
                y = torch.as_tensor(test_labels[start_row:start_row + 1024], dtype=torch.float32)
                logits = model(x)
                total_loss += loss_function(logits, y).item() * len(y)
                correct += int(((logits > 0).float() == y).sum())
        accuracy = correct / len(test_ids)
        epoch_seconds.append(time.perf_counter() - start)
        log(f"  reference epoch {epoch + 1}/{epochs}: test_loss {total_loss / len(test_ids):.4f} "
            f"test_acc {accuracy:.4f} {epoch_seconds[-1]:.1f}s")
    return {"epoch_seconds": epoch_seconds, "accuracy": accuracy}


def seed_reference(train_ids: np.ndarray, train_labels: np.ndarray, test_ids: np.ndarray, test_labels: np.ndarray,
                   epochs: int = 10, seed: int = 0, log=print) -> dict:
    """The seed recipe: RMSprop(lr=1e-4), batch 32."""
    torch.manual_seed(seed)
    model = VanillaRNN()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4, alpha=0.9, eps=1e-7)
    return train_reference(model, train_ids, train_labels, test_ids, test_labels, epochs, 32, optimizer, seed, log=log)


def main() -> None:
    """``python benchmarks/reference.py``: the seed recipe as a whole process, as a PyTorch user runs it.

    It reads the same encoded, padded reviews as rnnsent (from rnnsent's cache, so neither side
    pays for tokenizing) and prints one JSON object: test accuracy and per-epoch seconds.
    """
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from rnnsent.config import TextConfig
    from rnnsent.data.cache import load_encoded
    from rnnsent.data.download import resolve_source

    config = TextConfig(maxlen=30)
    corpus = load_encoded(resolve_source(None), config, quiet=True)
    train_ids, _ = corpus.train.padded(config)
    test_ids, _ = corpus.test.padded(config)
    result = seed_reference(train_ids, corpus.train.labels, test_ids, corpus.test.labels,
                            log=lambda message: print(message, file=sys.stderr))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
