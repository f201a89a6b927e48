"""Process trees: how a worker (`Supervisor`) owns everything a learner starts; memory limits.

A worker is a child subreaper (prctl PR_SET_CHILD_SUBREAPER): a process a learner starts that leaves
its parent (a double fork, a child in a new session) is re-parented to the worker, not to init, so
it stays in the worker's tree, where its memory is counted and from where it is killed when the
learner ends. What this does not cover: docs/isolation.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import send_handle

from imlbench.harness.sandbox import MemoryCgroup, prctl

# imported by every worker before it forks a run: imlbench's built-in learners of a grid (`preload`)
# and the heavy libraries a plugin of the grid imports (found by `imlbench.harness.probe`)
PRELOAD: list[str] = []
HEAVY = ("sklearn", "scipy", "torch", "xgboost", "transformers", "tokenizers", "PIL")
MEMORY_POLL = 0.1  # seconds between two measurements of a run's memory
SHM = "/dev/shm/"
_PAGE = os.sysconf("SC_PAGE_SIZE")
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
EXITED: dict[int, int] = {}  # the wait status of a supervisor's child that `reap` collected


def preload(modules: list[str]) -> None:
    """Have the workers started from now on import these modules (imlbench's own or HEAVY ones)
    before they fork any run, so that no run pays for them."""
    PRELOAD.extend(m for m in modules if m not in PRELOAD and m.split(".")[0] in ("imlbench", *HEAVY))


def _table() -> dict[int, list[int]]:
    """parent pid -> the pids of its live (not zombie) children, read from /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if name.isdigit():
            with contextlib.suppress(OSError, ValueError), open(f"/proc/{name}/stat", "rb") as f:  # ended meanwhile
                state, parent = f.read().rpartition(b")")[2].split()[:2]
                if state != b"Z":
                    children.setdefault(int(parent), []).append(int(name))
    return children


def descendants(root: int, spare: int | None = None) -> list[int]:
    """Every live process below `root` (its children, theirs, ...), but `spare` and those below it."""
    children, found = _table(), []
    todo = [pid for pid in children.get(root, ()) if pid != spare]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, ())
    return found


def kill_tree(root: int, spare: int | None = None, seconds: float = 5.0) -> None:
    """SIGKILL every process below `root` (but `spare`'s tree) until none is left; `root` should be a
    subreaper, so that the children of a killed process come to it instead of escaping to init."""
    end = time.monotonic() + seconds
    while (pids := descendants(root, spare)) and time.monotonic() < end:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def reap(keep: int | None = None) -> None:
    """Collect every ended child (a subreaper inherits others' orphans); `keep`'s wait status goes to EXITED."""
    with contextlib.suppress(ChildProcessError):
        while (ended := os.waitpid(-1, os.WNOHANG))[0]:
            if ended[0] == keep:
                EXITED[keep] = ended[1]


def how(code: int) -> str:
    """An exit code (negative: killed by that signal, as subprocess has it) in words."""
    return f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"


def tree_memory(pids: list[int]) -> int:
    """Bytes held by these processes: their proportional set sizes (a page shared with processes
    outside counts by its share), plus each /dev/shm file one of them holds open but does not map."""
    total, mapped, held = 0, set(), {}
    for pid in pids:
        with contextlib.suppress(OSError, StopIteration):  # it ended meanwhile
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                total += next(int(line.split()[1]) * 1024 for line in rollup if line.startswith("Pss:"))
            with open(f"/proc/{pid}/maps") as maps:
                mapped |= {int(line.split()[4]) for line in maps if SHM in line}
            for fd in (f"/proc/{pid}/fd/{fd}" for fd in os.listdir(f"/proc/{pid}/fd")):
                if os.readlink(fd).startswith(SHM) and stat.S_ISREG((info := os.stat(fd)).st_mode):
                    held[info.st_ino] = info.st_blocks * 512
    return total + sum(size for inode, size in held.items() if inode not in mapped)


