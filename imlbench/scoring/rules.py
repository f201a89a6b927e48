"""The rules that qualify a verdict (PROTOCOL §5), as one table: each a condition on a leaderboard
row, its threshold and its message. A `guard` turns the verdict `inconclusive`, `censoring` sends the
row to its answer scores (or `inconclusive`), a `note` only explains. The leaderboard's `flags`
column, the console's legend and docs/columns.md are generated from `RULES`, so a new rule is one
row here and its test."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imlbench.scoring.statistics import MIN_SEEDS_FOR_EFFECT

# A learner whose held-out questions (subset `q`, after stage 1) are no better than the never-trained
# `no_qd_baseline` has not learned to answer questions at all; d1 − d2 then says nothing.
QUESTIONS_LEARNED_POINTS = 5.0
RETENTION_NOTE = 0.5
# PROTOCOL §5: an arm of fewer variables moves by more than 2.5 points an answer; its task grows its
# subsets or declares a margin of at least four answers.
FINE_VARIABLES = 40
RULE_KINDS = ("guard", "censoring", "note")


def _most(row: dict[str, Any], column: str) -> bool:
    return bool(row["n_seeds"]) and row.get(column, 0) > row["n_seeds"] / 2


@dataclass(frozen=True)
class Rule:
    """One rule that qualifies a verdict: a `guard` turns it `inconclusive`, `censoring` sends the row
    to the answer scores (or `inconclusive`), a `note` only explains. `column` is the leaderboard
    column it reads; `message(row, margin)` says what fired, or None where the rule does not."""

    name: str
    kind: str  # "guard" | "censoring" | "note"
    column: str
    condition: str
    message: Callable[[dict[str, Any], float], str | None]


def _if(condition: Any, message: str) -> str | None:
    return message if condition is True or str(condition).lower() == "true" else None


def _count(column: str, what: str) -> Callable[[dict[str, Any], float], str | None]:
    return lambda row, margin: f"{what} in {row[column]} of {row['n_seeds']} seeds" if _most(row, column) else None


RULES: tuple[Rule, ...] = (
    Rule(
        "too-few-seeds",
        "guard",
        "n_seeds",
        f"n_seeds < {MIN_SEEDS_FOR_EFFECT} (the exact test cannot reach alpha)",
        lambda row, m: (
            f"fewer than {MIN_SEEDS_FOR_EFFECT} seeds ({row['n_seeds']})"
            if row["n_seeds"] < MIN_SEEDS_FOR_EFFECT
            else None
        ),
    ),
    Rule(
        "questions-not-learned",
        "guard",
        "q_over_baseline",
        f"q_over_baseline < {QUESTIONS_LEARNED_POINTS:g} points",
        lambda row, m: (
            f"questions not learned (held-out q {row['q_over_baseline']:+.1f} points over baseline)"
            if row["q_over_baseline"] < QUESTIONS_LEARNED_POINTS  # NaN (no `q` subset) compares False
            else None
        ),
    ),
    Rule(
        "stage1-not-fit",
        "guard",
        "n_stage1_not_fit",
        "in most seeds a stage-1 part stayed under 95% training accuracy where it was trained",
        _count("n_stage1_not_fit", "stage-1 documents not fit"),
    ),
    Rule(
        "definitions-not-learned",
        "guard",
        "n_definitions_not_learned",
        "in most seeds the definitions never reached the evaluation threshold",
        _count("n_definitions_not_learned", "definitions not learned"),
    ),
    Rule(
        "floor",
        "guard",
        "n_floor",
        "in most seeds d1, d2 and d3 all <= 5% over the window",
        _count("n_floor", "floor: d1, d2 and d3 all ≤ 5%, nothing internalized"),
    ),
    Rule(
        "by-construction",
        "guard",
        "by_construction",
        "stage 2 cannot depend on stage 1 for this learner",
        lambda row, m: _if(row["by_construction"], "by construction: stage 2 cannot depend on what stage 1 taught"),
    ),
    Rule(
        "censored",
        "censoring",
        "n_unattainable",
        "in most seeds an arm's window accuracy lies outside [margin, 100 - margin]",
        lambda row, m: (
            f"censored: a ±{m:g} difference was not attainable in {row['n_unattainable']} of {row['n_seeds']} seeds"
            if _most(row, "n_unattainable")
            else None
        ),
    ),
    Rule(
        "structural-null",
        "note",
        "logprob_effect",
        "judged on scores and every seed's continuous effect is 0 to float precision",
        lambda row, m: _if(row.get("structural_null"), "structural null: the tag does not reach the answer scores"),
    ),
    Rule(
        "scores-at-point",
        "note",
        "n_logprob_at_point",
        "judged on scores read at the evaluation point (a protocol-2 record has them nowhere else)",
        lambda row, m: (
            "answer scores read at the point, not over the window"
            if row.get("basis") == "scores" and row.get("n_logprob_at_point")
            else None
        ),
    ),
    Rule(
        "window-short",
        "note",
        "n_window_short",
        "in some seed the budget ended before checkpoint 2p",
        lambda row, m: (
            f"budget ended before 2p in {row['n_window_short']} of {row['n_seeds']} seeds"
            if row.get("n_window_short")
            else None
        ),
    ),
    Rule(
        "coarse-subsets",
        "note",
        "d_variables",
        f"an arm holds under {FINE_VARIABLES} variables and the margin spans under four of its answers",
        lambda row, m: (
            f"coarse: {n} variables an arm, one answer {100 / n:.1f} points, ±{m:g} under four answers"
            if 0 < (n := row.get("d_variables", 0)) < FINE_VARIABLES and 400 / n > m
            else None
        ),
    ),
    Rule(
        "uncontrolled",
        "note",
        "controlled",
        "IML with no passing tag_reliability = 0.5 control in its family",
        lambda row, m: f"uncontrolled ({row.get('control_note')})" if row.get("controlled") in (False,) else None,
    ),
    Rule(
        "stage2-erased-stage1",
        "note",
        "retention",
        f"retention < {RETENTION_NOTE:g}",
        lambda row, m: (
            f"stage 2 erased stage 1 (retention {row['retention']:.2f})" if row["retention"] < RETENTION_NOTE else None
        ),
    ),
    Rule(
        "effect-before-stage2",
        "note",
        "effect_before_stage2",
        "abs(effect_before_stage2) > margin",
        lambda row, m: (
            f"effect before stage 2 already {row['effect_before_stage2']:+.1f}"
            if abs(row.get("effect_before_stage2", math.nan)) > m
            else None
        ),
    ),
    Rule(
        "underpowered",
        "note",
        "mde",
        "mde > margin",
        lambda row, m: f"underpowered: mde {row['mde']:.1f} > margin {m:g}" if row["mde"] > m else None,
    ),
)


def fired(row: dict[str, Any], margin: float, kind: str) -> list[tuple[str, str]]:
    """(rule name, message) of every rule of `kind` that fires on the row."""
    hits = [(rule.name, rule.message(row, margin)) for rule in RULES if rule.kind == kind]
    return [(name, message) for name, message in hits if message]


def guard_notes(row: dict[str, Any], margin: float) -> tuple[list[str], list[str]]:
    """(guards, notes) for one leaderboard row. A guard makes the verdict `inconclusive`."""
    return [m for _, m in fired(row, margin, "guard")], [m for _, m in fired(row, margin, "note")]
