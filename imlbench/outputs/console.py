"""The leaderboard as people read it: one verdict sentence per row, the table's columns, the legend."""

from __future__ import annotations

import math
import re
import shlex
from typing import Any

import pandas as pd
from scipy import stats

from imlbench.core.pipelines import get_pipeline, pipeline_names
from imlbench.core.specs import search_space_of, target_class
from imlbench.scoring.statistics import MIN_SEEDS_FOR_EFFECT, POWER
from imlbench.scoring.verdicts import ALPHA, DEFAULT_MARGIN, RULES, SCORING_VERSION, fired
from imlbench.store.results import (
    PARAM_PREFIX,
    effects_of,
)

MOST_SEEDS_SUGGESTED = 200  # past this many seeds, more seeds is no advice: search for less spread instead


def verdict_sentence(row: pd.Series | dict[str, Any]) -> str:
    """e.g. "transformer on synthetic-defs (two-stage): IML, +85.4 points [+77.8, +92.4] over 10 seeds"."""
    text = (
        f"{row['learner']} on {row['task']} ({row['pipeline']}): {row['verdict']}, "
        f"{row['effect_mean']:+.1f} points [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}] over "
        f"{row['n_seeds']} seed{'s' if row['n_seeds'] != 1 else ''}"
    )
    extras = [
        f"family {row.get('family', '?')}: Holm-adjusted p = {_p(row.get('p_holm', math.nan))}, sign-flip p = "
        f"{_p(row.get('p_signflip_holm', math.nan))}; p_equivalence = {_p(row['p_equivalence'])}, "
        f"mde = {_num(row['mde'], '{:.1f}')}; at the point {_num(row.get('iml_effect_point'), '{:+.1f}')}, "
        f"at the window's end {_num(row.get('iml_effect_window_end'), '{:+.1f}')}; "
        f"log-prob effect {_num(row.get('logprob_effect'), '{:+.2f}')}"
        + (f"; basis {row['basis']}" if row.get("basis") else "")
    ]
    note = row.get("verdict_note")
    if isinstance(note, str) and note:
        extras.append(note)
    if row.get("n_definitions_not_learned") and "definitions not learned" not in str(note):
        extras.append(f"definitions not learned in {row['n_definitions_not_learned']} of {row['n_seeds']} seeds")
    if row.get("n_failed"):
        extras.append(f"{row['n_failed']} failed")
    return f"{text} ({'; '.join(extras)})"


def verdict_line(row: pd.Series | dict[str, Any], out: str | None = None) -> str:
    """One leaderboard row for the console: its verdict, why, and, where the row cannot inform (a
    null by construction, a guard, a censored difference, too few seeds), the command that would.
    e.g. "rf two-stage on synthetic-defs: inconclusive — ... (a null by construction; effect ...)."
    then "  Informative: imlbench run --learner rf --task synthetic-defs --pipeline one-stage ..."."""
    reason, kind = verdict_reason(row)
    head = f"{row['learner']} {row['pipeline']} on {row['task']}: {row['verdict']} — {reason}."
    command = next_command(row, kind, out)
    return head + (f"\n  Informative: {command}" if command else "")


