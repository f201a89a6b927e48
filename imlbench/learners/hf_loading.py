"""Loading for the `hf-causal-lm` learner: the optional extra, the in-process word-level tokenizer,
and `from_pretrained` with one-line errors that say how to run offline."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from imlbench.core.errors import ImlbenchError

SPECIALS = ("[PAD]", "[UNK]", "[EOS]")
WORD_LEVEL = "word-level"  # the in-process tokenizer built from the task's own texts


def require_hf() -> None:
    try:
        import tokenizers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise ImlbenchError(
            f"hf-causal-lm needs the `hf` extra ({exc.name} is missing): pip install 'imlbench[hf]'"
        ) from exc


def word_level_tokenizer(texts: Iterable[str]):
    """One id per distinct word or punctuation mark of `texts` (sorted: the same texts give the same
    ids in every process), after the special tokens [PAD], [UNK], [EOS]."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    split = pre_tokenizers.Whitespace()
    words = sorted({word for text in texts for word, _ in split.pre_tokenize_str(text)} - set(SPECIALS))
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate([*SPECIALS, *words])}, unk_token="[UNK]"))
    backend.pre_tokenizer = split
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")


# (kind, name, revision) -> the error it gave: without the hub, each attempt waits for the network's
# retries (about a minute), and a grid would wait again for every seed.
_FAILED: dict[tuple[str, str, str], str] = {}


def load_pretrained(kind: str, name: str, revision: str, param: str):
    """from_pretrained with one-line errors that say how to run offline (`param` names the
    parameter that chose `name`: a tokenizer "auto" comes from `model`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loader = AutoModelForCausalLM if kind == "model" else AutoTokenizer
    extra = {"dtype": torch.float32} if kind == "model" else {}
    what = kind if param == kind else "the tokenizer of model"
    local = Path(name).expanduser()
    if local.is_dir() or name.startswith((".", "/", "~")):
        if not local.is_dir():
            raise ImlbenchError(
                f"cannot load {what} {name!r}: no such directory; pass a directory written by "
                f"save_pretrained (--param {param}=/path/to/DIR) or a hub name"
            )
        try:
            return loader.from_pretrained(str(local), **extra)
        except (OSError, ValueError, KeyError) as exc:
            raise ImlbenchError(
                f"cannot load {what} {name!r}: {' '.join(str(exc).split())[:300]}; pass a "
                f"directory written by save_pretrained (--param {param}=/path/to/DIR)"
            ) from exc
    if (kind, name, revision) not in _FAILED:
        try:
            return loader.from_pretrained(name, revision=revision, **extra)
        except (OSError, ValueError, KeyError) as exc:
            _FAILED[kind, name, revision] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    raise ImlbenchError(
        f"cannot load {what} {name!r} ({_FAILED[kind, name, revision]}); without the hub, download "
        f"it where the hub is reachable (`hf download {name} --local-dir DIR`) and pass the "
        f"directory: --param {param}=/path/to/DIR"
    )


def encode(tokenizer: Any, name: str, texts: Iterable[str], special: bool) -> list[list[int]]:
    """Token ids of each text; a text with a word outside the vocabulary is an error naming it."""
    texts = list(texts)
    ids = tokenizer(texts, add_special_tokens=special)["input_ids"] if texts else []
    unk = tokenizer.unk_token_id
    for text, row in zip(texts, ids):
        if unk is not None and unk in row:
            words = [w for w in text.split() if unk in tokenizer(w, add_special_tokens=False)["input_ids"]]
            raise ValueError(
                f"tokenizer {name!r} cannot encode {(words or [text])[0]!r} (in {text!r}): it is not in its vocabulary"
            )
    return ids


def label_keys(tokenizer: Any, name: str, label_texts: tuple[str, ...]) -> tuple[dict[str, int], int]:
    """Each label's text as the tokenizer reads it back -> its index; and the longest label's
    token count. Labels follow a space in every completion, so they are encoded after one."""
    unk = tokenizer.unk_token_id
    keys: dict[str, int] = {}
    longest = 1
    for index, text in enumerate(label_texts):
        ids = tokenizer(" " + text.strip(), add_special_tokens=False)["input_ids"]
        if not ids or (unk is not None and unk in ids):
            raise ValueError(
                f"tokenizer {name!r} cannot encode the label {text!r}; use one whose "
                f"vocabulary covers every label (from scratch: tokenizer={WORD_LEVEL})"
            )
        key = tokenizer.decode(ids).strip()
        if key in keys:
            raise ValueError(f"labels {label_texts[keys[key]]!r} and {text!r} read the same after tokenization")
        keys[key] = index
        longest = max(longest, len(ids))
    return keys, longest


def run_info(learner: Any, from_hub: bool) -> dict[str, Any]:
    """What a language-model run says it ran: library versions, model, revision, tokenizer, size."""
    from importlib import metadata

    config = learner.model_.config
    revision = (getattr(config, "_commit_hash", None) or learner.revision) if from_hub else None
    return {
        "transformers": metadata.version("transformers"),
        "tokenizers": metadata.version("tokenizers"),
        "model": learner.model,
        "model_type": config.model_type,
        "revision": revision,
        "tokenizer": learner.tokenizer_name_,
        "vocab_size": len(learner.tokenizer_),
        "n_parameters": sum(p.numel() for p in learner.model_.parameters()),
        "device": str(learner.device_),
        "dtype": str(learner.dtype_).removeprefix("torch."),
    }


def tiny_gpt_neox(
    vocab_size: int, d_model: int, n_layers: int, n_heads: int, max_length: int, eos_id: int, pad_id: int
):
    """The built-in model, untrained: a GPT-NeoX of the given size over the task's own vocabulary."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        intermediate_size=4 * d_model,
        max_position_embeddings=max_length,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    return GPTNeoXForCausalLM(config)


def left_padded(pad_id: int, device: Any, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids padded on the left and their attention mask: every prompt ends in the last column."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    return ids, attention
