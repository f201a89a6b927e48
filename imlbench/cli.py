"""Command line: `imlbench run | list | show | sweep | plot | report | leaderboard`."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from imlbench import api
from imlbench.registry import ImlbenchError, available, resolve, target_class
from imlbench.report import register_commands
from imlbench.runner import DEFAULT_THRESHOLD, PIPELINES, check_pipeline, choose_view
from imlbench.scoring import DEFAULT_MARGIN, summarize

SHOWN_SUBSETS = ("qd1consis", "qd2incons", "q", "d1consis", "d2consis", "d3consis", "no_qd_baseline")


def format_summary(summary: pd.DataFrame) -> str:
    """A compact table: accuracies (%), the effect with its CI, the verdict, seconds."""
    if summary.empty:
        return "(no finished runs)"
    rows = []
    for _, r in summary.iterrows():
        row = {"task": r["task"], "learner": r["learner"], "pipeline": r["pipeline"],
               "seeds": f"{r['n_seeds']}" + (f" ({r['n_failed']} failed)" if r["n_failed"] else "")}
        for subset in SHOWN_SUBSETS:
            value = r.get(f"acc_{subset}", math.nan)
            row[subset.replace("consis", "").replace("incons", "x").replace("no_qd_baseline", "base")] = \
                "-" if pd.isna(value) else f"{value:.0f}"
        row["IML effect [95% CI]"] = "-" if pd.isna(r["effect_mean"]) else \
            f"{r['effect_mean']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]"
        row["verdict"] = r["verdict"]
        row["defs learned"] = f"{r['n_seeds'] - r['n_definitions_not_learned']}/{r['n_seeds']}"
        row["s/seed"] = "-" if pd.isna(r["seconds_per_seed"]) else f"{r['seconds_per_seed']:.1f}"
        rows.append(row)
    return pd.DataFrame(rows).to_string(index=False)


def one_line(text: str) -> str:
    return " ".join(text.split())


def parse_seeds(text: str) -> int | list[int]:
    """`5` = seeds 0..4; `0,3,7` = those seeds; `2-4` = seeds 2, 3, 4 (`0-0` = seed 0 alone)."""
    try:
        if text.isdigit():
            return int(text)
        seeds: list[int] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            low, sep, high = part.partition("-")
            seeds += list(range(int(low), int(high) + 1)) if sep else [int(part)]
        if seeds:
            return seeds
    except ValueError:
        pass
    raise ImlbenchError(f"bad --seeds {text!r}; expected a count (5), a list (0,3,7) or a range (2-4)")


def cmd_run(args: argparse.Namespace) -> int:
    seeds = None if args.seeds is None else parse_seeds(args.seeds)
    if args.suite:
        if args.learner or args.task or args.param:
            raise ImlbenchError("--suite runs its own learners, tasks and parameters; "
                                "drop --learner/--task/--param or drop --suite")
        requests = api.plan_suite(args.suite, seeds, args.threshold)
    else:
        requests = api.plan(args.learner or "rf", args.task or "synthetic-defs",
                            api.DEFAULT_SEEDS if seeds is None else seeds, args.pipeline, args.param, args.threshold)
    records, problems = api.execute_plan(requests, args.out, args.force, not args.quiet, args.executor, args.jobs)
    board = api.leaderboard(args.out, margin=args.margin)
    print(format_summary(summarize(records, args.margin)))
    print(f"records: {Path(args.out) / 'records'}  leaderboard: {Path(args.out) / 'leaderboard.csv'}")
    for line in problems + board.attrs["problems"]:
        print(f"imlbench: error: {one_line(line)}", file=sys.stderr)
    return 1 if problems or board.attrs["problems"] else 0


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
            for pipeline in PIPELINES:
                try:
                    check_pipeline(learner, learner_name, pipeline)
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
        raise ImlbenchError(f"{args.results} holds no records/ folder; point at a results directory "
                            f"written by `imlbench run --out DIR`")
    board = api.leaderboard(args.results, args.output, margin=args.margin)
    out = args.output or Path(args.results) / "leaderboard.csv"
    print(f"{len(board)} rows -> {out}")
    for line in board.attrs["problems"]:
        print(f"imlbench: error: {one_line(line)}", file=sys.stderr)
    return 1 if board.attrs["problems"] else 0


def cmd_show(args: argparse.Namespace) -> int:
    task = resolve("task", args.task).build()
    try:
        path = task.show(args.out, args.seed)
    except NotImplementedError as exc:
        pictures = [name for name in available("task") if target_class("task", name).has_pictures]
        raise ImlbenchError(f"{exc}; tasks with pictures: {', '.join(pictures)}") from exc
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imlbench", description="Benchmark implicit meta-learning across learners.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run learners on tasks over seeds (finished runs are reused)")
    run.add_argument("--learner", default=None, help="name(s), comma-separated (default: rf)")
    run.add_argument("--task", default=None, help="name(s), comma-separated (default: synthetic-defs)")
    run.add_argument("--suite", default=None, help="run a suite (suites/NAME.toml: default, smoke, gpu) instead")
    run.add_argument("--seeds", default=None, help="a count N (seeds 0..N-1), a list 0,3,7 or a range 2-4 (default: 5)")
    run.add_argument("--pipeline", default="two-stage", help=f"{' | '.join(PIPELINES)}, or both comma-separated")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="override a parameter (prefix task. or learner. if ambiguous); repeatable")
    run.add_argument("--out", default=api.DEFAULT_OUT, help="results directory (default: results)")
    run.add_argument("--force", action="store_true", help="recompute runs that already have records")
    run.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                     help="definition accuracy that marks the evaluation point (default: 0.98)")
    run.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                     help="equivalence margin in points for the verdict 'none' (default: 10)")
    run.add_argument("--jobs", type=int, default=1, help="parallel runs (worker processes or dask workers)")
    run.add_argument("--executor", default=None,
                     help="local (default), dask (a LocalCluster of --jobs workers), dask://HOST:PORT, "
                          "slurm (submitit), submitit-local")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-run lines")
    run.set_defaults(func=cmd_run)

    lst = sub.add_parser("list", help="the learner x task matrix with supported pipelines")
    lst.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="save a picture of a task's examples (image tasks)")
    show.add_argument("task")
    show.add_argument("--out", default="examples.png")
    show.add_argument("--seed", type=int, default=0)
    show.set_defaults(func=cmd_show)

    register_commands(sub)  # sweep, plot, report

    board = sub.add_parser("leaderboard", help="rebuild the leaderboard CSV from a results directory")
    board.add_argument("results", help="results directory (holds records/)")
    board.add_argument("-o", "--output", default=None, help="CSV path (default: RESULTS/leaderboard.csv)")
    board.add_argument("--margin", type=float, default=DEFAULT_MARGIN)
    board.set_defaults(func=cmd_leaderboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ImlbenchError as exc:
        print(f"imlbench: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nimlbench: interrupted; finished runs are saved and will be reused", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
