"""One run of the protocol (PROTOCOL §3, protocol v3): stages as the pipeline makes them, the
evaluation point, the reading window, and the result part of the record.

The harness owns the answer key. The learner runs in a process of its own (`RemoteLearner`) and
receives view data and target-free queries; the `Evaluator` scores its predictions between yields.
Definitions are scored at every checkpoint (they mark the evaluation point p, counted from 1 in the
scored stage). The test subsets and the answer scores are evaluated at every checkpoint of the
reading window p … 2p; elsewhere the test subsets are evaluated at the first `TEST_EVERY_UNTIL`
checkpoints, then every `TEST_EVERY`-th, and always at the end of the fit, so that a long budget
does not multiply the cost of evaluation. The scored fit is closed at the window's end (2p) unless
`full_budget`; a fit whose definitions are never learned has no window and runs its whole budget.
"""

from __future__ import annotations

import resource
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from imlbench.core import seeds
from imlbench.core.pipelines import Pipeline, get_pipeline
from imlbench.core.protocol import Learner, Task
from imlbench.core.specs import Spec
from imlbench.harness import sandbox
from imlbench.harness.evaluation import Evaluator
from imlbench.harness.pipelines import check_pipeline, choose_view, close_fit, start_step  # noqa: F401  (choose_view: the harness's)
from imlbench.harness.remote import RemoteLearner
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
    """A fit driven to its end (or to the end of its reading window): its curve, the evaluation
    point (or, if the definitions were never learned, the evaluated checkpoint with the best
    definition accuracy), the last checkpoint, and the reading window (None without a point)."""

    curve: list[dict[str, Any]]
    point: dict[str, Any]
    end: dict[str, Any]
    definitions_learned: bool
    window: dict[str, Any] | None = None


def fit_to_budget(
    fit: Iterator[None],
    learner: Learner,
    evaluator: Evaluator,
    stage: str,
    threshold: float,
    progress: Progress,
    start: list[dict[str, Any]] | None = None,
    until_point: bool = False,
    full_budget: bool = False,
) -> Outcome:
    """Drive a fit generator, evaluating between yields; find the evaluation point p and read the
    window p … 2p: the test subsets and the answer scores at each of its checkpoints (the learner's
    state there is gone once training goes on). The fit is closed once checkpoint 2p is evaluated,
    unless `full_budget` (then it runs to its end, at the sparse schedule after 2p). Without a point
    the fit runs to its end. `until_point`: stop at the point (a diagnostic that measures there
    needs no more)."""
    curve = list(start or [])
    point = best = last = None
    ended = True  # whether the fit ran out of checkpoints (rather than being closed)
    try:
        for checkpoint, _ in enumerate(fit, start=1):
            defs = evaluator.definitions(learner)
            entry: dict[str, Any] = {"stage": stage, "checkpoint": checkpoint, "definitions": defs}
            if point is None and min(defs.values()) >= threshold:
                point = entry
            in_window = point is not None and checkpoint <= 2 * point["checkpoint"]
            if in_window or test_due(checkpoint):
                entry["accuracy"] = evaluator.test(learner)
            if in_window:
                logprob = evaluator.answer_logprob(learner)
                if logprob is not None:
                    entry["answer_logprob"] = logprob
            curve.append(entry)
            last = entry
            if point is None and "accuracy" in entry and _better(entry, best):
                best = entry
            progress(stage, checkpoint, f"definitions {min(defs.values()):.3f}")
            if point is not None and (until_point or checkpoint == 2 * point["checkpoint"] and not full_budget):
                ended = False
                break
    finally:
        close_fit(fit)
    if last is None:
        raise RuntimeError(f"the learner's {stage} fit yielded no checkpoint")
    if "accuracy" not in last:  # the end of the fit is always evaluated
        last["accuracy"] = evaluator.test(learner)
        if point is None and _better(last, best):
            best = last
    return Outcome(curve, point or best, last, point is not None, _window(point, last, ended))


def _window(point: dict[str, Any] | None, last: dict[str, Any], ended: bool) -> dict[str, Any] | None:
    """The reading window a fit was read over: p, the last checkpoint of it read, its target 2p and
    whether the fit ended first (`short`). A one-checkpoint fit (p = 1, no second checkpoint to
    reach) is read at its one checkpoint and is not short."""
    if point is None:
        return None
    first, one_shot = point["checkpoint"], ended and last["checkpoint"] == 1
    read = min(last["checkpoint"], 2 * first)
    return {
        "stage": point["stage"],
        "first": first,
        "last": read,
        "target": 2 * first,
        "short": read < 2 * first and not one_shot,
    }


