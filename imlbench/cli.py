"""Command line: `imlbench run | list | show | sweep | search | plot | report | diagnose | leaderboard`, every command in one place."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from imlbench import api
from imlbench.api import parse_seeds
from imlbench.outputs.figures import FORMATS, plot
from imlbench.execution.engines import JOBS_HELP, default_jobs, parse_jobs
from imlbench.core.registry import ImlbenchError, available, one_line, parse_pair, resolve, target_class
from imlbench.outputs.report import leaderboard_rows, report, scoring_legend
from imlbench.sweep import PARAM_PREFIX, parse_grid, sweep
from imlbench.harness.pipelines import PIPELINES
from imlbench.core.protocol import DEFAULT_THRESHOLD
from imlbench.harness.stages import check_pipeline, choose_view
from imlbench.scoring.verdicts import check_margin, summarize

MEMORY_HELP = ("resident memory per run's learner, e.g. 4G or 512M: a run past it is stopped and recorded as "
               "an error (default: the machine's memory divided by --jobs; 0 = no limit)")


def format_summary(summary: pd.DataFrame, margin: float | None = None) -> str:
    """The printed leaderboard: the report's table as text, then what the verdicts mean."""
    if summary.empty:
        return "(no finished runs)"
    return pd.DataFrame(leaderboard_rows(summary)).to_string(index=False) + "\n" + scoring_legend(summary, margin)


def cmd_run(args: argparse.Namespace) -> int:
    seeds = None if args.seeds is None else parse_seeds(args.seeds)
    if args.suite:
        if args.learner is not None or args.task is not None or args.param:
            raise ImlbenchError("--suite runs its own learners, tasks and parameters; "
                                "drop --learner/--task/--param or drop --suite")
        requests = api.plan_suite(args.suite, seeds, args.threshold)
    else:
        requests = api.plan("rf" if args.learner is None else args.learner,  # --learner "" is an error
                            "synthetic-defs" if args.task is None else args.task,
                            api.DEFAULT_SEEDS if seeds is None else seeds, args.pipeline, args.param, args.threshold)
    records, problems = api.execute_plan(requests, args.out, args.force, not args.quiet, args.executor, args.jobs,
                                         args.timeout, args.memory_limit)
    board = api.leaderboard(args.out, margin=args.margin)
    print(format_summary(summarize(records, args.margin), args.margin))
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


def cmd_sweep(args: argparse.Namespace) -> int:
    grid = parse_grid(args.param)
    frame = sweep(args.learner, args.task, grid, parse_seeds(args.seeds), args.pipeline, args.out, args.force,
                  verbose=not args.quiet, name=args.name, margin=args.margin)
    columns = [c for c in frame.columns if c.startswith(PARAM_PREFIX)]
    shown = frame[columns + ["n_seeds", "effect_mean", "ci_low", "ci_high", "p_difference", "verdict",
                             "acc_d1consis", "acc_d2consis", "n_definitions_not_learned"]].copy()
    shown.columns = [c.removeprefix(PARAM_PREFIX) for c in columns] + \
        ["seeds", "effect", "ci_low", "ci_high", "p", "verdict", "d1", "d2", "defs_not_learned"]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"sweep: {frame.attrs['path']}  leaderboard: {Path(args.out) / 'leaderboard.csv'}")
    for line in frame.attrs["problems"]:
        print(f"imlbench: error: {one_line(line)}", file=sys.stderr)
    return 1 if frame.attrs["problems"] else 0


def cmd_search(args: argparse.Namespace) -> int:
    from imlbench.search import search, summary_lines

    result = search(args.learner, args.task, args.trials, args.confirm_top, pipeline=args.pipeline, out=args.out,
                    explore_seeds=args.explore_seeds, confirm_seeds=args.confirm_seeds,
                    params=dict(parse_pair(p) for p in args.param), name=args.name, storage=args.storage,
                    seed=args.seed, jobs=args.jobs, timeout=args.timeout, executor=args.executor,
                    memory_limit=args.memory_limit, verbose=not args.quiet)
    print("\n".join(summary_lines(result)))
    for line in result.get("problems", []):
        print(f"imlbench: error: {one_line(line)}", file=sys.stderr)
    return 1 if result.get("problems") else 0


def cmd_plot(args: argparse.Namespace) -> int:
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    paths = plot(args.results, args.out, args.margin, formats)
    for path in paths:
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    print(f"wrote {report(args.results, args.out, args.margin)}")
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    """One of the paper's hypotheses as a measurement over seeds, run like `imlbench run`."""
    requests = api.plan_diagnostics(args.name, args.learner, args.task, parse_seeds(args.seeds), args.param,
                                    {"variables": args.variables, "every": args.every,
                                     "permutations": args.permutations}, args.threshold)
    records, problems, paths = api.diagnose(requests, args.out, args.force, not args.quiet, args.executor,
                                            args.jobs, args.timeout, args.memory_limit)
    print("\n".join(map(str, paths + ([] if args.quiet else api.diagnostic_summary(args.out, args.name)))))
    for line in problems:
        print(f"imlbench: error: {one_line(line)}", file=sys.stderr)
    return 1 if problems else 0


