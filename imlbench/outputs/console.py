"""The leaderboard as people read it: one verdict sentence per row, the table's columns, the legend."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from scipy import stats

from imlbench.scoring.verdicts import ALPHA, SCORING_VERSION
from imlbench.store.results import (
    PARAM_PREFIX,
    effects_of,
)


def verdict_sentence(row: pd.Series | dict[str, Any]) -> str:
    """e.g. "transformer on synthetic-defs (two-stage): IML, +85.4 points [+77.8, +92.4] over 10 seeds"."""
    text = (
        f"{row['learner']} on {row['task']} ({row['pipeline']}): {row['verdict']}, "
        f"{row['effect_mean']:+.1f} points [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}] over "
        f"{row['n_seeds']} seed{'s' if row['n_seeds'] != 1 else ''}"
    )
    extras = [
        f"p = {_p(row['p_difference'])}, sign-flip p = {_p(row.get('p_signflip', math.nan))}, "
        f"p_equivalence = {_p(row['p_equivalence'])}, mde = {_num(row['mde'], '{:.1f}')}; at the end of the "
        f"budget {_num(row.get('iml_effect_end'), '{:+.1f}')}, mean from the point on "
        f"{_num(row.get('persistence'), '{:+.1f}')}; "
        f"log-prob effect {_num(row.get('logprob_effect'), '{:+.2f}')}"
    ]
    note = row.get("verdict_note")
    if isinstance(note, str) and note:
        extras.append(note)
    if row.get("n_definitions_not_learned"):
        extras.append(f"definitions not learned in {row['n_definitions_not_learned']} of {row['n_seeds']} seeds")
    if row.get("n_failed"):
        extras.append(f"{row['n_failed']} failed")
    return f"{text} ({'; '.join(extras)})"


def _trend(frame: pd.DataFrame, column: str) -> str:
    """Spearman rank correlation of the per-seed effects with a numeric swept parameter."""
    x, y = [], []
    for _, row in frame.iterrows():
        value = pd.to_numeric(pd.Series([row[column]]), errors="coerce").iloc[0]
        for e in effects_of(row.get("effects")):
            if not math.isnan(value):
                x.append(float(value)), y.append(e)
    if len(set(x)) < 2 or len(y) < 4:
        return ""
    result = stats.spearmanr(x, y)
    return (
        f"Across all {len(y)} seed runs, Spearman's ρ between {column[len(PARAM_PREFIX) :]} and the "
        f"per-seed effect is {result.statistic:+.2f} (two-sided p = {_p(float(result.pvalue))})."
    )


def scoring_legend(board: pd.DataFrame, margin: float | None = None, alpha: float = ALPHA) -> str:
    """What the verdicts mean, with the margin(s), alpha and the Holm family size of this table."""
    family = int(board["p_difference"].notna().sum()) if "p_difference" in board else 0
    margins = sorted({float(m) for m in board["margin"]}) if margin is None and "margin" in board else [margin or 10.0]
    shown = " or ".join(f"±{m:g}" for m in margins)
    return (
        f"Scoring v{SCORING_VERSION}: effect = acc(d1consis) − acc(d2consis) in points at the evaluation "
        f"point; 95% Student-t CI over seeds; IML/reverse when both the t-test and the exact sign-flip test "
        f"of effect = 0 give p < {alpha:g} and the equivalence test (TOST, margin {shown} points, per task) "
        f"does not; none when TOST gives p < {alpha:g}; else inconclusive. Guards (questions, stage 1 or "
        f"definitions not learned; floor; by construction) make any verdict inconclusive. p_holm adjusts p "
        f"across the {family} rows of this table; mde is the smallest effect the seeds could detect with "
        f"80% power."
    )


def leaderboard_rows(board: pd.DataFrame) -> list[dict[str, str]]:
    """The leaderboard as display rows (accuracies %, effect with CI, tests, verdict): the one
    format shared by the printed summary and the Markdown report."""
    rows = []
    for _, r in board.iterrows():
        seeds = f"{r['n_seeds']}" + (f" ({r['n_failed']} failed)" if r["n_failed"] else "")
        effect = (
            "-"
            if pd.isna(r["effect_mean"])
            else f"{r['effect_mean']:+.1f}"
            + ("" if pd.isna(r["ci_low"]) else f" [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]")
        )
        rows.append(
            {
                "task": r["task"],
                "learner": r["learner"],
                "pipeline": r["pipeline"],
                "seeds": seeds,
                **{short: _num(r.get(f"acc_{subset}")) for short, subset in SHOWN_SUBSETS},
                "IML effect [95% CI]": effect,
                "p": _p(r["p_difference"]),
                "p_flip": _p(r.get("p_signflip", math.nan)),
                "p_holm": _p(r["p_holm"]),
                "p_equiv": _p(r["p_equivalence"]),
                "mde": _num(r["mde"], "{:.1f}"),
                "end": _num(r.get("iml_effect_end"), "{:+.1f}"),
                "retention": _num(r.get("retention"), "{:.2f}"),
                "verdict": r["verdict"],
                "defs learned": f"{r['n_seeds'] - r['n_definitions_not_learned']}/{r['n_seeds']}",
                "s/seed": _num(r["seconds_per_seed"], "{:.1f}"),
            }
        )
    return rows


SHOWN_SUBSETS = (
    ("qd1", "qd1consis"),
    ("qd2x", "qd2incons"),
    ("q", "q"),
    ("d1", "d1consis"),
    ("d2", "d2consis"),
    ("d3", "d3consis"),
    ("base", "no_qd_baseline"),
)


def _md_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines)


def _num(value: Any, fmt: str = "{:.0f}") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def _p(value: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.2g}" if value >= 1e-3 else f"{value:.0e}"
