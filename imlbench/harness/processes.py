"""Processes a learner runs in: the fork server they start from, process groups, memory limits.

Every run's learner executes in a fresh process forked from a fork server that has already imported
the heavy libraries, so a run starts in a fraction of a second and nothing one run's learner changed
in its process (a patched module, a global, a cache) reaches another run. A learner process leads
its own process group, so that it is killed whole, with any pool or subprocess it started.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from typing import Any

from imlbench.core.errors import ImlbenchError

# imported once by the fork server, so that a learner process starts with them loaded: these, plus
# the modules of the learners a grid runs (`preload`), passed on to worker processes by environment
PRELOAD = ["numpy", "pandas", "imlbench.harness.remote"]
PRELOAD_ENV = "IMLBENCH_PRELOAD"
MEMORY_POLL = 0.1  # seconds between two reads of a learner's resident memory
UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_PAGE = os.sysconf("SC_PAGE_SIZE")


def preload(modules: list[str]) -> None:
    """Have the fork server (this process's, and its worker processes') import these modules too:
    the learners of a grid, so that each run forks with them loaded and a grid of forests never
    waits for torch. Effective until the fork server starts."""
    wanted = [m for m in os.environ.get(PRELOAD_ENV, "").split(",") if m]
    os.environ[PRELOAD_ENV] = ",".join(dict.fromkeys(wanted + list(modules)))


def context() -> Any:
    """The fork-server context every learner process starts from (preloading PRELOAD and `preload`'s)."""
    ctx = multiprocessing.get_context("forkserver")
    extra = [m for m in os.environ.get(PRELOAD_ENV, "").split(",") if m]
    ctx.set_forkserver_preload(list(dict.fromkeys(PRELOAD + extra)))
    return ctx


def warm_up() -> None:
    """Start the fork server and let it import PRELOAD now (seconds), so that no run's clock pays for
    it: the first child it forks is served only after its imports."""
    with children_allowed():
        child = context().Process(target=os.getpid, name="imlbench-warm-up")
        child.start()
    child.join()


_STARTING = threading.Lock()


@contextmanager
def children_allowed() -> Iterator[None]:
    """Around Process.start. multiprocessing refuses children to a daemonic process (a dask worker is
    one) since they could outlive it; a learner process cannot: it watches its harness and kills its
    own group when it goes. And a child would re-run the driver's main script (one without a
    `__main__` guard runs the whole grid again); a learner process needs nothing from it."""
    config = multiprocessing.current_process()._config  # noqa: SLF001 - the flag Process.start checks
    main = sys.modules["__main__"]
    with _STARTING:
        daemon, spec = config.pop("daemon", None), getattr(main, "__spec__", None)
        main.__spec__ = ModuleSpec("__main__", None)  # multiprocessing skips a main of this name
        try:
            yield
        finally:
            main.__spec__ = spec
            if daemon is not None:
                config["daemon"] = daemon


def kill_group(pgid: int) -> None:
    """SIGKILL a whole process group (a learner and everything it started); gone already is fine."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def group_rss(pgid: int) -> int:
    """Resident bytes of every process in a group, read from /proc (0 where /proc is missing)."""
    total = 0
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:
            continue  # it ended meanwhile
        if int(fields[2]) == pgid:
            total += int(fields[21]) * _PAGE
    return total


def parse_memory(value: str | int | float | None, jobs: int = 1) -> int | None:
    """A --memory-limit in bytes: "4G", "512M", "1.5G", a byte count, 0 = no limit; None = the
    default share of the machine (its memory divided by the parallel runs)."""
    if value is None:
        return total_memory() // max(jobs, 1)
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)", text)
    if isinstance(value, bool) or match is None:
        raise ImlbenchError(f"bad memory limit {value!r}; expected e.g. 4G, 512M or 0 for no limit")
    amount = int(float(match[1]) * UNITS[match[2]])
    return amount or None


def total_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def process_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        return 0


def describe(size: int) -> str:
    return f"{size / 2**20:.0f} MiB" if size < 2**30 else f"{size / 2**30:.2f} GiB"


class LearnerDied(Exception):
    """The learner's process ended (crashed, exited, was killed, exceeded its memory limit)
    mid-run; the message says how, and the run's record adds where."""


class MemoryWatch:
    """Polls resident memory (`measure()`, e.g. a process group's) from a thread; past `limit` it
    calls `exceeded(text)` once. (A group's RSS counts pages its processes share once per process.)"""

    def __init__(self, measure: Callable[[], int], limit: int, exceeded: Callable[[str], None]):
        self.measure, self.limit, self.exceeded = measure, limit, exceeded
        self._stop = threading.Event()
        threading.Thread(target=self._watch, daemon=True, name="imlbench-memory-watch").start()

    def _watch(self) -> None:
        while not self._stop.wait(MEMORY_POLL):
            used = self.measure()
            if used > self.limit:
                self.exceeded(f"exceeded memory limit of {describe(self.limit)} ({describe(used)} resident)")
                return

    def stop(self) -> None:
        self._stop.set()


class _MemoryHit(LearnerDied):
    """Raised asynchronously in the thread running an in-process learner past its memory limit."""


@contextmanager
def memory_guard(limit: int | None) -> Iterator[None]:
    """A memory limit for a learner that runs in this process (diagnostics): past it, LearnerDied is
    raised in this thread at its next Python instruction (best effort: a long call in C finishes
    first). Isolated runs are limited by killing the learner's process group instead."""
    if not limit:
        yield
        return
    thread, lock, hit = ctypes.c_ulong(threading.get_ident()), threading.Lock(), []

    def exceeded(why: str) -> None:
        with lock:
            if not hit:
                hit.append(why)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(thread, ctypes.py_object(_MemoryHit))

    watch = MemoryWatch(lambda: process_rss(os.getpid()), limit, exceeded)
    try:
        yield
    except _MemoryHit:
        raise LearnerDied(hit[0]) from None
    finally:
        watch.stop()
        with lock:
            hit.append("closed")
            ctypes.pythonapi.PyThreadState_SetAsyncExc(thread, None)  # one still pending is void
