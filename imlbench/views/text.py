"""The `text` view (PROTOCOL §4): documents as strings, for language models.

A document is a *prompt* and a *completion*; a language model is trained on their concatenation with
the loss on the completion only. As in the tokens view, a definition's completion is its variable
and its value (`tag1` + ` v0007 e0042`), a question's is its answer (`ask3 v0007` + ` e0042`).
A query is the text up to the answer (`tag1 v0007`, `ask3 v0007`) and carries no completion; the
learner generates one, maps it back to a label by exact match of its text, and answers `NO_ANSWER`
when the text is no label's.

`render_generic` gives every task with a vocabulary (every `tokens` task) a text view made of its
token names; a task may render natural language instead (`synthetic-defs-text`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from imlbench.core.protocol import DEFINITION, HIDDEN, NO_ANSWER, Examples, TaskData  # noqa: F401 (NO_ANSWER re-exported)
from imlbench.views.base import View, subject_groups

# What `hide_tags` writes in place of every tag: one string for all sources.
NEUTRAL_TAG = "Source"


@dataclass(frozen=True)
class TextData:
    """`text` view training data.

    `label_texts[i]` is the text of label `label_space[i]`; `tag_texts` are the strings that render
    the tags (what a tag-blind control hides); `y` is each document's label (the value of a
    definition, the answer of a question). `lexicon` lists strings that together hold every word the
    task can render, stage 2 and test included (aliases, names, tags, phrasings): a tokenizer built
    from scratch at stage 1 needs them, as the tokens view hands over its whole vocabulary size. It
    is sorted and holds no pairing of alias and value, so it reveals no answer.
    """

    prompts: tuple[str, ...]
    completions: tuple[str, ...]
    y: np.ndarray
    label_space: np.ndarray
    label_texts: tuple[str, ...]
    tag_texts: tuple[str, ...]
    lexicon: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_labels(self.label_space, self.label_texts)
        if not len(self.prompts) == len(self.completions) == len(self.y):
            raise ValueError(
                f"TextData has {len(self.prompts)} prompts, {len(self.completions)} completions "
                f"and {len(self.y)} labels; they must match"
            )


@dataclass(frozen=True)
class TextQueries:
    """Prompts that end where the answer begins; no completions."""

    prompts: tuple[str, ...]
    label_space: np.ndarray
    label_texts: tuple[str, ...]
    tag_texts: tuple[str, ...]
    lexicon: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_labels(self.label_space, self.label_texts)


def check_labels(label_space: np.ndarray, label_texts: tuple[str, ...]) -> None:
    """Exact-match decoding needs one distinct, non-empty text per label."""
    if len(label_space) != len(label_texts):
        raise ValueError(f"{len(label_space)} labels but {len(label_texts)} label texts")
    stripped = [t.strip() for t in label_texts]
    if "" in stripped or len(set(stripped)) != len(stripped):
        raise ValueError("label texts must be non-empty and distinct (after stripping whitespace)")


def is_query(examples: Examples) -> bool:
    """Examples whose targets are all HIDDEN are queries (the rule of `views._is_query`)."""
    hidden = examples.target == HIDDEN
    if hidden.any() and not hidden.all():
        raise ValueError("examples mix hidden and visible targets")
    return bool(len(examples)) and bool(hidden.all())


# (kind, relation, subject, operands) -> (prompt, middle): a document is prompt + middle + " " + answer;
# the completion is middle + " " + answer (loss), a query is prompt + middle.
Layout = Callable[[int, int, int, list[int]], tuple[str, str]]


def render(
    examples: Examples,
    layout: Layout,
    label_space: np.ndarray,
    label_texts: tuple[str, ...],
    tag_texts: tuple[str, ...],
    lexicon: tuple[str, ...] = (),
) -> TextData | TextQueries:
    """Render examples as documents (training) or as prompts that end where the answer begins."""
    query = is_query(examples)
    text_of = dict(zip(label_space.tolist(), label_texts))
    operands = examples.operands if examples.operands is not None else np.full((len(examples), 0), -1)
    prompts, completions = [], []
    for kind, relation, subject, target, ops in zip(
        examples.kind.tolist(),
        examples.relation.tolist(),
        examples.subject.tolist(),
        examples.target.tolist(),
        operands.tolist(),
    ):
        prompt, middle = layout(kind, relation, subject, [o for o in ops if o >= 0])
        if query:
            prompts.append(prompt + middle)
        else:
            prompts.append(prompt)
            completions.append(f"{middle} {text_of[target]}")
    if query:
        return TextQueries(tuple(prompts), label_space, label_texts, tag_texts, lexicon)
    return TextData(
        tuple(prompts),
        tuple(completions),
        examples.target.astype(np.int64),
        label_space,
        label_texts,
        tag_texts,
        lexicon,
    )


def render_generic(data: TaskData, examples: Examples) -> TextData | TextQueries:
    """Token names joined by spaces: definitions `tag` + ` variable value`, questions and facts
    `phrasing variable [operands]` + ` answer` (the loss falls where the tokens view puts it)."""
    from imlbench.views.base import PAD

    names = data.vocab.tokens

    def layout(kind: int, relation: int, subject: int, operands: list[int]) -> tuple[str, str]:
        if kind == DEFINITION:
            return names[relation], f" {names[subject]}"
        return " ".join([names[relation], names[subject], *(names[o] for o in operands)]), ""

    label_texts = tuple(names[i] for i in data.label_space.tolist())
    tag_texts = tuple(names[i] for i in data.vocab.ids("tag").tolist())
    lexicon = tuple(sorted(t for t in names if t != PAD))
    return render(examples, layout, data.label_space, label_texts, tag_texts, lexicon)


def hide_tags(x: TextData | TextQueries) -> TextData | TextQueries:
    """Every tag text replaced by NEUTRAL_TAG (as whole words), so all sources read alike."""
    if not x.tag_texts:
        raise ValueError("tag-blind needs tag texts to hide, and this text data has none")
    alternatives = "|".join(re.escape(t) for t in sorted(x.tag_texts, key=len, reverse=True))
    pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")
    hidden = {
        "prompts": tuple(pattern.sub(NEUTRAL_TAG, p) for p in x.prompts),
        "tag_texts": (NEUTRAL_TAG,),
        "lexicon": tuple(sorted({*(t for t in x.lexicon if t not in x.tag_texts), NEUTRAL_TAG})),
    }
    if isinstance(x, TextData):
        hidden["completions"] = tuple(pattern.sub(NEUTRAL_TAG, c) for c in x.completions)
    return replace(x, **hidden)


class TextView(View):
    """The `text` view: strings in, strings out. The tag is its own string, so a tag-blind control
    can hide it. Every tokens task offers it through the generic rendering."""

    name = "text"
    data_class = TextData
    queries_class = TextQueries
    tagged = True

    def encode(self, data: TaskData, examples: Examples) -> TextData | TextQueries:
        return render_generic(data, examples)

    def n_rows(self, x: TextData | TextQueries) -> int:
        return len(x.prompts)

    def labels(self, data: TextData) -> np.ndarray:
        return np.asarray(data.y)

    def hide_tags(self, x: TextData | TextQueries) -> TextData | TextQueries:
        return hide_tags(x)


TEXT = TextView()  # the instance the entry point `text` names


def as_context(prompt: str, completion: str) -> str:
    """A whole document as it precedes a later prompt in one context (one per line): the one layout
    that `pack_text_by_subject` trains on and the in-context test asks in."""
    return prompt + completion + "\n"


def pack_text_by_subject(data: TextData, examples: Examples, per_sequence: int) -> TextData:
    """The text view's `context_docs`: documents about one subject (`subject_groups`) share a context.
    Each document stays one row with the loss on its own completion, its prompt preceded by the
    earlier documents of its group, whole (`prompt + completion`, one per line): every document is
    trained once, and a question after its variable's definition is trained at the positions the
    in-context test uses."""
    prompts, completions, y = [], [], []
    for group in subject_groups(examples, per_sequence):
        context = ""
        for row in group:
            prompts.append(context + data.prompts[row])
            completions.append(data.completions[row])
            y.append(data.y[row])
            context += as_context(data.prompts[row], data.completions[row])
    return replace(data, prompts=tuple(prompts), completions=tuple(completions), y=np.asarray(y))
