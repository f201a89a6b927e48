"""Pipelines (PROTOCOL §3) as data: a pipeline is a list of fit steps, and the stage runner and
scoring read the steps instead of branching on a pipeline's name.

A step names the documents it trains on and the settings it trains with; the first step starts the
learner (`fit`), every later one continues it (`continue_fit`). The evaluation point is sought in
the last step, and every step before it is a stage-1 part driven to its end. Adding a pipeline is
one `Pipeline(...)` and an entry point in the group `imlbench.pipelines`.

- two-stage: stage 1 (definitions and questions of the stage-1 variables), then stage 2 continues on
  the new definitions.
- one-stage: one fit on the shuffled union of both stages' examples.
- three-stage (the authors' ablation): stage 1a trains on the stage-1 definitions only, stage 1b
  continues on their questions only, then the usual stage 2. If the effect survives, the learner must
  have linked a variable's definition to its questions across stages rather than inside shared batches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from imlbench.core.protocol import DEFINITION, Examples, TaskData
from imlbench.core.registry import PIPELINES

PARTS = ("stage1", "stage2")
KINDS = ("all", "definitions", "rest")  # of a part's examples: every kind, definitions, all but them
SETTINGS = ("stage1", "stage2")


@dataclass(frozen=True)
class Step:
    """One fit: which documents (`parts` of the task's data, of which `kinds`), with which settings
    (a learner's `stage2_X` parameters apply in a "stage2" step; the split a task encodes for), and
    the stage name its checkpoints carry in the record's curve."""

    stage: str
    parts: tuple[str, ...]
    kinds: str = "all"
    settings: str = "stage1"

    def __post_init__(self) -> None:
        if not self.parts or any(p not in PARTS for p in self.parts):
            raise ValueError(f"step {self.stage!r}: parts must be some of {', '.join(PARTS)}, got {self.parts!r}")
        if self.kinds not in KINDS:
            raise ValueError(f"step {self.stage!r}: kinds must be one of {', '.join(KINDS)}, got {self.kinds!r}")
        if self.settings not in SETTINGS:
            raise ValueError(f"step {self.stage!r}: settings must be one of {', '.join(SETTINGS)}")

    def examples(self, data: TaskData, shuffle) -> Examples:
        """The step's documents; a union of parts is shuffled by `shuffle(n) -> permutation`."""
        chosen = [getattr(data, part) for part in self.parts]
        union = chosen[0] if len(chosen) == 1 else Examples.concat(chosen)
        if self.kinds != "all":
            union = union.select((union.kind == DEFINITION) == (self.kinds == "definitions"))
        return union.select(shuffle(len(union))) if len(chosen) > 1 else union


@dataclass(frozen=True)
class Pipeline:
    """A named list of fit steps; the evaluation point is sought in the last."""

    name: str
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"pipeline {self.name!r} has no step")

    @property
    def scored(self) -> Step:
        return self.steps[-1]

    @property
    def before(self) -> tuple[Step, ...]:
        """The steps driven to their end before the scored one (stage 1 of a two-stage run)."""
        return self.steps[:-1]

    @property
    def continues_training(self) -> bool:
        """Whether a run needs `continue_fit` (a learner without it runs one-stage only)."""
        return len(self.steps) > 1

    @property
    def scored_sees_stage1(self) -> bool:
        """Whether the scored fit itself trains on stage-1 documents, so that its definitions mark the
        evaluation point too."""
        return "stage1" in self.scored.parts

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "steps": [asdict(step) for step in self.steps]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Pipeline:
        steps = tuple(Step(**{**s, "parts": tuple(s["parts"])}) for s in raw["steps"])
        return cls(raw["name"], steps)


TWO_STAGE = Pipeline("two-stage", (Step("stage1", ("stage1",)), Step("stage2", ("stage2",), settings="stage2")))
ONE_STAGE = Pipeline("one-stage", (Step("single", ("stage1", "stage2")),))
THREE_STAGE = Pipeline(
    "three-stage",
    (
        Step("stage1", ("stage1",), kinds="definitions"),
        Step("stage1", ("stage1",), kinds="rest"),
        Step("stage2", ("stage2",), settings="stage2"),
    ),
)


def get_pipeline(name: str | Pipeline) -> Pipeline:
    """A registered pipeline (entry-point group `imlbench.pipelines`) by name."""
    return name if isinstance(name, Pipeline) else PIPELINES.get(name)


def pipeline_names() -> list[str]:
    """Every registered pipeline, the default (two-stage) first."""
    return sorted(PIPELINES.names(), key=lambda name: (name != TWO_STAGE.name, name))


def scored_after_other_steps(record: dict[str, Any]) -> bool:
    """Whether the scored fit continued a learner other steps had trained (stage 1 of a two-stage
    run): read from the steps the record carries, else from its pipeline's declaration."""
    steps = record.get("steps")
    if steps is None:
        steps = get_pipeline(record["pipeline"]).to_dict()["steps"]
    return len(steps) > 1
