"""`imlbench verify` reruns records and reports any whose results differ: the forgeries that pass
every check on reading (an edit made consistently, a copy rekeyed under another seed) are caught."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import imlbench
from imlbench.cli import main
from imlbench.core.errors import ImlbenchError
from imlbench.store.records import identity_of, record_path, run_key
from imlbench.verify import Verdict, difference, request_of, verify

FEW_TREES = {"n_entities": 100, "n_estimators": 5, "stage2_estimators": 5, "trees_per_checkpoint": 5}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "results"
    imlbench.run(learner="rf", seeds=3, params=FEW_TREES, out=out)
    return out


def forge(results: Path, seed: int, change, new_seed: int | None = None) -> Path:
    """A forger's edit of seed `seed`'s record: `change` it, give it `new_seed` (as a copy, the
    original kept), recompute its key and file name; written as plain JSON, no check on the way."""
    (old,) = (results / "records").rglob(f"*-seed{seed}-*.json")
    record = json.loads(old.read_text())
    change(record)
    if new_seed is None:
        old.unlink()
    else:
        record["seed"] = new_seed
    record["key"] = run_key(identity_of(record))
    path = record_path(results, identity_of(record))
    path.write_text(json.dumps(record))
    return path


def d2_zero_everywhere(record):
    """d2consis at 0 in every table a reader could compare it with: the curve's at the evaluation
    point (and so the point's accuracy) and the last checkpoint (accuracy_at_end)."""
    point = record["evaluation_point"]
    entries = [e for e in record["curve"] if (e["stage"], e["checkpoint"]) == (point["stage"], point["checkpoint"])]
    for table in [e["accuracy"] for e in entries] + [record["curve"][-1]["accuracy"]]:
        table["d2consis"] = 0.0
    record["accuracy"] = entries[0]["accuracy"]
    record["accuracy_at_end"] = record["curve"][-1]["accuracy"]


def test_consistent_forgeries_pass_reading_and_are_caught_by_verify(results, tmp_path, capsys):
    copy = tmp_path / "results"
    shutil.copytree(results / "records", copy / "records")
    flipped = forge(copy, 1, lambda r: r.update(by_construction_null=False))
    edited = forge(copy, 2, d2_zero_everywhere)
    rekeyed = forge(copy, 0, lambda r: None, new_seed=7)
    assert imlbench.leaderboard(copy).attrs["problems"] == []  # every one reads as a real run

    assert main(["verify", str(copy), "-q"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and lines[-1].startswith("verify: 1 of 4 records reproduced; 3 differ")
    by_path = {line.split()[1].rstrip(":"): line for line in lines[:-1]}
    assert (
        by_path[str(flipped)].startswith("DIFFERS")
        and "by_construction_null: recorded False vs recomputed True" in (by_path[str(flipped)])
    )
    assert "accuracy.d2consis: recorded 0.0 vs recomputed" in by_path[str(edited)]
    assert by_path[str(rekeyed)].startswith("DIFFERS    ") and "recomputed" in by_path[str(rekeyed)]
    (real,) = [line for line in lines[:-1] if "-seed0-" in line]
    assert real.split()[0] == "ok"


def test_a_sample_is_drawn_by_its_seed_and_untouched_records_reproduce(results):
    first = verify(results, sample=2, seed=3)
    assert [v.status for v in first] == ["ok", "ok"]
    again = verify(results, sample=2, seed=3)
    assert [v.path for v in again] == [v.path for v in first]


def test_dropped_fields_and_subsets_are_caught_where_reading_cannot(results, tmp_path):
    """Dropping q from every table with its variable count passes reading; the rerun has it."""
    copy = tmp_path / "results"
    shutil.copytree(results / "records", copy / "records")

    def drop_q(record):
        for table in [record["accuracy"], record["accuracy_after_stage1"], record["accuracy_at_end"]] + [
            e["accuracy"] for e in record["curve"] if "accuracy" in e
        ]:
            table.pop("q")
        record["sizes"]["variables_q"] = 0

    path = forge(copy, 0, drop_q)
    assert imlbench.leaderboard(copy).attrs["problems"] == []
    (verdict,) = [v for v in verify(copy) if v.path == path]
    assert verdict.status == "DIFFERS" and "recorded nothing vs recomputed" in verdict.detail


def test_unreadable_and_unrerunnable_records_are_lines_too(results, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(results / "records", copy / "records")
    broken = forge(copy, 0, lambda r: r.update(margin=1e6))
    other = forge(copy, 1, lambda r: r["learner"]["params"].update(no_such_parameter=3))
    verdicts = {v.path: v for v in verify(copy, sample=10)}
    assert verdicts[broken].status == "UNREADABLE" and "margin" in verdicts[broken].detail
    assert verdicts[other].status == "FAILED" and "no_such_parameter" in verdicts[other].detail
    assert "\n" not in verdicts[broken].line() and verdicts[broken].line().startswith("UNREADABLE")


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "records").mkdir()
    assert main(["verify", str(tmp_path)]) == 2
    assert main(["verify", str(tmp_path / "nothing")]) == 2
    with pytest.raises(ImlbenchError, match="--sample"):
        verify(tmp_path, sample=0)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "no finished run records" in err[0] and "no records/ folder" in err[1]


def test_difference_names_the_first_field_that_differs():
    assert difference({"a": [1, {"b": 0.5}]}, {"a": [1, {"b": 0.5 + 1e-12}]}, "x") is None
    assert difference({"a": [1, {"b": 0.5}]}, {"a": [1, {"b": 0.6}]}, "x") == "x.a[1].b: recorded 0.5 vs recomputed 0.6"
    assert difference(float("nan"), float("nan"), "s") is None
    assert difference(True, 1, "flag") == "flag: recorded True vs recomputed 1"
    assert difference([1], [1, 2], "c") == "c: recorded 1 entries vs recomputed 2"
    assert Verdict(Path("r.json"), "ok").line() == "ok         r.json"


def as_protocol_2(record):
    """A protocol-2 record of the same run: v2 keyed the protocol without full_budget, ran the
    whole budget and carried no window, step ends or learner seed."""
    record["protocol"] = {"version": 2, "definition_threshold": record["protocol"]["definition_threshold"]}
    for field in ("window", "full_budget", "step_ends", "learner_seed"):
        record.pop(field)


def test_an_older_protocol_record_is_rerun_under_this_one_and_compared_where_both_measure(tmp_path):
    """A protocol-2 record (the whole budget) reproduces under protocol 3 (the fit ends at 2p); an
    edit inside the window is caught, one past 2p is not measured by the rerun."""
    params = {"n_entities": 100, "learn_at": 3, "epochs": 3, "stage2_epochs": 12}
    imlbench.run(learner="windowplugins:Memorizer", seeds=3, params=params, out=tmp_path, full_budget=True)

    def past_2p(record):
        as_protocol_2(record)
        record["curve"][-1]["accuracy"]["d2consis"] = 0.5  # checkpoint 12, past 2p = 6
        record["accuracy_at_end"] = record["curve"][-1]["accuracy"]

    def inside(record):
        as_protocol_2(record)
        (entry,) = [e for e in record["curve"] if e["checkpoint"] == 5]
        entry["accuracy"]["d2consis"] = 0.5

    paths = [forge(tmp_path, 0, as_protocol_2), forge(tmp_path, 1, past_2p), forge(tmp_path, 2, inside)]
    assert imlbench.leaderboard(tmp_path).attrs["problems"] == []
    verdicts = {v.path: v for v in verify(tmp_path)}
    assert [verdicts[p].status for p in paths] == ["ok", "ok", "DIFFERS"]
    assert "curve.stage2@5.accuracy.d2consis: recorded 0.5 vs recomputed" in verdicts[paths[2]].detail
    older = json.loads(paths[0].read_text())
    older["protocol"]["version"] = 1
    with pytest.raises(ImlbenchError, match="protocol version 1"):
        request_of(older)


def test_a_record_of_a_subclass_that_takes_fewer_parameters_is_rerunnable():
    """ConvNet and TaggedDigits inherit a neutral value (`steps_per_epoch`, `context_docs`) for a
    parameter they do not take: the spec rebuilt from a record must not pass it."""
    from imlbench.verify import spec_of

    records = Path(__file__).resolve().parents[1] / "docs" / "results" / "protocol-3" / "records" / "tagged-digits"
    record = json.loads(next((records / "convnet").glob("one-stage-seed0-*.json")).read_text())
    assert "steps_per_epoch" not in spec_of("learner", record["learner"]).params
    assert "context_docs" not in spec_of("task", record["task"]).params
