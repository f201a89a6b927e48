"""The cost of isolation: a run whose learner executes in a fresh process of its own (forked from the
preloaded fork server, data and queries sent over a pipe) against the same run in the harness process.
Its target is "isolation" in benchmarks/targets.py."""

import time

from targets import check_target

from imlbench.core.specs import resolve
from imlbench.harness.processes import preload, warm_up
from imlbench.harness.stages import execute

# As a driver does for its grid's learners; at import, because the fork server reads it when it
# starts, which another benchmark's isolated run may do first.
preload(["imlbench.learners.forest"])

TASK = {"n_entities": 100}
LEARNER = {"n_estimators": 25, "stage2_estimators": 25}


def one_run(isolated: bool) -> float:
    task, learner = resolve("task", "synthetic-defs", TASK), resolve("learner", "rf", LEARNER)
    start = time.perf_counter()
    execute(task, learner, 0, "two-stage", 0.98, isolated=isolated)
    return time.perf_counter() - start


def test_isolated_run_overhead(benchmark):
    """A tiny rf run, isolated (benchmarked) and in-process; extra_info has the per-run overhead
    (the fork server is started first: a driver pays for it once, not per run). The fastest of 5 of
    each: the least disturbed by anything else on the machine."""
    warm_up()
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
