"""Reading a results directory: run groups, sweep tables, searches.

Everything that draws or reports groups results through here, so that one grouping of records (the
leaderboard's: identity minus the seed) is used everywhere and a malformed file is one clear error.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from imlbench.core.errors import ImlbenchError, one_line
from imlbench.core.names import safe_name
from imlbench.store.records import RunRecord

PARAM_PREFIX = "param."
SWEEPS_DIR = "sweeps"


def run_groups(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """Finished records grouped like leaderboard rows, seeds sorted, keyed by a readable label:
    `task-learner-pipeline`, plus a short hash where two groups share those names once made file
    names (e.g. runs that differ only in --threshold, or names `a/b` and `a_b`), so that no figure
    mixes their seeds or overwrites another's."""
    by_key: dict[str, list[RunRecord]] = {}
    for r in records:
        if r.ok:
            by_key.setdefault(r.group_key(), []).append(r)
    names: dict[str, list[str]] = {}  # by file name: `a/b` and `a_b` would share one figure file
    for key, group in by_key.items():
        group.sort(key=lambda r: r.seed)
        names.setdefault(safe_name(group[0].label()), []).append(key)
    labelled = {}
    for keys in names.values():
        for key in keys:
            suffix = f"-{hashlib.sha256(key.encode()).hexdigest()[:6]}" if len(keys) > 1 else ""
            labelled[by_key[key][0].label() + suffix] = by_key[key]
    return dict(sorted(labelled.items()))


# Controls among the built-in learners, for records written before the runner recorded `is_control`
# (the published ones): a reader never imports a record's learner to ask, whatever module it names.
BUILTIN_CONTROLS = frozenset(
    {"majority", "tag-blind", "imlbench.learners.controls:Majority", "imlbench.learners.controls:TagBlind"}
)


def is_control(record: RunRecord) -> bool:
    """Whether the record's learner is a control: as the run recorded it (its class's `is_control`),
    else by the built-in controls' names. Nothing is imported."""
    recorded = record.raw.get("is_control")
    if isinstance(recorded, bool):
        return recorded
    return str(record.learner.get("target", "")) in BUILTIN_CONTROLS


def read_sweep(csv: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(csv)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ImlbenchError(one_line(f"unreadable sweep file {csv}: {type(exc).__name__}: {exc}")) from exc
    needed = {"effect_mean", "ci_low", "ci_high", "verdict", "learner", "task", "pipeline"}
    if frame.empty or needed - set(frame.columns) or not swept_columns(frame):
        raise ImlbenchError(
            f"malformed sweep file {csv}: expected rows with param.* columns and "
            f"{', '.join(sorted(needed))}; rebuild it with `imlbench sweep`"
        )
    return frame


SEARCHES_DIR = "searches"
SEARCH_KEYS = (
    "name",
    "learner",
    "task",
    "pipeline",
    "trials",
    "measured_trials",
    "explore_seeds",
    "confirm_seeds",
    "confirmed",
    "verdict",
)


def search_results(results_dir: Path) -> list[dict[str, Any]]:
    """The `search.json` of every elicitation search under RESULTS/searches, each checked."""
    folder = Path(results_dir) / SEARCHES_DIR
    found = []
    for path in sorted(folder.glob("*/search.json")) if folder.is_dir() else []:
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ImlbenchError(one_line(f"unreadable search file {path}: {type(exc).__name__}: {exc}")) from exc
        missing = [k for k in SEARCH_KEYS if not isinstance(result, dict) or k not in result]
        if missing:
            raise ImlbenchError(f"malformed search file {path}: no {', '.join(missing)}; rerun `imlbench search`")
        found.append({**result, "folder": path.parent})
    return found


def sweep_files(results_dir: Path) -> list[Path]:
    folder = Path(results_dir) / SWEEPS_DIR
    return sorted(p for p in folder.glob("*.csv") if not p.name.startswith(".tmp-")) if folder.is_dir() else []


def effects_of(cell: Any) -> list[float]:
    """The per-seed effects stored as `e1;e2;...` in a leaderboard or sweep CSV cell."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)) or str(cell).strip() == "":
        return []
    return [float(v) for v in str(cell).split(";")]


def swept_columns(frame: pd.DataFrame) -> list[str]:
    """The `param.*` columns of a sweep CSV, those that vary first."""
    columns = [c for c in frame.columns if c.startswith(PARAM_PREFIX)]
    return sorted(columns, key=lambda c: frame[c].astype(str).nunique() <= 1)
