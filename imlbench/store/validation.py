"""What a record may hold (`problems`): the types, ranges and agreements a run writes.

`store.records.check` is the one validation and calls this on every record written or read; a
reader builds its tables from the records that pass. Each problem is a field, with why where that
helps. What a consistent forgery can still pass (every table edited alike, a copy rekeyed under
another seed) no reading can catch: `imlbench verify` reruns records and compares.
"""

from __future__ import annotations

import math
from typing import Any

from imlbench.core.pipelines import scored_after_other_steps
from imlbench.core.protocol import DEFAULT_THRESHOLD, SUBSETS

SEED_LIMIT = 2**32  # numpy's generators take seeds in [0, 2**32): no run can have another
MAX_MARGIN = 50.0  # points of accuracy: a wider margin would call any effect "none"
FLAGS = ("definitions_learned", "by_construction_null", "is_control")  # booleans a run writes


def record_kind(record: dict[str, Any]) -> str:
    return "diagnostic" if "diagnostic" in record else "run"


def valid_seed(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < SEED_LIMIT


def problems(record: dict[str, Any]) -> list[str]:
    """The fields a reader reads that do not have the shape, range or agreement a run writes."""
    bad = [k for k in ("task", "learner") if not isinstance(record[k], dict) or "name" not in record[k]]
    if not valid_seed(record["seed"]):
        bad.append(f"seed ({record['seed']!r}: a run's seed is an integer in [0, 2**32))")
    if record_kind(record) == "diagnostic":
        if record["status"] == "ok" and not (
            isinstance(record["rows"], list) and all(isinstance(r, dict) for r in record["rows"])
        ):
            bad.append("rows")
        return bad
    if record["status"] == "ok":
        found = _shapes(record)
        bad += found or _subsets(record) + _agreements(record)
    return bad


def _shapes(record: dict[str, Any]) -> list[str]:
    bad = [
        k
        for k in ("scores", "accuracy", "accuracy_after_stage1", "measurements", "versions")
        if not isinstance(record[k], dict)
    ]
    if "scores" not in bad and any(
        not (v is None or isinstance(v, bool) or _number(v) and not math.isinf(v)) for v in record["scores"].values()
    ):
        bad.append("scores")  # NaN is a score of an absent subset; scores are recomputed on reading
    for name in ("accuracy", "accuracy_after_stage1", "accuracy_at_end", "definition_accuracy"):
        if name not in bad and not _accuracies(record.get(name, {})):
            bad.append(name)
    try:
        float(record["measurements"]["seconds"]["total"])
    except (KeyError, TypeError, ValueError):
        bad.append("measurements.seconds.total")
    if not isinstance(record["curve"], list) or not all(_curve_entry(e) for e in record["curve"]):
        bad.append("curve")
    point = record["evaluation_point"]
    if not (isinstance(point, dict) and isinstance(point.get("stage"), str) and _count(point.get("checkpoint"))):
        bad.append("evaluation_point")
    bad += [f"{k} ({record[k]!r}: true or false)" for k in FLAGS if k in record and not isinstance(record[k], bool)]
    margin = record.get("margin")
    if margin is not None and not (_number(margin) and 0 < margin <= MAX_MARGIN):
        bad.append(f"margin ({margin!r}: a task's margin is a number of points in (0, {MAX_MARGIN:g}])")
    if not _count(record.get("stage1_checkpoints", 0)):
        bad.append("stage1_checkpoints")
    train = record.get("train_accuracy")
    if train is not None and not (isinstance(train, dict) and all(v is None or _accuracies(v) for v in train.values())):
        bad.append("train_accuracy")
    sizes = record.get("sizes", {})
    if not (isinstance(sizes, dict) and all(_count(v) for v in sizes.values())):
        bad.append("sizes")
    return bad


def _subsets(record: dict[str, Any]) -> list[str]:
    """Every table of test accuracies has every subset the task's data has variables in."""
    sizes = record.get("sizes", {})
    needed = [s for s in SUBSETS if sizes.get(f"variables_{s}", 0) > 0]
    tables = [
        (name, record[name]) for name in ("accuracy", "accuracy_after_stage1", "accuracy_at_end") if name in record
    ]
    tables += [
        (f"curve (checkpoint {e['checkpoint']} of {e['stage']})", e["accuracy"])
        for e in record["curve"]
        if "accuracy" in e
    ]
    bad = []
    for name, table in tables:
        missing = [s for s in needed if s not in table]
        if missing:
            bad.append(f"{name} (no {', '.join(missing)}, where the task has variables)")
    return bad[:3]


def _agreements(record: dict[str, Any]) -> list[str]:
    """The tables a run copies from its curve equal the curve's, and its flags follow from them. A
    record with no curve (built by hand, never by a run) has nothing to agree with."""
    curve, point = record["curve"], record["evaluation_point"]
    bad = []
    if record.get("by_construction_null") and not scored_after_other_steps(record):
        bad.append("by_construction_null (true for a one-stage run: nothing came before its stage)")
    if not curve:
        return bad
    at = [e for e in curve if (e["stage"], e["checkpoint"]) == (point["stage"], point["checkpoint"])]
    if len(at) != 1 or "accuracy" not in at[0]:
        return [*bad, "evaluation_point (not one evaluated checkpoint of the curve)"]
    entry, differs = at[0], "differs from the curve's at the evaluation point"
    if record["accuracy"] != entry["accuracy"]:
        bad.append(f"accuracy ({differs})")
    if "definition_accuracy" in record and record["definition_accuracy"] != entry["definitions"]:
        bad.append(f"definition_accuracy ({differs})")
    if "accuracy_at_end" in record and record["accuracy_at_end"] != curve[-1].get("accuracy"):
        bad.append("accuracy_at_end (differs from the curve's last checkpoint)")
    threshold = (record.get("protocol") or {}).get("definition_threshold", DEFAULT_THRESHOLD)
    if entry["definitions"] and _number(threshold):
        learned = min(entry["definitions"].values()) >= threshold
        if record["definitions_learned"] != learned:
            bad.append(f"definitions_learned (the evaluation point's definition accuracies say {learned})")
    return bad


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _curve_entry(entry: Any) -> bool:
    """A checkpoint: its stage and number, definition accuracies, and test accuracies where the
    test subsets were evaluated (protocol v2 evaluates them at a cadence)."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("stage"), str)
        and _count(entry.get("checkpoint"))
        and _accuracies(entry.get("definitions"))
        and ("accuracy" not in entry or _accuracies(entry["accuracy"]))
    )


def _accuracies(table: Any) -> bool:
    """A table of accuracies: finite numbers in [0, 1] (never NaN or inf)."""
    return isinstance(table, dict) and all(_number(v) and 0 <= v <= 1 for v in table.values())
