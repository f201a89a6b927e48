"""`TorchLearner`: what every torch learner does the same way, so that a learner file holds only its
model, how its view becomes tensors, its loss and its prediction.

The base owns where the model computes (`device`), the thread count, seeding, the two stages, the
epoch loop and batching. A run is reproducible from `random_state` alone: the model is initialized
under a forked torch RNG seeded with it (the caller's global RNG is left alone), and every batch
order comes from a numpy generator seeded with it, drawn in one fixed order across both stages.

Stage 2 continues the stage-1 weights *and* optimizer state (moment estimates included) at its own
learning rate, number of epochs and batch size. Every epoch is one checkpoint: the loop yields once
per epoch so that the harness can evaluate between epochs.

A subclass supplies:
- `build_model(data)`: the `nn.Module` (and records what predicting needs, e.g. the label space);
- `tensors(data)`: the view's training data as tensors on `device_`, one row per document;
- `example_loss(batch)`: the loss of each document of a batch (or `batch_loss` for a cheaper
  training loss), and `predict`.
It may refine `make_optimizer`, `make_batch` (e.g. cut padding off a batch of token rows) and
`epoch_rng` (e.g. seed dropout per epoch from the run's stream).
Optional diagnostics (per-example gradients, probes of hidden states) read `model_`,
`example_loss(batch, params)` and `hidden_states(queries)`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from imlbench.core.protocol import Learner, LearnerTags


def log_softmax_at(logits: torch.Tensor, columns: np.ndarray) -> np.ndarray:
    """Answer scores (`predict_scores`): log-probabilities of the model's softmax at the candidate
    labels' columns (the learner's whole output space normalizes them, as its argmax reads it)."""
    return torch.log_softmax(logits.float(), dim=-1)[:, torch.as_tensor(columns, device=logits.device)].cpu().numpy()


def resolve_device(device: str) -> torch.device:
    """`"auto"` is CUDA when present, else the CPU; anything else is passed to torch as is."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass(frozen=True)
class Stage:
    """How one stage trains: its learning rate, epochs, batch size and optimizer steps per epoch
    (0: an epoch is one pass over the documents)."""

    lr: float
    epochs: int
    batch_size: int
    steps_per_epoch: int = 0


