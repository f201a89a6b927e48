"""The paper's three hypotheses as measurements on any torch learner with the diagnostics interface
(`model_`, `example_loss(batch, params)`, `hidden_states(queries)`; see `TorchLearner`).

- gradient alignment (hypothesis 3): does a tag-1 definition's gradient point where its questions'
  gradient points more than a tag-2 definition's does? Then SGD on tag-1 definitions also answers
  the questions (Nichol et al.'s argument for first-order meta-learning).
- tag probe (hypothesis 2, selective retrieval): is the tag that defined a variable decodable from
  the hidden state of a question about it?
- in context (hypothesis 1, tag semantics): with the definition right before the question, is a
  tag-2 definition still used less than a tag-1 one?

The measurements run on the harness side, with the answer key: they read the learner, never train
it on anything, and never change its weights, optimizer or random streams.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from imlbench.core.protocol import DEFINITION, SUBSET_CODE, Examples, TaskData, TokenQueries
from imlbench.views.base import PAD, get_view, token_layout
from imlbench.views.text import as_context


def flat_params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable parameter, detached (tied weights appear once, as in `named_parameters`)."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def group_grads(
    learner, batch: tuple[torch.Tensor, ...], group: torch.Tensor, n_groups: int, loss: str = "document"
) -> torch.Tensor:
    """(n_groups, n_parameters): the gradient of each group's mean loss over all trainable
    parameters, `torch.func.vmap` over groups. By linearity it equals the mean of the group's
    per-example gradients, but only one gradient per group is ever held in memory (per-example
    gradients of embedding tables are dense and would dominate the cost). Groups of unequal size
    are padded with weight-0 copies of their first row. `loss` is `document` (`example_loss`, what
    training minimizes) or `answer` (`answer_loss`: the answer token alone)."""
    params = flat_params(learner.model_)
    example_loss = learner.answer_loss if loss == "answer" else learner.example_loss
    counts = torch.bincount(group, minlength=n_groups)
    if int(counts.min()) == 0:
        raise ValueError("every group needs at least one row")
    order = torch.argsort(group, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(int(counts.max()), device=group.device)
    valid = slot[None, :] < counts[:, None]
    index = order[starts[:, None] + torch.where(valid, slot[None, :], 0)]
    weight = valid.to(torch.float32)

    def loss_of_group(p: dict[str, torch.Tensor], w: torch.Tensor, *rows: torch.Tensor) -> torch.Tensor:
        losses = example_loss(rows, p)
        return (losses * w.to(losses.dtype)).sum() / w.sum()

    in_dims = (None,) + (0,) * (len(batch) + 1)
    with warnings.catch_warnings():  # attention has no batching rule on the CPU: correct, only slower
        warnings.filterwarnings("ignore", message="There is a performance drop")
        grads = torch.func.vmap(torch.func.grad(loss_of_group), in_dims=in_dims)(
            params, weight, *(t[index] for t in batch)
        )
    return torch.cat([grads[name].reshape(n_groups, -1) for name in params], dim=1)


def per_example_grads(learner, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """(rows, n_parameters): each row's loss gradient, vmapped (every row its own group)."""
    rows = torch.arange(len(batch[0]), device=batch[0].device)
    return group_grads(learner, batch, rows, len(rows))


