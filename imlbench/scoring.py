"""Per-run scores and the across-seed standardized IML score (PROTOCOL §5), and the leaderboard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from imlbench.protocol import SUBSETS

# Equivalence margin (percentage points) for the verdict `none`. With the default synthetic-defs
# test set (~95 variables per d-subset) a per-seed effect of a learner with no effect has a standard
# deviation of about 4 points for learners near 50% accuracy (measured: README, "Choosing the
# margin"); over 5 seeds the 95% CI half-width is then about 4-5 points, so a margin of 10 points is
# resolvable while staying well below the effects the paper reports (tens of points).
DEFAULT_MARGIN = 10.0
N_BOOTSTRAP = 10_000
VERDICTS = ("IML", "reverse", "none", "inconclusive")
# A learner whose held-out questions (subset `q`, after stage 1) are no better than the never-trained
# `no_qd_baseline` has not learned to answer questions at all; a d1-d2 difference then says nothing
# about internalization, so IML / reverse become `inconclusive` (e.g. set-inclusion at CPU scale).
QUESTIONS_LEARNED_POINTS = 5.0


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


def verdict(ci_low: float, ci_high: float, margin: float, n: int) -> str:
    if n < 2 or math.isnan(ci_low):
        return "inconclusive"
    if ci_low > 0:
        return "IML"
    if ci_high < 0:
        return "reverse"
    if -margin <= ci_low and ci_high <= margin:
        return "none"
    return "inconclusive"


def standardized_score(effects: list[float] | np.ndarray, margin: float = DEFAULT_MARGIN) -> dict[str, Any]:
    """Mean effect over seeds, 95% percentile-bootstrap CI, d_z, one-sided p (t-test), verdict."""
    x = np.asarray([e for e in effects if not math.isnan(e)], dtype=float)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "d_z": math.nan,
                "p_one_sided": math.nan, "verdict": "inconclusive"}
    mean = float(x.mean())
    rng = np.random.default_rng(0)  # fixed: the same records always give the same CI
    boot = x[rng.integers(n, size=(N_BOOTSTRAP, n))].mean(axis=1)
    ci_low, ci_high = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    sd = float(x.std(ddof=1)) if n > 1 else math.nan
    if n > 1 and sd > 0:
        d_z = mean / sd
        p = float(stats.ttest_1samp(x, 0.0, alternative="greater").pvalue)
    elif n > 1:  # every seed gave the same effect
        d_z = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        p = 0.5 if mean == 0 else (0.0 if mean > 0 else 1.0)
    else:
        d_z, p = math.nan, math.nan
    return {"n": n, "mean": mean, "ci_low": ci_low, "ci_high": ci_high, "d_z": d_z,
            "p_one_sided": p, "verdict": verdict(ci_low, ci_high, margin, n)}


def summarize(records: list[dict[str, Any]], margin: float = DEFAULT_MARGIN) -> pd.DataFrame:
    """One row per (task, learner, pipeline): the standardized score and mean accuracies."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:  # one group per identity minus the seed: same names, other params -> other row
        identity = json.dumps([r["task"], r["learner"], r["pipeline"], r.get("protocol")], sort_keys=True)
        groups.setdefault(identity, []).append(r)
    rows = []
    for group in sorted(groups.values(), key=lambda g: (g[0]["task"]["name"], g[0]["learner"]["name"], g[0]["pipeline"])):
        task, learner, pipeline = group[0]["task"]["name"], group[0]["learner"]["name"], group[0]["pipeline"]
        ok = [r for r in group if r["status"] == "ok"]
        score = standardized_score([r["scores"]["iml_effect"] for r in ok], margin)
        row: dict[str, Any] = {
            "task": task, "learner": learner, "pipeline": pipeline,
            "n_seeds": len(ok), "n_failed": len(group) - len(ok),
            "n_definitions_not_learned": sum(not r["definitions_learned"] for r in ok),
            "effect_mean": score["mean"], "ci_low": score["ci_low"], "ci_high": score["ci_high"],
            "d_z": score["d_z"], "p_one_sided": score["p_one_sided"], "verdict": score["verdict"],
        }
        for name in ("stage1_gap", "neutral_offset", "baseline", "effect_before_stage2"):
            row[name] = _mean([r["scores"].get(name, math.nan) for r in ok])
        row["q_over_baseline"] = _mean([100 * (r["accuracy_after_stage1"]["q"] - r["accuracy_after_stage1"]["no_qd_baseline"])
                                        for r in ok if {"q", "no_qd_baseline"} <= set(r["accuracy_after_stage1"])])
        row["verdict_note"] = ""
        if row["verdict"] in ("IML", "reverse") and row["q_over_baseline"] < QUESTIONS_LEARNED_POINTS:
            row["verdict"], row["verdict_note"] = "inconclusive", f"{score['verdict']} by CI, but questions not learned"
        for subset in SUBSETS:
            row[f"acc_{subset}"] = _mean([100 * r["accuracy"][subset] for r in ok if subset in r["accuracy"]])
        row["seconds_per_seed"] = _mean([r["measurements"]["seconds"]["total"] for r in ok])
        row["versions"] = " ".join(f"{k}={v}" for k, v in sorted(ok[0]["versions"].items())) if ok else ""
        if len(group) > len(ok):
            row["first_error"] = next(r["error"] for r in group if r["status"] != "ok")
        rows.append(row)
    frame = pd.DataFrame(rows)
    if "first_error" not in frame:
        frame["first_error"] = ""
    return frame.fillna({"first_error": ""})


def _mean(values: list[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def write_leaderboard(records: list[dict[str, Any]], path: Path, margin: float = DEFAULT_MARGIN) -> pd.DataFrame:
    """Rebuild the leaderboard CSV from records (written whole, then renamed into place)."""
    frame = summarize(records, margin)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    frame.to_csv(tmp, index=False, float_format="%.4g")
    tmp.replace(path)
    return frame
