"""What the stage runner needs beyond a pipeline's declaration (`core.pipelines`): whether a learner
can run it, which view it reads, the stage-1 settings of a later stage-1 part, and a learner's fit
checked against the contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from imlbench.core.errors import ImlbenchError
from imlbench.core.pipelines import Pipeline, Step
from imlbench.core.protocol import Learner, Task
from imlbench.views.base import get_view

STAGE2_PREFIX = "stage2_"


def check_pipeline(pipeline: Pipeline, learner: Learner, learner_name: str) -> None:
    if pipeline.continues_training and not learner.supports("continue_training"):
        raise ImlbenchError(
            f"learner {learner_name!r} cannot continue training, so it cannot run the "
            f"{pipeline.name} pipeline; use --pipeline one-stage"
        )


def start_step(learner: Learner, step_index: int, step: Step, data: Any) -> Iterator[None]:
    """The fit of one step: the first starts the learner, a later stage-1 step continues it with the
    stage-1 settings, a stage-2 step continues it with its own."""
    if step_index == 0:
        return checked_fit(learner.fit(data), learner, "fit")
    if step.settings == "stage1":
        return continue_as_stage1(learner, data)
    return checked_fit(learner.continue_fit(data), learner, "continue_fit")


def continue_as_stage1(learner: Learner, data: Any) -> Iterator[None]:
    """A later part of stage 1: continue training, but with the stage-1 settings, since it is still stage 1.

    By the naming convention of the built-in learners, a parameter `stage2_X` is the stage-2
    setting of a stage-1 parameter `X`; each such pair takes the stage-1 value while this part
    trains (and is restored afterwards). A learner without such pairs continues at its stage-2 settings.
    """
    params = learner.get_params()
    stage1_values = {
        k: params[k[len(STAGE2_PREFIX) :]]
        for k in params
        if k.startswith(STAGE2_PREFIX) and k[len(STAGE2_PREFIX) :] in params
    }
    saved = {k: params[k] for k in stage1_values}
    learner.set_params(**stage1_values)
    try:
        yield from checked_fit(learner.continue_fit(data), learner, "continue_fit")
    finally:
        learner.set_params(**saved)


def choose_view(learner: Learner, task: Task, learner_name: str, task_name: str) -> str:
    """The first view the learner reads that the task offers (for a tag-blind learner: one that
    keeps the tag apart, so that it can be hidden)."""
    offered = task.views
    if learner.get_tags().hides_tags:
        offered = tuple(v for v in task.views if task.separable_tags and get_view(v).tagged)
    for view in learner.supported_views():
        if view in offered:
            return view
    raise ImlbenchError(
        f"learner {learner_name!r} reads views {', '.join(learner.supported_views())} "
        f"but task {task_name!r} offers {', '.join(offered) or 'none it can use'}"
    )


def close_fit(fit: Iterator[None] | None) -> None:
    """Close a generator; a plain iterator (which `Iterator[None]` allows) has nothing to close."""
    closer = getattr(fit, "close", None)
    if callable(closer):
        closer()


def checked_fit(fit: Any, learner: Any, method: str) -> Iterator[None]:
    """A learner's fit as the contract has it, an iterator (a generator that yields at checkpoints);
    anything else is a TypeError that says so, not "'list' object is not an iterator" later."""
    if not hasattr(fit, "__next__"):
        raise TypeError(
            f"{type(learner).__name__}.{method} returned {type(fit).__name__}, not a generator: "
            f"Learner.{method} must `yield` once per checkpoint (PROTOCOL §3; see imlbench.testing)"
        )
    return fit
