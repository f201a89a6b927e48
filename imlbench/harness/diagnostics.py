"""Diagnostics as objects, run by the one harness.

A `Diagnostic` says what it needs of a learner, trains it as `imlbench run` does for the same seed
(same data, learner and harness streams) and measures at the checkpoints it chooses; its rows go into
a record, one per (diagnostic, task, learner, seed), planned, executed (`--jobs`, supervised workers,
`--timeout`), cached, resumed and recorded by the same code as ordinary runs (`DiagnoseRequest` has
a run request's interface). One CSV per diagnostic is rebuilt from the records, with a figure and a
report table that the diagnostic draws itself.

Adding a diagnostic is one `Diagnostic` subclass and an entry point in the `imlbench.diagnostics`
group; the built-ins register there the same way.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from imlbench.core import seeds
from imlbench.core.errors import ImlbenchError
from imlbench.core.names import DIAGNOSTICS_DIR, safe_name
from imlbench.core.pipelines import get_pipeline
from imlbench.core.protocol import DEFAULT_THRESHOLD, PROTOCOL_VERSION, Learner, Task, TaskData
from imlbench.core.registry import DIAGNOSTICS
from imlbench.core.specs import Spec, available, target_class
from imlbench.harness.evaluation import Evaluator
from imlbench.harness.stages import Progress, exhaust, fit_to_budget, prepare, timed
from imlbench.store.records import code_identity, iter_json_files, read_record, run_key
from imlbench.views.base import get_view


@dataclass
class Context:
    """What a diagnostic measures on: the run's task, learner (built, seeded), view and data, its
    options, the diagnostics' own random stream, and the run's evaluation-point threshold."""

    task: Task
    learner: Learner
    view: str
    data: TaskData
    options: dict[str, Any]
    rng: np.random.Generator
    threshold: float
    progress: Progress

    def encode(self, examples, split: str):
        return self.task.encode(get_view(self.view), self.data, examples, split)


class Diagnostic(ABC):
    """One of the paper's hypotheses as a measurement over seeds."""

    name: ClassVar[str]
    needs: ClassVar[str]  # the learner method it calls (the diagnostics interface)
    needs_text: ClassVar[str]  # what that method provides, for error messages
    options: ClassVar[dict[str, int]] = {}  # its options and their defaults (positive integers)
    views: ClassVar[tuple[str, ...] | None] = None  # the views it can read; None = any
    report_order: ClassVar[int] = 100  # where its section comes in the report (then by name)

    @classmethod
    def supports(cls, learner_cls: type) -> bool:
        """Whether a learner class offers what this diagnostic needs (duck-typed: any learner that
        implements the method, not only the torch base's subclasses)."""
        if not isinstance(learner_cls, type):
            return False
        method = getattr(learner_cls, cls.needs, None)
        if not callable(method):
            return False
        return not getattr(method, "not_implemented", False)

    def check(self, learner: Learner, learner_name: str, view: str, task_name: str) -> None:
        if not self.supports(type(learner)):
            raise ImlbenchError(
                f"learner {learner_name!r} cannot be diagnosed: {self.name} needs a learner with "
                f"{self.needs_text}; diagnosable: {', '.join(diagnosable(self.name))}"
            )
        if not learner.supports("continue_training"):
            raise ImlbenchError(f"learner {learner_name!r} cannot continue training, which {self.name} needs")
        if self.views is not None and view not in self.views:
            raise ImlbenchError(
                f"{self.name} needs a sequence view ({', '.join(self.views)}), but learner "
                f"{learner_name!r} reads the {view} view of task {task_name!r}; use a learner "
                f"that reads {' or '.join(self.views)} (e.g. transformer)"
            )

    @abstractmethod
    def measure(self, ctx: Context) -> dict[str, Any]:
        """Train and measure; returns at least {"rows": [...]} (one dict per measured value)."""

    def train_two_stages(self, ctx: Context, at: Any) -> dict[str, Any]:
        """Stage 1 to its end, `at("after_stage1")`, stage 2 to the evaluation point as the runner
        seeks it, `at("at_point")` (at the end of the budget where the point is never reached).
        Returns the rows and where the point was."""
        evaluator = Evaluator(ctx.task, ctx.data, ctx.view)
        seconds: dict[str, float] = {}
        exhaust(timed(ctx.learner.fit(ctx.encode(ctx.data.stage1, "stage1")), seconds), "stage1", ctx.progress)
        rows = at("after_stage1", evaluator)
        reached = self.stage2_to_point(ctx, evaluator, seconds)
        rows += at("at_point", evaluator)
        return {"rows": rows, **reached, "seconds": seconds}

    @staticmethod
    def stage2_to_point(ctx: Context, evaluator: Evaluator, seconds: dict[str, float]) -> dict[str, Any]:
        """Stage 2 of the fitted learner up to the evaluation point as the runner seeks it (to the end
        of the budget where the point is never reached); where the point was."""
        stage2 = ctx.encode(ctx.data.stage2, "stage2")
        outcome = fit_to_budget(
            timed(ctx.learner.continue_fit(stage2), seconds),
            ctx.learner,
            evaluator,
            "stage2",
            ctx.threshold,
            ctx.progress,
            until_point=True,
        )
        return {
            "evaluation_point": {k: outcome.point[k] for k in ("stage", "checkpoint")},
            "definitions_learned": outcome.definitions_learned,
        }

    def plot(self, frame: pd.DataFrame, stem: Path, formats: Iterable[str]) -> list[Path]:
        """The diagnostic's figure from its CSV's rows; none by default."""
        return []

    def table(self, frame: pd.DataFrame) -> list[str]:
        """The diagnostic's Markdown table for the report; none by default."""
        return []


