"""Views: how abstract examples become what a learner consumes (PROTOCOL §4).

A view is one `View` object in the registry `core.registry.VIEWS`: its name, the data classes a
learner is handed (defined in protocol.py, where plugins import them), its generic encoder, and what
the harness and the controls need to know of its data (rows, labels, how to hide the tag). Adding a
view is one `View` subclass and an entry point in the group `imlbench.views`; tasks list it in their
`views`, learners in theirs.

Both generic views encode ids by *category*, never by order: the table view uses pandas categoricals
whose categories are fixed task-wide (so stage 1, stage 2 and test share one encoding), and the
tokens view uses vocabulary ids that a model embeds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import fields, replace
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from imlbench.core.protocol import (
    DEFINITION,
    HIDDEN,
    KIND_NAMES,
    Examples,
    ImageData,
    ImageQueries,
    TableData,
    TableQueries,
    TaskData,
    TokenData,
    TokenQueries,
)
from imlbench.core.registry import VIEWS

PAD = "<pad>"
NONE = "none"


class View(ABC):
    """One way of presenting examples to a learner. Stateless: one shared instance per view."""

    name: ClassVar[str]
    data_class: ClassVar[type]  # training data a learner is handed (with targets)
    queries_class: ClassVar[type]  # target-free queries
    tagged: ClassVar[bool] = True  # the tag is its own token/column, so a tag-blind control can hide it

    @abstractmethod
    def encode(self, data: TaskData, examples: Examples) -> Any:
        """Encode examples; examples whose targets are all HIDDEN become queries."""

    def n_rows(self, data_or_queries: Any) -> int:
        """Number of examples (default: the length of the first field)."""
        return len(getattr(data_or_queries, fields(data_or_queries)[0].name))

    def labels(self, data: Any) -> np.ndarray:
        """The label of every training example (default: the `y` field)."""
        return np.asarray(data.y)

    def hide_tags(self, data_or_queries: Any) -> Any:
        """The same data without tag information (for a tag-blind control)."""
        raise TypeError(f"the {self.name} view keeps no tag apart, so it cannot hide it")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def register_view(view: View) -> View:
    """Add a view in this process only (a notebook, a test). A view that learners in other processes
    must find registers through the entry-point group `imlbench.views`, as the built-ins do."""
    if not isinstance(view, View):
        raise TypeError(f"register_view takes a View instance, got {type(view).__name__}")
    return VIEWS.register(view.name, view)


def get_view(name: str) -> View:
    return VIEWS.get(name)


def view_of(data: Any) -> View:
    """The view whose data or queries class `data` is."""
    for _, view in VIEWS.items():
        if isinstance(data, (view.data_class, view.queries_class)):
            return view
    raise TypeError(f"{type(data).__name__} is no view's data; views: {', '.join(VIEWS.names())}")


def encode(view: str, data: TaskData, examples: Examples) -> Any:
    """Encode examples with the generic encoder of the view named `view`."""
    return get_view(view).encode(data, examples)


def n_rows(data: Any) -> int:
    """Number of examples in any view's data or queries."""
    return view_of(data).n_rows(data)


def is_query(examples: Examples) -> bool:
    """Whether examples are queries (every target HIDDEN); a mix is an error."""
    hidden = examples.target == HIDDEN
    if hidden.any() and not hidden.all():
        raise ValueError("examples mix hidden and visible targets")
    return bool(len(examples)) and bool(hidden.all())


def _categorical(
    ids: np.ndarray, vocab_tokens: tuple[str, ...], category_ids: np.ndarray, none_mask: np.ndarray | None = None
) -> pd.Categorical:
    """Categorical column over a fixed category list; rows in `none_mask` get the category "none"."""
    names = [vocab_tokens[i] for i in category_ids] + [NONE]
    lookup = np.full(len(vocab_tokens) + 1, len(names) - 1, dtype=np.int64)
    lookup[category_ids] = np.arange(len(category_ids))
    codes = lookup[np.where(ids < 0, len(vocab_tokens), ids)]
    if none_mask is not None:
        codes = np.where(none_mask, len(names) - 1, codes)
    return pd.Categorical.from_codes(codes, categories=names)


