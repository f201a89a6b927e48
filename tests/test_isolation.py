"""A plugin cannot touch other runs or the answer key (issue #20): every run's learner executes in a
fresh process of its own group, killed whole at the end, at a time limit or past a memory limit."""

import json
import os
import time

import pytest
from support import alive

import imlbench
from imlbench.cli import main
from imlbench.core.specs import resolve
from imlbench.execution.engines import parse_memory, total_memory
from imlbench.harness.stages import execute
from imlbench.store.records import iter_record_files, read_record

SMALL = ["--param", "n_entities=100", "--seeds", "1", "-q"]
PROVENANCE = ("measurements", "versions", "environment")


def by_learner(out):
    return {r["learner"]["name"]: r for r in map(read_record, iter_record_files(out))}


def computed(record):
    """What a run computed: no provenance, and not the families its commands declared."""
    return {k: v for k, v in record.items() if k not in PROVENANCE and k != "families"}


def spec(tmp_path, name, target, **params):
    path = tmp_path / f"{name}.toml"
    lines = [f'name = "{name}"', f'learner = "testplugins:{target}"', "[params]"]
    path.write_text("\n".join(lines + [f"{k} = {json.dumps(v)}" for k, v in params.items()]) + "\n")
    return str(path)


def test_a_learner_patching_its_process_changes_no_other_run(tmp_path):
    assert main(["run", *SMALL, "--learner", "rf", "--out", str(tmp_path / "alone")]) == 0
    code = main(["run", *SMALL, "--learner", "testplugins:PatchesHarness,rf", "--out", str(tmp_path / "grid")])
    assert code == 0
    alone, grid = by_learner(tmp_path / "alone"), by_learner(tmp_path / "grid")
    assert computed(grid["rf"]) == computed(alone["rf"])
    assert grid["testplugins:PatchesHarness"]["scores"]["iml_effect"] != 100.0  # its own record is honest too


def test_predict_finds_no_answer_key_in_its_process(tmp_path):
    assert main(["run", *SMALL, "--learner", "testplugins:ReadsAnswers,testplugins:Spy", "--out", str(tmp_path)]) == 0
    records = by_learner(tmp_path)
    reader, fallback = records["testplugins:ReadsAnswers"], records["testplugins:Spy"]
    assert reader["accuracy"] == fallback["accuracy"] and reader["curve"] == fallback["curve"]
    assert min(reader["accuracy"].values()) < 1.0


def test_the_same_learner_in_the_harness_process_would_read_the_answers():
    """Guards the test above: the stack walk does find the targets when nothing isolates it."""
    task = resolve("task", "synthetic-defs", {"n_entities": 100})
    learner = resolve("learner", "testplugins:ReadsAnswers")
    result = execute(task, learner, 0, "two-stage", 0.98, isolated=False)
    assert min(result["accuracy"].values()) == 1.0


@pytest.mark.parametrize(
    "hang, argv",
    [  # a supervised worker first starts its fork server (torch: slow)
        pytest.param(True, ["--timeout", "5"], marks=pytest.mark.slow),
        pytest.param(True, ["--timeout", "5", "--jobs", "2"], marks=pytest.mark.slow),
        (False, []),
    ],
)
def test_nothing_a_learner_started_outlives_its_run(tmp_path, hang, argv, drop):
    pid_file = drop / "pids"
    learner = spec(tmp_path, "leaves", "LeavesChildren", pid_file=str(pid_file), hang=hang)
    code = main(["run", *SMALL, "--learner", f"{learner},majority", *argv, "--out", str(tmp_path / "r")])
    records = by_learner(tmp_path / "r")
    assert records["majority"]["status"] == "ok"
    if hang:
        assert code == 1 and records["leaves"]["error"] == "timed out after 5 s at stage stage1, checkpoint 0"
    else:
        assert code == 0 and records["leaves"]["status"] == "ok"
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 4
    deadline = time.monotonic() + 10
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive(pids) == []


@pytest.mark.parametrize("jobs", ["1", pytest.param("2", marks=pytest.mark.slow)])
def test_a_learner_past_its_memory_limit_gets_an_error_record(tmp_path, jobs):
    hog = spec(tmp_path, "hog", "HogsMemory", mib=3000)
    code = main(
        [
            "run",
            *SMALL,
            "--learner",
            f"{hog},majority",
            "--memory-limit",
            "800M",
            "--jobs",
            jobs,
            "--out",
            str(tmp_path / "r"),
        ]
    )
    records = by_learner(tmp_path / "r")
    assert code == 1 and records["majority"]["status"] == "ok"
    error = records["hog"]["error"]
    assert error.startswith("exceeded memory limit of 800 MiB (") and error.endswith("at stage stage1, checkpoint 0")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4G", 4 * 2**30),
        ("512M", 512 * 2**20),
        ("1.5g", 3 * 2**29),
        ("2GiB", 2 * 2**30),
        ("1000", 1000),
        ("0", None),
        (0, None),
    ],
)
def test_memory_limits_parse(text, expected):
    assert parse_memory(text) == expected


def test_the_default_memory_limit_is_a_share_below_the_machine():
    whole = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert parse_memory(None, jobs=4) == int(total_memory() * 0.75) // 4
    assert parse_memory(None, jobs=1) < total_memory() <= whole  # at --jobs 1 too


def test_a_bad_memory_limit_is_one_line(tmp_path, capsys):
    assert main(["run", *SMALL, "--memory-limit", "lots", "--out", str(tmp_path / "r")]) == 2
    assert "bad memory limit 'lots'; expected e.g. 4G" in capsys.readouterr().err
    assert not (tmp_path / "r" / "records").exists() or not iter_record_files(tmp_path / "r")


def test_learner_errors_keep_their_name_message_and_traceback(tmp_path):
    run = imlbench.run(learner="testplugins:ExplodesInStage2", seeds=1, params={"n_entities": 100}, out=tmp_path)
    record = run.attrs["records"][0]
    assert record["error"] == "RuntimeError: stage 2 is broken on purpose"
    assert "testplugins.py" in record["traceback"] and "in continue_fit" in record["traceback"]


def test_a_learners_own_sigint_is_its_own_error(tmp_path):
    run = imlbench.run(learner="testplugins:SendsSigint", seeds=1, params={"n_entities": 100}, out=tmp_path)
    assert run.attrs["records"][0]["error"].startswith("KeyboardInterrupt")
