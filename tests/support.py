"""Helpers several test modules share: installing a plugin distribution the way pip would, and
finding which processes are still alive."""

from __future__ import annotations

from pathlib import Path

import psutil


def install_distribution(site: Path, name: str, entry_points: dict[str, dict[str, str]]) -> None:
    """A dist-info folder under `site` (a folder on the path) declaring `entry_points`
    ({group: {name: "module:object"}}): what `pip install` leaves, so the registry finds them."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    groups = [
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) for group, points in entry_points.items()
    ]
    (info / "entry_points.txt").write_text("".join(groups))


def alive(pids: list[int]) -> list[int]:
    """The processes of `pids` that still run (zombies count as gone)."""
    found = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                found.append(pid)
        except psutil.NoSuchProcess:
            pass
    return found