def table_columns(data: TaskData, examples: Examples) -> pd.DataFrame:
    """Columns `kind`, `tag`, `relation`, `subject` (+ one 0/1 column per operand token).

    A definition row and a question row about the same variable share the `subject` column; the tag
    is its own column so that a tag-blind learner can drop it.
    """
    vocab = data.vocab
    tag_ids = vocab.ids("tag")
    is_tag = np.isin(examples.relation, tag_ids)
    relation_ids = np.setdiff1d(np.unique(np.concatenate([vocab.ids("phrasing", "relation")])), tag_ids)
    subject_ids = vocab.ids("variable", "entity")
    columns = {
        "kind": pd.Categorical.from_codes(examples.kind, categories=list(KIND_NAMES)),
        "tag": _categorical(examples.relation, vocab.tokens, tag_ids, none_mask=~is_tag),
        "relation": _categorical(examples.relation, vocab.tokens, relation_ids, none_mask=is_tag),
        "subject": _categorical(examples.subject, vocab.tokens, subject_ids),
    }
    frame = pd.DataFrame(columns)
    if examples.operands is not None:
        operand_ids = vocab.ids("operand")
        hot = np.zeros((len(examples), len(operand_ids)), dtype=np.float32)
        position = np.full(len(vocab) + 1, -1, dtype=np.int64)
        position[operand_ids] = np.arange(len(operand_ids))
        rows, cols = np.nonzero(examples.operands >= 0)
        slots = position[examples.operands[rows, cols]]
        keep = slots >= 0
        hot[rows[keep], slots[keep]] = 1.0
        names = [f"op_{vocab.tokens[i]}" for i in operand_ids]
        frame = pd.concat([frame, pd.DataFrame(hot, columns=names, index=frame.index)], axis=1)
    return frame


class TableView(View):
    """Categorical columns (see `table_columns`); the tag is its own column."""

    name, data_class, queries_class = "table", TableData, TableQueries

    def encode(self, data: TaskData, examples: Examples) -> TableData | TableQueries:
        X = table_columns(data, examples)
        if is_query(examples):
            return TableQueries(X)
        return TableData(X, examples.target.astype(np.int64), data.label_space)

    def hide_tags(self, data_or_queries: TableData | TableQueries) -> TableData | TableQueries:
        if "tag" not in data_or_queries.X.columns:
            raise ValueError("tag-blind needs a `tag` column to remove, and this table has none")
        return replace(data_or_queries, X=data_or_queries.X.drop(columns="tag"))


def token_layout(data: TaskData, examples: Examples) -> tuple[np.ndarray, np.ndarray]:
    """Sequences `relation subject [operands...] target`, padded; returns (tokens, answer_pos)."""
    pad_id = data.vocab.id(PAD)
    n = len(examples)
    operands = examples.operands if examples.operands is not None else np.zeros((n, 0), np.int64)
    n_ops = (operands >= 0).sum(axis=1)
    length = 3 + operands.shape[1]
    tokens = np.full((n, length), pad_id, dtype=np.int64)
    tokens[:, 0] = examples.relation
    tokens[:, 1] = examples.subject
    for j in range(operands.shape[1]):
        present = operands[:, j] >= 0
        tokens[present, 2 + j] = operands[present, j]
    answer_pos = 2 + n_ops
    tokens[np.arange(n), answer_pos] = np.where(examples.target >= 0, examples.target, pad_id)
    return tokens, answer_pos


def subject_groups(examples: Examples, per_sequence: int) -> list[list[int]]:
    """Rows about the same subject, up to `per_sequence` per group: definitions first, then the rest
    in their given order; subjects in order of first appearance (how `context_docs` packs)."""
    n = len(examples)
    _, first, inverse = np.unique(examples.subject, return_index=True, return_inverse=True)
    order = np.lexsort((np.arange(n), examples.kind != DEFINITION, first[inverse]))
    groups, current, subject = [], [], None
    for row in order:
        if examples.subject[row] != subject or len(current) == per_sequence:
            if current:
                groups.append(current)
            current, subject = [], examples.subject[row]
        current.append(int(row))
    return groups + [current] if current else groups


