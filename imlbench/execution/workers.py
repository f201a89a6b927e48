"""Workers: a run, and everything its learner starts, lives and dies under one supervisor.

A worker is a fresh Python (started with `subprocess`, so it also works inside daemonic dask workers)
that imports imlbench, the grid's built-in learners and heavy libraries, then executes one run at a
time: it forks the run's harness process, and the learner's process when the harness asks for it
(`processes.Supervisor`), and owns the run's time limit, memory limit and process tree. The local
engine is a pool of workers (`run_pool`); a dask or Slurm job with a time limit is one (`run_job`).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from imlbench.core.errors import ImlbenchError
from imlbench.harness import processes, remote
from imlbench.harness.runner import failure_record, run_one
from imlbench.store.records import environment

PROGRESS_EVERY = 0.2  # seconds between a run's progress messages (a stage change is sent at once)
GRACE = 10.0  # seconds a harness may take past its run's time limit to record it before it is killed

Finish = Callable[[Any, dict[str, Any]], None]
OnProgress = Callable[[Any, str, int, str], None]


@dataclass(frozen=True)
class Execution:
    """How the runs of a grid execute: where records go, whether finished ones run again, the time
    limit (seconds; 0 = none; None = each learner spec's own `timeout`) and the memory limit of each
    run's learner (bytes; None = none)."""

    out: str
    force: bool = False
    timeout: float | None = None
    memory: int | None = None

    def limit(self, request: Any) -> float | None:
        return (float(self.timeout) or None) if self.timeout is not None else request.learner.timeout


def job_outcome(request: Any, execution: Execution, progress=None) -> dict[str, Any]:
    """One run in this process (its learner in a process of its own). Returns {"record", "cached"}
    or {"problem"} (a corrupt record, an unwritable folder)."""
    try:
        record, cached = run_one(request, Path(execution.out), execution.force, progress, execution.memory)
    except ImlbenchError as exc:
        return {"problem": str(exc)}
    except OSError as exc:
        return {"problem": f"{request.label()}: cannot write its record: {exc}"}
    return {"record": record, "cached": cached}


# --------------------------------------------------------------------------------------------
# the worker side


def serve(fd: int, modules: list[str]) -> None:
    environment()  # what every record says of the machine (torch's CPU capability: seconds), found once
    _Worker(Connection(fd), remote.serve_learner).serve(modules)


class _Worker(processes.Supervisor):
    """A supervisor that also runs requests ("run", request, execution) from the driver, sending
    ("progress", stage, checkpoint, detail) and ("done", outcome) back."""

    run: tuple | None = None  # (request, execution, started, connection to its harness)
    where: tuple = ("starting", 0)

    def handle(self, client: Connection, message: tuple) -> None:
        if message[0] == "run":
            self.start_run(*message[1:])
        elif message[0] == "progress":
            self.where = message[1:3]
            self.clients[0].send(message)
        elif message[0] == "done":
            self.end_run(message[1])
        else:
            super().handle(client, message)

    def start_run(self, request: Any, execution: Execution) -> None:
        ours, theirs = socket.socketpair()
        if (pid := os.fork()) == 0:  # the run's harness process; this worker forks its learner
            try:
                self.child(theirs.fileno())
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                conn, last = Connection(theirs.detach()), ["", 0.0]
                remote.use_host(remote.Host(conn, None, execution.limit(request), execution.memory))

                def progress(stage: str, checkpoint: int, detail: str) -> None:  # a stage change at once
                    if stage != last[0] or time.monotonic() - last[1] >= PROGRESS_EVERY:
                        conn.send(("progress", stage, checkpoint, detail))
                        last[:] = [stage, time.monotonic()]

                conn.send(("done", job_outcome(request, execution, progress)))
            finally:
                os._exit(0)
        self.spare, self.where = pid, ("starting", 0)
        self.run = (request, execution, time.monotonic(), Connection(ours.detach()))
        self.clients.append(self.run[3])

    def lost(self, client: Connection) -> None:
        super().lost(client)
        if self.run and client is self.run[3]:  # the harness ended without an outcome
            self.end_learner()
            status = processes.EXITED[self.spare] if self.spare in processes.EXITED else os.waitpid(self.spare, 0)[1]
            self.fail(f"the worker process died ({processes.how(os.waitstatus_to_exitcode(status))})")

    def check(self) -> None:
        super().check()
        limit = self.run and self.run[1].limit(self.run[0])
        if limit and time.monotonic() - self.run[2] > limit + GRACE:
            self.fail(f"timed out after {limit:g} s")

    def fail(self, why: str) -> None:
        request, execution, started, _ = self.run
        what = f"{why} at stage {self.where[0]}, checkpoint {self.where[1]}"
        try:
            record = failure_record(request, Path(execution.out), what, seconds=time.monotonic() - started)
        except OSError as exc:
            return self.end_run({"problem": f"{request.label()}: {why}; cannot write its record: {exc}"})
        self.end_run({"record": record, "cached": False})

    def end_run(self, outcome: dict[str, Any]) -> None:
        """Kill everything the run left (its harness included), then report its outcome."""
        processes.kill_tree(os.getpid())
        processes.reap()
        processes.EXITED.clear()
        self.release()
        if self.run[3] in self.clients:
            self.clients.remove(self.run[3])
        self.run[3].close()
        self.run = self.spare = None
        self.clients[0].send(("done", outcome))


# --------------------------------------------------------------------------------------------
# the driver side


class _Handle:
    """A worker process as the driver sees it, and the request it holds."""

    def __init__(self) -> None:
        self.proc, self.conn = remote.start_worker(__name__)
        self.ready, self.request = False, None

    def stop(self, kill: bool) -> None:
        """Close its socket (an idle worker exits); with `kill`, SIGTERM it (it kills its run first)."""
        if kill and self.proc.poll() is None:
            self.proc.terminate()
        self.conn.close()
        try:
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - a worker that does not go: stop it and kill its tree here
            os.kill(self.proc.pid, signal.SIGSTOP)
            processes.kill_tree(self.proc.pid)
            self.proc.kill()
            self.proc.wait()


def run_pool(requests: list, execution: Execution, size: int, finish: Finish, on_progress: OnProgress | None = None):
    """Run the requests on `size` workers, calling finish(request, outcome) for each; a run whose
    worker died (not its learner: a worker runs no plugin code) is reported, and a new worker takes
    its place."""
    queue = deque(requests)
    workers = [_Handle() for _ in range(min(size, len(queue)))]
    clean = False
    try:
        while queue or any(w.request is not None for w in workers):
            for worker in workers:
                if worker.ready and worker.request is None and queue:
                    worker.request = queue.popleft()
                    worker.conn.send(("run", worker.request, execution))
            ready = wait([w.conn for w in workers])
            for worker in [w for w in workers if w.conn in ready]:
                if not _read(worker, finish, on_progress):
                    workers.remove(worker)
                    if queue:
                        workers.append(_Handle())
        clean = True
    finally:
        for worker in workers:
            worker.stop(kill=not clean)


def _read(worker: _Handle, finish: Finish, on_progress: OnProgress | None) -> bool:
    """Apply a worker's next message; False when it is gone."""
    try:
        message = worker.conn.recv()
    except (EOFError, OSError):
        how = processes.how(worker.proc.wait())
        if worker.request is None and not worker.ready:
            raise ImlbenchError(f"a worker process failed to start ({how}); its error is printed above") from None
        if worker.request is not None:  # its run is retried by a rerun
            finish(worker.request, {"problem": f"{worker.request.label()}: the worker process died ({how})"})
        worker.stop(kill=True)
        return False
    if message[0] == "ready":
        worker.ready = True
    elif message[0] == "progress" and on_progress:
        on_progress(worker.request, *message[1:])
    elif message[0] == "done":
        request, worker.request = worker.request, None
        finish(request, message[1])
    return True


def run_job(request: Any, execution: Execution) -> dict[str, Any]:
    """One run as a picklable job for any engine. Returns {"record", "cached"} or {"problem"}.
    With a time limit the run executes in a worker of the job's."""
    if execution.limit(request) is None:
        return job_outcome(request, execution)
    outcomes: list[dict[str, Any]] = []
    run_pool([request], execution, 1, lambda _, outcome: outcomes.append(outcome))
    return outcomes[0]
