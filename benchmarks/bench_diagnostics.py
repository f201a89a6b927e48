"""Cost of the gradient-alignment diagnostic per stage-1 checkpoint, against one stage-1 epoch.

Run: `pytest benchmarks/bench_diagnostics.py -s` (or `python benchmarks/bench_diagnostics.py`).

For each diagnosable learner on its default task and default spec, trains stage 1 for two epochs
and times the second epoch, then times one checkpoint's diagnostic at the default sample (32
variables per tag: 96 definitions and their 768 questions, one vmapped gradient per variable and
kind). The printed ratio is what `--every 1` adds per epoch; `--every K` divides it by K.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from imlbench.diagnostics.builtin import GradientAlignment
from imlbench.diagnostics.measures import gradient_alignment_rows, sample_variables
from imlbench.core.protocol import TAGS
from imlbench.core.registry import resolve

CASES = [("mlp", "synthetic-defs"), ("transformer", "synthetic-defs"), ("convnet", "tagged-digits")]


def checkpoint_cost(learner_name: str, task_name: str) -> dict[str, float]:
    task = resolve("task", task_name).build()
    learner = resolve("learner", learner_name, {"epochs": 2}).build()
    data = task.generate(0)
    view = learner.supported_views()[0]
    fit = learner.fit(task.encode(view, data, data.stage1, "stage1"))
    next(fit)
    start = time.perf_counter()
    next(fit)
    epoch = time.perf_counter() - start
    rng = np.random.default_rng(0)
    samples = {t: sample_variables(data, s, GradientAlignment.options["variables"], rng)
               for t, s in zip(TAGS, ("d1consis", "d2consis", "d3consis"))}
    start = time.perf_counter()
    gradient_alignment_rows(learner, task, view, data, samples, 2)
    diagnostic = time.perf_counter() - start
    fit.close()
    return {"epoch_s": epoch, "checkpoint_s": diagnostic, "ratio": diagnostic / epoch}


@pytest.mark.parametrize("learner_name, task_name", CASES)
def test_gradient_alignment_cost(learner_name, task_name):
    cost = checkpoint_cost(learner_name, task_name)
    print(f"\n{learner_name} on {task_name}: stage-1 epoch {cost['epoch_s']:.2f} s, one checkpoint's "
          f"gradient alignment {cost['checkpoint_s']:.2f} s, ratio {cost['ratio']:.1f}")
    assert cost["checkpoint_s"] > 0


if __name__ == "__main__":
    for case in CASES:
        print(case, checkpoint_cost(*case))
