"""The tagged-digits task (rendering, views, leakage) and the convnet learner."""

import subprocess
import sys

import numpy as np
import pytest
from reference import render_examples_png

import imlbench
from imlbench.core.protocol import DEFINITION, QUESTION, ImageData, ImageQueries, TableData, TableQueries
from imlbench.core.specs import resolve
from imlbench.tasks.tagged_digits import GLYPH, TaggedDigits, handwriting
from imlbench.views.base import IMAGE, TABLE

SMALL = {"n_entities": 60, "n_renders": 2}
FAST_CONVNET = {"epochs": 3, "stage2_epochs": 3}


@pytest.fixture(scope="module")
def task():
    return TaggedDigits(**SMALL)


@pytest.fixture(scope="module")
def data(task):
    return task.generate(0)


def digit_blocks(images: np.ndarray) -> np.ndarray:
    """Every digit glyph of every image, (n * n_digits, 8, 8)."""
    n, _, width = images.shape
    blocks = images[:, :, GLYPH:].reshape(n, GLYPH, -1, GLYPH).transpose(0, 2, 1, 3)
    return blocks.reshape(-1, GLYPH, GLYPH)


def test_rendering_is_deterministic_per_seed(task, data):
    again = TaggedDigits(**SMALL).generate(0)
    for split, examples in (("stage1", data.stage1), ("test", data.test)):
        a = task.encode(IMAGE, data, examples, split).images
        b = task.encode(IMAGE, again, examples, split).images
        np.testing.assert_array_equal(a, b)
    other = task.generate(1)
    assert not np.array_equal(task.render(data, data.test, "test"), task.render(other, other.test, "test"))


def test_rendering_does_not_depend_on_position(task, data):
    order = np.random.default_rng(0).permutation(len(data.test))
    shuffled = task.render(data, data.test.select(order), "test")
    np.testing.assert_array_equal(shuffled, task.render(data, data.test, "test")[order])


def test_train_and_test_handwriting_are_disjoint(task, data):
    pools = data.info["render"]["pools"]
    for d in range(10):
        assert len(pools["test"][d]) and len(pools["train"][d])
        assert not set(pools["test"][d]) & set(pools["train"][d])
    glyphs, _ = handwriting()
    train_samples = {glyphs[i].tobytes() for d in range(10) for i in pools["train"][d]}
    test_samples = {glyphs[i].tobytes() for d in range(10) for i in pools["test"][d]}
    train_blocks = {
        b.tobytes()
        for split, ex in (("stage1", data.stage1), ("stage2", data.stage2))
        for b in digit_blocks(task.encode(IMAGE, data, ex, split).images)
    }
    test_blocks = {b.tobytes() for b in digit_blocks(task.encode(IMAGE, data, data.test, "test").images)}
    assert train_blocks <= train_samples
    assert test_blocks <= test_samples
    assert not train_blocks & test_blocks


def test_images_show_marker_and_code(task, data):
    images = task.encode(IMAGE, data, data.stage1, "stage1").images
    assert images.shape == (task.n_renders * len(data.stage1), 8, 8 * (1 + task.n_digits))
    assert images.dtype == np.float32 and images.min() >= 0 and images.max() <= 1
    markers = np.stack(list(data.info["render"]["markers"].values()))
    assert len({m.tobytes() for m in markers}) == len(markers) == 3 + task.n_phrasings
    first = images[: len(data.stage1)]
    for image, relation in zip(first, data.stage1.relation):
        np.testing.assert_array_equal(image[:, :GLYPH], data.info["render"]["markers"][relation])


def test_image_and_table_views_carry_the_same_labels_and_pixels(task, data):
    image = task.encode(IMAGE, data, data.stage1, "stage1")
    table = task.encode(TABLE, data, data.stage1, "stage1")
    assert isinstance(image, ImageData) and isinstance(table, TableData)
    np.testing.assert_array_equal(image.y, table.y)
    np.testing.assert_array_equal(image.label_space, table.label_space)
    np.testing.assert_array_equal(image.images.reshape(len(image.y), -1), table.X.to_numpy(np.float32))
    assert all(np.issubdtype(t, np.floating) for t in table.X.dtypes)
    np.testing.assert_array_equal(image.y, np.tile(data.stage1.target, task.n_renders))
    assert set(data.label_space) == set(data.vocab.roles["entity"])


