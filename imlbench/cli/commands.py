"""What each command does: one `cmd_*` function per subcommand, called with the parsed arguments."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from imlbench import api
from imlbench.api import parse_seeds
from imlbench.core.errors import one_line
from imlbench.core.pipelines import get_pipeline, pipeline_names
from imlbench.core.specs import ImlbenchError, available, parse_pair, resolve, target_class
from imlbench.harness.pipelines import check_pipeline
from imlbench.harness.stages import choose_view
from imlbench.outputs.console import leaderboard_rows, short_legend, verdict_line
from imlbench.outputs.figures import plot
from imlbench.outputs.report import report
from imlbench.scoring.verdicts import summarize
from imlbench.sweep import PARAM_PREFIX, parse_grid, sweep


def format_summary(summary: pd.DataFrame, margin: float | None = None) -> str:
    """The printed leaderboard: the report's table as text, then what the verdicts mean, briefly."""
    if summary.empty:
        return "(no finished runs)"
    return pd.DataFrame(leaderboard_rows(summary)).to_string(index=False) + "\n" + short_legend(summary, margin)


def verdict_lines(summary: pd.DataFrame, out: str | Path) -> str:
    """Per row its verdict, why, and where the row cannot inform, the command that would (`--out`
    named in it where it is not the default)."""
    where = None if str(out) == api.DEFAULT_OUT else str(out)
    return "\n".join(verdict_line(row, where) for _, row in summary.iterrows())


def skipped(problems: list[str]) -> list[str]:
    """Unreadable record files that a report or plot left out, each said so."""
    return [f"{line.removesuffix('; delete it or rerun with --force')}; skipped" for line in problems]


def report_problems(problems: list[str]) -> int:
    """One stderr line per problem; the exit status: 1 with any, else 0."""
    for line in problems:
        print(f"imlbench: error: {one_line(line)}", file=sys.stderr)
    return 1 if problems else 0


def cmd_run(args: argparse.Namespace) -> int:
    seeds = None if args.seeds is None else parse_seeds(args.seeds)
    if args.suite:
        if args.learner is not None or args.task is not None or args.param:
            raise ImlbenchError(
                "--suite runs its own learners, tasks and parameters; drop --learner/--task/--param or drop --suite"
            )
        requests = api.plan_suite(args.suite, seeds, args.threshold, args.full_budget, args.sealed)
    else:
        requests = api.plan(
            "rf" if args.learner is None else args.learner,  # --learner "" is an error
            "synthetic-defs" if args.task is None else args.task,
            api.DEFAULT_SEEDS if seeds is None else seeds,
            args.pipeline,
            args.param,
            args.threshold,
            full_budget=args.full_budget,
            sealed=args.sealed,
        )
    family = args.family or (Path(args.suite).stem if args.suite else api.grid_family(requests))
    records, problems = api.execute_plan(
        requests, args.out, args.force, not args.quiet, args.executor, args.jobs, args.timeout, args.memory_limit
    )
    records = api.declare_family(records, requests, args.out, family)
    board = api.leaderboard(args.out, margin=args.margin)
    summary = _family_rows(board, summarize(records, args.margin), family)
    print(format_summary(summary, args.margin))
    print(f"records: {Path(args.out) / 'records'}  leaderboard: {Path(args.out) / 'leaderboard.csv'}")
    if not summary.empty:  # last: what each row says, why, and what to run where it cannot say
        print(verdict_lines(summary, args.out))
    return report_problems(problems + board.attrs["problems"])


def _family_rows(board: pd.DataFrame, mine: pd.DataFrame, family: str) -> pd.DataFrame:
    """This command's rows as the leaderboard CSV has them: adjusted within the whole family the
    folder holds, so that the console and the CSV say the same."""
    if mine.empty or board.empty:
        return mine
    names = ["family", "task", "learner", "pipeline"]
    wanted = mine[mine["family"] == family][names]
    return board.merge(wanted, on=names).reset_index(drop=True)


def cmd_list(args: argparse.Namespace) -> int:
    """The learner x task matrix: which view a learner reads on a task and which pipelines it runs.
    A plugin that fails to load is listed with its error instead of hiding the others."""
    tasks, problems = {}, []
    for name in available("task"):
        try:
            tasks[name] = resolve("task", name).build()
        except ImlbenchError as exc:
            problems.append(str(exc))
    rows = []
    for learner_name in available("learner"):
        try:
            learner = resolve("learner", learner_name).build()
        except ImlbenchError as exc:
            problems.append(str(exc))
            continue
        row = {"learner": learner_name}
        for task_name, task in tasks.items():
            try:
                view = choose_view(learner, task, learner_name, task_name)
            except ImlbenchError:
                row[task_name] = "-"
                continue
            pipelines = []
            for pipeline in pipeline_names():
                try:
                    check_pipeline(get_pipeline(pipeline), learner, learner_name)
                    pipelines.append(pipeline.split("-")[0])
                except ImlbenchError:
                    pass
            row[task_name] = f"{view}: {'+'.join(pipelines)}"
        rows.append(row)
    print(pd.DataFrame(rows).to_string(index=False))
    print("\n(view the learner reads: pipelines it runs; '-' = cannot run on that task)")
    for line in problems:
        print(f"imlbench: error: {one_line(line)}", file=sys.stderr)
    return 1 if problems else 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    if not (Path(args.results) / "records").is_dir():
        raise ImlbenchError(
            f"{args.results} holds no records/ folder; point at a results directory written by `imlbench run --out DIR`"
        )
    board = api.leaderboard(args.results, args.output, margin=args.margin)
    out = args.output or Path(args.results) / "leaderboard.csv"
    print(format_summary(board, args.margin))
    print(f"leaderboard: {out} ({len(board)} rows)")
    return report_problems(board.attrs["problems"])


