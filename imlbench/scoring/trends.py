"""Ablations: the IML effect against one parameter with everything else fixed — the paper's tag
reliability (dose-response), batch size and model size. Rows of the leaderboard that differ only in
that parameter — whatever their names (`synthetic-defs`, `synthetic-defs[tag_reliability=0.75]`,
`synthetic-defs-null`; `transformer`, `transformer[d_model=64]`) — form one series; its trend is the
least-squares slope of the per-seed effects on the parameter (on log2 of it for sizes: per doubling),
with a t-based 95% CI, and the effect at each level keeps its own scoring-v3 verdict.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from imlbench.scoring.runs import scored
from imlbench.scoring.statistics import ALPHA
from imlbench.scoring.verdicts import summarize
from imlbench.store.records import RunRecord

MIN_LEVELS = 3  # fewer levels make a line, not a trend


@dataclass(frozen=True)
class Ablation:
    """One parameter varied with everything else fixed. `kind` says whose parameter it is; the slope
    is fitted on the value (or its log2, `per_doubling`) and shown per `step` of that scale."""

    name: str
    parameter: str
    kind: str  # "task" | "learner"
    title: str
    axis: str
    per_doubling: bool = False
    step: float = 1.0

    @property
    def unit(self) -> str:
        return "per doubling" if self.per_doubling else f"per +{self.step:g}"

    def x(self, level: float) -> float:
        return math.log2(level) if self.per_doubling else level


DOSE = Ablation(
    "dose-response",
    "tag_reliability",
    "task",
    "Dose-response: tag reliability",
    "tag reliability (share of stage-1 tags that predict usefulness)",
    step=0.5,
)
BATCH = Ablation(
    "batch-size",
    "batch_size",
    "learner",
    "Batch size at equal optimizer steps",
    "stage-1 batch size (log scale)",
    per_doubling=True,
)
SIZE = Ablation("model-size", "d_model", "learner", "Model size", "model width d_model (log scale)", per_doubling=True)
ABLATIONS = (DOSE, BATCH, SIZE)


def _level(record: RunRecord, ablation: Ablation) -> Any:
    return getattr(record, ablation.kind).get("params", {}).get(ablation.parameter)


def _series_key(record: RunRecord, ablation: Ablation) -> str:
    """Everything that must be equal along a series: the targets and parameters of task and learner
    (the varied one and the learner's per-run seed left out), the pipeline and the protocol."""
    parts = []
    for kind in ("task", "learner"):
        spec = getattr(record, kind)
        params = {
            k: v
            for k, v in spec.get("params", {}).items()
            if not (kind == ablation.kind and k == ablation.parameter) and k != "random_state"
        }
        parts.append([spec.get("target"), params])
    return json.dumps([parts, record.pipeline, record.protocol], sort_keys=True, default=str)


def _without(name: str, parameter: str) -> str:
    """A row name with the varied parameter taken out of its brackets: `mlp[a=1,b=2]` -> `mlp[b=2]`."""
    base, _, inside = name.partition("[")
    kept = [
        part
        for part in re.split(r",(?=[A-Za-z_]\w*=)", inside.rstrip("]"))
        if part and not part.startswith(f"{parameter}=")
    ]
    return f"{base}[{','.join(kept)}]" if kept else base


def trend(
    records: Iterable[RunRecord | dict[str, Any]], ablation: Ablation = DOSE, alpha: float = ALPHA
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(levels, trends): one row per series and level (the summary row plus `level`), and one row per
    series with at least MIN_LEVELS levels: slope of the per-seed effect on the parameter, its CI and p."""
    series: dict[str, dict[float, list[RunRecord]]] = {}
    for record in map(scored, records):
        level = _level(record, ablation)
        if record.ok and isinstance(level, (int, float)) and not isinstance(level, bool):
            series.setdefault(_series_key(record, ablation), {}).setdefault(float(level), []).append(record)
    levels, trends = [], []
    for by_level in series.values():
        if len(by_level) < MIN_LEVELS:
            continue
        first = next(iter(by_level.values()))[0]
        if ablation.kind == "task":
            name = f"{first.learner_name} on {first.task['target']} ({first.pipeline})"
        else:
            name = f"{_without(first.learner_name, ablation.parameter)} on {first.task_name} ({first.pipeline})"
        x, y = [], []
        for level in sorted(by_level):
            row = summarize(by_level[level]).iloc[0].to_dict()
            levels.append({"series": name, "level": level, **row})
            effects = [r.effect for r in by_level[level]]
            x += [ablation.x(level)] * len(effects)
            y += effects
        fitted = slope(x, y, alpha)
        trends.append(
            {
                "series": name,
                "learner": first.learner_name,
                "task": first.task["target"],
                "pipeline": first.pipeline,
                "parameter": ablation.parameter,
                "n_levels": len(by_level),
                "n_runs": len(y),
                **fitted,
                **{f"{k}_per_step": v * ablation.step for k, v in fitted.items() if k.startswith("slope")},
            }
        )
    return pd.DataFrame(levels), pd.DataFrame(trends)


def slope(x: list[float], y: list[float], alpha: float = ALPHA) -> dict[str, float]:
    """Least-squares slope of y on x (points per unit of x) with its t-based CI and two-sided p."""
    fit = stats.linregress(np.asarray(x, float), np.asarray(y, float))
    half = stats.t.ppf(1 - alpha / 2, len(x) - 2) * fit.stderr if len(x) > 2 else math.nan
    return {
        "slope": float(fit.slope),
        "slope_ci_low": float(fit.slope - half),
        "slope_ci_high": float(fit.slope + half),
        "p_slope": float(fit.pvalue),
    }
