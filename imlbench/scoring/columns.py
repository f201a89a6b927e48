"""The leaderboard's columns: each one's unit and meaning, in one table from which the column
reference (docs/columns.md) is generated, so that the CSV and its documentation cannot drift apart
(`tests/test_published.py` checks every column of the published CSV is here)."""

from __future__ import annotations

from imlbench.core.protocol import SUBSETS
from imlbench.scoring.rules import RULES

POINTS = "percentage points"
PERCENT = "% (0-100)"

# name -> (unit, meaning)
COLUMNS: dict[str, tuple[str, str]] = {
    "family": ("name", "the family the row's Holm adjustment runs over: a suite, a study or one command's grid"),
    "task": ("name", "the task's row name (its spec name, with `[param=value]` for overrides)"),
    "learner": ("name", "the learner's row name (its spec name, with `[param=value]` for overrides)"),
    "pipeline": ("name", "two-stage, one-stage, three-stage or a plugin pipeline"),
    "n_seeds": ("count", "finished runs (seeds) the row is computed from"),
    "n_failed": ("count", "runs that ended in an error (their message: `first_error`)"),
    "n_definitions_not_learned": ("count", "seeds whose definitions never reached the evaluation threshold"),
    "n_stage1_not_fit": ("count", "seeds with a stage-1 part under 95% training accuracy where it was trained"),
    "n_floor": ("count", "seeds with d1, d2 and d3 all at most 5% over the window: nothing internalized"),
    "n_unattainable": ("count", "seeds where an arm's window accuracy lies outside [margin, 100 - margin]"),
    "n_window_short": ("count", "seeds whose budget ended before checkpoint 2p (read over what they have)"),
    "d_variables": ("count", "variables in the smaller arm (d1consis, d2consis) of the effect, fewest over seeds"),
    "by_construction": ("bool", "stage 2 cannot depend on stage 1 for this learner: a two-stage null by design"),
    "effect_mean": (POINTS, "the IML effect, acc(d1consis) - acc(d2consis) over each seed's window, mean over seeds"),
    "ci_low": (POINTS, "lower end of the effect's Student-t 95% CI"),
    "ci_high": (POINTS, "upper end of the effect's Student-t 95% CI"),
    "d_z": ("ratio", "effect_mean / sd of the per-seed effects (standardized effect)"),
    "p_difference": ("p-value", "two-sided one-sample t-test of effect = 0 (raw)"),
    "p_holm": ("p-value", "p_difference Holm-adjusted within the row's family (= p_difference_holm)"),
    "p_difference_holm": ("p-value", "p_difference Holm-adjusted within the row's family"),
    "p_signflip": ("p-value", "exact two-sided sign-flip test of effect = 0 (all 2^n sign patterns; raw)"),
    "p_signflip_holm": ("p-value", "p_signflip Holm-adjusted within the row's family"),
    "p_equivalence": ("p-value", "TOST against +-margin: small means the effect lies within the margin"),
    "mde": (POINTS, "the smallest effect these seeds detect with 80% power at alpha"),
    "verdict": ("label", "IML, reverse, none or inconclusive, on the family-adjusted p's (docs/measures.md)"),
    "basis": ("label", "what decided the verdict: accuracy, or scores (the answer scores of a censored row)"),
    "structural_null": ("bool", "judged on scores and every seed's continuous effect is 0: the tag never reaches them"),
    "controlled": ("bool", "IML rows: a passing tag_reliability = 0.5 control on the same seeds is in the family"),
    "control_note": ("text", "why an IML row is uncontrolled"),
    "verdict_note": ("text", "why the verdict is what it is: guards, censoring, notes (RULES below)"),
    "flags": ("list", "the rules (below) that fired on the row, `;`-separated"),
    "seeds": ("list", "the seeds, `;`-separated"),
    "effects": ("list", "the per-seed window effects in points, `;`-separated, in the order of `seeds`"),
    "iml_effect_point": (POINTS, "the effect at the evaluation point (one checkpoint), mean over seeds"),
    "iml_effect_window_end": (POINTS, "the effect at the window's last checkpoint (2p), mean over seeds"),
    "iml_effect_end": (POINTS, "the effect at the end of the budget (protocol-2 and --full-budget runs), mean"),
    "window_checkpoints": ("count", "evaluated checkpoints in a seed's window, mean over seeds"),
    "retention": ("ratio", "(q - baseline) over the window over the same after stage 1: did stage 2 erase stage 1?"),
    "stage1_gap": (POINTS, "acc(qd1consis) - acc(qd2incons) after stage 1: do definitions change answers?"),
    "neutral_offset": (POINTS, "acc(d3consis) - acc(d2consis) over the window"),
    "baseline": (PERCENT, "acc(no_qd_baseline) over the window: questions about never-defined variables"),
    "effect_before_stage2": (POINTS, "the effect after stage 1, before any stage-2 definition was seen"),
    "n_logprob": ("count", "seeds with answer scores (the continuous effect)"),
    "logprob_effect": ("nats", "mean log-probability of the correct answer on d1consis minus on d2consis"),
    "logprob_ci_low": ("nats", "lower end of logprob_effect's Student-t 95% CI"),
    "logprob_ci_high": ("nats", "upper end of logprob_effect's Student-t 95% CI"),
    "p_logprob_difference": ("p-value", "t-test of logprob_effect = 0 (raw)"),
    "p_logprob_difference_holm": ("p-value", "p_logprob_difference Holm-adjusted within the family"),
    "p_logprob_signflip": ("p-value", "exact sign-flip test of logprob_effect = 0 (raw)"),
    "p_logprob_signflip_holm": ("p-value", "p_logprob_signflip Holm-adjusted within the family"),
    "logprob_mde": ("nats", "smallest logprob_effect these seeds detect with 80% power at α (controls of scores rows)"),
    "n_logprob_at_point": ("count", "seeds whose answer scores were read at the point (protocol-2 records)"),
    "q_over_baseline": (POINTS, "acc(q) - acc(no_qd_baseline) after stage 1: were the questions learned?"),
    **{f"acc_{s}": (PERCENT, f"accuracy on the `{s}` test subset over the window, mean over seeds") for s in SUBSETS},
    "seconds_per_seed": ("seconds", "wall time of one run, mean over seeds"),
    "versions": ("text", "library versions of the first seed's run"),
    "scoring_version": ("integer", "the scoring version the row was computed with"),
    "margin": (POINTS, "the equivalence margin of `none` (the task's, or --margin)"),
    "alpha": ("probability", "the significance level of the verdict"),
    "first_error": ("text", "the first failed run's error message"),
}