def test_queries_carry_no_targets(task, data):
    queries = data.test.without_targets()
    image = task.encode(IMAGE, data, queries, "test")
    table = task.encode(TABLE, data, queries, "test")
    assert isinstance(image, ImageQueries) and isinstance(table, TableQueries)
    assert not hasattr(image, "y") and not hasattr(table, "y")
    assert len(image.images) == len(data.test)  # one render per query
    # the pixels do not depend on the target: a query is copy 0 of the training render
    np.testing.assert_array_equal(image.images, task.encode(IMAGE, data, data.test, "test").images[: len(data.test)])


def test_definition_and_question_of_a_variable_share_the_code_only(task, data):
    stage1 = data.stage1
    d = np.flatnonzero(stage1.kind == DEFINITION)[0]
    q = np.flatnonzero((stage1.kind == QUESTION) & (stage1.subject == stage1.subject[d]))[0]
    images = task.render(data, stage1.select(np.array([d, q])), "stage1")
    assert not np.array_equal(images[0, :, :GLYPH], images[1, :, :GLYPH])
    codes = data.info["render"]["code_digits"]
    assert len({tuple(c) for c in codes}) == len(codes)


def test_markers_are_far_from_every_digit(data):
    glyphs, _ = handwriting()
    flat = glyphs.reshape(len(glyphs), -1)
    for marker in data.info["render"]["markers"].values():
        assert np.abs(flat - marker.reshape(-1)).sum(axis=1).min() >= 12


def test_bad_parameters_are_rejected():
    with pytest.raises(imlbench.ImlbenchError, match="n_digits"):
        resolve("task", "tagged-digits", {"n_digits": 2, "n_entities": 200})
    with pytest.raises(imlbench.ImlbenchError, match="n_renders"):
        resolve("task", "tagged-digits", {"n_renders": 0})


def fit_predict(seed: int) -> np.ndarray:
    task = TaggedDigits(**SMALL)
    data = task.generate(0)
    learner = resolve("learner", "convnet", {**FAST_CONVNET, "random_state": seed, "device": "cpu"}).build()
    for _ in learner.fit(task.encode(IMAGE, data, data.stage1, "stage1")):
        pass
    for _ in learner.continue_fit(task.encode(IMAGE, data, data.stage2, "stage2")):
        pass
    return learner.predict(task.encode(IMAGE, data, data.test.without_targets(), "test"))


def test_convnet_same_seed_same_predictions():
    a, b = fit_predict(3), fit_predict(3)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= set(TaggedDigits(**SMALL).generate(0).label_space)
    code = (
        "import sys; sys.path.insert(0, 'tests'); from test_tagged_digits import fit_predict; "
        "print(','.join(map(str, fit_predict(3))))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent),
    )
    np.testing.assert_array_equal(a, np.array(other.stdout.strip().split(","), dtype=np.int64))


def test_convnet_end_to_end(tmp_path):
    summary = imlbench.run(
        learner="convnet", task="tagged-digits", seeds=1, out=tmp_path, params={**SMALL, **FAST_CONVNET}
    )
    record = summary.attrs["records"][0]
    assert record["status"] == "ok", record["error"]
    assert record["view"] == "image"
    assert {"d1consis", "d2consis", "q", "no_qd_baseline"} <= set(record["accuracy"])


def test_table_learners_read_the_pixels(tmp_path):
    summary = imlbench.run(
        learner="rf",
        task="tagged-digits",
        seeds=1,
        out=tmp_path,
        params={**SMALL, "n_estimators": 10, "stage2_estimators": 10},
    )
    record = summary.attrs["records"][0]
    assert record["status"] == "ok", record["error"]
    assert record["view"] == "table"


def test_show_writes_a_png(tmp_path):
    path = render_examples_png("tagged-digits", tmp_path / "x.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_through_the_command_line(tmp_path, capsys):
    """`imlbench show` as a user runs it: a picture for an image task, one line for any other."""
    from imlbench.cli import main

    assert main(["show", "tagged-digits", "--out", str(tmp_path / "digits.png")]) == 0
    assert (tmp_path / "digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().out
    assert main(["show", "synthetic-defs", "--out", str(tmp_path / "none.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("imlbench: error:") and "\n" not in err and "tagged-digits" in err
    assert not (tmp_path / "none.png").exists()


@pytest.mark.slow
def test_convnet_shows_implicit_meta_learning(tmp_path):
    """The paper's vision result at the default settings: d1consis above d2consis on seeds 0..2."""
    summary = imlbench.run(learner="convnet", task="tagged-digits", seeds=3, out=tmp_path)
    row = summary.iloc[0]
    records = summary.attrs["records"]
    assert all(r["status"] == "ok" for r in records)
    assert row["effect_mean"] > 20.0
    assert all(r["scores"]["iml_effect"] > 0 for r in records)
