"""Scaling: parallel runs on one machine, and the cost of a transformer run against task size.
Targets "scale/jobs" and "scale/entities" in benchmarks/targets.py."""

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from targets import check_target

import imlbench
from imlbench.core.specs import resolve
from imlbench.harness.stages import execute

GRID = dict(learner="rf", task="synthetic-defs", seeds=4, pipeline="two-stage")
BUSY = 30_000_000  # steps of a pure-Python loop, about a second on one core: long enough to average out bursts


def busy(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def parallel_capacity() -> float:
    """How much faster two processes finish two equal CPU-bound jobs than one does, now: about 2 on two
    idle cores, less while other work holds one of them."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(busy, [1, 1]))  # both workers started before the clock
        start = time.perf_counter()
        list(pool.map(busy, [BUSY, BUSY]))
        parallel = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(2):
        busy(BUSY)
    return (time.perf_counter() - start) / parallel


def test_jobs2_against_jobs1(benchmark, tmp_path):
    """The same 4 runs with --jobs 1 and --jobs 2 (fresh records each time); extra_info has the ratio.
    The target divides it by what two plain processes gain on this machine just before and after
    (the smaller), so that other work on the cores does not count as a regression."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: --jobs 2 cannot be faster")
    seconds, capacity = {}, [parallel_capacity()]

    def both():
        for jobs in (1, 2):
            start = time.perf_counter()
            imlbench.run(out=tmp_path / f"jobs{jobs}", force=True, jobs=jobs, **GRID)
            seconds[jobs] = time.perf_counter() - start

    benchmark.pedantic(both, rounds=1, iterations=1)
    capacity.append(parallel_capacity())
    speedup = seconds[1] / seconds[2]
    benchmark.extra_info.update(jobs1_seconds=round(seconds[1], 2), jobs2_seconds=round(seconds[2], 2),
                                speedup=round(speedup, 2), parallel_capacity=[round(c, 2) for c in capacity])
    check_target(benchmark, "scale/jobs", speedup / min(capacity))


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
    check_target(benchmark, "scale/entities", exponent)
