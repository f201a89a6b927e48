"""One run of the protocol (PROTOCOL §3, protocol v2): stages as the pipeline makes them, every fit
driven through its whole budget, the evaluation point, and the result part of the record.

The harness owns the answer key. The learner runs in a process of its own (`RemoteLearner`) and
receives view data and target-free queries; the `Evaluator` scores its predictions between yields.
The harness never closes a fit early: definitions are scored at every checkpoint (they mark the
evaluation point), the test subsets at the first `TEST_EVERY_UNTIL` checkpoints, then every
`TEST_EVERY`-th, and always at the evaluation point and at the end of the stage, so that a long
budget does not multiply the cost of evaluation.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from imlbench.core import seeds
from imlbench.core.errors import ImlbenchError
from imlbench.core.pipelines import Pipeline, get_pipeline
from imlbench.core.protocol import Learner, Task
from imlbench.core.specs import Spec
from imlbench.harness.evaluation import Evaluator
from imlbench.harness.pipelines import check_pipeline, start_step
from imlbench.harness.processes import memory_guard
from imlbench.harness.remote import RemoteLearner, close_fit
from imlbench.scoring.runs import run_scores
from imlbench.views.base import get_view

# progress(stage, checkpoint, detail): where a run is ("data", "stage1", "stage2", "single",
# "final evaluation") and how many checkpoints of that stage have passed; a time limit names it
Progress = Callable[[str, int, str], None]

TEST_EVERY_UNTIL = 10
TEST_EVERY = 5


def test_due(checkpoint: int) -> bool:
    return checkpoint <= TEST_EVERY_UNTIL or checkpoint % TEST_EVERY == 0


@dataclass
class Outcome:
    """A fit driven to its end: its curve, the evaluation point (or, if the definitions were never
    learned, the evaluated checkpoint with the best definition accuracy) and the last checkpoint."""

    curve: list[dict[str, Any]]
    point: dict[str, Any]
    end: dict[str, Any]
    definitions_learned: bool


def fit_to_budget(
    fit: Iterator[None],
    learner: Learner,
    evaluator: Evaluator,
    stage: str,
    threshold: float,
    progress: Progress,
    start: list[dict[str, Any]] | None = None,
    until_point: bool = False,
) -> Outcome:
    """Drive a fit generator to its end, evaluating between yields; find the evaluation point and
    take the answer scores there (the learner's state at the point is gone once training goes on).
    `until_point`: stop at the point (a diagnostic that measures there needs no more)."""
    curve = list(start or [])
    point = best = last = None
    try:
        for checkpoint, _ in enumerate(fit, start=1):
            defs = evaluator.definitions(learner)
            entry: dict[str, Any] = {"stage": stage, "checkpoint": checkpoint, "definitions": defs}
            reached = point is None and min(defs.values()) >= threshold
            if reached or test_due(checkpoint):
                entry["accuracy"] = evaluator.test(learner)
            curve.append(entry)
            last = entry
            if reached:
                point = entry
                logprob = evaluator.answer_logprob(learner)
                if logprob is not None:
                    entry["answer_logprob"] = logprob
            elif point is None and "accuracy" in entry and _better(entry, best):
                best = entry
            progress(stage, checkpoint, f"definitions {min(defs.values()):.3f}")
            if reached and until_point:
                break
    finally:
        close_fit(fit)
    if last is None:
        raise RuntimeError(f"the learner's {stage} fit yielded no checkpoint")
    if "accuracy" not in last:  # the end of the stage is always evaluated
        last["accuracy"] = evaluator.test(learner)
        if point is None and _better(last, best):
            best = last
    return Outcome(curve, point or best, last, point is not None)


def _better(entry: dict[str, Any], best: dict[str, Any] | None) -> bool:
    return best is None or min(entry["definitions"].values()) > min(best["definitions"].values())


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


def seed_learner(learner: Learner, seed: int) -> None:
    """The learner's own randomness from the run seed's learner stream."""
    if "random_state" in learner.get_params():
        learner.set_params(random_state=seeds.derive_seed(seed, seeds.LEARNER))


def timed(fit: Iterator[None], seconds: dict[str, float]) -> Iterator[None]:
    """Pass a fit generator's checkpoints through, adding the time spent inside it to seconds["fit"]."""
    try:
        while True:
            start = time.perf_counter()
            try:
                next(fit)
            except StopIteration:
                return
            finally:
                seconds["fit"] = seconds.get("fit", 0.0) + time.perf_counter() - start
            yield
    finally:
        close_fit(fit)


def exhaust(fit: Iterator[None], stage: str = "", progress: Progress | None = None) -> int:
    """Drive a fit to its end (a stage with no evaluation point); returns its checkpoint count."""
    count = 0
    for _ in fit:
        count += 1
        if progress:
            progress(stage, count, "")
    return count


def _quiet(stage: str, checkpoint: int, detail: str) -> None:
    pass


def prepare(
    task_spec: Spec, learner_spec: Spec, seed: int, pipeline: Pipeline, learner: Learner | None = None
) -> tuple[Task, Learner, str]:
    """The task and learner of a run (`learner`: one already built, e.g. a `RemoteLearner`), each
    built and validated once, and the view the learner reads."""
    task, learner = task_spec.build(), learner_spec.build() if learner is None else learner
    view = choose_view(learner, task, learner_spec.name, task_spec.name)
    check_pipeline(pipeline, learner, learner_spec.name)
    seed_learner(learner, seed)
    return task, learner, view


def train_before_scored(
    pipeline: Pipeline,
    learner: Learner,
    task: Task,
    view: str,
    data: Any,
    seed: int,
    seconds: dict[str, float],
    progress: Progress,
) -> int:
    """The steps before the scored one (stage 1), each to its end; returns their checkpoint count."""
    count = 0
    for i, step in enumerate(pipeline.before):
        encoded = task.encode(get_view(view), data, step.examples(data, _shuffler(seed)), step.settings)
        progress(step.stage, count, "fitting")
        count += exhaust(timed(start_step(learner, i, step, encoded), seconds), step.stage, progress)
    return count


def _shuffler(seed: int) -> Callable[[int], Any]:
    """The order of a step that trains on a union of parts: the run seed's harness stream."""
    return lambda n: seeds.harness_rng(seed, seeds.STAGE2_ORDER).permutation(n)


def execute(
    task_spec: Spec,
    learner_spec: Spec,
    seed: int,
    pipeline: str | Pipeline,
    threshold: float,
    progress: Progress | None = None,
    memory_limit: int | None = None,
    isolated: bool = True,
) -> dict[str, Any]:
    """Run one (task, learner, seed, pipeline); return the result part of its record. The learner
    executes in a fresh process of its own (`RemoteLearner`, killed with its group at the end, and at
    `memory_limit` bytes), so the answer key and other runs are out of its reach; `isolated=False`
    runs it in this process (what a benchmark compares against)."""
    progress = progress or _quiet
    progress("data", 0, "building the task and learner")
    if not isolated:
        with memory_guard(memory_limit):
            return _execute(
                task_spec, learner_spec, learner_spec.build(), seed, get_pipeline(pipeline), threshold, progress
            )
    with RemoteLearner(learner_spec, memory_limit) as learner:
        return _execute(task_spec, learner_spec, learner, seed, get_pipeline(pipeline), threshold, progress)


def _execute(
    task_spec: Spec,
    learner_spec: Spec,
    learner: Learner,
    seed: int,
    pipeline: Pipeline,
    threshold: float,
    progress: Progress,
) -> dict[str, Any]:
    task, learner, view = prepare(task_spec, learner_spec, seed, pipeline, learner)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    data = task.generate(seed)
    evaluator = Evaluator(task, data, view, stage1_definitions=pipeline.scored_sees_stage1)
    seconds["data"] = time.perf_counter() - t0
    t = time.perf_counter()
    n_stage1_checkpoints = train_before_scored(pipeline, learner, task, view, data, seed, seconds, progress)
    start = None
    if pipeline.before:
        seconds["stage1"] = time.perf_counter() - t
        after_stage1 = evaluator.test(learner)
        train_after_stage1 = evaluator.train(learner)
        start = [
            {
                "stage": pipeline.scored.stage,
                "checkpoint": 0,
                "definitions": evaluator.definitions(learner),
                "accuracy": after_stage1,
            }
        ]
        t = time.perf_counter()
    scored = pipeline.scored
    encoded = task.encode(get_view(view), data, scored.examples(data, _shuffler(seed)), scored.settings)
    progress(scored.stage, 0, "fitting")
    fit = start_step(learner, len(pipeline.before), scored, encoded)
    outcome = fit_to_budget(timed(fit, seconds), learner, evaluator, scored.stage, threshold, progress, start)
    seconds["stage2" if pipeline.before else "stage1"] = time.perf_counter() - t
    if not pipeline.before:  # one fit: "after stage 1" is its evaluation point
        n_stage1_checkpoints = outcome.end["checkpoint"]
        after_stage1, train_after_stage1 = outcome.point["accuracy"], evaluator.train(learner)
    t = time.perf_counter()
    progress("final evaluation", 0, "")
    train_at_end = evaluator.train(learner) if pipeline.before else train_after_stage1
    seconds["final_eval"] = time.perf_counter() - t
    seconds["evaluation"] = evaluator.seconds
    seconds["total"] = time.perf_counter() - t0
    tags = learner.get_tags()
    record = {
        "view": view,
        "steps": pipeline.to_dict()["steps"],  # what scoring reads of the pipeline, without its registry
        # what the learner says it ran (e.g. a language model's name, revision and library versions)
        "learner_info": getattr(learner, "run_info_", None),
        "is_control": tags.is_control,  # readers never import the learner to ask
        "by_construction_null": bool(pipeline.before) and not tags.stage2_uses_stage1,
        "margin": float(task.margin),
        "accuracy": outcome.point["accuracy"],
        "accuracy_after_stage1": after_stage1,
        "accuracy_at_end": outcome.end["accuracy"],
        "answer_logprob": outcome.point.get("answer_logprob"),
        "definition_accuracy": outcome.point["definitions"],
        "train_accuracy": {"after_stage1": train_after_stage1, "at_end": train_at_end},
        "evaluation_point": {"stage": outcome.point["stage"], "checkpoint": outcome.point["checkpoint"]},
        "definitions_learned": outcome.definitions_learned,
        "stage1_checkpoints": n_stage1_checkpoints,
        "curve": outcome.curve,
        "sizes": {
            "stage1": len(data.stage1),
            "stage2": len(data.stage2),
            "test": len(data.test),
            **{f"variables_{k}": v for k, v in data.info.get("variables_per_subset", {}).items()},
        },
        "measurements": {
            "seconds": seconds,
            "peak_rss_mb": max(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                learner.peak_rss_mb() if hasattr(learner, "peak_rss_mb") else 0,
            ),
        },
    }
    return {**record, "scores": run_scores(record)}  # what a reader recomputes from the accuracies
