"""The supervisor: a worker process that executes one run at a time and owns everything it starts.

A worker is a fresh Python (started by `imlbench.execution.workers` with `subprocess`, so it also
works inside daemonic dask workers) that imports imlbench, the grid's built-in learners and heavy
libraries, then serves the driver's runs. It runs with the driver's import path, environment and
folder as they were when it started; the driver reuses it only while they are unchanged.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import send_handle
from pathlib import Path
from typing import Any

from imlbench.core.registry import PIPELINES, TASKS, VIEWS
from imlbench.harness import remote
from imlbench.harness.probe import module_of
from imlbench.harness.processes import descendants, exceeded, how, kill_tree, reap, tree_memory
from imlbench.harness.runner import failure_record, serve_harness
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
        worker.fork_spares()
        worker.driver.send(("ready",))
        while worker.step():
            pass
    except (BrokenPipeError, ConnectionResetError):  # the driver went (a grid that ended, Ctrl-C)
        pass
    finally:
        worker.close()


@dataclass
class _Learner:
    pid: int
    conn: Connection | None  # its end of the connection, until handed to the harness
    private: str  # its TMPDIR
    deadline: float | None = None
    group: MemoryCgroup | None = None


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
    """A clean process that executes one run at a time and owns everything it starts: each run's
    harness and learner processes (forked ahead; the learner handed to the harness when it asks), the
    run's time limit, its memory limit (over the learner's whole tree, in a memory cgroup where one can
    be made), every process (it is a child subreaper; all are killed when the run ends) and their
    output (a pipe copied to its stderr: no straggler holds the caller's).

    Messages: the driver sends ("run", request, execution) and gets ("progress", stage,
    checkpoint, detail) and ("done", outcome); the harness sends those two, ("learner",) (answered by
    ("learner", pid) and the learner's socket, and ("ended", pid, why) where it ends on its own or at
    a limit) and ("release",). SIGTERM (also sent when the driver dies) kills everything and exits."""

    def __init__(self, driver: Connection):
        self.driver, self.pid = driver, os.getpid()
        self.run: _Run | None = None
        self.spare: tuple[int, Connection] | None = None  # the next run's harness, forked ahead
        self.spare_learner: _Learner | None = None  # and its learner
        self.measured = 0.0  # when the run's memory was last measured
        self.learner: _Learner | None = None
        self.ended: list[_Learner] = []  # killed learners whose cgroup and folder are still to remove
        self.dying: dict[int, int] = {}  # killed processes the kernel may still be freeing: pid -> start time
        self.exited: dict[int, int] = {}  # wait statuses of the ended children collected during this run
        self.out_r, self.out_w = os.pipe()
        os.set_blocking(self.out_r, False)
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        prctl(PR_SET_DUMPABLE, 0)  # it forks every harness: a same-user process may not attach to it
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it stops its workers
        signal.signal(signal.SIGTERM, lambda *_: (self.close(), os._exit(1)))

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
                self.harness_died()
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
        if (kind := message[0]) == "run":
            self.start_run(*message[1:])
        elif kind == "progress":  # to the driver: a stage change at once, else one per PROGRESS_EVERY
            if message[1] != self.run.where[0] or time.monotonic() - self.run.told >= PROGRESS_EVERY:
                self.driver.send(message)
                self.run.told = time.monotonic()
            self.run.where = message[1:3]
        elif kind == "done":  # the harness exits once it has sent its outcome
            self.end_run(message[1], finished=True)
        elif kind == "learner":  # the one forked with the run (if the harness has not had it yet), or a new one
            if self.learner is None or self.learner.conn is None:
                self.end_learner()
                self.start_learner()
            learner, limit = self.learner, self.run.execution.limit(self.run.request)
            learner.deadline = limit and time.monotonic() + limit  # from now: the harness's record then shows it all
            self.run.harness.send(("learner", learner.pid))
            send_handle(self.run.harness, learner.conn.fileno(), learner.pid)
            learner.conn.close()
            learner.conn = None
            self.fork_spares()  # now: this run no longer waits for the worker
        elif kind == "release":
            self.end_learner()

    def harness_died(self) -> None:
        self.end_learner()
        status = self.exited[self.run.pid] if self.run.pid in self.exited else os.waitpid(self.run.pid, 0)[1]
        self.fail(f"the worker process died ({how(os.waitstatus_to_exitcode(status))})")

    def reap(self) -> None:
        """Collect every ended child (a subreaper inherits orphans): its wait status kept for the run,
        no longer dying, no longer a spare."""
        if not (ended := reap()):  # as on most calls: it runs every step of a run
            return
        self.exited.update(ended)
        self.dying = {pid: start for pid, start in self.dying.items() if pid not in ended}
        if self.spare and self.spare[0] in ended:
            self.spare = None
        if self.spare_learner and self.spare_learner.pid in ended:
            self.ended, self.spare_learner = [*self.ended, self.spare_learner], None

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
        self.reap()  # a spare that died idle is forgotten
        (pid, harness), self.spare = self.spare or self.fork(serve_harness), None
        os.kill(pid, signal.SIGCONT)  # where Landlock lets a learner signal others, one may have stopped it
        if in_harness := getattr(request, "learner_in_harness", False):  # plugin code there: no spare learner near
            self.ended, self.spare_learner = [*self.ended, self.spare_learner], None
            self.dying.update(kill_tree(self.pid, {pid: None, **self.spared()}, wait=False))
        harness.send((request, execution))
        self.run = _Run(request, execution, harness, pid)
        if not in_harness:
            self.start_learner()  # now rather than when the harness asks: it starts while the harness does

    def fork_spares(self) -> None:
        """The next run's harness and learner, forked while no run waits for this worker (a fork takes
        ~10 ms once torch is imported); they wait for their run outside the current run's tree."""
        with contextlib.suppress(OSError):  # none: a run forks its own
            self.spare = self.spare or self.fork(serve_harness)
            self.spare_learner = self.spare_learner or self.fork_learner()

    def fork(self, body: Callable[[Connection], Any]) -> tuple[int, Connection]:
        """A process forked from this one (set up by `child`) that runs body(its end of a connection)."""
        ours, theirs = socket.socketpair()
        if (pid := os.fork()) == 0:
            try:
                self.child(theirs.fileno())
                body(Connection(theirs.detach()))
            except BaseException:  # its own error: the traceback goes out with the worker's output
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        theirs.close()
        return pid, Connection(ours.detach())

    def fork_learner(self) -> _Learner:
        """A learner process, sandboxed (`remote.serve_learner`), waiting for its harness to send a spec."""
        private = tempfile.mkdtemp(prefix="imlbench-learner-")  # its TMPDIR: the one temporary folder it may write

        def learner(conn: Connection) -> None:
            os.environ["TMPDIR"], tempfile.tempdir = private, None
            remote.serve_learner(conn)

        return _Learner(*self.fork(learner), private)

    def start_learner(self) -> None:
        """The run's learner (the spare, unless it died idle), before it runs any learner code (it waits
        for the harness, whose taking it starts its time limit), in a memory cgroup where one can be made."""
        learner, self.spare_learner = self.spare_learner or self.fork_learner(), None  # the caller reaped
        os.kill(learner.pid, signal.SIGCONT)  # as the harness's spare (start_run)
        self.exited.pop(learner.pid, None)  # a pid reused since an earlier learner of this run was reaped
        memory = self.run.execution.memory
        learner.group = MemoryCgroup.open(memory) if memory else None
        if learner.group is not None and not learner.group.add(learner.pid):
            learner.group.remove()
            learner.group = None
        self.learner = learner

    def check(self) -> None:
        """End the learner where it died or passed a limit (and tell the harness why), and the run
        where its harness passed the time limit, or held a diagnostic's learner past the memory limit."""
        if self.run is None:
            return
        self.reap()
        run, memory, now = self.run, self.run.execution.memory, time.monotonic()
        limit = run.execution.limit(run.request)
        if limit and now - run.started > limit + GRACE:
            return self.fail(f"timed out after {limit:g} s")
        if run.pid in self.exited and not run.harness.poll():  # no EOF if its child holds the socket
            return self.harness_died()
        measure = memory and now - self.measured >= MEMORY_POLL  # however often messages arrive
        self.measured = now if measure else self.measured
        if self.learner is None:
            in_harness = measure and getattr(run.request, "learner_in_harness", False)
            if in_harness and (used := tree_memory(descendants(self.pid, self.spared()))) > memory:
                self.fail(exceeded(memory, used))
            return
        pid, deadline, group = self.learner.pid, self.learner.deadline, self.learner.group
        if group is not None and group.oom_kills():  # the kernel stopped the tree at its cgroup's limit
            why = exceeded(memory, group.peak(), "at its peak, counted by its cgroup")
        elif pid in self.exited:
            why = f"the worker process died ({how(os.waitstatus_to_exitcode(self.exited[pid]))})"
        elif deadline and time.monotonic() > deadline:
            why = f"timed out after {limit:g} s"
        elif measure and (used := self.learner_memory()) > memory:
            why = exceeded(memory, used)
        else:
            return
        self.end_learner()
        with contextlib.suppress(OSError):  # a harness that went first (its run is over) needs no answer
            run.harness.send(("ended", pid, why))

    def learner_memory(self) -> int:
        """The learner tree's memory that no cgroup limits: all without one; with one, only where a process
        left it (then with the cgroup's usage). Measuring is slow: ~10 ms a process that imported torch."""
        pids, group = descendants(self.pid, {self.run.pid: None, **self.spared()}), self.learner.group
        if group is None:
            return tree_memory(pids)
        outside = set(pids) - group.members()
        return group.usage() + tree_memory(outside) if outside else 0

    def fail(self, why: str) -> None:
        run = self.run
        what = f"{why} at stage {run.where[0]}, checkpoint {run.where[1]}"
        try:
            record = failure_record(run.request, Path(run.execution.out), what, seconds=time.monotonic() - run.started)
        except OSError as exc:
            return self.end_run({"problem": f"{run.request.label()}: {why}; cannot write its record: {exc}"})
        self.end_run({"record": record, "cached": False})

    def end_run(self, outcome: dict[str, Any], finished: bool = False) -> None:
        """Kill everything the run left and report its outcome. After a `finished` harness (no plugin code)
        the driver hears once the learner's tree is dead; the kernel frees it while the next run starts."""
        early = finished and not getattr(self.run.request, "learner_in_harness", False)
        if early:
            self.end_learner()
            self.driver.send(("done", outcome))
        self.dying.update(kill_tree(self.pid, self.spared(), wait=not early))
        self.reap()
        self.release(wait=not early)
        self.run.harness.close()
        self.run, self.exited = None, {}
        if not early:
            self.driver.send(("done", outcome))
        self.fork_spares()  # where the run had plugin code in its harness, or a fork failed

    def spared(self) -> dict[int, int | None]:
        """What is not the current run's tree (pid -> start time): the spares (unreaped children, so
        any start) and the dying (a pid reused by the run's tree is not theirs: its start differs)."""
        spares = [self.spare and self.spare[0], self.spare_learner and self.spare_learner.pid]
        return {**dict.fromkeys(filter(None, spares)), **self.dying}

    def end_learner(self) -> None:
        """Kill the learner's tree: it runs no more code when this returns (the kernel frees it after)."""
        if self.learner is not None:
            self.dying.update(kill_tree(self.pid, {self.run.pid: None, **self.spared()}, wait=False))
            self.reap()
            self.ended.append(self.learner)
            self.learner = None

    def close(self) -> None:
        """Kill every process this worker started and remove what their learners left."""
        kill_tree(self.pid)
        self.ended, self.spare_learner = [*self.ended, self.spare_learner], None
        self.release()

    def release(self, wait: bool = True) -> None:
        """Remove the killed learners' temporary folders and cgroups (a cgroup once its processes are
        gone: with `wait`, waiting for them; else a later call tries again)."""
        kept = []
        for learner in filter(None, [*self.ended, self.learner]):
            if learner.conn is not None:
                learner.conn.close()
            shutil.rmtree(learner.private, ignore_errors=True)  # again later while a dying process writes there
            if os.path.exists(learner.private) or (learner.group is not None and not learner.group.remove(wait)):
                kept.append(learner)
        self.ended, self.learner = kept, None

    def forward(self) -> None:
        """Copy what the processes below wrote to this process's stderr (a bounded amount per call)."""
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            for _ in range(16):
                os.write(2, os.read(self.out_r, 1 << 16))
