"""The README's example task plugin (examples/imlbench-plugin-example, `imlbench_nearest.colours`):
its data follows the protocol's subset design, and it runs end to end as `module:Class`."""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pytest
from conftest import TESTS

import imlbench
from imlbench.protocol import ALL, DEFINITION, HELD_OUT, QUESTION, SUBSET_CODE, SUBSET_DESIGN, TAGS

EXAMPLE = TESTS.parent / "examples" / "imlbench-plugin-example"
TARGET = "imlbench_nearest.colours:Colours"
# at tag_reliability 1 the reversed subsets (the correlation ablation) are empty
IN_USE = {s.name for s in SUBSET_DESIGN if s.reverse_of is None}


@pytest.fixture(autouse=True)
def example_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))


def test_the_pyproject_registers_the_task_under_its_entry_point_group():
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["imlbench.tasks"] == {"colours": TARGET}


def test_the_task_builds_the_protocols_subsets():
    from imlbench_nearest.colours import PHRASINGS, Colours

    data = Colours(n_things=100).generate(0)
    again = Colours(n_things=100).generate(0)
    for split in ("stage1", "stage2", "test"):  # a pure function of the seed
        assert np.array_equal(getattr(data, split).target, getattr(again, split).target)
        assert np.array_equal(getattr(data, split).subject, getattr(again, split).subject)
    assert not np.array_equal(Colours(n_things=100).generate(1).test.subject, data.test.subject)

    vocab, test = data.vocab, data.test
    colour = dict(zip(test.subject.tolist(), test.target.tolist()))  # the test asks every thing
    assert len(colour) == sum(data.info["variables_per_subset"].values()) == 100
    assert np.array_equal(data.label_space, np.sort(vocab.roles["colour"]))
    trained = {vocab.id(p) for p in PHRASINGS["trained"]}
    asked_in = {HELD_OUT: {vocab.id(p) for p in PHRASINGS[HELD_OUT]}, ALL: {vocab.id(p) for p in PHRASINGS[ALL]}}
    assert not trained & asked_in[HELD_OUT]

    for s in SUBSET_DESIGN:
        code = SUBSET_CODE[s.name]
        tested = test.select(test.subset == code)
        assert (len(tested) > 0) == (s.name in IN_USE), s.name
        if not len(tested):
            continue
        assert set(tested.relation.tolist()) == asked_in[s.tested_on], s.name
        things = set(tested.subject.tolist())
        asked = data.stage1.select((data.stage1.subset == code) & (data.stage1.kind == QUESTION))
        assert set(asked.subject.tolist()) == (things if s.questions else set()), s.name
        assert set(asked.relation.tolist()) <= trained  # stage 1 never asks a held-out phrasing
        assert all(colour[v] == t for v, t in zip(asked.subject.tolist(), asked.target.tolist()))
        for stage, split in ((1, data.stage1), (2, data.stage2)):
            defined = split.select((split.subset == code) & (split.kind == DEFINITION))
            assert len(defined) == (len(things) if s.defined_in == stage else 0), (s.name, stage)
            if len(defined):
                assert set(defined.relation.tolist()) == {vocab.id(s.tag)}, s.name
                agrees = [colour[v] == t for v, t in zip(defined.subject.tolist(), defined.target.tolist())]
                assert all(agrees) if s.consistent else not any(agrees), s.name
    assert set(data.stage2.kind.tolist()) == {DEFINITION}


def test_the_task_runs_end_to_end_as_module_and_class(tmp_path):
    from imlbench_nearest.colours import Colours

    summary = imlbench.run(
        learner="rf",
        task=TARGET,
        seeds=[0],
        out=tmp_path,
        params={"n_things": 100, "n_estimators": 25, "stage2_estimators": 25},
    )
    assert not summary.attrs["problems"] and len(summary.attrs["records"]) == 1
    record = summary.attrs["records"][0]
    assert record["status"] == "ok" and record["error"] is None
    assert record["task"]["target"] == TARGET and record["task"]["params"] == {"n_things": 100, "n_colours": 8}
    data = Colours(n_things=100).generate(0)  # the harness ran on exactly the task's data
    assert [record["sizes"][s] for s in ("stage1", "stage2", "test")] == [
        len(data.stage1),
        len(data.stage2),
        len(data.test),
    ]
    assert set(record["accuracy"]) == set(record["accuracy_after_stage1"]) == IN_USE
    assert all(0.0 <= a <= 1.0 for a in record["accuracy"].values())
    assert set(record["definition_accuracy"]) == set(TAGS)
    assert record["scores"]["iml_effect"] == pytest.approx(
        100 * (record["accuracy"]["d1consis"] - record["accuracy"]["d2consis"])
    )
    assert record["accuracy"]["q"] > 0.5  # the forest learns to answer questions about the things
    assert summary["n_seeds"].tolist() == [1] and math.isfinite(summary["effect_mean"].iloc[0])
