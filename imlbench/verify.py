"""`imlbench verify`: rerun records and compare what they say with what the run computes.

Reading checks a record's types, ranges and agreements (`store.validation`) and that it carries the
key of what it says ran. A forger who edits every table alike, or copies a record under another
seed and rekeys it, passes both; no edit passes a rerun. `verify` rebuilds each record's run from
its identity (task and learner specs, seed, pipeline, protocol), runs it in a temporary folder with
the same engines as `imlbench run`, and compares the results: accuracies, curve, evaluation point,
train accuracies, flags, sizes, scores. Not compared: the key and code versions, timings and
memory, library versions, the machine, and `learner_info`. A run is deterministic given its
identity on one machine with the same libraries; a record from another machine may differ, and its
line then says what differed in the versions or the accelerator.

A record of an older protocol that this one can rerun (`RERUNS`: protocol 2, which drove every fit
to its whole budget) is rerun under the current protocol and compared on what both measure
(`overlap`): the evaluation point, the accuracies and answer scores there, `accuracy_after_stage1`,
the definitions, the flags and sizes, and every curve checkpoint up to the rerun's 2p that has test
accuracies in both.

Rerunning imports the learner and task classes the records name, as `imlbench run` does.
"""

from __future__ import annotations

import math
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imlbench import api
from imlbench.core.errors import ImlbenchError, one_line
from imlbench.core.pipelines import get_pipeline, scored_after_other_steps
from imlbench.core.protocol import DEFAULT_THRESHOLD, PROTOCOL_VERSION
from imlbench.core.specs import Spec, check_params, code_version, load_target, validate
from imlbench.execution.engines import resolve_jobs
from imlbench.harness.runner import RunRequest
from imlbench.store.records import identity_of, iter_record_files, read_record, record_kind, run_key

# what a rerun is not expected to reproduce (the identity is the request's, by construction)
# (`steps` is the declaration of the pipeline the record names, which records before it did not carry;
# `families` the commands that declared the run, which a rerun's command does not)
NOT_COMPARED = (
    "key",
    "code",
    "versions",
    "environment",
    "measurements",
    "learner_info",
    "error",
    "traceback",
    "steps",
    "families",
    "protections",  # what the platform offered the run, not what it computed
)
TOLERANCE = 1e-9  # accuracies and scores equal up to rounding noise (a run on one machine repeats exactly)
RERUNS = (2,)  # older protocol versions rerun under this one and compared on their overlap
# what an older protocol's record and its rerun under this one both measure (with the curve's overlap)
OVERLAP = (
    "evaluation_point",
    "accuracy",
    "answer_logprob",
    "accuracy_after_stage1",
    "definition_accuracy",
    "definitions_learned",
    "by_construction_null",
    "is_control",
    "margin",
    "sizes",
    "view",
)


@dataclass(frozen=True)
class Verdict:
    """One record file's outcome: "ok", "DIFFERS", "FAILED" (could not be rerun) or "UNREADABLE"."""

    path: Path
    status: str
    detail: str = ""

    def line(self) -> str:
        return f"{self.status:<10} {self.path}" + (f": {self.detail}" if self.detail else "")


def verify(
    folder: str | Path,
    sample: int | None = None,
    seed: int = 0,
    jobs: int | str = 1,
    executor: str | Any = None,
    timeout: float | None = None,
    memory_limit: str | int | None = None,
    verbose: bool = False,
    report: Callable[[Verdict], None] | None = None,
) -> list[Verdict]:
    """Rerun the finished run records under `folder` (`sample` of them, drawn with `seed`; all by
    default) and compare each with its rerun. Unreadable record files are reported too. `report` is
    called with each verdict as it is known; the verdicts are returned in file order."""
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
        raise ImlbenchError(f"--sample must be a whole number of at least 1, got {sample!r}")
    root = Path(folder)
    if not (root / "records").is_dir():
        raise ImlbenchError(f"{root} holds no records/ folder; point at a results directory")
    report = report or (lambda verdict: None)
    verdicts, runs = [], []
    for path in iter_record_files(root):
        try:
            record = read_record(path)
        except ImlbenchError as exc:
            verdicts.append(Verdict(path, "UNREADABLE", one_line(str(exc))))
            report(verdicts[-1])
            continue
        if record_kind(record) == "run" and record["status"] == "ok":
            runs.append((path, record))
    if not runs and not verdicts:
        raise ImlbenchError(f"{root / 'records'} holds no finished run records to verify")
    if sample is not None and sample < len(runs):
        runs = sorted(random.Random(seed).sample(runs, sample), key=lambda pair: pair[0])
    batch = resolve_jobs(jobs, max(1, len(runs)))
    with tempfile.TemporaryDirectory(prefix="imlbench-verify-") as scratch:
        for start in range(0, len(runs), batch):
            for verdict in _rerun(
                runs[start : start + batch], Path(scratch), jobs, executor, timeout, memory_limit, verbose
            ):
                verdicts.append(verdict)
                report(verdict)
    return sorted(verdicts, key=lambda v: v.path)


