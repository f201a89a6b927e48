"""`convnet`: a small convolutional network on the `image` view.

Conv(16) -> pool -> Conv(32) -> pool -> Linear(256) -> Linear(n_classes), trained with Adam. Stage 2
continues training the same weights with the same optimizer (its moment estimates included) at a
lower learning rate and a smaller batch: stage 2 holds only a few dozen definitions, and with the
stage-1 batch size an epoch would be a single step. A checkpoint is one epoch. Training (device,
seeding, the two stages, batching) is `TorchLearner`'s.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from imlbench.core.protocol import ImageData, ImageQueries
from imlbench.learners.torch_base import TorchLearner, log_softmax_at


class SmallCNN(nn.Module):
    def __init__(self, height: int, width: int, n_classes: int, channels: tuple[int, int], hidden: int):
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(c2 * (height // 4) * (width // 4), hidden), nn.ReLU(), nn.Linear(hidden, n_classes)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images.unsqueeze(1)))

    def layers(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Each pooled feature map (flattened) and the hidden layer: (rows, width) each."""
        out, x = [], images.unsqueeze(1)
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                out.append(x.flatten(1))
        return out + [self.head[1](self.head[0](x))]


class ConvNet(TorchLearner):
    tags = replace(TorchLearner.tags, relative_cost=6)
    # What `imlbench search` may vary (PROTOCOL §8): width, budgets, batch sizes, learning rates.
    search_space = {
        "channels1": {"choices": [8, 16, 32]},
        "channels2": {"choices": [16, 32, 64]},
        "hidden": {"low": 64, "high": 512, "log": True},
        "epochs": {"low": 10, "high": 60, "log": True},
        "stage2_epochs": {"low": 32, "high": 160, "log": True},
        "stage2_batch_size": {"choices": [8, 16, 32, 64]},
        "lr": {"low": 3e-4, "high": 3e-3, "log": True},
        "stage2_lr": {"low": 3e-5, "high": 1e-3, "log": True},
    }
    views = ("image",)

    def __init__(
        self,
        channels1: int = 16,
        channels2: int = 32,
        hidden: int = 256,
        epochs: int = 30,
        stage2_epochs: int = 112,
        batch_size: int = 64,
        stage2_batch_size: int = 16,
        lr: float = 1e-3,
        stage2_lr: float = 2e-4,
        n_threads: int = 1,
        device: str = "auto",
        random_state: int = 0,
    ):
        self.channels1 = channels1
        self.channels2 = channels2
        self.hidden = hidden
        self.epochs = epochs
        self.stage2_epochs = stage2_epochs
        self.batch_size = batch_size
        self.stage2_batch_size = stage2_batch_size
        self.lr = lr
        self.stage2_lr = stage2_lr
        self.n_threads = n_threads
        self.device = device
        self.random_state = random_state

    def validate(self) -> None:
        super().validate()
        self.require_at_least_one("channels1", "channels2", "hidden")

    def build_model(self, data: ImageData) -> SmallCNN:
        self.label_space_ = data.label_space
        _, height, width = data.images.shape
        return SmallCNN(height, width, len(data.label_space), (self.channels1, self.channels2), self.hidden)

    def tensors(self, data: ImageData) -> tuple[torch.Tensor, ...]:
        labels = np.searchsorted(self.label_space_, data.y)
        return self._as_tensor(data.images, np.float32), self._as_tensor(labels, np.int64)

    def example_loss(self, batch: tuple[torch.Tensor, ...], params: dict | None = None) -> torch.Tensor:
        images, labels = batch
        return F.cross_entropy(self._forward(params, images), labels, reduction="none")

    answer_loss = example_loss  # an image has one target: a definition's value, a question's answer
    output_layer = ("head.2",)

    @torch.no_grad()
    def logits(self, queries: ImageQueries) -> torch.Tensor:
        self._inference()
        images = self._as_tensor(queries.images, np.float32)
        return torch.cat([self.model_(images[i : i + 4096]) for i in range(0, len(images), 4096)])

    def predict(self, queries: ImageQueries) -> np.ndarray:
        return self.label_space_[self.cached_logits(queries).argmax(dim=1).cpu().numpy()]

    def predict_scores(self, queries: ImageQueries, candidates: np.ndarray) -> np.ndarray:
        return log_softmax_at(self.cached_logits(queries), np.searchsorted(self.label_space_, candidates))

    @torch.no_grad()
    def hidden_states(self, queries: ImageQueries) -> list[np.ndarray]:
        """The two pooled feature maps (flattened) and the hidden layer."""
        self._inference()
        return [h.cpu().numpy() for h in self.model_.layers(self._as_tensor(queries.images, np.float32))]
