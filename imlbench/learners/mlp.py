"""`mlp`: a multilayer perceptron with one embedding per categorical field of the table view.

A definition row and a question row about the same variable share the variable's embedding, which
is where implicit meta-learning can happen: stage 1 teaches the network how much a tag-1 (or
tag-2) definition should move that embedding in a direction the questions read.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn

from imlbench.protocol import Learner, TableData, TableQueries


class TableNet(nn.Module):
    def __init__(self, cardinalities: list[int], n_numeric: int, n_classes: int, embedding_dim: int, hidden: int):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_dim) for c in cardinalities)
        self.numeric = nn.Linear(n_numeric, embedding_dim) if n_numeric else None
        width = embedding_dim * (len(cardinalities) + (1 if n_numeric else 0))
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, codes: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        parts = [emb(codes[:, i]) for i, emb in enumerate(self.embeddings)]
        if self.numeric is not None:
            parts.append(self.numeric(numeric))
        return self.head(torch.cat(parts, dim=1))


def split_table(X: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Categorical codes, numeric block, and each categorical column's number of categories."""
    categorical = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
    numeric = [c for c in X.columns if c not in categorical]
    codes = np.stack([X[c].cat.codes.to_numpy(np.int64) for c in categorical], axis=1) if categorical \
        else np.zeros((len(X), 0), np.int64)
    values = X[numeric].to_numpy(np.float32, copy=True) if numeric else np.zeros((len(X), 0), np.float32)
    return torch.from_numpy(codes), torch.from_numpy(values), [len(X[c].cat.categories) for c in categorical]


class MLP(Learner):
    views = ("table",)
    capabilities = frozenset({"continue_training"})

    def __init__(self, embedding_dim: int = 64, hidden: int = 256, epochs: int = 50, stage2_epochs: int = 100,
                 batch_size: int = 64, lr: float = 1e-3, stage2_lr: float = 3e-4, n_threads: int = 1,
                 random_state: int = 0):
        self.embedding_dim = embedding_dim
        self.hidden = hidden
        self.epochs = epochs
        self.stage2_epochs = stage2_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.stage2_lr = stage2_lr
        self.n_threads = n_threads
        self.random_state = random_state

    def validate(self) -> None:
        self.require_at_least_one("embedding_dim", "hidden", "epochs", "stage2_epochs", "batch_size", "n_threads")
        if self.lr <= 0 or self.stage2_lr <= 0:
            raise ValueError("learning rates must be positive")

    def fit(self, data: TableData) -> Iterator[None]:
        torch.set_num_threads(self.n_threads)
        self.label_space_ = data.label_space
        codes, numeric, cardinalities = split_table(data.X)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            self.model_ = TableNet(cardinalities, numeric.shape[1], len(data.label_space),
                                   self.embedding_dim, self.hidden)
        self.optimizer_ = torch.optim.Adam(self.model_.parameters(), lr=self.lr)
        self.rng_ = np.random.default_rng(self.random_state)
        yield from self._train(data, self.epochs)

    def continue_fit(self, data: TableData) -> Iterator[None]:
        if not hasattr(self, "model_"):
            raise RuntimeError("continue_fit called before fit")
        for group in self.optimizer_.param_groups:
            group["lr"] = self.stage2_lr
        yield from self._train(data, self.stage2_epochs)

    def _train(self, data: TableData, epochs: int) -> Iterator[None]:
        codes, numeric, _ = split_table(data.X)
        labels = torch.from_numpy(np.searchsorted(self.label_space_, data.y))
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(epochs):
            self.model_.train()
            order = torch.from_numpy(self.rng_.permutation(len(labels)))
            for start in range(0, len(order), self.batch_size):
                batch = order[start: start + self.batch_size]
                loss = loss_fn(self.model_(codes[batch], numeric[batch]), labels[batch])
                self.optimizer_.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer_.step()
            yield

    @torch.no_grad()
    def predict(self, queries: TableQueries) -> np.ndarray:
        codes, numeric, _ = split_table(queries.X)
        self.model_.eval()
        return self.label_space_[self.model_(codes, numeric).argmax(dim=1).numpy()]
