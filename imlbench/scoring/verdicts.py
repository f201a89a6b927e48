"""The leaderboard: one row per run group with the standardized IML score (PROTOCOL §5, scoring v3).

A row's verdict comes from three tests on the per-seed effects (`statistics`): a t-test and the exact
sign-flip test of effect = 0 (both must reject for `IML`/`reverse`) and the TOST equivalence test
against ±margin (`none`). Guards turn any verdict `inconclusive` where the difference could not have
been measured: questions never learned, stage 1 not fit, definitions not learned, nothing
internalized (floor), or a stage 2 that by construction cannot depend on stage 1. Every number is
recomputed from the records' accuracies (`runs.run_scores`), never read from scores a run wrote.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imlbench.core.errors import ImlbenchError
from imlbench.core.protocol import SUBSETS
from imlbench.scoring.runs import run_scores, scored  # noqa: F401  (run_scores re-exported)
from imlbench.scoring.statistics import ALPHA, holm, p_signflip, standardized_score
from imlbench.store.records import RunRecord, write_atomic

SCORING_VERSION = 3
# Default equivalence margin (percentage points) for the verdict `none`; a task may declare its own
# (`Task.margin`, carried by its records). With the default synthetic-defs test set (~95 variables per
# d-subset) the per-seed effect of a learner with no effect has a standard deviation of about 4 points
# near 50% accuracy, so over 10 seeds the smallest detectable effect is about 4-5 points.
DEFAULT_MARGIN = 10.0
VERDICTS = ("IML", "reverse", "none", "inconclusive")
# A learner whose held-out questions (subset `q`, after stage 1) are no better than the never-trained
# `no_qd_baseline` has not learned to answer questions at all; d1 − d2 then says nothing.
QUESTIONS_LEARNED_POINTS = 5.0
RETENTION_NOTE = 0.5


def guard_notes(row: dict[str, Any], margin: float) -> tuple[list[str], list[str]]:
    """(guards, notes) for one leaderboard row. A guard makes the verdict `inconclusive`."""
    guards, notes = [], []
    n = row["n_seeds"]
    if row["q_over_baseline"] < QUESTIONS_LEARNED_POINTS:  # NaN (no `q` subset) compares False
        guards.append(f"questions not learned (held-out q {row['q_over_baseline']:+.1f} points over baseline)")
    for column, what in (
        ("n_stage1_not_fit", "stage-1 documents not fit"),
        ("n_definitions_not_learned", "definitions not learned"),
        ("n_floor", "floor: d1, d2 and d3 all ≤ 5%, nothing internalized"),
    ):
        if n and row[column] > n / 2:
            guards.append(f"{what} in {row[column]} of {n} seeds")
    if row["by_construction"]:
        guards.append("by construction: stage 2 cannot depend on what stage 1 taught")
    if n and row["n_ceiling"] > n / 2:
        notes.append(f"ceiling: d1 and d2 both ≥ 95% in {row['n_ceiling']} of {n} seeds, the difference is censored")
    if row["retention"] < RETENTION_NOTE:
        notes.append(f"stage 2 erased stage 1 (retention {row['retention']:.2f})")
    if abs(row.get("effect_before_stage2", math.nan)) > margin:
        notes.append(f"effect before stage 2 already {row['effect_before_stage2']:+.1f}")
    if row["mde"] > margin:
        notes.append(f"underpowered: mde {row['mde']:.1f} > margin {margin:g}")
    return guards, notes


def check_margin(margin: float | None) -> None:
    """A margin NaN or below zero would make every verdict silently `inconclusive` (or nonsense)."""
    if margin is None:
        return
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < math.inf:
        raise ImlbenchError(f"margin must be a finite number of points >= 0, got {margin!r}")


def summarize(
    records: Iterable[RunRecord | dict[str, Any]], margin: float | None = None, alpha: float = ALPHA
) -> pd.DataFrame:
    """One row per run group (`RunRecord.group_key`): the standardized score, guards, mean accuracies.
    `margin`: points for every row; None = each task's own (from its records)."""
    check_margin(margin)
    groups: dict[str, list[RunRecord]] = {}
    for r in map(scored, records):
        groups.setdefault(r.group_key(), []).append(r)
    rows = [
        _summary_row(g, margin, alpha)
        for g in sorted(groups.values(), key=lambda g: (g[0].task_name, g[0].learner_name, g[0].pipeline))
    ]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame.insert(frame.columns.get_loc("p_difference") + 1, "p_holm", holm(frame["p_difference"].to_numpy()))
    return frame


