"""Claims: two `imlbench run`s on one results folder never compute the same run twice.

Before running, a process creates `<record>.claim` (O_EXCL: only one can) holding its host and
pid, and removes it when the record is written. Another process that finds the claim waits for it to
go, then reads the record. A claim whose process died on this host is stale and taken over; a claim
from another host is trusted (its pid cannot be checked from here).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

POLL_SECONDS = 1.0
UNWRITTEN_SECONDS = 30.0  # a claim still empty this long lost its writer between create and write


def claim_path(record_path: Path) -> Path:
    """Beside the record; not `*.json`, so no reader takes it for one."""
    return Path(record_path).with_name(Path(record_path).name + ".claim")


@contextmanager
def claimed(
    record_path: Path, waiting: Callable[[dict[str, Any]], None] | None = None, poll: float = POLL_SECONDS
) -> Iterator[bool]:
    """Hold the claim on a record path while the body runs; yields whether another process held it
    first (then its record may now exist: read it before running). `waiting(owner)` is called
    while waiting."""
    path = claim_path(record_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            text, owner = _owner(path)
            if _stale(path, owner):
                _take_over(path, text)
                continue
            waited = True
            if waiting:
                waiting(owner)
            time.sleep(poll)
    with os.fdopen(fd, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getpid()}, f)
    try:
        yield waited
    finally:
        path.unlink(missing_ok=True)


def _owner(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text()
        owner = json.loads(text)
    except (OSError, ValueError):
        return "", {}
    return text, owner if isinstance(owner, dict) else {}


def _stale(path: Path, owner: dict[str, Any]) -> bool:
    """The owner died on this host, or never wrote its name."""
    pid = owner.get("pid")
    if not isinstance(pid, int):
        try:
            return time.time() - path.stat().st_mtime > UNWRITTEN_SECONDS
        except FileNotFoundError:
            return False  # released meanwhile: claim it on the next try
    if owner.get("host") != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _take_over(path: Path, stale_text: str) -> None:
    """Remove a stale claim; move it aside first, so that a fresh claim another process made
    meanwhile is put back rather than deleted."""
    aside = path.with_name(f"{path.name}.{os.getpid()}.stale")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return
    try:
        if aside.read_text() != stale_text:
            os.link(aside, path)
    except OSError:
        pass
    aside.unlink(missing_ok=True)
