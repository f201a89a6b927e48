"""The harness: pipelines, the evaluation point, records, resume, determinism, errors."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_TASK, TESTS

import imlbench
from imlbench.cli import main
from imlbench.core.specs import ImlbenchError
from imlbench.store.records import iter_record_files, read_record

FAST_MLP = {"epochs": 3, "stage2_epochs": 3}


def run(out, **kw):
    kw.setdefault("task", "synthetic-defs")
    kw.setdefault("params", dict(SMALL_TASK))
    return imlbench.run(out=out, **kw)


def strip_measurements(record):
    """A record without its timings, as canonical JSON (so that NaN scores compare equal)."""
    return json.dumps({k: v for k, v in record.items() if k != "measurements"}, sort_keys=True)


def test_run_writes_records_and_leaderboard(out):
    summary = run(
        out,
        learner="rf",
        seeds=2,
        pipeline="two-stage,one-stage",
        params={**SMALL_TASK, "n_estimators": 10, "stage2_estimators": 10},
    )
    assert len(summary) == 2 and set(summary["pipeline"]) == {"two-stage", "one-stage"}
    assert (summary["n_seeds"] == 2).all()
    records = summary.attrs["records"]
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    r = records[0]
    for key in (
        "accuracy",
        "curve",
        "scores",
        "versions",
        "definition_accuracy",
        "definitions_learned",
        "train_accuracy",
        "sizes",
        "measurements",
        "task",
        "learner",
        "key",
    ):
        assert key in r
    assert r["task"]["params"]["n_entities"] == 100 and r["learner"]["params"]["n_estimators"] == 10
    assert r["scores"]["iml_effect"] == pytest.approx(100 * (r["accuracy"]["d1consis"] - r["accuracy"]["d2consis"]))
    assert len(iter_record_files(out)) == 4
    board = (out / "leaderboard.csv").read_text().splitlines()
    assert board[0].startswith("family,task,learner,pipeline,n_seeds,n_failed") and len(board) == 3


def test_evaluation_point_is_the_first_checkpoint_with_definitions_learned(out):
    record = run(out, learner="rf", seeds=1, params={**SMALL_TASK, "trees_per_checkpoint": 5}).attrs["records"][0]
    curve = record["curve"]
    assert curve[0]["checkpoint"] == 0  # after stage 1, before stage 2
    learned = [min(e["definitions"].values()) >= 0.98 for e in curve]
    first = learned.index(True)
    assert record["definitions_learned"] and first > 0 and not any(learned[:first])
    assert record["evaluation_point"]["checkpoint"] == curve[first]["checkpoint"]
    assert record["accuracy"] == curve[first]["accuracy"]  # the test subsets are always evaluated there
    # protocol v3: the fit ends at the end of its reading window, 2p (within 150 trees, 5 a checkpoint)
    p = record["evaluation_point"]["checkpoint"]
    assert curve[-1]["checkpoint"] == min(2 * p, 150 // 5) == record["window"]["last"]
    assert all("accuracy" in e for e in curve if e["checkpoint"] >= p)


def test_definitions_never_learned_are_flagged_and_scored_at_the_best_checkpoint(out):
    summary = run(out, learner="majority", seeds=2)
    assert summary["n_definitions_not_learned"].iloc[0] == 2
    assert all(r["definitions_learned"] is False for r in summary.attrs["records"])


def test_rerun_reuses_records_and_resume_computes_only_missing_seeds(out, capsys):
    params = {**SMALL_TASK, **FAST_MLP}
    first = run(out, learner="mlp", seeds=3, params=params)
    files = iter_record_files(out)
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    files[1].unlink()  # as if the run had been killed before seed 1 finished
    second = run(out, learner="mlp", seeds=3, params=params, verbose=True)
    err = capsys.readouterr().err
    assert err.count("cached") == 2
    assert {p: p.stat().st_mtime_ns for p in files if p != files[1]} == {p: mtimes[p] for p in files if p != files[1]}
    assert [strip_measurements(r) for r in first.attrs["records"]] == [
        strip_measurements(r) for r in second.attrs["records"]
    ]
    forced = run(out, learner="mlp", seeds=1, params=params, force=True, verbose=True)
    assert "cached" not in capsys.readouterr().err and forced.attrs["records"][0]["status"] == "ok"


def test_same_seed_same_record_across_processes(tmp_path):
    script = (
        "import imlbench, json, sys; s = imlbench.run(learner=sys.argv[1], seeds=[1], out=sys.argv[2], "
        "params={'n_entities': 100, 'learner.epochs': 3, 'learner.stage2_epochs': 3}); "
        "print(json.dumps(s.attrs['records'][0]))"
    )
    records = []
    for i in range(2):
        done = subprocess.run(
            [sys.executable, "-c", script, "mlp", str(tmp_path / f"r{i}")], capture_output=True, text=True, check=True
        )
        records.append(json.loads(done.stdout))
    assert strip_measurements(records[0]) == strip_measurements(records[1])
    assert records[0]["curve"] and records[0]["status"] == "ok"


def handed(log: Path) -> list[tuple[str, object]]:
    """What a LoggingSpy's process received, in order."""
    found = []
    with open(log, "rb") as f:
        while True:
            try:
                found.append(pickle.load(f))
            except EOFError:
                return found


