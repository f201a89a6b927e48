"""The Markdown report of a results directory: verdicts in words, the leaderboard, sweeps, searches, curves,
sizes and versions. Figures come from `imlbench.outputs.figures` and sit beside the report."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from imlbench.outputs.figures import plot
from imlbench.store.records import Record
from imlbench.core.errors import ImlbenchError
from imlbench.store.results import (effects_of, is_control, load_results, read_sweep, run_groups, search_results,
                                    sweep_files)
from imlbench.scoring.trends import ABLATIONS, DOSE, Ablation, trend
from imlbench.scoring.verdicts import ALPHA, SCORING_VERSION, summarize
from imlbench.store.results import PARAM_PREFIX, swept_columns
from imlbench.core.names import safe_name

SHOWN_SUBSETS = (("qd1", "qd1consis"), ("qd2x", "qd2incons"), ("q", "q"), ("d1", "d1consis"),
                 ("d2", "d2consis"), ("d3", "d3consis"), ("base", "no_qd_baseline"))


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
    """e.g. "transformer on synthetic-defs (two-stage): IML, +85.4 points [+77.8, +92.4] over 10 seeds"."""
    text = (f"{row['learner']} on {row['task']} ({row['pipeline']}): {row['verdict']}, "
            f"{row['effect_mean']:+.1f} points [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}] over "
            f"{row['n_seeds']} seed{'s' if row['n_seeds'] != 1 else ''}")
    extras = [f"p = {_p(row['p_difference'])}, sign-flip p = {_p(row.get('p_signflip', math.nan))}, "
              f"p_equivalence = {_p(row['p_equivalence'])}, mde = {_num(row['mde'], '{:.1f}')}; at the end of the "
              f"budget {_num(row.get('iml_effect_end'), '{:+.1f}')}, mean from the point on "
              f"{_num(row.get('persistence'), '{:+.1f}')}; log-prob effect {_num(row.get('logprob_effect'), '{:+.2f}')}"]
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


def scoring_legend(board: pd.DataFrame, margin: float | None = None, alpha: float = ALPHA) -> str:
    """What the verdicts mean, with the margin(s), alpha and the Holm family size of this table."""
    family = int(board["p_difference"].notna().sum()) if "p_difference" in board else 0
    margins = sorted({float(m) for m in board["margin"]}) if margin is None and "margin" in board else [margin or 10.0]
    shown = " or ".join(f"±{m:g}" for m in margins)
    return (f"Scoring v{SCORING_VERSION}: effect = acc(d1consis) − acc(d2consis) in points at the evaluation "
            f"point; 95% Student-t CI over seeds; IML/reverse when both the t-test and the exact sign-flip test "
            f"of effect = 0 give p < {alpha:g} and the equivalence test (TOST, margin {shown} points, per task) "
            f"does not; none when TOST gives p < {alpha:g}; else inconclusive. Guards (questions, stage 1 or "
            f"definitions not learned; floor; by construction) make any verdict inconclusive. p_holm adjusts p "
            f"across the {family} rows of this table; mde is the smallest effect the seeds could detect with "
            f"80% power.")


def leaderboard_rows(board: pd.DataFrame) -> list[dict[str, str]]:
    """The leaderboard as display rows (accuracies %, effect with CI, tests, verdict): the one
    format shared by the printed summary and the Markdown report."""
    rows = []
    for _, r in board.iterrows():
        seeds = f"{r['n_seeds']}" + (f" ({r['n_failed']} failed)" if r["n_failed"] else "")
        effect = "-" if pd.isna(r["effect_mean"]) else f"{r['effect_mean']:+.1f}" + \
            ("" if pd.isna(r["ci_low"]) else f" [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]")
        rows.append({
            "task": r["task"], "learner": r["learner"], "pipeline": r["pipeline"], "seeds": seeds,
            **{short: _num(r.get(f"acc_{subset}")) for short, subset in SHOWN_SUBSETS},
            "IML effect [95% CI]": effect, "p": _p(r["p_difference"]), "p_flip": _p(r.get("p_signflip", math.nan)),
            "p_holm": _p(r["p_holm"]), "p_equiv": _p(r["p_equivalence"]), "mde": _num(r["mde"], "{:.1f}"),
            "end": _num(r.get("iml_effect_end"), "{:+.1f}"), "retention": _num(r.get("retention"), "{:.2f}"),
            "verdict": r["verdict"],
            "defs learned": f"{r['n_seeds'] - r['n_definitions_not_learned']}/{r['n_seeds']}",
            "s/seed": _num(r["seconds_per_seed"], "{:.1f}"),
        })
    return rows


def report(results_dir: str | Path, out_path: str | Path, margin: float | None = None) -> Path:
    """Write a Markdown report of a results directory; its figures go to `figures/` beside it
    (PNG only, so that the report stays light). Needs nothing but the directory."""
    root = Path(results_dir)
    records = load_results(root)
    out_path = Path(out_path)
    if out_path.suffix.lower() not in (".md", ".markdown"):
        raise ImlbenchError(f"report path {out_path} must end in .md")
    figures = plot(root, out_path.parent / "figures", margin, formats=("png",), records=records)
    rel = {p.name: p.relative_to(out_path.parent).as_posix() for p in figures}
    ok = [r for r in records if r.ok]
    board = summarize(ok, margin)
    controls = {(r.task_name, r.learner_name, r.pipeline): is_control(r) for r in ok}
    lines = [f"# imlbench report: `{root}`", "",
             f"{len(records)} run records ({len(ok)} finished, {len(records) - len(ok)} failed) in "
             f"{len(board)} groups (task × learner × pipeline). {scoring_legend(board, margin)}", "",
             "## Verdicts", ""]
    for _, row in board.iterrows():
        control = controls.get((row["task"], row["learner"], row["pipeline"]), False)
        lines.append(f"- {verdict_sentence(row)}{' — control' if control else ''}")
    lines += ["", "## Leaderboard", "", _md_table(leaderboard_rows(board)), "",
              "Accuracies in % at the evaluation point (mean over seeds); s/seed is the wall-clock time per "
              "seed as recorded, which includes any waiting on a shared machine.", "",
              f"![leaderboard]({rel['leaderboard.png']})", ""]
    lines += _sweep_sections(root, rel)
    lines += _search_sections(root, out_path.parent / "figures", out_path.parent)
    for ablation in ABLATIONS:
        lines += _ablation_section(ok, rel, ablation)
    lines += ["## Learning curves", "",
              "Test accuracy per subset across the stage-2 checkpoints (0 = after stage 1), mean over the "
              "seeds still training with a 95% t-based band; right: stage-2 definitions reproduced per tag.", ""]
    groups = run_groups(records)
    for label, group in groups.items():
        first = group[0]
        lines += [f"### {first.learner_name} on {first.task_name} ({first.pipeline})", "",
                  f"![curves]({rel[f'curves-{safe_name(label)}.png']})", ""]
    from imlbench.harness.diagnostics import report_lines  # the diagnostics section, if any were run
    lines += report_lines(root, out_path.parent / "figures", out_path.parent)
    lines += _sizes_and_versions(ok, groups)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("\n".join(lines))
    return out_path


def _search_sections(root: Path, figures: Path, base: Path) -> list[str]:
    """Each elicitation search: its budget, the confirmed configurations and its one-sentence verdict."""
    lines = []
    for result in search_results(root):
        lines += [f"## Search `{result['name']}`", "",
                  f"{result['learner']} on {result['task']} ({result['pipeline']}): {result['trials']} trials "
                  f"({result['measured_trials']} measured, the rest censored or failed) on exploration seeds "
                  f"{_seed_range(result['explore_seeds'])}; the best confirmed on fresh seeds "
                  f"{_seed_range(result['confirm_seeds'])}.", ""]
        rows = [{"trial": c["trial"], "configuration": f"`{c['row']}`",
                 "effect [95% CI]": f"{c['effect_mean']:+.1f} [{c['ci_low']:+.1f}, {c['ci_high']:+.1f}]",
                 "p_holm": _p(c["p_holm"]), "verdict": c["verdict"]}
                for c in result["confirmed"] if c.get("n_seeds")]
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


def _ablation_section(records: list[Record], rel: dict[str, str], ablation: Ablation = DOSE) -> list[str]:
    """The effect at each level of an ablation, per series, with its trend (slope and 95% t-CI)."""
    levels, trends = trend(records, ablation)
    if trends.empty:
        return []
    scale = "log2 of the parameter" if ablation.per_doubling else "the parameter"
    lines = [f"## {ablation.title}", "", ABLATION_TEXT.get(ablation.name, ""),
             f"The trend is the least-squares slope of the per-seed effects on {scale}, given "
             f"{ablation.unit}, with its 95% t-CI.", ""]
    rows = [{"series": r["series"], ablation.parameter: f"{r['level']:g}", "seeds": r["n_seeds"],
             "effect [95% CI]": f"{r['effect_mean']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]",
             "p": _p(r["p_difference"]), "d1": _num(r["acc_d1consis"]), "d2": _num(r["acc_d2consis"]),
             "verdict": r["verdict"]} for _, r in levels.iterrows()]
    lines += [_md_table(rows), ""]
    lines += [f"- {t['series']}: slope {t['slope_per_step']:+.1f} points {ablation.unit} "
              f"[{t['slope_ci_low_per_step']:+.1f}, {t['slope_ci_high_per_step']:+.1f}], p = {_p(t['p_slope'])} "
              f"({t['n_runs']} runs at {t['n_levels']} levels)" for _, t in trends.iterrows()]
    if f"{ablation.name}.png" in rel:
        lines += ["", f"![{ablation.name}]({rel[f'{ablation.name}.png']})"]
    return lines + [""]


def stage1_search_table(records: list[Record], settings: dict[str, str]) -> str:
    """A one-seed search of what stage 1 learns, as a Markdown table: per run, its `settings`
    (header -> "task.<param>" or "learner.<param>", resolved values; a bare "task" or "learner" is its
    registered target), the held-out accuracy per stage-1 subset after stage 1 (%), the worst stage-1
    training subset (%) and the run's seconds. Why: a search whose best stage-1 accuracy is the result
    must be read off its records, not typed."""
    shown = ("qd1consis", "qd2incons", "q", "no_qd_baseline")

    def setting(record: Record, where: str) -> Any:
        kind, _, name = where.partition(".")
        part = record.task if kind == "task" else record.learner
        return part["params"][name] if name else part["target"]

    rows = []
    for r in sorted((r for r in records if r.ok), key=lambda r: [setting(r, w) for w in settings.values()]):
        trained = r.raw["train_accuracy"]["after_stage1"]
        rows.append({**{header: setting(r, where) for header, where in settings.items()},
                     **{name: _num(100 * r.accuracy_after_stage1[name], "{:.1f}") for name in shown},
                     "stage-1 training (min)": _num(100 * min(trained.values()), "{:.1f}"),
                     "s/run": _num(r.seconds)})
    return _md_table(rows)


def budget_table(records: list[Record], learners: list[str], tasks: list[str]) -> str:
    """How each learner's budget covers its evaluation points and what it costs, as a Markdown
    table: per (learner, task, pipeline), the scored stage's budget in checkpoints, the evaluation
    points over the seeds (median and range; seeds whose definitions were never learned counted
    apart), the budget as a multiple of the latest point, the mean seconds of a run and the share
    of them spent evaluating. Why: protocol v2 scores at the point and reports persistence after
    it, so a budget must reach past every seed's point, and its cost is only justified by that."""
    groups: dict[tuple[str, str, str], list[Record]] = {}
    for r in records:
        if r.ok and r.learner_name in learners and r.task_name in tasks and r.pipeline in ("two-stage", "one-stage"):
            groups.setdefault((r.learner_name, r.task_name, r.pipeline), []).append(r)
    rows = []
    for (learner, task, pipeline), runs in sorted(groups.items(), key=lambda g: (learners.index(g[0][0]), g[0][1:])):
        stage = runs[0].evaluation_point["stage"]
        budget = max(e["checkpoint"] for e in runs[0].curve if e["stage"] == stage)
        points = sorted(r.evaluation_point["checkpoint"] for r in runs if r.definitions_learned)
        rows.append({"learner": learner, "task": task, "pipeline": pipeline, "seeds": len(runs),
                     "budget (checkpoints)": budget,
                     "evaluation point, median (range)":
                         f"{points[len(points) // 2]} ({points[0]}–{points[-1]})" if points else "–",
                     "budget ÷ latest point": f"{budget / points[-1]:.1f}" if points else "–",
                     "definitions never learned": len(runs) - len(points),
                     "s/run": f"{sum(r.seconds for r in runs) / len(runs):.1f}",
                     "evaluation": f"{sum(_evaluation_seconds(r) for r in runs) / sum(r.seconds for r in runs):.0%}"})
    return _md_table(rows)


def _evaluation_seconds(record: Record) -> float:
    return float(record.raw["measurements"]["seconds"].get("evaluation", 0.0))


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
            row = {c[len(PARAM_PREFIX):]: r[c] for c in columns}
            row.update({"seeds": r.get("n_seeds", "–"),
                        "effect [95% CI]": f"{r['effect_mean']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]",
                        "per-seed effects": ", ".join(f"{e:+.1f}" for e in effects_of(r.get("effects"))) or "–",
                        "p": _p(r.get("p_difference", math.nan)), "verdict": r["verdict"],
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
        name = f"sweep-{safe_name(csv.stem)}.png"
        if name in rel:
            lines += [f"![{csv.stem}]({rel[name]})", ""]
    return lines


def _sizes_and_versions(ok: list[Record], groups: dict[str, list[Record]]) -> list[str]:
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
    return lines + ["Versions: " + "; ".join(f"`{v}`" for v in version_sets), "",
                    "Protocol: " + "; ".join(f"`{p}`" for p in protocols), ""]
