"""Views as objects: the registry, what each view knows of its data, and adding a view."""

from __future__ import annotations


import numpy as np
import pytest

import imlbench
from imlbench.learners.controls import Majority, TagBlind
from imlbench.core.protocol import DEFINITION, TableData, TaskData
from imlbench.core.registry import ImlbenchError
from imlbench.harness.stages import choose_view
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.tasks.tagged_digits import TaggedDigits
from imlbench.views.base import IMAGE, TABLE, TOKENS, VIEWS, get_view, register_view, view_of


@pytest.fixture(scope="module")
def data() -> TaskData:
    return SyntheticDefs(n_entities=60).generate(0)


def test_registry_holds_the_builtin_views_and_names_the_valid_ones(data):
    assert list(VIEWS)[:3] == ["table", "tokens", "image"]
    assert get_view("tokens") is TOKENS
    with pytest.raises(ImlbenchError, match=r"unknown view 'txt'; valid: table, tokens, image"):
        get_view("txt")
    with pytest.raises(ValueError, match="already registered"):
        register_view(type("OtherTable", (type(TABLE),), {})())
    with pytest.raises(TypeError, match="View instance"):
        register_view(TableData)
    with pytest.raises(TypeError, match=r"get_view\('table'\)"):  # tasks take the view object
        SyntheticDefs().encode("table", data, data.stage1, "stage1")


@pytest.mark.parametrize("view", [TABLE, TOKENS], ids=lambda v: v.name)
def test_each_view_knows_its_rows_labels_and_classes(view, data):
    train, queries = view.encode(data, data.stage1), view.encode(data, data.test.without_targets())
    assert type(train) is view.data_class and type(queries) is view.queries_class
    assert view_of(train) is view and view_of(queries) is view
    np.testing.assert_array_equal(view.labels(train), data.stage1.target)
    assert view.n_rows(train) == len(data.stage1) and view.n_rows(queries) == len(data.test)
    with pytest.raises(TypeError, match="no view's data"):
        view_of(data.stage1)


def test_image_view_counts_renders_and_is_drawn_by_its_task():
    task = TaggedDigits(n_entities=40, n_renders=2)
    digits = task.generate(0)
    train = task.encode(IMAGE, digits, digits.stage2, "stage2")
    np.testing.assert_array_equal(IMAGE.labels(train), np.tile(digits.stage2.target, 2))
    assert view_of(train) is IMAGE and IMAGE.n_rows(train) == 2 * len(digits.stage2)
    with pytest.raises(TypeError, match="Task.encode"):
        IMAGE.encode(digits, digits.stage2)
    with pytest.raises(TypeError, match="keeps no tag apart"):
        IMAGE.hide_tags(train)
    with pytest.raises(ValueError, match="needs a `tag` column"):
        TABLE.hide_tags(task.encode(TABLE, digits, digits.stage2, "stage2"))


def test_hiding_tags_removes_exactly_the_tag(data):
    defs = data.stage1.select(data.stage1.kind == DEFINITION)
    table = TABLE.encode(data, defs)
    blind = TABLE.hide_tags(table)
    assert "tag" in table.X.columns and list(blind.X.columns) == [c for c in table.X.columns if c != "tag"]
    tokens = TOKENS.encode(data, defs)
    hidden = TOKENS.hide_tags(tokens)
    tag_ids = data.vocab.ids("tag")
    assert set(np.unique(tokens.tokens[:, 0])) == set(tag_ids[:2])  # stage 1 defines with tag1 and tag2
    assert set(np.unique(hidden.tokens[:, 0])) == {tag_ids[0]}
    np.testing.assert_array_equal(hidden.tokens[:, 1:], tokens.tokens[:, 1:])


def test_tag_blind_runs_only_where_a_view_keeps_the_tag_apart():
    blind = TagBlind(base="majority")
    assert blind.supported_views() == ("table", "tokens", "text")  # majority reads every view; image hides no tag
    assert choose_view(blind, SyntheticDefs(), "tag-blind", "synthetic-defs") == "table"
    with pytest.raises(ImlbenchError, match="offers none it can use"):
        choose_view(blind, TaggedDigits(), "tag-blind", "tagged-digits")
    assert choose_view(Majority(), TaggedDigits(), "majority", "tagged-digits") == "table"  # the learner's order


# -- adding a view: one View subclass (plus its plain data classes) and register_view ---------------


@pytest.fixture
def triples():
    """A plugin's view, registered when its module is imported (in the learner's process too)."""
    import viewplugins

    yield register_view(viewplugins.TripleView())
    del VIEWS["triples"]


def test_a_new_view_is_one_class(triples, tmp_path):
    summary = imlbench.run(learner="majority", task="viewplugins:TripleTask", seeds=1, out=tmp_path,
                           params={"n_entities": 60})
    record = summary.attrs["records"][0]
    assert record["status"] == "ok", record["error"]
    assert record["view"] == "triples"
    with pytest.raises(ImlbenchError, match="offers none it can use"):  # the view keeps no tag apart
        imlbench.plan(learner="tag-blind", task="viewplugins:TripleTask", params={"base": "majority"})
