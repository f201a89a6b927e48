"""Run records: one JSON file per run, written atomically, keyed by what determines the result."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from imlbench.registry import ImlbenchError, Spec
from imlbench.util import safe_name as _safe

LIBRARIES = ("imlbench", "numpy", "pandas", "scikit-learn", "xgboost", "torch")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            found[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            found[lib] = "not installed"
    return found


def run_identity(task: Spec, learner: Spec, seed: int, pipeline: str, protocol: dict[str, Any]) -> dict[str, Any]:
    return {"task": task.to_dict(), "learner": learner.to_dict(), "seed": seed, "pipeline": pipeline,
            "protocol": protocol}


def run_key(identity: dict[str, Any]) -> str:
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def record_path(out_dir: Path, identity: dict[str, Any]) -> Path:
    """results/records/<task>/<learner>/<pipeline>-seed<seed>-<key>.json"""
    key = run_key(identity)
    return (Path(out_dir) / "records" / _safe(identity["task"]["name"]) / _safe(identity["learner"]["name"])
            / f"{identity['pipeline']}-seed{identity['seed']}-{key}.json")


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, sort_keys=True, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImlbenchError(f"unreadable record file {path}: {type(exc).__name__}: {exc}; "
                            f"delete it or rerun with --force") from exc
    if not isinstance(record, dict) or "status" not in record or "key" not in record:
        raise ImlbenchError(f"unreadable record file {path}: not an imlbench record; "
                            f"delete it or rerun with --force")
    return record


def iter_record_files(out_dir: Path) -> list[Path]:
    root = Path(out_dir) / "records"
    return sorted(p for p in root.rglob("*.json") if not p.name.startswith(".tmp-"))


def load_records(out_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every readable record under out_dir, plus one error line per unreadable file."""
    records, problems = [], []
    for path in iter_record_files(out_dir):
        try:
            records.append(read_record(path))
        except ImlbenchError as exc:
            problems.append(str(exc))
    return records, problems
