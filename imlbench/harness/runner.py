"""Runs as records: a request's identity and key, run or load, error records, resume.

A request (`RunRequest`, or a diagnostic's `DiagnoseRequest`) says what to compute; `stages.execute`
computes a run with the learner in its own process; this module turns either into a record on disk,
whatever the learner does.
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imlbench.core.errors import ImlbenchError
from imlbench.core.protocol import DEFAULT_THRESHOLD, PROTOCOL_VERSION
from imlbench.core.specs import Spec
from imlbench.harness import remote
from imlbench.harness.processes import LearnerDied
from imlbench.harness.stages import Progress, execute
from imlbench.store.claims import claimed
from imlbench.store.records import environment, read_record, record_path, run_identity, run_key, versions, write_record


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
    full_budget: bool = False  # run the scored fit to its declared end, past its reading window
    sealed: bool = False  # task and random_state drawn with entropy held back from the learner
    entropy: str | None = None  # a sealed run's entropy, given to replay one (`imlbench verify`)

    def identity(self) -> dict[str, Any]:
        protocol = {"version": PROTOCOL_VERSION, "definition_threshold": self.threshold}
        if self.full_budget:  # in the identity only when set: a default run's key means what it did
            protocol["full_budget"] = True
        if self.sealed:
            protocol["sealed"] = True
        return run_identity(self.task, self.learner, self.seed, self.pipeline, protocol)

    def path(self, out_dir: Path) -> Path:
        return record_path(out_dir, self.identity())

    def label(self) -> str:
        full = " (full budget)" if self.full_budget else ""
        sealed = " (sealed)" if self.sealed else ""
        return f"{self.learner.name} x {self.task.name} {self.pipeline} seed {self.seed}{full}{sealed}"

    def summary(self, record: dict[str, Any]) -> str:
        return f"effect {record['scores']['iml_effect']:+.1f}"

    def execute(self, progress: Progress | None = None) -> dict[str, Any]:
        return execute(
            self.task,
            self.learner,
            self.seed,
            self.pipeline,
            self.threshold,
            progress,
            full_budget=self.full_budget,
            sealed=self.sealed,
            entropy=self.entropy,
        )


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


def failure_record(
    request: RunRequest, out_dir: Path, error: str, trace: str | None = None, seconds: float | None = None
) -> dict[str, Any]:
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


def run_one(
    request: RunRequest,
    out_dir: Path,
    force: bool = False,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], bool]:
    """Run or load one record. Returns (record, cached). Anything a learner raises, SystemExit and
    its own KeyboardInterrupt included, becomes an error record with its traceback (a rerun retries
    it); only a real Ctrl-C propagates. A corrupt record file raises unless `force`."""
    if not force:
        record = cached_record(request, out_dir)
        if record is not None:
            return record, True
    waiting = (
        (lambda owner: progress("waiting", 0, f"another process (pid {owner.get('pid')}) runs it"))
        if progress
        else None
    )
    with claimed(request.path(out_dir), waiting) as waited:  # another `imlbench run` may hold it
        record = cached_record(request, out_dir) if waited else None
        return (record, True) if record is not None else _run_claimed(request, out_dir, progress)


def run_outcome(request: RunRequest, execution: Any, progress: Progress | None = None) -> dict[str, Any]:
    """`run_one` as a worker reports it: {"record", "cached"}, or {"problem"} where no record can be
    had (a corrupt record, an unwritable folder). `execution`: its `out` and `force`."""
    try:
        record, cached = run_one(request, Path(execution.out), execution.force, progress)
    except ImlbenchError as exc:
        return {"problem": str(exc)}
    except OSError as exc:
        return {"problem": f"{request.label()}: cannot write its record: {exc}"}
    return {"record": record, "cached": cached}


def serve_harness(conn: Any) -> None:
    """A run's harness process (forked ahead by its worker, `imlbench.execution.supervisor`): wait for
    the run's request, run it, send the outcome; its learner comes from the worker (`remote.HOST`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    remote.HOST = conn
    try:
        request, execution = conn.recv()
    except EOFError:  # the worker went before it had a run for it
        return
    conn.send(("done", run_outcome(request, execution, lambda *where: conn.send(("progress", *where)))))


def _run_claimed(request: RunRequest, out_dir: Path, progress: Progress | None) -> tuple[dict[str, Any], bool]:
    """Execute a claimed run and write its record (an ImlbenchError a learner raises included). A
    learner process that died gets an error record naming the stage and checkpoint it reached; a
    learner's exception keeps the traceback from the learner's process."""
    where, start = ["data", 0], time.monotonic()

    def track(stage: str, checkpoint: int, detail: str) -> None:
        where[:] = [stage, checkpoint]
        if progress:
            progress(stage, checkpoint, detail)

    with sigint_watch() as interrupt:
        try:
            result = request.execute(track)
        except LearnerDied as exc:
            return failure_record(
                request, out_dir, f"{exc} at stage {where[0]}, checkpoint {where[1]}", seconds=time.monotonic() - start
            ), False
        except BaseException as exc:  # noqa: BLE001 - one learner must never take down the grid
            if isinstance(exc, KeyboardInterrupt) and interrupt["real"]:
                raise
            trace = getattr(exc, "learner_traceback", None) or "".join(traceback.format_exception(exc))
            return failure_record(request, out_dir, f"{type(exc).__name__}: {exc}", trace), False
    record = new_record(request, {**result, "status": "ok", "error": None})
    write_record(request.path(out_dir), record)
    return record, False