# the short headers of the printed and Markdown leaderboard tables -> the column each shows
SHORT_HEADERS: dict[str, str] = {
    "family": "family",
    "qd1": "acc_qd1consis",
    "qd2x": "acc_qd2incons",
    "q": "acc_q",
    "d1": "acc_d1consis",
    "d2": "acc_d2consis",
    "d3": "acc_d3consis",
    "base": "acc_no_qd_baseline",
    "IML effect [95% CI]": "effect_mean",
    "p": "p_difference",
    "p_flip": "p_signflip",
    "p_holm": "p_holm",
    "p_flip_holm": "p_signflip_holm",
    "p_equiv": "p_equivalence",
    "mde": "mde",
    "point": "iml_effect_point",
    "retention": "retention",
    "verdict": "verdict",
    "defs learned": "n_definitions_not_learned",
    "s/seed": "seconds_per_seed",
}


def column_reference() -> str:
    """docs/columns.md: one line per column, its unit and meaning."""
    lines = [
        "# Leaderboard columns",
        "",
        "Generated from `imlbench/scoring/columns.py` (`python -m imlbench.scoring.columns`).",
        "",
        "| column | unit | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `{name}` | {unit} | {meaning} |" for name, (unit, meaning) in COLUMNS.items()]
    lines += ["", "The printed and Markdown tables use short headers:", "", "| header | column |", "|---|---|"]
    lines += [f"| {short} | `{column}` |" for short, column in SHORT_HEADERS.items()]
    return "\n".join(lines + ["", *rule_reference()]) + "\n"


def rule_reference() -> list[str]:
    """The rules that qualify a verdict (`rules.RULES`), as a Markdown table."""
    lines = [
        "## Rules",
        "",
        "A **guard** makes the verdict `inconclusive`; **censoring** sends the row to its answer scores",
        "(`basis = scores`) or leaves it `inconclusive`; a **note** only explains. Each fires from the column",
        "it reads; the names are those of the `flags` column.",
        "",
        "| rule | kind | column | fires when |",
        "|---|---|---|---|",
    ]
    return lines + [f"| `{r.name}` | {r.kind} | `{r.column}` | {r.condition} |" for r in RULES]


if __name__ == "__main__":
    print(column_reference(), end="")
