"""The interactive figures of `report.html`: a forest plot of the leaderboard and, per task, the
learning curves of its learners overlaid.

Plotly, because the page must be one file that works offline and still lets a reader hover, zoom
and hide traces: plotly.js is inlined once and each figure is a few kilobytes of JSON, where
matplotlib gives only pictures and Bokeh/Altair need their own script bundles (Altair three of them).
Curves are averaged over seeds here, before plotting, so the page carries one short trace per learner.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from imlbench.outputs.drawing import t_interval
from imlbench.store.records import RunRecord
from imlbench.store.results import run_groups

VERDICT_COLOURS = {"IML": "#1b7837", "reverse": "#762a83", "none": "#777777", "inconclusive": "#e08214"}
PIPELINE_DASH = {"two-stage": "solid", "one-stage": "dash", "three-stage": "dot"}
PALETTE = (
    "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #bcbd22 #17becf "
    "#393b79 #ad494a #637939 #8c6d31 #7b4173 #3182bd"
).split()
FONT = {"family": "system-ui, sans-serif", "size": 12}


def short(text: str, width: int = 60) -> str:
    """Long learner names (a search's `base_params={...}`) cut for axis labels; hover shows them whole."""
    return text if len(text) <= width else text[: width - 1] + "…"


def base_name(name: str) -> str:
    """A task's or learner's name without its `[param=value,...]` overrides."""
    return re.sub(r"\[.*\]$", "", name)


def forest(board: pd.DataFrame, sentences: list[str]) -> go.Figure:
    """Effect with its 95% CI per leaderboard row, first row on top, coloured by verdict, with the
    zero line and the equivalence margin: the whole leaderboard at a glance."""
    n = len(board)
    fig = go.Figure()
    for verdict, colour in VERDICT_COLOURS.items():
        rows = [i for i in range(n) if board["verdict"].iloc[i] == verdict]
        if not rows:
            continue
        part = board.iloc[rows]
        mean = part["effect_mean"].astype(float)
        fig.add_trace(
            go.Scatter(
                x=mean.round(2).tolist(),
                y=[n - 1 - i for i in rows],
                mode="markers",
                name=verdict,
                marker={"color": colour, "size": 8},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": (part["ci_high"].astype(float) - mean).round(2).fillna(0).tolist(),
                    "arrayminus": (mean - part["ci_low"].astype(float)).round(2).fillna(0).tolist(),
                    "color": colour,
                    "thickness": 1.5,
                    "width": 3,
                },
                hovertext=[sentences[i] for i in rows],
                hoverinfo="text",
            )
        )
    margins = sorted({float(m) for m in board.get("margin", pd.Series(dtype=float)).dropna()})
    if len(margins) == 1:
        fig.add_vrect(x0=-margins[0], x1=margins[0], fillcolor="#dddddd", opacity=0.5, line_width=0, layer="below")
    fig.add_vline(x=0, line_color="black", line_width=1)
    labels = [short(f"{r['learner']} ({r['pipeline']}) on {r['task']}", 90) for _, r in board.iloc[::-1].iterrows()]
    fig.update_layout(
        template="plotly_white",
        font=FONT,
        height=130 + 17 * n,
        margin={"l": 10, "r": 10, "t": 50, "b": 50},
        title={"text": "IML effect per leaderboard row: mean over seeds with 95% Student-t CI", "x": 0},
        xaxis={"title": "acc(d1consis) − acc(d2consis), points (grey: the equivalence margin)", "zeroline": False},
        yaxis={"tickvals": list(range(n)), "ticktext": labels, "range": [-0.7, n - 0.3], "automargin": True},
        legend={
            "title": {"text": "verdict"},
            "orientation": "h",
            "y": 1.0,
            "yanchor": "bottom",
            "x": 1,
            "xanchor": "right",
        },
    )
    return fig


def shown_groups(records: list[RunRecord]) -> dict[str, list[list[RunRecord]]]:
    """Run groups by base task, one per learner and pipeline: the row without parameter overrides
    where there is one (else the shortest-named variant), so that a figure stays readable; the
    other rows are in the table and the Markdown report's per-row figures."""
    best: dict[tuple[str, str, str], list[RunRecord]] = {}
    for group in run_groups(records).values():
        first = group[0]
        key = (base_name(first.task_name), base_name(first.learner_name), first.pipeline)
        rank = (len(first.task_name), len(first.learner_name), first.learner_name)
        held = best.get(key)
        if held is None or rank < (len(held[0].task_name), len(held[0].learner_name), held[0].learner_name):
            best[key] = group
    by_task: dict[str, list[list[RunRecord]]] = {}
    for key in sorted(best):
        by_task.setdefault(key[0], []).append(best[key])
    return by_task


