"""Run records: one JSON file per run, written atomically, keyed by what determines the result
(plugin code versions included), and checked against that key whenever one is read.

A record also says what ran it (`store.provenance`), outside the key: the same run on another
machine is the same run, with its provenance visible.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from imlbench.core.errors import ImlbenchError
from imlbench.core.names import safe_name
from imlbench.core.specs import Spec
from imlbench.store.provenance import environment, versions  # noqa: F401  (re-exported)
from imlbench.store.validation import problems, record_kind

# fields a record must hold for the summary, leaderboard, report and diagnostics tables to read it,
# by kind (a diagnostic's record names its diagnostic) and status
REQUIRED = {
    ("run", "ok"): (
        "key",
        "task",
        "learner",
        "seed",
        "pipeline",
        "scores",
        "accuracy",
        "accuracy_after_stage1",
        "curve",
        "evaluation_point",
        "definitions_learned",
        "measurements",
        "versions",
    ),
    ("run", "error"): ("key", "task", "learner", "seed", "pipeline", "error"),
    ("diagnostic", "ok"): ("key", "diagnostic", "options", "task", "learner", "seed", "rows"),
    ("diagnostic", "error"): ("key", "diagnostic", "options", "task", "learner", "seed", "error"),
}


def run_identity(task: Spec, learner: Spec, seed: int, pipeline: str, protocol: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": task.to_dict(),
        "learner": learner.to_dict(),
        "seed": seed,
        "pipeline": pipeline,
        "protocol": protocol,
        **code_identity(task, learner),
    }


def code_identity(task: Spec, learner: Spec) -> dict[str, Any]:
    """`{"code": {...}}`: the plugins' code versions, part of the key so that a changed plugin's old
    records are not reused; empty for specs that carry none (built by hand, not resolved)."""
    code = {kind: spec.code for kind, spec in (("task", task), ("learner", learner)) if spec.code}
    return {"code": code} if code else {}


# what a record's key is computed from, by kind; `code` too where the record has it
IDENTITY = {
    "run": ("task", "learner", "seed", "pipeline", "protocol"),
    "diagnostic": ("diagnostic", "options", "task", "learner", "seed", "protocol"),
}


def identity_of(record: dict[str, Any]) -> dict[str, Any]:
    """The identity a record was keyed by, read back from the record itself."""
    return {k: record[k] for k in (*IDENTITY[record_kind(record)], "code") if k in record}


def run_key(identity: dict[str, Any]) -> str:
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def record_path(out_dir: Path, identity: dict[str, Any]) -> Path:
    """results/records/<task>/<learner>/<pipeline>-seed<seed>-<key>.json"""
    key = run_key(identity)
    return (
        Path(out_dir)
        / "records"
        / safe_name(identity["task"]["name"])
        / safe_name(identity["learner"]["name"])
        / f"{identity['pipeline']}-seed{identity['seed']}-{key}.json"
    )


def write_atomic(path: Path, write: Callable[[TextIO], None]) -> None:
    """Write through `write(file)` into a uniquely named temporary file in the same folder, then
    rename: a reader never sees half a file, and concurrent writers never share a temporary name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide results from the group
        with os.fdopen(fd, "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (only readable by setting it: done under a lock, restored at once)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Check a record as a reader would (`check`), then write it: nothing unreadable is written."""
    check(record, f"record for {path}")
    write_atomic(path, lambda f: json.dump(record, f, indent=1, sort_keys=True, allow_nan=True))


def read_record(path: Path) -> dict[str, Any]:
    """A record file's JSON object, checked (`problems`), or one ImlbenchError line naming the file."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImlbenchError(
            f"unreadable record file {path}: {type(exc).__name__}: {exc}; delete it or rerun with --force"
        ) from exc
    check(record, f"record file {path}", Path(path))
    return record


def check(record: Any, source: str, path: Path | None = None) -> None:
    """The one validation of a record (ImlbenchError naming `source` and what is wrong). A record
    read from `path` must also carry the key of its own identity, in its file name too: an edited
    seed or parameter would otherwise count as another run. The fields' types, ranges and agreements
    are `validation.problems`; what a consistent forgery still passes, `imlbench verify` catches."""
    if not isinstance(record, dict) or (record_kind(record), record.get("status")) not in REQUIRED:
        raise ImlbenchError(f"unreadable {source}: not an imlbench record; delete it or rerun with --force")
    missing = [k for k in REQUIRED[record_kind(record), record["status"]] if k not in record] or problems(record)
    if missing:
        raise ImlbenchError(
            f"unreadable {source}: missing or malformed {', '.join(missing)}; delete it or rerun with --force"
        )
    if path is not None:
        key = run_key(identity_of(record))
        if record["key"] != key or not path.stem.endswith(f"-{key}"):
            raise ImlbenchError(
                f"unreadable {source}: its key or file name is not the key {key} of what it "
                f"says ran (task, learner, seed, pipeline, protocol): edited or renamed; "
                f"delete it or rerun with --force"
            )


def prepare_out(out_dir: str | Path) -> Path:
    """Create the results folder and prove it is writable, before any training: a bad --out must
    not surface only after hours of runs."""
    if not str(out_dir).strip():  # Path("") is the working directory: never what was meant
        raise ImlbenchError("--out is empty; name a results folder (it is created if missing)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ImlbenchError(f"--out {out} is a file, not a directory; name a folder (it is created if missing)")
    try:
        (out / "records").mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out / "records", prefix=".tmp-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ImlbenchError(
            f"--out {out} is not a writable folder: {exc.strerror or exc}; choose another --out"
        ) from exc
    return out


def iter_json_files(folder: Path) -> list[Path]:
    """The record files under a folder (none when it is missing), temporary files left out."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*.json") if not p.name.startswith(".tmp-")) if folder.is_dir() else []


