"""Conformance checks for plugins, like scikit-learn's `check_estimator`: `check_learner` runs a
learner through the contract on a tiny task in seconds (both stages and their yields, predictions'
shape and label space, answer scores, the get_params round trip, determinism for a seed) in this
process, through the protocol's API only; `check_task` checks a task. Both raise ConformanceError
with one line per failed check naming the contract: every problem at once, before a run fails."""

from imlbench.testing.common import ConformanceError
from imlbench.testing.learners import check_learner, conformance_problems
from imlbench.testing.tasks import check_task, task_problems

__all__ = ["ConformanceError", "check_learner", "check_task", "conformance_problems", "task_problems"]
