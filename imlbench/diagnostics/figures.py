"""Summaries, tables and figures of the built-in diagnostics: means over seeds with Student-t 95% CIs (as the
leaderboard's), one panel per (learner, task) group."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from imlbench.outputs.drawing import TAG_COLOURS, save_figure, t_interval

TAG_ORDER = ("tag1", "tag2", "tag3")
POINT_STYLE = {"after_stage1": ("after stage 1", "--"), "at_point": ("at the evaluation point", "-")}


def summarize(frame: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean, CI and seed count of `value` over seeds for each combination of `by`."""
    rows = []
    for key, part in frame.groupby(by, sort=True):
        mean, low, high = t_interval(part[value].to_numpy())
        rows.append({**dict(zip(by, key)), "mean": mean, "ci_low": low, "ci_high": high, "n_seeds": len(part)})
    return pd.DataFrame(rows)


def paired_difference(frame: pd.DataFrame, by: list[str], value: str, column: str, a: str, b: str) -> pd.DataFrame:
    """Per group, the seed-paired difference value(column=a) - value(column=b), with its t CI."""
    wide = frame.pivot_table(index=by + ["seed"], columns=column, values=value).dropna(subset=[a, b])
    wide = wide.assign(diff=wide[a] - wide[b]).reset_index()
    return summarize(wide, by, "diff")


def _panels(groups: list[str], width: float = 5.0) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * len(groups), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(groups), squeeze=False)[0])
    return fig, axes


def _alignment_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows from before the decomposition (one loss, all parameters) read as such."""
    defaults = {"loss": "document", "parameters": "all"}
    return frame.assign(**{k: frame[k].fillna(v) if k in frame else v for k, v in defaults.items()})


def _headline(frame: pd.DataFrame) -> pd.DataFrame:
    """The series a figure shows: all parameters, the answer-only loss where a learner has it."""
    frame = _alignment_frame(frame)
    frame = frame[frame["parameters"] == "all"]
    answer = frame.groupby("group")["loss"].transform(lambda s: (s == "answer").any())
    return frame[(frame["loss"] == "answer") | ~answer]


def _from_start(frame: pd.DataFrame) -> pd.DataFrame:
    """Each seed's cosine minus its value at the first measured epoch (same group, loss, parameters, tag)."""
    keys = ["group", "seed", "loss", "parameters", "tag"]
    first = frame.loc[frame.groupby(keys)["checkpoint"].idxmin(), keys + ["cosine"]].rename(columns={"cosine": "start"})
    merged = frame.merge(first, on=keys)
    return merged.assign(change=merged["cosine"] - merged["start"])


def plot_gradient_alignment(frame: pd.DataFrame, stem: Path, formats: Iterable[str]) -> list[Path]:
    """Top: cosine per tag over stage 1; bottom: its change from the first measured epoch."""
    shown = _from_start(_headline(frame))
    groups = sorted(shown["group"].unique())
    fig = Figure(figsize=(5.0 * len(groups), 6.4))
    axes = np.atleast_2d(fig.subplots(2, len(groups), squeeze=False))
    for column, group in enumerate(groups):
        part = shown[shown["group"] == group]
        loss = part["loss"].iloc[0]
        for row, (value, label) in enumerate(
            (("cosine", "cos(definition grad, questions grad)"), ("change", "change from the first epoch"))
        ):
            ax = axes[row, column]
            for tag, rows in summarize(part, ["tag", "checkpoint"], value).groupby("tag"):
                ax.plot(rows["checkpoint"], rows["mean"], color=TAG_COLOURS[tag], label=f"{tag} definitions")
                ax.fill_between(rows["checkpoint"], rows["ci_low"], rows["ci_high"], color=TAG_COLOURS[tag], alpha=0.2)
            ax.axhline(0, color="black", lw=0.5)
            ax.set(xlabel="stage-1 epoch", ylabel=label)
            if row == 0:
                ax.set_title(group.replace(" on ", "\non ", 1) + f"\n({loss} loss, all parameters)", fontsize=9)
    axes[0, 0].legend(fontsize=8)
    return save_figure(fig, stem, formats)


