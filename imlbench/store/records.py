"""Run records: one JSON file per run, written atomically, keyed by what determines the result.

A record also says what ran it (library versions, the imlbench commit of a checkout, CPU, the
accelerator), outside the key: the same run on another machine is the same run, with its
provenance visible.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from imlbench.core.errors import ImlbenchError
from imlbench.core.registry import Spec
from imlbench.core.names import safe_name

LIBRARIES = ("imlbench", "numpy", "pandas", "scikit-learn", "xgboost", "torch")
OPTIONAL_LIBRARIES = ("transformers", "tokenizers")  # recorded where installed (the `hf` extra)


# fields a record must hold for the summary, leaderboard, report and diagnostics tables to read it,
# by kind (a diagnostic's record names its diagnostic) and status
REQUIRED = {("run", "ok"): ("key", "task", "learner", "seed", "pipeline", "scores", "accuracy",
                            "accuracy_after_stage1", "curve", "evaluation_point", "definitions_learned",
                            "measurements", "versions"),
            ("run", "error"): ("key", "task", "learner", "seed", "pipeline", "error"),
            ("diagnostic", "ok"): ("key", "diagnostic", "options", "task", "learner", "seed", "rows"),
            ("diagnostic", "error"): ("key", "diagnostic", "options", "task", "learner", "seed", "error")}


def record_kind(record: dict[str, Any]) -> str:
    return "diagnostic" if "diagnostic" in record else "run"


def versions() -> dict[str, str]:
    """Library versions, plus `imlbench_commit` when imlbench runs from a git checkout (an editable
    install reports the same package version for every commit)."""
    found = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            found[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            found[lib] = "not installed"
    for lib in OPTIONAL_LIBRARIES:
        try:
            found[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    commit = git_commit()
    if commit:
        found["imlbench_commit"] = commit
    return found


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """HEAD of the checkout imlbench is imported from, with "-dirty" if tracked files differ from it;
    None when not run from a checkout (a wheel) or git is unavailable."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return git("rev-parse", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def accelerator() -> dict[str, Any] | None:
    """The CUDA device this process used (torch's name and CUDA version), or None. Torch is only
    looked at when the run already imported it and initialized CUDA."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_initialized():
            return None
        index = torch.cuda.current_device()
        return {"name": torch.cuda.get_device_name(index), "cuda": torch.version.cuda,
                "count": torch.cuda.device_count()}
    except Exception:  # a broken driver must not cost the record
        return None


def environment() -> dict[str, Any]:
    """Where a run executed; not part of its key."""
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "accelerator": accelerator()}


def run_identity(task: Spec, learner: Spec, seed: int, pipeline: str, protocol: dict[str, Any]) -> dict[str, Any]:
    return {"task": task.to_dict(), "learner": learner.to_dict(), "seed": seed, "pipeline": pipeline,
            "protocol": protocol}


def run_key(identity: dict[str, Any]) -> str:
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def record_path(out_dir: Path, identity: dict[str, Any]) -> Path:
    """results/records/<task>/<learner>/<pipeline>-seed<seed>-<key>.json"""
    key = run_key(identity)
    return (Path(out_dir) / "records" / safe_name(identity["task"]["name"]) / safe_name(identity["learner"]["name"])
            / f"{identity['pipeline']}-seed{identity['seed']}-{key}.json")


def write_atomic(path: Path, write: Callable[[TextIO], None]) -> None:
    """Write through `write(file)` into a uniquely named temporary file in the same folder, then
    rename: a reader never sees half a file, and concurrent writers never share a temporary name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(path: Path, record: dict[str, Any]) -> None:
    write_atomic(path, lambda f: json.dump(record, f, indent=1, sort_keys=True, allow_nan=True))


