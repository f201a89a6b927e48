"""Cost of the gradient-alignment diagnostic per stage-1 checkpoint, against one stage-1 epoch.

Run: `pytest benchmarks/bench_diagnostics.py -s` (or `python benchmarks/bench_diagnostics.py`).

For each diagnosable learner on its default task and default spec, trains stage 1 for four epochs
and times each of the last three, each followed by one checkpoint's diagnostic at the default sample
(32 variables per tag: 96 definitions and their 768 questions, one vmapped gradient per variable and
kind). Of the three pairs, each timed under the same load, the one with the cheapest diagnostic
relative to its epoch is reported: the least disturbed by other work on the machine. The
printed ratio is what `--every 1` adds per epoch; `--every K` divides it by K. Its targets are
"diagnostics/<learner>" in benchmarks/targets.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest
from targets import check_target

from imlbench.core.protocol import TAGS
from imlbench.core.specs import resolve
from imlbench.diagnostics.builtin import GradientAlignment
from imlbench.diagnostics.measures import gradient_alignment_rows, sample_variables
from imlbench.views.base import get_view

CASES = [("mlp", "synthetic-defs"), ("transformer", "synthetic-defs"), ("convnet", "tagged-digits")]


def seconds(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def checkpoint_cost(learner_name: str, task_name: str) -> dict[str, float]:
    task = resolve("task", task_name).build()
    learner = resolve("learner", learner_name, {"epochs": 4}).build()
    data = task.generate(0)
    view = learner.supported_views()[0]
    fit = learner.fit(task.encode(get_view(view), data, data.stage1, "stage1"))
    rng = np.random.default_rng(0)
    samples = {
        t: sample_variables(data, s, GradientAlignment.options["variables"], rng)
        for t, s in zip(TAGS, ("d1consis", "d2consis", "d3consis"))
    }
    next(fit)  # the first epoch also builds the model
    pairs = [
        (seconds(next, fit), seconds(gradient_alignment_rows, learner, task, view, data, samples, checkpoint))
        for checkpoint in (2, 3, 4)
    ]
    fit.close()
    epoch, diagnostic = min(pairs, key=lambda pair: pair[1] / pair[0])
    return {"epoch_s": epoch, "checkpoint_s": diagnostic, "ratio": diagnostic / epoch}


@pytest.mark.parametrize("learner_name, task_name", CASES)
def test_gradient_alignment_cost(benchmark, learner_name, task_name):
    cost = benchmark.pedantic(checkpoint_cost, args=(learner_name, task_name), rounds=1, iterations=1)
    benchmark.extra_info.update(cost)
    print(
        f"\n{learner_name} on {task_name}: stage-1 epoch {cost['epoch_s']:.2f} s, one checkpoint's "
        f"gradient alignment {cost['checkpoint_s']:.2f} s, ratio {cost['ratio']:.1f}"
    )
    check_target(benchmark, f"diagnostics/{learner_name}", cost["ratio"])


if __name__ == "__main__":
    for case in CASES:
        print(case, checkpoint_cost(*case))
