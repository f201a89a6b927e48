"""`transformer`: a small decoder-only transformer trained from scratch on the tokens view.

The model follows nanoGPT's model.py: learned token and position embeddings, pre-LN blocks of
causal self-attention (`scaled_dot_product_attention`) and a GELU MLP, a final LayerNorm, and an
output layer tied to the token embedding. Implicit meta-learning needs nothing more: a definition
`<tag> <variable> <value>` and a question `<phrasing> <variable> -> <answer>` share the variable's
embedding, and stage 1 teaches the network how far a tag-1 (or tag-2) definition should move it.

Stage 2 continues from the stage-1 weights *and* AdamW state with its own learning rate: a large
stage-2 rate makes the network overwrite what stage 1 taught (it then answers every question with
the last definition it saw), which would measure forgetting rather than meta-learning.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from imlbench.learners.devices import resolve_device
from imlbench.protocol import Learner, TokenData, TokenQueries


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        # (batch, heads, length, head width)
        q, k, v = (t.view(batch, length, self.n_heads, width // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    """Pre-LN: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token ids (batch, length) -> next-token logits (batch, length, vocab)."""

    def __init__(self, vocab_size: int, max_length: int, d_model: int, n_layers: int, n_heads: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_length, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight  # tied input/output embeddings
        self.apply(self._init_weights)
        # GPT-2's scaled init of the residual projections keeps the residual stream's variance flat.
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final (normalized) hidden states, (batch, length, d_model). Kept apart from the output
        layer so that callers project only the positions they score: on short sequences over a
        large vocabulary the output layer is a large share of the compute."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.hidden(tokens))


def n_parameters(model: nn.Module) -> int:
    """Trainable parameters, the tied embedding counted once."""
    return sum(p.numel() for p in model.parameters())



class Transformer(Learner):
    """Decoder-only transformer; predicts the argmax next token over the whole vocabulary.

    `stage2_batch_size` is separate because stage 2 is small (a few hundred definitions): smaller
    batches put more updates into each epoch, and each epoch is a checkpoint the harness evaluates.

    `stage2_steps_per_epoch` (default 0 = off: an epoch is one pass over the stage-2 documents)
    fixes the number of optimizer steps in every stage-2 epoch, whatever `stage2_batch_size` is, so
    that a batch-size comparison is not confounded with step counts: with it, batch sizes 16 and 256
    take the same number of AdamW steps between two checkpoints and reach a checkpoint after the
    same number of steps. Batches are then cut from a stream of successive random permutations of the
    stage-2 documents (each document is seen equally often, give or take one; a batch larger than
    the stage-2 set may repeat a document). With 285 stage-2 documents (synthetic-defs defaults) the
    default batch of 32 takes 9 steps per epoch, so `stage2_steps_per_epoch = 9` keeps the default's
    step count. Larger batches then see more documents per checkpoint; that is the price of holding
    steps fixed, and the alternative (holding documents seen fixed) is what the knob's default does.
    `device="auto"` trains on CUDA when one is present, else on the CPU.
    """

    views = ("tokens",)
    capabilities = frozenset({"continue_training"})

    def __init__(self, n_layers: int = 2, d_model: int = 128, n_heads: int = 4, epochs: int = 30,
                 stage2_epochs: int = 200, batch_size: int = 128,
                 stage2_batch_size: int = 32, lr: float = 1e-3, stage2_lr: float = 2e-4,
                 beta1: float = 0.9, beta2: float = 0.98, weight_decay: float = 0.0, device: str = "auto",
                 n_threads: int = 1, random_state: int = 0, stage2_steps_per_epoch: int = 0):
        self.n_layers = n_layers
        self.d_model = d_model
        self.n_heads = n_heads
        self.epochs = epochs
        self.stage2_epochs = stage2_epochs
        self.batch_size = batch_size
        self.stage2_batch_size = stage2_batch_size
        self.lr = lr
        self.stage2_lr = stage2_lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.weight_decay = weight_decay
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.stage2_steps_per_epoch = stage2_steps_per_epoch

    def validate(self) -> None:
        self.require_at_least_one("n_layers", "d_model", "n_heads", "epochs", "stage2_epochs", "batch_size",
                                  "stage2_batch_size", "n_threads")
        if self.stage2_steps_per_epoch < 0:
            raise ValueError("stage2_steps_per_epoch must be 0 (off: one pass per epoch) or positive")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}")
        if self.lr <= 0 or self.stage2_lr <= 0:
            raise ValueError("learning rates must be positive")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1) or self.weight_decay < 0:
            raise ValueError("betas must lie in [0, 1) and weight_decay must be non-negative")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError as exc:
                raise ValueError(f"device={self.device!r}: {exc}") from exc

    def fit(self, data: TokenData) -> Iterator[None]:
        torch.set_num_threads(self.n_threads)
        self.device_ = resolve_device(self.device)
        self.vocab_size_ = data.vocab_size
        # Room for longer stage-2/test sequences than stage 1's; positions past it are never trained.
        self.max_length_ = max(64, data.tokens.shape[1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            self.model_ = GPT(data.vocab_size, self.max_length_, self.d_model, self.n_layers,
                              self.n_heads).to(self.device_)
        self.optimizer_ = torch.optim.AdamW(self.model_.parameters(), lr=self.lr,
                                            betas=(self.beta1, self.beta2), weight_decay=self.weight_decay)
        self.rng_ = np.random.default_rng(self.random_state)
        self.n_steps_ = 0  # optimizer steps taken so far (both stages)
        yield from self._train(data, self.epochs, self.batch_size)

    def continue_fit(self, data: TokenData) -> Iterator[None]:
        if not hasattr(self, "model_"):
            raise RuntimeError("continue_fit called before fit")
        for group in self.optimizer_.param_groups:
            group["lr"] = self.stage2_lr
        yield from self._train(data, self.stage2_epochs, self.stage2_batch_size, self.stage2_steps_per_epoch)

    def _check(self, tokens: np.ndarray, vocab_size: int) -> None:
        if vocab_size != self.vocab_size_:
            raise ValueError(f"vocabulary of {vocab_size} tokens, but the model was fit on {self.vocab_size_}")
        if tokens.shape[1] > self.max_length_:
            raise ValueError(f"sequences of length {tokens.shape[1]} exceed the model's {self.max_length_}")

    def _epoch_batches(self, n: int, batch_size: int, steps: int) -> list[np.ndarray]:
        """One epoch's batches of document indices: one pass over a fresh permutation (steps = 0),
        or exactly `steps` batches cut from a stream of successive permutations (steps > 0)."""
        if not steps:
            order = self.rng_.permutation(n)
            return [order[start: start + batch_size] for start in range(0, n, batch_size)]
        needed = steps * batch_size
        parts = [self.stream_]
        available = len(self.stream_)
        while available < needed:
            parts.append(self.rng_.permutation(n))
            available += n
        stream = np.concatenate(parts)
        self.stream_ = stream[needed:]  # the rest of the current permutation opens the next epoch
        return [stream[i * batch_size: (i + 1) * batch_size] for i in range(steps)]

    def _train(self, data: TokenData, epochs: int, batch_size: int, steps_per_epoch: int = 0) -> Iterator[None]:
        torch.set_num_threads(self.n_threads)
        self.stream_ = np.zeros(0, dtype=np.int64)
        self._check(data.tokens, data.vocab_size)
        tokens = torch.from_numpy(np.ascontiguousarray(data.tokens, dtype=np.int64)).to(self.device_)
        # Position i is predicted from tokens[:i]: logits[:, i-1] against tokens[:, i].
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        mask = torch.from_numpy(np.ascontiguousarray(data.loss_mask[:, 1:])).to(self.device_)
        for _ in range(epochs):
            self.model_.train()
            for indices in self._epoch_batches(len(tokens), batch_size, steps_per_epoch):
                batch = torch.from_numpy(indices).to(self.device_)
                selected = mask[batch]
                if not selected.any():
                    continue
                hidden = self.model_.hidden(inputs[batch])[selected]
                loss = F.cross_entropy(self.model_.lm_head(hidden), targets[batch][selected])
                self.optimizer_.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer_.step()
                self.n_steps_ += 1
            yield

    @torch.no_grad()
    def predict(self, queries: TokenQueries) -> np.ndarray:
        """Argmax of the next-token logits at `answer_pos - 1`; only tokens before the answer matter
        (causal attention), and the query holds padding from the answer position on."""
        torch.set_num_threads(self.n_threads)
        self._check(queries.tokens, queries.vocab_size)
        self.model_.eval()
        tokens = torch.from_numpy(np.ascontiguousarray(queries.tokens, dtype=np.int64))
        answer_pos = torch.from_numpy(np.asarray(queries.answer_pos, dtype=np.int64))
        out = []
        for start in range(0, len(tokens), 4096):
            chunk = tokens[start: start + 4096].to(self.device_)
            pos = answer_pos[start: start + 4096].to(self.device_)
            hidden = self.model_.hidden(chunk[:, : int(pos.max())])
            last = hidden[torch.arange(len(chunk), device=self.device_), pos - 1]
            out.append(self.model_.lm_head(last).argmax(dim=-1).cpu())
        return torch.cat(out).numpy().astype(np.int64) if out else np.zeros(0, np.int64)