def verdict_reason(row: pd.Series | dict[str, Any]) -> tuple[str, str]:
    """(why the row's verdict is what it is, read from its columns; what run would inform instead:
    "pipeline" (one without a stage 1: the row is a null by construction), "search" (the learner
    could not be measured here: a guard, or d1 and d2 at the ceiling), "seeds" (the tests need more
    seeds), or "" (the row is informative, or nothing run by imlbench would help))."""
    n, margin = int(row["n_seeds"]), _margin(row)
    if n == 0:
        return f"no seed finished ({row['n_failed']} failed, first error: {str(row.get('first_error', ''))[:200]})", ""
    effect = (
        f"effect {row['effect_mean']:+.1f} points"
        + ("" if pd.isna(row["ci_low"]) else f" [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}]")
        + f" over {n} seed{'s' if n != 1 else ''}"
    )
    if _true(row.get("by_construction")):
        return (
            f"{row['learner']}'s stage 2 cannot depend on what stage 1 taught, so {row['pipeline']} cannot "
            f"show IML (a null by construction; {effect})",
            "pipeline",
        )
    # too few seeds is a guard too, but more seeds (below) is what informs there, not a search
    guards = [m for name, m in fired(dict(row), margin, "guard") if name != "too-few-seeds"]
    if guards:
        return f"{'; '.join(guards)} ({effect})", "search"
    censored = bool(fired(dict(row), margin, "censoring"))
    on_scores = row.get("basis") == "scores"
    if row["verdict"] in ("IML", "reverse") and on_scores:
        return (
            f"{effect} with an arm at a bound (censored), but the answer scores favour "
            f"{'tag 1' if row['verdict'] == 'IML' else 'tag 2'} by {row['logprob_effect']:+.2f} nats "
            f"[{row['logprob_ci_low']:+.2f}, {row['logprob_ci_high']:+.2f}]; both adjusted tests reject no effect",
            "",
        )
    if row["verdict"] in ("IML", "reverse"):
        return (
            f"{effect}; the t-test (adjusted p = {_p(row.get('p_holm', math.nan))}) and the sign-flip test "
            f"(adjusted p = {_p(row.get('p_signflip_holm', math.nan))}) both reject no effect in family "
            f"{row.get('family', '?')}",
            "",
        )
    if row["verdict"] == "none" and _true(row.get("structural_null")):
        return f"{effect}; every seed's answer scores are identical for both tags (a structural null)", ""
    if row["verdict"] == "none":
        return f"{effect}, shown to lie within ±{margin:g} (equivalence p = {_p(row['p_equivalence'])})", ""
    if censored:
        return (
            f"{effect}, censored: an arm sits outside [{margin:g}, {100 - margin:g}]% in most seeds, so "
            f"±{margin:g} could not occur and equivalence proves nothing"
            + ("; the answer scores do not decide either" if on_scores else "; no answer scores to judge by"),
            "search",
        )
    why = f"neither shown different from 0 nor within ±{margin:g}"
    if n < MIN_SEEDS_FOR_EFFECT:
        why += f"; below {MIN_SEEDS_FOR_EFFECT} seeds the sign-flip test cannot reject no effect"
    elif not pd.isna(row["mde"]) and row["mde"] > margin:
        why += f"; these seeds detect only effects of {row['mde']:.1f} points or more"
    return f"{effect}, {why}", "seeds"


def next_command(row: pd.Series | dict[str, Any], kind: str, out: str | None = None) -> str:
    """The command that would inform where `row` cannot (`verdict_reason`'s kind), built from the row's
    names: the learner and task as named (overrides `name[k=v]` back into --param), the same seeds,
    `--out` where given. "" when there is none (e.g. a learner without a search space)."""
    learner, learner_over = _split_name(str(row["learner"]))
    task, task_over = _split_name(str(row["task"]))
    params = _param_flags(task, task_over, learner, learner_over if kind != "search" else {})
    tail = params + (["--out", str(out)] if out else [])
    if kind == "pipeline":
        plain = [p for p in pipeline_names() if p != row["pipeline"] and not get_pipeline(p).before]
        if not plain:
            return ""
        seeds = ["--seeds", _seeds(row)]
        return _command("run", learner, task, ["--pipeline", plain[0], *seeds, *tail])
    if kind == "search":
        try:
            searchable = bool(search_space_of(learner))
        except Exception:  # noqa: BLE001 - a plugin that no longer loads: no advice, never a crash
            searchable = False
        pipeline = [] if row["pipeline"] == "two-stage" else ["--pipeline", str(row["pipeline"])]
        return _command("search", learner, task, [*pipeline, *tail]) if searchable else ""
    if kind == "seeds":
        needed = seeds_needed(row)
        if needed is None:
            return next_command(row, "search", out)
        return _command("run", learner, task, ["--pipeline", str(row["pipeline"]), "--seeds", str(needed), *tail])
    return ""


