"""What a record may hold (`problems`): the types, ranges and agreements a run writes.

`store.records.check` is the one validation and calls this on every record written or read; a
reader builds its tables from the records that pass. Each problem is a field, with why where that
helps. What a consistent forgery can still pass (every table edited alike, a copy rekeyed under
another seed) no reading can catch: `imlbench verify` reruns records and compares.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Iterable
from typing import Any

from imlbench.core.errors import ImlbenchError
from imlbench.core.pipelines import scored_after_other_steps
from imlbench.core.protocol import DEFAULT_THRESHOLD, SUBSETS

SEED_LIMIT = 2**32  # numpy's generators take seeds in [0, 2**32): no run can have another
MAX_MARGIN = 50.0  # points of accuracy: a wider margin would call any effect "none"
FLAGS = ("definitions_learned", "by_construction_null", "is_control", "full_budget")  # booleans a run writes


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
    if "learner_seed" in record and not valid_seed(record["learner_seed"]):
        bad.append(f"learner_seed ({record['learner_seed']!r}: a random_state is an integer in [0, 2**32))")
    protections = record.get("protections", {})
    if not (isinstance(protections, dict) and all(isinstance(v, bool) for v in protections.values())):
        bad.append("protections (a table of true or false)")
    seal = record.get("seal", {})
    entropy = seal.get("entropy", "0" * 32) if isinstance(seal, dict) else None
    if not (isinstance(entropy, str) and len(entropy) == 32 and all(c in "0123456789abcdef" for c in entropy)):
        bad.append("seal.entropy (32 hexadecimal digits)")
    if not _window(record.get("window")):
        bad.append("window")
    ends = record.get("step_ends", [])
    if not (isinstance(ends, list) and all(_step_end(e) for e in ends)):
        bad.append("step_ends")
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
    return bad + _window_agrees(record, curve, point)


def _window_agrees(record: dict[str, Any], curve: list[dict[str, Any]], point: dict[str, Any]) -> list[str]:
    """A reading window (protocol 3) starts at the evaluation point, and every checkpoint of it was
    evaluated; a run whose definitions were learned has one."""
    window = record.get("window")
    if window is None:
        missing = "window" in record and record["definitions_learned"]
        return ["window (none, where the definitions were learned)"] if missing else []
    read = [e for e in curve if e["stage"] == window["stage"] and window["first"] <= e["checkpoint"] <= window["last"]]
    if (window["stage"], window["first"]) != (point["stage"], point["checkpoint"]):
        return ["window (does not start at the evaluation point)"]
    if len(read) != window["last"] - window["first"] + 1 or any("accuracy" not in e for e in read):
        return ["window (not every checkpoint of it is an evaluated checkpoint of the curve)"]
    return []


def _window(window: Any) -> bool:
    """None (no evaluation point), or the checkpoints p … last of a stage, read toward 2p."""
    if window is None:
        return True
    return (
        isinstance(window, dict)
        and isinstance(window.get("stage"), str)
        and all(_count(window.get(k)) for k in ("first", "last", "target"))
        and 1 <= window["first"] <= window["last"] <= window["target"] == 2 * window["first"]
        and isinstance(window.get("short"), bool)
    )


def _step_end(entry: Any) -> bool:
    """A step before the scored one, at its end: what it trained on and the accuracies there."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("stage"), str)
        and _accuracies(entry.get("accuracy"))
        and _accuracies(entry.get("train_accuracy"))
    )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _curve_entry(entry: Any) -> bool:
    """A checkpoint: its stage and number, definition accuracies, and test accuracies where the
    test subsets were evaluated (at a cadence outside the reading window, at each checkpoint of it)."""
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


MAX_SEEDS = 100_000  # seeds one plan may run: far past any study, short of exhausting memory


def seed_list(seeds: int | Iterable[int]) -> list[int]:
    """A count or distinct seeds in [0, 2**32), at most MAX_SEEDS of them. A repeated seed is an
    error: it would count one seed's effect twice in a summary that has only one record for it."""
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ImlbenchError(f"seeds must be at least 1, got {seeds}")
        if seeds > MAX_SEEDS:
            raise ImlbenchError(f"seeds must be a count of at most {MAX_SEEDS}, got {seeds}; or list the seeds to run")
        return list(range(int(seeds)))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise ImlbenchError(f"bad seeds {seeds!r}: expected a count or a list of seeds")
    chosen = list(seeds)
    bad = [s for s in chosen if isinstance(s, bool) or not (isinstance(s, numbers.Integral) and valid_seed(int(s)))]
    if not chosen or bad:
        raise ImlbenchError(
            f"bad seeds {_shown(chosen)}: expected integers from 0 to 2**32 - 1"
            + (f" (not {_shown(bad)})" if bad else "")
        )
    if len(chosen) > MAX_SEEDS:
        raise ImlbenchError(f"{len(chosen)} seeds listed; at most {MAX_SEEDS}")
    chosen = [int(s) for s in chosen]
    repeated = sorted(s for s, n in Counter(chosen).items() if n > 1)
    if repeated:
        raise ImlbenchError(
            f"seed {', '.join(map(str, repeated))} listed more than once in {_shown(chosen)}; list each seed once"
        )
    return chosen


def _shown(values: list[Any], most: int = 10) -> str:
    """A list as an error message shows it: its first `most` items."""
    return repr(values) if len(values) <= most else f"[{', '.join(map(repr, values[:most]))}, ...]"


def parse_seeds(text: str) -> int | list[int]:
    """`5` = seeds 0..4; `0,3,7` = those seeds; `2-4` = seeds 2, 3, 4 (`0-0` = seed 0 alone). Seeds
    lie in [0, 2**32) and a range holds at most MAX_SEEDS, checked before any list is built."""
    try:
        if text.isdigit():
            return int(text)
        seeds: list[int] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            low, sep, high = part.partition("-")
            first, last = (int(low), int(high)) if sep else (int(part), int(part))
            if not (valid_seed(first) and valid_seed(last)) or last - first >= MAX_SEEDS - len(seeds):
                raise ImlbenchError(
                    f"bad --seeds {text[:80]!r}: {part[:80]!r} is out of range; seeds lie in "
                    f"[0, 2**32) and at most {MAX_SEEDS} run at once"
                )
            seeds += range(first, last + 1)
        if seeds:
            return seeds
    except ValueError:
        pass
    raise ImlbenchError(f"bad --seeds {text[:80]!r}; expected a count (5), a list (0,3,7) or a range (2-4)")
