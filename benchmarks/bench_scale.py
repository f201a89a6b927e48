"""Scaling: parallel runs on one machine, and the cost of a transformer run against task size."""

import time

import numpy as np

import imlbench
from imlbench.core.registry import resolve
from imlbench.harness.stages import execute

GRID = dict(learner="rf", task="synthetic-defs", seeds=4, pipeline="two-stage")


def test_jobs2_against_jobs1(benchmark, tmp_path):
    """The same 4 runs with --jobs 1 and --jobs 2 (fresh records each time); extra_info has the ratio."""
    seconds = {}

    def both():
        for jobs in (1, 2):
            start = time.perf_counter()
            imlbench.run(out=tmp_path / f"jobs{jobs}", force=True, jobs=jobs, **GRID)
            seconds[jobs] = time.perf_counter() - start

    benchmark.pedantic(both, rounds=1, iterations=1)
    benchmark.extra_info.update(jobs1_seconds=round(seconds[1], 2), jobs2_seconds=round(seconds[2], 2),
                                speedup=round(seconds[1] / seconds[2], 2))


def test_transformer_cost_against_entities(benchmark):
    """One short transformer run (5 + 5 epochs) at three task sizes; fits seconds ~ n^k."""
    sizes, seconds = [500, 1000, 2000], []
    learner = resolve("learner", "transformer", {"epochs": 5, "stage2_epochs": 5})

    def runs():
        seconds.clear()
        for n in sizes:
            task = resolve("task", "synthetic-defs", {"n_entities": n})
            result = execute(task, learner, 0, "two-stage", threshold=1.0)
            seconds.append(result["measurements"]["seconds"]["total"])

    benchmark.pedantic(runs, rounds=1, iterations=1)
    exponent = float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])
    benchmark.extra_info.update(sizes=sizes, seconds=[round(s, 2) for s in seconds], exponent=round(exponent, 2))
    assert 0.5 < exponent < 1.5, f"cost grows like n^{exponent:.2f}"
