"""The argument parser: every subcommand, its options and their help texts."""

from __future__ import annotations

import argparse

import imlbench
from imlbench import api
from imlbench.cli.commands import (
    cmd_diagnose,
    cmd_leaderboard,
    cmd_list,
    cmd_plot,
    cmd_report,
    cmd_run,
    cmd_search,
    cmd_show,
    cmd_sweep,
    cmd_verify,
)
from imlbench.core.pipelines import pipeline_names
from imlbench.core.protocol import DEFAULT_THRESHOLD
from imlbench.core.registry import REGISTRIES
from imlbench.core.specs import available, suite_specs
from imlbench.execution.engines import JOBS_HELP, default_jobs, parse_jobs
from imlbench.outputs.drawing import FORMATS

MEMORY_HELP = (
    "resident memory per run's learner, e.g. 4G or 512M: a run past it is stopped and recorded as "
    "an error (default: 3/4 of the machine's memory divided by --jobs; 0 = no limit)"
)


SEEDS_HELP = "a count N (seeds 0..N-1), a list 0,3,7 or a range 2-4 (default: 10)"


MARGIN_HELP = "equivalence margin in points for the verdict 'none' (default: each task's own, 10 for the built-ins)"


class Parser(argparse.ArgumentParser):
    """argparse without abbreviations, for every subcommand too: `--seed 3` is not `--seeds 3`."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def _one_of(names: list[str]) -> str:
    return ", ".join(names) or "(none)"


def _learners() -> str:
    return f"built in: {_one_of(available('learner'))}; or a spec .toml, or package.module:Class"


def _tasks() -> str:
    return f"built in: {_one_of(available('task'))}; or a spec .toml, or package.module:Class"


def _pipelines(comma: bool = False) -> str:
    return " | ".join(pipeline_names()) + (", or a comma list" if comma else "") + " (default: two-stage)"


def _execution_options(parser: argparse.ArgumentParser, jobs_help: str) -> None:
    """Where runs execute and what bounds them: the same for run, search and diagnose."""
    parser.add_argument("--jobs", type=parse_jobs, default=default_jobs(), help=f"{jobs_help}: {JOBS_HELP}")
    parser.add_argument(
        "--executor",
        default=None,
        help="local (default), dask (a LocalCluster of --jobs workers), "
        "dask://HOST:PORT, slurm (submitit), submitit-local",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wall-clock limit per run: a run past it is stopped and recorded as an error "
        "(default: the learner spec's `timeout`, else none; 0 = no limit)",
    )
    parser.add_argument("--memory-limit", default=None, metavar="SIZE", help=MEMORY_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="imlbench", description="Benchmark implicit meta-learning across learners.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {imlbench.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    suites = sorted(suite_specs("suite"))
    diagnostics = REGISTRIES["diagnostic"].names()

    run = sub.add_parser("run", help="run learners on tasks over seeds (finished runs are reused)")
    run.add_argument("--learner", default=None, help=f"name(s), comma-separated (default: rf); {_learners()}")
    run.add_argument("--task", default=None, help=f"name(s), comma-separated (default: synthetic-defs); {_tasks()}")
    run.add_argument(
        "--suite",
        default=None,
        help=f"run a suite instead: {_one_of(suites)} (suites/NAME.toml), or a .toml path",
    )
    run.add_argument("--seeds", default=None, help=SEEDS_HELP)
    run.add_argument("--pipeline", default="two-stage", help=_pipelines(comma=True))
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter (prefix task. or learner. if ambiguous); repeatable",
    )
    run.add_argument("--out", default=api.DEFAULT_OUT, help="results directory (default: results)")
    run.add_argument("--force", action="store_true", help="recompute runs that already have records")
    run.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="definition accuracy that marks the evaluation point (default: 0.98)",
    )
    run.add_argument(
        "--full-budget",
        action="store_true",
        help="run every fit to its declared budget and record the curve to its end (persistence "
        "studies); by default a fit ends at the end of its reading window, checkpoint 2p",
    )
    run.add_argument(
        "--sealed",
        action="store_true",
        help="draw each run's task and random_state with entropy held back from the learner, so that "
        "a learner cannot regenerate its test answers from the seed (for learners you do not trust; "
        "docs/isolation.md); the entropy is written into the record when the run ends",
    )
    run.add_argument(
        "--family",
        default=None,
        help="the family whose rows are Holm-adjusted together (PROTOCOL §5): a study's name; default: "
        "the suite's name, or this command's grid",
    )
    run.add_argument("--margin", type=float, default=None, help=MARGIN_HELP)
    _execution_options(run, "parallel runs (worker processes or dask workers)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-run lines")
    run.set_defaults(func=cmd_run)

    lst = sub.add_parser("list", help="the learner x task matrix with supported pipelines")
    lst.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="save a picture of a task's examples (image tasks)")
    show.add_argument("task", help=f"a task with pictures (an image task; any other lists those); {_tasks()}")
    show.add_argument("--out", default="examples.png", help="picture path (default: examples.png)")
    show.add_argument("--seed", type=int, default=0, help="the task's seed (default: 0)")
    show.set_defaults(func=cmd_show)

    sw = sub.add_parser("sweep", help="run a grid of parameter values and score each grid point")
    sw.add_argument("--learner", required=True, help=f"learner name (comma list allowed); {_learners()}")
    sw.add_argument("--task", required=True, help=f"task name (comma list allowed); {_tasks()}")
    sw.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help="a swept parameter and its values (TOML, top-level commas split); repeatable: "
        "the grid is the cartesian product; one value = a fixed setting",
    )
    sw.add_argument("--seeds", default="10", help=SEEDS_HELP)
    sw.add_argument("--pipeline", default="two-stage", help=_pipelines())
    sw.add_argument(
        "--out", default=api.DEFAULT_OUT, help="results directory (default: results); the CSV goes to OUT/sweeps/"
    )
    sw.add_argument("--name", default=None, help="sweep CSV name (default: from learner, task and parameters)")
    sw.add_argument("--force", action="store_true", help="recompute runs that already have records")
    sw.add_argument("--margin", type=float, default=None, help=MARGIN_HELP)
    sw.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    sw.set_defaults(func=cmd_sweep)

    se = sub.add_parser("search", help="search a learner's configurations for IML; confirm the best on fresh seeds")
    se.add_argument(
        "--learner", required=True, help=f"learner name (its spec or class declares the search space); {_learners()}"
    )
    se.add_argument("--task", required=True, help=f"task name; {_tasks()}")
    se.add_argument("--trials", type=int, default=20, help="configurations tried, all processes together (default: 20)")
    se.add_argument("--explore-seeds", type=int, default=3, help="seeds per trial, 1000, 1001, ... (default: 3)")
    se.add_argument("--confirm-seeds", type=int, default=10, help="fresh seeds 0..M-1 for confirmation (default: 10)")
    se.add_argument("--confirm-top", type=int, default=1, help="best configs confirmed, one Holm family (default: 1)")
    se.add_argument("--pipeline", default="two-stage", help=_pipelines())
    se.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a fixed parameter, as in `run`")
    se.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite in OUT/searches/NAME)")
    se.add_argument("--name", default=None, help="study name (default: LEARNER_TASK_PIPELINE)")
    se.add_argument("--seed", type=int, default=0, help="the sampler's seed (default: 0)")
    _execution_options(se, "parallel runs within a trial")
    se.add_argument(
        "--out",
        default=api.DEFAULT_OUT,
        help="results directory (default: results); the search goes to OUT/searches/NAME, confirmed runs to OUT",
    )
    se.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    se.set_defaults(func=cmd_search)

    pl = sub.add_parser("plot", help="figures of a results directory (PNG and SVG)")
    pl.add_argument(
        "results", nargs="?", default=api.DEFAULT_OUT, help="results directory (holds records/; default: results)"
    )
    pl.add_argument("--out", default=None, help="folder for the figures (default: RESULTS/figures)")
    pl.add_argument("--formats", default=",".join(FORMATS), help=f"comma list of {', '.join(FORMATS)} (default: all)")
    pl.add_argument("--margin", type=float, default=None, help=MARGIN_HELP)
    pl.set_defaults(func=cmd_plot)

    rp = sub.add_parser("report", help="a Markdown report of a results directory, figures beside it")
    rp.add_argument(
        "results", nargs="?", default=api.DEFAULT_OUT, help="results directory (holds records/; default: results)"
    )
    rp.add_argument(
        "--out", default=None, help="Markdown path (default: RESULTS/report.md); figures go to figures/ beside it"
    )
    rp.add_argument("--margin", type=float, default=None, help=MARGIN_HELP)
    rp.set_defaults(func=cmd_report)

    dg = sub.add_parser("diagnose", help=f"measure one of the paper's hypotheses: {_one_of(diagnostics)}")
    dg.add_argument("name", help=" | ".join(diagnostics))
    dg.add_argument("--learner", required=True, help=f"torch learner name(s), comma-separated; {_learners()}")
    dg.add_argument(
        "--task", default="synthetic-defs", help=f"task name(s), comma-separated (default: synthetic-defs); {_tasks()}"
    )
    dg.add_argument("--seeds", default="10", help=SEEDS_HELP)
    dg.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a task or learner parameter, as in `run` (e.g. batch_size=16); repeatable",
    )
    dg.add_argument("--variables", type=int, default=32, help="variables sampled per tag (default: 32)")
    dg.add_argument("--every", type=int, default=1, help="gradient-alignment: measure every Nth stage-1 epoch")
    dg.add_argument(
        "--permutations",
        type=int,
        default=200,
        help="tag-probe: shuffles of the tags among variables for the probe's chance level (default: 200)",
    )
    dg.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="definition accuracy that marks the evaluation point (default: 0.98)",
    )
    dg.add_argument("--out", default=api.DEFAULT_OUT, help="results directory; output goes to OUT/diagnostics/")
    dg.add_argument("--force", action="store_true", help="recompute finished records")
    _execution_options(dg, "parallel runs (supervised worker processes)")
    dg.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    dg.set_defaults(func=cmd_diagnose)

    board = sub.add_parser("leaderboard", help="rebuild the leaderboard CSV from a results directory and print it")
    board.add_argument(
        "results", nargs="?", default=api.DEFAULT_OUT, help="results directory (holds records/; default: results)"
    )
    board.add_argument("-o", "--output", default=None, help="CSV path (default: RESULTS/leaderboard.csv)")
    board.add_argument("--margin", type=float, default=None, help=MARGIN_HELP)
    board.set_defaults(func=cmd_leaderboard)

    vf = sub.add_parser("verify", help="rerun records and report any whose results differ (no edit passes this)")
    vf.add_argument("results", help="results directory (holds records/)")
    vf.add_argument("--sample", type=int, default=None, metavar="K", help="rerun K records at random (default: all)")
    vf.add_argument("--seed", type=int, default=0, help="the seed of the --sample draw (default: 0)")
    _execution_options(vf, "parallel reruns")
    vf.add_argument("-q", "--quiet", action="store_true", help="no progress bar, only one line per record")
    vf.set_defaults(func=cmd_verify)
    return parser