def plot_tag_probe(frame: pd.DataFrame, stem: Path, formats: Iterable[str]) -> list[Path]:
    summary = summarize(frame, ["group", "point", "layer"], "accuracy")
    groups = sorted(summary["group"].unique())
    fig, axes = _panels(groups)
    for ax, group in zip(axes, groups):
        for (point, part), colour in zip(summary[summary["group"] == group].groupby("point"), ("C0", "C1")):
            label, style = POINT_STYLE.get(point, (point, "-"))
            ax.errorbar(
                part["layer"],
                part["mean"],
                yerr=[part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]],
                ls=style,
                marker="o",
                capsize=3,
                label=label,
                color=colour,
            )
            band = frame[(frame["group"] == group) & (frame["point"] == point)].groupby("layer")
            if "null_low" in frame:  # the permutation null's 95% band, mean over seeds
                ax.fill_between(
                    sorted(band.groups),
                    band["null_low"].mean(),
                    band["null_high"].mean(),
                    color=colour,
                    alpha=0.15,
                    label=f"null band ({label})",
                )
        ax.set_title(group.replace(" on ", "\non ", 1), fontsize=9)
        ax.set(xlabel="layer (0 = embedding)", ylabel="probe accuracy (tag 1 vs 2)", ylim=(0.3, 1.02))
    axes[0].legend(fontsize=8)
    return save_figure(fig, stem, formats)


def plot_in_context(frame: pd.DataFrame, stem: Path, formats: Iterable[str]) -> list[Path]:
    long = frame.melt(
        id_vars=["group", "seed", "point", "tag"],
        value_vars=["in_context", "out_of_context"],
        var_name="where",
        value_name="accuracy",
    )
    summary = summarize(long, ["group", "point", "where", "tag"], "accuracy")
    groups = sorted(summary["group"].unique())
    fig, axes = _panels(groups, 6.0)
    bars = [(p, w) for p in POINT_STYLE for w in ("out_of_context", "in_context")]
    for ax, group in zip(axes, groups):
        part = summary[summary["group"] == group]
        for j, (point, where) in enumerate(bars):
            rows = part[(part["point"] == point) & (part["where"] == where)].set_index("tag").reindex(list(TAG_COLOURS))
            x = np.arange(len(TAG_COLOURS)) + (j - 1.5) * 0.2
            ax.bar(
                x,
                100 * rows["mean"],
                width=0.2,
                hatch="//" if where == "in_context" else None,
                alpha=1.0 if point == "at_point" else 0.45,
                color=list(TAG_COLOURS.values()),
                edgecolor="black",
                yerr=[100 * (rows["mean"] - rows["ci_low"]), 100 * (rows["ci_high"] - rows["mean"])],
                capsize=2,
                label=f"{where.replace('_', ' ')}, {POINT_STYLE[point][0]}",
            )
        ax.set_xticks(np.arange(len(TAG_COLOURS)), [f"{t} defined" for t in TAG_COLOURS])
        ax.set_title(group.replace(" on ", "\non ", 1), fontsize=9)
        ax.set(ylabel="accuracy (%)", ylim=(0, 105))
    axes[0].legend(fontsize=7, loc="upper right")
    return save_figure(fig, stem, formats)


def _ci(row: pd.Series, scale: float = 1.0, fmt: str = "{:+.3f}") -> str:
    return (
        fmt.format(scale * row["mean"])
        + " ["
        + fmt.format(scale * row["ci_low"])
        + ", "
        + fmt.format(scale * row["ci_high"])
        + f"] (n={int(row['n_seeds'])})"
    )


