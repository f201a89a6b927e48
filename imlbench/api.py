"""The Python API, mirroring the CLI: plan a grid of runs, run it (resuming), summarize it."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from imlbench.core.pipelines import get_pipeline, pipeline_names
from imlbench.core.protocol import DEFAULT_THRESHOLD
from imlbench.core.specs import (
    SPEC_TYPES,
    ImlbenchError,
    available,
    check_keys,
    did_you_mean,
    parse_pair,
    resolve,
    suite_specs,
)
from imlbench.execution.engines import drive
from imlbench.execution.families import declare_family, grid_family  # noqa: F401  (the API's)
from imlbench.harness import probe
from imlbench.harness.diagnostics import (
    DiagnoseRequest,
    diagnostic_table,
    get_diagnostic,
    plan_diagnostic,
    write_outputs,
)
from imlbench.harness.pipelines import check_pipeline
from imlbench.harness.runner import RunRequest
from imlbench.harness.stages import choose_view
from imlbench.scoring.runs import load_results, load_scored
from imlbench.scoring.verdicts import summarize, write_leaderboard
from imlbench.store.records import load_records
from imlbench.store.validation import MAX_SEEDS, parse_seeds, seed_list  # noqa: F401  (the API's)

DEFAULT_OUT = "results"
DEFAULT_SEEDS = 10
SUITE_KEYS = ("name", "version", "description", "seeds", "pipelines", "tasks", "learners", "params", "controls")


def _names(value: str | Iterable[str], what: str, valid: Iterable[str]) -> list[str]:
    """A comma-separated string or a list -> names; an empty one is an error, not the default."""
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, Iterable) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise ImlbenchError(f"bad {what} {value!r}: expected a name or a list of names; valid: {', '.join(valid)}")
    names = [v.strip() for v in items if v.strip()]
    if not names:
        raise ImlbenchError(f"empty {what} {value!r}: name at least one; valid: {', '.join(valid)}")
    return names


def plan(
    learner: str | Iterable[str],
    task: str | Iterable[str],
    seeds: int | Iterable[int] = DEFAULT_SEEDS,
    pipeline: str | Iterable[str] = "two-stage",
    params: dict[str, Any] | list[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    skip_unsupported: bool = False,
    full_budget: bool = False,
    sealed: bool = False,
) -> list[RunRequest]:
    """Resolve names and parameters into run requests; every user error surfaces here, before any run.

    `params` is a dict (`{"n_entities": 200, "learner.lr": 1e-3}`) or a list of `key=value` strings.
    With `skip_unsupported`, (learner, task, pipeline) combinations that cannot run are left out
    instead of being an error (a suite runs "every learner on every task it supports").
    `full_budget`: every fit runs to its declared budget and the curve is recorded to its end
    (persistence studies); by default a fit ends at the end of its reading window, checkpoint 2p.
    `sealed`: each run's task and `random_state` are drawn with entropy held back from the learner
    (docs/isolation.md), so that no learner can regenerate its test answers from public code.
    """
    for name, flag in (("full_budget", full_budget), ("sealed", sealed)):
        if not isinstance(flag, bool):
            raise ImlbenchError(f"{name} must be true or false, got {flag!r}")
    if params is not None and not isinstance(params, (dict, list, tuple)):
        raise ImlbenchError(f"bad params {params!r}: expected a table of key = value (or key=value strings)")
    pairs = list(params.items()) if isinstance(params, dict) else [parse_pair(str(p)) for p in params or []]
    pipelines = [get_pipeline(p) for p in _names(pipeline, "pipeline", pipeline_names())]
    if not 0 < threshold <= 1:
        raise ImlbenchError(f"threshold must lie in (0, 1], got {threshold}")
    requests, seeds_ = [], seed_list(seeds)
    for task_spec, learner_spec in _specs(task, learner, pairs, skip_unsupported):
        # once per (task, learner); a plugin learner as its probe described it, never built here
        task_obj, learner_obj = task_spec.build(), probe.described(learner_spec)
        for p in pipelines:
            try:
                choose_view(learner_obj, task_obj, learner_spec.name, task_spec.name)
                check_pipeline(p, learner_obj, learner_spec.name)
            except ImlbenchError:
                if skip_unsupported:
                    continue
                raise
            spec = learner_spec.for_pipeline(p.name)
            requests += [RunRequest(task_spec, spec, s, p.name, threshold, full_budget, sealed) for s in seeds_]
    return requests


def _specs(
    task: str | Iterable[str],
    learner: str | Iterable[str],
    pairs: list[tuple[str, Any]],
    only_where_known: bool = False,
) -> list[tuple[Any, Any]]:
    """(task spec, learner spec) for every named pair, parameters split between the two and
    checked. With `only_where_known`, a suite-wide parameter applies where it exists. A learner that
    is not imlbench's own is resolved in a throw-away process (`imlbench.harness.probe`)."""
    tasks, learners = _names(task, "task", available("task")), _names(learner, "learner", available("learner"))
    plugins = [name for name in learners if not probe.trusted(name, pairs)]
    queries = [("pair", t, name, pairs, only_where_known) for t in tasks for name in plugins]
    found = iter(probe.probe(queries) if queries else [])
    specs = []
    for task_name in tasks:
        for learner_name in learners:
            if learner_name in plugins:
                answer = next(found)
                if "task_over" not in answer:
                    raise ImlbenchError(answer["error"])
                task_spec = resolve("task", task_name, answer["task_over"])
                if "error" in answer:
                    raise ImlbenchError(answer["error"])
                specs.append((task_spec, probe.learner_spec(learner_name, answer)))
                continue
            task_over, learner_over = probe.resolve_pair(task_name, learner_name, pairs, only_where_known)
            specs.append((resolve("task", task_name, task_over), resolve("learner", learner_name, learner_over)))
    return specs


