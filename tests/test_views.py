"""Views as objects: the registry, what each view knows of its data, and adding a view."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import install_distribution
from viewplugins import TRIPLES

import imlbench
from imlbench.core.protocol import DEFINITION, TableData, TaskData
from imlbench.core.registry import VIEWS
from imlbench.core.specs import ImlbenchError
from imlbench.harness.stages import choose_view
from imlbench.learners.controls import Majority, TagBlind
from imlbench.store.records import iter_record_files, read_record
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.tasks.tagged_digits import TaggedDigits
from imlbench.views.base import IMAGE, TABLE, TOKENS, get_view, register_view, view_of


@pytest.fixture(scope="module")
def data() -> TaskData:
    return SyntheticDefs(n_entities=60).generate(0)


def test_registry_holds_the_builtin_views_and_names_the_valid_ones(data):
    assert VIEWS.names() == ["image", "table", "text", "tokens"]
    assert get_view("tokens") is TOKENS
    with pytest.raises(ImlbenchError, match=r"unknown view 'txt'; valid: image, table, text, tokens; did you mean"):
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


def install_plugin_package(site: Path) -> None:
    """`tests/viewplugins.py` installed as pip would install a plugin package: the module and a
    dist-info folder whose entry points name its view, task and pipeline."""
    shutil.copy(Path(__file__).parent / "viewplugins.py", site / "viewplugins.py")
    install_distribution(
        site,
        "imlbench-viewplugins",
        {
            "imlbench.views": {"triples": "viewplugins:TRIPLES"},
            "imlbench.tasks": {"triple-task": "viewplugins:TripleTask"},
            "imlbench.pipelines": {"definitions-last": "viewplugins:DEFINITIONS_LAST"},
        },
    )


def test_a_plugin_view_and_pipeline_run_in_worker_processes(tmp_path):
    """Registered through entry points only: the driver, each worker and each learner's process look
    them up by name, and the records say they ran."""
    site = tmp_path / "site"
    site.mkdir()
    install_plugin_package(site)
    env = {**os.environ, "PYTHONPATH": str(site), "IMLBENCH_JOBS": "2"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "imlbench",
            "run",
            "--learner",
            "majority",
            "--task",
            "triple-task",
            "--pipeline",
            "definitions-last",
            "--seeds",
            "2",
            "--param",
            "n_entities=60",
            "--out",
            str(tmp_path / "r"),
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    records = [read_record(p) for p in iter_record_files(tmp_path / "r")]
    assert len(records) == 2 and all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert {r["view"] for r in records} == {"triples"} and {r["pipeline"] for r in records} == {"definitions-last"}
    assert all(r["stage1_checkpoints"] > 0 for r in records)


def test_tag_blind_needs_a_view_that_keeps_the_tag_apart():
    with pytest.raises(ImlbenchError, match="offers none it can use"):  # the triples view keeps no tag apart
        register_view(TRIPLES)
        try:
            imlbench.plan(learner="tag-blind", task="viewplugins:TripleTask", params={"base": "majority"})
        finally:
            VIEWS.unregister("triples")
