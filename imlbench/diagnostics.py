"""`imlbench diagnose`: the paper's three hypotheses measured like the IML effect itself — per
(diagnostic, task, learner, seed) a record (JSON, written atomically, keyed by a hash of what
determines it, reused on rerun), one CSV per diagnostic rebuilt from the records, and a plot with
Student-t CIs over seeds. The measurements are in `diagnostics_measures`.

Each diagnostic trains the learner exactly as `imlbench run` does for the same seed (same seeds for
data, learner and harness), so its numbers describe the runs on the leaderboard.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imlbench.diagnostics_measures import gradient_alignment_rows, in_context_rows, probe_rows, sample_variables
from imlbench.protocol import PROTOCOL_VERSION, TAGS
from imlbench.evaluation import Evaluator
from imlbench.records import read_json, run_key, versions, write_record
from imlbench.registry import ImlbenchError, Spec, available, target_class
from imlbench.runner import DEFAULT_THRESHOLD, choose_view, derive_seed, exhaust, fit_until_point
from imlbench.util import safe_name
from imlbench.views import get_view

DIAGNOSTICS_DIR = "diagnostics"
# What each diagnostic needs of a learner: (method of the diagnostics interface, what it provides).
NEEDS = {"gradient-alignment": ("example_loss", "a per-example loss (example_loss with params)"),
         "tag-probe": ("hidden_states", "hidden states (hidden_states)"),
         "in-context": ("predict", "a tokens-view predict")}
SEQUENCE_VIEWS = ("tokens",)
DEFAULT_OPTIONS = {"variables": 32, "every": 1}
HARNESS_STREAM = 3  # derive_seed purpose of the diagnostics' own random choices (0-2: runner)
Progress = Callable[[str], None]


def diagnostic_names() -> list[str]:
    return sorted(NEEDS)


def has_interface(cls: type, diagnostic: str) -> bool:
    """Whether a learner class implements the diagnostics method this diagnostic needs: a torch base
    subclass that overrides it, or any learner that defines it (the Hugging Face learner's
    `hidden_states`)."""
    from imlbench.learners.torch_base import TorchLearner

    if not isinstance(cls, type):
        return False
    method = NEEDS[diagnostic][0]
    if issubclass(cls, TorchLearner):
        return method == "predict" or getattr(cls, method) is not getattr(TorchLearner, method)
    return method != "predict" and callable(getattr(cls, method, None))


def diagnosable(diagnostic: str) -> list[str]:
    """Registered learners that can run `diagnostic` (plugins that fail to load are left out)."""
    names = []
    for name in available("learner"):
        try:
            if has_interface(target_class("learner", name), diagnostic):
                names.append(name)
        except ImlbenchError:
            pass
    return names


def check(diagnostic: str, learner_spec: Spec, task_spec: Spec) -> str:
    """The view the learner reads on the task; a one-line ImlbenchError when it cannot be diagnosed."""
    if diagnostic not in NEEDS:
        raise ImlbenchError(f"unknown diagnostic {diagnostic!r}; valid: {', '.join(diagnostic_names())}")
    learner = learner_spec.build()
    if not has_interface(type(learner), diagnostic):
        raise ImlbenchError(f"learner {learner_spec.name!r} cannot be diagnosed: {diagnostic} needs a "
                            f"learner with {NEEDS[diagnostic][1]}; diagnosable: {', '.join(diagnosable(diagnostic))}")
    if not learner.supports("continue_training"):
        raise ImlbenchError(f"learner {learner_spec.name!r} cannot continue training, which {diagnostic} needs")
    view = choose_view(learner, task_spec.build(), learner_spec.name, task_spec.name)
    if diagnostic == "in-context" and view not in SEQUENCE_VIEWS:
        raise ImlbenchError(f"in-context needs a sequence view ({', '.join(SEQUENCE_VIEWS)}) to put a definition "
                            f"before its question, but learner {learner_spec.name!r} reads the {view} view of "
                            f"task {task_spec.name!r}; use a learner that reads tokens (e.g. transformer)")
    return view


@dataclass(frozen=True)
class DiagnoseRequest:
    diagnostic: str
    task: Spec
    learner: Spec
    seed: int
    options: dict[str, Any] = field(default_factory=dict)
    threshold: float = DEFAULT_THRESHOLD

    def identity(self) -> dict[str, Any]:
        return {"diagnostic": self.diagnostic, "options": self.options, "task": self.task.to_dict(),
                "learner": self.learner.to_dict(), "seed": self.seed,
                "protocol": {"version": PROTOCOL_VERSION, "definition_threshold": self.threshold}}

    def path(self, out_dir: Path) -> Path:
        return (Path(out_dir) / DIAGNOSTICS_DIR / "records" / self.diagnostic / safe_name(self.task.name)
                / safe_name(self.learner.name) / f"seed{self.seed}-{run_key(self.identity())}.json")


def measure(request: DiagnoseRequest, progress: Progress | None = None) -> dict[str, Any]:
    """Train as `imlbench run` does and measure; returns the result part of the record."""
    task, learner = request.task.build(), request.learner.build()
    view = check(request.diagnostic, request.learner, request.task)
    if "random_state" in learner.get_params():
        learner.set_params(random_state=derive_seed(request.seed, 1))
    data = task.generate(request.seed)
    rng = np.random.default_rng(derive_seed(request.seed, HARNESS_STREAM))
    if request.diagnostic == "gradient-alignment":
        return _during_stage1(request, task, learner, view, data, rng, progress)
    return _after_stages(request, task, learner, view, data, rng, progress)


def _during_stage1(request, task, learner, view, data, rng, progress) -> dict[str, Any]:
    """Gradient alignment after the first stage-1 epoch and after every `every`-th one."""
    every, limit = request.options["every"], request.options["variables"]
    samples = {tag: sample_variables(data, s, limit, rng)
               for tag, s in zip(TAGS, ("d1consis", "d2consis", "d3consis"))}
    stage1 = task.encode(get_view(view), data, data.stage1, "stage1")
    seconds = {"fit": 0.0, "diagnostic": 0.0}
    fit, rows, n_measured, checkpoint = learner.fit(stage1), [], 0, 0
    try:
        while True:
            t = time.perf_counter()
            try:
                next(fit)
            except StopIteration:
                break
            finally:
                seconds["fit"] += time.perf_counter() - t
            checkpoint += 1
            if checkpoint == 1 or checkpoint % every == 0:
                t = time.perf_counter()
                rows += gradient_alignment_rows(learner, task, view, data, samples, checkpoint)
                seconds["diagnostic"] += time.perf_counter() - t
                n_measured += 1
                if progress:
                    progress(f"checkpoint {checkpoint}: " + ", ".join(f"{r['tag']} {r['cosine']:+.3f}" for r in rows[-3:]))
    finally:
        fit.close()
    seconds["per_epoch"] = seconds["fit"] / max(checkpoint, 1)
    seconds["per_measured_checkpoint"] = seconds["diagnostic"] / max(n_measured, 1)
    return {"view": view, "rows": rows, "seconds": seconds, "stage1_checkpoints": checkpoint}


def _after_stages(request, task, learner, view, data, rng, progress) -> dict[str, Any]:
    """Tag probe or in-context after stage 1 and at the evaluation point of stage 2 (PROTOCOL §3),
    the stage-2 fit driven and stopped by the same rule as `imlbench run`."""
    evaluator = Evaluator(task, data, view)

    def rows_at(point: str) -> list[dict[str, Any]]:
        if request.diagnostic == "tag-probe":
            return probe_rows(learner, task, view, data, point, request.options["variables"], rng)
        return in_context_rows(learner, data, point, evaluator.test(learner))

    t = time.perf_counter()
    def report(stage: str, checkpoint: int, detail: str) -> None:  # the runner's progress signature
        if progress:
            progress(f"{stage} checkpoint {checkpoint} {detail}".strip())

    exhaust(learner.fit(task.encode(get_view(view), data, data.stage1, "stage1")), "stage1", report)
    rows = rows_at("after_stage1")
    outcome = fit_until_point(learner.continue_fit(task.encode(get_view(view), data, data.stage2, "stage2")),
                              learner, evaluator, "stage2", request.threshold, report)
    rows += rows_at("at_point")
    return {"view": view, "rows": rows, "seconds": {"total": time.perf_counter() - t},
            "evaluation_point": {"stage": outcome.point["stage"], "checkpoint": outcome.curve[-1]["checkpoint"]},
            "definitions_learned": outcome.definitions_learned}


def diagnose_one(request: DiagnoseRequest, out_dir: Path, force: bool = False,
                 progress: Progress | None = None) -> tuple[dict[str, Any], bool]:
    """Run or load one record. A learner's exception becomes an error record, retried on rerun."""
    path = request.path(out_dir)
    if path.exists() and not force:
        record = read_json(path)
        if record["status"] == "ok":
            return record, True
    identity = request.identity()
    record: dict[str, Any] = {"key": run_key(identity), **identity, "versions": versions()}
    try:
        record.update(measure(request, progress))
        record["status"], record["error"] = "ok", None
    except ImlbenchError:
        raise
    except Exception as exc:
        record.update(status="error", error=" ".join(f"{type(exc).__name__}: {exc}".split()))
    write_record(path, record)
    return record, False