class TorchLearner(Learner):
    """Base of the torch learners. Subclass constructors take at least `epochs`, `stage2_epochs`,
    `batch_size`, `lr`, `stage2_lr`, `n_threads`, `device` and `random_state`.

    `steps_per_epoch`, `stage2_batch_size` and `stage2_steps_per_epoch` are hyperparameters a
    subclass may take too; one whose constructor does not take them trains with one pass over the
    documents per epoch (0) and stage 2 with the stage-1 batch size (None). A fixed number of steps
    per epoch is what a batch-size comparison at equal optimizer steps needs.

    After training, `run_info_["optimizer_steps"]` holds the steps each stage took (records carry it).
    """

    tags = LearnerTags(continue_training=True)
    steps_per_epoch: int = 0
    stage2_batch_size: int | None = None
    stage2_steps_per_epoch: int = 0
    # 0 (off) trains whole epochs, as the learner without the parameter does: its records keep their keys
    identity_neutral = {"steps_per_epoch": 0}

    # -- what a subclass supplies ------------------------------------------------------------

    @abstractmethod
    def build_model(self, data) -> nn.Module:
        """The untrained model for `data` (built on the CPU under the seeded RNG, then moved)."""

    @abstractmethod
    def tensors(self, data) -> tuple[torch.Tensor, ...]:
        """The view's training data as tensors on `device_`, each with one row per document; a
        batch is the same rows of every tensor."""

    def example_loss(
        self, batch: tuple[torch.Tensor, ...], params: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The training loss of each document of `batch` (a tuple like `tensors`), shape (rows,).

        With `params` (name -> tensor, as `model_.named_parameters()`) the model computes with those
        tensors in place of its own (`torch.func.functional_call`), so that `torch.func.grad` and
        `vmap` can take per-example gradients. Optional: learners without it cannot be diagnosed.
        """
        raise NotImplementedError(f"{type(self).__name__} has no per-example loss")

    def answer_loss(
        self, batch: tuple[torch.Tensor, ...], params: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Each document's loss on its answer alone — a definition's value, a question's answer — so
        that a definition and its questions are compared on the same target (gradient alignment).
        Learners whose documents carry one target (mlp, convnet) have `example_loss` as it; one whose
        definitions carry more (the transformer also predicts the variable) overrides it."""
        raise NotImplementedError(f"{type(self).__name__} has no answer-only loss")

    # where each parameter sits, for gradient alignment by parameter group: name prefixes of the
    # output layer; any other name with "embed" in it is an input embedding, the rest is the body
    output_layer: tuple[str, ...] = ()

    def parameter_group(self, name: str) -> str:
        """`output`, `embeddings` or `body` for a parameter name of `model_.named_parameters()`."""
        if self.output_layer and name.startswith(self.output_layer):
            return "output"
        return "embeddings" if "embed" in name else "body"

    def batch_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
        """The loss one optimizer step minimizes; None when nothing in the batch carries loss (no
        step is taken). The mean of `example_loss` unless a subclass has a cheaper equivalent."""
        return self.example_loss(batch).mean()

    def hidden_states(self, queries) -> list[np.ndarray]:
        """One (n, width) array per layer: each query's representation where the answer is read.
        Optional: learners without it cannot be probed."""
        raise NotImplementedError(f"{type(self).__name__} exposes no hidden states")

    # the diagnostics interface's optional methods: a subclass that does not override one cannot
    # run the diagnostics that need it (`Diagnostic.supports` reads this mark)
    example_loss.not_implemented = True
    answer_loss.not_implemented = True
    hidden_states.not_implemented = True

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model_.parameters(), lr=self.lr, **self.fused())

    def fused(self) -> dict[str, bool]:
        """Adam's fused kernel where the device has one: one kernel for the whole update instead of
        several per parameter (~20% of a transformer step at batch 32 on a CPU core)."""
        return {"fused": self.device_.type in ("cpu", "cuda")}

    def make_batch(self, tensors: tuple[torch.Tensor, ...], rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The training batch of document indices `rows`: those rows of every tensor."""
        return tuple(t[rows] for t in tensors)

    def epoch_rng(self) -> contextlib.AbstractContextManager:
        """Entered around each epoch's optimizer steps, after its batches are drawn: a subclass
        whose model draws random numbers while training (dropout) seeds them here."""
        return contextlib.nullcontext()

    # -- the shared parts --------------------------------------------------------------------

    def validate(self) -> None:
        self.require_at_least_one("epochs", "stage2_epochs", "batch_size", "n_threads")
        if self.stage2_batch_size is not None:
            self.require_at_least_one("stage2_batch_size")
        for name in ("steps_per_epoch", "stage2_steps_per_epoch"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (off: one pass per epoch) or positive")
        if self.lr <= 0 or self.stage2_lr <= 0:
            raise ValueError("learning rates must be positive")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError as exc:
                raise ValueError(f"device={self.device!r}: {exc}") from exc

    def prepare(self, data) -> None:
        """The untrained model on `device_`, built under a torch RNG forked and seeded with
        `random_state` (the caller's global RNG is left alone). `fit` starts with it."""
        torch.set_num_threads(self.n_threads)
        self.device_ = resolve_device(self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            self.model_ = self.build_model(data).to(self.device_)

    def fit(self, data) -> Iterator[None]:
        self.run_info_ = {}
        self.prepare(data)  # a subclass may put what its records need into run_info_ here
        self.optimizer_ = self.make_optimizer()
        self.rng_ = np.random.default_rng(self.random_state)
        self.n_steps_ = 0  # optimizer steps taken so far (both stages)
        self.logits_cache_ = (None, None)  # a new model: nothing cached belongs to it
        self.run_info_.setdefault("n_parameters", sum(p.numel() for p in self.model_.parameters()))
        self.run_info_["optimizer_steps"] = {}
        yield from self._train(data, Stage(self.lr, self.epochs, self.batch_size, self.steps_per_epoch))

    def continue_fit(self, data) -> Iterator[None]:
        if not hasattr(self, "model_"):
            raise RuntimeError("continue_fit called before fit")
        batch_size = self.stage2_batch_size or self.batch_size
        yield from self._train(data, Stage(self.stage2_lr, self.stage2_epochs, batch_size, self.stage2_steps_per_epoch))

    def _train(self, data, stage: Stage) -> Iterator[None]:
        torch.set_num_threads(self.n_threads)
        for group in self.optimizer_.param_groups:
            group["lr"] = stage.lr
        self.stream_ = np.zeros(0, dtype=np.int64)
        tensors = self.tensors(data)
        steps = self.run_info_["optimizer_steps"]
        name = f"stage{len(steps) + 1}"
        before = self.n_steps_
        for _ in range(stage.epochs):
            self.model_.train()
            batches = self._epoch_batches(len(tensors[0]), stage.batch_size, stage.steps_per_epoch)
            with self.epoch_rng():
                for indices in batches:
                    self._step(self.make_batch(tensors, torch.from_numpy(indices).to(self.device_)))
            steps[name] = self.n_steps_ - before
            yield

    def _step(self, batch: tuple[torch.Tensor, ...]) -> None:
        """One optimizer step on `batch` (none when nothing in it carries loss)."""
        loss = self.batch_loss(batch)
        if loss is None:
            return
        self.optimizer_.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer_.step()
        self.n_steps_ += 1

    def _epoch_batches(self, n: int, batch_size: int, steps: int) -> list[np.ndarray]:
        """One epoch's batches of document indices: one pass over a fresh permutation (steps = 0),
        or exactly `steps` batches cut from a stream of successive permutations (steps > 0), so
        that every epoch takes the same number of steps whatever the batch size, and every document
        is seen equally often, give or take one (a batch larger than `n` repeats documents)."""
        if not steps:
            order = self.rng_.permutation(n)
            return [order[start : start + batch_size] for start in range(0, n, batch_size)]
        needed = steps * batch_size
        parts = [self.stream_]
        available = len(self.stream_)
        while available < needed:
            parts.append(self.rng_.permutation(n))
            available += n
        stream = np.concatenate(parts)
        self.stream_ = stream[needed:]  # the rest of the current permutation opens the next epoch
        return [stream[i * batch_size : (i + 1) * batch_size] for i in range(steps)]

    def _forward(self, params: dict[str, torch.Tensor] | None, *inputs: torch.Tensor, **options):
        """`model_(*inputs, **options)`, with `params` in place of the model's own parameters when given."""
        if params is None:
            return self.model_(*inputs, **options)
        return torch.func.functional_call(self.model_, params, inputs, options)

    def cached_logits(self, queries: Any) -> torch.Tensor:
        """`self.logits(queries)`, computed once per state of the model: the harness asks for the
        predictions and then the answer scores of the same queries at every checkpoint of the
        reading window, and both read the same forward pass. Keyed by the optimizer steps taken, the
        model object and the queries' content, so any training step or other query recomputes."""
        if not dataclasses.is_dataclass(queries) or not hasattr(self, "n_steps_"):
            return self.logits(queries)
        digest = hashlib.blake2b(digest_size=16)
        for field in dataclasses.fields(queries):
            value = getattr(queries, field.name)
            if isinstance(value, np.ndarray):
                digest.update(f"{field.name} {value.dtype} {value.shape}".encode())
                digest.update(np.ascontiguousarray(value).data)
            else:
                digest.update(f"{field.name} {value!r}".encode())
        key = (self.n_steps_, id(self.model_), digest.hexdigest())
        if getattr(self, "logits_cache_", (None,))[0] != key:
            self.logits_cache_ = (key, self.logits(queries))
        return self.logits_cache_[1]

    def _inference(self) -> None:
        """Before a forward pass outside training: the thread count, and eval mode."""
        torch.set_num_threads(self.n_threads)
        self.model_.eval()

    def _as_tensor(self, array: np.ndarray, dtype: type) -> torch.Tensor:
        """A numpy array (one row per document) as a tensor of `dtype` on `device_`."""
        return torch.from_numpy(np.ascontiguousarray(array, dtype=dtype)).to(self.device_)
