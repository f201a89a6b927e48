"""Protocol v3's reading window (PROTOCOL §3): the test subsets and answer scores at every checkpoint
p … 2p of the scored stage, the fit closed at 2p unless --full-budget, the accuracies at the end of
every step before the scored one, and the learner's random_state as passed."""

from __future__ import annotations

import copy

import pytest

import imlbench
from imlbench.cli.parser import build_parser
from imlbench.core import seeds
from imlbench.core.protocol import PROTOCOL_VERSION
from imlbench.harness import stages
from imlbench.store.records import load_records, run_key
from imlbench.store.validation import problems

MEMORIZER = "windowplugins:Memorizer"  # learns every fit's rows at its checkpoint `learn_at`: p is known
SMALL = {"n_entities": 100}


def _run(out, seeds_=(0,), pipeline="two-stage", full_budget=False, **params):
    summary = imlbench.run(
        learner=MEMORIZER,
        seeds=list(seeds_),
        pipeline=pipeline,
        params={**SMALL, **params},
        out=out,
        full_budget=full_budget,
    )
    assert summary.attrs["problems"] == []
    return sorted(summary.attrs["records"], key=lambda r: r["seed"])


def _entries(record, first=None, last=None):
    stage = record["evaluation_point"]["stage"]
    return [
        e
        for e in record["curve"]
        if e["stage"] == stage and (first is None or first <= e["checkpoint"] <= (last or e["checkpoint"]))
    ]


@pytest.fixture(scope="module")
def windowed(tmp_path_factory):
    """Two seeds, p = 12 (past the dense start of the sparse schedule), a budget of 30 checkpoints."""
    out = tmp_path_factory.mktemp("window") / "results"
    return out, _run(out, (0, 1), learn_at=12, epochs=12, stage2_epochs=30)


def test_every_checkpoint_of_the_window_is_read_and_the_fit_ends_at_2p(windowed):
    _, records = windowed
    for record in records:
        assert record["protocol"] == {"version": PROTOCOL_VERSION, "definition_threshold": 0.98}
        assert record["evaluation_point"] == {"stage": "stage2", "checkpoint": 12}
        assert record["window"] == {"stage": "stage2", "first": 12, "last": 24, "target": 24, "short": False}
        assert record["full_budget"] is False and record["definitions_learned"]
        window = _entries(record, 12, 24)
        assert [e["checkpoint"] for e in window] == list(range(12, 25))
        assert all("accuracy" in e and set(e["answer_logprob"]) >= {"d1consis", "d2consis"} for e in window)
        assert record["curve"][-1]["checkpoint"] == 24  # closed at 2p, six checkpoints before its budget
        assert record["accuracy_at_end"] == record["curve"][-1]["accuracy"]
        assert record["answer_logprob"] == window[0]["answer_logprob"]
        before = _entries(record, 1, 11)
        assert [e["checkpoint"] for e in before if "accuracy" in e] == [c for c in range(1, 12) if stages.test_due(c)]
        assert not any("answer_logprob" in e for e in before)


def test_steps_before_the_scored_one_are_read_at_their_end(windowed):
    _, records = windowed
    for record in records:
        (end,) = record["step_ends"]
        assert end["stage"] == "stage1" and end["kinds"] == "all" and end["parts"] == ["stage1"]
        assert end["accuracy"] == record["accuracy_after_stage1"]
        assert end["train_accuracy"] == record["train_accuracy"]["after_stage1"]
        assert min(end["train_accuracy"].values()) == 1.0  # the memorizer fits stage 1 at its checkpoint 12


def test_the_record_carries_the_random_state_the_learner_was_given(windowed):
    out, records = windowed
    given = [seeds.derive_seed(r["seed"], seeds.LEARNER) for r in records]
    assert [r["learner_seed"] for r in records] == given and given[0] != given[1]
    for record in records:
        assert record["learner"]["params"]["random_state"] == 0  # the spec's, in the key, is unchanged
    loaded, found = load_records(out)  # the key check on reading holds
    assert found == [] and sorted(r.raw["learner_seed"] for r in loaded) == sorted(given)


def test_full_budget_runs_to_the_declared_end_under_its_own_key(windowed, tmp_path):
    out, default = windowed
    (record,) = _run(tmp_path, (0,), full_budget=True, learn_at=12, epochs=12, stage2_epochs=30)
    assert record["protocol"] == {"version": PROTOCOL_VERSION, "definition_threshold": 0.98, "full_budget": True}
    assert record["key"] != default[0]["key"] and record["full_budget"] is True
    assert record["window"] == default[0]["window"]
    assert record["curve"][-1]["checkpoint"] == 30 and record["accuracy_at_end"] == record["curve"][-1]["accuracy"]
    after = _entries(record, 25, 30)
    assert [e["checkpoint"] for e in after if "accuracy" in e] == [25, 30]  # sparse after 2p, and the end
    assert not any("answer_logprob" in e for e in after)
    assert _entries(record, 0, 24) == _entries(default[0], 0, 24)  # the same run up to 2p