def get_diagnostic(name: str) -> Diagnostic:
    """A registered diagnostic (entry-point group `imlbench.diagnostics`)."""
    diagnostic = DIAGNOSTICS.get(name)
    diagnostic.name = name
    return diagnostic


def diagnostic_names() -> list[str]:
    return DIAGNOSTICS.names()


def diagnosable(name: str) -> list[str]:
    """Registered learners that can run diagnostic `name` (plugins that fail to load are left out)."""
    cls = type(get_diagnostic(name))
    found = []
    for learner in available("learner"):
        try:
            if cls.supports(target_class("learner", learner)):
                found.append(learner)
        except ImlbenchError:
            pass
    return found


@dataclass(frozen=True)
class DiagnoseRequest:
    """One (diagnostic, task, learner, seed): a request the harness runs like a `RunRequest`."""

    learner_in_harness: ClassVar[bool] = True

    diagnostic: str
    task: Spec
    learner: Spec
    seed: int
    options: dict[str, Any] = field(default_factory=dict)
    threshold: float = DEFAULT_THRESHOLD

    def identity(self) -> dict[str, Any]:
        return {
            "diagnostic": self.diagnostic,
            "options": self.options,
            "task": self.task.to_dict(),
            "learner": self.learner.to_dict(),
            "seed": self.seed,
            "protocol": {"version": PROTOCOL_VERSION, "definition_threshold": self.threshold},
            **code_identity(self.task, self.learner),
        }

    def path(self, out_dir: Path) -> Path:
        return (
            Path(out_dir)
            / DIAGNOSTICS_DIR
            / "records"
            / self.diagnostic
            / safe_name(self.task.name)
            / safe_name(self.learner.name)
            / f"seed{self.seed}-{run_key(self.identity())}.json"
        )

    def label(self) -> str:
        return f"{self.diagnostic}: {self.learner.name} x {self.task.name} seed {self.seed}"

    def summary(self, record: dict[str, Any]) -> str:
        return f"{len(record.get('rows', []))} rows"

    def execute(self, progress: Progress | None = None) -> dict[str, Any]:
        """Train as `imlbench run` does for the same seed and measure; the result part of the record.
        A diagnostic reads the learner's internals (gradients, hidden states), so the learner runs
        in this process, not isolated like a run's (`learner_in_harness`: the worker counts this
        process's memory against the limit)."""
        diagnostic = get_diagnostic(self.diagnostic)
        task, learner, view = prepare(self.task, self.learner, self.seed, get_pipeline("two-stage"))
        diagnostic.check(learner, self.learner.name, view, self.task.name)
        t = time.perf_counter()
        ctx = Context(
            task,
            learner,
            view,
            task.generate(self.seed),
            dict(self.options),
            seeds.harness_rng(self.seed, seeds.DIAGNOSTICS),
            self.threshold,
            progress or (lambda stage, checkpoint, detail: None),
        )
        result = diagnostic.measure(ctx)
        result.setdefault("seconds", {})["total"] = time.perf_counter() - t
        return {"view": view, **result}


