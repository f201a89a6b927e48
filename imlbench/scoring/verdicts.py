"""Per-run scores and the across-seed standardized IML score (PROTOCOL §5, scoring v2), and the leaderboard.

The verdict is a pair of Student-t tests on the per-seed effects: a difference test (is the mean
effect non-zero?) and an equivalence test (TOST: is it inside ±margin?). A percentile bootstrap over
3-5 seeds covers the mean only ~75-84% of the time, so v1's bootstrap verdicts called a learner with no
effect `IML` or `reverse` far more often than 5%; the t-based tests hold their level at any n.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from imlbench.core.protocol import SUBSETS
from imlbench.store.records import Record, write_atomic

SCORING_VERSION = 2
ALPHA = 0.05
POWER = 0.80
# Equivalence margin (percentage points) for the verdict `none`. With the default synthetic-defs
# test set (~95 variables per d-subset) the per-seed effect of a learner with no effect has a
# standard deviation of about 4 points near 50% accuracy, so over 5 seeds the smallest detectable
# effect (the `mde` column) is about 6-7 points: a 10-point margin is resolvable, and far below the
# effects the paper reports (tens of points).
DEFAULT_MARGIN = 10.0
VERDICTS = ("IML", "reverse", "none", "inconclusive")
# A learner whose held-out questions (subset `q`, after stage 1) are no better than the never-trained
# `no_qd_baseline` has not learned to answer questions at all; a d1-d2 difference then says nothing
# about internalization (e.g. set-inclusion at CPU scale).
QUESTIONS_LEARNED_POINTS = 5.0
FLOOR, CEILING = 5.0, 95.0  # accuracies (%) at which d1 - d2 is censored


def run_scores(at_point: dict[str, float], after_stage1: dict[str, float], two_stage: bool = True) -> dict[str, float]:
    """Scores of one run in percentage points; NaN where a subset is absent.

    `effect_before_stage2` is d1 - d2 before any stage-2 definition was seen (two-stage only): a
    difference already there is not internalization, and a reader should subtract it.
    """
    def acc(table: dict[str, float], subset: str) -> float:
        value = table.get(subset)
        return math.nan if value is None else 100.0 * value

    return {
        "iml_effect": acc(at_point, "d1consis") - acc(at_point, "d2consis"),
        "stage1_gap": acc(after_stage1, "qd1consis") - acc(after_stage1, "qd2incons"),
        "neutral_offset": acc(at_point, "d3consis") - acc(at_point, "d2consis"),
        "baseline": acc(at_point, "no_qd_baseline"),
        "effect_before_stage2": acc(after_stage1, "d1consis") - acc(after_stage1, "d2consis") if two_stage else math.nan,
    }


def verdict(mean: float, p_difference: float, p_equivalence: float, alpha: float = ALPHA) -> tuple[str, str]:
    """(verdict, note) from the two tests (PROTOCOL §5). Equivalence wins: an effect shown to lie
    inside the margin is `none` even when it is also shown to be non-zero."""
    if math.isnan(p_difference) or math.isnan(p_equivalence):
        return "inconclusive", ""
    if p_equivalence < alpha:
        return "none", "non-zero but within margin" if p_difference < alpha else ""
    if p_difference < alpha:
        return ("IML" if mean > 0 else "reverse"), ""
    return "inconclusive", ""


def standardized_score(effects: list[float] | np.ndarray, margin: float = DEFAULT_MARGIN,
                       alpha: float = ALPHA) -> dict[str, Any]:
    """Mean effect over seeds, Student-t CI, d_z, difference and equivalence tests, mde, verdict."""
    x = np.asarray([e for e in effects if not math.isnan(e)], dtype=float)
    n = len(x)
    score: dict[str, Any] = {"n": n, "mean": float(x.mean()) if n else math.nan, "sd": math.nan,
                             "ci_low": math.nan, "ci_high": math.nan, "d_z": math.nan,
                             "p_difference": math.nan, "p_equivalence": math.nan, "mde": math.nan}
    if n < 2:  # one seed decides nothing
        return {**score, "verdict": "inconclusive", "note": ""}
    mean, sd = score["mean"], float(x.std(ddof=1))
    score["sd"] = sd
    if sd == 0:  # every seed gave the same effect: the tests are undefined, the answer is not
        score.update(ci_low=mean, ci_high=mean, mde=0.0,
                     d_z=0.0 if mean == 0 else math.copysign(math.inf, mean),
                     p_difference=1.0 if mean == 0 else 0.0,
                     p_equivalence=0.0 if abs(mean) < margin else 1.0)
    else:
        difference = stats.ttest_1samp(x, 0.0)
        interval = difference.confidence_interval(1 - alpha)
        above = stats.ttest_1samp(x, -margin, alternative="greater").pvalue
        below = stats.ttest_1samp(x, margin, alternative="less").pvalue
        t = stats.t(df=n - 1)
        score.update(ci_low=float(interval.low), ci_high=float(interval.high), d_z=mean / sd,
                     p_difference=float(difference.pvalue), p_equivalence=float(max(above, below)),
                     mde=float((t.ppf(1 - alpha / 2) + t.ppf(POWER)) * sd / math.sqrt(n)))
    score["verdict"], score["note"] = verdict(mean, score["p_difference"], score["p_equivalence"], alpha)
    return score


def holm(p_values: list[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment (family = the finite p-values); NaN stays NaN.

    scipy offers only FDR adjustments (`false_discovery_control`); Holm controls the chance of any
    false call among the rows, which is what a reader scanning a leaderboard for "IML" needs.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    finite = np.flatnonzero(~np.isnan(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m, running = len(order), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def guard_notes(row: dict[str, Any], margin: float) -> tuple[list[str], list[str]]:
    """(guards, notes) for one leaderboard row. A guard makes the verdict `inconclusive`."""
    guards, notes = [], []
    n = row["n_seeds"]
    if row["q_over_baseline"] < QUESTIONS_LEARNED_POINTS:  # NaN (no `q` subset) compares False
        guards.append(f"questions not learned (held-out q {row['q_over_baseline']:+.1f} points over baseline)")
    if n and row["n_definitions_not_learned"] > n / 2:
        guards.append(f"definitions not learned in {row['n_definitions_not_learned']} of {n} seeds")
    d1, d2 = row.get("acc_d1consis", math.nan), row.get("acc_d2consis", math.nan)
    if (d1 <= FLOOR and d2 <= FLOOR) or (d1 >= CEILING and d2 >= CEILING):
        notes.append(f"{'floor' if d1 <= FLOOR else 'ceiling'}: d1 and d2 both {'≤' if d1 <= FLOOR else '≥'} "
                     f"{FLOOR if d1 <= FLOOR else CEILING:g}%, the difference is censored")
    if abs(row.get("effect_before_stage2", math.nan)) > margin:
        notes.append(f"effect before stage 2 already {row['effect_before_stage2']:+.1f}")
    return guards, notes


def summarize(records: Iterable[Record | dict[str, Any]], margin: float = DEFAULT_MARGIN,
              alpha: float = ALPHA) -> pd.DataFrame:
    """One row per run group (`Record.group_key`): the standardized score, guards, mean accuracies."""
    groups: dict[str, list[Record]] = {}
    for r in map(Record.from_json, records):
        groups.setdefault(r.group_key(), []).append(r)
    rows = [_summary_row(g, margin, alpha) for g in
            sorted(groups.values(), key=lambda g: (g[0].task_name, g[0].learner_name, g[0].pipeline))]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame.insert(frame.columns.get_loc("p_difference") + 1, "p_holm", holm(frame["p_difference"].to_numpy()))
    return frame


def _summary_row(group: list[Record], margin: float, alpha: float) -> dict[str, Any]:
    ok = sorted((r for r in group if r.ok), key=lambda r: r.seed)
    effects = [r.effect for r in ok]
    score = standardized_score(effects, margin, alpha)
    row: dict[str, Any] = {
        "task": group[0].task_name, "learner": group[0].learner_name, "pipeline": group[0].pipeline,
        "n_seeds": len(ok), "n_failed": len(group) - len(ok),
        "n_definitions_not_learned": sum(not r.definitions_learned for r in ok),
        "effect_mean": score["mean"], "ci_low": score["ci_low"], "ci_high": score["ci_high"], "d_z": score["d_z"],
        "p_difference": score["p_difference"], "p_equivalence": score["p_equivalence"], "mde": score["mde"],
        "verdict": score["verdict"], "verdict_note": "",
        "seeds": ";".join(str(r.seed) for r in ok), "effects": ";".join(repr(e) for e in effects),
    }
    for name in ("stage1_gap", "neutral_offset", "baseline", "effect_before_stage2"):
        row[name] = _mean([r.scores.get(name, math.nan) for r in ok])
    row["q_over_baseline"] = _mean([100 * (r.accuracy_after_stage1["q"] - r.accuracy_after_stage1["no_qd_baseline"])
                                    for r in ok if {"q", "no_qd_baseline"} <= set(r.accuracy_after_stage1)])
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


def _mean(values: list[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def write_leaderboard(records: Iterable[Record | dict[str, Any]], path: Path, margin: float = DEFAULT_MARGIN) -> pd.DataFrame:
    """Rebuild the leaderboard CSV from records (atomically: concurrent rebuilds never collide)."""
    frame = summarize(records, margin)
    write_atomic(Path(path), lambda f: frame.to_csv(f, index=False, float_format="%.4g"))
    return frame