def test_learner_never_receives_test_answers(out, drop):
    # the learner's own process logs every object that crossed to it
    for view in ("table", "tokens"):
        log = drop / f"{view}.pickle"
        run(
            out / view,
            learner="testplugins:LoggingSpy",
            seeds=1,
            params={**SMALL_TASK, "view": view, "log": str(log)},
            pipeline="two-stage,one-stage",
        )
        task = imlbench.core.specs.resolve("task", "synthetic-defs", SMALL_TASK).build()
        data = task.generate(0)
        answer_key = set(zip(data.test.relation.tolist(), data.test.subject.tolist(), data.test.target.tolist()))
        names = data.vocab.tokens
        received = handed(log)
        assert {call for call, _ in received} == {"fit", "continue_fit", "predict"}
        for call, obj in received:
            if call == "predict":
                assert not hasattr(obj, "y") and not hasattr(obj, "loss_mask")
                if view == "tokens":
                    rows = np.arange(len(obj.tokens))
                    assert (obj.tokens[rows, obj.answer_pos] == obj.pad_id).all()
                    assert (obj.tokens[:, -1] == obj.pad_id).all()
                continue
            if view == "table":
                rel = [r if r != "none" else t for r, t in zip(obj.X["relation"].astype(str), obj.X["tag"].astype(str))]
                triples = zip(
                    (names.index(r) for r in rel),
                    (names.index(s) for s in obj.X["subject"].astype(str)),
                    obj.y.tolist(),
                )
            else:
                triples = ((row[0], row[1], row[a]) for row, a in zip(obj.tokens.tolist(), obj.answer_pos.tolist()))
            assert not answer_key & set(triples), f"{call} received a test question with its answer"


def test_plugin_through_module_path(out):
    summary = run(out, learner="testplugins:Spy", seeds=2)
    assert summary["learner"].iloc[0] == "testplugins:Spy" and summary["n_seeds"].iloc[0] == 2


def write_plugin_distribution(site: Path) -> None:
    """Install the README's example plugin the way pip would: its module plus a dist-info folder
    holding the entry point its pyproject.toml declares."""
    import shutil
    import tomllib

    from support import install_distribution

    example = TESTS.parent / "examples" / "imlbench-plugin-example"
    meta = tomllib.loads((example / "pyproject.toml").read_text())
    shutil.copytree(example / "src" / "imlbench_nearest", site / "imlbench_nearest")
    install_distribution(site, "imlbench-nearest", meta["project"]["entry-points"])