def check_options(diagnostic: Diagnostic, options: dict[str, Any]) -> dict[str, int]:
    """The diagnostic's own options (defaults filled in); others are ignored, bad values rejected."""
    chosen = {k: options.get(k, default) for k, default in diagnostic.options.items()}
    bad = {k: v for k, v in chosen.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
    if bad:
        raise ImlbenchError(f"diagnostic options must be positive integers, got {bad}")
    return chosen


def plan_diagnostic(
    name: str, task_spec: Spec, learner_spec: Spec, seed_list: list[int], options: dict[str, Any], threshold: float
) -> list[DiagnoseRequest]:
    """Requests for one (task, learner), checked before any run: a learner the diagnostic cannot
    read fails here with one line."""
    diagnostic = get_diagnostic(name)
    learner = learner_spec.build()
    from imlbench.harness.stages import choose_view

    view = choose_view(learner, task_spec.build(), learner_spec.name, task_spec.name)
    diagnostic.check(learner, learner_spec.name, view, task_spec.name)
    wanted = check_options(diagnostic, options)
    return [DiagnoseRequest(name, task_spec, learner_spec, s, wanted, threshold) for s in seed_list]


def group_label(record: dict[str, Any]) -> str:
    """`learner on task`, plus the options where they differ from the diagnostic's defaults."""
    defaults = get_diagnostic(record["diagnostic"]).options
    changed = {k: v for k, v in record["options"].items() if defaults.get(k) != v}
    extra = f" ({', '.join(f'{k}={v}' for k, v in sorted(changed.items()))})" if changed else ""
    return f"{record['learner']['name']} on {record['task']['name']}{extra}"


def diagnostic_table(out_dir: Path, name: str) -> pd.DataFrame:
    """Every finished record of one diagnostic under out_dir, one row per measured value."""
    rows = []
    for path in iter_json_files(Path(out_dir) / DIAGNOSTICS_DIR / "records" / name):
        record = read_record(path)
        if record["status"] != "ok":
            continue
        base = {
            "diagnostic": name,
            "group": group_label(record),
            "task": record["task"]["name"],
            "learner": record["learner"]["name"],
            "seed": record["seed"],
            "options": json.dumps(record["options"], sort_keys=True),
        }
        rows += [{**base, **row} for row in record["rows"]]
    return pd.DataFrame(rows)


def write_outputs(out_dir: Path, names: Iterable[str], formats: Iterable[str] = ("png", "svg")) -> list[Path]:
    """Rebuild `OUT/diagnostics/<name>.csv` and its figure for each diagnostic with finished records."""
    paths = []
    for name in sorted(set(names)):
        frame = diagnostic_table(out_dir, name)
        if frame.empty:
            continue
        folder = Path(out_dir) / DIAGNOSTICS_DIR
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
        paths += get_diagnostic(name).plot(frame, folder / f"diagnostic-{name}", formats)
    return paths
