"""The leaderboard: one row per run group and family, with the standardized IML score (PROTOCOL §5,
scoring v4).

A row's verdict comes from tests on the per-seed effects, each read over its seed's window
(`statistics`): a t-test and the exact sign-flip test of effect = 0, Holm-adjusted within the row's
*family* (declared by the command that ran it: a suite, a study, one command's grid), and the TOST
equivalence test against ±margin. `none` needs room for a ±margin difference; where the accuracies
sit at a bound (censored) the row is judged on the answer scores where the learner has them. The
rules that qualify a verdict (guards, censoring, notes) are one table, `RULES`, from which the
console's legend and docs/columns.md are generated. Every number is recomputed from the records'
accuracies (`runs.run_scores`), never read from scores a run wrote.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imlbench.core.errors import ImlbenchError
from imlbench.core.protocol import SUBSETS
from imlbench.scoring.columns import COLUMNS
from imlbench.scoring.rules import RULES, fired, guard_notes  # noqa: F401  (guard_notes re-exported)
from imlbench.scoring.runs import DEFAULT_MARGIN, mean_accuracy, run_scores, scored, window_entries  # noqa: F401
from imlbench.scoring.statistics import (
    ALPHA,
    detectable,
    difference_tests,
    holm,
    standardized_score,
    verdict,
)
from imlbench.store.records import RunRecord, write_atomic

SCORING_VERSION = 4
VERDICTS = ("IML", "reverse", "none", "inconclusive")
STRUCTURAL_ZERO = 1e-9  # nats: a continuous effect this small in every seed is no effect at all
UNDECLARED = "undeclared"  # the family of records whose command declared none (older records)
NULL_RELIABILITY = 0.5  # the tag reliability of a row's control: the tags predict nothing


def check_margin(margin: float | None) -> None:
    """A margin NaN or below zero would make every verdict silently `inconclusive` (or nonsense)."""
    if margin is None:
        return
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < math.inf:
        raise ImlbenchError(f"margin must be a finite number of points >= 0, got {margin!r}")


def families_of(record: RunRecord) -> list[str]:
    """The families a record's commands declared (a suite, a study, a command's grid)."""
    declared = record.raw.get("families") or ([record.raw["family"]] if record.raw.get("family") else [])
    return [str(f) for f in declared] or [UNDECLARED]


def summarize(
    records: Iterable[RunRecord | dict[str, Any]], margin: float | None = None, alpha: float = ALPHA
) -> pd.DataFrame:
    """One row per family and run group (`RunRecord.group_key`): the standardized score, adjusted
    within the family, guards, censoring, controls and mean window accuracies.
    `margin`: points for every row; None = each task's own (from its records)."""
    check_margin(margin)
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in map(scored, records):
        for family in families_of(r):
            groups.setdefault((family, r.group_key()), []).append(r)
    ordered = sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[1][0].task_name, kv[1][0].learner_name, kv[1][0].pipeline)
    )
    rows = [_summary_row(family, group, margin, alpha) for (family, _), group in ordered]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for index in frame.groupby("family", sort=False).groups.values():
        _decide_family(frame, list(index), alpha)
    groups = list(frame["_group"])
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith("_")])
    frame = frame[[c for c in COLUMNS if c in frame.columns] + [c for c in frame.columns if c not in COLUMNS]]
    frame.attrs["groups"] = groups  # each row's `RunRecord.group_key`, for callers that match records to rows
    return frame


def _decide_family(frame: pd.DataFrame, index: list[int], alpha: float) -> None:
    """Holm within the family for both difference tests (and for the answer scores' tests), then
    each row's verdict on the adjusted values, then its control."""
    for column in ("p_difference", "p_signflip", "p_logprob_difference", "p_logprob_signflip"):
        frame.loc[index, f"{column}_holm"] = holm(frame.loc[index, column].to_numpy(dtype=float))
    frame.loc[index, "p_holm"] = frame.loc[index, "p_difference_holm"]
    for i in index:
        row = frame.loc[i].to_dict()
        frame.loc[i, ["verdict", "basis", "structural_null"]] = _verdict(row, alpha)
    for i in index:
        row = frame.loc[i].to_dict()
        controlled, why = _control(row, frame.loc[index])
        frame.at[i, "controlled"], frame.at[i, "control_note"] = controlled, why
        row = frame.loc[i].to_dict()
        frame.at[i, "verdict_note"] = _note(row, row["margin"])
        frame.at[i, "flags"] = ";".join(rule.name for rule in RULES if rule.message(row, row["margin"]))


