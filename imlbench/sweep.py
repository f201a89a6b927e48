"""Parameter sweeps: a cartesian grid of runs, each cached like any run, scored per grid point.

A grid point is an ordinary run with parameter overrides, so it is also its own leaderboard row
(`learner[key=value]`) and its records are reused by `imlbench run` and by later sweeps. The sweep
CSV (`OUT/sweeps/<name>.csv`) holds one row per grid point with the standardized score; the swept
values are in columns named `param.<name>` so that plots can tell them from the scores.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from imlbench import api
from imlbench.core.names import safe_name
from imlbench.core.protocol import DEFAULT_THRESHOLD
from imlbench.core.specs import ImlbenchError, parse_value
from imlbench.scoring.verdicts import summarize
from imlbench.store.records import write_atomic
from imlbench.store.results import PARAM_PREFIX, SWEEPS_DIR


def split_values(text: str) -> list[str]:
    """Split `v1,v2,...` at top-level commas only: a TOML list `[1, 2]`, inline table `{a = 1}` or
    quoted string `"a,b"` stays one value."""
    parts, current, depth, quote = [], [], 0, ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == "\\" and quote == '"' and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch in "[{":
            depth += 1
            current.append(ch)
        elif ch in "]}":
            depth -= 1
            current.append(ch)
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    if quote or depth:
        raise ImlbenchError(f"unbalanced quotes or brackets in sweep values {text!r}")
    parts.append("".join(current))
    return [p.strip() for p in parts]


def parse_grid(items: Iterable[str]) -> dict[str, list[Any]]:
    """`["name=v1,v2", ...]` (the CLI's repeated `--param`) -> `{name: [v1, v2]}`, each value read
    as TOML by `parse_value` (`0.5` -> float, `16` -> int, `[1, 2]` -> list, bare words -> str)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ImlbenchError(f"bad --param {item!r}; expected name=v1,v2,... (e.g. tag_reliability=0.5,1.0)")
        if name in grid:
            raise ImlbenchError(f"--param {name!r} given twice; list all its values in one --param")
        texts = split_values(values)
        if any(not t for t in texts):
            raise ImlbenchError(f"empty value in --param {item!r}")
        grid[name] = [parse_value(t) for t in texts]
    if not grid:
        raise ImlbenchError("a sweep needs at least one --param name=v1,v2,...")
    return grid


def _check_grid(grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
    if not isinstance(grid, dict) or not grid:
        raise ImlbenchError("a sweep needs a non-empty grid {name: [values]}")
    checked = {}
    for name, values in grid.items():
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise ImlbenchError(f"sweep parameter {name!r} has no values")
        checked[str(name)] = values
    return checked


def sweep_name(learner: str, task: str, pipeline: str, grid: dict[str, list[Any]]) -> str:
    """File stem naming what was swept; single-valued entries are fixed settings and named with
    their value, so two sweeps of the same parameter under different settings do not collide."""
    parts = []
    for name, values in sorted(grid.items()):
        parts.append(f"{name}={values[0]}" if len(values) == 1 else name)
    return safe_name(f"{learner}_{task}_{pipeline}_" + "_".join(parts))


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def sweep(
    learner: str,
    task: str,
    grid: dict[str, list[Any]],
    seeds: int | Iterable[int] = 10,
    pipeline: str = "two-stage",
    out: str | Path = "results",
    force: bool = False,
    verbose: bool = False,
    name: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    margin: float | None = None,
) -> pd.DataFrame:
    """Run every point of the cartesian `grid` (param overrides) and score each one.

    Every grid point is planned before any run starts, so a bad name or value fails at once. Returns
    one row per grid point (and per learner/task/pipeline when those are lists) with the summary
    columns of `imlbench.scoring.verdicts.summarize`, the per-seed effects, and `param.<name>` columns;
    writes it to `out/sweeps/<name>.csv` and rebuilds `out/leaderboard.csv`. Failed runs are listed
    in `frame.attrs["problems"]`.
    """
    grid = _check_grid(grid)
    names = list(grid)
    points = [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]
    plans = [(point, api.plan(learner, task, seeds, pipeline, point, threshold)) for point in points]
    family = f"sweep: {api.grid_family([r for _, requests in plans for r in requests])} over {', '.join(names)}"
    rows, problems, everything, order = [], [], [], {}
    for i, (point, requests) in enumerate(plans, start=1):
        if verbose:
            shown = ", ".join(f"{k}={_value_text(v)}" for k, v in point.items())
            print(f"grid point {i}/{len(plans)}: {shown}", flush=True)
        records, point_problems = api.execute_plan(requests, out, force, verbose)
        problems += point_problems
        everything += api.declare_family(records, requests, out, family)
        order.update({(r.task.name, r.learner.name, r.pipeline): (i, point) for r in requests})
    summary = summarize(everything, margin)  # the sweep is one family: Holm over all its points
    if not summary.empty:
        summary = summary[summary["family"] == family]
    for _, row in summary.iterrows():  # in the grid's order
        i, point = order.get((row["task"], row["learner"], row["pipeline"]), (len(plans), {}))
        entry = {f"{PARAM_PREFIX}{k}": v for k, v in point.items()}
        entry.update(row.to_dict())
        rows.append((i, entry))
    rows = [entry for _, entry in sorted(rows, key=lambda pair: pair[0])]
    frame = pd.DataFrame(rows)
    for column in frame.columns:  # list-valued parameters (TOML arrays) as their TOML-ish text
        if column.startswith(PARAM_PREFIX) and frame[column].map(lambda v: isinstance(v, (list, dict))).any():
            frame[column] = frame[column].map(str)
    path = Path(out) / SWEEPS_DIR / f"{safe_name(name) if name else sweep_name(learner, task, pipeline, grid)}.csv"
    write_atomic(path, lambda f: frame.to_csv(f, index=False, float_format="%.6g"))
    api.leaderboard(out, margin=margin)
    frame.attrs["problems"] = problems
    frame.attrs["path"] = path
    return frame
