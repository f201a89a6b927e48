"""Dose-response: the IML effect against a task parameter such as `tag_reliability` (the paper's
reliability ablation). Rows of the leaderboard that differ only in that parameter — whatever their
task names (`synthetic-defs`, `synthetic-defs[tag_reliability=0.75]`, `synthetic-defs-null`) — form one
series; its trend is the least-squares slope of the per-seed effects on the parameter, with a t-based
95% CI, and the effect at each level keeps its own scoring-v3 verdict (at 0.5 the tags predict
nothing, so the effect must vanish there).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from imlbench.scoring.statistics import ALPHA
from imlbench.scoring.verdicts import summarize
from imlbench.store.records import Record

DOSE_PARAMETER = "tag_reliability"
MIN_LEVELS = 3  # fewer levels make a line, not a trend


def _series_key(record: Record, parameter: str) -> str:
    params = {k: v for k, v in record.task.get("params", {}).items() if k != parameter}
    return json.dumps([record.task.get("target"), params, record.learner, record.pipeline, record.protocol],
                      sort_keys=True, default=str)


def dose_response(records: Iterable[Record | dict[str, Any]], parameter: str = DOSE_PARAMETER,
                  alpha: float = ALPHA) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(levels, trends): one row per series and level (the summary row plus `level`), and one row per
    series with at least MIN_LEVELS levels: slope of the per-seed effect on the parameter, its CI and p."""
    series: dict[str, dict[float, list[Record]]] = {}
    for record in map(Record.from_json, records):
        level = record.task.get("params", {}).get(parameter)
        if record.ok and isinstance(level, (int, float)) and not isinstance(level, bool):
            series.setdefault(_series_key(record, parameter), {}).setdefault(float(level), []).append(record)
    levels, trends = [], []
    for by_level in series.values():
        if len(by_level) < MIN_LEVELS:
            continue
        first = next(iter(by_level.values()))[0]
        name = f"{first.learner_name} on {first.task['target']} ({first.pipeline})"
        x, y = [], []
        for level in sorted(by_level):
            row = summarize(by_level[level]).iloc[0].to_dict()
            levels.append({"series": name, "level": level, **row})
            effects = [r.effect for r in by_level[level]]
            x += [level] * len(effects)
            y += effects
        trends.append({"series": name, "learner": first.learner_name, "task": first.task["target"],
                       "pipeline": first.pipeline, "parameter": parameter, "n_levels": len(by_level),
                       "n_runs": len(y), **slope(x, y, alpha)})
    return pd.DataFrame(levels), pd.DataFrame(trends)


def slope(x: list[float], y: list[float], alpha: float = ALPHA) -> dict[str, float]:
    """Least-squares slope of y on x (points per unit of x) with its t-based CI and two-sided p."""
    fit = stats.linregress(np.asarray(x, float), np.asarray(y, float))
    half = stats.t.ppf(1 - alpha / 2, len(x) - 2) * fit.stderr if len(x) > 2 else math.nan
    return {"slope": float(fit.slope), "slope_ci_low": float(fit.slope - half),
            "slope_ci_high": float(fit.slope + half), "p_slope": float(fit.pvalue)}
