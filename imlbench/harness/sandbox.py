"""What confines a learner process: applied in it before any learner code runs.

- **Landlock** (Linux ≥ 5.13): the learner and everything it starts may not ptrace, read the memory
  of (`/proc/<pid>/mem`, `process_vm_readv`), or (ABI ≥ 6) signal any process outside its own
  domain — the harness, its worker, the driver — even as root; and it may write files only in its
  own temporary folder, `/dev/shm`, the user's cache and a few devices (not the records, not the code).
- **Capabilities dropped** when running as root: no `CAP_SYS_PTRACE`, no mounts, no modules, no way
  back (`no_new_privs`, an empty bounding set); files stay readable as the user's.
- **The harness is not dumpable** (`prctl(PR_SET_DUMPABLE, 0)`): a process of the same user without
  `CAP_SYS_PTRACE` cannot read its memory through /proc, with or without Landlock.

- **A memory cgroup** per learner process where one can be made (`MemoryCgroup`): the kernel
  counts and limits every page its tree charges, /dev/shm files included.

Each step is best effort: `apply` returns which held, the harness writes that into the record
(`protections`), and docs/isolation.md says what each one means.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_CAP_AMBIENT = 4, 38, 24, 47
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36  # for workers: death with the parent; orphans come to them
LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446  # every Linux architecture
LANDLOCK_CREATE_RULESET_VERSION, LANDLOCK_RULE_PATH_BENEATH = 1, 1
WRITE_FILE, TRUNCATE = 1 << 1, 1 << 14
FILE_RIGHTS = {1: WRITE_FILE, 3: WRITE_FILE | TRUNCATE}  # what a rule on a single file may grant, by ABI
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
WRITABLE_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom", "/dev/random")


STEPS = ("landlock", "capabilities_dropped")  # what `apply` reports, the harness reads and records


def _libc() -> ctypes.CDLL | None:
    return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def prctl(option: int, value: int) -> bool:
    """Linux's prctl(option, value); False where it failed or there is none."""
    libc = _libc()
    return libc is not None and libc.prctl(option, value, 0, 0, 0) == 0


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where it has none (or it is disabled)."""
    libc = _libc()
    if libc is None or platform.machine() not in ("x86_64", "aarch64", "riscv64", "arm64"):
        return 0
    return max(0, libc.syscall(LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION))


def write_rights(abi: int) -> int:
    """Every right Landlock ABI `abi` can deny that writes, creates, removes or renames a file."""
    rights = WRITE_FILE | sum(1 << bit for bit in range(4, 13))  # remove dir/file, make any kind of file
    if abi >= 2:
        rights |= 1 << 13  # REFER: move a file between folders
    if abi >= 3:
        rights |= TRUNCATE
    return rights


def writable_folders() -> list[str]:
    """Where a learner may write: its own temporary folder (TMPDIR, made for it by its worker, so not
    the shared /tmp, where records may lie), shared memory and the user's cache (model hubs)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return [tempfile.gettempdir(), "/dev/shm", cache]


def landlock(abi: int) -> bool:
    """Restrict this process (and what it starts) as the module docstring says. Needs no_new_privs."""
    libc = _libc()
    rights = write_rights(abi)
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("QQQ", rights, 0, scoped) if abi >= 6 else struct.pack("Q", rights)
    ruleset = libc.syscall(LANDLOCK_CREATE_RULESET, ctypes.c_char_p(attr), len(attr), 0)
    if ruleset < 0:
        return False
    try:
        targets = [(p, rights) for p in writable_folders()]
        targets += [(p, FILE_RIGHTS[3 if abi >= 3 else 1]) for p in WRITABLE_DEVICES]
        for path, allowed in targets:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # no such folder here
            try:
                rule = struct.pack("=Qi", allowed, fd)
                libc.syscall(LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, ctypes.c_char_p(rule), 0)
            finally:
                os.close(fd)
        return libc.syscall(LANDLOCK_RESTRICT_SELF, ruleset, 0) == 0
    finally:
        os.close(ruleset)


def drop_capabilities() -> bool:
    """Give up every capability for good (bounding set, ambient, effective, permitted, inheritable)."""
    libc = _libc()
    known = Path("/proc/sys/kernel/cap_last_cap")
    last = int(known.read_text()) if known.exists() else 63
    for cap in range(last + 1):
        prctl(PR_CAPBSET_DROP, cap)
    prctl(PR_CAP_AMBIENT, 4)  # PR_CAP_AMBIENT_CLEAR_ALL
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = bytes(24)  # two {effective, permitted, inheritable} words, all zero
    if libc.capset(ctypes.c_char_p(header), ctypes.c_char_p(data)) != 0:
        return False
    return Path("/proc/self/status").read_text().count("CapEff:\t0000000000000000") == 1


