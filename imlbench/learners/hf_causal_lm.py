"""`hf-causal-lm`: a Hugging Face causal language model trained on the text view.

`model` is a hub name or a local directory (anything `AutoModelForCausalLM.from_pretrained` reads),
or `tiny-gpt-neox`: a small GPT-NeoX (Pythia's architecture) built from scratch from the run's seed.
`tokenizer` is the model's own (`auto`; for the built-in model, `word-level`), `word-level` (one
token per word or punctuation mark, built in-process from the task's texts with the tokenizers
library), or another hub name or directory.

Training reads each document as prompt + completion + end-of-text, with the cross-entropy loss on
the completion and the end-of-text token only. The epoch loop, seeding, device and the two stages
(stage 2 continues the stage-1 weights and AdamW state at `stage2_lr`) are `TorchLearner`'s, as for
the `transformer` learner; this file holds the tokenizer, the encoding of texts and generation.
Weights load in `fit`, never in the constructor: the harness builds a learner's spec several times
per run.

`predict` generates greedily, in batches of left-padded prompts, at most one token more than the
longest label (that one for end-of-text), cuts the text at end-of-text and maps it back to a label
by exact match of its text (whitespace stripped, both sides read through the same tokenizer).
Text that is no label's is answered `imlbench.views.text.NO_ANSWER`, which is never correct.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from imlbench.core.protocol import NO_ANSWER
from imlbench.learners.hf_loading import (
    WORD_LEVEL,
    encode,
    label_keys,
    left_padded,
    load_pretrained,
    require_hf,
    run_info,
    tiny_gpt_neox,
    word_level_tokenizer,
)
from imlbench.learners.torch_base import TorchLearner
from imlbench.views.text import TextData, TextQueries

BUILTIN = "tiny-gpt-neox"
DTYPES = ("auto", "float32", "bfloat16")


class HFCausalLM(TorchLearner):
    """A causal LM (built-in tiny GPT-NeoX or any pretrained one) on the text view.

    `d_model`, `n_layers`, `n_heads` and `max_length` size the built-in model only. `dtype="auto"`
    computes in bfloat16 (autocast; weights and optimizer state stay float32, so small updates are
    not rounded away) on CUDA and in float32 elsewhere. After `fit`, `run_info_` holds what a record
    should carry: library versions, the model's name and revision, its size, device and dtype.
    """

    tags = replace(TorchLearner.tags, relative_cost=20)
    # What `imlbench search` may vary (PROTOCOL §8): budgets, batch sizes and learning rates (the
    # model is named by `model`, not searched).
    search_space = {
        "epochs": {"low": 15, "high": 45},
        "stage2_epochs": {"low": 24, "high": 80},
        "stage2_batch_size": {"choices": [16, 32, 64]},
        "lr": {"low": 3e-4, "high": 3e-3, "log": True},
        "stage2_lr": {"low": 5e-5, "high": 1e-3, "log": True},
    }

    views = ("text",)

    def __init__(
        self,
        model: str = BUILTIN,
        tokenizer: str = "auto",
        revision: str = "main",
        epochs: int = 30,
        stage2_epochs: int = 46,
        batch_size: int = 64,
        stage2_batch_size: int = 32,
        lr: float = 1e-3,
        stage2_lr: float = 2e-4,
        weight_decay: float = 0.0,
        d_model: int = 128,
        n_layers: int = 2,
        n_heads: int = 4,
        max_length: int = 128,
        eval_batch_size: int = 512,
        dtype: str = "auto",
        device: str = "auto",
        n_threads: int = 1,
        random_state: int = 0,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.revision = revision
        self.epochs = epochs
        self.stage2_epochs = stage2_epochs
        self.batch_size = batch_size
        self.stage2_batch_size = stage2_batch_size
        self.lr = lr
        self.stage2_lr = stage2_lr
        self.weight_decay = weight_decay
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.max_length = max_length
        self.eval_batch_size = eval_batch_size
        self.dtype = dtype
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state

    def validate(self) -> None:
        """Checks values only: without the `hf` extra, `imlbench list` still works and a run says
        what to install (in `prepare`)."""
        super().validate()
        self.require_at_least_one("d_model", "n_layers", "n_heads", "max_length", "eval_batch_size")
        if not self.model or not self.tokenizer:
            raise ValueError("model and tokenizer must be non-empty names")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}")
        if self.weight_decay < 0:
            raise ValueError("weight_decay must be non-negative")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r} is not valid; valid: {', '.join(DTYPES)}")

    # --- loading -------------------------------------------------------------------------------

    def prepare(self, data: TextData) -> None:
        """Load (or build) the tokenizer and the weights for this data. `fit` calls it; it is public
        so that a freshly initialized model can be saved (`save_pretrained`) and rerun as model=DIR."""
        require_hf()
        super().prepare(data)
        n_embeddings = self.model_.get_input_embeddings().num_embeddings
        if len(self.tokenizer_) > n_embeddings:
            raise ValueError(
                f"tokenizer {self.tokenizer_name_!r} has {len(self.tokenizer_)} tokens but model "
                f"{self.model!r} embeds only {n_embeddings}"
            )
        label_keys(self.tokenizer_, self.tokenizer_name_, data.label_texts)  # fail now, not at the first evaluation
        self.run_info_ = run_info(self, from_hub=self.model != BUILTIN and not Path(self.model).expanduser().is_dir())

    def build_model(self, data: TextData):
        """The tokenizer first (the built-in model's vocabulary is its size), then the model; the
        base calls this under the run's seeded torch RNG, which initializes the built-in model."""
        self.dtype_ = {
            "auto": torch.bfloat16 if self.device_.type == "cuda" else torch.float32,
            "float32": torch.float32,
            "bfloat16": torch.bfloat16,
        }[self.dtype]
        builtin = self.tokenizer == WORD_LEVEL or (self.tokenizer == "auto" and self.model == BUILTIN)
        self.tokenizer_name_ = WORD_LEVEL if builtin else self.model if self.tokenizer == "auto" else self.tokenizer
        self.tokenizer_ = self._load_tokenizer(data, builtin)
        self.eos_id_ = self.tokenizer_.eos_token_id
        if self.eos_id_ is None:
            raise ValueError(f"tokenizer {self.tokenizer_name_!r} has no end-of-text token")
        self.pad_id_ = self.tokenizer_.pad_token_id if self.tokenizer_.pad_token_id is not None else self.eos_id_
        return self._load_model()

    def _load_tokenizer(self, data: TextData, builtin: bool):
        if builtin:
            return word_level_tokenizer(
                [*data.lexicon, *data.label_texts, *data.tag_texts, *data.prompts, *data.completions]
            )
        if self.tokenizer == "auto":
            return load_pretrained("tokenizer", self.model, self.revision, "model")
        return load_pretrained("tokenizer", self.tokenizer, self.revision, "tokenizer")

    def _load_model(self):
        if self.model != BUILTIN:
            return load_pretrained("model", self.model, self.revision, "model")
        return tiny_gpt_neox(
            len(self.tokenizer_), self.d_model, self.n_layers, self.n_heads, self.max_length, self.eos_id_, self.pad_id_
        )

    def save_pretrained(self, directory: str | Path) -> None:
        """Save the current weights and tokenizer where `model=DIR` can load them."""
        self.model_.save_pretrained(directory)
        self.tokenizer_.save_pretrained(directory)

    # --- encoding ------------------------------------------------------------------------------

    def tensors(self, data: TextData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """prompt + completion + end-of-text, right-padded: (ids, lengths, loss mask on completions)."""
        prompts = encode(self.tokenizer_, self.tokenizer_name_, data.prompts, special=True)
        completions = encode(self.tokenizer_, self.tokenizer_name_, data.completions, special=False)
        lengths = np.array([len(p) + len(c) + 1 for p, c in zip(prompts, completions)], dtype=np.int64)
        limit = self.model_.config.max_position_embeddings
        if lengths.max(initial=0) > limit:
            raise ValueError(f"a document of {lengths.max()} tokens exceeds the model's {limit} positions")
        ids = np.full((len(lengths), lengths.max(initial=1)), self.pad_id_, dtype=np.int64)
        mask = np.zeros(ids.shape, dtype=bool)
        for row, (p, c) in enumerate(zip(prompts, completions)):
            ids[row, : lengths[row]] = [*p, *c, self.eos_id_]
            mask[row, len(p) : lengths[row]] = True
        return self._as_tensor(ids, np.int64), self._as_tensor(lengths, np.int64), self._as_tensor(mask, bool)

    def _cuda_devices(self) -> list[int]:
        if self.device_.type != "cuda":
            return []
        return [self.device_.index if self.device_.index is not None else torch.cuda.current_device()]

    def _autocast(self):
        if self.dtype_ == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_.type, dtype=self.dtype_)

    # --- training (the loop is TorchLearner's) --------------------------------------------------

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.model_.parameters(), lr=self.lr, betas=(0.9, 0.98), weight_decay=self.weight_decay, **self.fused()
        )

    def make_batch(self, tensors: tuple[torch.Tensor, ...], rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The rows cut to their longest document: the right padding beyond it carries no loss."""
        ids, lengths, mask = tensors
        width = int(lengths[rows].max())
        return ids[rows, :width], lengths[rows], mask[rows, :width]

    @contextlib.contextmanager
    def epoch_rng(self) -> Iterator[None]:
        """Dropout (models that have it) draws from a torch generator seeded from the run's stream
        once per epoch, not from the global one."""
        with torch.random.fork_rng(devices=self._cuda_devices()):
            torch.manual_seed(int(self.rng_.integers(2**63)))
            yield

    def batch_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The mean cross-entropy over all loss tokens of the batch (so a long completion weighs more
        than in the mean of `example_loss`). No attention mask: padding sits to the right of every
        document and causal attention never looks right, so loss tokens see only their document."""
        ids, _, mask = batch
        m = mask[:, 1:]
        with self._autocast():
            logits = self.model_(input_ids=ids[:, :-1], use_cache=False).logits
        return F.cross_entropy(logits[m].float(), ids[:, 1:][m])

    output_layer = ("embed_out", "lm_head")  # GPT-NeoX's untied output layer; other models' name

    def example_loss(
        self, batch: tuple[torch.Tensor, ...], params: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Each document's mean cross-entropy over its loss tokens; no shape depends on the data,
        so that `torch.func.vmap` can take per-example gradients."""
        ids, _, mask = batch
        with self._autocast():
            logits = self._forward(params, ids[:, :-1], use_cache=False).logits
        per_token = F.cross_entropy(logits.float().transpose(1, 2), ids[:, 1:], reduction="none")
        weight = mask[:, 1:].to(per_token.dtype)
        return (per_token * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1)

    # --- prediction ----------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, queries: TextQueries) -> np.ndarray:
        """Greedy answers mapped back to labels; NO_ANSWER where the text is no label's."""
        self._inference()
        keys, longest = label_keys(self.tokenizer_, self.tokenizer_name_, queries.label_texts)
        prompts = encode(self.tokenizer_, self.tokenizer_name_, queries.prompts, special=True)
        order = np.argsort([len(p) for p in prompts], kind="stable")  # similar lengths, little padding
        predicted = np.full(len(prompts), NO_ANSWER, dtype=np.int64)
        for start in range(0, len(order), self.eval_batch_size):
            rows = order[start : start + self.eval_batch_size]
            for row, text in zip(rows, self.generate([prompts[i] for i in rows], longest + 1)):
                if text in keys:
                    predicted[row] = queries.label_space[keys[text]]
        return predicted

    @torch.no_grad()
    def predict_scores(self, queries: TextQueries, candidates: np.ndarray) -> np.ndarray:
        """Log-probability of each candidate label's tokens after each prompt (teacher-forced; the
        end-of-text is not counted). One forward pass per distinct proper prefix of the labels'
        tokens: one pass for labels of one token each (the built-in word-level tokenizer)."""
        self._inference()
        where = {int(v): i for i, v in enumerate(queries.label_space)}
        missing = [int(c) for c in candidates if int(c) not in where]
        if missing:
            raise ValueError(f"candidate label id {missing[0]} has no text in the queries' label space")
        labels = encode(
            self.tokenizer_,
            self.tokenizer_name_,
            [" " + queries.label_texts[where[int(c)]].strip() for c in candidates],
            special=False,
        )
        steps: dict[tuple[int, ...], list[tuple[int, int]]] = {}  # prefix -> (candidate column, next token)
        for column, ids in enumerate(labels):
            for k, token in enumerate(ids):
                steps.setdefault(tuple(ids[:k]), []).append((column, token))
        prompts = encode(self.tokenizer_, self.tokenizer_name_, queries.prompts, special=True)
        scores = np.zeros((len(prompts), len(labels)))
        for prefix, pairs in steps.items():
            columns, tokens = (np.array(v) for v in zip(*pairs))
            for start in range(0, len(prompts), self.eval_batch_size):
                ids, attention = left_padded(
                    self.pad_id_,
                    self.device_,
                    [p + list(prefix) for p in prompts[start : start + self.eval_batch_size]],
                )
                positions = (attention.cumsum(dim=1) - 1).clamp(min=0)  # left padding shifts no position
                with self._autocast():
                    logits = self.model_(input_ids=ids, attention_mask=attention, position_ids=positions).logits
                logp = torch.log_softmax(logits[:, -1].float(), dim=-1).cpu().numpy()
                scores[start : start + len(ids), columns] += logp[:, tokens]  # a prefix lists a column once
        return scores

    @torch.no_grad()
    def hidden_states(self, queries: TextQueries) -> list[np.ndarray]:
        """The diagnostics interface: per layer (embeddings first), the hidden state at each prompt's
        last token, the position whose output starts the answer. Left padding puts it last."""
        self._inference()
        prompts = encode(self.tokenizer_, self.tokenizer_name_, queries.prompts, special=True)
        layers: list[list[np.ndarray]] = []
        for start in range(0, len(prompts), self.eval_batch_size):
            ids, attention = left_padded(self.pad_id_, self.device_, prompts[start : start + self.eval_batch_size])
            with self._autocast():
                out = self.model_(input_ids=ids, attention_mask=attention, output_hidden_states=True)
            for i, h in enumerate(out.hidden_states):
                if len(layers) <= i:
                    layers.append([])
                layers[i].append(h[:, -1].float().cpu().numpy())
        return [np.concatenate(parts) for parts in layers]

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[str]:
        """Greedy continuations of left-padded prompts, cut at end-of-text, decoded and stripped."""
        ids, attention = left_padded(self.pad_id_, self.device_, prompts)
        width = ids.shape[1]
        with self._autocast():
            out = self.model_.generate(
                input_ids=ids,
                attention_mask=attention,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.pad_id_,
                eos_token_id=self.eos_id_,
            )
        texts = []
        for row in out[:, width:].tolist():
            end = row.index(self.eos_id_) if self.eos_id_ in row else len(row)
            texts.append(self.tokenizer_.decode(row[:end]).strip())
        return texts
