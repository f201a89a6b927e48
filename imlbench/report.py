"""Figures and a Markdown report built from a results directory alone, and their CLI commands.

`plot` draws (a) the leaderboard as a chart, (b) per run group the learning curves of the test
subsets across the stage-2 checkpoints, (c) every sweep CSV as score against the swept parameter.
`report` writes report.md with the leaderboard table, the verdicts in words, the figures, the sizes
and versions used. Only matplotlib's object API with the Agg canvas is used (no pyplot), so nothing
global changes and no display is needed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from scipy import stats

from imlbench.records import iter_record_files, read_record
from imlbench.registry import ImlbenchError, load_target
from imlbench.scoring import DEFAULT_MARGIN, summarize
from imlbench.sweep import PARAM_PREFIX, SWEEPS_DIR, effects_of, parse_grid, sweep, swept_columns
from imlbench.util import safe_name as _safe

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
REQUIRED = ("task", "learner", "pipeline", "seed", "scores", "accuracy", "curve", "evaluation_point",
            "definitions_learned", "measurements", "versions")


# --------------------------------------------------------------------------------------------
# loading


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def load_results(results_dir: str | Path) -> list[dict[str, Any]]:
    """Every record under results_dir, checked. Raises ImlbenchError (one line) when the directory
    is missing or empty, when any record is unreadable, or when no run finished: a report built
    from part of a directory would silently misstate it."""
    root = Path(results_dir)
    if not (root / "records").is_dir():
        raise ImlbenchError(f"{root} holds no records/ folder; point at a results directory written "
                            f"by `imlbench run --out DIR` or `imlbench sweep --out DIR`")
    files = iter_record_files(root)
    if not files:
        raise ImlbenchError(f"{root / 'records'} holds no run records; run something first "
                            f"(`imlbench run --out {root}`)")
    records = []
    for path in files:
        record = read_record(path)  # raises ImlbenchError on unreadable files
        if record["status"] == "ok":
            missing = [k for k in REQUIRED if k not in record]
            if missing or not isinstance(record["curve"], list) or not isinstance(record["accuracy"], dict):
                raise ImlbenchError(_one_line(f"malformed record {path}: missing or bad "
                                              f"{', '.join(missing) or 'curve/accuracy'}; delete it or "
                                              f"rerun with --force"))
            try:
                for entry in record["curve"]:
                    entry["stage"], entry["checkpoint"], dict(entry["accuracy"]), dict(entry["definitions"])
                record["task"]["name"], record["learner"]["name"], float(record["scores"]["iml_effect"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ImlbenchError(_one_line(f"malformed record {path}: {type(exc).__name__}: {exc}; "
                                              f"delete it or rerun with --force")) from exc
        records.append(record)
    if not any(r["status"] == "ok" for r in records):
        first = next((r.get("error") for r in records), "")
        raise ImlbenchError(_one_line(f"{root} holds {len(records)} records but no finished run; first error: {first}"))
    return records


def _is_control(records: list[dict[str, Any]]) -> bool:
    """Whether the group's learner class declares itself a control (`Learner.is_control`)."""
    try:
        return bool(load_target("learner", str(records[0]["learner"].get("target", ""))).is_control)
    except ImlbenchError:  # a learner that is no longer installed
        return False


