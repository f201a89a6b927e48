"""Speed of the harness itself: data generation and views, and its overhead around a learner."""

from imlbench.core.registry import resolve
from imlbench.harness.runner import RunRequest
from imlbench.harness.stages import execute
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.views.base import get_view


def generate_with_views(task: SyntheticDefs, seed: int) -> None:
    data = task.generate(seed)
    for view in task.views:
        for split in ("stage1", "stage2"):
            task.encode(get_view(view), data, getattr(data, split), split)
        task.encode(get_view(view), data, data.test.without_targets(), "test")


def test_generate_default_synthetic_defs_and_all_views(benchmark):
    """Target: well under a second for the default 1000 entities."""
    benchmark(generate_with_views, SyntheticDefs(), 0)


def test_harness_overhead_relative_to_fitting(benchmark):
    """One default rf run; extra_info splits its time into the learner's fitting and the rest."""
    task, learner = resolve("task", "synthetic-defs"), resolve("learner", "rf")
    request = RunRequest(task, learner, 0, "two-stage")

    def one_run():
        return execute(request.task, request.learner, request.seed, request.pipeline, request.threshold)

    result = benchmark.pedantic(one_run, rounds=2, iterations=1)
    s = result["measurements"]["seconds"]
    fitting = s["fit"]
    harness = s["total"] - fitting - s["evaluation"]
    benchmark.extra_info.update({
        "fit_seconds": round(fitting, 3),
        "evaluation_seconds_incl_predict": round(s["evaluation"], 3),
        "harness_seconds_excl_predict": round(harness, 3),
        "harness_overhead_fraction_of_fit": round(harness / fitting, 4),
    })