def seeds_needed(row: pd.Series | dict[str, Any], alpha: float = ALPHA) -> int | None:
    """About how many seeds make the smallest detectable effect (80% power) no larger than the margin,
    from the spread these seeds showed; at least enough for the sign-flip test to reject. None past
    MOST_SEEDS_SUGGESTED."""
    n, margin, mde = int(row["n_seeds"]), _margin(row), row.get("mde", math.nan)
    if n < 2 or pd.isna(mde):
        return max(MIN_SEEDS_FOR_EFFECT, 2 * n)
    if mde <= margin:  # the seeds could see the margin; the tests still need more of them
        return max(MIN_SEEDS_FOR_EFFECT, 2 * n)
    sd = mde / (stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(POWER, n - 1)) * math.sqrt(n)
    for m in range(max(n + 1, MIN_SEEDS_FOR_EFFECT), MOST_SEEDS_SUGGESTED + 1):
        if (stats.t.ppf(1 - alpha / 2, m - 1) + stats.t.ppf(POWER, m - 1)) * sd / math.sqrt(m) <= margin:
            return m
    return None


def short_legend(board: pd.DataFrame, margin: float | None = None, alpha: float = ALPHA) -> str:
    """The verdicts in two lines (the report and PROTOCOL.md §5 say it in full)."""
    margins = sorted({float(m) for m in board["margin"]}) if margin is None and "margin" in board else [margin or 10.0]
    return (
        f"effect = d1 − d2 accuracy in points over each seed's window p … 2p (scoring v{SCORING_VERSION}). "
        f"IML/reverse: the family-adjusted t- and sign-flip tests reject no effect (p < {alpha:g}); none: within "
        f"±{' or ±'.join(f'{m:g}' for m in margins)} (TOST) where that was attainable;\ninconclusive: neither, "
        f"a guard fired, censored without answer scores, or fewer than {MIN_SEEDS_FOR_EFFECT} seeds. "
        f"{_families_said(board)}Full legend: imlbench report."
    )


def _families_said(board: pd.DataFrame) -> str:
    """e.g. "p_holm: within family 'default' (25 rows). " (the family a p was adjusted within)."""
    if "family" not in board or board.empty:
        return ""
    sizes = board.groupby("family").size()
    listed = ", ".join(f"'{name}' ({n} row{'s' if n != 1 else ''})" for name, n in sizes.items())
    return f"p_holm: within family {listed}. "


def _split_name(name: str) -> tuple[str, dict[str, str]]:
    """A spec's display name `base[k=v,k2=v2]` -> (base, {k: v}) (`core.specs.resolve` writes it)."""
    match = re.fullmatch(r"(.+?)\[(.*)\]", name)
    if not match:
        return name, {}
    pairs = re.split(r",(?=[A-Za-z_][\w.]*=)", match.group(2))
    found = dict(pair.partition("=")[::2] for pair in pairs if "=" in pair)
    return match.group(1), {k: {"True": "true", "False": "false"}.get(v, v) for k, v in found.items()}


def _param_flags(task: str, task_over: dict[str, str], learner: str, learner_over: dict[str, str]) -> list[str]:
    """--param flags for the overrides, prefixed task./learner. where a bare key would be ambiguous."""
    try:
        shared = set(target_class("task", task).param_defaults()) & set(
            target_class("learner", learner).param_defaults()
        )
    except Exception:  # noqa: BLE001 - unknown classes: prefix every key
        shared = set(task_over) | set(learner_over)
    flags = []
    for prefix, over in (("task.", task_over), ("learner.", learner_over)):
        for key, value in over.items():
            flags += ["--param", f"{prefix if key in shared else ''}{key}={value}"]
    return flags


def _command(name: str, learner: str, task: str, rest: list[str]) -> str:
    return shlex.join(["imlbench", name, "--learner", learner, "--task", task, *rest])