def _groups(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """Finished records by (task, learner, pipeline) names, seeds sorted."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        if r["status"] == "ok":
            groups.setdefault((r["task"]["name"], r["learner"]["name"], r["pipeline"]), []).append(r)
    for group in groups.values():
        group.sort(key=lambda r: r["seed"])
    return dict(sorted(groups.items()))


def _save(fig: Figure, stem: Path, formats: Iterable[str]) -> list[Path]:
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
    """Mean and t-based CI; (mean, mean, mean) for a single value. Used for the curve bands, where
    a percentile bootstrap over 5 seeds would be too narrow (see README, caveat on small n)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


# --------------------------------------------------------------------------------------------
# figures


def plot_leaderboard(records: list[dict[str, Any]], out_dir: Path, margin: float = DEFAULT_MARGIN,
                     formats: Iterable[str] = FORMATS) -> list[Path]:
    """IML effect with its 95% bootstrap CI per (task, learner, pipeline); controls hollow grey."""
    board = summarize([r for r in records if r["status"] == "ok"], margin)
    groups = _groups(records)
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
        control = _is_control(groups[(row["task"], row["learner"], row["pipeline"])])
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
    ax.set_title("Leaderboard: IML effect, mean over seeds with 95% percentile-bootstrap CI", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return _save(fig, out_dir / "leaderboard", formats)


def _curve_table(group: list[dict[str, Any]]) -> tuple[str, dict[int, list[dict[str, Any]]]]:
    """Curve entries by checkpoint over seeds, for the stage whose checkpoints decide the point."""
    stage = group[0]["evaluation_point"]["stage"]
    by_checkpoint: dict[int, list[dict[str, Any]]] = {}
    for r in group:
        for entry in r["curve"]:
            if entry["stage"] == stage:
                by_checkpoint.setdefault(int(entry["checkpoint"]), []).append(entry)
    return stage, dict(sorted(by_checkpoint.items()))


def plot_curves(group: list[dict[str, Any]], out_dir: Path, threshold: float | None = None,
                formats: Iterable[str] = FORMATS) -> list[Path]:
    """The paper's kind of figure for one run group: test accuracy per subset across the stage-2
    checkpoints (mean over the seeds still running, 95% t-based CI band), and the stage-2 definition
    accuracy per tag; each seed's evaluation point is a tick, their median a dashed line."""
    task, learner, pipeline = group[0]["task"]["name"], group[0]["learner"]["name"], group[0]["pipeline"]
    stage, table = _curve_table(group)
    if threshold is None:
        threshold = float(group[0].get("protocol", {}).get("definition_threshold", 0.98))
    n = len(group)
    # draw checkpoints that at least half the seeds (and 2 when there are several) still reach:
    # past a seed's evaluation point the harness stopped training it, so it has no values there.
    need = max(1, min(2, n), math.ceil(n / 2))
    checkpoints = [c for c, entries in table.items() if len(entries) >= need]
    points = [int(r["evaluation_point"]["checkpoint"]) for r in group]
    fig = Figure(figsize=(12, 5.4), layout="constrained")
    ax, ax_defs = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    subsets = [s for s in CURVE_SUBSETS if any(s in e["accuracy"] for c in checkpoints for e in table[c])]
    for subset in subsets:
        label, colour, style = CURVE_SUBSETS[subset]
        xs, mean, low, high = [], [], [], []
        for c in checkpoints:
            values = [100 * e["accuracy"][subset] for e in table[c] if subset in e["accuracy"]]
            if values:
                m, lo, hi = t_interval(np.array(values))
                xs.append(c), mean.append(m), low.append(max(lo, 0)), high.append(min(hi, 100))
        ax.plot(xs, mean, style, color=colour, lw=2 if subset.startswith("d") else 1.4, label=label)
        ax.fill_between(xs, low, high, color=colour, alpha=0.15, lw=0)
    for tag, colour in TAG_COLOURS.items():
        xs, mean, low, high = [], [], [], []
        for c in checkpoints:
            values = [100 * e["definitions"][tag] for e in table[c] if tag in e["definitions"]]
            if values:
                m, lo, hi = t_interval(np.array(values))
                xs.append(c), mean.append(m), low.append(max(lo, 0)), high.append(min(hi, 100))
        if xs:
            ax_defs.plot(xs, mean, "-", color=colour, lw=2, label=f"{tag} definitions")
            ax_defs.fill_between(xs, low, high, color=colour, alpha=0.15, lw=0)
    ax_defs.axhline(100 * threshold, color="black", lw=1, ls="--", label=f"threshold {100 * threshold:g}%")
    median_point = float(np.median(points))
    not_learned = sum(not r["definitions_learned"] for r in group)
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
    ax_defs.set_ylabel("stage-2 definition reproduced (%)")
    effects = [r["scores"]["iml_effect"] for r in group]
    m, lo, hi = t_interval(np.array(effects))
    ci = f"95% t-CI [{lo:+.1f}, {hi:+.1f}]" if n > 1 else "one seed: no CI"
    fig.suptitle(f"{learner} on {task} ({pipeline}), {n} seed{'s' if n > 1 else ''}: IML effect "
                 f"{m:+.1f} points ({ci})", fontsize=11)
    ax.set_title("test accuracy per subset", fontsize=10)
    ax_defs.set_title("stage-2 definitions reproduced, per tag", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = ax_defs.get_legend_handles_labels()
    fig.legend(handles + more, labels + more_labels, loc="outside lower center", ncol=4, fontsize=8,
               frameon=False, title_fontsize=8,
               title=f"Lines: mean over the seeds still training at each checkpoint (at least {need} of {n}); "
                     f"bands: 95% t-based CI over seeds. A seed stops at its evaluation point (first "
                     f"checkpoint with every tag ≥ {100 * threshold:g}%).")
    return _save(fig, out_dir / f"curves-{_safe(task)}-{_safe(learner)}-{pipeline}", formats)


def _axis_values(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, list[str], bool]:
    """Numeric x positions for a parameter column; categorical values get 0..k-1 and tick labels."""
    values = frame[column]
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and not values.map(lambda v: isinstance(v, bool)).any():
        return numeric.to_numpy(dtype=float), [f"{v:g}" for v in numeric], True
    labels = values.astype(str).tolist()
    order = list(dict.fromkeys(labels))
    return np.array([order.index(v) for v in labels], dtype=float), labels, False


def plot_sweep(csv: Path, out_dir: Path, margin: float = DEFAULT_MARGIN,
               formats: Iterable[str] = FORMATS) -> list[Path]:
    """Score against the swept parameter: mean effect with its 95% bootstrap CI and every seed's
    effect (left); mean d1/d2/d3 accuracy per grid point (right), to show *why* the effect moves."""
    frame = read_sweep(csv)
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
                    fmt="o-", color=colour, capsize=5, lw=1.8, ms=7, label=f"mean, 95% bootstrap CI{name}")
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
    return _save(fig, out_dir / f"sweep-{_safe(csv.stem)}", formats)


def read_sweep(csv: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(csv)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ImlbenchError(_one_line(f"unreadable sweep file {csv}: {type(exc).__name__}: {exc}")) from exc
    needed = {"effect_mean", "ci_low", "ci_high", "verdict", "learner", "task", "pipeline"}
    if frame.empty or needed - set(frame.columns) or not swept_columns(frame):
        raise ImlbenchError(f"malformed sweep file {csv}: expected rows with param.* columns and "
                            f"{', '.join(sorted(needed))}; rebuild it with `imlbench sweep`")
    return frame


def sweep_files(results_dir: Path) -> list[Path]:
    folder = Path(results_dir) / SWEEPS_DIR
    return sorted(p for p in folder.glob("*.csv") if not p.name.startswith(".tmp-")) if folder.is_dir() else []


def plot(results_dir: str | Path, out_dir: str | Path, margin: float = DEFAULT_MARGIN,
         formats: Iterable[str] = FORMATS) -> list[Path]:
    """Every figure for a results directory: the leaderboard chart, one learning-curve figure per
    run group, one figure per sweep CSV. Returns the files written (PNG and SVG by default)."""
    records = load_results(results_dir)
    formats = tuple(formats)
    if not formats or set(formats) - set(FORMATS):
        raise ImlbenchError(f"formats must be among {', '.join(FORMATS)}, got {', '.join(formats) or 'none'}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = plot_leaderboard(records, out, margin, formats)
    for group in _groups(records).values():
        paths += plot_curves(group, out, formats=formats)
    for csv in sweep_files(Path(results_dir)):
        paths += plot_sweep(csv, out, margin, formats)
    return paths


# --------------------------------------------------------------------------------------------
# report


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


def verdict_sentence(row: pd.Series | dict[str, Any]) -> str:
    """e.g. "transformer on synthetic-defs (two-stage): IML, +93.4 points [+90.0, +96.5] over 5 seeds"."""
    text = (f"{row['learner']} on {row['task']} ({row['pipeline']}): {row['verdict']}, "
            f"{row['effect_mean']:+.1f} points [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}] over "
            f"{row['n_seeds']} seed{'s' if row['n_seeds'] != 1 else ''}")
    extras = [f"p = {_p(row['p_one_sided'])}"]
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
    return (f"Across all {len(y)} seed runs, Spearman's ρ between {column[len(PARAM_PREFIX):]} and the "
            f"per-seed effect is {result.statistic:+.2f} (two-sided p = {_p(float(result.pvalue))}).")


def report(results_dir: str | Path, out_path: str | Path, margin: float = DEFAULT_MARGIN) -> Path:
    """Write a Markdown report of a results directory; its figures go to `figures/` beside it
    (PNG only, so that the report stays light). Needs nothing but the directory."""
    root = Path(results_dir)
    records = load_results(root)
    out_path = Path(out_path)
    if out_path.suffix.lower() not in (".md", ".markdown"):
        raise ImlbenchError(f"report path {out_path} must end in .md")
    figures_dir = out_path.parent / "figures"
    figures = plot(root, figures_dir, margin, formats=("png",))
    rel = {p.name: p.relative_to(out_path.parent).as_posix() for p in figures}
    ok = [r for r in records if r["status"] == "ok"]
    board = summarize(ok, margin)
    groups = _groups(records)
    lines = [f"# imlbench report: `{root}`", ""]
    lines += [f"{len(records)} run records ({len(ok)} finished, {len(records) - len(ok)} failed) in "
              f"{len(board)} groups (task × learner × pipeline). Effects are acc(d1consis) − acc(d2consis) in "
              f"percentage points at the evaluation point; intervals are 95% percentile-bootstrap CIs over "
              f"seeds (10 000 resamples); verdicts: IML (CI above 0), reverse (CI below 0), none (CI inside "
              f"±{margin:g} points), else inconclusive. With 5 seeds the bootstrap CI is optimistic: read it "
              f"with p (one-sided t-test) and the per-seed effects.", ""]
    lines += ["## Verdicts", ""]
    for _, row in board.iterrows():
        control = _is_control(groups[(row["task"], row["learner"], row["pipeline"])]) if \
            (row["task"], row["learner"], row["pipeline"]) in groups else False
        lines.append(f"- {verdict_sentence(row)}{' — control' if control else ''}")
    lines += ["", "## Leaderboard", ""]
    table = []
    for _, r in board.iterrows():
        table.append({
            "task": r["task"], "learner": r["learner"], "pipeline": r["pipeline"], "seeds": r["n_seeds"],
            **{k: _num(r.get(f"acc_{s}")) for k, s in (("qd1", "qd1consis"), ("qd2x", "qd2incons"), ("q", "q"),
                                                          ("d1", "d1consis"), ("d2", "d2consis"), ("d3", "d3consis"),
                                                          ("base", "no_qd_baseline"))},
            "IML effect [95% CI]": f"{r['effect_mean']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]",
            "p": _p(r["p_one_sided"]), "verdict": r["verdict"],
            "defs learned": f"{r['n_seeds'] - r['n_definitions_not_learned']}/{r['n_seeds']}",
            "s/seed": _num(r["seconds_per_seed"], "{:.1f}"),
        })
    lines += [_md_table(table), "", "Accuracies in % at the evaluation point (mean over seeds); s/seed is the "
              "wall-clock time per seed as recorded, which includes any waiting on a shared machine.", ""]
    lines += [f"![leaderboard]({rel['leaderboard.png']})", ""]
    for csv in sweep_files(root):
        frame = read_sweep(csv)
        columns = swept_columns(frame)
        lines += [f"## Sweep `{csv.stem}`", ""]
        rows = []
        for _, r in frame.iterrows():
            row = {c[len(PARAM_PREFIX):]: r[c] for c in columns}
            row.update({"seeds": r.get("n_seeds", "–"),
                        "effect [95% CI]": f"{r['effect_mean']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]",
                        "per-seed effects": ", ".join(f"{e:+.1f}" for e in effects_of(r.get("effects"))) or "–",
                        "p": _p(r.get("p_one_sided", math.nan)), "verdict": r["verdict"],
                        "d1": _num(r.get("acc_d1consis")), "d2": _num(r.get("acc_d2consis")),
                        "d3": _num(r.get("acc_d3consis")), "q": _num(r.get("acc_q")),
                        "defs learned": f"{int(r['n_seeds'] - r['n_definitions_not_learned'])}/{int(r['n_seeds'])}"
                        if "n_definitions_not_learned" in r else "–",
                        "s/seed": _num(r.get("seconds_per_seed"), "{:.1f}")})
            rows.append(row)
        lines += [_md_table(rows), ""]
        trend = _trend(frame, columns[0])
        if trend:
            lines += [trend, ""]
        lines += [f"- {verdict_sentence(r)}" for _, r in frame.iterrows()] + [""]
        name = f"sweep-{_safe(csv.stem)}.png"
        if name in rel:
            lines += [f"![{csv.stem}]({rel[name]})", ""]
    lines += ["## Learning curves", "",
              "Test accuracy per subset across the stage-2 checkpoints (0 = after stage 1), mean over the "
              "seeds still training with a 95% t-based band; right: stage-2 definitions reproduced per tag.", ""]
    for (task, learner, pipeline) in groups:
        name = f"curves-{_safe(task)}-{_safe(learner)}-{pipeline}.png"
        lines += [f"### {learner} on {task} ({pipeline})", "", f"![curves]({rel[name]})", ""]
    lines += ["## Sizes and versions", ""]
    sizes = {}
    for r in ok:
        sizes.setdefault(r["task"]["name"], r.get("sizes", {}))
    lines += [_md_table([{"task": t, **{k: v for k, v in s.items()}} for t, s in sizes.items()]), ""]
    params = {}
    for (task, learner, pipeline), group in groups.items():
        params.setdefault(learner, group[0]["learner"])
    lines += ["Learners (resolved parameters):", ""]
    for name, spec in params.items():
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(spec.get("params", {}).items()))
        lines.append(f"- `{name}` ({spec.get('target', '?')}, v{spec.get('version', '?')}): {shown}")
    tasks = {}
    for r in ok:
        tasks.setdefault(r["task"]["name"], r["task"])
    lines += ["", "Tasks (resolved parameters):", ""]
    for name, spec in tasks.items():
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(spec.get("params", {}).items()))
        lines.append(f"- `{name}` ({spec.get('target', '?')}, v{spec.get('version', '?')}): {shown}")
    version_sets = sorted({" ".join(f"{k}={v}" for k, v in sorted(r["versions"].items())) for r in ok})
    protocols = sorted({json.dumps(r.get("protocol"), sort_keys=True) for r in ok})
    lines += ["", "Versions: " + "; ".join(f"`{v}`" for v in version_sets), "",
              "Protocol: " + "; ".join(f"`{p}`" for p in protocols), ""]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("\n".join(lines))
    return out_path


# --------------------------------------------------------------------------------------------
# command line


def _seeds(text: str) -> int | list[int]:
    from imlbench.cli import parse_seeds  # local: cli imports this module to register the commands

    return parse_seeds(text)


def cmd_sweep(args: argparse.Namespace) -> int:
    grid = parse_grid(args.param)
    frame = sweep(args.learner, args.task, grid, _seeds(args.seeds), args.pipeline, args.out, args.force,
                  verbose=not args.quiet, name=args.name, margin=args.margin)
    columns = [c for c in frame.columns if c.startswith(PARAM_PREFIX)]
    shown = frame[columns + ["n_seeds", "effect_mean", "ci_low", "ci_high", "p_one_sided", "verdict",
                             "acc_d1consis", "acc_d2consis", "n_definitions_not_learned"]].copy()
    shown.columns = [c.removeprefix(PARAM_PREFIX) for c in columns] + \
        ["seeds", "effect", "ci_low", "ci_high", "p", "verdict", "d1", "d2", "defs_not_learned"]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"sweep: {frame.attrs['path']}  leaderboard: {Path(args.out) / 'leaderboard.csv'}")
    for line in frame.attrs["problems"]:
        print(f"imlbench: error: {_one_line(line)}", file=sys.stderr)
    return 1 if frame.attrs["problems"] else 0


def cmd_plot(args: argparse.Namespace) -> int:
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    paths = plot(args.results, args.out, args.margin, formats)
    for path in paths:
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    print(f"wrote {report(args.results, args.out, args.margin)}")
    return 0


def register_commands(subparsers: Any) -> None:
    """Add `sweep`, `plot` and `report` to the CLI's subparsers (see imlbench/cli.py)."""
    from imlbench.api import DEFAULT_OUT  # local: keeps `import imlbench.report` light on cycles

    sw = subparsers.add_parser("sweep", help="run a grid of parameter values and score each grid point")
    sw.add_argument("--learner", required=True, help="learner name (comma list allowed)")
    sw.add_argument("--task", required=True, help="task name (comma list allowed)")
    sw.add_argument("--param", action="append", default=[], metavar="NAME=V1,V2,...",
                    help="a swept parameter and its values (TOML, top-level commas split); repeatable: "
                         "the grid is the cartesian product; one value = a fixed setting")
    sw.add_argument("--seeds", default="5", help="a count N (seeds 0..N-1), a list 0,3,7 or a range 2-4 (default: 5)")
    sw.add_argument("--pipeline", default="two-stage", help="two-stage | one-stage (default: two-stage)")
    sw.add_argument("--out", default=DEFAULT_OUT, help="results directory (default: results); the CSV "
                                                        "goes to OUT/sweeps/")
    sw.add_argument("--name", default=None, help="sweep CSV name (default: from learner, task and parameters)")
    sw.add_argument("--force", action="store_true", help="recompute runs that already have records")
    sw.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="equivalence margin in points")
    sw.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    sw.set_defaults(func=cmd_sweep)

    pl = subparsers.add_parser("plot", help="figures of a results directory (PNG and SVG)")
    pl.add_argument("results", help="results directory (holds records/, maybe sweeps/)")
    pl.add_argument("--out", default="figures", help="folder for the figures (default: figures)")
    pl.add_argument("--formats", default="png,svg", help="comma list of png, svg (default: png,svg)")
    pl.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="equivalence margin in points")
    pl.set_defaults(func=cmd_plot)

    rp = subparsers.add_parser("report", help="a Markdown report of a results directory, figures beside it")
    rp.add_argument("results", help="results directory (holds records/, maybe sweeps/)")
    rp.add_argument("--out", default="report.md", help="Markdown path; figures go to figures/ beside it")
    rp.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="equivalence margin in points")
    rp.set_defaults(func=cmd_report)


def main(argv: list[str] | None = None) -> int:
    """`python -m imlbench.report sweep|plot|report ...`: the same commands outside `imlbench`."""
    parser = argparse.ArgumentParser(prog="python -m imlbench.report")
    register_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ImlbenchError as exc:
        print(f"imlbench: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