@pytest.mark.parametrize("name", ["nearest", "imlbench_nearest:LastDefinition"])
def test_entry_point_plugin_runs_without_changing_imlbench(tmp_path, name):
    site = tmp_path / "site"
    site.mkdir()
    write_plugin_distribution(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "imlbench",
            "run",
            "--learner",
            name,
            "--seeds",
            "2",
            "--param",
            "n_entities=100",
            "--out",
            str(tmp_path / "r"),
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if f" {name} " in f" {line} ")
    # LastDefinition trusts every tag alike: it answers every d1consis and d2consis question from the
    # stage-2 definition (100% each), so each seed's effect is exactly 0 and zero spread gives `none` by
    # the tests; but it never answers a stage-1 question (qd2x 0), so the stage-1 guard makes the row
    # `inconclusive`: a learner that did not fit stage 1 was never taught which source is reliable
    records = [read_record(p) for p in iter_record_files(tmp_path / "r")]
    assert [(r["accuracy"]["d1consis"], r["accuracy"]["d2consis"], r["scores"]["iml_effect"]) for r in records] == [
        (1.0, 1.0, 0.0)
    ] * 2
    assert row.split()[0] == "synthetic-defs[n_entities=100]" and "inconclusive" in row.split(), row
    note = pd.read_csv(tmp_path / "r" / "leaderboard.csv")["verdict_note"].iloc[0]
    guards = "fewer than 6 seeds (2) and stage-1 documents not fit in 2 of 2 seeds"
    assert note.startswith(f"inconclusive by the tests, but {guards}"), note
    listed = subprocess.run([sys.executable, "-m", "imlbench", "list"], capture_output=True, text=True, env=env)
    assert "error" not in listed.stderr, listed.stderr
    assert "nearest" in listed.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--learner", "nope"], "unknown learner 'nope'; valid: "),
        (["run", "--task", "nope"], "unknown task 'nope'; valid: "),
        (["run", "--param", "n_trees=3"], "unknown parameter 'n_trees'; valid: "),
        (["run", "--param", "n_estimators=many"], "expected int, got 'many'"),
        (["run", "--param", "questions=sideways"], "valid: identity, attributes"),
        (
            ["run", "--pipeline", "four-stage"],
            "unknown pipeline 'four-stage'; valid: one-stage, three-stage, two-stage",
        ),
        (["run", "--learner", "testplugins:NoContinue"], "cannot continue training"),
        (["run", "--learner", "testplugins:FailsToConstruct"], "bad parameter for learner"),
        (["run", "--learner", "nosuchmodule:Thing"], "failed to load: ModuleNotFoundError"),
        (["run", "--learner", "testplugins:training_labels"], "not a subclass of imlbench.protocol.Learner"),
        (["leaderboard", "/nonexistent"], "holds no records/ folder"),
    ],
)
def test_bad_input_gets_a_one_line_error(argv, message, capsys, tmp_path):
    assert main(argv + (["--out", str(tmp_path)] if argv[0] == "run" else [])) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("imlbench: error: ")
    assert not (tmp_path / "records").exists()


