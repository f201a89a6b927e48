"""The cost of isolation, per run: a run as every run executes (its harness and its learner each in
a process a worker forks, the worker having imported the heavy libraries; data and queries sent
over a socket; its record written) against the same run in one process, and a grid of such runs
through the engine (`--jobs 1` and `--jobs 2`: workers, the run's harness process, its learner
process, records) against the same runs in one process. Its target is "isolation" in
benchmarks/targets.py."""

import tempfile
import time

from targets import check_target

from imlbench.api import execute_plan, plan
from imlbench.core.specs import resolve
from imlbench.execution.workers import Execution, run_job
from imlbench.harness.processes import preload
from imlbench.harness.runner import RunRequest
from imlbench.harness.stages import execute

# As a driver does for its grid's learners; at import, because a worker reads it when it starts,
# which another benchmark's isolated run may do first.
preload(["imlbench.learners.forest"])

TASK = {"n_entities": 100}
LEARNER = {"n_estimators": 25, "stage2_estimators": 25}
GRID = 12  # runs of the engine benchmark


def one_run(isolated: bool, seed: int = 0) -> float:
    task, learner = resolve("task", "synthetic-defs", TASK), resolve("learner", "rf", LEARNER)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        if isolated:
            run_job(RunRequest(task, learner, seed, "two-stage", 0.98), Execution(out, force=True))
        else:
            execute(task, learner, seed, "two-stage", 0.98, isolated=False)
        return time.perf_counter() - start


def test_isolated_run_overhead(benchmark):
    """A tiny rf run, isolated (benchmarked) and in-process; extra_info has the per-run overhead
    (the worker is started first: a driver pays for it once, not per run). The fastest of 5 of
    each: the least disturbed by anything else on the machine."""
    one_run(True)  # starts the worker (kept between runs of this process)
    in_process = min(one_run(False) for _ in range(5))
    result = benchmark.pedantic(one_run, args=(True,), rounds=5, iterations=1)
    isolated = min(one_run(True) for _ in range(5))
    benchmark.extra_info.update(
        in_process_seconds=round(in_process, 3),
        isolated_seconds=round(isolated, 3),
        overhead_seconds=round(isolated - in_process, 3),
    )
    assert result > 0
    check_target(benchmark, "isolation", isolated / in_process)


def grid_seconds(jobs: int) -> float:
    """Wall seconds of GRID tiny rf runs through the engine, workers started included."""
    requests = plan("rf", "synthetic-defs", GRID, params={**TASK, **LEARNER})
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        records, problems = execute_plan(requests, out, verbose=False, jobs=jobs)
        assert not problems and len(records) == GRID
        return time.perf_counter() - start


def test_engine_overhead_per_run(benchmark):
    """GRID tiny rf runs through the engine at --jobs 1 and 2 against the same runs in one process;
    extra_info has the overhead per run (the best of 5 grids each)."""
    in_process = min(sum(one_run(False, seed) for seed in range(GRID)) for _ in range(3))
    walls = {jobs: min(grid_seconds(jobs) for _ in range(5)) for jobs in (1, 2)}
    benchmark.pedantic(grid_seconds, args=(2,), rounds=1, iterations=1)
    for jobs, wall in walls.items():
        benchmark.extra_info[f"jobs{jobs}_overhead_seconds_per_run"] = round((wall * jobs - in_process) / GRID, 3)
    benchmark.extra_info["in_process_seconds_per_run"] = round(in_process / GRID, 3)
