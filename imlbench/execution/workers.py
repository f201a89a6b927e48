"""Supervised worker processes: a run that hangs, exits its process or crashes it costs only itself.

Each worker is a fresh Python started with `subprocess` (so it also works inside daemonic dask
workers) that runs one request at a time, sent over a pipe, and reports its stage and checkpoint
back. The supervisor knows which request every worker holds, so it can stop a run at its time limit
or notice its worker died, write that run's error record, start a replacement worker and carry on;
no other run is touched. Workers ignore SIGINT (Ctrl-C is the driver's to handle: it kills them) and
exit on their own when their parent dies, so killing the driver leaves nothing running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing import Pipe
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from imlbench.core.errors import ImlbenchError
from imlbench.harness import processes, remote
from imlbench.harness.runner import RunRequest, failure_record, run_one

# the parent watch starts before the (slow) imports: a supervisor may die while they run
BOOT = (
    "import json, os, sys, threading, time; sys.path[:] = json.loads(sys.argv[1]); "
    "threading.Thread(target=lambda: [time.sleep(0.5) or os.getppid() == int(sys.argv[3]) or os._exit(1) "
    "for _ in iter(int, 1)], daemon=True).start(); "
    "from imlbench.execution.workers import serve; serve(int(sys.argv[2]), int(sys.argv[3]))"
)
PROGRESS_EVERY = 0.2  # seconds between a worker's progress messages (a stage change is sent at once)
PARENT_CHECK = 0.5  # seconds between a worker's checks that its parent is alive

Finish = Callable[[RunRequest, dict[str, Any]], None]
OnProgress = Callable[[RunRequest, str, int, str], None]


def job_outcome(
    request: RunRequest, out: str, force: bool, progress=None, memory_limit: int | None = None
) -> dict[str, Any]:
    """One run. Returns {"record", "cached"} or {"problem"} (a corrupt record, an unwritable folder)."""
    try:
        record, cached = run_one(request, Path(out), force=force, progress=progress, memory_limit=memory_limit)
    except ImlbenchError as exc:
        return {"problem": str(exc)}
    except OSError as exc:
        return {"problem": f"{request.label()}: cannot write its record: {exc}"}
    return {"record": record, "cached": cached}


# --------------------------------------------------------------------------------------------
# the worker side


def serve(fd: int, parent: int | None = None) -> None:
    """A worker's loop: receive (request, out, force, memory limit), run it, send the outcome; exit
    on EOF. It names each learner process group it starts, for the supervisor to kill at a limit.
    `parent`: the supervisor's pid (it may die while this worker still imports)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    _exit_with_parent(os.getppid() if parent is None else parent)
    remote.announce = lambda pgid: conn.send(("learner", pgid))
    try:
        processes.warm_up()  # before "ready": no run's time limit pays for the fork server's imports
        conn.send(("ready",))
        while True:
            request, out, force, memory_limit = conn.recv()
            conn.send(("done", job_outcome(request, out, force, _Reporter(conn), memory_limit)))
    except (EOFError, OSError):  # the supervisor closed the pipe or is gone: nothing left to do
        return


class _Reporter:
    """Sends (stage, checkpoint) to the supervisor, at most every PROGRESS_EVERY seconds per stage."""

    def __init__(self, conn: Connection):
        self.conn, self.stage, self.sent = conn, None, 0.0

    def __call__(self, stage: str, checkpoint: int, detail: str) -> None:
        now = time.monotonic()
        if stage != self.stage or now - self.sent >= PROGRESS_EVERY:
            self.conn.send(("progress", stage, checkpoint, detail))
            self.stage, self.sent = stage, now


def _exit_with_parent(parent: int) -> None:
    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="imlbench-parent-watch").start()


# --------------------------------------------------------------------------------------------
# the supervisor side


class _Worker:
    """A worker process, the request it holds, since when, and the last place it reported."""

    def __init__(self) -> None:
        self.conn, child = Pipe()
        path = json.dumps([str(p) for p in sys.path])  # plugins importable here are importable there
        self.proc = subprocess.Popen(
            [sys.executable, "-c", BOOT, path, str(child.fileno()), str(os.getpid())], pass_fds=[child.fileno()]
        )
        child.close()
        self.ready = False
        self.job: tuple[RunRequest, float | None] | None = None
        self.started = 0.0
        self.where: tuple[str, int] = ("starting", 0)
        self.learners: set[int] = set()  # process groups of the current run's learner

    def start(self, job: tuple[RunRequest, float | None], out: str, force: bool, memory_limit: int | None) -> None:
        self.conn.send((job[0], out, force, memory_limit))
        self.job, self.started, self.where = job, time.monotonic(), ("starting", 0)

    def overdue(self, now: float) -> bool:
        return self.job is not None and self.job[1] is not None and now - self.started > self.job[1]

    def messages(self) -> list[tuple]:
        """Everything the worker sent so far; ("died",) last when its pipe closed."""
        found = []
        try:
            while self.conn.poll():
                found.append(self.conn.recv())
        except (EOFError, OSError):
            found.append(("died",))
        return found

    def kill(self) -> None:
        """Kill the process and its learner's group; its pipe stays open so what it sent before dying
        can still be read."""
        self.proc.kill()
        self.proc.wait()
        self.kill_learners()

    def kill_learners(self) -> None:
        for pgid in self.learners:
            processes.kill_group(pgid)
        self.learners.clear()

    def stop(self, kill: bool) -> None:
        if kill:
            self.proc.kill()
            self.kill_learners()
        self.conn.close()  # an idle worker exits on EOF
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def exit_status(self) -> str:
        code = self.proc.wait()
        if code < 0:
            return f"killed by signal {signal.Signals(-code).name}"
        return f"exit status {code}"


