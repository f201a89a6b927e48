"""Ablations: the IML effect against one parameter with everything else fixed — the paper's tag
reliability (dose-response), batch size and model size. Rows of the leaderboard that differ only in
that parameter — whatever their names (`synthetic-defs`, `synthetic-defs[tag_reliability=0.75]`,
`synthetic-defs-null`; `transformer`, `transformer[d_model=64]`) — form one series, and the effect at
each level keeps its own scoring-v3 verdict.

The levels of a series share seeds (the same seed numbers run at every level, each drawing its data and
initialization from its seed), so its runs are not independent: a seed that sits 30 points high sits
high at every level. One regression over all (level, seed) effects would count that shared offset as
noise (a CI far too wide) and the correlated runs as independent evidence (a p that means nothing). So
the trend is per seed (PROTOCOL §5, "Trends"): each seed run at every level of the series gets its own
least-squares slope of its effects on the parameter (on log2 of it for sizes: per doubling), which
removes its offset; the trend is the mean of those slopes with its Student-t 95% CI across seeds, the
one-sample t-test and the exact sign-flip test of slope = 0. Seeds missing at some level are left out
(and counted). It is read twice, on the effect averaged over each seed's reading window (`iml_effect`,
the headline) and on the effect at the evaluation point (`iml_effect_point`); a trend is reported only
where the two slopes have the same sign, and otherwise it depends on when it is read.
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
from imlbench.scoring.statistics import ALPHA, p_signflip
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
    series with at least MIN_LEVELS levels: the mean per-seed slope of the window effect (`slope`, its
    t-CI, `p_slope`, `p_slope_signflip`) and of the point effect (`slope_point`, its t-CI), over the
    `n_seeds` seeds run at every level (`n_seeds_dropped` were not); `sign_agrees`/`reported` (the two
    slopes have the same sign) and `trend_verdict`: up, down, flat/unclear, or depends on when it is read."""
    series: dict[str, dict[float, list[RunRecord]]] = {}
    records = [scored(r) for r in records]
    board = summarize([r for r in records if r.ok])  # each level's verdict as its family adjusts it
    for record in records:
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
        for level in sorted(by_level):
            row = _level_row(board, by_level[level][0], ablation)
            levels.append({"series": name, "level": level, **row})
        fitted, n_seeds, dropped = _per_seed_trend(by_level, ablation, alpha)
        trends.append(
            {
                "series": name,
                "learner": first.learner_name,
                "task": first.task["target"],
                "pipeline": first.pipeline,
                "parameter": ablation.parameter,
                "n_levels": len(by_level),
                "n_runs": sum(map(len, by_level.values())),
                "n_seeds": n_seeds,
                "n_seeds_dropped": dropped,
                **fitted,
                **{f"{k}_per_step": v * ablation.step for k, v in fitted.items() if k.startswith("slope")},
            }
        )
    return pd.DataFrame(levels), pd.DataFrame(trends)


def _point_effect(record: RunRecord) -> float:
    """The effect at the evaluation point (the window's where the scores do not tell them apart)."""
    return float(record.scores.get("iml_effect_point", record.scores["iml_effect"]))


def _per_seed_trend(
    by_level: dict[float, list[RunRecord]], ablation: Ablation, alpha: float
) -> tuple[dict[str, Any], int, int]:
    """(columns, seeds used, seeds dropped): each seed run at every level gets its least-squares slope
    on the window and on the point effect (a seed run twice at a level: the mean of its runs); the
    trend is their mean across seeds, with its t-CI and tests, and the verdict."""
    by_seed: list[dict[int, list[RunRecord]]] = []
    for level in sorted(by_level):
        runs: dict[int, list[RunRecord]] = {}
        for record in by_level[level]:
            runs.setdefault(record.seed, []).append(record)
        by_seed.append(runs)
    shared = sorted(set.intersection(*(set(runs) for runs in by_seed)))
    dropped = len(set.union(*(set(runs) for runs in by_seed))) - len(shared)
    x = [ablation.x(level) for level in sorted(by_level)]
    window, point = [], []
    for seed in shared:
        window.append(slope(x, [float(np.mean([r.effect for r in runs[seed]])) for runs in by_seed])["slope"])
        point.append(slope(x, [float(np.mean([_point_effect(r) for r in runs[seed]])) for runs in by_seed])["slope"])
    fitted = across_seeds(window, alpha)
    at_point = across_seeds(point, alpha)
    fitted.update(
        slope_point=at_point["slope"],
        slope_point_ci_low=at_point["slope_ci_low"],
        slope_point_ci_high=at_point["slope_ci_high"],
    )
    agrees = bool(np.sign(fitted["slope"]) == np.sign(fitted["slope_point"]) != 0)
    significant = fitted["p_slope"] < alpha and fitted["p_slope_signflip"] < alpha
    if not shared:
        verdict = "flat/unclear"  # no seed ran at every level: no trend to read
    elif not agrees:
        verdict = "depends on when it is read"
    elif significant:
        verdict = "up" if fitted["slope"] > 0 else "down"
    else:
        verdict = "flat/unclear"
    fitted.update(sign_agrees=agrees, reported=agrees, trend_verdict=verdict)
    return fitted, len(shared), dropped


def across_seeds(slopes: list[float], alpha: float = ALPHA) -> dict[str, float]:
    """The mean of per-seed slopes with its Student-t CI, the one-sample t-test p and the exact
    sign-flip p of mean slope = 0 (NaN where the seeds cannot say: no seed, or one for the t-test)."""
    s = np.asarray(slopes, float)
    n = len(s)
    mean = float(s.mean()) if n else math.nan
    fitted = {
        "slope": mean,
        "slope_ci_low": math.nan,
        "slope_ci_high": math.nan,
        "p_slope": math.nan,
        "p_slope_signflip": p_signflip(s) if n else math.nan,
    }
    if n < 2:
        return fitted
    sd = float(s.std(ddof=1))
    if sd == 0:  # every seed gave the same slope: the t-test is undefined, the answer is not
        return {**fitted, "slope_ci_low": mean, "slope_ci_high": mean, "p_slope": 1.0 if mean == 0 else 0.0}
    se, df = sd / math.sqrt(n), n - 1
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    return {
        **fitted,
        "slope_ci_low": mean - half,
        "slope_ci_high": mean + half,
        "p_slope": float(2 * stats.t.sf(abs(mean) / se, df)),
    }


def _level_row(board: pd.DataFrame, record: RunRecord, ablation: Ablation) -> dict[str, Any]:
    """A level's leaderboard row, in the ablation's own family where the records declare it (a study
    is one family), else in the first family they declare."""
    same = board[[group == record.group_key() for group in board.attrs["groups"]]]
    mine = same[same["family"] == ablation.name]
    return (mine if len(mine) else same).iloc[0].to_dict()


def slope(x: list[float], y: list[float], alpha: float = ALPHA) -> dict[str, float]:
    """Least-squares slope of y on x (points per unit of x) with its t-based CI and two-sided p, the
    points taken as independent: right for one seed's effects over the levels (`trend` fits each seed
    so), wrong for runs that share seeds — pooling the seeds of a series in one call is what
    PROTOCOL §5 rules out."""
    fit = stats.linregress(np.asarray(x, float), np.asarray(y, float))
    half = stats.t.ppf(1 - alpha / 2, len(x) - 2) * fit.stderr if len(x) > 2 else math.nan
    return {
        "slope": float(fit.slope),
        "slope_ci_low": float(fit.slope - half),
        "slope_ci_high": float(fit.slope + half),
        "p_slope": float(fit.pvalue),
    }