def _seeds(row: pd.Series | dict[str, Any]) -> str:
    """The row's seeds as --seeds reads them: a count where they are 0..N-1, else a list."""
    seeds = [int(float(s)) for s in str(row.get("seeds", "")).split(";") if s.strip()]
    if not seeds:
        return str(int(row["n_seeds"]) + int(row.get("n_failed", 0)))
    return str(len(seeds)) if seeds == list(range(len(seeds))) else ",".join(map(str, seeds))


def _margin(row: pd.Series | dict[str, Any]) -> float:
    margin = row.get("margin", math.nan)
    return DEFAULT_MARGIN if margin is None or pd.isna(margin) else float(margin)


def _true(value: Any) -> bool:
    """A flag as the summary holds it (bool) or a leaderboard CSV read back does ("True")."""
    return value is True or str(value).strip().lower() in ("true", "1", "1.0")


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
    """What the verdicts mean, with the margin(s), alpha, the families of this table and the rules
    (`verdicts.RULES`: the one table the leaderboard's columns and docs/columns.md also come from)."""
    margins = sorted({float(m) for m in board["margin"]}) if margin is None and "margin" in board else [margin or 10.0]
    shown = " or ".join(f"±{m:g}" for m in margins)
    sizes = board.groupby("family").size() if "family" in board else pd.Series(dtype=int)
    families = ", ".join(f"{name} ({n} rows)" for name, n in sizes.items())
    rules = {
        kind: ", ".join(rule.name for rule in RULES if rule.kind == kind) for kind in ("guard", "censoring", "note")
    }
    return (
        f"Scoring v{SCORING_VERSION}: effect = acc(d1consis) − acc(d2consis) in points, averaged over each seed's "
        f"reading window (checkpoints p … 2p after the evaluation point p); 95% Student-t CI over seeds. "
        f"The t-test and the exact sign-flip test of effect = 0 are Holm-adjusted within the row's family "
        f"({families or 'none'}). IML/reverse when both adjusted p < {alpha:g} and the equivalence test "
        f"(TOST, margin {shown} points, per task) does not pass; none when TOST gives p < {alpha:g} and a "
        f"±margin difference was attainable; a censored row (an arm outside [margin, 100 − margin] in most "
        f"seeds) is judged on its answer scores (basis = scores) or stays inconclusive; fewer than "
        f"{MIN_SEEDS_FOR_EFFECT} seeds is inconclusive. Guards ({rules['guard']}) make any verdict "
        f"inconclusive; notes: {rules['note']}; an IML row without a passing tag_reliability = 0.5 control "
        f"in its family is 'uncontrolled'. mde is the smallest effect the seeds could detect with "
        f"{POWER:.0%} power. Every rule: docs/columns.md."
    )


def leaderboard_rows(board: pd.DataFrame) -> list[dict[str, str]]:
    """The leaderboard as display rows (accuracies %, effect with CI, tests, verdict): the one
    format shared by the printed summary and the Markdown report."""
    rows = []
    families = board["family"].nunique() if "family" in board else 0
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
                **({"family": r["family"]} if families > 1 else {}),  # one family: said once, below
                "task": r["task"],
                "learner": r["learner"],
                "pipeline": r["pipeline"],
                "seeds": seeds,
                **{short: _num(r.get(f"acc_{subset}")) for short, subset in SHOWN_SUBSETS},
                "IML effect [95% CI]": effect,
                "p": _p(r["p_difference"]),
                "p_flip": _p(r.get("p_signflip", math.nan)),
                "p_holm": _p(r["p_holm"]),
                "p_flip_holm": _p(r.get("p_signflip_holm", math.nan)),
                "p_equiv": _p(r["p_equivalence"]),
                "mde": _num(r["mde"], "{:.1f}"),
                "point": _num(r.get("iml_effect_point"), "{:+.1f}"),
                "retention": _num(r.get("retention"), "{:.2f}"),
                "verdict": r["verdict"] + (f" ({r['basis']})" if r.get("basis") == "scores" else ""),
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