def cmd_show(args: argparse.Namespace) -> int:
    task = resolve("task", args.task).build()
    try:
        path = task.show(args.out, args.seed)
    except NotImplementedError as exc:
        pictures = [name for name in available("task") if target_class("task", name).has_pictures]
        raise ImlbenchError(f"{exc}; tasks with pictures: {', '.join(pictures)}") from exc
    print(f"wrote {path}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    grid = parse_grid(args.param)
    frame = sweep(
        args.learner,
        args.task,
        grid,
        parse_seeds(args.seeds),
        args.pipeline,
        args.out,
        args.force,
        verbose=not args.quiet,
        name=args.name,
        margin=args.margin,
    )
    columns = [c for c in frame.columns if c.startswith(PARAM_PREFIX)]
    shown = frame[
        columns
        + [
            "n_seeds",
            "effect_mean",
            "ci_low",
            "ci_high",
            "p_difference",
            "verdict",
            "acc_d1consis",
            "acc_d2consis",
            "n_definitions_not_learned",
        ]
    ].copy()
    shown.columns = [c.removeprefix(PARAM_PREFIX) for c in columns] + [
        "seeds",
        "effect",
        "ci_low",
        "ci_high",
        "p",
        "verdict",
        "d1",
        "d2",
        "defs_not_learned",
    ]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"sweep: {frame.attrs['path']}  leaderboard: {Path(args.out) / 'leaderboard.csv'}")
    for line in frame.attrs["problems"]:
        print(f"imlbench: error: {one_line(line)}", file=sys.stderr)
    return 1 if frame.attrs["problems"] else 0


def cmd_search(args: argparse.Namespace) -> int:
    from imlbench.search import search
    from imlbench.search_results import summary_lines

    result = search(
        args.learner,
        args.task,
        args.trials,
        args.confirm_top,
        pipeline=args.pipeline,
        out=args.out,
        explore_seeds=args.explore_seeds,
        confirm_seeds=args.confirm_seeds,
        params=dict(parse_pair(p) for p in args.param),
        name=args.name,
        storage=args.storage,
        seed=args.seed,
        jobs=args.jobs,
        timeout=args.timeout,
        executor=args.executor,
        memory_limit=args.memory_limit,
        verbose=not args.quiet,
    )
    print("\n".join(summary_lines(result)))
    for line in result.get("problems", []):
        print(f"imlbench: error: {one_line(line)}", file=sys.stderr)
    return 1 if result.get("problems") else 0


def cmd_plot(args: argparse.Namespace) -> int:
    """The figures of a results folder, into RESULTS/figures unless --out; an unreadable record is
    skipped with one line and the rest is drawn."""
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    records, problems = api.readable_results(args.results)
    out = Path(args.results) / "figures" if args.out is None else args.out
    for path in plot(args.results, out, args.margin, formats, records=records):
        print(path)
    return report_problems(skipped(problems))


def cmd_report(args: argparse.Namespace) -> int:
    """The report of a results folder, as RESULTS/report.md unless --out (figures beside it); an
    unreadable record is skipped with one line and the rest is reported."""
    records, problems = api.readable_results(args.results)
    out = Path(args.results) / "report.md" if args.out is None else args.out
    print(f"wrote {report(args.results, out, args.margin, records=records)}")
    return report_problems(skipped(problems))


def cmd_diagnose(args: argparse.Namespace) -> int:
    """One of the paper's hypotheses as a measurement over seeds, run like `imlbench run`."""
    requests = api.plan_diagnostics(
        args.name,
        args.learner,
        args.task,
        parse_seeds(args.seeds),
        args.param,
        {"variables": args.variables, "every": args.every, "permutations": args.permutations},
        args.threshold,
    )
    records, problems, paths = api.diagnose(
        requests, args.out, args.force, not args.quiet, args.executor, args.jobs, args.timeout, args.memory_limit
    )
    print("\n".join(map(str, paths + ([] if args.quiet else api.diagnostic_summary(args.out, args.name)))))
    for line in problems:
        print(f"imlbench: error: {one_line(line)}", file=sys.stderr)
    return 1 if problems else 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Rerun records (all, or --sample K) and print one line per record: ok, DIFFERS, FAILED, UNREADABLE."""
    import time

    from imlbench.verify import summary_line, verify

    start = time.monotonic()
    verdicts = verify(
        args.results,
        args.sample,
        args.seed,
        args.jobs,
        args.executor,
        args.timeout,
        args.memory_limit,
        verbose=not args.quiet,
        report=lambda verdict: print(verdict.line(), flush=True),
    )
    print(summary_line(verdicts, time.monotonic() - start))
    return 0 if all(v.status == "ok" for v in verdicts) else 1