def alignment_table(frame: pd.DataFrame) -> list[str]:
    frame = _from_start(_alignment_frame(frame))
    last = frame[frame["checkpoint"] == frame.groupby("group")["checkpoint"].transform("max")]
    rows = []
    for (group, loss, parameters), part in last.groupby(["group", "loss", "parameters"], sort=True):
        s = summarize(part, ["tag"], "cosine").set_index("tag")
        change = summarize(part, ["tag"], "change").set_index("tag")
        d = paired_difference(part.assign(g=0), ["g"], "cosine", "tag", "tag1", "tag2").iloc[0]
        runs = part.drop_duplicates("seed")
        effect = (
            _ci(summarize(runs.assign(g=0), ["g"], "iml_effect").iloc[0], 1, "{:+.1f}")
            if "iml_effect" in runs and runs["iml_effect"].notna().all()
            else "–"
        )
        steps = (
            ", ".join(str(int(v)) for v in sorted(runs["stage1_steps"].unique()))
            if "stage1_steps" in runs and runs["stage1_steps"].notna().all()
            else "–"
        )
        rows.append(
            f"| {group} | {loss} | {parameters} | {int(part['checkpoint'].iloc[0])} | {steps} | "
            + " | ".join(_ci(s.loc[t]) for t in ("tag1", "tag2") if t in s.index)
            + " | "
            + " | ".join(_ci(change.loc[t]) for t in ("tag1", "tag2") if t in change.index)
            + f" | {_ci(d)} | {effect} |"
        )
    return [
        "Cosine of a stage-2 definition's gradient with its questions' gradient at the last stage-1 epoch, "
        "per loss (`document`: the training loss; `answer`: the answer token alone, the same target for a "
        "definition and its questions) and parameter group (`body`: neither input embeddings nor output "
        "layer); its change since the first measured epoch (paired by seed); and the IML effect of the "
        "same runs at their evaluation point (points).",
        "",
        "| group | loss | parameters | epoch | stage-1 steps | tag1 | tag2 | tag1 change | tag2 change | "
        "tag1 − tag2 (paired) | IML effect |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def probe_table(frame: pd.DataFrame) -> list[str]:
    s = summarize(frame, ["group", "point", "layer"], "accuracy")
    by = frame.groupby(["group", "point", "layer"])
    rows = []
    for _, r in s.iterrows():
        part = by.get_group((r["group"], r["point"], r["layer"]))
        band = (
            f"{100 * part['null_low'].mean():.1f}–{100 * part['null_high'].mean():.1f}" if "null_low" in part else "–"
        )
        above = f"{int((part['accuracy'] > part['null_high']).sum())}/{len(part)}" if "null_high" in part else "–"
        rows.append(f"| {r['group']} | {r['point']} | {r['layer']} | {_ci(r, 100, '{:.1f}')} | {band} | {above} |")
    return [
        "Cross-validated probe accuracy (%) for the defining tag (1 vs 2) of the variable a question asks "
        "about, beside the chance level measured by shuffling the tags among variables (95% band of the "
        "permutation null, mean over seeds; folds grouped by variable put chance below 50). A layer "
        "decodes the tag in a seed when its accuracy is above that seed's band.",
        "",
        "| group | point | layer | accuracy | null band | seeds above band |",
        "|---|---|---|---|---|---|",
        *rows,
    ]


PRECONDITION = 0.8  # in-context accuracy after stage 1 on the positive control (stage-1 questions)


def in_context_precondition(frame: pd.DataFrame) -> pd.DataFrame:
    """Per group, after stage 1: `control` — questions about stage-1 variables in held-out phrasings,
    their tag-1 definition in the context (answered well out of context: in context they are only
    if the positions the test uses were trained); `reads` — the same for variables held out of stage
    1 (stage 2's tag-1 variables), answerable only by reading the definition from the context."""
    out = {}
    for name, point, tag in (
        ("control", "after_stage1", "stage1 tag1"),
        ("reads", "after_stage1", "tag1"),
        ("control_at_point", "at_point", "stage1 tag1"),
    ):
        part = frame[(frame["point"] == point) & (frame["tag"] == tag)]
        if not part.empty:
            out[name] = summarize(part, ["group"], "in_context").set_index("group")
    return pd.concat(out, axis=1) if out else pd.DataFrame()


def in_context_table(frame: pd.DataFrame) -> list[str]:
    precondition = in_context_precondition(frame)
    lines = [
        "Precondition, after stage 1: questions about stage-1 variables (held-out phrasings) with their tag-1 "
        "definition in the context, at the positions the test uses (`control`); at least "
        f"{100 * PRECONDITION:.0f}% before the tag gap in context is compared with the out-of-context one. "
        "`reads`: the same for variables held out of stage 1, answerable only by reading the context; the "
        "control again at the evaluation point.",
        "",
        "| group | control: stage-1 questions in context (%) | met | reads: held-out variables in context (%) "
        "| control at the point (%) |",
        "|---|---|---|---|---|",
    ]
    met = {}
    for group, row in precondition.iterrows():
        control = row["control"] if "control" in precondition else None
        met[group] = control is not None and control["mean"] >= PRECONDITION
        reads, later = (
            _ci(row[k], 100, "{:.1f}") if k in precondition and pd.notna(row[k]["mean"]) else "–"
            for k in ("reads", "control_at_point")
        )
        lines.append(
            f"| {group} | {_ci(control, 100, '{:.1f}') if control is not None else '–'} | "
            f"{'yes' if met[group] else 'no'} | {reads} | {later} |"
        )
    rows = []
    for (group, point), part in frame[frame["tag"].isin(TAG_ORDER)].groupby(["group", "point"]):
        for where in ("out_of_context", "in_context"):
            s = summarize(part, ["tag"], where).set_index("tag")
            d = paired_difference(part.assign(g=0), ["g"], where, "tag", "tag1", "tag2").iloc[0]
            gap = (
                _ci(d, 100, "{:+.1f}")
                if met.get(group) or where == "out_of_context"
                else "not compared (precondition not met)"
            )
            rows.append(
                f"| {group} | {point} | {where.replace('_', ' ')} | "
                + " | ".join(_ci(s.loc[t], 100, "{:.1f}") for t in TAG_ORDER if t in s.index)
                + f" | {gap} |"
            )
    return lines + [
        "",
        "Accuracy (%) on questions about stage-2 variables, with the definition in the context or not.",
        "",
        "| group | point | context | tag1 | tag2 | tag3 | tag1 − tag2 (paired) |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
