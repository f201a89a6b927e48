"""The task half of the conformance checker: generate is seeded and well formed, encode hides the answers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from imlbench.core.protocol import DEFINITION, SUBSET_DESIGN, SUBSETS, Task, TaskData
from imlbench.testing.common import Problems, _built, _error, _fresh, _raise, _same, _span
from imlbench.views.base import get_view

# Built-in tasks at the smallest sizes they accept: every stage and subset present, seconds per check.


GENERATE = "Task.generate(seed) is a pure function of (parameters, seed) returning TaskData (PROTOCOL §2)"


ENCODE = "Task.encode turns examples into the view's data, and queries into target-free queries (PROTOCOL §4)"


# --- tasks
def task_problems(task: Task | type | str, seed: int = 0, task_params: dict[str, Any] | None = None) -> list[str]:
    """One line per failed check of a task: parameters, generate (TaskData, pure in the seed, every
    split and subset present) and encode for every view it offers (queries that hold no answer)."""
    problems = Problems()
    task = _built("task", task, task_params, problems)
    data = None if task is None else _generated(task, seed, problems)
    if data is not None:
        _data_problems(data, problems)
        for view in task.views:
            _encode_problems(task, view, data, problems)
    return list(problems.values())


def _generated(task: Task, seed: int, problems: Problems) -> TaskData | None:
    """The task's data for the seed, checked to be TaskData and the same from a second fresh task."""
    try:
        data, again = task.generate(seed), _fresh(task).generate(seed)
    except Exception as exc:
        return problems.add("generate", f"raised {_error(exc)}", GENERATE)
    if not isinstance(data, TaskData):
        return problems.add("generate", f"returned a {type(data).__name__}, not TaskData", GENERATE)
    problems.add("generate", not _same(data, again) and f"two calls with seed {seed} gave different data", GENERATE)
    return data


def _data_problems(data: TaskData, problems: Problems) -> None:
    """A label space of vocabulary ids, three non-empty splits, stage-2 definitions (they mark the
    evaluation point) and every subset with variables asked about in the test."""
    space = np.asarray(data.label_space)
    ids = len(space) and np.all(np.diff(space) > 0) and space.min() >= 0 and space.max() < len(data.vocab)
    problems.add("label_space", not ids and f"is not sorted, distinct vocabulary ids: {_span(space)}", GENERATE)
    for split in ("stage1", "stage2", "test"):
        examples = getattr(data, split)
        problems.add("splits", not len(examples) and f"{split} is empty", GENERATE)
        outside = not np.isin(examples.target, space).all()
        problems.add("targets", outside and f"{split} has targets outside the label space", GENERATE)
    defined = np.isin(data.stage2.relation[data.stage2.kind == DEFINITION], data.vocab.ids("tag")).any()
    problems.add("splits", not defined and "stage2 holds no tagged definitions", GENERATE)
    sizes = data.info.get("variables_per_subset", {s.name: s.weight for s in SUBSET_DESIGN})
    tested = {SUBSETS[code] for code in np.unique(data.test.subset)}
    missing = ", ".join(s for s in SUBSETS if sizes.get(s, 0) > 0 and s not in tested)
    problems.add("subsets", missing and f"the test split asks nothing about {missing}", GENERATE)


def _encode_problems(task: Task, name: str, data: TaskData, problems: Problems) -> None:
    """Training data of the view's class, queries of its queries class with one row per example,
    and queries that stay the same when the hidden targets change (nothing looks the answers up)."""
    check = f"encode[{name}]"
    try:
        view = get_view(name)
        training = task.encode(view, data, data.stage1, "stage1")
        queries = task.encode(view, data, data.test.without_targets(), "test")
        shuffled = replace(data, test=replace(data.test, target=np.roll(data.test.target, 1)))
        again = task.encode(view, shuffled, shuffled.test.without_targets(), "test")
    except Exception as exc:
        return problems.add(check, f"raised {_error(exc)}", ENCODE)
    if not isinstance(training, view.data_class) or not isinstance(queries, view.queries_class):
        problems.add(
            check,
            f"gave {type(training).__name__} and {type(queries).__name__}, not "
            f"{view.data_class.__name__} and {view.queries_class.__name__}",
            ENCODE,
        )
    elif view.n_rows(queries) != len(data.test):
        problems.add(check, f"gave {view.n_rows(queries)} queries for {len(data.test)} test examples", ENCODE)
    elif not _same(queries, again):
        problems.add(check, "test queries change with the test targets: they leak the answers", ENCODE)


def check_task(task: Task | type | str, seed: int = 0, task_params: dict[str, Any] | None = None) -> None:
    """Raise ConformanceError listing every way `task` breaks the contract (`task_problems`)."""
    _raise(task, task_problems(task, seed, task_params))
