"""Answers out of reach (docs/isolation.md): a learner that regenerates its task from a recovered
seed, or reads the harness's memory, scores no better than one that knows nothing, where the
record says the protection held; each attack is shown to work where nothing stops it."""

import json
import os
import subprocess
import sys

import pytest
from conftest import TESTS

from imlbench.cli import main
from imlbench.core.specs import resolve
from imlbench.execution.workers import Execution, run_job
from imlbench.harness.runner import RunRequest
from imlbench.store.records import iter_record_files, read_record

SMALL = ["--param", "task.n_entities=100", "--seeds", "1", "-q", "--pipeline", "two-stage"]


def accuracies(out):
    """(record, the lowest and the highest test accuracy over its subsets) of the one run in `out`."""
    (record,) = map(read_record, iter_record_files(out))
    assert record["status"] == "ok", record.get("error")
    values = list(record["accuracy"].values())
    return record, min(values), max(values)


def test_a_learner_that_regenerates_the_task_knows_nothing_in_a_sealed_run(tmp_path):
    cheat = ["--learner", "answerplugins:Regenerates", "--task", "synthetic-defs", *SMALL]
    assert main(["run", *cheat, "--out", str(tmp_path / "open")]) == 0
    record, lowest, _ = accuracies(tmp_path / "open")
    assert lowest == 1.0 and not record["protections"]["task_entropy_held_back"]  # public seed: the attack works
    assert main(["run", *cheat, "--sealed", "--out", str(tmp_path / "sealed")]) == 0
    sealed, _, _ = accuracies(tmp_path / "sealed")
    assert sealed["protections"]["task_entropy_held_back"] and len(sealed["seal"]["entropy"]) == 32
    assert main(["verify", str(tmp_path / "sealed")]) == 0  # the record's entropy replays it exactly
    (path,) = iter_record_files(tmp_path / "sealed")
    path.write_text(path.read_text().replace(sealed["seal"]["entropy"], "0" * 32))
    assert main(["verify", str(tmp_path / "sealed")]) == 1  # another entropy: another task
    # measured on the very task it saw (its entropy replayed): exactly what a learner that knows nothing scores
    task, spy = resolve("task", "synthetic-defs", {"n_entities": 100}), resolve("learner", "testplugins:Spy")
    replay = RunRequest(task, spy, 0, "two-stage", sealed=True, entropy=sealed["seal"]["entropy"])
    honest = run_job(replay, Execution(str(tmp_path / "honest")))["record"]
    assert honest["seal"]["entropy"] == sealed["seal"]["entropy"] and sealed["accuracy"] == honest["accuracy"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_a_learner_that_reads_the_harness_memory_knows_nothing(tmp_path):
    cheat = ["run", "--learner", "answerplugins:ReadsMemory", "--task", "answerplugins:MarkedDefs", *SMALL]
    assert main([*cheat, "--out", str(tmp_path / "guarded")]) == 0
    record, _, highest = accuracies(tmp_path / "guarded")
    if not record["protections"]["harness_memory_unreadable"]:
        pytest.skip(f"no protection of the harness's memory holds here: {record['protections']}")
    assert highest <= 0.07  # the first training label's luck at most (chance: 1 in 100)
    # measured, not assumed: on the same (open) task, exactly what a learner that knows nothing scores
    honest = ["run", "--learner", "testplugins:Spy", "--task", "answerplugins:MarkedDefs", *SMALL]
    assert main([*honest, "--out", str(tmp_path / "honest")]) == 0
    assert record["accuracy"] == accuracies(tmp_path / "honest")[0]["accuracy"]
    # the same attack with the learner's sandbox down, set as a user sets it: in the command's environment
    environ = {**os.environ, "IMLBENCH_NO_SANDBOX": "1", "PYTHONPATH": str(TESTS)}
    command = [sys.executable, "-m", "imlbench", *cheat, "--out", str(tmp_path / "exposed")]
    subprocess.run(command, env=environ, check=True, timeout=300, cwd=TESTS)
    exposed, lowest, _ = accuracies(tmp_path / "exposed")
    held = exposed["protections"]
    assert not held["landlock"] and not held["capabilities_dropped"]
    if not held["harness_memory_unreadable"]:  # root, nothing in the way: the attack reads every answer
        assert lowest == 1.0, json.dumps(exposed["accuracy"])


def test_records_say_which_protections_held(tmp_path):
    assert main(["run", "--learner", "majority", "--task", "synthetic-defs", *SMALL, "--out", str(tmp_path)]) == 0
    record, _, _ = accuracies(tmp_path)
    held = record["protections"]
    assert held["learner_process"] and held["harness_not_dumpable"] == sys.platform.startswith("linux")
    assert set(held) == {
        "learner_process",
        "landlock",
        "capabilities_dropped",
        "harness_not_dumpable",
        "harness_memory_unreadable",
        "task_entropy_held_back",
    }
    assert "seal" not in record


def test_a_learner_writes_only_in_its_own_temporary_folder(tmp_path):
    target = tmp_path / "r" / "forged.json"
    spec = tmp_path / "writes.toml"
    spec.write_text(f'name = "writes"\nlearner = "answerplugins:Writes"\n[params]\ntarget = "{target}"\n')
    assert main(["run", "--learner", str(spec), "--task", "synthetic-defs", *SMALL, "--out", str(tmp_path / "r")]) == 0
    record, _, _ = accuracies(tmp_path / "r")
    said = record["learner_info"]
    assert said["in_tmpdir"] == "written" and "imlbench-learner-" in said["tmpdir"]
    assert not os.path.exists(said["tmpdir"])  # its own, removed with the run
    if record["protections"]["landlock"]:
        assert said["beside_records"] == "PermissionError" and not target.exists()
    else:
        assert said["beside_records"] == "written"