def apply() -> dict[str, bool]:
    """Sandbox this (learner) process; which protections held, for the run's record."""
    held = dict.fromkeys(STEPS, False)
    if not prctl(PR_SET_NO_NEW_PRIVS, 1):
        return held
    if (abi := landlock_abi()) > 0:
        held["landlock"] = landlock(abi)
    if os.geteuid() == 0:
        held["capabilities_dropped"] = drop_capabilities()
    prctl(PR_SET_DUMPABLE, 1)  # dropping capabilities cleared it: its worker reads its /proc
    return held


def hide_this_process() -> bool:
    """Make this (harness) process's memory unreadable through /proc to same-user processes."""
    return prctl(PR_SET_DUMPABLE, 0)


class MemoryCgroup:
    """A learner's own memory cgroup below this process's, where one may be made (cgroup v2 with the
    memory controller delegated, or v1): the kernel then counts every page the tree charges, tmpfs
    and /dev/shm files included, enforces `limit` and records each OOM kill. `open` returns None
    where the platform offers none (docs/isolation.md says what is then not counted)."""

    def __init__(self, path: Path, v2: bool):
        self.path, self.v2 = path, v2
        self.limit_file = path / ("memory.max" if v2 else "memory.limit_in_bytes")

    @classmethod
    def own(cls) -> MemoryCgroup | None:
        """This process's memory cgroup (v2, or v1's memory controller); None where it has none."""
        with contextlib.suppress(OSError, ValueError), open("/proc/self/cgroup") as groups:
            for kind, path in (line.rstrip("\n").split(":", 2)[1:] for line in groups):
                if kind in ("", "memory"):
                    group = cls(Path(f"/sys/fs/cgroup{'' if kind == '' else '/memory'}{path}"), kind == "")
                    if group.limit_file.exists():
                        return group
        return None

    @classmethod
    def open(cls, limit: int) -> MemoryCgroup | None:
        parent = cls.own()
        if parent is None or not os.access(parent.path, os.W_OK):
            return None
        group = cls(parent.path / f"imlbench-{os.getpid()}-{time.monotonic_ns()}", parent.v2)
        try:
            if parent.v2 and "memory" not in (parent.path / "cgroup.subtree_control").read_text().split():
                return None  # not delegated: a child would have no memory controller
            group.path.mkdir()
            group.limit_file.write_text(str(limit))
        except OSError:
            group.remove()
            return None
        return group

    def add(self, pid: int) -> bool:
        """Move a process (a learner just forked, before any learner code runs) into it; False where
        that fails (its memory is then measured instead)."""
        try:
            (self.path / "cgroup.procs").write_text(str(pid))
        except OSError:
            return False
        return True

    def members(self) -> set[int]:
        with contextlib.suppress(OSError, ValueError):
            return {int(pid) for pid in (self.path / "cgroup.procs").read_text().split()}
        return set()

    def usage(self) -> int:
        with contextlib.suppress(OSError, ValueError):
            return int((self.path / ("memory.current" if self.v2 else "memory.usage_in_bytes")).read_text())
        return 0

    def oom_kills(self) -> int:
        events = self.path / ("memory.events" if self.v2 else "memory.oom_control")
        with contextlib.suppress(OSError, ValueError):
            for line in events.read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        return 0

    def peak(self) -> int:
        with contextlib.suppress(OSError, ValueError):
            return int((self.path / ("memory.peak" if self.v2 else "memory.max_usage_in_bytes")).read_text())
        return 0

    def remove(self, wait: bool = True) -> bool:
        """Remove it once its processes are gone (with `wait`, waiting up to a second for the last to
        leave); whether it is gone. Pages still charged, a /dev/shm file, go to the parent."""
        for _ in range(1000 if wait else 1):
            try:
                self.path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError:  # busy: a killed process leaves its cgroup a moment after it is gone
                time.sleep(0.001 if wait else 0)
        return False


def account(held: dict[str, bool], isolated: bool, entropy: str | None) -> dict[str, Any]:
    """The record's account of what kept the answers from the learner (docs/isolation.md), and a
    sealed run's entropy, written once the run is over so that anyone can replay it."""
    root = os.geteuid() == 0 if hasattr(os, "geteuid") else False
    unreadable = held.get("landlock", False) or (
        held.get("harness_not_dumpable", False) and (not root or held.get("capabilities_dropped", False))
    )
    protections = {
        "learner_process": isolated,
        "landlock": held.get("landlock", False),
        "capabilities_dropped": held.get("capabilities_dropped", False),
        "harness_not_dumpable": held.get("harness_not_dumpable", False),
        "harness_memory_unreadable": isolated and unreadable,
        "task_entropy_held_back": entropy is not None,
    }
    return {"protections": protections, **({"seal": {"entropy": entropy}} if entropy else {})}
