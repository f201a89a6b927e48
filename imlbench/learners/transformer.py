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
from dataclasses import replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from imlbench.core.protocol import TokenData, TokenQueries
from imlbench.learners.torch_base import TorchLearner, log_softmax_at


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

    def __init__(
        self, vocab_size: int, max_length: int, d_model: int, n_layers: int, n_heads: int, tie_embeddings: bool = True
    ):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_length, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
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

    def residuals(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """The residual stream after the embeddings and after each block: n_layers + 1 tensors of
        (batch, length, d_model)."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(positions)
        stream = [x]
        for block in self.blocks:
            x = block(x)
            stream.append(x)
        return stream

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final (normalized) hidden states, (batch, length, d_model). Kept apart from the output
        layer so that callers project only the positions they score: on short sequences over a
        large vocabulary the output layer is a large share of the compute."""
        return self.ln_f(self.residuals(tokens)[-1])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.hidden(tokens))


def n_parameters(model: nn.Module) -> int:
    """Trainable parameters, the tied embedding counted once."""
    return sum(p.numel() for p in model.parameters())


class Transformer(TorchLearner):
    """Decoder-only transformer; predicts the argmax next token over the whole vocabulary.

    `stage2_batch_size` is separate because stage 2 is small (a few hundred definitions): smaller
    batches put more updates into each epoch, and each epoch is a checkpoint the harness evaluates.

    `stage2_steps_per_epoch` (default 0 = off: an epoch is one pass over the stage-2 documents)
    fixes the number of optimizer steps in every stage-2 epoch, whatever `stage2_batch_size` is, so
    that a batch-size comparison is not confounded with step counts: with it, batch sizes 16 and 256
    take the same number of AdamW steps between two checkpoints and reach a checkpoint after the
    same number of steps. Batches are then cut from a stream of successive random permutations of the
    stage-2 documents (each document is seen equally often, give or take one; a batch larger than
    the stage-2 set may repeat a document). `steps_per_epoch` does the same for stage 1 (the
    batch-size sweep at equal optimizer steps, README). With 285 stage-2 documents (synthetic-defs defaults) the
    default batch of 32 takes 9 steps per epoch, so `stage2_steps_per_epoch = 9` keeps the default's
    step count. Larger batches then see more documents per checkpoint; that is the price of holding
    steps fixed, and the alternative (holding documents seen fixed) is what the knob's default does.
    `tie_embeddings=False` gives the output layer its own weights. Tied, a definition's loss on its
    variable token (predicted after the tag) trains the variable's input embedding through the
    output layer, so the tag is decodable from that embedding whatever the network does with it; the
    untied model removes that shortcut, so a tag probe can tell "tag stored" from "definition absorbed".
    `device="auto"` trains on CUDA when one is present, else on the CPU.
    """

    tags = replace(TorchLearner.tags, relative_cost=20)
    # What `imlbench search` may vary (PROTOCOL §8): depth, width, budgets, batch sizes, learning
    # rates; bounded so that one run stays within a few minutes on one CPU core.
    search_space = {
        "n_layers": {"low": 1, "high": 3},
        "d_model": {"choices": [64, 128]},
        "epochs": {"low": 15, "high": 45},
        "stage2_epochs": {"low": 32, "high": 80},
        "stage2_batch_size": {"choices": [16, 32, 64]},
        "lr": {"low": 3e-4, "high": 3e-3, "log": True},
        "stage2_lr": {"low": 5e-5, "high": 1e-3, "log": True},
        "weight_decay": {"low": 0.0, "high": 0.1},
    }

    views = ("tokens",)
    # added after the published records; these values are how those records were made
    identity_neutral = {**TorchLearner.identity_neutral, "tie_embeddings": True}
    output_layer = ("lm_head",)  # present only untied: tied, the output layer is the token table

    def __init__(
        self,
        n_layers: int = 2,
        d_model: int = 128,
        n_heads: int = 4,
        epochs: int = 30,
        stage2_epochs: int = 64,
        batch_size: int = 128,
        stage2_batch_size: int = 32,
        lr: float = 1e-3,
        stage2_lr: float = 2e-4,
        beta1: float = 0.9,
        beta2: float = 0.98,
        weight_decay: float = 0.0,
        device: str = "auto",
        n_threads: int = 1,
        random_state: int = 0,
        stage2_steps_per_epoch: int = 0,
        steps_per_epoch: int = 0,
        tie_embeddings: bool = True,
    ):
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
        self.steps_per_epoch = steps_per_epoch
        self.tie_embeddings = tie_embeddings

    def validate(self) -> None:
        super().validate()
        self.require_at_least_one("n_layers", "d_model", "n_heads")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1) or self.weight_decay < 0:
            raise ValueError("betas must lie in [0, 1) and weight_decay must be non-negative")

    def build_model(self, data: TokenData) -> GPT:
        self.vocab_size_ = data.vocab_size
        # Room for longer stage-2/test sequences than stage 1's; positions past it are never trained.
        self.max_length_ = max(64, data.tokens.shape[1])
        return GPT(data.vocab_size, self.max_length_, self.d_model, self.n_layers, self.n_heads, self.tie_embeddings)

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.model_.parameters(),
            lr=self.lr,
            betas=(self.beta1, self.beta2),
            weight_decay=self.weight_decay,
            **self.fused(),
        )

    def _check(self, tokens: np.ndarray, vocab_size: int) -> None:
        if vocab_size != self.vocab_size_:
            raise ValueError(f"vocabulary of {vocab_size} tokens, but the model was fit on {self.vocab_size_}")
        if tokens.shape[1] > self.max_length_:
            raise ValueError(f"sequences of length {tokens.shape[1]} exceed the model's {self.max_length_}")

    def tensors(self, data: TokenData) -> tuple[torch.Tensor, ...]:
        """Inputs, next-token targets and which targets carry loss: position i is predicted from
        tokens[:i], so logits[:, i-1] are scored against tokens[:, i]."""
        self._check(data.tokens, data.vocab_size)
        tokens = self._as_tensor(data.tokens, np.int64)
        return tokens[:, :-1], tokens[:, 1:], self._as_tensor(data.loss_mask[:, 1:], np.bool_)

    def batch_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
        """Cross-entropy over the batch's loss positions, projecting only those to the vocabulary."""
        inputs, targets, mask = batch
        if not mask.any():
            return None
        hidden = self.model_.hidden(inputs)[mask]
        return F.cross_entropy(self.model_.lm_head(hidden), targets[mask])

    def example_loss(self, batch: tuple[torch.Tensor, ...], params: dict | None = None) -> torch.Tensor:
        """Each document's mean cross-entropy over its loss positions. `batch_loss` averages over
        positions instead, so the two agree on batches whose documents carry equally many loss
        positions (a definition carries two: its variable and its value; a question one)."""
        inputs, targets, mask = batch
        per_position = F.cross_entropy(self._forward(params, inputs).transpose(1, 2), targets, reduction="none")
        weight = mask.to(per_position.dtype)
        return (per_position * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1)

    def answer_loss(self, batch: tuple[torch.Tensor, ...], params: dict | None = None) -> torch.Tensor:
        """Each document's cross-entropy at its last loss position alone: a definition's value, a
        question's answer (a definition's loss on its variable token has no counterpart in a question)."""
        inputs, targets, mask = batch
        per_position = F.cross_entropy(self._forward(params, inputs).transpose(1, 2), targets, reduction="none")
        last = mask & (mask.cumsum(dim=1) == mask.sum(dim=1, keepdim=True))
        return (per_position * last.to(per_position.dtype)).sum(dim=1)

    @torch.no_grad()
    def logits(self, queries: TokenQueries) -> torch.Tensor:
        """The next-token logits at `answer_pos - 1`; only tokens before the answer matter (causal
        attention), and the query holds padding from the answer position on."""
        self._check(queries.tokens, queries.vocab_size)
        self._inference()
        out = []
        for start in range(0, len(queries.tokens), 4096):
            chunk = self._as_tensor(queries.tokens[start : start + 4096], np.int64)
            pos = self._as_tensor(queries.answer_pos[start : start + 4096], np.int64)
            hidden = self.model_.hidden(chunk[:, : int(pos.max())])
            out.append(self.model_.lm_head(hidden[torch.arange(len(chunk), device=self.device_), pos - 1]))
        return torch.cat(out) if out else torch.zeros(0, queries.vocab_size)

    def predict(self, queries: TokenQueries) -> np.ndarray:
        """Argmax over the whole vocabulary."""
        return self.cached_logits(queries).argmax(dim=-1).cpu().numpy().astype(np.int64)

    def predict_scores(self, queries: TokenQueries, candidates: np.ndarray) -> np.ndarray:
        return log_softmax_at(self.cached_logits(queries), candidates)

    @torch.no_grad()
    def hidden_states(self, queries: TokenQueries) -> list[np.ndarray]:
        """The residual stream after the embeddings and after each block (n_layers + 1 arrays of
        (n, d_model)) at `answer_pos - 1`, the position whose output predicts the answer."""
        self._check(queries.tokens, queries.vocab_size)
        self._inference()
        tokens = self._as_tensor(queries.tokens, np.int64)
        pos = self._as_tensor(queries.answer_pos, np.int64)
        rows = torch.arange(len(tokens), device=self.device_)
        return [r[rows, pos - 1].cpu().numpy() for r in self.model_.residuals(tokens[:, : int(pos.max())])]