def _rows_to_examples(encoded_rows: int, n_examples: int) -> np.ndarray:
    """Which example each encoded row renders (image views stack several renders, grouped by copy)."""
    if n_examples == 0 or encoded_rows % n_examples:
        raise ValueError(f"{encoded_rows} encoded rows for {n_examples} examples")
    return np.tile(np.arange(n_examples), encoded_rows // n_examples)


def grads_by_variable(
    learner,
    task,
    view: str,
    data: TaskData,
    examples: Examples,
    split: str,
    variables: np.ndarray,
    loss: str = "document",
) -> torch.Tensor:
    """(len(variables), n_parameters): the gradient of the mean loss of the rows about each variable."""
    encoded = learner.tensors(task.encode(get_view(view), data, examples, split))
    rows = _rows_to_examples(len(encoded[0]), len(examples))
    index = torch.from_numpy(np.searchsorted(variables, examples.subject[rows])).to(encoded[0].device)
    return group_grads(learner, encoded, index, len(variables), loss)


PARAMETER_GROUPS = ("all", "body", "embeddings")


def parameter_columns(learner) -> dict[str, torch.Tensor]:
    """Which columns of a flat gradient belong to each parameter group: `all`; `body` (neither the
    input embeddings nor the output layer); `embeddings` (the input tables — the transformer's token
    table is also its tied output layer). Groups the model does not have are left out."""
    params = flat_params(learner.model_)
    groups = [learner.parameter_group(name) for name in params]
    sizes = [p.numel() for p in params.values()]
    columns = {}
    for wanted in PARAMETER_GROUPS:
        mask = torch.cat([torch.full((n,), wanted in ("all", g)) for g, n in zip(groups, sizes)])
        if mask.any():
            columns[wanted] = mask
    return columns


def alignment(
    learner, task, view: str, data: TaskData, variables: np.ndarray, loss: str = "document"
) -> dict[str, np.ndarray]:
    """For sorted stage-2 `variables`, per parameter group: per variable, cos(gradient of its
    definition, gradient of the mean loss of its test questions) — whether one SGD step on the
    definition also lowers the loss of the questions (the gradient of the mean loss is the mean of
    the per-question gradients)."""
    defs = data.stage2.select((data.stage2.kind == DEFINITION) & np.isin(data.stage2.subject, variables))
    questions = data.test.select(np.isin(data.test.subject, variables))
    d = grads_by_variable(learner, task, view, data, defs, "stage2", variables, loss)
    q = grads_by_variable(learner, task, view, data, questions, "test", variables, loss)
    return {
        group: F.cosine_similarity(d[:, mask.to(d.device)], q[:, mask.to(q.device)], dim=1).cpu().numpy()
        for group, mask in parameter_columns(learner).items()
    }


def sample_variables(data: TaskData, subset: str, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `limit` variables of a stage-2 subset (sorted), drawn with the run's harness stream."""
    found = np.unique(data.test.subject[data.test.subset == SUBSET_CODE[subset]])
    if len(found) > limit:
        found = np.sort(rng.choice(found, size=limit, replace=False))
    return found


def alignment_losses(learner) -> tuple[str, ...]:
    """The losses a learner's alignment is measured with: the training loss, and the answer-only loss
    where the learner has one."""
    return ("document",) if getattr(type(learner).answer_loss, "not_implemented", False) else ("document", "answer")


def gradient_alignment_rows(
    learner, task, view: str, data: TaskData, samples: dict[str, np.ndarray], checkpoint: int, chunk: int = 16
) -> list[dict[str, Any]]:
    """One row per loss, parameter group and tag at one checkpoint: the mean over the tag's sampled
    variables of the cosine (and their spread); variables go `chunk` at a time to bound memory."""
    learner.model_.eval()
    losses = alignment_losses(learner)
    same = type(learner).answer_loss is type(learner).example_loss  # one target per document: measure once
    rows = []
    for loss in losses[:1] if same else losses:
        for tag, variables in samples.items():
            parts = [
                alignment(learner, task, view, data, variables[i : i + chunk], loss)
                for i in range(0, len(variables), chunk)
            ]
            for group in parts[0]:
                cosines = np.concatenate([part[group] for part in parts])
                row = {
                    "checkpoint": checkpoint,
                    "parameters": group,
                    "tag": tag,
                    "n_variables": int(len(variables)),
                    "cosine": float(cosines.mean()),
                    "cosine_sd": float(cosines.std(ddof=1)) if len(cosines) > 1 else 0.0,
                }
                rows += [{"loss": name, **row} for name in (losses if same else (loss,))]
    return rows


def probe_rows(
    learner,
    task,
    view: str,
    data: TaskData,
    point: str,
    limit: int,
    rng: np.random.Generator,
    folds: int = 5,
    permutations: int = 200,
) -> list[dict[str, Any]]:
    """Cross-validated accuracy, per layer, of a linear probe for the tag (1 or 2) that defined the
    variable a test question asks about, beside its permutation null. Folds split by variable, so the
    probe never recognises a variable it was trained on; but then chance is not 50%: a probe that
    learns nothing predicts its training folds' majority, the test fold's minority. So the chance
    level is measured: the tags shuffled among the variables (`permutations` times, same folds), the
    null's 2.5-97.5% band and the permutation p of the observed accuracy."""
    n = min(
        limit,
        *(len(np.unique(data.test.subject[data.test.subset == SUBSET_CODE[s]])) for s in ("d1consis", "d2consis")),
    )
    chosen = np.concatenate([sample_variables(data, s, n, rng) for s in ("d1consis", "d2consis")])
    questions = data.test.select(np.isin(data.test.subject, chosen))
    labels = (questions.subset == SUBSET_CODE["d2consis"]).astype(int)
    variables, inverse = np.unique(questions.subject, return_inverse=True)
    tag_of_variable = np.zeros(len(variables), dtype=int)
    tag_of_variable[inverse] = labels
    label_sets = np.stack(
        [labels] + [tag_of_variable[rng.permutation(len(variables))][inverse] for _ in range(permutations)]
    )
    layers = learner.hidden_states(task.encode(get_view(view), data, questions.without_targets(), "test"))
    rows = []
    for i, h in enumerate(layers):
        observed, *null = probe_accuracies(h, label_sets, questions.subject, folds)
        null = np.array(null) if null else np.array([math.nan])
        rows.append(
            {
                "point": point,
                "layer": i,
                "n_variables": int(2 * n),
                "n_questions": int(len(labels)),
                "accuracy": float(observed),
                "null_mean": float(null.mean()),
                "null_low": float(np.quantile(null, 0.025)),
                "null_high": float(np.quantile(null, 0.975)),
                "p_permutation": float((1 + np.sum(null >= observed - 1e-12)) / (1 + permutations)),
            }
        )
    return rows


def probe_accuracies(
    features: np.ndarray, label_sets: np.ndarray, groups: np.ndarray, folds: int, ridge: float = 1.0
) -> np.ndarray:
    """Mean accuracy over folds grouped by variable of a ridge-regression probe on standardized
    features (labels as ±1, unpenalized intercept), for every row of `label_sets` at once: the fit is
    linear in the labels, so a permutation null costs one matrix product per fold, not one fit each."""
    from sklearn.model_selection import GroupKFold

    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    targets = 2.0 * label_sets - 1.0  # (sets, n)
    accuracy = np.zeros(len(label_sets))
    splits = list(GroupKFold(n_splits=min(folds, len(np.unique(groups)))).split(x, groups=groups))
    for train, test in splits:
        mean, sd = x[train].mean(0), x[train].std(0)
        sd[sd == 0] = 1.0
        design = np.c_[(x[train] - mean) / sd, np.ones(len(train))]
        penalty = ridge * np.eye(design.shape[1])
        penalty[-1, -1] = 0.0
        weights = np.linalg.solve(design.T @ design + penalty, design.T @ targets[:, train].T)
        scores = np.c_[(x[test] - mean) / sd, np.ones(len(test))] @ weights  # (test, sets)
        accuracy += ((scores > 0) == (label_sets[:, test].T == 1)).mean(0)
    return accuracy / len(splits)


def definitions_of(data: TaskData, questions: Examples) -> Examples:
    """The definition (from stage 1 or stage 2) of each question's variable, row for row."""
    defs = Examples.concat([data.stage1, data.stage2])
    defs = defs.select(defs.kind == DEFINITION)
    order = {int(v): i for i, v in enumerate(defs.subject)}
    return defs.select(np.array([order[int(v)] for v in questions.subject]))


def in_context_queries(data: TaskData, questions: Examples) -> TokenQueries:
    """Each question preceded by its variable's definition (from stage 1 or stage 2), in one
    sequence: `tag variable value phrasing variable ->`, the answer position after it."""
    d_tokens, d_answer = token_layout(data, definitions_of(data, questions))
    q_tokens, q_answer = token_layout(data, questions.without_targets())
    pad_id = data.vocab.id(PAD)
    offset = d_answer + 1  # the definition, value included
    length = int(offset.max()) + q_tokens.shape[1]
    tokens = np.full((len(questions), length), pad_id, dtype=np.int64)
    for i in range(len(questions)):
        tokens[i, : offset[i]] = d_tokens[i, : offset[i]]
        tokens[i, offset[i] : offset[i] + q_tokens.shape[1]] = q_tokens[i]
    return TokenQueries(tokens, offset + q_answer, len(data.vocab), pad_id, data.vocab.ids("tag"))


def in_context_text_queries(task, data: TaskData, questions: Examples):
    """The text view's in-context queries: each question's prompt preceded by its variable's
    definition, whole, on the line before (as `context_docs` lays documents out in training)."""
    render = getattr(task, "render", task.encode)  # one document per row: no packing
    d = render(get_view("text"), data, definitions_of(data, questions), "test")
    q = task.encode(get_view("text"), data, questions.without_targets(), "test")
    prompts = tuple(as_context(dp, dc) + qp for dp, dc, qp in zip(d.prompts, d.completions, q.prompts))
    return replace(q, prompts=prompts)


# What the in-context test asks about: stage-2 variables per tag, and the positive control —
# stage-1 variables defined by tag 1, asked in held-out phrasings (answered well out of context).
IN_CONTEXT_SUBSETS = {"tag1": "d1consis", "tag2": "d2consis", "tag3": "d3consis", "stage1 tag1": "qd1consis"}


def in_context_rows(
    learner, data: TaskData, point: str, out_of_context: dict[str, float], queries: Callable[[Examples], Any]
) -> list[dict[str, Any]]:
    """Accuracy per tag with the definition in context, beside the same questions' accuracy without
    it (the normal run's, at the same point); `queries` lays questions out in context for the
    learner's view (`in_context_queries`, `in_context_text_queries`). `stage1 tag1` is the positive
    control: questions the model answers out of context, asked after their definition, at the
    positions the in-context test uses — high only if those positions were trained (`context_docs`)."""
    rows = []
    for tag, subset in IN_CONTEXT_SUBSETS.items():
        questions = data.test.select(data.test.subset == SUBSET_CODE[subset])
        if not len(questions):
            continue
        predicted = np.asarray(learner.predict(queries(questions)))
        rows.append(
            {
                "point": point,
                "tag": tag,
                "n_questions": int(len(questions)),
                "in_context": float((predicted == questions.target).mean()),
                "out_of_context": float(out_of_context.get(subset, np.nan)),
            }
        )
    return rows