def test_learner_failing_in_stage2_keeps_other_runs(out, capsys):
    run(out, learner="majority", seeds=2)
    before = {p: p.read_text() for p in iter_record_files(out)}
    code = main(
        [
            "run",
            "--learner",
            "testplugins:ExplodesInStage2,majority",
            "--seeds",
            "2",
            "--param",
            "n_entities=100",
            "--out",
            str(out),
            "-q",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "RuntimeError: stage 2 is broken on purpose" in err
    # untouched but for joining this command's family (a reused run is declared in it too)
    assert all(_without_families(p.read_text()) == _without_families(text) for p, text in before.items())
    errors = [read_record(p) for p in iter_record_files(out) if read_record(p)["status"] == "error"]
    assert len(errors) == 2 and errors[0]["error"] == "RuntimeError: stage 2 is broken on purpose"
    board = imlbench.leaderboard(out)
    assert board.set_index("learner").loc["testplugins:ExplodesInStage2", "n_failed"] == 2


def _without_families(text: str) -> dict:
    return {k: v for k, v in json.loads(text).items() if k != "families"}


def test_an_unreadable_record_is_recomputed_alone(out, capsys):
    run(out, learner="majority", seeds=3)
    files = iter_record_files(out)
    files[0].write_text("{ half a rec")
    intact = {p: (p.read_text(), p.stat().st_mtime_ns) for p in files[1:]}
    code = main(["run", "--learner", "majority", "--seeds", "3", "--param", "n_entities=100", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    said = [line for line in err.splitlines() if "unreadable" in line]
    assert len(said) == 1 and f"unreadable record file {files[0]}" in said[0] and "recomputing" in said[0]
    assert "--force" not in err and err.count("(cached)") == 2  # the two intact seeds are reused
    assert read_record(files[0])["status"] == "ok"
    assert {p: (p.read_text(), p.stat().st_mtime_ns) for p in files[1:]} == intact
    assert files[0].with_name(files[0].name + ".unreadable").read_text() == "{ half a rec"  # kept, not lost
    assert main(["leaderboard", str(out)]) == 0


def test_cli_prints_a_compact_summary(out, capsys):
    assert main(["run", "--learner", "majority", "--seeds", "2", "--param", "n_entities=100", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "IML effect [95% CI]" in printed and "majority" in printed and "inconclusive" in printed
    assert len(printed) < 1500 and "Scoring v3" not in printed  # the short legend, once, not the report's
    assert (out / "leaderboard.csv").exists()
    assert main(["leaderboard", str(out), "-o", str(out / "board.csv")]) == 0
    assert (out / "board.csv").read_text() == (out / "leaderboard.csv").read_text()


RF_FAST = ["--param", "n_entities=100", "--param", "n_estimators=10", "--param", "stage2_estimators=10"]


def test_the_last_lines_say_why_a_null_by_construction_and_what_to_run_instead(out, capsys):
    assert main(["run", "--learner", "rf", "--seeds", "2", *RF_FAST, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    sentence, command = captured.out.rstrip("\n").splitlines()[-2:]
    assert sentence.startswith("rf[n_estimators=10,stage2_estimators=10] two-stage on synthetic-defs[n_entities=100]: ")
    assert ": inconclusive — " in sentence and "null by construction" in sentence
    assert command == (
        "  Informative: imlbench run --learner rf --task synthetic-defs --pipeline one-stage --seeds 2 "
        f"--param n_entities=100 --param n_estimators=10 --param stage2_estimators=10 --out {out}"
    )
    # off a terminal: one plain line per finished seed, no bar, no carriage return
    lines = captured.err.splitlines()
    assert "\r" not in captured.err and len(lines) == 2
    for seed, line in enumerate(lines):
        assert line.startswith(f"[{seed + 1}/2] rf[n_estimators=10,stage2_estimators=10] x synthetic-defs")
        assert f"two-stage seed {seed}: effect " in line and line.endswith("s)")
    # the suggested command runs as printed and gives an informative pipeline (no null by construction)
    assert main(command.split()[2:]) == 0
    assert "null by construction" not in capsys.readouterr().out


def test_leaderboard_prints_its_table_and_defaults_to_results(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run(Path("results"), learner="majority", seeds=2)
    assert main(["leaderboard"]) == 0
    printed = capsys.readouterr().out
    assert "IML effect [95% CI]" in printed and "majority" in printed
    assert "leaderboard: results/leaderboard.csv (1 rows)" in printed


@pytest.mark.parametrize("argv", [["run", "--seed", "3"], ["run", "--learn", "rf"], ["leaderboard", "--out", "x"]])
def test_abbreviated_options_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_version_and_help_from_the_registries(capsys, monkeypatch):
    from imlbench.core.pipelines import pipeline_names
    from imlbench.core.specs import available, suite_specs

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"imlbench {imlbench.__version__}"
    monkeypatch.setenv("COLUMNS", "2000")  # no wrapping inside a hyphenated name
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for name in [*suite_specs("suite"), *pipeline_names(), *available("learner"), *available("task")]:
        assert name in text


def test_list_shows_learner_task_matrix(capsys):
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    assert "synthetic-defs" in printed and "rf" in printed and "table: two+one" in printed


def test_api_plan_resolves_without_running():
    requests = imlbench.plan(learner="rf,mlp", task="synthetic-defs", seeds=3, pipeline="one-stage")
    assert len(requests) == 6 and {r.learner.name for r in requests} == {"rf", "mlp"}
    with pytest.raises(ImlbenchError, match="seeds must be at least 1"):
        imlbench.plan(learner="rf", task="synthetic-defs", seeds=0)


def test_a_fit_runs_to_its_window_or_budget_and_one_stage_waits_for_the_conflict(out):
    """Protocol v3: the curve reaches 2p, or the last epoch where that comes first or the definitions
    are never learned; a one-stage point needs the stage-1 definitions (the contradicting qd2incons
    ones included) as well as stage 2's."""
    params = {"n_entities": 100, "epochs": 6, "stage2_epochs": 5, "hidden": 32, "embedding_dim": 16}
    summary = imlbench.run(learner="mlp", seeds=1, pipeline="one-stage,two-stage", params=params, out=out)
    records = {r["pipeline"]: r for r in summary.attrs["records"]}
    single, two = records["one-stage"], records["two-stage"]
    for record, budget in ((single, 6), (two, 5)):
        p = record["evaluation_point"]["checkpoint"]
        assert record["curve"][-1]["checkpoint"] == (min(2 * p, budget) if record["definitions_learned"] else budget)
    assert {"qd1consis", "qd2incons", "tag1", "tag2", "tag3"} <= set(single["definition_accuracy"])
    assert set(two["definition_accuracy"]) == {"tag1", "tag2", "tag3"}
    for record in (single, two):
        point = next(
            e
            for e in record["curve"]
            if e["stage"] == record["evaluation_point"]["stage"]
            and e["checkpoint"] == record["evaluation_point"]["checkpoint"]
        )
        assert point["accuracy"] == record["accuracy"]  # the test subsets were evaluated at the point
        assert record["curve"][-1]["accuracy"] == record["accuracy_at_end"]
        if record["definitions_learned"]:
            assert min(record["definition_accuracy"].values()) >= 0.98
        assert record["answer_logprob"] is None or set(record["answer_logprob"]) >= {"d1consis", "d2consis"}
    before = two["accuracy_after_stage1"]["q"] - two["accuracy_after_stage1"]["no_qd_baseline"]
    assert before > 0  # six epochs teach the held-out questions well above the baseline
    assert two["scores"]["retention"] == pytest.approx(
        (two["accuracy"]["q"] - two["accuracy"]["no_qd_baseline"]) / before
    )
