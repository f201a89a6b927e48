"""Process trees: how a worker (`imlbench.execution.supervisor`) finds, measures and kills everything
a run starts.

A worker is a child subreaper (prctl PR_SET_CHILD_SUBREAPER): a process a learner starts that leaves
its parent (a double fork, a child in a new session) is re-parented to the worker, not to init, so
it stays in the worker's tree, where its memory is counted and from where it is killed when the
learner ends. What this does not cover: docs/isolation.md.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time
from collections.abc import Iterable, Mapping
from types import MappingProxyType

# imported by every worker before it forks a run: imlbench's built-in learners of a grid (`preload`)
# and the heavy libraries a plugin of the grid imports (found by `imlbench.harness.probe`)
PRELOAD: list[str] = []
HEAVY = ("sklearn", "scipy", "torch", "xgboost", "transformers", "tokenizers", "PIL")
SHM = "/dev/shm/"


def preload(modules: list[str]) -> None:
    """Have the workers started from now on import these modules (imlbench's own or HEAVY ones)
    before they fork any run, so that no run pays for them."""
    PRELOAD.extend(m for m in modules if m not in PRELOAD and m.split(".")[0] in ("imlbench", *HEAVY))


def _table() -> tuple[dict[int, list[int]], dict[int, int]]:
    """(parent pid -> the pids of its live (not zombie) children, pid -> its start time), from /proc."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for name in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if name.isdigit():
            with contextlib.suppress(OSError, ValueError), open(f"/proc/{name}/stat", "rb") as f:  # ended meanwhile
                fields = f.read().rpartition(b")")[2].split()
                if fields[0] != b"Z":
                    children.setdefault(int(fields[1]), []).append(int(name))
                    starts[int(name)] = int(fields[19])
    return children, starts


def descendants(root: int, spare: Mapping[int, int | None] = MappingProxyType({})) -> dict[int, int]:
    """Every live process below `root` (its children, theirs, ...) -> its start time (clock ticks
    since boot: with the pid, what names a process, as pids are reused), but those in `spare` (pid ->
    start time, None for any) and the processes below them."""
    (children, starts), found = _table(), {}
    todo = list(children.get(root, ()))
    while todo:
        if (pid := todo.pop()) in spare and spare[pid] in (None, starts[pid]):
            continue
        found[pid] = starts[pid]
        todo += children.get(pid, ())
    return found


def kill_tree(root: int, spare: Mapping[int, int | None] = MappingProxyType({}), wait: bool = True) -> dict[int, int]:
    """SIGKILL every process below `root` (but the trees of `spare`): with `wait`, until none is left;
    without, until none is left that was not sent SIGKILL (such a process runs no more code and can
    fork no more: the tree is dead, though the kernel may still be freeing it). Returns the processes
    killed (pid -> start time). `root` should be a subreaper, so that the children of a killed
    process come to it instead of escaping to init."""
    start, killed, calm = time.monotonic(), {}, 0
    while (found := descendants(root, spare)) and time.monotonic() < start + 5:
        calm = calm + 1 if found.items() <= killed.items() else 0
        if not wait and calm == 2:  # twice: a child read before its parent (pids wrap) shows next time
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed.update(found)
        if wait:  # a killed process is gone in about a millisecond: look again soon, then less often
            time.sleep(min(0.01, max(0.0005, (time.monotonic() - start) / 4)))
    return killed


def reap() -> dict[int, int]:
    """Collect every ended child (a subreaper also inherits others' orphans): pid -> wait status."""
    collected = {}
    with contextlib.suppress(ChildProcessError):
        while (ended := os.waitpid(-1, os.WNOHANG))[0]:
            collected[ended[0]] = ended[1]
    return collected


def how(code: int) -> str:
    """An exit code (negative: killed by that signal, as subprocess has it) in words."""
    return f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"


def tree_memory(pids: Iterable[int]) -> int:
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


class LearnerDied(Exception):
    """The learner's process ended (crashed, exited, was killed) mid-run; the message says how, and
    the run's record adds where."""


def exceeded(limit: int, used: int, how_counted: str = "resident") -> str:
    size = [f"{n / 2**20:.0f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB" for n in (limit, used)]
    return f"exceeded memory limit of {size[0]} ({size[1]} {how_counted})"
