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
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from scipy import stats

from imlbench.store.records import Record
from imlbench.core.errors import ImlbenchError
from imlbench.store.results import effects_of, is_control, load_results, read_sweep, run_groups, sweep_files
from imlbench.core.protocol import DEFAULT_THRESHOLD
from imlbench.scoring.trends import ABLATIONS, DOSE, Ablation, trend
from imlbench.scoring.verdicts import DEFAULT_MARGIN, summarize
from imlbench.store.results import PARAM_PREFIX, swept_columns
from imlbench.core.names import safe_name

FORMATS = ("png", "svg")
# The subsets of the paper's figures, in drawing order, with a colour and a line style each:
# stage-2 definitions solid, held-out questions about stage-1 variables dashed, the baseline dotted.
CURVE_SUBSETS = {
    "d1consis": ("d1consis (tag1, reliable)", "#1b7837", "-"),
    "d2consis": ("d2consis (tag2, unreliable)", "#c51b7d", "-"),
    "d3consis": ("d3consis (tag3, neutral)", "#2166ac", "-"),
    "qd1consis": ("qd1consis (held-out q)", "#7fbf7b", "--"),
    "qd2incons": ("qd2incons (held-out q)", "#e9a3c9", "--"),
    "qd1incons": ("qd1incons (held-out q)", "#b8e186", "--"),
    "qd2consis": ("qd2consis (held-out q)", "#f1b6da", "--"),
    "q": ("q (held-out q, no defs)", "#878787", "--"),
    "no_qd_baseline": ("no_qd_baseline (guessing)", "#000000", ":"),
}
TAG_COLOURS = {"tag1": "#1b7837", "tag2": "#c51b7d", "tag3": "#2166ac"}

def save_figure(fig: Figure, stem: Path, formats: Iterable[str]) -> list[Path]:
    FigureCanvasAgg(fig)
    paths = []
    for fmt in formats:
        path = stem.parent / f"{stem.name}.{fmt}"  # not with_suffix: names hold dots (0.5)
        fig.savefig(path, format=fmt, dpi=100, bbox_inches="tight",
                    metadata={"Date": None} if fmt == "svg" else None)
        if fmt == "png":  # a 256-colour palette: a third of the bytes, no visible change for line plots
            with Image.open(path) as image:
                small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
            small.save(path, optimize=True)
        paths.append(path)
    return paths


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-based CI; (mean, mean, mean) for a single value: the curve bands, drawn like the
    leaderboard's intervals (scoring v2)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


# --------------------------------------------------------------------------------------------
# figures


