"""Running the protocol: stages, the evaluation point, records, resume.

The harness owns the answer key. A learner receives view data and target-free queries; the
`Evaluator` (never handed to the learner) scores its predictions between checkpoint yields.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imlbench.protocol import (
    DEFINITION,
    KIND_NAMES,
    PROTOCOL_VERSION,
    SUBSETS,
    TAGS,
    Examples,
    Learner,
    Task,
    TaskData,
)
from imlbench.records import read_record, record_path, run_identity, run_key, versions, write_record
from imlbench.registry import ImlbenchError, Spec
from imlbench.scoring import run_scores
from imlbench.three_stage import continue_as_stage1, stage1_parts

PIPELINES = ("two-stage", "one-stage", "three-stage")
DEFAULT_THRESHOLD = 0.98
Progress = Callable[[str], None]


def derive_seed(seed: int, purpose: int) -> int:
    """Independent streams from one run seed: 0 = task data (in the task), 1 = learner, 2 = harness."""
    return int(np.random.SeedSequence([seed, purpose]).generate_state(1)[0])


def choose_view(learner: Learner, task: Task, learner_name: str, task_name: str) -> str:
    offered = tuple(v for v in task.views if not learner.hides_tags or v in task.tagged_views)
    for view in learner.supported_views():
        if view in offered:
            return view
    raise ImlbenchError(f"learner {learner_name!r} reads views {', '.join(learner.supported_views())} "
                        f"but task {task_name!r} offers {', '.join(offered) or 'none it can use'}")


def check_pipeline(learner: Learner, learner_name: str, pipeline: str) -> None:
    if pipeline not in PIPELINES:
        raise ImlbenchError(f"unknown pipeline {pipeline!r}; valid: {', '.join(PIPELINES)}")
    if pipeline != "one-stage" and not learner.supports("continue_training"):
        raise ImlbenchError(f"learner {learner_name!r} cannot continue training, so it cannot run the "
                            f"{pipeline} pipeline; use --pipeline one-stage")


class Evaluator:
    """Holds the targets; predicts through the learner's public `predict` on target-free queries."""

    def __init__(self, task: Task, data: TaskData, view: str):
        self._task, self._data, self._view = task, data, view
        self.seconds = 0.0  # time spent evaluating (learner.predict included)
        self._sets: dict[str, tuple[Any, np.ndarray, np.ndarray]] = {}
        stage2_defs = data.stage2.select(data.stage2.kind == DEFINITION)
        self._add("test", data.test, "test", data.test.subset)
        self._add("definitions", stage2_defs, "stage2", stage2_defs.relation)
        labels = np.array([_train_label(s, k) for s, k in zip(data.stage1.subset, data.stage1.kind)])
        self._add("train", data.stage1, "stage1", labels)
        tag_ids = data.vocab.roles["tag"]
        self._tag_name = {int(i): TAGS[j] for j, i in enumerate(tag_ids)}

    def _add(self, name: str, examples: Examples, split: str, groups: np.ndarray) -> None:
        queries = self._task.encode(self._view, self._data, examples.without_targets(), split)
        self._sets[name] = (queries, examples.target.copy(), groups)

    def _accuracy(self, learner: Learner, name: str) -> dict[Any, float]:
        queries, targets, groups = self._sets[name]
        start = time.perf_counter()
        predicted = np.asarray(learner.predict(queries))
        if predicted.shape != targets.shape:
            raise ValueError(f"predict returned shape {predicted.shape} for {len(targets)} queries")
        correct = predicted == targets
        accuracy = {g: float(correct[groups == g].mean()) for g in np.unique(groups)}
        self.seconds += time.perf_counter() - start
        return accuracy

    def test(self, learner: Learner) -> dict[str, float]:
        return {SUBSETS[int(code)]: acc for code, acc in self._accuracy(learner, "test").items()}

    def definitions(self, learner: Learner) -> dict[str, float]:
        return {self._tag_name[int(t)]: acc for t, acc in self._accuracy(learner, "definitions").items()}

    def train(self, learner: Learner) -> dict[str, float]:
        return {str(k): v for k, v in self._accuracy(learner, "train").items()}


def _train_label(subset: int, kind: int) -> str:
    name = SUBSETS[subset] if subset >= 0 else "facts"
    return f"{name}/{KIND_NAMES[kind]}"


@dataclass
class Outcome:
    """Where a fit ended: the evaluation point, or the best checkpoint if the point was not reached."""

    curve: list[dict[str, Any]]
    point: dict[str, Any]
    definitions_learned: bool


def fit_until_point(fit: Iterator[None], learner: Learner, evaluator: Evaluator, stage: str,
                    threshold: float, progress: Progress | None, start: list | None = None) -> Outcome:
    """Drive a fit generator; evaluate at every yield; close it at the evaluation point (PROTOCOL §3)."""
    curve = list(start or [])
    best = None
    try:
        for checkpoint, _ in enumerate(fit, start=1):
            defs = evaluator.definitions(learner)
            entry = {"stage": stage, "checkpoint": checkpoint, "definitions": defs,
                     "accuracy": evaluator.test(learner)}
            curve.append(entry)
            if progress:
                progress(f"{stage} checkpoint {checkpoint}: definitions {min(defs.values()):.3f}")
            if best is None or min(defs.values()) > min(best["definitions"].values()):
                best = entry
            if min(defs.values()) >= threshold:
                return Outcome(curve, entry, True)
    finally:
        fit.close()
    if best is None:
        raise RuntimeError(f"the learner's {stage} fit yielded no checkpoint")
    return Outcome(curve, best, False)


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
        fit.close()