def process_rss(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE
    return 0


class LearnerDied(Exception):
    """The learner's process ended (crashed, exited, was killed) mid-run; the message says how, and
    the run's record adds where."""


class _MemoryHit(LearnerDied):
    """Raised asynchronously in the thread running an in-process learner past its memory limit."""


@contextmanager
def memory_guard(limit: int | None) -> Iterator[None]:
    """A memory limit for a learner that runs in this process (diagnostics): past it, LearnerDied is
    raised in this thread at its next Python instruction (best effort: a long call in C finishes
    first). A run's learner process is limited by its supervisor instead."""
    if not limit:
        yield
        return
    thread, hit, stop = ctypes.c_ulong(threading.get_ident()), [], threading.Event()

    def watch() -> None:
        while not stop.wait(MEMORY_POLL):
            if (used := process_rss(os.getpid())) > limit:
                hit.append(exceeded(limit, used))
                ctypes.pythonapi.PyThreadState_SetAsyncExc(thread, ctypes.py_object(_MemoryHit))
                return

    watcher = threading.Thread(target=watch, daemon=True, name="imlbench-memory-watch")
    watcher.start()
    try:
        yield
    except _MemoryHit:
        raise LearnerDied(hit[0]) from None
    finally:
        stop.set()
        watcher.join()
        ctypes.pythonapi.PyThreadState_SetAsyncExc(thread, None)  # one still pending is void


def exceeded(limit: int, used: int, how_counted: str = "resident") -> str:
    size = [f"{n / 2**20:.0f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB" for n in (limit, used)]
    return f"exceeded memory limit of {size[0]} ({size[1]} {how_counted})"


class Supervisor:
    """A clean process (a worker) that forks learner processes on request and owns each: its time
    and memory limits (memory over its whole tree), every process it starts (all killed when it
    ends) and its output (a pipe this process copies to its stderr: no straggler holds the caller's).
    A client sends ("learner", limit, start, memory), gets ("learner", pid) and the learner's socket,
    and ("ended", pid, why) where it ends on its own or at a limit; ("release",) ends it. SIGTERM
    (also sent when the worker's parent dies) kills everything below and exits."""

    def __init__(self, conn: Connection, learner_main: Callable[[Connection], None]):
        self.clients, self.learner_main, self.pid = [conn], learner_main, os.getpid()
        self.learner: tuple | None = None  # (pid, client, deadline, limit, memory, MemoryCgroup or None, TMPDIR)
        self.spare: int | None = None  # a process below this one that is not a learner's (a run's harness)
        self.out_r, self.out_w = os.pipe()
        os.set_blocking(self.out_r, False)
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it stops its workers
        signal.signal(signal.SIGTERM, lambda *_: (kill_tree(os.getpid()), self.release(), os._exit(1)))

    def serve(self, modules: list[str]) -> None:
        """Import what runs will need, then answer the first client until it goes."""
        for module in filter(None, modules):
            with contextlib.suppress(Exception):  # a learner that needs a missing library fails in its run
                importlib.import_module(module)
        try:
            self.clients[0].send(("ready",))
        except OSError:  # the driver went while this worker started (a grid that ended, Ctrl-C)
            return
        while self.step():
            pass
        kill_tree(os.getpid())
        self.release()

    def step(self) -> bool:
        """Handle what arrived (messages, output) and check the limits; False when the first client is gone."""
        busy = self.learner is not None or self.spare is not None
        ready = wait([*self.clients, self.out_r], timeout=MEMORY_POLL if busy else None)
        self.forward()
        for client in [c for c in self.clients if c in ready]:
            try:
                message = client.recv()
            except (EOFError, OSError):
                if client is self.clients[0]:
                    return False
                self.lost(client)
                continue
            self.handle(client, message)
        self.check()
        return True

    def handle(self, client: Connection, message: tuple) -> None:
        if message[0] == "learner":
            self.end_learner()
            self.start_learner(client, *message[1:])
        elif message[0] == "release":
            self.end_learner()

    def lost(self, client: Connection) -> None:
        """A client that went: its learner (if it had one) goes with it."""
        self.clients.remove(client)
        if self.learner is not None and self.learner[1] is client:
            self.end_learner()

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

    def start_learner(self, client: Connection, limit: float | None, start: float, memory: int | None) -> None:
        ours, theirs = socket.socketpair()
        group = MemoryCgroup.open(memory) if memory else None
        private = tempfile.mkdtemp(prefix="imlbench-learner-")  # its TMPDIR: the one temporary folder it may write
        if (pid := os.fork()) == 0:
            try:
                self.child(theirs.fileno())
                if group is not None:
                    with contextlib.suppress(OSError):
                        group.join()
                os.environ["TMPDIR"], tempfile.tempdir = private, None
                self.learner_main(Connection(theirs.detach()))
            finally:
                os._exit(0)
        theirs.close()
        self.learner = (pid, client, limit and start + limit, limit, memory, group, private)
        client.send(("learner", pid))
        send_handle(client, ours.fileno(), pid)
        ours.close()

    def check(self) -> None:
        """End the learner where it died or passed a limit, and tell its client why."""
        if self.learner is None:
            return
        pid, client, deadline, limit, memory, group, _ = self.learner
        if group is not None and group.oom_kills():  # the kernel stopped the tree at its cgroup's limit
            why = exceeded(memory, group.peak(), "at its peak, counted by its cgroup")
        elif (ended := os.waitpid(pid, os.WNOHANG))[0]:
            why = f"the worker process died ({how(os.waitstatus_to_exitcode(ended[1]))})"
        elif deadline and time.monotonic() > deadline:
            why = f"timed out after {limit:g} s"
        elif memory and (used := tree_memory(descendants(os.getpid(), self.spare))) > memory:
            why = exceeded(memory, used)
        else:
            return
        self.end_learner()
        with contextlib.suppress(OSError):  # a client that went first (its run is over) needs no answer
            client.send(("ended", pid, why))

    def end_learner(self) -> None:
        if self.learner is not None:
            kill_tree(os.getpid(), self.spare)
            reap(self.spare)
            self.release()

    def release(self) -> None:
        """Forget the learner, removing its cgroup and temporary folder (its processes are gone)."""
        if self.learner is not None:
            group, private = self.learner[-2:]
            if group is not None:
                group.remove()
            shutil.rmtree(private, ignore_errors=True)
            self.learner = None

    def forward(self) -> None:
        """Copy what the processes below wrote to this process's stderr (a bounded amount per call)."""
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            for _ in range(16):
                os.write(2, os.read(self.out_r, 1 << 16))
