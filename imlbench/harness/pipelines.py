"""Pipelines (PROTOCOL §3) as objects: which fits a run makes, what each is fed, and which fit the
evaluation point is sought in. The runner asks its pipeline; adding one is a `Pipeline` subclass and
`register_pipeline(TheClass())`.

- two-stage: stage 1 (definitions and questions of the stage-1 variables), then stage 2 continues on
  the new definitions; the evaluation point is sought in stage 2.
- one-stage: one fit on the shuffled union of both stages' examples; the point is sought in it.
- three-stage (the authors' ablation): stage 1a trains on the stage-1 definitions only, stage 1b
  continues on their questions only, then the usual stage 2. If the effect survives, the learner must
  have linked a variable's definition to its questions across stages rather than inside shared batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from imlbench.core import seeds
from imlbench.core.errors import ImlbenchError, did_you_mean
from imlbench.core.protocol import DEFINITION, Examples, Learner, TaskData

STAGE2_PREFIX = "stage2_"


class Pipeline:
    """Two-stage by default; subclasses change how stage 1 is split or whether stage 2 is separate."""

    name: ClassVar[str] = "two-stage"
    separate_stage2: ClassVar[bool] = True  # False: one fit, and the evaluation point is sought in it

    def stage1_parts(self, stage1: Examples) -> list[Examples]:
        """Stage 1 as consecutive fits: the first starts the learner, the others continue it."""
        return [stage1]

    def single_fit(self, data: TaskData, seed: int) -> Examples:
        """What a pipeline without a separate stage 2 trains on."""
        raise NotImplementedError(f"pipeline {self.name!r} has a separate stage 2")

    def continues_training(self) -> bool:
        """Whether a run needs `continue_fit` (a learner without it runs one-stage only)."""
        return self.separate_stage2

    def check(self, learner: Learner, learner_name: str) -> None:
        if self.continues_training() and not learner.supports("continue_training"):
            raise ImlbenchError(f"learner {learner_name!r} cannot continue training, so it cannot run the "
                                f"{self.name} pipeline; use --pipeline one-stage")


class TwoStage(Pipeline):
    name = "two-stage"


class OneStage(Pipeline):
    name = "one-stage"
    separate_stage2 = False

    def single_fit(self, data: TaskData, seed: int) -> Examples:
        union = Examples.concat([data.stage1, data.stage2])
        return union.select(seeds.harness_rng(seed, seeds.STAGE2_ORDER).permutation(len(union)))


class ThreeStage(Pipeline):
    name = "three-stage"

    def stage1_parts(self, stage1: Examples) -> list[Examples]:
        """Definitions, then everything else (questions, and the facts of tasks that have them)."""
        is_definition = stage1.kind == DEFINITION
        return [stage1.select(is_definition), stage1.select(~is_definition)]


PIPELINES: dict[str, Pipeline] = {}


def register_pipeline(pipeline: Pipeline) -> Pipeline:
    PIPELINES[pipeline.name] = pipeline
    return pipeline


def get_pipeline(name: str | Pipeline) -> Pipeline:
    if isinstance(name, Pipeline):
        return name
    if name not in PIPELINES:
        raise ImlbenchError(f"unknown pipeline {name!r}; valid: {', '.join(PIPELINES)}{did_you_mean(name, PIPELINES)}")
    return PIPELINES[name]


for _pipeline in (TwoStage(), OneStage(), ThreeStage()):
    register_pipeline(_pipeline)


def continue_as_stage1(learner: Learner, data: Any) -> Iterator[None]:
    """A later part of stage 1: continue training, but with the stage-1 settings, since it is still stage 1.

    By the naming convention of the built-in learners, a parameter `stage2_X` is the stage-2
    setting of a stage-1 parameter `X`; each such pair takes the stage-1 value while this part
    trains (and is restored afterwards). A learner without such pairs continues at its stage-2 settings.
    """
    params = learner.get_params()
    stage1_values = {k: params[k[len(STAGE2_PREFIX):]] for k in params
                     if k.startswith(STAGE2_PREFIX) and k[len(STAGE2_PREFIX):] in params}
    saved = {k: params[k] for k in stage1_values}
    learner.set_params(**stage1_values)
    try:
        yield from learner.continue_fit(data)
    finally:
        learner.set_params(**saved)
