"""The three-stage pipeline (the authors' ablation, PROTOCOL §3): stage 1a trains on the definitions
of the stage-1 variables only, stage 1b continues on their questions only, then the usual stage 2.

Separating the two kinds tests whether IML needs definitions and questions *interleaved*: if the
effect survives, the learner must have linked a variable's definition to its questions across
stages rather than inside shared batches.
"""

from __future__ import annotations

from collections.abc import Iterator

from imlbench.protocol import DEFINITION, Examples, Learner

STAGE2_PREFIX = "stage2_"


def stage1_parts(stage1: Examples, pipeline: str) -> list[Examples]:
    """Stage 1 as the pipeline trains it: whole (two-stage), or definitions then everything else
    (three-stage: questions, and the facts of tasks that have them)."""
    if pipeline != "three-stage":
        return [stage1]
    is_definition = stage1.kind == DEFINITION
    return [stage1.select(is_definition), stage1.select(~is_definition)]


def continue_as_stage1(learner: Learner, data) -> Iterator[None]:
    """Stage 1b: continue training, but with the stage-1 settings, since it is still stage 1.

    By the naming convention of the built-in learners, a parameter `stage2_X` is the stage-2
    setting of a stage-1 parameter `X`; each such pair takes the stage-1 value while stage 1b trains
    (and is restored afterwards). A learner without such pairs continues at its stage-2 settings.
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