def row_margin(group: list[RunRecord], margin: float | None) -> float:
    if margin is not None:
        return float(margin)
    declared = {r.raw.get("margin") for r in group if r.raw.get("margin") is not None}
    return float(max(declared)) if declared else DEFAULT_MARGIN


def _summary_row(group: list[RunRecord], margin: float | None, alpha: float) -> dict[str, Any]:
    ok = sorted((r for r in group if r.ok), key=lambda r: r.seed)
    margin = row_margin(group, margin)
    effects = [r.effect for r in ok]
    score = standardized_score(effects, margin, alpha)
    logprob = [r.scores.get("logprob_effect", math.nan) for r in ok]
    row: dict[str, Any] = {
        "task": group[0].task_name,
        "learner": group[0].learner_name,
        "pipeline": group[0].pipeline,
        "n_seeds": len(ok),
        "n_failed": len(group) - len(ok),
        "n_definitions_not_learned": sum(not r.definitions_learned for r in ok),
        "n_stage1_not_fit": sum(r.scores.get("stage1_fit") is False for r in ok),
        "n_floor": sum(bool(r.scores.get("floor")) for r in ok),
        "n_ceiling": sum(bool(r.scores.get("ceiling")) for r in ok),
        "by_construction": bool(ok) and all(r.raw.get("by_construction_null") for r in ok),
        "effect_mean": score["mean"],
        "ci_low": score["ci_low"],
        "ci_high": score["ci_high"],
        "d_z": score["d_z"],
        "p_difference": score["p_difference"],
        "p_signflip": score["p_signflip"],
        "p_equivalence": score["p_equivalence"],
        "mde": score["mde"],
        "verdict": score["verdict"],
        "verdict_note": "",
        "seeds": ";".join(str(r.seed) for r in ok),
        "effects": ";".join(repr(e) for e in effects),
    }
    for name in (
        "iml_effect_end",
        "persistence",
        "retention",
        "stage1_gap",
        "neutral_offset",
        "baseline",
        "effect_before_stage2",
    ):
        row[name] = _mean([r.scores.get(name, math.nan) for r in ok])
    row.update(_logprob_columns(logprob, alpha))
    row["q_over_baseline"] = _mean(
        [
            100 * (r.accuracy_after_stage1["q"] - r.accuracy_after_stage1["no_qd_baseline"])
            for r in ok
            if {"q", "no_qd_baseline"} <= set(r.accuracy_after_stage1)
        ]
    )
    for subset in SUBSETS:
        row[f"acc_{subset}"] = _mean([100 * r.accuracy[subset] for r in ok if subset in r.accuracy])
    guards, notes = guard_notes(row, margin)
    if guards:
        notes.insert(0, f"{score['verdict']} by the tests, but " + " and ".join(guards))
        row["verdict"] = "inconclusive"
    elif score["note"]:
        notes.insert(0, score["note"])
    row["verdict_note"] = "; ".join(notes)
    row["seconds_per_seed"] = _mean([r.seconds for r in ok])
    row["versions"] = " ".join(f"{k}={v}" for k, v in sorted(ok[0].versions.items())) if ok else ""
    row["scoring_version"] = SCORING_VERSION
    row["margin"], row["alpha"] = margin, alpha
    row["first_error"] = next((r.error for r in group if not r.ok), "")
    return row


def _logprob_columns(values: list[float], alpha: float) -> dict[str, float]:
    """The continuous effect across seeds: its mean, t-CI and sign-flip p (NaN without answer scores)."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    columns = {
        "logprob_effect": math.nan,
        "logprob_ci_low": math.nan,
        "logprob_ci_high": math.nan,
        "p_logprob_signflip": math.nan,
    }
    if len(x) >= 2 and x.std(ddof=1) > 0:
        from scipy import stats

        interval = stats.ttest_1samp(x, 0.0).confidence_interval(1 - alpha)
        columns.update(
            logprob_effect=float(x.mean()),
            logprob_ci_low=float(interval.low),
            logprob_ci_high=float(interval.high),
            p_logprob_signflip=p_signflip(x),
        )
    elif len(x):
        columns["logprob_effect"] = float(x.mean())
    return columns


def _mean(values: list[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def write_leaderboard(
    records: Iterable[RunRecord | dict[str, Any]], path: Path, margin: float | None = None
) -> pd.DataFrame:
    """Rebuild the leaderboard CSV from records (atomically: concurrent rebuilds never collide)."""
    frame = summarize(records, margin)
    write_atomic(Path(path), lambda f: frame.to_csv(f, index=False, float_format="%.4g"))
    return frame