CONTROL_KEYS = ("task", "learners", "pipelines")


def suite_controls(suite: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The suite's `[[controls]]` tables: each a task (a null twin), its learners and pipelines."""
    controls = suite.get("controls", [])
    if not isinstance(controls, list) or not all(isinstance(c, dict) for c in controls):
        raise ImlbenchError(f"bad 'controls' in suite {path}: expected [[controls]] tables, got {controls!r}")
    for control in controls:
        check_keys(f"suite {path} [[controls]]", control, CONTROL_KEYS)
        if not isinstance(control.get("task"), str) or not isinstance(control.get("learners"), list):
            raise ImlbenchError(f'suite {path} [[controls]] needs task = "NAME" and learners = [...], got {control!r}')
    return controls


def plan_suite(
    name: str,
    seeds: int | Iterable[int] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    full_budget: bool = False,
    sealed: bool = False,
) -> list[RunRequest]:
    """A suite (`suites/NAME.toml` or a path): every listed learner on every listed task it supports."""
    specs = suite_specs("suite")
    path = Path(name) if name.endswith(".toml") else specs.get(name)
    if path is None or not path.is_file():
        raise ImlbenchError(
            f"unknown suite {name!r}; valid: {', '.join(sorted(specs)) or '(none)'} "
            f"(or a .toml path){did_you_mean(name, specs)}"
        )
    try:
        suite = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ImlbenchError(f"cannot read suite {path}: {type(exc).__name__}: {exc}") from exc
    check_keys(f"suite {path}", suite, SUITE_KEYS)
    missing = [k for k in ("tasks", "learners") if k not in suite]
    if missing:
        raise ImlbenchError(f'suite {path} lists no {" and no ".join(missing)}; add e.g. {missing[0]} = ["..."]')
    tasks, learners = suite["tasks"], suite["learners"]
    for key in ("name", "version", "description", "params"):
        test, expected = SPEC_TYPES[key]
        if key in suite and not test(suite[key]):
            raise ImlbenchError(f"bad {key!r} in suite {path}: expected {expected}, got {suite[key]!r}")
    seeds = suite.get("seeds", DEFAULT_SEEDS) if seeds is None else seeds
    requests = plan(
        learners,
        tasks,
        seeds,
        suite.get("pipelines", ["two-stage"]),
        suite.get("params", {}),
        threshold,
        skip_unsupported=True,
        full_budget=full_budget,
        sealed=sealed,
    )
    for control in suite_controls(suite, path):  # the null twins of the rows the suite expects to be IML
        requests += plan(
            control["learners"],
            control["task"],
            seeds,
            control.get("pipelines", ["two-stage"]),
            suite.get("params", {}),
            threshold,
            full_budget=full_budget,
            sealed=sealed,
        )
    return requests


def execute_plan(
    requests: list[RunRequest],
    out: str | Path = DEFAULT_OUT,
    force: bool = False,
    verbose: bool = True,
    executor: str | Any = None,
    jobs: int | str = 1,
    timeout: float | None = None,
    memory_limit: str | int | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run (or load) every request. Returns (records, one-line problems). A failing run never
    stops the others: its error is recorded and reported. `timeout` (seconds; 0 = none) limits
    each run's wall clock and overrides a learner spec's `timeout`. `memory_limit` ("4G", "512M";
    0 = none; default: the machine's memory / jobs) bounds each run's learner process."""
    return drive(requests, out, force, executor, jobs, quiet=not verbose, timeout=timeout, memory_limit=memory_limit)


def run(
    learner: str | Iterable[str] = "rf",
    task: str | Iterable[str] = "synthetic-defs",
    seeds: int | Iterable[int] = DEFAULT_SEEDS,
    pipeline: str | Iterable[str] = "two-stage",
    params: dict[str, Any] | list[str] | None = None,
    out: str | Path = DEFAULT_OUT,
    force: bool = False,
    threshold: float = DEFAULT_THRESHOLD,
    margin: float | None = None,
    verbose: bool = False,
    executor: str | Any = None,
    jobs: int | str = 1,
    timeout: float | None = None,
    memory_limit: str | int | None = None,
    full_budget: bool = False,
    family: str | None = None,
    sealed: bool = False,
) -> pd.DataFrame:
    """Run a grid and return its summary (one row per task x learner x pipeline).

    `executor`/`jobs` choose where runs execute (see `imlbench.execution.engines.open_executor`); any
    concurrent.futures-style executor object works too. `timeout` limits each run (seconds): a run
    past it is stopped and recorded as an error. The records are in `summary.attrs["records"]`,
    failures in `summary.attrs["problems"]`; the leaderboard of everything under `out` is rewritten
    to `out/leaderboard.csv`. `full_budget`, `sealed`: see `plan`. `family`: the family the rows' p-values are
    adjusted within (PROTOCOL §5; default: this grid, `grid_family`).
    """
    requests = plan(learner, task, seeds, pipeline, params, threshold, full_budget=full_budget, sealed=sealed)
    records, problems = execute_plan(requests, out, force, verbose, executor, jobs, timeout, memory_limit)
    records = declare_family(records, requests, out, family or grid_family(requests))  # PROTOCOL §5
    summary = summarize(records, margin)
    leaderboard(out, margin=margin)
    summary.attrs["records"] = records
    summary.attrs["problems"] = problems
    return summary


def leaderboard(
    out: str | Path = DEFAULT_OUT, csv: str | Path | None = None, margin: float | None = None
) -> pd.DataFrame:
    """Rebuild the leaderboard from every record under `out`; unreadable files are listed in
    `attrs["problems"]` and left untouched."""
    records, problems = load_records(Path(out))
    frame = write_leaderboard(records, Path(csv) if csv else Path(out) / "leaderboard.csv", margin)
    frame.attrs["problems"] = problems
    return frame


def readable_results(results_dir: str | Path = DEFAULT_OUT) -> tuple[list[Any], list[str]]:
    """(every readable run record under `results_dir`, scored; one line per unreadable file): what
    `imlbench report` and `plot` build from, skipping a truncated or edited record instead of
    building nothing. A folder with no finished run to build from raises ImlbenchError."""
    records, problems = load_scored(results_dir)
    if not any(r.ok for r in records):
        load_results(results_dir)  # raises the one line that says why (no folder, nothing finished, ...)
        raise ImlbenchError(f"{results_dir} holds no readable finished run")  # not reached: load_results raised
    return records, problems


def plan_diagnostics(
    diagnostic: str,
    learner: str | Iterable[str],
    task: str | Iterable[str],
    seeds: int | Iterable[int] = DEFAULT_SEEDS,
    params: list[str] | None = None,
    options: dict[str, Any] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[DiagnoseRequest]:
    """Resolve a diagnostic's grid as `plan` does a run's; every user error surfaces here."""
    pairs = [parse_pair(str(p)) for p in params or []]
    seeds_ = seed_list(seeds)
    requests: list[DiagnoseRequest] = []
    for task_spec, learner_spec in _specs(task, learner, pairs):
        requests += plan_diagnostic(diagnostic, task_spec, learner_spec, seeds_, options or {}, threshold)
    return requests


def diagnose(
    requests: list[DiagnoseRequest],
    out: str | Path = DEFAULT_OUT,
    force: bool = False,
    verbose: bool = True,
    executor: str | Any = None,
    jobs: int | str = 1,
    timeout: float | None = None,
    memory_limit: str | int | None = None,
) -> tuple[list[dict[str, Any]], list[str], list[Path]]:
    """Run (or reuse) diagnostic requests through the harness (workers, time limits, records,
    resume), then rebuild each diagnostic's CSV and figure. Returns (records, problems, paths)."""
    records, problems = drive(
        requests, out, force, executor, jobs, quiet=not verbose, timeout=timeout, memory_limit=memory_limit
    )
    paths = write_outputs(Path(out), {r.diagnostic for r in requests})
    return records, problems, paths


def diagnostic_summary(out: str | Path, name: str) -> list[str]:
    """The diagnostic's report table over every record of it under `out` (what `diagnose` prints)."""
    frame = diagnostic_table(Path(out), name)
    return [] if frame.empty else get_diagnostic(name).table(frame)