def test_a_budget_shorter_than_2p_is_read_over_what_it_has_and_flagged(tmp_path):
    (record,) = _run(tmp_path, learn_at=4, stage2_epochs=6)
    assert record["window"] == {"stage": "stage2", "first": 4, "last": 6, "target": 8, "short": True}
    assert [e["checkpoint"] for e in _entries(record, 4) if "answer_logprob" in e] == [4, 5, 6]


def test_no_point_no_window_and_the_whole_budget(tmp_path):
    (record,) = _run(tmp_path, learn_at=99, epochs=2, stage2_epochs=12)
    assert record["window"] is None and not record["definitions_learned"]
    assert record["curve"][-1]["checkpoint"] == 12 and "accuracy" in record["curve"][-1]


def test_a_one_checkpoint_fit_is_read_at_its_checkpoint(tmp_path):
    (record,) = _run(tmp_path, learn_at=1, epochs=1, stage2_epochs=1)
    assert record["window"] == {"stage": "stage2", "first": 1, "last": 1, "target": 2, "short": False}
    assert [e["checkpoint"] for e in record["curve"]] == [0, 1]


def test_one_stage_has_no_step_ends_and_a_window_in_its_single_fit(tmp_path):
    (record,) = _run(tmp_path, pipeline="one-stage", learn_at=3, epochs=10)
    assert record["step_ends"] == [] and record["window"]["stage"] == "single"
    assert (record["window"]["first"], record["curve"][-1]["checkpoint"]) == (3, 6)


def test_three_stage_keeps_the_end_of_1a_and_of_1b(tmp_path):
    (record,) = _run(tmp_path, pipeline="three-stage", learn_at=2, epochs=3, stage2_epochs=5)
    first, second = record["step_ends"]
    assert (first["kinds"], second["kinds"]) == ("definitions", "rest")
    assert first["stage"] == second["stage"] == "stage1" and first["parts"] == second["parts"] == ["stage1"]
    definitions = {k: v for k, v in first["train_accuracy"].items() if k.endswith("/definition")}
    assert {"qd1consis/definition", "qd2incons/definition"} <= set(definitions)
    assert min(definitions.values()) == 1.0  # 1a fit the definitions
    assert second["train_accuracy"] == record["train_accuracy"]["after_stage1"]
    assert second["accuracy"] == record["accuracy_after_stage1"]
    assert record["window"] == {"stage": "stage2", "first": 2, "last": 4, "target": 4, "short": False}


def test_a_window_that_disagrees_with_the_curve_is_unreadable(windowed):
    _, records = windowed
    record = copy.deepcopy(records[0])
    assert problems(record) == []
    record["window"]["first"] = 11
    record["window"]["target"] = 22
    assert any(p.startswith("window") for p in problems(record))
    record = copy.deepcopy(records[0])
    del _entries(record, 20, 20)[0]["accuracy"]
    assert any(p.startswith("window") for p in problems(record))
    record = copy.deepcopy(records[0])
    record["learner_seed"] = -1
    assert any(p.startswith("learner_seed") for p in problems(record))


def test_full_budget_is_a_run_option_and_part_of_the_key_only_when_set():
    assert build_parser().parse_args(["run", "--full-budget"]).full_budget is True
    assert build_parser().parse_args(["run"]).full_budget is False
    plain, full = (imlbench.plan(learner="rf", task="synthetic-defs", seeds=1, full_budget=f)[0] for f in (False, True))
    assert "full_budget" not in plain.identity()["protocol"] and full.identity()["protocol"]["full_budget"] is True
    assert run_key(plain.identity()) != run_key(full.identity())


@pytest.mark.slow
def test_the_transformer_reads_every_checkpoint_of_its_window(tmp_path):
    """The transformer's default budget covers 2p on synthetic-defs seed 0 (about a minute)."""
    summary = imlbench.run(learner="transformer", task="synthetic-defs", seeds=[0], out=tmp_path)
    (record,) = summary.attrs["records"]
    assert record["status"] == "ok" and record["definitions_learned"]
    window = record["window"]
    assert window["first"] == record["evaluation_point"]["checkpoint"] and not window["short"]
    read = _entries(record, window["first"], window["target"])
    assert [e["checkpoint"] for e in read] == list(range(window["first"], window["target"] + 1))
    assert all("accuracy" in e and "answer_logprob" in e for e in read)
    assert record["curve"][-1]["checkpoint"] == window["target"] == window["last"]
    assert record["learner_seed"] == seeds.derive_seed(0, seeds.LEARNER)