SEEDS_HELP = "a count N (seeds 0..N-1), a list 0,3,7 or a range 2-4 (default: 10)"
MARGIN_HELP = "equivalence margin in points for the verdict 'none' (default: each task's own, 10 for the built-ins)"


def _execution_options(parser: argparse.ArgumentParser, jobs_help: str) -> None:
    """Where runs execute and what bounds them: the same for run, search and diagnose."""
    parser.add_argument("--jobs", type=parse_jobs, default=default_jobs(), help=f"{jobs_help}: {JOBS_HELP}")
    parser.add_argument("--executor", default=None, help="local (default), dask (a LocalCluster of --jobs workers), "
                                                         "dask://HOST:PORT, slurm (submitit), submitit-local")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="wall-clock limit per run: a run past it is stopped and recorded as an error "
                             "(default: the learner spec's `timeout`, else none; 0 = no limit)")
    parser.add_argument("--memory-limit", default=None, metavar="SIZE", help=MEMORY_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imlbench", description="Benchmark implicit meta-learning across learners.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run learners on tasks over seeds (finished runs are reused)")
    run.add_argument("--learner", default=None, help="name(s), comma-separated (default: rf)")
    run.add_argument("--task", default=None, help="name(s), comma-separated (default: synthetic-defs)")
    run.add_argument("--suite", default=None, help="run a suite (suites/NAME.toml: default, smoke, gpu) instead")
    run.add_argument("--seeds", default=None, help=SEEDS_HELP)
    run.add_argument("--pipeline", default="two-stage", help=f"{' | '.join(PIPELINES)}, or both comma-separated")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="override a parameter (prefix task. or learner. if ambiguous); repeatable")
    run.add_argument("--out", default=api.DEFAULT_OUT, help="results directory (default: results)")
    run.add_argument("--force", action="store_true", help="recompute runs that already have records")
    run.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                     help="definition accuracy that marks the evaluation point (default: 0.98)")
    run.add_argument("--margin", type=float, default=None, help=MARGIN_HELP)
    _execution_options(run, "parallel runs (worker processes or dask workers)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-run lines")
    run.set_defaults(func=cmd_run)

    lst = sub.add_parser("list", help="the learner x task matrix with supported pipelines")
    lst.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="save a picture of a task's examples (image tasks)")
    show.add_argument("task")
    show.add_argument("--out", default="examples.png")
    show.add_argument("--seed", type=int, default=0)
    show.set_defaults(func=cmd_show)

    sw = sub.add_parser("sweep", help="run a grid of parameter values and score each grid point")
    sw.add_argument("--learner", required=True, help="learner name (comma list allowed)")
    sw.add_argument("--task", required=True, help="task name (comma list allowed)")
    sw.add_argument("--param", action="append", default=[], metavar="NAME=V1,V2,...",
                    help="a swept parameter and its values (TOML, top-level commas split); repeatable: "
                         "the grid is the cartesian product; one value = a fixed setting")
    sw.add_argument("--seeds", default="10", help=SEEDS_HELP)
    sw.add_argument("--pipeline", default="two-stage", help="two-stage | one-stage (default: two-stage)")
    sw.add_argument("--out", default=api.DEFAULT_OUT, help="results directory (default: results); the CSV "
                                                        "goes to OUT/sweeps/")
    sw.add_argument("--name", default=None, help="sweep CSV name (default: from learner, task and parameters)")
    sw.add_argument("--force", action="store_true", help="recompute runs that already have records")
    sw.add_argument("--margin", type=float, default=None, help=MARGIN_HELP)
    sw.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    sw.set_defaults(func=cmd_sweep)

    se = sub.add_parser("search", help="search a learner's configurations for IML, then confirm the best on fresh seeds")
    se.add_argument("--learner", required=True, help="learner name (its spec or class declares the search space)")
    se.add_argument("--task", required=True, help="task name")
    se.add_argument("--trials", type=int, default=20, help="configurations to try, all processes together (default: 20)")
    se.add_argument("--explore-seeds", type=int, default=3, help="seeds per trial, 1000, 1001, ... (default: 3)")
    se.add_argument("--confirm-seeds", type=int, default=10, help="fresh seeds 0..M-1 for confirmation (default: 10)")
    se.add_argument("--confirm-top", type=int, default=1, help="best configurations confirmed, one Holm family (default: 1)")
    se.add_argument("--pipeline", default="two-stage", help="two-stage | one-stage (default: two-stage)")
    se.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a fixed parameter, as in `run`")
    se.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite in OUT/searches/NAME)")
    se.add_argument("--name", default=None, help="study name (default: LEARNER_TASK_PIPELINE)")
    se.add_argument("--seed", type=int, default=0, help="the sampler's seed (default: 0)")
    _execution_options(se, "parallel runs within a trial")
    se.add_argument("--out", default=api.DEFAULT_OUT, help="results directory (default: results); the search "
                                                        "goes to OUT/searches/NAME, confirmed runs to OUT")
    se.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    se.set_defaults(func=cmd_search)

    pl = sub.add_parser("plot", help="figures of a results directory (PNG and SVG)")
    pl.add_argument("results", help="results directory (holds records/, maybe sweeps/)")
    pl.add_argument("--out", default="figures", help="folder for the figures (default: figures)")
    pl.add_argument("--formats", default=",".join(FORMATS), help=f"comma list of {', '.join(FORMATS)} (default: all)")
    pl.add_argument("--margin", type=float, default=None, help=MARGIN_HELP)
    pl.set_defaults(func=cmd_plot)

    rp = sub.add_parser("report", help="a Markdown report of a results directory, figures beside it")
    rp.add_argument("results", help="results directory (holds records/, maybe sweeps/)")
    rp.add_argument("--out", default="report.md", help="Markdown path; figures go to figures/ beside it")
    rp.add_argument("--margin", type=float, default=None, help=MARGIN_HELP)
    rp.set_defaults(func=cmd_report)

    dg = sub.add_parser("diagnose", help="measure one of the paper's hypotheses: gradient-alignment, "
                                         "tag-probe, in-context")
    dg.add_argument("name", help="gradient-alignment | tag-probe | in-context")
    dg.add_argument("--learner", required=True, help="torch learner name(s), comma-separated")
    dg.add_argument("--task", default="synthetic-defs", help="task name(s), comma-separated")
    dg.add_argument("--seeds", default="10", help=SEEDS_HELP)
    dg.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="override a task or learner parameter, as in `run` (e.g. batch_size=16); repeatable")
    dg.add_argument("--variables", type=int, default=32, help="variables sampled per tag (default: 32)")
    dg.add_argument("--every", type=int, default=1, help="gradient-alignment: measure every Nth stage-1 epoch")
    dg.add_argument("--permutations", type=int, default=200,
                    help="tag-probe: shuffles of the tags among variables for the probe's chance level (default: 200)")
    dg.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                    help="definition accuracy that marks the evaluation point (default: 0.98)")
    dg.add_argument("--out", default=api.DEFAULT_OUT, help="results directory; output goes to OUT/diagnostics/")
    dg.add_argument("--force", action="store_true", help="recompute finished records")
    _execution_options(dg, "parallel runs (supervised worker processes)")
    dg.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    dg.set_defaults(func=cmd_diagnose)

    board = sub.add_parser("leaderboard", help="rebuild the leaderboard CSV from a results directory")
    board.add_argument("results", help="results directory (holds records/)")
    board.add_argument("-o", "--output", default=None, help="CSV path (default: RESULTS/leaderboard.csv)")
    board.add_argument("--margin", type=float, default=None, help=MARGIN_HELP)
    board.set_defaults(func=cmd_leaderboard)
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Values argparse accepts that no command can use, refused before any run starts."""
    for name in ("out", "output"):
        value = getattr(args, name, None)
        if value is not None and not str(value).strip():
            raise ImlbenchError(f"--{name} is empty; name a path")
    if hasattr(args, "margin"):
        check_margin(args.margin)


@contextmanager
def sigterm_as_interrupt() -> Iterator[dict[str, bool]]:
    """SIGTERM (`kill`, a scheduler's stop) ends a command as Ctrl-C does, through the SIGINT
    handler, so that a run in progress tells it from a KeyboardInterrupt a learner raised."""
    state = {"terminated": False}

    def stop(signum, frame):
        state["terminated"] = True
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with sigterm_as_interrupt() as signalled:
        try:
            check_args(args)
            return args.func(args)
        except ImlbenchError as exc:
            print(f"imlbench: error: {one_line(str(exc))}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            how = "terminated (SIGTERM)" if signalled["terminated"] else "interrupted"
            print(f"\nimlbench: {how}; finished runs are saved and will be reused", file=sys.stderr)
            return 143 if signalled["terminated"] else 130
        except OSError as exc:  # a full disk, a folder that became unwritable: one line, not a traceback
            print(f"imlbench: error: {one_line(f'{type(exc).__name__}: {exc}')}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
