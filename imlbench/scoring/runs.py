"""One run's scores, computed from the accuracies its record holds (PROTOCOL §5, scoring v3).

Apart from the verdicts so that reading a record can recompute them (a record's written scores are
never trusted) without importing the leaderboard. Everything is in percentage points; NaN where a
subset or a measurement is absent (records of protocol v1 have no end-of-budget accuracies).
"""

from __future__ import annotations

import math
from typing import Any

STAGE1_FIT = 0.95  # stage-1 training accuracy (every subset and kind) at which stage 1 counts as fit
FLOOR, CEILING = 5.0, 95.0  # accuracies (%) at which d1 − d2 is censored


def acc(table: dict[str, float] | None, subset: str) -> float:
    value = (table or {}).get(subset)
    return math.nan if value is None else 100.0 * value


def effect(table: dict[str, float] | None) -> float:
    return acc(table, "d1consis") - acc(table, "d2consis")


def run_scores(record: dict[str, Any]) -> dict[str, Any]:
    """Every per-run score of scoring v3 from a record's accuracies.

    - iml_effect: d1 − d2 at the evaluation point; iml_effect_end: at the end of the budget;
      persistence: its mean over the evaluated checkpoints of the point's stage from the point on;
    - retention: (q − baseline) at the point over the same after stage 1 (did stage 2 erase stage 1?);
    - effect_before_stage2: two-stage d1 − d2 before any stage-2 definition was seen;
    - floor/ceiling: d1, d2 (and d3) at the point all ≤ 5% / d1 and d2 ≥ 95%: the difference is censored;
    - stage1_fit: every stage-1 training subset fit to STAGE1_FIT at the end of stage 1;
    - logprob_effect: mean log-probability of the correct answer on d1 minus on d2 (answer scores).
    """
    at_point, after = record["accuracy"], record["accuracy_after_stage1"]
    two_stage = (record.get("evaluation_point") or {}).get("stage") != "single"
    end = record.get("accuracy_at_end")
    scores = {
        "iml_effect": effect(at_point),
        "iml_effect_end": effect(end) if end else math.nan,
        "persistence": _persistence(record),
        "stage1_gap": acc(after, "qd1consis") - acc(after, "qd2incons"),
        "neutral_offset": acc(at_point, "d3consis") - acc(at_point, "d2consis"),
        "baseline": acc(at_point, "no_qd_baseline"),
        "effect_before_stage2": effect(after) if two_stage else math.nan,
        "retention": _retention(at_point, after) if two_stage else math.nan,
        "logprob_effect": _logprob_effect(record.get("answer_logprob")),
    }
    d = [acc(at_point, s) for s in ("d1consis", "d2consis", "d3consis")]
    scores["floor"] = all(v <= FLOOR for v in d if not math.isnan(v)) and not math.isnan(d[0])
    scores["ceiling"] = d[0] >= CEILING and d[1] >= CEILING
    train = (record.get("train_accuracy") or {}).get("after_stage1")
    scores["stage1_fit"] = bool(train) and min(train.values()) >= STAGE1_FIT if train is not None else None
    return scores


def _retention(at_point: dict[str, float], after: dict[str, float]) -> float:
    before = acc(after, "q") - acc(after, "no_qd_baseline")
    if not before > 0:
        return math.nan
    return (acc(at_point, "q") - acc(at_point, "no_qd_baseline")) / before


def _persistence(record: dict[str, Any]) -> float:
    point = record.get("evaluation_point") or {}
    curve = record.get("curve") or []
    start = next((i for i, e in enumerate(curve)
                  if e.get("stage") == point.get("stage") and e.get("checkpoint") == point.get("checkpoint")), None)
    if start is None:
        return math.nan
    effects = [effect(e["accuracy"]) for e in curve[start:]
               if e.get("stage") == point.get("stage") and "accuracy" in e]
    effects = [x for x in effects if not math.isnan(x)]
    return sum(effects) / len(effects) if effects else math.nan


def _logprob_effect(logprob: dict[str, float] | None) -> float:
    if not logprob or "d1consis" not in logprob or "d2consis" not in logprob:
        return math.nan
    return float(logprob["d1consis"] - logprob["d2consis"])
