"""`mlp`: a multilayer perceptron with one embedding per categorical field of the table view.

A definition row and a question row about the same variable share the variable's embedding, which
is where implicit meta-learning can happen: stage 1 teaches the network how much a tag-1 (or
tag-2) definition should move that embedding in a direction the questions read. Training (device,
seeding, the two stages, batching) is `TorchLearner`'s; stage 2 keeps the stage-1 batch size unless
`stage2_batch_size` is set (a batch-size sweep that varies stage 1 alone sets it).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from imlbench.core.protocol import TableData, TableQueries
from imlbench.learners.torch_base import TorchLearner, log_softmax_at


class TableNet(nn.Module):
    def __init__(self, cardinalities: list[int], n_numeric: int, n_classes: int, embedding_dim: int, hidden: int):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_dim) for c in cardinalities)
        self.numeric = nn.Linear(n_numeric, embedding_dim) if n_numeric else None
        width = embedding_dim * (len(cardinalities) + (1 if n_numeric else 0))
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def embed(self, codes: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """Every field's embedding, side by side: (rows, fields x embedding_dim)."""
        parts = [emb(codes[:, i]) for i, emb in enumerate(self.embeddings)]
        if self.numeric is not None:
            parts.append(self.numeric(numeric))
        return torch.cat(parts, dim=1)

    def forward(self, codes: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(codes, numeric))


def split_table(X: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Categorical codes, numeric block, and each categorical column's number of categories."""
    categorical = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
    numeric = [c for c in X.columns if c not in categorical]
    codes = (
        np.stack([X[c].cat.codes.to_numpy(np.int64) for c in categorical], axis=1)
        if categorical
        else np.zeros((len(X), 0), np.int64)
    )
    values = X[numeric].to_numpy(np.float32, copy=True) if numeric else np.zeros((len(X), 0), np.float32)
    return torch.from_numpy(codes), torch.from_numpy(values), [len(X[c].cat.categories) for c in categorical]


class MLP(TorchLearner):
    tags = replace(TorchLearner.tags, relative_cost=3)
    # What `imlbench search` may vary (PROTOCOL §8): width, budgets, batch size, learning rates.
    search_space = {
        "embedding_dim": {"choices": [16, 32, 64, 128]},
        "hidden": {"low": 64, "high": 1024, "log": True},
        "epochs": {"low": 10, "high": 120, "log": True},
        "stage2_epochs": {"low": 16, "high": 96, "log": True},
        "batch_size": {"choices": [16, 32, 64, 128]},
        "lr": {"low": 1e-4, "high": 1e-2, "log": True},
        "stage2_lr": {"low": 3e-5, "high": 3e-3, "log": True},
    }
    views = ("table",)
    # added after the published records; these values are how those records were made
    identity_neutral = {**TorchLearner.identity_neutral, "stage2_batch_size": None}

    def __init__(
        self,
        embedding_dim: int = 64,
        hidden: int = 256,
        epochs: int = 50,
        stage2_epochs: int = 48,
        batch_size: int = 64,
        lr: float = 1e-3,
        stage2_lr: float = 3e-4,
        n_threads: int = 1,
        device: str = "auto",
        random_state: int = 0,
        steps_per_epoch: int = 0,
        stage2_batch_size: int | None = None,
    ):
        self.embedding_dim = embedding_dim
        self.hidden = hidden
        self.epochs = epochs
        self.stage2_epochs = stage2_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.stage2_lr = stage2_lr
        self.n_threads = n_threads
        self.device = device
        self.random_state = random_state
        self.steps_per_epoch = steps_per_epoch  # 0: one pass per epoch; N: N steps (batch-size sweeps)
        self.stage2_batch_size = stage2_batch_size  # None: the stage-1 batch size

    def validate(self) -> None:
        super().validate()
        self.require_at_least_one("embedding_dim", "hidden")

    def build_model(self, data: TableData) -> TableNet:
        self.label_space_ = data.label_space
        _, numeric, cardinalities = split_table(data.X)
        return TableNet(cardinalities, numeric.shape[1], len(data.label_space), self.embedding_dim, self.hidden)

    def tensors(self, data: TableData) -> tuple[torch.Tensor, ...]:
        codes, numeric, _ = split_table(data.X)
        labels = np.searchsorted(self.label_space_, data.y)
        return codes.to(self.device_), numeric.to(self.device_), self._as_tensor(labels, np.int64)

    def example_loss(self, batch: tuple[torch.Tensor, ...], params: dict | None = None) -> torch.Tensor:
        codes, numeric, labels = batch
        return F.cross_entropy(self._forward(params, codes, numeric), labels, reduction="none")

    answer_loss = example_loss  # a row has one target: a definition's value, a question's answer
    output_layer = ("head.2",)

    @torch.no_grad()
    def logits(self, queries: TableQueries) -> torch.Tensor:
        self._inference()
        codes, numeric, _ = split_table(queries.X)
        return self.model_(codes.to(self.device_), numeric.to(self.device_))

    def predict(self, queries: TableQueries) -> np.ndarray:
        return self.label_space_[self.cached_logits(queries).argmax(dim=1).cpu().numpy()]

    def predict_scores(self, queries: TableQueries, candidates: np.ndarray) -> np.ndarray:
        return log_softmax_at(self.cached_logits(queries), np.searchsorted(self.label_space_, candidates))

    @torch.no_grad()
    def hidden_states(self, queries: TableQueries) -> list[np.ndarray]:
        """The embedded row (every field's embedding side by side) and the hidden layer."""
        self._inference()
        codes, numeric, _ = split_table(queries.X)
        embedded = self.model_.embed(codes.to(self.device_), numeric.to(self.device_))
        hidden = self.model_.head[1](self.model_.head[0](embedded))
        return [embedded.cpu().numpy(), hidden.cpu().numpy()]