def plot_leaderboard(records: list[Record], out_dir: Path, margin: float | None = None,
                     formats: Iterable[str] = FORMATS) -> list[Path]:
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
        ax.errorbar([mean], [i], xerr=[[mean - low], [high - mean]], fmt="s" if control else "o",
                    color=colour, mfc="white" if control else colour, ms=7, capsize=4, lw=1.5, label=label)
        name = row["learner"] if len(row["learner"]) <= 40 else row["learner"].replace(",", ",\n  ")
        labels.append(f"{name}{' [control]' if control else ''}\n{row['pipeline']} on {row['task']}")
        ax.annotate(f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]  {row['verdict']}  (n={row['n_seeds']})",
                    xy=(1.01, i), xycoords=("axes fraction", "data"), va="center", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    lo = min(-margin, float(np.nanmin(board["ci_low"]))) - 5
    hi = max(margin, float(np.nanmax(board["ci_high"]))) + 5
    ax.set_xlim(lo, hi)
    ax.set_xlabel("IML effect = acc(d1consis) − acc(d2consis) at the evaluation point (percentage points)")
    ax.set_title("Leaderboard: IML effect, mean over seeds with 95% Student-t CI", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return save_figure(fig, out_dir / "leaderboard", formats)


def _curve_table(group: list[Record]) -> tuple[str, dict[int, list[Record]]]:
    """Curve entries by checkpoint over seeds, for the stage whose checkpoints decide the point."""
    stage = group[0].evaluation_point["stage"]
    by_checkpoint: dict[int, list[Record]] = {}
    for r in group:
        for entry in r.curve:
            if entry["stage"] == stage:
                by_checkpoint.setdefault(int(entry["checkpoint"]), []).append(entry)
    return stage, dict(sorted(by_checkpoint.items()))


def plot_curves(group: list[Record], out_dir: Path, group_name: str, threshold: float | None = None,
                formats: Iterable[str] = FORMATS) -> list[Path]:
    """The paper's kind of figure for one run group: test accuracy per subset across the stage-2
    checkpoints where the test subsets were evaluated (mean over seeds, 95% t-based CI band), and the
    definition accuracy per tag at every checkpoint; each seed's evaluation point is a tick, their
    median a dashed line. Protocol v2 runs whole budgets, so the curves go on past the point."""
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
    point_name = "evaluation point" if not not_learned else \
        f"evaluation point ({not_learned}/{n} seeds: best checkpoint, definitions not learned)"
    stage_name = {"stage2": "stage-2 epoch (checkpoint; 0 = after stage 1)", "single": "epoch (checkpoint)"}
    for a in (ax, ax_defs):
        a.axvline(median_point, color="#444444", ls="--", lw=1.2,
                  label=f"{point_name}, median {median_point:g}" if a is ax else None)
        a.plot(points, [-3] * len(points), "|", color="#444444", ms=10, mew=1.5, clip_on=False,
               label="each seed's evaluation point" if a is ax else None)
        a.set_ylim(-5, 103)
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_xlabel(stage_name.get(stage, f"{stage} checkpoint"))
        a.grid(alpha=0.3)
    ax.set_ylabel("test accuracy (%)")
    ax_defs.set_ylabel("definitions reproduced (%)")
    effects = [r.effect for r in group]
    m, lo, hi = t_interval(np.array(effects))
    ci = f"95% t-CI [{lo:+.1f}, {hi:+.1f}]" if n > 1 else "one seed: no CI"
    fig.suptitle(f"{learner} on {task} ({pipeline}), {n} seed{'s' if n > 1 else ''}: IML effect "
                 f"{m:+.1f} points ({ci})", fontsize=11)
    ax.set_title("test accuracy per subset", fontsize=10)
    ax_defs.set_title("definitions reproduced, per tag (one-stage: stage 1's too)", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = ax_defs.get_legend_handles_labels()
    fig.legend(handles + more, labels + more_labels, loc="outside lower center", ncol=4, fontsize=8,
               frameon=False, title_fontsize=8,
               title=f"Lines: mean over the seeds at each evaluated checkpoint (at least {need} of {n}); "
                     f"bands: 95% t-based CI over seeds. A seed's evaluation point is its first checkpoint "
                     f"with every trained tag's definitions ≥ {100 * threshold:g}%; training runs on to the budget.")
    return save_figure(fig, out_dir / f"curves-{safe_name(group_name)}", formats)


def _axis_values(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, list[str], bool]:
    """Numeric x positions for a parameter column; categorical values get 0..k-1 and tick labels."""
    values = frame[column]
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and not values.map(lambda v: isinstance(v, bool)).any():
        return numeric.to_numpy(dtype=float), [f"{v:g}" for v in numeric], True
    labels = values.astype(str).tolist()
    order = list(dict.fromkeys(labels))
    return np.array([order.index(v) for v in labels], dtype=float), labels, False


def plot_sweep(csv: Path, out_dir: Path, margin: float | None = None,
               formats: Iterable[str] = FORMATS) -> list[Path]:
    """Score against the swept parameter: mean effect with its 95% t-based CI and every seed's
    effect (left); mean d1/d2/d3 accuracy per grid point (right), to show *why* the effect moves."""
    frame = read_sweep(csv)
    if margin is None:
        margin = float(frame["margin"].max()) if "margin" in frame else DEFAULT_MARGIN
    columns = swept_columns(frame)
    x_col = columns[0]
    hue_cols = [c for c in columns[1:] if frame[c].astype(str).nunique() > 1]
    fixed = [f"{c[len(PARAM_PREFIX):]}={frame[c].iloc[0]}" for c in columns[1:] if c not in hue_cols]
    hue = frame[hue_cols].astype(str).agg(", ".join, axis=1) if hue_cols else pd.Series([""] * len(frame))
    hue = hue.map(lambda v: v or "")
    fig = Figure(figsize=(12, 4.4))
    ax, ax_acc = fig.subplots(1, 2)
    xs, ticks, numeric = _axis_values(frame, x_col)
    positive = numeric and (xs > 0).all()
    log = positive and xs.max() / xs.min() >= 8
    ax.axhspan(-margin, margin, color="#dddddd", alpha=0.6, lw=0, label=f"±{margin:g}-point margin")
    ax.axhline(0, color="black", lw=1)
    palette = ["#08519c", "#d95f0e", "#54278f", "#006d2c", "#a50f15"]
    for k, level in enumerate(dict.fromkeys(hue)):
        rows = (hue == level).to_numpy()
        colour = palette[k % len(palette)]
        sub, x = frame[rows], xs[rows]
        order = np.argsort(x)
        sub, x = sub.iloc[order], x[order]
        name = f" ({', '.join(c[len(PARAM_PREFIX):] for c in hue_cols)} = {level})" if level else ""
        ax.errorbar(x, sub["effect_mean"], yerr=[sub["effect_mean"] - sub["ci_low"], sub["ci_high"] - sub["effect_mean"]],
                    fmt="o-", color=colour, capsize=5, lw=1.8, ms=7, label=f"mean, 95% t-CI{name}")
        for xi, cell in zip(x, sub["effects"] if "effects" in sub else [None] * len(sub)):
            seeds = effects_of(cell)
            if seeds:
                jitter = (np.linspace(-1, 1, len(seeds)) * (0.03 if log else 0.01 * (xs.max() - xs.min() or 1)))
                xj = xi * (1 + jitter) if log else xi + jitter
                ax.plot(xj, seeds, ".", color=colour, alpha=0.45, ms=6,
                        label="each seed" if (k == 0 and xi == x[0]) else None)
        for xi, (_, r) in zip(x, sub.iterrows()):
            ax.annotate(r["verdict"], (xi, r["ci_high"]), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=8, color=colour)
        for subset, style in (("d1consis", "-"), ("d2consis", "--"), ("d3consis", ":")):
            column = f"acc_{subset}"
            if column in sub:
                ax_acc.plot(x, sub[column], style, marker="o", color=colour if hue_cols else CURVE_SUBSETS[subset][1],
                            lw=1.8, label=f"{CURVE_SUBSETS[subset][0]}{name}")
    seeds_all = [e for cell in frame.get("effects", []) for e in effects_of(cell)]
    low = min([-margin, float(frame["ci_low"].min())] + seeds_all)
    high = max([margin, float(frame["ci_high"].max())] + seeds_all)
    ax.set_ylim(low - 0.05 * (high - low), high + 0.12 * (high - low))  # room for the verdict labels
    x_name = x_col[len(PARAM_PREFIX):]
    for a in (ax, ax_acc):
        if log:
            a.set_xscale("log", base=2)
        if numeric:
            a.set_xticks(sorted(set(xs)), [f"{v:g}" for v in sorted(set(xs))])
            a.minorticks_off()
        else:
            order = list(dict.fromkeys(ticks))
            a.set_xticks(range(len(order)), order)
        a.set_xlabel(x_name + (" (log scale)" if log else ""))
        a.grid(alpha=0.3)
    ax.set_ylabel("IML effect at the evaluation point (percentage points)")
    ax_acc.set_ylabel("test accuracy at the evaluation point (%, mean over seeds)")
    ax_acc.set_ylim(-3, 103)
    first = frame.iloc[0]
    title = f"{first['learner'].split('[')[0]} on {first['task'].split('[')[0]} ({first['pipeline']}): IML effect vs {x_name}"
    ax.set_title(title + (f"\nfixed: {', '.join(fixed)}" if fixed else ""), fontsize=10, loc="left")
    ax_acc.set_title("what moves: accuracy on stage-2-defined variables", fontsize=10)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    ax_acc.legend(fontsize=8, loc="best", framealpha=0.85)
    fig.tight_layout()
    return save_figure(fig, out_dir / f"sweep-{safe_name(csv.stem)}", formats)


def plot_ablation(records: list[Record], out_dir: Path, ablation: Ablation = DOSE,
                  formats: Iterable[str] = FORMATS) -> list[Path]:
    """The effect against an ablation's parameter, one line per series with ≥ 3 levels (mean and
    95% t-CI); `OUT/figures/<ablation>.png`."""
    levels, trends = trend(records, ablation)
    if trends.empty:
        return []
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    for i, row in trends.iterrows():
        rows = levels[levels["series"] == row["series"]]
        x = rows["level"] * (1.02 ** (i - 1)) if ablation.per_doubling else rows["level"] + 0.004 * (i - 1)
        ax.errorbar(x, rows["effect_mean"], yerr=[rows["effect_mean"] - rows["ci_low"], rows["ci_high"] - rows["effect_mean"]],
                    fmt="o-", capsize=3, label=f"{row['series']}: slope {row['slope_per_step']:+.0f} {ablation.unit}")
    if ablation.per_doubling:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(levels["level"].unique()), [f"{v:g}" for v in sorted(levels["level"].unique())])
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel=ablation.axis, ylabel="IML effect, points (95% CI over seeds)",
           title=f"{ablation.title}: IML effect")
    ax.legend(fontsize=7)
    return save_figure(fig, out_dir / ablation.name, formats)


def plot(results_dir: str | Path, out_dir: str | Path, margin: float | None = None,
         formats: Iterable[str] = FORMATS, records: list[Record] | None = None) -> list[Path]:
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
