"""Speed of the harness itself: data generation and views, and its overhead around a learner, both
against the fitting of one default rf run. Targets "harness/generation" and "harness/overhead" in
benchmarks/targets.py."""

import tempfile
import time

import pytest
from targets import check_target

from imlbench.core.specs import resolve
from imlbench.execution.workers import Execution, run_job
from imlbench.harness.processes import preload
from imlbench.harness.runner import RunRequest
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.views.base import get_view

# As a driver does for its grid's learners, so that no run's clock pays for importing scikit-learn.
preload(["imlbench.learners.forest"])


def generate_with_views(task: SyntheticDefs, seed: int) -> None:
    data = task.generate(seed)
    for view in task.views:
        for split in ("stage1", "stage2"):
            task.encode(get_view(view), data, getattr(data, split), split)
        task.encode(get_view(view), data, data.test.without_targets(), "test")


def default_rf_run() -> dict:
    """The record of one default rf run, executed as every run is (under a worker)."""
    request = RunRequest(resolve("task", "synthetic-defs"), resolve("learner", "rf"), 0, "two-stage")
    with tempfile.TemporaryDirectory() as out:
        return run_job(request, Execution(out, force=True))["record"]


@pytest.fixture(scope="module")
def rf_fit_seconds() -> float:
    return default_rf_run()["measurements"]["seconds"]["fit"]


def test_generate_default_synthetic_defs_and_all_views(benchmark, rf_fit_seconds):
    """The default 1000 entities; the fastest round is the one least disturbed by other work."""
    rounds: list[float] = []

    def timed() -> None:
        start = time.perf_counter()
        generate_with_views(SyntheticDefs(), 0)
        rounds.append(time.perf_counter() - start)

    benchmark(timed)
    benchmark.extra_info.update(generation_seconds=round(min(rounds), 4), fit_seconds=round(rf_fit_seconds, 3))
    check_target(benchmark, "harness/generation", min(rounds) / rf_fit_seconds)


def test_harness_overhead_relative_to_fitting(benchmark):
    """One default rf run; extra_info splits its time into the learner's fitting and the rest."""
    shares: list[float] = []

    def one_run() -> dict:
        result = default_rf_run()
        s = result["measurements"]["seconds"]
        shares.append((s["total"] - s["fit"] - s["evaluation"]) / s["fit"])
        return result

    result = benchmark.pedantic(one_run, rounds=2, iterations=1)
    s = result["measurements"]["seconds"]
    benchmark.extra_info.update(
        {
            "fit_seconds": round(s["fit"], 3),
            "evaluation_seconds_incl_predict": round(s["evaluation"], 3),
            "harness_seconds_excl_predict": round(s["total"] - s["fit"] - s["evaluation"], 3),
            "harness_overhead_fraction_of_fit": round(min(shares), 4),
        }
    )
    check_target(benchmark, "harness/overhead", min(shares))
