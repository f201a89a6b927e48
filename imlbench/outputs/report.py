"""The Markdown report of a results directory: verdicts in words, the leaderboard, sweeps, searches, curves,
sizes and versions. Figures come from `imlbench.outputs.figures` and sit beside the report."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd

from imlbench.core.errors import ImlbenchError
from imlbench.core.names import DIAGNOSTICS_DIR, safe_name
from imlbench.core.registry import DIAGNOSTICS
from imlbench.outputs.console import _md_table, _num, _p, _trend, leaderboard_rows, scoring_legend, verdict_sentence
from imlbench.outputs.figures import plot
from imlbench.scoring.runs import load_results
from imlbench.scoring.trends import ABLATIONS, DOSE, Ablation, trend
from imlbench.scoring.verdicts import summarize
from imlbench.store.records import RunRecord
from imlbench.store.results import (
    PARAM_PREFIX,
    effects_of,
    is_control,
    read_sweep,
    run_groups,
    search_results,
    sweep_files,
    swept_columns,
)


def report(
    results_dir: str | Path, out_path: str | Path, margin: float | None = None, records: list[RunRecord] | None = None
) -> Path:
    """Write a Markdown report of a results directory; its figures go to `figures/` beside it
    (PNG only, so that the report stays light), and the same results as one self-contained
    interactive page, `report.html`, beside it too. Needs nothing but the directory."""
    from imlbench.outputs.html import read_diagnostics, write_html  # the page; plotly only here

    root = Path(results_dir)
    records = load_results(root) if records is None else records  # given: read already (e.g. skipping bad files)
    out_path = Path(out_path)
    if out_path.suffix.lower() not in (".md", ".markdown"):
        raise ImlbenchError(f"report path {out_path} must end in .md")
    figures = plot(root, out_path.parent / "figures", margin, formats=("png",), records=records)
    rel = {p.name: p.relative_to(out_path.parent).as_posix() for p in figures}
    ok = [r for r in records if r.ok]
    board = summarize(ok, margin)
    controls = {(r.task_name, r.learner_name, r.pipeline): is_control(r) for r in ok}
    lines = [
        f"# imlbench report: `{root}`",
        "",
        f"{len(records)} run records ({len(ok)} finished, {len(records) - len(ok)} failed) in "
        f"{len(board)} groups (task × learner × pipeline). {scoring_legend(board, margin)}",
        "",
        "## Verdicts",
        "",
    ]
    for _, row in board.iterrows():
        control = controls.get((row["task"], row["learner"], row["pipeline"]), False)
        lines.append(f"- {verdict_sentence(row)}{' — control' if control else ''}")
    lines += [
        "",
        "## Leaderboard",
        "",
        _md_table(leaderboard_rows(board)),
        "",
        "Accuracies in % over each seed's reading window (mean over seeds); s/seed is the wall-clock time per "
        "seed as recorded, which includes any waiting on a shared machine.",
        "",
        f"![leaderboard]({rel['leaderboard.png']})",
        "",
    ]
    lines += _sweep_sections(root, rel)
    lines += _search_sections(root, out_path.parent / "figures", out_path.parent)
    for ablation in ABLATIONS:
        lines += _ablation_section(ok, rel, ablation)
    lines += [
        "## Learning curves",
        "",
        "Test accuracy per subset across the stage-2 checkpoints (0 = after stage 1), mean over the "
        "seeds still training with a 95% t-based band; right: stage-2 definitions reproduced per tag.",
        "",
    ]
    groups = run_groups(records)
    for label, group in groups.items():
        first = group[0]
        lines += [
            f"### {first.learner_name} on {first.task_name} ({first.pipeline})",
            "",
            f"![curves]({rel[f'curves-{safe_name(label)}.png']})",
            "",
        ]
    lines += diagnostic_lines(root, out_path.parent / "figures", out_path.parent)
    lines += _sizes_and_versions(ok, groups)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("\n".join(lines))
    write_html(
        records, board, out_path.with_name("report.html"), read_diagnostics(root), f"imlbench results: {root}", margin
    )
    return out_path


def _search_sections(root: Path, figures: Path, base: Path) -> list[str]:
    """Each elicitation search: its budget, the confirmed configurations and its one-sentence verdict."""
    lines = []
    for result in search_results(root):
        lines += [
            f"## Search `{result['name']}`",
            "",
            f"{result['learner']} on {result['task']} ({result['pipeline']}): {result['trials']} trials "
            f"({result['measured_trials']} measured, the rest censored or failed) on exploration seeds "
            f"{_seed_range(result['explore_seeds'])}; the best confirmed on fresh seeds "
            f"{_seed_range(result['confirm_seeds'])}.",
            "",
        ]
        rows = [
            {
                "trial": c["trial"],
                "configuration": f"`{c['row']}`",
                "effect [95% CI]": f"{c['effect_mean']:+.1f} [{c['ci_low']:+.1f}, {c['ci_high']:+.1f}]",
                "p_holm": _p(c["p_holm"]),
                "verdict": c["verdict"],
            }
            for c in result["confirmed"]
            if c.get("n_seeds")
        ]
        if rows:
            lines += [_md_table(rows), ""]
        lines += [f"**Verdict: {result['verdict']}.**", ""]
        picture = result["folder"] / "search.png"
        if picture.is_file():
            figures.mkdir(parents=True, exist_ok=True)
            target = figures / f"search-{safe_name(result['name'])}.png"
            shutil.copyfile(picture, target)
            lines += [f"![search {result['name']}]({target.relative_to(base).as_posix()})", ""]
    return lines


ABLATION_TEXT = {
    "dose-response": "Rows that differ only in `tag_reliability` (at 0.5 the stage-1 tags predict nothing).",
    "batch-size": "Rows that differ only in the stage-1 `batch_size`, at a fixed number of optimizer steps "
    "per epoch (`steps_per_epoch`), so every batch size takes the same steps; larger batches see "
    "more documents. The records carry the steps each stage took (`learner_info.optimizer_steps`).",
    "model-size": "Rows that differ only in the model's width `d_model`.",
}


def _ablation_section(records: list[RunRecord], rel: dict[str, str], ablation: Ablation = DOSE) -> list[str]:
    """The effect at each level of an ablation, per series, with its trend: the mean per-seed slope
    with its 95% t-CI, t-test and sign-flip p, or where the slopes at the window and at the point
    disagree in sign, both, as a trend that depends on when it is read."""
    levels, trends = trend(records, ablation)
    if trends.empty:
        return []
    scale = "log2 of the parameter" if ablation.per_doubling else "the parameter"
    lines = [
        f"## {ablation.title}",
        "",
        ABLATION_TEXT.get(ablation.name, ""),
        f"The levels share seeds, so the trend is per seed: each seed run at every level gets the "
        f"least-squares slope of its effects on {scale}, and the trend is the mean of those slopes "
        f"over seeds, given {ablation.unit}, with its 95% t-CI across seeds, the t-test p and the exact "
        f"sign-flip p. It is read on the effect over the reading window and at the evaluation point, and "
        f"stated only where the two slopes have the same sign; otherwise it depends on when it is read.",
        "",
    ]
    rows = [
        {
            "series": r["series"],
            ablation.parameter: f"{r['level']:g}",
            "seeds": r["n_seeds"],
            "effect [95% CI]": f"{r['effect_mean']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]",
            "p": _p(r["p_difference"]),
            "d1": _num(r["acc_d1consis"]),
            "d2": _num(r["acc_d2consis"]),
            "verdict": r["verdict"],
        }
        for _, r in levels.iterrows()
    ]
    lines += [_md_table(rows), ""]
    lines += [_trend_line(t, ablation) for _, t in trends.iterrows()]
    if f"{ablation.name}.png" in rel:
        lines += ["", f"![{ablation.name}]({rel[f'{ablation.name}.png']})"]
    return lines + [""]


def _trend_line(t: pd.Series, ablation: Ablation) -> str:
    """One series' trend as a finding (the mean per-seed slope, its t-CI and both p's), or, where the
    slopes at the window and at the point disagree in sign, as a trend that depends on when it is read."""
    seeds = f"{int(t['n_seeds'])} seeds at {t['n_levels']} levels"
    if t["n_seeds_dropped"]:
        seeds += f", {int(t['n_seeds_dropped'])} seeds not run at every level left out"
    if not t["n_seeds"]:
        return f"- {t['series']}: no seed ran at every level, so no trend ({t['n_runs']} runs)"
    if not t["reported"]:
        return (
            f"- {t['series']}: depends on when it is read: slope {t['slope_per_step']:+.1f} points "
            f"{ablation.unit} at the window, {t['slope_point_per_step']:+.1f} at the point ({seeds})"
        )
    return (
        f"- {t['series']}: per-seed slope {t['slope_per_step']:+.1f} points {ablation.unit} "
        f"[{t['slope_ci_low_per_step']:+.1f}, {t['slope_ci_high_per_step']:+.1f}], p = {_p(t['p_slope'])}, "
        f"sign-flip p = {_p(t['p_slope_signflip'])}: {t['trend_verdict']} ({seeds})"
    )


def _seed_range(seeds: list[int]) -> str:
    return f"{seeds[0]}–{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ", ".join(map(str, seeds))


def _sweep_sections(root: Path, rel: dict[str, str]) -> list[str]:
    lines = []
    for csv in sweep_files(root):
        frame = read_sweep(csv)
        columns = swept_columns(frame)
        lines += [f"## Sweep `{csv.stem}`", ""]
        rows = []
        for _, r in frame.iterrows():
            row = {c[len(PARAM_PREFIX) :]: r[c] for c in columns}
            row.update(
                {
                    "seeds": r.get("n_seeds", "–"),
                    "effect [95% CI]": f"{r['effect_mean']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]",
                    "per-seed effects": ", ".join(f"{e:+.1f}" for e in effects_of(r.get("effects"))) or "–",
                    "p": _p(r.get("p_difference", math.nan)),
                    "verdict": r["verdict"],
                    "d1": _num(r.get("acc_d1consis")),
                    "d2": _num(r.get("acc_d2consis")),
                    "d3": _num(r.get("acc_d3consis")),
                    "q": _num(r.get("acc_q")),
                    "defs learned": f"{int(r['n_seeds'] - r['n_definitions_not_learned'])}/{int(r['n_seeds'])}"
                    if "n_definitions_not_learned" in r
                    else "–",
                    "s/seed": _num(r.get("seconds_per_seed"), "{:.1f}"),
                }
            )
            rows.append(row)
        lines += [_md_table(rows), ""]
        trend = _trend(frame, columns[0])
        if trend:
            lines += [trend, ""]
        lines += [f"- {verdict_sentence(r)}" for _, r in frame.iterrows()] + [""]
        name = f"sweep-{safe_name(csv.stem)}.png"
        if name in rel:
            lines += [f"![{csv.stem}]({rel[name]})", ""]
    return lines


def _sizes_and_versions(ok: list[RunRecord], groups: dict[str, list[RunRecord]]) -> list[str]:
    sizes, tasks, learners = {}, {}, {}
    for r in ok:
        sizes.setdefault(r.task_name, r.raw.get("sizes", {}))
        tasks.setdefault(r.task_name, r.task)
    for group in groups.values():
        learners.setdefault(group[0].learner_name, group[0].learner)
    lines = ["## Sizes and versions", "", _md_table([{"task": t, **s} for t, s in sizes.items()]), ""]
    for title, specs in (("Learners", learners), ("Tasks", tasks)):
        lines += [f"{title} (resolved parameters):", ""]
        for name, spec in specs.items():
            shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(spec.get("params", {}).items()))
            lines.append(f"- `{name}` ({spec.get('target', '?')}, v{spec.get('version', '?')}): {shown}")
        lines.append("")
    version_sets = sorted({" ".join(f"{k}={v}" for k, v in sorted(r.versions.items())) for r in ok})
    protocols = sorted({json.dumps(r.protocol, sort_keys=True) for r in ok})
    return lines + [
        "Versions: " + "; ".join(f"`{v}`" for v in version_sets),
        "",
        "Protocol: " + "; ".join(f"`{p}`" for p in protocols),
        "",
    ]


def diagnostic_lines(results_dir: Path, figures_dir: Path, rel_to: Path) -> list[str]:
    """The report's "Diagnostics" section: each registered diagnostic's table of its CSV in
    RESULTS/diagnostics/, and its figure. Empty when there are none."""
    folder = Path(results_dir) / DIAGNOSTICS_DIR
    present = [name for name in DIAGNOSTICS.names() if (folder / f"{name}.csv").exists()]
    lines: list[str] = []
    for name in sorted(present, key=lambda n: (DIAGNOSTICS.get(n).report_order, n)):
        diagnostic, frame = DIAGNOSTICS.get(name), pd.read_csv(folder / f"{name}.csv")
        Path(figures_dir).mkdir(parents=True, exist_ok=True)
        figures = diagnostic.plot(frame, Path(figures_dir) / f"diagnostic-{name}", ("png",))
        lines += [f"### {name}", "", *diagnostic.table(frame), ""]
        lines += [f"![{name}]({f.relative_to(rel_to).as_posix()})" for f in figures] + [""]
    return ["## Diagnostics", "", "Means over seeds with 95% Student-t CIs; n = seeds.", "", *lines] if lines else []