def iter_record_files(out_dir: Path) -> list[Path]:
    return iter_json_files(Path(out_dir) / "records")


def load_records(out_dir: Path) -> tuple[list[RunRecord], list[str]]:
    """The one loader: every readable run record under out_dir, plus one error line per unreadable
    file. Their `scores` are empty: scores are never read from a file, `scoring.runs` recomputes
    them (`load_scored`, and the strict `load_results` for reports)."""
    records, found, seen = [], [], {}
    for path in iter_record_files(out_dir):
        try:
            record = RunRecord.from_json(read_record(path))
        except ImlbenchError as exc:
            found.append(str(exc))
            continue
        if record.key in seen:  # a copy under another name would count its seed twice
            found.append(f"record file {path} is a copy of {seen[record.key]} (same key); delete one")
            continue
        seen[record.key] = path
        records.append(record)
    return records, found


@dataclass(frozen=True)
class RunRecord:
    """One run's record, typed: what ran (its identity), how it ended, and for a finished run its
    accuracies and learning curve. The harness writes it (`write_record` checks it first), the
    store reads and checks it, scoring recomputes its `scores` from the accuracies (`scoring.runs`:
    a record's written scores are never trusted). `raw` keeps the record as written, for what only
    some runs carry (train accuracies, sizes, tracebacks)."""

    key: str
    task: dict[str, Any]
    learner: dict[str, Any]
    seed: int
    pipeline: str
    protocol: dict[str, Any]
    status: str
    error: str | None
    versions: dict[str, str]
    accuracy: dict[str, float]
    accuracy_after_stage1: dict[str, float]
    curve: list[dict[str, Any]]
    evaluation_point: dict[str, Any]
    definitions_learned: bool
    seconds: float
    code: dict[str, str]
    raw: dict[str, Any] = field(repr=False, compare=False)
    scores: dict[str, Any] = field(default_factory=dict)  # filled by scoring.runs.scored

    @classmethod
    def from_json(cls, data: dict[str, Any] | RunRecord, source: str = "record") -> RunRecord:
        """A record from its JSON form, checked (ImlbenchError naming `source` and what is wrong)."""
        if isinstance(data, RunRecord):
            return data
        check(data, source)
        if record_kind(data) != "run":
            raise ImlbenchError(f"unreadable {source}: a diagnostic's record, not a run's")
        ok = data["status"] == "ok"
        return cls(
            key=data["key"],
            task=data["task"],
            learner=data["learner"],
            seed=int(data["seed"]),
            pipeline=data["pipeline"],
            protocol=data.get("protocol") or {},
            status=data["status"],
            error=data.get("error"),
            versions=data.get("versions") or {},
            accuracy=data["accuracy"] if ok else {},
            accuracy_after_stage1=data["accuracy_after_stage1"] if ok else {},
            curve=data["curve"] if ok else [],
            evaluation_point=data["evaluation_point"] if ok else {},
            definitions_learned=bool(data["definitions_learned"]) if ok else False,
            seconds=float(data["measurements"]["seconds"]["total"]) if ok else math.nan,
            code=data.get("code") or {},
            raw=data,
        )

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
        return json.dumps(
            [self.task, self.learner, self.pipeline, self.protocol] + ([self.code] if self.code else []), sort_keys=True
        )

    def label(self) -> str:
        return f"{self.task_name}-{self.learner_name}-{self.pipeline}"
