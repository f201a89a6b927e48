"""One run's scores, computed from the accuracies its record holds (PROTOCOL §5, scoring v3).

A record's written scores are never trusted: every reader gets its records through `scored`,
`load_scored` or `load_results`, which recompute them. Everything is in percentage points; NaN
where a subset or a measurement is absent (records of protocol v1 have no end-of-budget accuracies).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from imlbench.core.errors import ImlbenchError, one_line
from imlbench.core.pipelines import scored_after_other_steps
from imlbench.store.records import RunRecord, load_records

STAGE1_FIT = 0.95  # stage-1 training accuracy (every subset and kind) at which stage 1 counts as fit
FLOOR, CEILING = 5.0, 95.0  # accuracies (%) at which d1 − d2 is censored


def acc(table: dict[str, float] | None, subset: str) -> float:
    value = (table or {}).get(subset)
    return math.nan if value is None else 100.0 * value


def effect(table: dict[str, float] | None) -> float:
    return acc(table, "d1consis") - acc(table, "d2consis")


def scored(record: dict[str, Any] | RunRecord, source: str = "record") -> RunRecord:
    """A checked record with its scores recomputed from its accuracies (a failed run has none)."""
    record = RunRecord.from_json(record, source)
    return dataclasses.replace(record, scores=run_scores(record.raw) if record.ok else {})


def load_scored(out_dir: str | Path) -> tuple[list[RunRecord], list[str]]:
    """Every readable run record under out_dir, scored, plus one line per unreadable file."""
    records, problems = load_records(Path(out_dir))
    return [scored(r) for r in records], problems


def load_results(results_dir: str | Path) -> list[RunRecord]:
    """Every record under results_dir, scored. Raises ImlbenchError (one line) when the directory
    is missing or empty, when any record is unreadable, or when no run finished: a report built
    from part of a directory would silently misstate it."""
    root = Path(results_dir)
    if not (root / "records").is_dir():
        raise ImlbenchError(
            f"{root} holds no records/ folder; point at a results directory written "
            f"by `imlbench run --out DIR` or `imlbench sweep --out DIR`"
        )
    records, problems = load_scored(root)
    if problems:
        raise ImlbenchError(one_line(problems[0]))
    if not records:
        raise ImlbenchError(
            f"{root / 'records'} holds no run records; run something first (`imlbench run --out {root}`)"
        )
    if not any(r.ok for r in records):
        first = next((r.error for r in records), "")
        raise ImlbenchError(one_line(f"{root} holds {len(records)} records but no finished run; first error: {first}"))
    return records


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
    two_stage = scored_after_other_steps(record)
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
    start = next(
        (
            i
            for i, e in enumerate(curve)
            if e.get("stage") == point.get("stage") and e.get("checkpoint") == point.get("checkpoint")
        ),
        None,
    )
    if start is None:
        return math.nan
    effects = [effect(e["accuracy"]) for e in curve[start:] if e.get("stage") == point.get("stage") and "accuracy" in e]
    effects = [x for x in effects if not math.isnan(x)]
    return sum(effects) / len(effects) if effects else math.nan


def _logprob_effect(logprob: dict[str, float] | None) -> float:
    if not logprob or "d1consis" not in logprob or "d2consis" not in logprob:
        return math.nan
    return float(logprob["d1consis"] - logprob["d2consis"])