def pack_by_subject(data: TokenData, examples: Examples, per_sequence: int) -> TokenData:
    """Training documents about the same subject (`subject_groups`) in one sequence, each document's
    tokens up to its answer, the loss where each document carries it. A model then trains on
    positions past the first document, and on reading a definition from its context (or, after an
    unreliable tag, not) — what an in-context test on trained positions needs."""
    groups = subject_groups(examples, per_sequence)
    lengths = data.answer_pos + 1
    width = max(int(lengths[g].sum()) for g in groups)
    tokens = np.full((len(groups), width), data.pad_id, dtype=np.int64)
    loss_mask = np.zeros((len(groups), width), dtype=bool)
    answer_pos = np.zeros(len(groups), dtype=np.int64)
    for i, group in enumerate(groups):
        at = 0
        for row in group:
            end = at + int(lengths[row])
            tokens[i, at:end] = data.tokens[row, : lengths[row]]
            loss_mask[i, at:end] = data.loss_mask[row, : lengths[row]]
            answer_pos[i] = at + data.answer_pos[row]
            at = end
    return replace(data, tokens=tokens, loss_mask=loss_mask, answer_pos=answer_pos)


class TokensView(View):
    """Token sequences (see `token_layout`); the tag is its own token."""

    name, data_class, queries_class = "tokens", TokenData, TokenQueries

    def encode(self, data: TaskData, examples: Examples) -> TokenData | TokenQueries:
        """Loss on the variable and the value of definitions, on the answer of questions and facts."""
        tokens, answer_pos = token_layout(data, examples)
        common = dict(vocab_size=len(data.vocab), pad_id=data.vocab.id(PAD), tag_ids=data.vocab.ids("tag"))
        if is_query(examples):
            return TokenQueries(tokens, answer_pos, **common)
        loss_mask = np.zeros(tokens.shape, dtype=bool)
        loss_mask[np.arange(len(tokens)), answer_pos] = True
        loss_mask[examples.kind == DEFINITION, 1] = True
        return TokenData(tokens, loss_mask, answer_pos, **common)

    def labels(self, data: TokenData) -> np.ndarray:
        return data.tokens[np.arange(len(data.tokens)), data.answer_pos]

    def hide_tags(self, data_or_queries: TokenData | TokenQueries) -> TokenData | TokenQueries:
        """Every tag becomes the first tag's token."""
        tokens, tag_ids = data_or_queries.tokens, data_or_queries.tag_ids
        return replace(data_or_queries, tokens=np.where(np.isin(tokens, tag_ids), tag_ids[0], tokens))


class ImageView(View):
    """Grayscale pictures. The tag is drawn in the pixels, and a picture is task-specific: a task
    that offers this view renders its own images (Task.encode)."""

    name, data_class, queries_class = "image", ImageData, ImageQueries
    tagged = False

    def encode(self, data: TaskData, examples: Examples) -> ImageData | ImageQueries:
        raise TypeError(
            "the image view has no generic encoder: a task that offers it draws its own "
            "pictures by overriding Task.encode"
        )


def one_hot(X: pd.DataFrame):
    """Sparse one-hot encoding of a table (categoricals one column per category, numerics as is).

    Categories are fixed task-wide, so every split of a task encodes to the same columns.
    """
    from scipy import sparse

    blocks, n = [], len(X)
    for name in X.columns:
        column = X[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes = column.cat.codes.to_numpy()
            blocks.append(
                sparse.csr_matrix(
                    (np.ones(n, np.float32), (np.arange(n), codes)), shape=(n, len(column.cat.categories))
                )
            )
        else:
            blocks.append(sparse.csr_matrix(column.to_numpy(np.float32).reshape(-1, 1)))
    return sparse.hstack(blocks, format="csr")


# the instances the entry points of `imlbench.views` name
TABLE = TableView()
TOKENS = TokensView()
IMAGE = ImageView()