def _rerun(
    runs: list[tuple[Path, dict[str, Any]]], scratch: Path, jobs, executor, timeout, memory_limit, verbose: bool
) -> list[Verdict]:
    """Rerun a batch of records in `scratch` (forced: a rerun never reuses an earlier one)."""
    verdicts, requests, records = [], {}, dict(runs)
    for path, record in runs:
        try:
            requests[path] = request_of(record)
        except ImlbenchError as exc:
            verdicts.append(Verdict(path, "FAILED", f"cannot rerun: {one_line(str(exc))}"))
    if requests:
        unique = list({run_key(r.identity()): r for r in requests.values()}.values())  # a copy reruns once
        api.execute_plan(unique, scratch, True, verbose, executor, jobs, timeout, memory_limit)
    for path, request in requests.items():
        try:
            rerun = read_record(request.path(scratch))
        except (ImlbenchError, OSError) as exc:
            verdicts.append(Verdict(path, "FAILED", f"the rerun wrote no record: {one_line(str(exc))}"))
            continue
        if rerun["status"] != "ok":
            verdicts.append(Verdict(path, "FAILED", f"the rerun failed: {one_line(rerun.get('error') or '')}"))
            continue
        verdicts.append(compare(path, records[path], rerun))
    return verdicts


def request_of(record: dict[str, Any]) -> RunRequest:
    """The run a record says it is, rebuilt from its specs with the code installed now (a record of
    an older protocol in `RERUNS`: the same run under the current protocol)."""
    protocol = record.get("protocol") or {}
    version = protocol.get("version")
    if version != PROTOCOL_VERSION and version not in RERUNS:
        raise ImlbenchError(
            f"protocol version {version!r}; this imlbench runs {PROTOCOL_VERSION} "
            f"(and reruns records of {', '.join(map(str, RERUNS))})"
        )
    threshold = protocol.get("definition_threshold", DEFAULT_THRESHOLD)
    get_pipeline(record["pipeline"])  # an unknown pipeline: one line, before any run
    task, learner = spec_of("task", record["task"]), spec_of("learner", record["learner"])
    full_budget, sealed = protocol.get("full_budget") is True, protocol.get("sealed") is True
    entropy = (record.get("seal") or {}).get("entropy") if sealed else None
    if sealed and not isinstance(entropy, str):
        raise ImlbenchError("it is sealed but holds no entropy to replay it with (seal.entropy)")
    request = RunRequest(task, learner, record["seed"], record["pipeline"], threshold, full_budget, sealed, entropy)
    said = {k: v for k, v in identity_of(record).items() if k != "code"}
    rebuilt = {k: v for k, v in request.identity().items() if k != "code"}
    if version != PROTOCOL_VERSION and _settings(protocol) == _settings(rebuilt["protocol"]):
        said["protocol"] = rebuilt["protocol"]  # the same run, under this protocol
    if run_key(said) != run_key(rebuilt):  # compared as keyed: a tuple parameter is the list it was written as
        raise ImlbenchError("its specs do not rebuild the identity it records (a parameter the code no longer has?)")
    return request


def _settings(protocol: dict[str, Any]) -> dict[str, Any]:
    """A protocol's settings apart from its version (the threshold, full_budget where set)."""
    return {k: v for k, v in protocol.items() if k != "version"}


def spec_of(kind: str, written: dict[str, Any]) -> Spec:
    """A spec from its form in a record: a parameter left out there was at its `identity_neutral`
    value (else at the class's default); checked and validated as `resolve` does."""
    if not isinstance(written.get("target"), str) or not isinstance(written.get("params", {}), dict):
        raise ImlbenchError(f"its {kind} names no target and parameters")
    name, target = written["name"], written["target"]
    cls = load_target(kind, target)
    neutral = dict(getattr(cls, "identity_neutral", {}))
    defaults = cls.param_defaults()
    # a subclass may inherit a neutral value for a parameter it does not take (ConvNet, TaggedDigits)
    taken = {k: v for k, v in neutral.items() if k in defaults}
    params = {**defaults, **taken, **check_params(kind, name, cls, written.get("params", {}))}
    code = code_version(kind, target, cls)
    spec = Spec(kind, name, target, params, written.get("version", 1), "record", code=code, neutral=neutral)
    validate(spec)
    return spec