def read_record(path: Path) -> dict[str, Any]:
    """A record file's JSON object, checked (`problems`), or one ImlbenchError line naming the file."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImlbenchError(f"unreadable record file {path}: {type(exc).__name__}: {exc}; "
                            f"delete it or rerun with --force") from exc
    check(record, f"record file {path}")
    return record




def check(record: Any, source: str) -> None:
    """The one validation of a record (ImlbenchError naming `source` and what is wrong)."""
    if not isinstance(record, dict) or (record_kind(record), record.get("status")) not in REQUIRED:
        raise ImlbenchError(f"unreadable {source}: not an imlbench record; delete it or rerun with --force")
    missing = [k for k in REQUIRED[record_kind(record), record["status"]] if k not in record] or problems(record)
    if missing:
        raise ImlbenchError(f"unreadable {source}: missing or malformed {', '.join(missing)}; "
                            f"delete it or rerun with --force")


def problems(record: dict[str, Any]) -> list[str]:
    """The fields a reader reads that do not have the shape a run writes."""
    bad = [k for k in ("task", "learner") if not isinstance(record[k], dict) or "name" not in record[k]]
    if record_kind(record) == "diagnostic":
        if record["status"] == "ok" and not (isinstance(record["rows"], list)
                                             and all(isinstance(r, dict) for r in record["rows"])):
            bad.append("rows")
        return bad
    if record["status"] == "ok":
        bad += [k for k in ("scores", "accuracy", "accuracy_after_stage1", "measurements", "versions")
                if not isinstance(record[k], dict)]
        if "scores" not in bad and not isinstance(record["scores"].get("iml_effect"), (int, float)):
            bad.append("scores.iml_effect")
        try:
            float(record["measurements"]["seconds"]["total"])
        except (KeyError, TypeError, ValueError):
            bad.append("measurements.seconds.total")
        if not isinstance(record["curve"], list) or not all(
                isinstance(e, dict) and {"stage", "checkpoint"} <= set(e) and isinstance(e.get("accuracy"), dict)
                and isinstance(e.get("definitions"), dict) for e in record["curve"]):
            bad.append("curve")
    return bad


def prepare_out(out_dir: str | Path) -> Path:
    """Create the results folder and prove it is writable, before any training: a bad --out must
    not surface only after hours of runs."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ImlbenchError(f"--out {out} is a file, not a directory; name a folder (it is created if missing)")
    try:
        (out / "records").mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out / "records", prefix=".tmp-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ImlbenchError(f"--out {out} is not a writable folder: {exc.strerror or exc}; "
                            f"choose another --out") from exc
    return out


def iter_json_files(folder: Path) -> list[Path]:
    """The record files under a folder (none when it is missing), temporary files left out."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*.json") if not p.name.startswith(".tmp-")) if folder.is_dir() else []


def iter_record_files(out_dir: Path) -> list[Path]:
    return iter_json_files(Path(out_dir) / "records")


def load_records(out_dir: Path) -> tuple[list[Record], list[str]]:
    """The one loader: every readable run record under out_dir, plus one error line per unreadable
    file (the strict reading for reports is `store.results.load_results`)."""
    records, found = [], []
    for path in iter_record_files(out_dir):
        try:
            records.append(Record.from_json(read_record(path)))
        except ImlbenchError as exc:
            found.append(str(exc))
    return records, found


@dataclass(frozen=True)
class Record:
    """One run's record, typed: what ran (its identity), how it ended, and for a finished run its
    scores, accuracies and learning curve. Everything that reads records (leaderboard, figures,
    report, sweeps) reads these fields; `raw` keeps the record as written, for what only some
    runs carry (train accuracies, sizes, tracebacks)."""

    key: str
    task: dict[str, Any]
    learner: dict[str, Any]
    seed: int
    pipeline: str
    protocol: dict[str, Any]
    status: str
    error: str | None
    versions: dict[str, str]
    scores: dict[str, float]
    accuracy: dict[str, float]
    accuracy_after_stage1: dict[str, float]
    curve: list[dict[str, Any]]
    evaluation_point: dict[str, Any]
    definitions_learned: bool
    seconds: float
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any] | Record, source: str = "record") -> Record:
        """A record from its JSON form, checked (ImlbenchError naming `source` and what is wrong)."""
        if isinstance(data, Record):
            return data
        check(data, source)
        if record_kind(data) != "run":
            raise ImlbenchError(f"unreadable {source}: a diagnostic's record, not a run's")
        ok = data["status"] == "ok"
        return cls(key=data["key"], task=data["task"], learner=data["learner"], seed=int(data["seed"]),
                   pipeline=data["pipeline"], protocol=data.get("protocol") or {}, status=data["status"],
                   error=data.get("error"), versions=data.get("versions") or {},
                   scores=data["scores"] if ok else {}, accuracy=data["accuracy"] if ok else {},
                   accuracy_after_stage1=data["accuracy_after_stage1"] if ok else {},
                   curve=data["curve"] if ok else [], evaluation_point=data["evaluation_point"] if ok else {},
                   definitions_learned=bool(data["definitions_learned"]) if ok else False,
                   seconds=float(data["measurements"]["seconds"]["total"]) if ok else math.nan, raw=data)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def task_name(self) -> str:
        return self.task["name"]

    @property
    def learner_name(self) -> str:
        return self.learner["name"]

    @property
    def effect(self) -> float:
        return float(self.scores["iml_effect"])

    def group_key(self) -> str:
        """The one grouping of records: the identity minus the seed. Same names with other
        parameters or another protocol (e.g. --threshold) make another leaderboard row."""
        return json.dumps([self.task, self.learner, self.pipeline, self.protocol], sort_keys=True)

    def label(self) -> str:
        return f"{self.task_name}-{self.learner_name}-{self.pipeline}"
