"""Running the protocol: stages, the evaluation point, records, resume.

The harness owns the answer key. A learner receives view data and target-free queries; the
`Evaluator` (never handed to the learner) scores its predictions between checkpoint yields.
"""

from __future__ import annotations

import resource
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imlbench.harness.evaluation import Evaluator
from imlbench.core.protocol import DEFAULT_THRESHOLD, PROTOCOL_VERSION, Learner, Task
from imlbench.store.records import environment, read_record, record_path, run_identity, run_key, versions, write_record
from imlbench.core.errors import ImlbenchError
from imlbench.core.registry import Spec
from imlbench.scoring.verdicts import run_scores
from imlbench.core import seeds
from imlbench.views.base import get_view
from imlbench.harness.pipelines import PIPELINES, Pipeline, continue_as_stage1, get_pipeline
# progress(stage, checkpoint, detail): where a run is ("data", "stage1", "stage2", "single",
# "final evaluation") and how many checkpoints of that stage have passed; a time limit names it
Progress = Callable[[str, int, str], None]


def choose_view(learner: Learner, task: Task, learner_name: str, task_name: str) -> str:
    """The first view the learner reads that the task offers (for a tag-blind learner: one that
    keeps the tag apart, so that it can be hidden)."""
    offered = task.views
    if learner.hides_tags:
        offered = tuple(v for v in task.views if task.separable_tags and get_view(v).tagged)
    for view in learner.supported_views():
        if view in offered:
            return view
    raise ImlbenchError(f"learner {learner_name!r} reads views {', '.join(learner.supported_views())} "
                        f"but task {task_name!r} offers {', '.join(offered) or 'none it can use'}")


def check_pipeline(learner: Learner, learner_name: str, pipeline: str | Pipeline) -> None:
    get_pipeline(pipeline).check(learner, learner_name)


def seed_learner(learner: Learner, seed: int) -> None:
    """The learner's own randomness from the run seed's learner stream."""
    if "random_state" in learner.get_params():
        learner.set_params(random_state=seeds.derive_seed(seed, seeds.LEARNER))


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
                progress(stage, checkpoint, f"definitions {min(defs.values()):.3f}")
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


def prepare(task_spec: Spec, learner_spec: Spec, seed: int, pipeline: Pipeline) -> tuple[Task, Learner, str]:
    """The task and learner of a run, each built and validated once, and the view the learner reads."""
    task, learner = task_spec.build(), learner_spec.build()
    view = choose_view(learner, task, learner_spec.name, task_spec.name)
    pipeline.check(learner, learner_spec.name)
    seed_learner(learner, seed)
    return task, learner, view


def train_stage1(pipeline: Pipeline, learner: Learner, task: Task, view: str, data: Any,
                 seconds: dict[str, float], progress: Progress) -> int:
    """Stage 1 as the pipeline splits it, to its end; returns its checkpoint count."""
    count = 0
    for i, part in enumerate(pipeline.stage1_parts(data.stage1)):
        encoded = task.encode(get_view(view), data, part, "stage1")
        progress("stage1", count, "fitting")
        fit = learner.fit(encoded) if i == 0 else continue_as_stage1(learner, encoded)
        count += exhaust(timed(fit, seconds), "stage1", progress)
    return count


