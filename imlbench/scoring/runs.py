"""One run's scores, computed from the accuracies its record holds (PROTOCOL §5, scoring v4).

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
FLOOR = 5.0  # d1, d2 and d3 all at most this (%) over the window: nothing internalized
# Default equivalence margin (percentage points) for `none`; a task may declare its own (`Task.margin`,
# carried by its records; PROTOCOL §5 and docs/measures.md justify each task's from its null rows).
DEFAULT_MARGIN = 10.0


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
    """Every per-run score of scoring v4 from a record's accuracies.

    The headline reads the seed's *reading window* (`window_entries`): the checkpoints p … 2p of the
    scored stage, p the evaluation point, so that one transient checkpoint does not decide a verdict.
    - iml_effect: d1 − d2 averaged over the window; iml_effect_point: at the point;
      iml_effect_window_end: at the window's last checkpoint; iml_effect_end: at the end of the budget
      (records that ran it: protocol 2, or `--full-budget`);
    - window_checkpoints / window_short: how many checkpoints were read, and whether the budget ended
      before 2p (the window is then what the seed has);
    - attainable: a difference of ±margin could occur (both arms' window accuracies in
      [margin, 100 − margin]); where it cannot, accuracy cannot show `none` (censoring, §5);
    - retention: (q − baseline) over the window over the same after stage 1 (did stage 2 erase stage 1?);
    - effect_before_stage2: two-stage d1 − d2 before any stage-2 definition was seen;
    - floor: d1, d2 (and d3) all ≤ 5% over the window: nothing was internalized;
    - stage1_fit: every stage-1 part fit to STAGE1_FIT where it was trained (three-stage: the
      definitions at the end of 1a, the questions at the end of 1b);
    - logprob_effect: log-probability of the correct answer on d1 minus on d2, over the window where
      the record has answer scores there (protocol 3), else at the point (`logprob_at_point`).
    """
    after = record["accuracy_after_stage1"]
    two_stage = scored_after_other_steps(record)
    entries = window_entries(record)
    window = mean_accuracy([e["accuracy"] for e in entries]) if entries else record["accuracy"]
    margin = float(record.get("margin") or DEFAULT_MARGIN)
    scores = {
        "iml_effect": effect(window),
        "iml_effect_point": effect(record["accuracy"]),
        "iml_effect_window_end": effect(entries[-1]["accuracy"]) if entries else effect(record["accuracy"]),
        "iml_effect_end": effect(record.get("accuracy_at_end")) if ran_full_budget(record) else math.nan,
        "window_checkpoints": len(entries) or 1,
        "window_short": _window_short(record, entries),
        "stage1_gap": acc(after, "qd1consis") - acc(after, "qd2incons"),
        "neutral_offset": acc(window, "d3consis") - acc(window, "d2consis"),
        "baseline": acc(window, "no_qd_baseline"),
        "effect_before_stage2": effect(after) if two_stage else math.nan,
        "retention": _retention(window, after) if two_stage else math.nan,
    }
    scores["logprob_effect"], scores["logprob_at_point"] = _logprob_effect(record, entries)
    arms = [acc(window, "d1consis"), acc(window, "d2consis")]
    scores["attainable"] = all(margin <= a <= 100 - margin for a in arms)
    d = [*arms, acc(window, "d3consis")]
    scores["floor"] = all(v <= FLOOR for v in d if not math.isnan(v)) and not math.isnan(d[0])
    scores["stage1_fit"] = _stage1_fit(record)
    return scores


def window_entries(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The evaluated checkpoints p … 2p of the scored stage (PROTOCOL §3), p the evaluation point.
    Protocol 3 evaluates every one of them; a protocol-2 record has the ones its sparse schedule
    evaluated (the first ten checkpoints, every fifth, the point, the end). Empty when the
    definitions were never learned (there is no point to read from)."""
    point = record.get("evaluation_point") or {}
    first = point.get("checkpoint")
    if not record.get("definitions_learned", True) or first is None:
        return []
    window = record.get("window") or {}
    last = window.get("last", 2 * first) if window else 2 * first
    return [
        e
        for e in record.get("curve") or []
        if e.get("stage") == point.get("stage") and first <= e.get("checkpoint", -1) <= last and "accuracy" in e
    ]


def ran_full_budget(record: dict[str, Any]) -> bool:
    """Protocol 2 ran every fit to its budget; protocol 3 only with `--full-budget`."""
    return bool(record.get("full_budget")) or (record.get("protocol") or {}).get("version", 2) < 3


def mean_accuracy(tables: list[dict[str, float]]) -> dict[str, float]:
    """Subset-wise mean of accuracy tables (fractions), over the tables that hold the subset."""
    subsets = {s for t in tables for s in t}
    return {s: sum(t[s] for t in tables if s in t) / sum(s in t for t in tables) for s in subsets}


def _window_short(record: dict[str, Any], entries: list[dict[str, Any]]) -> bool:
    """The budget ended before checkpoint 2p: the seed is read over what it has."""
    if record.get("window"):  # protocol 3 says (a one-checkpoint fit is read at its one checkpoint)
        return bool(record["window"].get("short"))
    point = (record.get("evaluation_point") or {}).get("checkpoint")
    if not entries or point is None:
        return False
    stage = record["evaluation_point"].get("stage")
    ran = max((e.get("checkpoint", 0) for e in record.get("curve") or [] if e.get("stage") == stage), default=0)
    return ran < 2 * point


def _stage1_fit(record: dict[str, Any]) -> bool | None:
    """Each stage-1 part fit where it was trained: the kinds a step trained, at that step's end
    (`step_ends`, protocol 3); a record without them is read after the last stage-1 step."""
    ends = record.get("step_ends")
    if ends:
        return all(_fit(end.get("train_accuracy"), end.get("kinds", "all")) for end in ends)
    train = (record.get("train_accuracy") or {}).get("after_stage1")
    return None if train is None else _fit(train, "all")


def _fit(train: dict[str, float] | None, kinds: str) -> bool:
    """Whether the training subsets of `kinds` (all, definitions, rest) reach STAGE1_FIT."""
    chosen = [
        v for k, v in (train or {}).items() if kinds == "all" or k.endswith("/definition") == (kinds == "definitions")
    ]
    return bool(chosen) and min(chosen) >= STAGE1_FIT


def _retention(window: dict[str, float], after: dict[str, float]) -> float:
    before = acc(after, "q") - acc(after, "no_qd_baseline")
    if not before > 0:
        return math.nan
    return (acc(window, "q") - acc(window, "no_qd_baseline")) / before


def _logprob_effect(record: dict[str, Any], entries: list[dict[str, Any]]) -> tuple[float, bool]:
    """(mean log-probability gap d1 − d2 over the window, whether it was read at the point only)."""
    gaps = [_gap(e.get("answer_logprob")) for e in entries if e.get("answer_logprob")]
    gaps = [g for g in gaps if not math.isnan(g)]
    if gaps:  # read at the point only where the window has more checkpoints than scored ones (protocol 2)
        return sum(gaps) / len(gaps), len(gaps) < len(entries)
    return _gap(record.get("answer_logprob")), len(entries) > 1


def _gap(logprob: dict[str, float] | None) -> float:
    if not logprob or "d1consis" not in logprob or "d2consis" not in logprob:
        return math.nan
    return float(logprob["d1consis"] - logprob["d2consis"])
