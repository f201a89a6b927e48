"""`convnet`: a small convolutional network on the `image` view.

Conv(16) -> pool -> Conv(32) -> pool -> Linear(256) -> Linear(n_classes), trained with Adam. Stage 2
continues training the same weights with the same optimizer (its moment estimates included) at a
lower learning rate and a smaller batch: stage 2 holds only a few dozen definitions, and with the
stage-1 batch size an epoch would be a single step. A checkpoint is one epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from imlbench.learners.devices import resolve_device
from imlbench.protocol import ImageData, ImageQueries, Learner


class SmallCNN(nn.Module):
    def __init__(self, height: int, width: int, n_classes: int, channels: tuple[int, int], hidden: int):
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(c2 * (height // 4) * (width // 4), hidden), nn.ReLU(),
                                  nn.Linear(hidden, n_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images.unsqueeze(1)))



class ConvNet(Learner):
    views = ("image",)
    capabilities = frozenset({"continue_training"})

    def __init__(self, channels1: int = 16, channels2: int = 32, hidden: int = 256, epochs: int = 30,
                 stage2_epochs: int = 200, batch_size: int = 64, stage2_batch_size: int = 16,
                 lr: float = 1e-3, stage2_lr: float = 2e-4, n_threads: int = 1, device: str = "auto",
                 random_state: int = 0):
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
        self.require_at_least_one("channels1", "channels2", "hidden", "epochs", "stage2_epochs", "batch_size",
                                  "stage2_batch_size", "n_threads")
        if self.lr <= 0 or self.stage2_lr <= 0:
            raise ValueError("learning rates must be positive")
        if self.device != "auto":
            torch.device(self.device)  # raises on a malformed device string

    def fit(self, data: ImageData) -> Iterator[None]:
        torch.set_num_threads(self.n_threads)
        self.device_ = resolve_device(self.device)
        self.label_space_ = data.label_space
        _, height, width = data.images.shape
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            self.model_ = SmallCNN(height, width, len(data.label_space), (self.channels1, self.channels2),
                                   self.hidden).to(self.device_)
        self.optimizer_ = torch.optim.Adam(self.model_.parameters(), lr=self.lr)
        self.rng_ = np.random.default_rng(self.random_state)
        yield from self._train(data, self.epochs, self.batch_size)

    def continue_fit(self, data: ImageData) -> Iterator[None]:
        if not hasattr(self, "model_"):
            raise RuntimeError("continue_fit called before fit")
        for group in self.optimizer_.param_groups:
            group["lr"] = self.stage2_lr
        yield from self._train(data, self.stage2_epochs, self.stage2_batch_size)

    def _train(self, data: ImageData, epochs: int, batch_size: int) -> Iterator[None]:
        images = torch.from_numpy(np.ascontiguousarray(data.images, dtype=np.float32)).to(self.device_)
        labels = torch.from_numpy(np.searchsorted(self.label_space_, data.y)).to(self.device_)
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(epochs):
            self.model_.train()
            order = torch.from_numpy(self.rng_.permutation(len(labels))).to(self.device_)
            for start in range(0, len(order), batch_size):
                batch = order[start: start + batch_size]
                loss = loss_fn(self.model_(images[batch]), labels[batch])
                self.optimizer_.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer_.step()
            yield

    @torch.no_grad()
    def predict(self, queries: ImageQueries) -> np.ndarray:
        self.model_.eval()
        images = torch.from_numpy(np.ascontiguousarray(queries.images, dtype=np.float32)).to(self.device_)
        scores = torch.cat([self.model_(images[i: i + 4096]) for i in range(0, len(images), 4096)])
        return self.label_space_[scores.argmax(dim=1).cpu().numpy()]