def execute(task_spec: Spec, learner_spec: Spec, seed: int, pipeline: str | Pipeline, threshold: float,
            progress: Progress | None = None) -> dict[str, Any]:
    """Run one (task, learner, seed, pipeline); return the result part of its record."""
    progress = progress or _quiet
    pipeline = get_pipeline(pipeline)
    progress("data", 0, "building the task and learner")
    task, learner, view = prepare(task_spec, learner_spec, seed, pipeline)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    data = task.generate(seed)
    evaluator = Evaluator(task, data, view)
    seconds["data"] = time.perf_counter() - t0

    if pipeline.separate_stage2:
        t = time.perf_counter()
        n_stage1_checkpoints = train_stage1(pipeline, learner, task, view, data, seconds, progress)
        seconds["stage1"] = time.perf_counter() - t
        after_stage1 = evaluator.test(learner)
        train_after_stage1 = evaluator.train(learner)
        start = [{"stage": "stage2", "checkpoint": 0, "definitions": evaluator.definitions(learner),
                  "accuracy": after_stage1}]
        t = time.perf_counter()
        stage2 = task.encode(get_view(view), data, data.stage2, "stage2")
        progress("stage2", 0, "fitting")
        outcome = fit_until_point(timed(learner.continue_fit(stage2), seconds), learner, evaluator, "stage2",
                                  threshold, progress, start)
        seconds["stage2"] = time.perf_counter() - t
    else:
        t = time.perf_counter()
        progress("single", 0, "fitting")
        single = task.encode(get_view(view), data, pipeline.single_fit(data, seed), "stage1")
        outcome = fit_until_point(timed(learner.fit(single), seconds), learner, evaluator, "single", threshold,
                                  progress)
        seconds["stage1"] = time.perf_counter() - t
        n_stage1_checkpoints = len(outcome.curve)
        after_stage1, train_after_stage1 = outcome.point["accuracy"], None
    t = time.perf_counter()
    progress("final evaluation", 0, "")
    train_at_point = evaluator.train(learner) if outcome.point is outcome.curve[-1] else None
    seconds["final_eval"] = time.perf_counter() - t
    seconds["evaluation"] = evaluator.seconds
    seconds["total"] = time.perf_counter() - t0
    at_point = outcome.point["accuracy"]
    return {
        "view": view,
        # what the learner says it ran (e.g. a language model's name, revision and library versions)
        "learner_info": getattr(learner, "run_info_", None),
        "accuracy": at_point,
        "accuracy_after_stage1": after_stage1,
        "definition_accuracy": outcome.point["definitions"],
        "train_accuracy": {"after_stage1": train_after_stage1, "at_point": train_at_point},
        "evaluation_point": {"stage": outcome.point["stage"], "checkpoint": outcome.point["checkpoint"]},
        "definitions_learned": outcome.definitions_learned,
        "stage1_checkpoints": n_stage1_checkpoints,
        "curve": outcome.curve,
        "scores": run_scores(at_point, after_stage1, two_stage=pipeline.separate_stage2),
        "sizes": {"stage1": len(data.stage1), "stage2": len(data.stage2), "test": len(data.test),
                  **{f"variables_{k}": v for k, v in data.info.get("variables_per_subset", {}).items()}},
        "measurements": {"seconds": seconds,
                         "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
    }


@dataclass(frozen=True)
class RunRequest:
    """One (task, learner, seed, pipeline). The harness runs anything with this interface
    (`identity`, `path`, `label`, `summary`, `execute`, and `learner` for its time limit): a
    diagnostic's request too."""

    task: Spec
    learner: Spec
    seed: int
    pipeline: str
    threshold: float = DEFAULT_THRESHOLD

    def identity(self) -> dict[str, Any]:
        protocol = {"version": PROTOCOL_VERSION, "definition_threshold": self.threshold}
        return run_identity(self.task, self.learner, self.seed, self.pipeline, protocol)

    def path(self, out_dir: Path) -> Path:
        return record_path(out_dir, self.identity())

    def label(self) -> str:
        return f"{self.learner.name} x {self.task.name} {self.pipeline} seed {self.seed}"

    def summary(self, record: dict[str, Any]) -> str:
        return f"effect {record['scores']['iml_effect']:+.1f}"

    def execute(self, progress: Progress | None = None) -> dict[str, Any]:
        return execute(self.task, self.learner, self.seed, self.pipeline, self.threshold, progress)


def cached_record(request: RunRequest, out_dir: Path) -> dict[str, Any] | None:
    """The finished record of a request, or None when it must run (no record, or an error record,
    which a rerun retries). An unreadable record file raises ImlbenchError."""
    path = request.path(out_dir)
    if not path.exists():
        return None
    record = read_record(path)
    return record if record["status"] == "ok" else None


def new_record(request: RunRequest, fields: dict[str, Any]) -> dict[str, Any]:
    """A record: the request's identity and key, what ran it, then `fields` (result or error)."""
    identity = request.identity()
    return {"key": run_key(identity), **identity, "versions": versions(), "environment": environment(), **fields}


def failure_record(request: RunRequest, out_dir: Path, error: str, trace: str | None = None,
                   seconds: float | None = None) -> dict[str, Any]:
    """Write and return the error record of a run that did not finish (a rerun retries it)."""
    record = new_record(request, {"status": "error", "error": " ".join(error.split()), "traceback": trace})
    if seconds is not None:
        record["measurements"] = {"seconds": {"total": seconds}}
    write_record(request.path(out_dir), record)
    return record


@contextmanager
def sigint_watch() -> Iterator[dict[str, bool]]:
    """Tells a real Ctrl-C from a KeyboardInterrupt a learner raised itself: while a run executes in
    the main thread, SIGINT marks `state["real"]` before the usual handler raises. A real SIGINT never
    raises in another thread, and where SIGINT is ignored (supervised workers) none can arrive."""
    state = {"real": False}
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield state
        return

    def mark(signum, frame):
        state["real"] = True
        previous(signum, frame)

    signal.signal(signal.SIGINT, mark)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)


def run_one(request: RunRequest, out_dir: Path, force: bool = False,
            progress: Progress | None = None) -> tuple[dict[str, Any], bool]:
    """Run or load one record. Returns (record, cached). Anything a learner raises, SystemExit and
    its own KeyboardInterrupt included, becomes an error record with its traceback (a rerun retries
    it); only a real Ctrl-C propagates. A corrupt record file raises unless `force`."""
    if not force:
        record = cached_record(request, out_dir)
        if record is not None:
            return record, True
    with sigint_watch() as interrupt:
        try:
            result = request.execute(progress)
        except ImlbenchError:
            raise
        except BaseException as exc:  # noqa: BLE001 - one learner must never take down the grid
            if isinstance(exc, KeyboardInterrupt) and interrupt["real"]:
                raise
            return failure_record(request, out_dir, f"{type(exc).__name__}: {exc}",
                                  "".join(traceback.format_exception(exc))), False
    record = new_record(request, {**result, "status": "ok", "error": None})
    write_record(request.path(out_dir), record)
    return record, False