def group_label(record: dict[str, Any]) -> str:
    """`learner on task`, plus the options where they differ from the defaults."""
    changed = {k: v for k, v in record["options"].items() if DEFAULT_OPTIONS.get(k) != v}
    extra = f" ({', '.join(f'{k}={v}' for k, v in sorted(changed.items()))})" if changed else ""
    return f"{record['learner']['name']} on {record['task']['name']}{extra}"


def diagnostic_table(out_dir: Path, diagnostic: str) -> pd.DataFrame:
    """Every finished record of one diagnostic under out_dir, one row per measured value."""
    folder = Path(out_dir) / DIAGNOSTICS_DIR / "records" / diagnostic
    rows = []
    for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        if path.name.startswith(".tmp-"):
            continue
        record = read_json(path)
        if record["status"] != "ok":
            continue
        base = {"diagnostic": diagnostic, "group": group_label(record), "task": record["task"]["name"],
                "learner": record["learner"]["name"], "seed": record["seed"],
                "options": json.dumps(record["options"], sort_keys=True)}
        rows += [{**base, **row} for row in record["rows"]]
    return pd.DataFrame(rows)


def write_tables(out_dir: Path, names: list[str]) -> list[Path]:
    """Rebuild `OUT/diagnostics/<name>.csv` for each diagnostic that has finished records."""
    paths = []
    for name in names:
        frame = diagnostic_table(out_dir, name)
        if not frame.empty:
            path = Path(out_dir) / DIAGNOSTICS_DIR / f"{name}.csv"
            frame.to_csv(path, index=False)
            paths.append(path)
    return paths


