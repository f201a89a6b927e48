"""Figures of a results directory: the leaderboard chart, learning curves per run group, sweeps,
dose-response.

Only matplotlib's object API with the Agg canvas is used (no pyplot), so nothing global changes and
no display is needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from imlbench.core.errors import ImlbenchError
from imlbench.core.names import safe_name
from imlbench.core.protocol import DEFAULT_THRESHOLD
from imlbench.outputs.drawing import CURVE_SUBSETS, FORMATS, TAG_COLOURS, save_figure, t_interval
from imlbench.outputs.sweeps import plot_sweep
from imlbench.scoring.runs import load_results
from imlbench.scoring.trends import ABLATIONS, DOSE, Ablation, trend
from imlbench.scoring.verdicts import summarize
from imlbench.store.records import RunRecord
from imlbench.store.results import (
    is_control,
    run_groups,
    sweep_files,
)

# --------------------------------------------------------------------------------------------
# figures


def plot_leaderboard(
    records: list[RunRecord], out_dir: Path, margin: float | None = None, formats: Iterable[str] = FORMATS
) -> list[Path]:
    """IML effect with its 95% t-based CI per leaderboard row; controls hollow grey."""
    board = summarize([r for r in records if r.ok], margin)
    margin = float(board["margin"].max()) if margin is None else margin
    controls = {(r.task_name, r.learner_name, r.pipeline): is_control(r) for r in records}
    board = board.iloc[::-1].reset_index(drop=True)  # first row on top
    n = len(board)
    lines = sum(2 + (len(name) > 40) * name.count(",") for name in board["learner"])
    fig = Figure(figsize=(12, 1.6 + 0.2 * lines + 0.1 * n), layout="constrained")
    ax = fig.add_subplot()
    ax.axvspan(-margin, margin, color="#dddddd", alpha=0.6, lw=0, label=f"±{margin:g}-point margin (verdict 'none')")
    ax.axvline(0, color="black", lw=1)
    labels = []
    seen_control = seen_learner = False
    for i, row in board.iterrows():
        control = controls[(row["task"], row["learner"], row["pipeline"])]
        mean, low, high = row["effect_mean"], row["ci_low"], row["ci_high"]
        label = None
        if control and not seen_control:
            label, seen_control = "control (must be 'none')", True
        elif not control and not seen_learner:
            label, seen_learner = "learner", True
        colour = "#777777" if control else "#08519c"
        ax.errorbar(
            [mean],
            [i],
            xerr=[[mean - low], [high - mean]],
            fmt="s" if control else "o",
            color=colour,
            mfc="white" if control else colour,
            ms=7,
            capsize=4,
            lw=1.5,
            label=label,
        )
        name = row["learner"] if len(row["learner"]) <= 40 else row["learner"].replace(",", ",\n  ")
        labels.append(f"{name}{' [control]' if control else ''}\n{row['pipeline']} on {row['task']}")
        ax.annotate(
            f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]  {row['verdict']}  (n={row['n_seeds']})",
            xy=(1.01, i),
            xycoords=("axes fraction", "data"),
            va="center",
            fontsize=8,
        )
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    lo = min(-margin, float(np.nanmin(board["ci_low"]))) - 5
    hi = max(margin, float(np.nanmax(board["ci_high"]))) + 5
    ax.set_xlim(lo, hi)
    ax.set_xlabel("IML effect = acc(d1consis) − acc(d2consis) over the reading window (percentage points)")
    ax.set_title("Leaderboard: IML effect, mean over seeds with 95% Student-t CI", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return save_figure(fig, out_dir / "leaderboard", formats)


def _curve_table(group: list[RunRecord]) -> tuple[str, dict[int, list[RunRecord]]]:
    """Curve entries by checkpoint over seeds, for the stage whose checkpoints decide the point."""
    stage = group[0].evaluation_point["stage"]
    by_checkpoint: dict[int, list[RunRecord]] = {}
    for r in group:
        for entry in r.curve:
            if entry["stage"] == stage:
                by_checkpoint.setdefault(int(entry["checkpoint"]), []).append(entry)
    return stage, dict(sorted(by_checkpoint.items()))


def plot_curves(
    group: list[RunRecord],
    out_dir: Path,
    group_name: str,
    threshold: float | None = None,
    formats: Iterable[str] = FORMATS,
) -> list[Path]:
    """The paper's kind of figure for one run group: test accuracy per subset across the stage-2
    checkpoints where the test subsets were evaluated (mean over seeds, 95% t-based CI band), and the
    definition accuracy per tag at every checkpoint; each seed's evaluation point is a tick, their
    median a dashed line. Protocol-2 records ran whole budgets, so their curves go on past the point;
    protocol 3 ends at the window (2p) unless `--full-budget`."""
    task, learner, pipeline = group[0].task_name, group[0].learner_name, group[0].pipeline
    stage, table = _curve_table(group)
    if threshold is None:
        threshold = float(group[0].protocol.get("definition_threshold", DEFAULT_THRESHOLD))
    n = len(group)
    # draw checkpoints that at least half the seeds (and 2 when there are several) reach (records of
    # protocol v1 stop at their evaluation point, so they have no values past it)
    need = max(1, min(2, n), math.ceil(n / 2))
    checkpoints = [c for c, entries in table.items() if len(entries) >= need]
    points = [int(r.evaluation_point["checkpoint"]) for r in group]
    fig = Figure(figsize=(12, 5.4), layout="constrained")
    ax, ax_defs = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    subsets = [s for s in CURVE_SUBSETS if any(s in e.get("accuracy", {}) for c in checkpoints for e in table[c])]
    for subset in subsets:
        label, colour, style = CURVE_SUBSETS[subset]
        xs, mean, low, high = [], [], [], []
        for c in checkpoints:
            values = [100 * e["accuracy"][subset] for e in table[c] if subset in e.get("accuracy", {})]
            if values:
                m, lo, hi = t_interval(np.array(values))
                xs.append(c), mean.append(m), low.append(max(lo, 0)), high.append(min(hi, 100))
        ax.plot(xs, mean, style, color=colour, lw=2 if subset.startswith("d") else 1.4, label=label)
        ax.fill_between(xs, low, high, color=colour, alpha=0.15, lw=0)
    stage1_defs = [("qd1consis", TAG_COLOURS["tag1"], ":"), ("qd2incons", TAG_COLOURS["tag2"], ":")]
    for tag, colour, style in [(t, c, "-") for t, c in TAG_COLOURS.items()] + stage1_defs:
        xs, mean, low, high = [], [], [], []
        for c in checkpoints:
            values = [100 * e["definitions"][tag] for e in table[c] if tag in e["definitions"]]
            if values:
                m, lo, hi = t_interval(np.array(values))
                xs.append(c), mean.append(m), low.append(max(lo, 0)), high.append(min(hi, 100))
        if xs:
            ax_defs.plot(xs, mean, style, color=colour, lw=2, label=f"{tag} definitions")
            ax_defs.fill_between(xs, low, high, color=colour, alpha=0.15, lw=0)
    ax_defs.axhline(100 * threshold, color="black", lw=1, ls="--", label=f"threshold {100 * threshold:g}%")
    median_point = float(np.median(points))
    not_learned = sum(not r.definitions_learned for r in group)
    point_name = (
        "evaluation point"
        if not not_learned
        else f"evaluation point ({not_learned}/{n} seeds: best checkpoint, definitions not learned)"
    )
    stage_name = {"stage2": "stage-2 epoch (checkpoint; 0 = after stage 1)", "single": "epoch (checkpoint)"}
    for a in (ax, ax_defs):
        a.axvline(
            median_point,
            color="#444444",
            ls="--",
            lw=1.2,
            label=f"{point_name}, median {median_point:g}" if a is ax else None,
        )
        a.plot(
            points,
            [-3] * len(points),
            "|",
            color="#444444",
            ms=10,
            mew=1.5,
            clip_on=False,
            label="each seed's evaluation point" if a is ax else None,
        )
        a.set_ylim(-5, 103)
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_xlabel(stage_name.get(stage, f"{stage} checkpoint"))
        a.grid(alpha=0.3)
    ax.set_ylabel("test accuracy (%)")
    ax_defs.set_ylabel("definitions reproduced (%)")
    effects = [r.effect for r in group]
    m, lo, hi = t_interval(np.array(effects))
    ci = f"95% t-CI [{lo:+.1f}, {hi:+.1f}]" if n > 1 else "one seed: no CI"
    fig.suptitle(
        f"{learner} on {task} ({pipeline}), {n} seed{'s' if n > 1 else ''}: IML effect {m:+.1f} points ({ci})",
        fontsize=11,
    )
    ax.set_title("test accuracy per subset", fontsize=10)
    ax_defs.set_title("definitions reproduced, per tag (one-stage: stage 1's too)", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = ax_defs.get_legend_handles_labels()
    fig.legend(
        handles + more,
        labels + more_labels,
        loc="outside lower center",
        ncol=4,
        fontsize=8,
        frameon=False,
        title_fontsize=8,
        title=f"Lines: mean over the seeds at each evaluated checkpoint (at least {need} of {n}); "
        f"bands: 95% t-based CI over seeds. A seed's evaluation point is its first checkpoint "
        f"with every trained tag's definitions ≥ {100 * threshold:g}%; training runs on to the budget.",
    )
    return save_figure(fig, out_dir / f"curves-{safe_name(group_name)}", formats)


def plot_ablation(
    records: list[RunRecord], out_dir: Path, ablation: Ablation = DOSE, formats: Iterable[str] = FORMATS
) -> list[Path]:
    """The effect against an ablation's parameter, one line per series with ≥ 3 levels (mean and
    95% t-CI), labelled with its trend: the mean per-seed slope (the levels share seeds), or both
    slopes where the window's and the point's disagree in sign; `OUT/figures/<ablation>.png`."""
    levels, trends = trend(records, ablation)
    if trends.empty:
        return []
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    for i, row in trends.iterrows():
        rows = levels[levels["series"] == row["series"]]
        x = rows["level"] * (1.02 ** (i - 1)) if ablation.per_doubling else rows["level"] + 0.004 * (i - 1)
        ax.errorbar(
            x,
            rows["effect_mean"],
            yerr=[rows["effect_mean"] - rows["ci_low"], rows["ci_high"] - rows["effect_mean"]],
            fmt="o-",
            capsize=3,
            label=f"{row['series']}: {_trend_label(row, ablation)}",
        )
    if ablation.per_doubling:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(levels["level"].unique()), [f"{v:g}" for v in sorted(levels["level"].unique())])
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel=ablation.axis, ylabel="IML effect, points (95% CI over seeds)", title=f"{ablation.title}: IML effect")
    ax.legend(fontsize=7)
    return save_figure(fig, out_dir / ablation.name, formats)


def _trend_label(row: pd.Series, ablation: Ablation) -> str:
    """A series' trend for the legend: the mean per-seed slope with its 95% t-CI across seeds, or where
    the slopes at the window and at the point disagree in sign, both, as depending on when it is read."""
    if not row["reported"]:
        return (
            f"depends on when it is read: slope {row['slope_per_step']:+.0f} at the window, "
            f"{row['slope_point_per_step']:+.0f} at the point {ablation.unit}"
        )
    return (
        f"per-seed slope {row['slope_per_step']:+.0f} [{row['slope_ci_low_per_step']:+.0f}, "
        f"{row['slope_ci_high_per_step']:+.0f}] {ablation.unit}"
    )


def plot(
    results_dir: str | Path,
    out_dir: str | Path,
    margin: float | None = None,
    formats: Iterable[str] = FORMATS,
    records: list[RunRecord] | None = None,
) -> list[Path]:
    """Every figure for a results directory: the leaderboard chart, one learning-curve figure per
    run group, one figure per sweep CSV. Returns the files written (PNG and SVG by default)."""
    records = load_results(results_dir) if records is None else records  # the report has read them already
    formats = tuple(formats)
    if not formats or set(formats) - set(FORMATS):
        raise ImlbenchError(f"formats must be among {', '.join(FORMATS)}, got {', '.join(formats) or 'none'}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = plot_leaderboard(records, out, margin, formats)
    for label, group in run_groups(records).items():
        paths += plot_curves(group, out, label, formats=formats)
    for csv in sweep_files(Path(results_dir)):
        paths += plot_sweep(csv, out, margin, formats)
    for ablation in ABLATIONS:
        paths += plot_ablation(records, out, ablation, formats)
    return paths
