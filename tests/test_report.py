"""Sweeps, figures and the report on a small real results directory; the steps-controlled
stage-2 batch knob of the transformer."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import imlbench
from imlbench.cli import main
from imlbench.core.specs import ImlbenchError, resolve
from imlbench.learners.transformer import Transformer
from imlbench.outputs.figures import plot
from imlbench.outputs.report import report
from imlbench.scoring.runs import load_results
from imlbench.sweep import parse_grid, split_values, sweep
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.views.base import encode

RF = {"n_entities": 100, "n_estimators": 10, "stage2_estimators": 10}
GRID = {"n_entities": [100], "n_estimators": [5, 10], "stage2_estimators": [10]}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """Two seeds of a tiny rf run, a control, and a two-point sweep (one point is the run itself)."""
    out = tmp_path_factory.mktemp("results")
    imlbench.run(learner="rf", task="synthetic-defs", seeds=2, params=RF, out=out)
    imlbench.run(learner="majority", task="synthetic-defs", seeds=2, params={"n_entities": 100}, out=out)
    sweep("rf", "synthetic-defs", GRID, seeds=2, out=out)
    return out


def _cli(argv: list[str]) -> int:
    return main(argv)


# -- sweep ---------------------------------------------------------------------------------------


def test_parse_grid_reads_toml_values_and_keeps_lists_and_strings_whole():
    grid = parse_grid(
        [
            "tag_reliability=0.5,0.7,1.0",
            "stage2_batch_size=16, 64,256",
            "fractions=[1, 2],[3, 4]",
            'label="a,b",c',
            "flag=true,false",
        ]
    )
    assert grid["tag_reliability"] == [0.5, 0.7, 1.0] and isinstance(grid["tag_reliability"][2], float)
    assert grid["stage2_batch_size"] == [16, 64, 256] and all(type(v) is int for v in grid["stage2_batch_size"])
    assert grid["fractions"] == [[1, 2], [3, 4]]
    assert grid["label"] == ["a,b", "c"]
    assert grid["flag"] == [True, False]
    assert split_values("{a = 1, b = 2},x") == ["{a = 1, b = 2}", "x"]


@pytest.mark.parametrize("items", [[], ["novalue"], ["=1,2"], ["a=1,,2"], ["a=1", "a=2"], ["a=[1,2"], ['a="x']])
def test_parse_grid_rejects_bad_input(items):
    with pytest.raises(ImlbenchError):
        parse_grid(items)


def test_sweep_scores_each_grid_point_and_reuses_runs(results):
    csv = next((results / "sweeps").glob("*.csv"))
    frame = pd.read_csv(csv)
    assert len(frame) == 2 and list(frame["param.n_estimators"]) == [5, 10]
    assert {"effect_mean", "ci_low", "ci_high", "verdict", "effects", "n_seeds"} <= set(frame.columns)
    assert (frame["n_seeds"] == 2).all()
    # the grid point equal to the plain run is that run: same leaderboard row, same records
    board = imlbench.leaderboard(results)
    assert "rf[n_estimators=10,stage2_estimators=10]" in set(board["learner"])
    assert len(board.drop_duplicates(["task", "learner", "pipeline"])) == 3  # no row of its own
    shared = board[board["learner"] == "rf[n_estimators=10,stage2_estimators=10]"]
    assert len(shared) == 2 and any(shared["family"].str.startswith("sweep: "))  # it joined the sweep's family
    again = sweep("rf", "synthetic-defs", GRID, seeds=2, out=results)
    pd.testing.assert_series_equal(again["effect_mean"], frame["effect_mean"], check_names=False, atol=1e-3)


def test_sweep_fails_before_running_on_a_bad_value(tmp_path):
    with pytest.raises(ImlbenchError):
        sweep("rf", "synthetic-defs", {"n_estimators": [5, "many"]}, seeds=1, out=tmp_path)
    assert not (tmp_path / "records").exists()


# -- figures and report --------------------------------------------------------------------------


def test_plot_writes_png_and_svg_figures(results, tmp_path):
    paths = plot(results, tmp_path / "figures")
    names = {p.name for p in paths}
    assert {"leaderboard.png", "leaderboard.svg"} <= names
    assert sum(n.startswith("curves-") and n.endswith(".png") for n in names) == 3  # one per run group
    assert sum(n.startswith("sweep-") and n.endswith(".png") for n in names) == 1
    for path in paths:
        assert path.is_file() and path.stat().st_size > 10_000
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            text = path.read_text()
            assert "<svg" in text and "IML effect" in text


def test_report_builds_markdown_with_verdicts_table_figures_and_versions(results, tmp_path):
    path = report(results, tmp_path / "docs" / "report.md")
    text = path.read_text()
    assert "## Leaderboard" in text and "| task | learner | pipeline |" in text
    assert "rf[n_estimators=5,stage2_estimators=10] on synthetic-defs[n_entities=100] (two-stage): " in text
    assert " over 2 seeds" in text and "— control" in text
    assert "## Sweep" in text and "Versions:" in text and "numpy=" in text and "stage1" in text
    figures = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert len(figures) == 5  # leaderboard, one sweep, three curve figures
    for figure in figures:
        assert (path.parent / figure).is_file()


def test_cli_sweep_plot_report(results, tmp_path, capsys):
    assert (
        _cli(
            [
                "sweep",
                "--learner",
                "rf",
                "--task",
                "synthetic-defs",
                "--param",
                "n_entities=100",
                "--param",
                "n_estimators=5,10",
                "--param",
                "stage2_estimators=10",
                "--seeds",
                "2",
                "--out",
                str(results),
                "-q",
            ]
        )
        == 0
    )
    assert "n_estimators" in capsys.readouterr().out
    assert _cli(["plot", str(results), "--out", str(tmp_path / "f"), "--formats", "png"]) == 0
    assert (tmp_path / "f" / "leaderboard.png").is_file() and not list((tmp_path / "f").glob("*.svg"))
    assert _cli(["report", str(results), "--out", str(tmp_path / "r.md")]) == 0
    assert (tmp_path / "r.md").is_file()


def test_empty_or_missing_directory_fails_loudly(tmp_path):
    for target in (tmp_path / "missing", tmp_path):
        for call in (lambda t=target: plot(t, tmp_path / "f"), lambda t=target: report(t, tmp_path / "r.md")):
            with pytest.raises(ImlbenchError) as info:
                call()
            assert "\n" not in str(info.value)
    (tmp_path / "records").mkdir()
    with pytest.raises(ImlbenchError, match="no run records"):
        plot(tmp_path, tmp_path / "f")


@pytest.mark.parametrize("corruption", ["garbage", "not a record", "missing curve"])
def test_corrupt_record_fails_loudly(results, tmp_path, corruption):
    copy = tmp_path / "results"
    shutil.copytree(results / "records", copy / "records")
    victim = sorted((copy / "records").rglob("*.json"))[0]
    if corruption == "garbage":
        victim.write_text("{not json")
    elif corruption == "not a record":
        victim.write_text("[1, 2, 3]")
    else:
        record = json.loads(victim.read_text())
        del record["curve"]
        victim.write_text(json.dumps(record))
    for call in (
        lambda: load_results(copy),
        lambda: plot(copy, tmp_path / "f"),
        lambda: report(copy, tmp_path / "r.md"),
    ):
        with pytest.raises(ImlbenchError) as info:
            call()
        assert "\n" not in str(info.value) and victim.name in str(info.value)


def test_report_and_plot_default_to_the_results_folder(results, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(results, tmp_path / "results", ignore=shutil.ignore_patterns("figures", "report.*"))
    assert _cli(["report"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {Path('results') / 'report.md'}"
    assert (tmp_path / "results" / "report.md").is_file() and (tmp_path / "results" / "figures").is_dir()
    assert _cli(["plot", "--formats", "png"]) == 0
    assert all(Path(line).parent == Path("results/figures") for line in capsys.readouterr().out.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # nothing in the working directory


def test_a_truncated_record_is_skipped_with_one_line_and_the_rest_is_built(results, tmp_path, capsys):
    copy = tmp_path / "results"
    shutil.copytree(results / "records", copy / "records")
    files = sorted((copy / "records").rglob("*.json"))
    files[0].write_text(files[0].read_text()[:200])  # a record cut short, as by a full disk
    assert _cli(["report", str(copy)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and files[0].name in err[0] and err[0].endswith("; skipped")
    text = (copy / "report.md").read_text()
    assert f"{len(files) - 1} run records" in text and (copy / "figures" / "leaderboard.png").is_file()
    assert _cli(["plot", str(copy), "--formats", "png"]) == 1
    assert len(capsys.readouterr().err.splitlines()) == 1
    # nothing readable at all: one line saying why, nothing written
    for path in files:
        path.write_text("{")
    assert _cli(["report", str(copy), "--out", str(tmp_path / "none.md")]) == 2
    assert not (tmp_path / "none.md").exists()


# -- the steps-controlled stage-2 batch knob -----------------------------------------------------

SMALL = dict(n_layers=1, d_model=16, n_heads=2, epochs=1, batch_size=64, stage2_epochs=2, device="cpu")


@pytest.fixture(scope="module")
def tokens():
    data = SyntheticDefs(n_entities=60).generate(0)
    return encode("tokens", data, data.stage1), encode("tokens", data, data.stage2)


@pytest.fixture(scope="module")
def after_stage1(tokens) -> Transformer:
    learner = Transformer(**SMALL)
    for _ in learner.fit(tokens[0]):
        pass
    return learner


def _stage2_steps(after_stage1, stage2, **params) -> int:
    learner = copy.deepcopy(after_stage1)
    learner.set_params(**params)
    before = learner.n_steps_
    assert sum(1 for _ in learner.continue_fit(stage2)) == learner.stage2_epochs
    return learner.n_steps_ - before


def test_steps_per_epoch_makes_step_count_independent_of_batch_size(tokens, after_stage1):
    stage2 = tokens[1]
    n = len(stage2.tokens)
    free = {b: _stage2_steps(after_stage1, stage2, stage2_batch_size=b) for b in (4, 16)}
    assert free == {b: 2 * -(-n // b) for b in (4, 16)}  # off: one pass per epoch, steps depend on the batch
    controlled = {
        b: _stage2_steps(after_stage1, stage2, stage2_batch_size=b, stage2_steps_per_epoch=5) for b in (4, 2 * n)
    }
    assert set(controlled.values()) == {10}  # 5 steps x 2 epochs, whatever the batch size


def test_steps_per_epoch_sees_every_document_equally_often():
    learner = Transformer(stage2_steps_per_epoch=7)
    learner.rng_, learner.stream_ = np.random.default_rng(0), np.zeros(0, dtype=np.int64)
    seen = np.concatenate([b for _ in range(4) for b in learner._epoch_batches(30, 16, 7)])
    counts = np.bincount(seen, minlength=30)
    assert len(seen) == 4 * 7 * 16 and counts.max() - counts.min() <= 1


def test_steps_knob_defaults_to_off_and_rejects_negative():
    assert resolve("learner", "transformer").params["stage2_steps_per_epoch"] == 0
    with pytest.raises(ImlbenchError):
        resolve("learner", "transformer", {"stage2_steps_per_epoch": -1})