def exhaust(fit: Iterator[None]) -> int:
    count = 0
    for _ in fit:
        count += 1
    return count


def execute(task_spec: Spec, learner_spec: Spec, seed: int, pipeline: str, threshold: float,
            progress: Progress | None = None) -> dict[str, Any]:
    """Run one (task, learner, seed, pipeline); return the result part of its record."""
    task, learner = task_spec.build(), learner_spec.build()
    view = choose_view(learner, task, learner_spec.name, task_spec.name)
    check_pipeline(learner, learner_spec.name, pipeline)
    if "random_state" in learner.get_params():
        learner.set_params(random_state=derive_seed(seed, 1))
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    data = task.generate(seed)
    evaluator = Evaluator(task, data, view)
    seconds["data"] = time.perf_counter() - t0

    if pipeline != "one-stage":  # two-stage, or three-stage: stage 1 in two parts (1a, 1b)
        t = time.perf_counter()
        n_stage1_checkpoints = 0
        for i, part in enumerate(stage1_parts(data.stage1, pipeline)):
            stage1 = task.encode(view, data, part, "stage1")
            fit = learner.fit(stage1) if i == 0 else continue_as_stage1(learner, stage1)
            n_stage1_checkpoints += exhaust(timed(fit, seconds))
        seconds["stage1"] = time.perf_counter() - t
        after_stage1 = evaluator.test(learner)
        train_after_stage1 = evaluator.train(learner)
        start = [{"stage": "stage2", "checkpoint": 0, "definitions": evaluator.definitions(learner),
                  "accuracy": after_stage1}]
        t = time.perf_counter()
        stage2 = task.encode(view, data, data.stage2, "stage2")
        outcome = fit_until_point(timed(learner.continue_fit(stage2), seconds), learner, evaluator, "stage2",
                                  threshold, progress, start)
        seconds["stage2"] = time.perf_counter() - t
    else:
        t = time.perf_counter()
        union = Examples.concat([data.stage1, data.stage2])
        union = union.select(np.random.default_rng(derive_seed(seed, 2)).permutation(len(union)))
        outcome = fit_until_point(timed(learner.fit(task.encode(view, data, union, "stage1")), seconds), learner,
                                  evaluator, "single", threshold, progress)
        seconds["stage1"] = time.perf_counter() - t
        n_stage1_checkpoints = len(outcome.curve)
        after_stage1, train_after_stage1 = outcome.point["accuracy"], None
    t = time.perf_counter()
    train_at_point = evaluator.train(learner) if outcome.point is outcome.curve[-1] else None
    seconds["final_eval"] = time.perf_counter() - t
    seconds["evaluation"] = evaluator.seconds
    seconds["total"] = time.perf_counter() - t0
    at_point = outcome.point["accuracy"]
    return {
        "view": view,
        "accuracy": at_point,
        "accuracy_after_stage1": after_stage1,
        "definition_accuracy": outcome.point["definitions"],
        "train_accuracy": {"after_stage1": train_after_stage1, "at_point": train_at_point},
        "evaluation_point": {"stage": outcome.point["stage"], "checkpoint": outcome.point["checkpoint"]},
        "definitions_learned": outcome.definitions_learned,
        "stage1_checkpoints": n_stage1_checkpoints,
        "curve": outcome.curve,
        "scores": run_scores(at_point, after_stage1, two_stage=pipeline != "one-stage"),
        "sizes": {"stage1": len(data.stage1), "stage2": len(data.stage2), "test": len(data.test),
                  **{f"variables_{k}": v for k, v in data.info.get("variables_per_subset", {}).items()}},
        "measurements": {"seconds": seconds,
                         "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
    }


@dataclass(frozen=True)
class RunRequest:
    task: Spec
    learner: Spec
    seed: int
    pipeline: str
    threshold: float = DEFAULT_THRESHOLD

    def identity(self) -> dict[str, Any]:
        protocol = {"version": PROTOCOL_VERSION, "definition_threshold": self.threshold}
        return run_identity(self.task, self.learner, self.seed, self.pipeline, protocol)

    def label(self) -> str:
        return f"{self.learner.name} x {self.task.name} {self.pipeline} seed {self.seed}"


def run_one(request: RunRequest, out_dir: Path, force: bool = False,
            progress: Progress | None = None) -> tuple[dict[str, Any], bool]:
    """Run or load one record. Returns (record, cached). A learner's exception becomes an error
    record (so a rerun retries it); a corrupt record file raises unless `force`."""
    identity = request.identity()
    path = record_path(out_dir, identity)
    if path.exists() and not force:
        record = read_record(path)
        if record["status"] == "ok":
            return record, True
    record: dict[str, Any] = {"key": run_key(identity), **identity, "versions": versions()}
    try:
        record.update(execute(request.task, request.learner, request.seed, request.pipeline,
                              request.threshold, progress))
        record["status"], record["error"] = "ok", None
    except ImlbenchError:
        raise
    except Exception as exc:
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        record.update(status="error", error=message)
    write_record(path, record)
    return record, False

