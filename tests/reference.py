"""Code the tests check the package against, or build published tables with: reference
implementations (plain loops the vectorized code must equal) and the tables the README quotes
from committed records. It lives here, not in the package, because nothing in a run uses it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from imlbench.core.errors import ImlbenchError
from imlbench.core.specs import resolve
from imlbench.outputs.console import _md_table, _num
from imlbench.store.records import RunRecord
from imlbench.tasks.tagged_digits import TaggedDigits
from imlbench.views.base import view_of


def per_example_grads_loop(learner, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The same as `per_example_grads` by a plain loop with autograd: the reference it is tested against."""
    params = [p for p in learner.model_.parameters() if p.requires_grad]
    rows = []
    for i in range(len(batch[0])):
        loss = learner.example_loss(tuple(t[i : i + 1] for t in batch))[0]
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    return torch.stack(rows)


def mean_by_group(values: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Row means per group, accumulated into a fresh tensor (never into a view of `values`: the
    reference code's aliasing bug corrupted its averages exactly there). Used to check `group_grads`."""
    total = torch.zeros((n_groups, values.shape[1]), dtype=values.dtype, device=values.device)
    total.index_add_(0, group, values)
    counts = torch.bincount(group, minlength=n_groups).to(values.dtype).clamp(min=1)
    return total / counts[:, None]


def training_labels(data: Any) -> np.ndarray:
    """The label of every training example, whatever the view."""
    return view_of(data).labels(data)


def render_examples_png(task_name: str, out_path: str | Path, seed: int = 0) -> Path:
    """Save a picture of one definition image and one question image of task `task_name` (any
    name the registry resolves to a TaggedDigits)."""
    task = resolve("task", task_name).build()
    if not isinstance(task, TaggedDigits):
        raise ImlbenchError(f"task {task_name!r} has no images to show (it is a {type(task).__name__})")
    return task.show(out_path, seed)


def stage1_search_table(records: list[RunRecord], settings: dict[str, str]) -> str:
    """A one-seed search of what stage 1 learns, as a Markdown table: per run, its `settings`
    (header -> "task.<param>" or "learner.<param>", resolved values; a bare "task" or "learner" is its
    registered target), the held-out accuracy per stage-1 subset after stage 1 (%), the worst stage-1
    training subset (%) and the run's seconds. Why: a search whose best stage-1 accuracy is the result
    must be read off its records, not typed."""
    shown = ("qd1consis", "qd2incons", "q", "no_qd_baseline")

    def setting(record: RunRecord, where: str) -> Any:
        kind, _, name = where.partition(".")
        part = record.task if kind == "task" else record.learner
        return part["params"][name] if name else part["target"]

    rows = []
    for r in sorted((r for r in records if r.ok), key=lambda r: [setting(r, w) for w in settings.values()]):
        trained = r.raw["train_accuracy"]["after_stage1"]
        rows.append(
            {
                **{header: setting(r, where) for header, where in settings.items()},
                **{name: _num(100 * r.accuracy_after_stage1[name], "{:.1f}") for name in shown},
                "stage-1 training (min)": _num(100 * min(trained.values()), "{:.1f}"),
                "s/run": _num(r.seconds),
            }
        )
    return _md_table(rows)


def budget_table(records: list[RunRecord], learners: list[str], tasks: list[str]) -> str:
    """How each learner's budget covers its evaluation points and what it costs, as a Markdown
    table: per (learner, task, pipeline), the scored stage's budget in checkpoints, the evaluation
    points over the seeds (median and range; seeds whose definitions were never learned counted
    apart), the budget as a multiple of the latest point, the mean seconds of a run and the share
    of them spent evaluating. Why: protocol v2 scores at the point and reports persistence after
    it, so a budget must reach past every seed's point, and its cost is only justified by that."""
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for r in records:
        if r.ok and r.learner_name in learners and r.task_name in tasks and r.pipeline in ("two-stage", "one-stage"):
            groups.setdefault((r.learner_name, r.task_name, r.pipeline), []).append(r)
    rows = []
    for (learner, task, pipeline), runs in sorted(groups.items(), key=lambda g: (learners.index(g[0][0]), g[0][1:])):
        stage = runs[0].evaluation_point["stage"]
        budget = max(e["checkpoint"] for e in runs[0].curve if e["stage"] == stage)
        points = sorted(r.evaluation_point["checkpoint"] for r in runs if r.definitions_learned)
        rows.append(
            {
                "learner": learner,
                "task": task,
                "pipeline": pipeline,
                "seeds": len(runs),
                "budget (checkpoints)": budget,
                "evaluation point, median (range)": f"{points[len(points) // 2]} ({points[0]}–{points[-1]})"
                if points
                else "–",
                "budget ÷ latest point": f"{budget / points[-1]:.1f}" if points else "–",
                "definitions never learned": len(runs) - len(points),
                "s/run": f"{sum(r.seconds for r in runs) / len(runs):.1f}",
                "evaluation": f"{sum(_evaluation_seconds(r) for r in runs) / sum(r.seconds for r in runs):.0%}",
            }
        )
    return _md_table(rows)


def _evaluation_seconds(record: RunRecord) -> float:
    return float(record.raw["measurements"]["seconds"].get("evaluation", 0.0))