def plan(diagnostic: str, learner: str, task: str, seeds: list[int], params: list[str],
         options: dict[str, Any], threshold: float = DEFAULT_THRESHOLD) -> list[DiagnoseRequest]:
    """Resolve names and `key=value` overrides (as `imlbench run`); every user error surfaces here."""
    from imlbench.registry import parse_pair, resolve, split_overrides

    if diagnostic not in NEEDS:
        raise ImlbenchError(f"unknown diagnostic {diagnostic!r}; valid: {', '.join(diagnostic_names())}")
    bad = {k: v for k, v in options.items() if not isinstance(v, int) or v < 1}
    if bad:
        raise ImlbenchError(f"diagnostic options must be positive integers, got {bad}")
    pairs = [parse_pair(p) for p in params]
    requests = []
    for task_name in [t.strip() for t in task.split(",") if t.strip()]:
        for learner_name in [n.strip() for n in learner.split(",") if n.strip()]:
            task_over, learner_over = split_overrides(pairs, target_class("task", task_name),
                                                      target_class("learner", learner_name))
            task_spec = resolve("task", task_name, task_over)
            learner_spec = resolve("learner", learner_name, learner_over)
            check(diagnostic, learner_spec, task_spec)
            wanted = {k: options[k] for k in (("variables", "every") if diagnostic == "gradient-alignment"
                                               else ("variables",) if diagnostic == "tag-probe" else ())}
            requests += [DiagnoseRequest(diagnostic, task_spec, learner_spec, s, wanted, threshold) for s in seeds]
    return requests


def diagnose(requests: list[DiagnoseRequest], out_dir: str | Path, force: bool = False,
             progress: Progress | None = None) -> tuple[list[dict[str, Any]], list[Path]]:
    """Run (or reuse) every request; rebuild the CSVs and figures. Returns (records, written paths)."""
    from imlbench.diagnostics_plots import plot_diagnostic

    out_dir = Path(out_dir)
    records = []
    for request in requests:
        label = f"{request.diagnostic}: {request.learner.name} x {request.task.name} seed {request.seed}"
        record, cached = diagnose_one(request, out_dir, force, progress)
        records.append(record)
        if progress:
            progress(f"{label}: {'reused' if cached else record['status']}"
                     + (f" ({record['error']})" if record["status"] != "ok" else ""))
    names = sorted({r.diagnostic for r in requests})
    paths = write_tables(out_dir, names)
    for name in names:
        frame = diagnostic_table(out_dir, name)
        if not frame.empty:
            paths += plot_diagnostic(name, frame, out_dir / DIAGNOSTICS_DIR)
    return records, paths
