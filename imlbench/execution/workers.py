"""Workers: a run, and everything its learner starts, lives and dies under one supervisor.

A worker is a fresh Python that executes one run at a time (`imlbench.execution.supervisor`). Every
run takes this one path: the local engine is a pool of workers (`run_pool`, at any --jobs), and a
dask or Slurm job is one (`run_job`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import wait
from typing import Any

from imlbench.core.errors import ImlbenchError
from imlbench.harness import processes

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


# a worker (`imlbench.execution.supervisor`): its parent's death (PR_SET_PDEATHSIG) is checked before the slow imports
BOOT = (
    "import ctypes, importlib, json, os, sys; getattr(ctypes.CDLL(None), 'prctl', min)(1, 15, 0, 0, 0); "
    "os.getppid() == int(sys.argv[3]) or sys.exit(1); sys.path[:] = json.loads(sys.argv[1]); "
    "importlib.import_module('imlbench.execution.supervisor').serve(int(sys.argv[2]), sys.argv[4].split(','))"
)


class _Handle:
    """A worker process as the driver sees it, and the request it holds."""

    def __init__(self) -> None:
        """A fresh Python serving `serve(fd, PRELOAD)` on a socket to this process, dying with it (with
        the thread that starts it), with this process's import path, environment and folder."""
        self.started_as, (self.conn, child) = _as_now(), Pipe()
        argv = [json.dumps(sys.path), str(child.fileno()), str(os.getpid()), ",".join(processes.PRELOAD)]
        self.proc = subprocess.Popen([sys.executable, "-c", BOOT, *argv], pass_fds=[child.fileno()])
        child.close()
        self.ready, self.request = False, None

    def stop(self) -> None:
        """SIGTERM it (it kills its run first) and close its socket."""
        if self.proc.poll() is None:
            self.proc.terminate()
        self.conn.close()
        try:
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - a worker that does not go: stop it and kill its tree here
            os.kill(self.proc.pid, signal.SIGSTOP)
            processes.kill_tree(self.proc.pid)
            self.proc.kill()
            self.proc.wait()


_kept = threading.local()  # each thread's idle workers, for its next grid (a worker starts in seconds)


def _as_now() -> tuple:
    """What a worker runs with and was imported under: a kept one serves a grid only while all is as
    it was (but pytest's name of the current test, which changes with every test and nothing else)."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    return list(sys.path), environ, os.getcwd(), list(processes.PRELOAD)


def _workers(n: int) -> list[_Handle]:
    """`n` workers: this thread's idle ones that are alive and started as things are now, then new ones."""
    idle, now = getattr(_kept, "idle", []), _as_now()
    kept = [w for w in idle if w.proc.poll() is None and w.started_as == now][:n]
    for worker in [w for w in idle if w not in kept]:
        worker.stop()
    _kept.idle = []
    return kept + [_Handle() for _ in range(n - len(kept))]


def run_pool(requests: list, execution: Execution, size: int, finish: Finish, on_progress: OnProgress | None = None):
    """Run the requests on `size` workers, calling finish(request, outcome) for each; a run whose
    worker died (not its learner: a worker runs no plugin code) is reported, and a new worker takes
    its place. The thread keeps its workers for its next grid."""
    queue = deque(requests)
    workers = _workers(min(size, len(queue)))
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
        if clean:
            _kept.idle = workers
        else:
            for worker in workers:
                worker.stop()


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
        worker.stop()
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
    """One run as a picklable job for any engine, executed by a worker of the job's. Returns
    {"record", "cached"} or {"problem"}."""
    outcomes: list[dict[str, Any]] = []
    run_pool([request], execution, 1, lambda _, outcome: outcomes.append(outcome))
    return outcomes[0]
