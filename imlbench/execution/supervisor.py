"""The supervisor: a worker process that executes one run at a time and owns everything it starts.

A worker is a fresh Python (started by `imlbench.execution.workers`; with `subprocess`, so it also
works inside daemonic dask workers) that imports imlbench, the grid's built-in learners and heavy
libraries, then serves the driver's runs: it forks each run's harness process and its learner's
process (handed to the harness when it asks), and owns the run's time limit, memory limit and
process tree. It runs with the driver's import path, environment and folder as they were when it
started; the driver reuses it only while they are unchanged.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import shutil
import signal
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import send_handle
from pathlib import Path
from typing import Any

from imlbench.core.registry import PIPELINES, TASKS, VIEWS
from imlbench.harness import remote
from imlbench.harness.probe import module_of
from imlbench.harness.processes import EXITED, descendants, exceeded, how, kill_tree, reap, tree_memory
from imlbench.harness.runner import failure_record, run_outcome
from imlbench.harness.sandbox import PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE, PR_SET_PDEATHSIG, MemoryCgroup, prctl
from imlbench.store.records import environment, versions

PROGRESS_EVERY = 0.2  # seconds between a run's progress messages to the driver (a stage change at once)
GRACE = 10.0  # seconds a harness may take past its run's time limit to record it before it is killed
MEMORY_POLL = 0.1  # seconds between two measurements of a run's memory


def serve(fd: int, modules: list[str]) -> None:
    """A worker: import what runs will need, then run the driver's requests until it goes."""
    environment(), versions()  # what every record says of machine and code (torch's CPU capability, git), found once
    worker = Supervisor(Connection(fd))
    for module in filter(None, modules):
        with contextlib.suppress(Exception):  # a learner that needs a missing library fails in its run
            importlib.import_module(module)
    for registry in (TASKS, VIEWS, PIPELINES):  # imlbench's own, found here once rather than in every run
        for name in filter(lambda name: module_of(name, registry), registry.entry_points()):
            with contextlib.suppress(Exception):
                registry.get(name)
    gc.freeze()  # what is imported now stays out of the collector's sight: forked runs do not copy its pages
    try:
        worker.driver.send(("ready",))
        while worker.step():
            pass
    except (BrokenPipeError, ConnectionResetError):  # the driver went (a grid that ended, Ctrl-C)
        pass
    finally:
        kill_tree(os.getpid())
        worker.release()


@dataclass
class _Learner:
    pid: int
    deadline: float | None
    group: MemoryCgroup | None
    private: str  # its TMPDIR
    socket: socket.socket | None  # its end of the connection, until handed to the harness


@dataclass
class _Run:
    request: Any
    execution: Any
    harness: Connection
    pid: int
    started: float = field(default_factory=time.monotonic)
    where: tuple = ("starting", 0)
    told: float = 0.0  # when the driver last heard of its progress


