"""Loading for the `hf-causal-lm` learner: the optional extra, the in-process word-level tokenizer,
and `from_pretrained` with one-line errors that say how to run offline."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from imlbench.core.errors import ImlbenchError

SPECIALS = ("[PAD]", "[UNK]", "[EOS]")


def require_hf() -> None:
    try:
        import tokenizers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise ImlbenchError(f"hf-causal-lm needs the `hf` extra ({exc.name} is missing): "
                            f"pip install 'imlbench[hf]'") from exc


def word_level_tokenizer(texts: Iterable[str]):
    """One id per distinct word or punctuation mark of `texts` (sorted: the same texts give the same
    ids in every process), after the special tokens [PAD], [UNK], [EOS]."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    split = pre_tokenizers.Whitespace()
    words = sorted({word for text in texts for word, _ in split.pre_tokenize_str(text)} - set(SPECIALS))
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate([*SPECIALS, *words])}, unk_token="[UNK]"))
    backend.pre_tokenizer = split
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                   eos_token="[EOS]")


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
            raise ImlbenchError(f"cannot load {what} {name!r}: no such directory; pass a directory written by "
                                f"save_pretrained (--param {param}=/path/to/DIR) or a hub name")
        try:
            return loader.from_pretrained(str(local), **extra)
        except (OSError, ValueError, KeyError) as exc:
            raise ImlbenchError(f"cannot load {what} {name!r}: {' '.join(str(exc).split())[:300]}; pass a "
                                f"directory written by save_pretrained (--param {param}=/path/to/DIR)") from exc
    if (kind, name, revision) not in _FAILED:
        try:
            return loader.from_pretrained(name, revision=revision, **extra)
        except (OSError, ValueError, KeyError) as exc:
            _FAILED[kind, name, revision] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    raise ImlbenchError(f"cannot load {what} {name!r} ({_FAILED[kind, name, revision]}); without the hub, download "
                        f"it where the hub is reachable (`hf download {name} --local-dir DIR`) and pass the "
                        f"directory: --param {param}=/path/to/DIR")
