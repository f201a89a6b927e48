"""An elicitation search's result: its verdict, its summary lines and its figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imlbench.scoring.statistics import ALPHA


def summary_lines(result: dict[str, Any]) -> list[str]:
    """What `imlbench search` prints: each confirmed configuration, the verdict, where the files are."""
    lines = [
        f"confirmed trial {c['trial']}: {c['row']}  effect {c['effect_mean']:+.1f} [{c['ci_low']:+.1f}, "
        f"{c['ci_high']:+.1f}] p_holm {c['p_holm']:.3g} -> {c['verdict']}"
        for c in result["confirmed"]
        if c.get("n_seeds")
    ]
    folder = Path(result["figure"]).parent
    return lines + [
        f"search {result['name']}: {result['verdict']}",
        f"trials: {folder / 'trials.csv'}  figure: {result['figure']}",
    ]


def _confirmed(row: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "n_seeds",
        "effect_mean",
        "ci_low",
        "ci_high",
        "p_difference",
        "p_signflip",
        "p_holm",
        "verdict",
        "verdict_note",
        "seeds",
    )
    return {k: row.get(k) for k in keys}


def search_verdict(result: dict[str, Any]) -> str:
    """The search's one sentence: elicited (a confirmed `IML` that survives Holm) or not."""
    n = result["trials"]
    rows = [c for c in result["confirmed"] if c.get("n_seeds")]
    elicited = [c for c in rows if c["verdict"] == "IML" and c["p_holm"] < ALPHA]
    if elicited:
        c = max(elicited, key=lambda c: c["effect_mean"])
        return (
            f"IML elicited (config {_config(c['params'])}): {c['effect_mean']:+.1f} "
            f"[{c['ci_low']:+.1f}, {c['ci_high']:+.1f}] on {c['n_seeds']} fresh seeds, p_holm {c['p_holm']:.2g}"
        )
    if not rows:
        return (
            f"not elicited in {n} trials (no configuration's effect could be measured: every trial censored or failed)"
        )
    c = max(rows, key=lambda c: c["effect_mean"])
    return (
        f"not elicited in {n} trials (best confirmed effect {c['effect_mean']:+.1f} [{c['ci_low']:+.1f}, "
        f"{c['ci_high']:+.1f}], verdict {c['verdict']}, config {_config(c['params'])})"
    )


def search_figure(study: Any, result: dict[str, Any]) -> Path:
    """Effect by trial (exploration CI, censored trials grey, confirmations red) beside Optuna's
    parameter importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    trials = [t for t in study.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for t in trials:
        if "effect_mean" not in t.user_attrs:
            continue
        mean, low, high = (t.user_attrs[k] for k in ("effect_mean", "ci_low", "ci_high"))
        colour = "grey" if t.user_attrs.get("censored") else "C0"
        left.errorbar(t.number, mean, yerr=[[mean - low], [high - mean]], fmt="o", color=colour, capsize=2)
    for c in result["confirmed"]:
        if c.get("n_seeds"):
            mean = c["effect_mean"]
            left.errorbar(
                c["trial"] + 0.3,
                mean,
                yerr=[[mean - c["ci_low"]], [c["ci_high"] - mean]],
                fmt="s",
                color="C3",
                capsize=2,
            )
    left.axhline(0, color="black", lw=0.8)
    left.set(
        xlabel="trial",
        ylabel="IML effect (95% CI)",
        title=f"{study.label} on {study.task} ({study.pipeline})\n{len(study.explore)} exploration seeds "
        f"(grey: censored); red: {len(study.confirm)} confirmation seeds",
    )
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=study.seed)
        importances = (
            optuna.importance.get_param_importances(study.study, evaluator=evaluator) if len(trials) > 1 else {}
        )
    except (RuntimeError, ValueError):  # too few distinct trials to fit the importance model
        importances = {}
    right.barh(list(importances)[::-1], list(importances.values())[::-1])
    right.set(xlabel="importance (fANOVA) for the objective", title="parameter importances")
    fig.tight_layout()
    path = study.folder / "search.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _config(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))