class Supervisor:
    """A clean process that executes one run at a time and owns everything it starts: it forks the
    run's harness and its learner's process (handed to the harness when it asks); it owns the run's time limit,
    its memory limit (over the learner's whole tree, in a memory cgroup where one can be made), every
    process it starts (it is a child subreaper; all are killed when the run ends) and their output
    (a pipe copied to its stderr: no straggler holds the caller's).

    Messages: the driver sends ("run", request, execution) and gets ("progress", stage,
    checkpoint, detail) and ("done", outcome); the harness sends those two, ("learner",) (answered by
    ("learner", pid) and the learner's socket, and ("ended", pid, why) where it ends on its own or at
    a limit) and ("release",). SIGTERM (also sent when the driver dies) kills everything and exits."""

    def __init__(self, driver: Connection):
        self.driver, self.pid = driver, os.getpid()
        self.run: _Run | None = None
        self.measured = 0.0  # when the run's memory was last measured
        self.learner: _Learner | None = None
        self.out_r, self.out_w = os.pipe()
        os.set_blocking(self.out_r, False)
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        prctl(PR_SET_DUMPABLE, 0)  # it forks every harness: a same-user process may not attach to it
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it stops its workers
        signal.signal(signal.SIGTERM, lambda *_: (kill_tree(os.getpid()), self.release(), os._exit(1)))

    def step(self) -> bool:
        """Handle what arrived (messages, output) and check the limits; False when the driver is gone."""
        conns = [self.driver, self.run.harness] if self.run else [self.driver]
        ready = wait([*conns, self.out_r], timeout=MEMORY_POLL if self.run else None)
        self.forward()
        for conn in [c for c in conns if c in ready]:
            try:
                message = conn.recv()
            except (EOFError, OSError):  # the driver went, or the harness ended without an outcome
                if conn is self.driver:
                    return False
                self.end_learner()
                self.fail(f"the worker process died ({how(os.waitstatus_to_exitcode(self.harness_status()))})")
                continue
            try:
                self.handle(message)
            except OSError as exc:  # a fork, a folder or a dead harness: that run fails, the worker goes on
                if self.run is None:
                    raise
                self.fail(f"its worker could not run it: {type(exc).__name__}: {exc}")
        self.check()
        return True

    def handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "run":
            self.start_run(*message[1:])
        elif kind == "progress":  # to the driver: a stage change at once, else one per PROGRESS_EVERY
            if message[1] != self.run.where[0] or time.monotonic() - self.run.told >= PROGRESS_EVERY:
                self.driver.send(message)
                self.run.told = time.monotonic()
            self.run.where = message[1:3]
        elif kind == "done":  # the harness exits once it has sent its outcome
            self.harness_status()
            self.end_run(message[1])
        elif kind == "learner":  # the one forked with the run (if the harness has not had it yet), or a new one
            if self.learner is None or self.learner.socket is None:
                self.end_learner()
                self.start_learner()
            learner = self.learner
            self.run.harness.send(("learner", learner.pid))
            send_handle(self.run.harness, learner.socket.fileno(), learner.pid)
            learner.socket.close()
            learner.socket = None
        elif kind == "release":
            self.end_learner()

    def harness_status(self) -> int:
        """The wait status of the run's harness, which has ended or is ending (collected once)."""
        if self.run.pid not in EXITED:
            EXITED[self.run.pid] = os.waitpid(self.run.pid, 0)[1]
        return EXITED[self.run.pid]

    def child(self, keep: int) -> None:
        """In a process just forked from this one: output to the pipe, every other inherited descriptor
        closed but `keep`, signals as a fresh process has them, and death with this process."""
        os.dup2(self.out_w, 1)
        os.dup2(self.out_w, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.closerange(3, keep)
        os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != self.pid:  # this process's death came first
            os._exit(1)

    def start_run(self, request: Any, execution: Any) -> None:
        ours, theirs = socket.socketpair()
        if (pid := os.fork()) == 0:  # the run's harness process
            try:
                self.child(theirs.fileno())
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                remote.HOST = conn = Connection(theirs.detach())
                conn.send(("done", run_outcome(request, execution, lambda *where: conn.send(("progress", *where)))))
            except BaseException:  # the harness's own error: its traceback goes out with the worker's output
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        self.run = _Run(request, execution, Connection(ours.detach()), pid)
        if not getattr(request, "learner_in_harness", False):
            self.start_learner()  # now rather than when the harness asks: it starts while the harness does

    def start_learner(self) -> None:
        run, ours, theirs = self.run, *socket.socketpair()
        memory, limit = run.execution.memory, run.execution.limit(run.request)
        group = MemoryCgroup.open(memory) if memory else None
        private = tempfile.mkdtemp(prefix="imlbench-learner-")  # its TMPDIR: the one temporary folder it may write
        if (pid := os.fork()) == 0:
            try:
                self.child(theirs.fileno())
                if group is not None:
                    with contextlib.suppress(OSError):
                        group.join()
                os.environ["TMPDIR"], tempfile.tempdir = private, None
                remote.serve_learner(Connection(theirs.detach()))
            finally:
                os._exit(0)
        theirs.close()
        self.learner = _Learner(pid, limit and run.started + limit, group, private, ours)

    def check(self) -> None:
        """End the learner where it died or passed a limit (and tell the harness why), and the run
        where its harness passed the time limit, or held a diagnostic's learner past the memory limit."""
        if self.run is None:
            return
        run, memory, now = self.run, self.run.execution.memory, time.monotonic()
        limit = run.execution.limit(run.request)
        if limit and now - run.started > limit + GRACE:
            return self.fail(f"timed out after {limit:g} s")
        measure = memory and now - self.measured >= MEMORY_POLL  # however often messages arrive
        self.measured = now if measure else self.measured
        if self.learner is None:
            in_harness = measure and getattr(run.request, "learner_in_harness", False)
            if in_harness and (used := tree_memory(descendants(self.pid))) > memory:
                self.fail(exceeded(memory, used))
            return
        pid, deadline, group = self.learner.pid, self.learner.deadline, self.learner.group
        if group is not None and group.oom_kills():  # the kernel stopped the tree at its cgroup's limit
            why = exceeded(memory, group.peak(), "at its peak, counted by its cgroup")
        elif (ended := os.waitpid(pid, os.WNOHANG))[0]:
            why = f"the worker process died ({how(os.waitstatus_to_exitcode(ended[1]))})"
        elif deadline and time.monotonic() > deadline:
            why = f"timed out after {limit:g} s"
        elif measure and (used := tree_memory(descendants(self.pid, run.pid))) > memory:
            why = exceeded(memory, used)
        else:
            return
        self.end_learner()
        with contextlib.suppress(OSError):  # a harness that went first (its run is over) needs no answer
            run.harness.send(("ended", pid, why))

    def fail(self, why: str) -> None:
        run = self.run
        what = f"{why} at stage {run.where[0]}, checkpoint {run.where[1]}"
        try:
            record = failure_record(run.request, Path(run.execution.out), what, seconds=time.monotonic() - run.started)
        except OSError as exc:
            return self.end_run({"problem": f"{run.request.label()}: {why}; cannot write its record: {exc}"})
        self.end_run({"record": record, "cached": False})

    def end_run(self, outcome: dict[str, Any]) -> None:
        """Kill everything the run left (its harness included), then report its outcome."""
        kill_tree(self.pid)
        reap()
        EXITED.clear()
        self.release()
        self.run.harness.close()
        self.run = None
        self.driver.send(("done", outcome))

    def end_learner(self) -> None:
        if self.learner is not None:
            kill_tree(self.pid, self.run.pid)
            reap(self.run.pid)
            self.release()

    def release(self) -> None:
        """Forget the learner, removing its cgroup and temporary folder (its processes are gone)."""
        if self.learner is not None:
            if self.learner.socket is not None:
                self.learner.socket.close()
            if self.learner.group is not None:
                self.learner.group.remove()
            shutil.rmtree(self.learner.private, ignore_errors=True)
            self.learner = None

    def forward(self) -> None:
        """Copy what the processes below wrote to this process's stderr (a bounded amount per call)."""
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            for _ in range(16):
                os.write(2, os.read(self.out_r, 1 << 16))