def _verdict(row: dict[str, Any], alpha: float) -> tuple[str, str, bool]:
    """(verdict, basis, structural null) of one row, from its family-adjusted p's (PROTOCOL §5)."""
    margin = row["margin"]
    if fired(row, margin, "guard"):
        return "inconclusive", "", False
    censored = bool(fired(row, margin, "censoring"))
    accuracy, _ = verdict(
        row["effect_mean"],
        row["p_difference_holm"],
        row["p_signflip_holm"],
        row["p_equivalence"],
        alpha,
        n=row["n_seeds"],
        sd=row["_sd"],
        margin=margin,
        attainable=not censored,
    )
    if not censored or accuracy in ("IML", "reverse"):  # a significant difference stands when bounded
        return accuracy, "accuracy", False
    if row["n_logprob"] < row["n_seeds"]:  # no answer scores: the censored row decides nothing
        return "inconclusive", "", False
    if row["_logprob_all_zero"]:
        return "none", "scores", True
    if row["p_logprob_difference_holm"] < alpha and row["p_logprob_signflip_holm"] < alpha:
        return ("IML" if row["logprob_effect"] > 0 else "reverse"), "scores", False
    return "inconclusive", "scores", False


def _note(row: dict[str, Any], margin: float) -> str:
    """Why the verdict is what it is: the guards that decided it, censoring, then the notes."""
    guards = [m for _, m in fired(row, margin, "guard")]
    censoring = [m for _, m in fired(row, margin, "censoring")]
    notes = [m for _, m in fired(row, margin, "note")]
    if guards:
        return "; ".join([f"{row['_tests_verdict']} by the tests, but " + " and ".join(guards), *notes])
    head = []
    if censoring:
        basis = {"scores": "judged on the answer scores", "accuracy": "a significant difference stands"}
        head.append(f"{censoring[0]}; {basis.get(row['basis'], 'no answer scores to judge by')}")
    elif row["_tests_note"]:
        head.append(row["_tests_note"])
    return "; ".join(head + notes)


def _control(row: dict[str, Any], family: pd.DataFrame) -> tuple[bool | None, str]:
    """(controlled, why not) of an `IML` row: the same learner and parameters, task and seeds, at
    tag_reliability = 0.5, in the same family, not `IML`, and able to see the row's effect on the
    row's basis: on accuracy not censored, its mde at most the effect; on the answer scores (a
    censored row) with scores in every seed, their mde at most the row's. None for rows not `IML`."""
    if row["verdict"] != "IML":
        return None, ""
    identity = json.loads(row["_group"])
    for _, other in family.iterrows():
        candidate = json.loads(other["_group"])
        if _is_control(identity, candidate) and other["seeds"] == row["seeds"]:
            if other["verdict"] == "IML":
                return False, f"its control {other['task']} is IML"
            if row["basis"] == "scores":  # judged on the answer scores, and so is its control
                if not other["n_logprob"] == other["n_seeds"] == row["n_seeds"]:
                    return False, f"its control {other['task']} lacks answer scores"
                if not other["logprob_mde"] <= row["logprob_effect"]:
                    mde = other["logprob_mde"]
                    return False, f"its control {other['task']} has a scores mde of {mde:.3g} nats above the effect"
                return True, ""
            if "censored" in str(other["flags"]).split(";") or _censored(other):
                return False, f"its control {other['task']} is censored"
            if not other["mde"] <= row["effect_mean"]:
                return False, f"its control {other['task']} has mde {other['mde']:.1f} above the effect"
            return True, ""
    return False, "no tag_reliability = 0.5 control on the same seeds in its family"


def _censored(row: pd.Series) -> bool:
    return bool(row["n_seeds"]) and row["n_unattainable"] > row["n_seeds"] / 2


def _is_control(row: list[Any], other: list[Any]) -> bool:
    """Whether `other` (a group identity: task, learner, pipeline, protocol) is `row` at tag_reliability 0.5."""
    task, learner, pipeline, protocol = row[:4]
    o_task, o_learner, o_pipeline, o_protocol = other[:4]
    params, o_params = dict(task.get("params", {})), dict(o_task.get("params", {}))
    if o_params.pop("tag_reliability", None) != NULL_RELIABILITY or "tag_reliability" not in params:
        return False
    params.pop("tag_reliability")
    same_learner = _learner_identity(learner) == _learner_identity(o_learner)
    return (
        task.get("target") == o_task.get("target")
        and params == o_params
        and same_learner
        and (pipeline, protocol) == (o_pipeline, o_protocol)
    )


def _learner_identity(spec: dict[str, Any]) -> list[Any]:
    params = {k: v for k, v in spec.get("params", {}).items() if k != "random_state"}
    return [spec.get("target"), json.dumps(params, sort_keys=True, default=str)]


def row_margin(group: list[RunRecord], margin: float | None) -> float:
    if margin is not None:
        return float(margin)
    declared = {r.raw.get("margin") for r in group if r.raw.get("margin") is not None}
    return float(max(declared)) if declared else DEFAULT_MARGIN


def _arm_variables(record: RunRecord) -> int:
    """How many variables the smaller arm of the effect (d1consis, d2consis) holds in this run."""
    sizes = record.raw.get("sizes", {})
    return min(int(sizes.get(f"variables_{arm}", 0)) for arm in ("d1consis", "d2consis"))