def run_supervised(
    jobs: list[tuple[RunRequest, float | None]],
    out: str,
    force: bool,
    size: int,
    finish: Finish,
    on_progress: OnProgress | None = None,
    memory_limit: int | None = None,
) -> None:
    """Run (request, time limit or None) jobs on `size` workers, calling finish(request, outcome)
    for each; a job past its limit or whose worker died gets an error record naming where it was."""
    queue = deque(jobs)
    workers = [_Worker() for _ in range(min(size, len(queue)))]
    clean = False
    try:
        while queue or any(w.job for w in workers):
            for worker in workers:
                if worker.ready and worker.job is None and queue:
                    worker.start(queue.popleft(), out, force, memory_limit)
            wait([w.conn for w in workers], timeout=_next_deadline(workers))
            alive = []
            for worker in workers:
                if not _attend(worker, out, finish, on_progress):
                    alive.append(worker)
                elif queue:  # replace a worker that died or was stopped
                    alive.append(_Worker())
            workers = alive
        clean = True
    finally:
        for worker in workers:
            worker.stop(kill=not clean)


def _next_deadline(workers: list[_Worker]) -> float:
    now = time.monotonic()
    left = [w.started + w.job[1] - now for w in workers if w.job is not None and w.job[1] is not None]
    return max(0.0, min(left + [1.0]))


def _attend(worker: _Worker, out: str, finish: Finish, on_progress: OnProgress | None) -> bool:
    """Handle a worker's messages and its time limit. Returns True when the worker is gone."""
    if not _read(worker, worker.messages(), finish, on_progress):
        if worker.job is not None:
            _record_failure(worker, out, finish, f"the worker process died ({worker.exit_status()})")
        elif not worker.ready:
            raise ImlbenchError(
                f"a worker process failed to start ({worker.exit_status()}); its error is printed above"
            )
        worker.stop(kill=True)
        return True
    if worker.overdue(time.monotonic()):
        worker.kill()
        _read(worker, worker.messages(), finish, on_progress)  # it may have finished meanwhile
        if worker.job is not None:
            _record_failure(worker, out, finish, f"timed out after {worker.job[1]:g} s")
        worker.stop(kill=True)
        return True
    return False


def _read(worker: _Worker, messages: list[tuple], finish: Finish, on_progress: OnProgress | None) -> bool:
    """Apply a worker's messages; False when its pipe closed (the process is gone)."""
    for message in messages:
        if message[0] == "ready":
            worker.ready = True
        elif message[0] == "learner":
            worker.learners.add(message[1])
        elif message[0] == "progress" and worker.job is not None:
            worker.where = (message[1], message[2])
            if on_progress:
                on_progress(worker.job[0], *message[1:])
        elif message[0] == "done" and worker.job is not None:
            request, worker.job = worker.job[0], None
            worker.learners.clear()  # the worker ended its learner's group itself
            finish(request, message[1])
        elif message[0] == "died":
            return False
    return True


def _record_failure(worker: _Worker, out: str, finish: Finish, what: str) -> None:
    request, worker.job = worker.job[0], None
    stage, checkpoint = worker.where
    try:
        record = failure_record(
            request,
            Path(out),
            f"{what} at stage {stage}, checkpoint {checkpoint}",
            seconds=time.monotonic() - worker.started,
        )
    except OSError as exc:
        finish(request, {"problem": f"{request.label()}: {what}; cannot write its record: {exc}"})
        return
    finish(request, {"record": record, "cached": False})


def run_limited(
    request: RunRequest, out: str, force: bool, limit: float | None, memory_limit: int | None = None
) -> dict[str, Any]:
    """One run in its own supervised worker: how an engine job (dask, Slurm) enforces a time limit."""
    outcomes: list[dict[str, Any]] = []
    run_supervised(
        [(request, limit)], out, force, 1, lambda _, outcome: outcomes.append(outcome), memory_limit=memory_limit
    )
    return outcomes[0]
