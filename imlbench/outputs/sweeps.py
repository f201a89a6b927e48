"""A sweep's figure: the effect and its CI over the swept parameter(s), one line per learner."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from imlbench.core.names import safe_name
from imlbench.outputs.drawing import CURVE_SUBSETS, FORMATS, save_figure
from imlbench.scoring.verdicts import DEFAULT_MARGIN
from imlbench.store.results import (
    PARAM_PREFIX,
    effects_of,
    read_sweep,
    swept_columns,
)


def _axis_values(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, list[str], bool]:
    """Numeric x positions for a parameter column; categorical values get 0..k-1 and tick labels."""
    values = frame[column]
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and not values.map(lambda v: isinstance(v, bool)).any():
        return numeric.to_numpy(dtype=float), [f"{v:g}" for v in numeric], True
    labels = values.astype(str).tolist()
    order = list(dict.fromkeys(labels))
    return np.array([order.index(v) for v in labels], dtype=float), labels, False


def plot_sweep(csv: Path, out_dir: Path, margin: float | None = None, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Score against the swept parameter: mean effect with its 95% t-based CI and every seed's
    effect (left); mean d1/d2/d3 accuracy per grid point (right), to show *why* the effect moves."""
    frame = read_sweep(csv)
    if margin is None:
        margin = float(frame["margin"].max()) if "margin" in frame else DEFAULT_MARGIN
    columns = swept_columns(frame)
    x_col = columns[0]
    hue_cols = [c for c in columns[1:] if frame[c].astype(str).nunique() > 1]
    fixed = [f"{c[len(PARAM_PREFIX) :]}={frame[c].iloc[0]}" for c in columns[1:] if c not in hue_cols]
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
        name = f" ({', '.join(c[len(PARAM_PREFIX) :] for c in hue_cols)} = {level})" if level else ""
        ax.errorbar(
            x,
            sub["effect_mean"],
            yerr=[sub["effect_mean"] - sub["ci_low"], sub["ci_high"] - sub["effect_mean"]],
            fmt="o-",
            color=colour,
            capsize=5,
            lw=1.8,
            ms=7,
            label=f"mean, 95% t-CI{name}",
        )
        for xi, cell in zip(x, sub["effects"] if "effects" in sub else [None] * len(sub)):
            seeds = effects_of(cell)
            if seeds:
                jitter = np.linspace(-1, 1, len(seeds)) * (0.03 if log else 0.01 * (xs.max() - xs.min() or 1))
                xj = xi * (1 + jitter) if log else xi + jitter
                ax.plot(
                    xj,
                    seeds,
                    ".",
                    color=colour,
                    alpha=0.45,
                    ms=6,
                    label="each seed" if (k == 0 and xi == x[0]) else None,
                )
        for xi, (_, r) in zip(x, sub.iterrows()):
            ax.annotate(
                r["verdict"],
                (xi, r["ci_high"]),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
                color=colour,
            )
        for subset, style in (("d1consis", "-"), ("d2consis", "--"), ("d3consis", ":")):
            column = f"acc_{subset}"
            if column in sub:
                ax_acc.plot(
                    x,
                    sub[column],
                    style,
                    marker="o",
                    color=colour if hue_cols else CURVE_SUBSETS[subset][1],
                    lw=1.8,
                    label=f"{CURVE_SUBSETS[subset][0]}{name}",
                )
    seeds_all = [e for cell in frame.get("effects", []) for e in effects_of(cell)]
    low = min([-margin, float(frame["ci_low"].min())] + seeds_all)
    high = max([margin, float(frame["ci_high"].max())] + seeds_all)
    ax.set_ylim(low - 0.05 * (high - low), high + 0.12 * (high - low))  # room for the verdict labels
    x_name = x_col[len(PARAM_PREFIX) :]
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
    ax.set_ylabel("IML effect over the reading window (percentage points)")
    ax_acc.set_ylabel("test accuracy over the reading window (%, mean over seeds)")
    ax_acc.set_ylim(-3, 103)
    first = frame.iloc[0]
    title = (
        f"{first['learner'].split('[')[0]} on {first['task'].split('[')[0]} ({first['pipeline']}): "
        f"IML effect vs {x_name}"
    )
    ax.set_title(title + (f"\nfixed: {', '.join(fixed)}" if fixed else ""), fontsize=10, loc="left")
    ax_acc.set_title("what moves: accuracy on stage-2-defined variables", fontsize=10)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    ax_acc.legend(fontsize=8, loc="best", framealpha=0.85)
    fig.tight_layout()
    return save_figure(fig, out_dir / f"sweep-{safe_name(csv.stem)}", formats)