def mean_curve(group: list[RunRecord], value: Callable[[dict], float | None]) -> tuple[list[int], list[float]]:
    """Mean over seeds of `value(entry)` at each checkpoint of the scored stage that at least half
    the seeds (and 2 when there are several) have a value for, as `plot_curves` draws them."""
    stage = group[0].evaluation_point["stage"]
    values: dict[int, list[float]] = {}
    for record in group:
        for entry in record.curve:
            v = value(entry) if entry.get("stage") == stage else None
            if v is not None and math.isfinite(v):
                values.setdefault(int(entry["checkpoint"]), []).append(v)
    need = max(1, min(2, len(group)), math.ceil(len(group) / 2))
    xs = [c for c in sorted(values) if len(values[c]) >= need]
    return xs, [float(np.mean(values[c])) for c in xs]


def accuracy_effect(entry: dict) -> float | None:
    """acc(d1consis) − acc(d2consis) in points, where this checkpoint evaluated the test subsets."""
    acc = entry.get("accuracy") or {}
    return 100 * (acc["d1consis"] - acc["d2consis"]) if "d1consis" in acc and "d2consis" in acc else None


def point_logprob(group: list[RunRecord]) -> tuple[float, float, float, float] | None:
    """The answer-score effect (log-prob of the right answer, d1consis − d2consis) at the evaluation
    point, where the harness takes answer scores: (median point, mean, CI low, CI high) over seeds."""
    seeds = [r for r in group if math.isfinite(r.scores.get("logprob_effect", math.nan))]
    if not seeds:
        return None
    mean, low, high = t_interval(np.array([r.scores["logprob_effect"] for r in seeds]))
    return float(np.median([r.evaluation_point["checkpoint"] for r in seeds])), mean, low, high


def task_curves(task: str, groups: list[list[RunRecord]]) -> go.Figure:
    """Every shown learner of a task overlaid: the accuracy effect across checkpoints and, where the
    records have answer scores, the log-prob effect over the reading window beside it (mean and 95%
    t-CI over seeds, at the median point); a legend click hides a learner in both."""
    points = [point_logprob(g) for g in groups]
    cols = 2 if any(points) else 1
    titles = ["accuracy effect (points) across training", "answer-score effect over the window (nats)"]
    fig = make_subplots(rows=1, cols=cols, subplot_titles=titles[:cols], horizontal_spacing=0.07)
    learners = sorted({base_name(g[0].learner_name) for g in groups})  # a colour per learner, a dash per pipeline
    for group, point in zip(groups, points, strict=True):
        first = group[0]
        name = f"{short(first.learner_name, 48)} ({first.pipeline}, n={len(group)})"
        colour = PALETTE[learners.index(base_name(first.learner_name)) % len(PALETTE)]
        style = {"color": colour, "dash": PIPELINE_DASH.get(first.pipeline, "dashdot"), "width": 2}
        xs, ys = mean_curve(group, accuracy_effect)
        hover = f"{first.learner_name} ({first.pipeline})<br>checkpoint %{{x}}: %{{y}}<extra></extra>"
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[round(y, 2) for y in ys],
                mode="lines+markers" if len(xs) < 30 else "lines",
                name=name,
                legendgroup=name,
                line=style,
                marker={"size": 4},
                hovertemplate=hover,
            ),
            row=1,
            col=1,
        )
        if point:
            x, mean, low, high = point
            fig.add_trace(
                go.Scatter(
                    x=[x],
                    y=[round(mean, 3)],
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": [round(high - mean, 3)],
                        "arrayminus": [round(mean - low, 3)],
                    },
                    mode="markers",
                    name=name,
                    legendgroup=name,
                    showlegend=False,
                    marker={"color": style["color"], "size": 9},
                    hovertemplate=hover.replace("<br>", f" [{low:+.3f}, {high:+.3f}]<br>"),
                ),
                row=1,
                col=2,
            )
    for col in range(1, cols + 1):
        fig.add_hline(y=0, line_color="black", line_width=1, row=1, col=col)
    fig.update_xaxes(title_text="checkpoint (two-stage: stage-2 epoch, 0 = after stage 1)", row=1, col=1)
    if cols == 2:
        fig.update_xaxes(title_text="evaluation point, median over seeds (checkpoint)", row=1, col=2)
    fig.update_layout(
        template="plotly_white",
        font=FONT,
        height=max(420, 200 + 24 * len(groups)),
        margin={"l": 10, "r": 10, "t": 70, "b": 10},
        title={"text": f"{task}: d1consis − d2consis effect per learner, mean over seeds", "x": 0},
        legend={"font": {"size": 11}},
    )
    return fig
