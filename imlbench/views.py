"""Views: how abstract examples become what a learner consumes (PROTOCOL §4).

Both generic views encode ids by *category*, never by order: the table view uses pandas categoricals
whose categories are fixed task-wide (so stage 1, stage 2 and test share one encoding), and the
tokens view uses vocabulary ids that a model embeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imlbench.protocol import (
    DEFINITION,
    HIDDEN,
    KIND_NAMES,
    Examples,
    TableData,
    TableQueries,
    TaskData,
    TokenData,
    TokenQueries,
)

PAD = "<pad>"
NONE = "none"


def encode(view: str, data: TaskData, examples: Examples):
    """Encode examples for `view`; examples whose targets are HIDDEN become queries."""
    encoders = {"table": encode_table, "tokens": encode_tokens}
    if view not in encoders:
        raise ValueError(f"no generic encoder for view {view!r}; generic views: {', '.join(encoders)}")
    return encoders[view](data, examples)


def _is_query(examples: Examples) -> bool:
    hidden = examples.target == HIDDEN
    if hidden.any() and not hidden.all():
        raise ValueError("examples mix hidden and visible targets")
    return bool(len(examples)) and bool(hidden.all())


def _categorical(ids: np.ndarray, vocab_tokens: tuple[str, ...], category_ids: np.ndarray,
                 none_mask: np.ndarray | None = None) -> pd.Categorical:
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


def encode_table(data: TaskData, examples: Examples) -> TableData | TableQueries:
    X = table_columns(data, examples)
    if _is_query(examples):
        return TableQueries(X)
    return TableData(X, examples.target.astype(np.int64), data.label_space)


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


def encode_tokens(data: TaskData, examples: Examples) -> TokenData | TokenQueries:
    """Loss on the variable and the value of definitions, on the answer of questions and facts."""
    tokens, answer_pos = token_layout(data, examples)
    common = dict(vocab_size=len(data.vocab), pad_id=data.vocab.id(PAD), tag_ids=data.vocab.ids("tag"))
    if _is_query(examples):
        return TokenQueries(tokens, answer_pos, **common)
    loss_mask = np.zeros(tokens.shape, dtype=bool)
    loss_mask[np.arange(len(tokens)), answer_pos] = True
    loss_mask[examples.kind == DEFINITION, 1] = True
    return TokenData(tokens, loss_mask, answer_pos, **common)


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
            blocks.append(sparse.csr_matrix((np.ones(n, np.float32), (np.arange(n), codes)),
                                            shape=(n, len(column.cat.categories))))
        else:
            blocks.append(sparse.csr_matrix(column.to_numpy(np.float32).reshape(-1, 1)))
    return sparse.hstack(blocks, format="csr")


def training_labels(data) -> np.ndarray:
    """The label of every training example, whatever the view."""
    if isinstance(data, TokenData):
        return data.tokens[np.arange(len(data.tokens)), data.answer_pos]
    return np.asarray(data.y)


def n_rows(data) -> int:
    """Number of examples in any view's data or queries."""
    for attribute in ("X", "tokens", "images"):
        if hasattr(data, attribute):
            return len(getattr(data, attribute))
    raise TypeError(f"unknown view data {type(data).__name__}")