def _better(entry: dict[str, Any], best: dict[str, Any] | None) -> bool:
    return best is None or min(entry["definitions"].values()) > min(best["definitions"].values())


def learner_seed(learner: Learner, seed: int) -> int | None:
    """The `random_state` a run of `seed` passes its learner: the run seed's learner stream (None
    for a learner without that parameter)."""
    return seeds.derive_seed(seed, seeds.LEARNER) if "random_state" in learner.get_params() else None


def seed_learner(learner: Learner, seed: int) -> int | None:
    """The learner's own randomness from the run seed's learner stream; returns the `random_state`
    passed (None for a learner without that parameter)."""
    random_state = learner_seed(learner, seed)
    if random_state is not None:
        learner.set_params(random_state=random_state)
    return random_state


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
    evaluator: Evaluator | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """The steps before the scored one (stage 1), each to its end; returns their checkpoint count
    and, with an `evaluator`, the learner's test and training accuracies at the end of each step
    (three-stage: the definitions where 1a trained them, the questions where 1b did)."""
    count, ends = 0, []
    for i, step in enumerate(pipeline.before):
        encoded = task.encode(get_view(view), data, step.examples(data, _shuffler(seed)), step.settings)
        progress(step.stage, count, "fitting")
        count += exhaust(timed(start_step(learner, i, step, encoded), seconds), step.stage, progress)
        if evaluator is not None:
            ends.append(
                {
                    "stage": step.stage,
                    "kinds": step.kinds,
                    "parts": list(step.parts),
                    "accuracy": evaluator.test(learner),
                    "train_accuracy": evaluator.train(learner),
                }
            )
    return count, ends


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
    isolated: bool = True,
    full_budget: bool = False,
    sealed: bool = False,
    entropy: str | None = None,
) -> dict[str, Any]:
    """Run one (task, learner, seed, pipeline); return the result part of its record. The learner
    runs in a fresh, sandboxed process (`RemoteLearner`, which the run's worker limits), away from
    the answer key; `isolated=False` runs it here (what a benchmark compares against). `full_budget`:
    the scored fit runs past its reading window to its end. `sealed`: the task and `random_state`
    come from the seed mixed with entropy the learner never sees (`entropy`: a replay's)."""
    progress = progress or _quiet
    progress("data", 0, "building the task and learner")
    pipeline = get_pipeline(pipeline)
    entropy = (entropy or secrets.token_hex(16)) if sealed else None
    run_seed = seeds.sealed_seed(seed, entropy) if sealed else seed
    run = (task_spec, learner_spec)
    if not isolated:
        result = _execute(*run, learner_spec.build(), run_seed, pipeline, threshold, progress, full_budget)
        return {**result, **sandbox.account({}, False, entropy)}
    hidden = sandbox.hide_this_process()  # before the answer key exists in this process
    with RemoteLearner(learner_spec) as learner:
        result = _execute(*run, learner, run_seed, pipeline, threshold, progress, full_budget)
        return {**result, **sandbox.account({**learner.protections, "harness_not_dumpable": hidden}, True, entropy)}


def _execute(
    task_spec: Spec,
    learner_spec: Spec,
    learner: Learner,
    seed: int,
    pipeline: Pipeline,
    threshold: float,
    progress: Progress,
    full_budget: bool = False,
) -> dict[str, Any]:
    task, learner, view = prepare(task_spec, learner_spec, seed, pipeline, learner)
    random_state = learner_seed(learner, seed)  # what `prepare` passed it
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    data = task.generate(seed)
    evaluator = Evaluator(task, data, view, stage1_definitions=pipeline.scored_sees_stage1)
    seconds["data"] = time.perf_counter() - t0
    t = time.perf_counter()
    n_stage1_checkpoints, step_ends = train_before_scored(
        pipeline, learner, task, view, data, seed, seconds, progress, evaluator
    )
    start = None
    if pipeline.before:
        seconds["stage1"] = time.perf_counter() - t
        after_stage1, train_after_stage1 = step_ends[-1]["accuracy"], step_ends[-1]["train_accuracy"]
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
    outcome = fit_to_budget(
        timed(fit, seconds), learner, evaluator, scored.stage, threshold, progress, start, full_budget=full_budget
    )
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
        **({"learner_seed": random_state} if random_state is not None else {}),  # as given (the spec's: default)
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
        # the checkpoints p … 2p of the scored stage the headline reads (None: no point, no window)
        "window": outcome.window,
        "full_budget": full_budget,  # the fit ran on to its declared end, past its window
        "step_ends": step_ends,  # each step before the scored one, at its end
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