def compare(path: Path, record: dict[str, Any], rerun: dict[str, Any]) -> Verdict:
    """The verdict on a record against its rerun: the first difference, and which fields differ (for
    a record of an older protocol, among what both measure: `overlap`)."""
    said, found_now = record, rerun
    if (record.get("protocol") or {}).get("version") != (rerun.get("protocol") or {}).get("version"):
        said, found_now = overlap(record, rerun)
    fields = sorted(set(said) | set(found_now), key=str)
    found = {k: d for k in fields if k not in NOT_COMPARED and (d := difference(said.get(k), found_now.get(k), k))}
    if not found:
        return Verdict(path, "ok")
    first, *others = found
    detail = found[first] + (f" (also differ: {', '.join(others)})" if others else "")
    return Verdict(path, "DIFFERS", detail + _where(record, rerun))


def overlap(record: dict[str, Any], rerun: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What an older protocol's record and its rerun under this one both measure: `OVERLAP`, stage
    1's training accuracies where a step came before the scored one, and the curve's checkpoints up
    to the rerun's 2p (its whole curve where it has no window) that have test accuracies in both,
    keyed `stage@checkpoint`, with their test and definition accuracies."""
    window = rerun.get("window")
    limit = window["target"] if window else math.inf

    def evaluated(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {
            f"{e['stage']}@{e['checkpoint']}": {"accuracy": e["accuracy"], "definitions": e["definitions"]}
            for e in r.get("curve", [])
            if "accuracy" in e and e["checkpoint"] <= limit
        }

    curves = evaluated(record), evaluated(rerun)
    shared = set(curves[0]) & set(curves[1])
    found = []
    for r, curve in zip((record, rerun), curves):
        fields = {k: r.get(k) for k in OVERLAP}
        fields["curve"] = {k: v for k, v in curve.items() if k in shared}
        if scored_after_other_steps(r):
            fields["train_accuracy"] = {"after_stage1": (r.get("train_accuracy") or {}).get("after_stage1")}
        found.append(fields)
    return found[0], found[1]


def difference(recorded: Any, recomputed: Any, where: str) -> str | None:
    """The first place where two JSON values differ, as `where: recorded X vs recomputed Y`."""
    if isinstance(recorded, dict) and isinstance(recomputed, dict):
        for key in sorted(set(recorded) | set(recomputed), key=str):
            if key not in recorded or key not in recomputed:
                return f"{where}.{key}: recorded {_shown(recorded, key)} vs recomputed {_shown(recomputed, key)}"
            found = difference(recorded[key], recomputed[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(recorded, list) and isinstance(recomputed, list):
        if len(recorded) != len(recomputed):
            return f"{where}: recorded {len(recorded)} entries vs recomputed {len(recomputed)}"
        return next(
            (d for i, (a, b) in enumerate(zip(recorded, recomputed)) if (d := difference(a, b, f"{where}[{i}]"))),
            None,
        )
    if _number(recorded) and _number(recomputed):
        same = recorded == recomputed or abs(recorded - recomputed) <= TOLERANCE
        if same or math.isnan(recorded) and math.isnan(recomputed):
            return None
    elif type(recorded) is type(recomputed) and recorded == recomputed:
        return None
    return f"{where}: recorded {recorded!r} vs recomputed {recomputed!r}"


def _shown(table: dict[str, Any], key: str) -> str:
    return repr(table[key]) if key in table else "nothing"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _where(record: dict[str, Any], rerun: dict[str, Any]) -> str:
    """What differs in how the two ran (library versions, accelerator, code), which may explain a
    difference that is no edit."""
    ran, here = record.get("versions") or {}, rerun.get("versions") or {}
    notes = [
        f"{k} {ran.get(k)} here {here.get(k)}"
        for k in sorted(here)
        if k != "imlbench_commit" and ran.get(k) != here.get(k)
    ]
    accelerator = [(r.get("environment") or {}).get("accelerator") for r in (record, rerun)]
    if accelerator[0] != accelerator[1]:
        notes.append(f"accelerator {accelerator[0]} here {accelerator[1]}")
    if record.get("code") != rerun.get("code"):
        notes.append(f"code {record.get('code')} here {rerun.get('code')}")
    return f"; recorded with {', '.join(notes[:3])}" if notes else ""


def summary_line(verdicts: list[Verdict], seconds: float) -> str:
    """`verify: 3 of 4 records reproduced; 1 differ, 1 unreadable (12s)`."""
    counts = {s: sum(v.status == s for v in verdicts) for s in ("ok", "DIFFERS", "FAILED", "UNREADABLE")}
    said = {"DIFFERS": "differ", "FAILED": "could not be rerun", "UNREADABLE": "unreadable"}
    shown = ", ".join(f"{counts[s]} {how}" for s, how in said.items() if counts[s])
    reran = counts["ok"] + counts["DIFFERS"] + counts["FAILED"]
    return (
        f"verify: {counts['ok']} of {reran} records reproduced" + (f"; {shown}" if shown else "") + f" ({seconds:.0f}s)"
    )