def _summary_row(family: str, group: list[RunRecord], margin: float | None, alpha: float) -> dict[str, Any]:
    ok = sorted((r for r in group if r.ok), key=lambda r: r.seed)
    margin = row_margin(group, margin)
    effects = [r.effect for r in ok]
    unattainable = sum(not _attainable(r, margin) for r in ok)
    score = standardized_score(effects, margin, alpha, attainable=not (ok and unattainable > len(ok) / 2))
    logprob = [r.scores.get("logprob_effect", math.nan) for r in ok]
    row: dict[str, Any] = {
        "family": family,
        "task": group[0].task_name,
        "learner": group[0].learner_name,
        "pipeline": group[0].pipeline,
        "n_seeds": len(ok),
        "n_failed": len(group) - len(ok),
        "n_definitions_not_learned": sum(not r.definitions_learned for r in ok),
        "n_stage1_not_fit": sum(r.scores.get("stage1_fit") is False for r in ok),
        "n_floor": sum(bool(r.scores.get("floor")) for r in ok),
        "n_unattainable": unattainable,
        "n_window_short": sum(bool(r.scores.get("window_short")) for r in ok),
        "d_variables": min((_arm_variables(r) for r in ok), default=0),
        "by_construction": bool(ok) and all(r.raw.get("by_construction_null") for r in ok),
        "effect_mean": score["mean"],
        "ci_low": score["ci_low"],
        "ci_high": score["ci_high"],
        "d_z": score["d_z"],
        "p_difference": score["p_difference"],
        "p_signflip": score["p_signflip"],
        "p_equivalence": score["p_equivalence"],
        "mde": score["mde"],
        "verdict": "inconclusive",
        "basis": "",
        "structural_null": False,
        "controlled": None,
        "control_note": "",
        "verdict_note": "",
        "flags": "",
        "seeds": ";".join(str(r.seed) for r in ok),
        "effects": ";".join(repr(e) for e in effects),
    }
    for name in (
        "iml_effect_point",
        "iml_effect_window_end",
        "iml_effect_end",
        "window_checkpoints",
        "retention",
        "stage1_gap",
        "neutral_offset",
        "baseline",
        "effect_before_stage2",
    ):
        row[name] = _mean([r.scores.get(name, math.nan) for r in ok])
    row.update(_logprob_columns(logprob, alpha))
    row["n_logprob_at_point"] = sum(bool(r.scores.get("logprob_at_point")) for r in ok if _finite(r))
    row["q_over_baseline"] = _mean(
        [
            100 * (r.accuracy_after_stage1["q"] - r.accuracy_after_stage1["no_qd_baseline"])
            for r in ok
            if {"q", "no_qd_baseline"} <= set(r.accuracy_after_stage1)
        ]
    )
    for subset in SUBSETS:
        row[f"acc_{subset}"] = _mean([_window_accuracy(r, subset) for r in ok])
    row["seconds_per_seed"] = _mean([r.seconds for r in ok])
    row["versions"] = " ".join(f"{k}={v}" for k, v in sorted(ok[0].versions.items())) if ok else ""
    row["scoring_version"] = SCORING_VERSION
    row["margin"], row["alpha"] = margin, alpha
    row["first_error"] = next((r.error for r in group if not r.ok), "")
    # working columns, dropped from the frame once the family is decided
    row["_group"] = group[0].group_key()
    row["_sd"] = score["sd"]
    row["_tests_verdict"], row["_tests_note"] = score["verdict"], score["note"]
    row["_logprob_all_zero"] = bool(ok) and all(abs(v) < STRUCTURAL_ZERO for v in logprob)
    return row


def _attainable(record: RunRecord, margin: float) -> bool:
    """A ±margin difference could occur in this seed: both arms' window accuracies in [m, 100 − m]."""
    arms = [_window_accuracy(record, s) for s in ("d1consis", "d2consis")]
    return all(margin <= a <= 100 - margin for a in arms)


def _finite(record: RunRecord) -> bool:
    return math.isfinite(record.scores.get("logprob_effect", math.nan))


def _window_accuracy(record: RunRecord, subset: str) -> float:
    """The seed's accuracy on `subset` over its window (at the point where it has no window)."""
    entries = window_entries(record.raw)
    table = mean_accuracy([e["accuracy"] for e in entries]) if entries else record.accuracy
    return 100 * table[subset] if subset in table else math.nan


def _logprob_columns(values: list[float], alpha: float) -> dict[str, float]:
    """The continuous effect across seeds: its mean, t-CI, t-test and sign-flip p (NaN without answer
    scores)."""
    x = [v for v in values if not math.isnan(v)]
    tests = difference_tests(x, alpha)
    return {
        "n_logprob": len(x),
        "logprob_effect": tests["mean"],
        "logprob_ci_low": tests["ci_low"],
        "logprob_ci_high": tests["ci_high"],
        "p_logprob_difference": tests["p_difference"],
        "p_logprob_signflip": tests["p_signflip"] if len(x) >= 2 else math.nan,
        "logprob_mde": detectable(tests["sd"], len(x), alpha) if len(x) >= 2 else math.nan,
    }


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
