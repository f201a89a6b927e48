"""A hostile plugin changes no other run and leaves nothing behind (docs/isolation.md): its code runs
only in its own learner's processes, everything those start dies with the run, and the memory of
the whole tree is counted, /dev/shm included."""

import glob
import json
import os
import subprocess
import sys
import time
import uuid

import pytest
import sklearn.ensemble
from conftest import TESTS
from support import alive

from imlbench.cli import main
from imlbench.harness.sandbox import MemoryCgroup
from imlbench.store.records import iter_record_files, read_record

SMALL = ["--param", "n_entities=100", "--seeds", "1", "-q"]


def records(out):
    return {r["learner"]["name"]: r for r in map(read_record, iter_record_files(out))}


def timings_aside(record):
    """What a run computed: not its timings, nor the families its commands declared."""
    return json.dumps({k: v for k, v in record.items() if k not in ("measurements", "families")}, sort_keys=True)


def spec(tmp_path, name, target, **params):
    path = tmp_path / f"{name}.toml"
    lines = [f'name = "{name}"', f'learner = "hostileplugins:{target}"', "[params]"]
    path.write_text("\n".join(lines + [f"{k} = {json.dumps(v)}" for k, v in params.items()]) + "\n")
    return str(path)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_plugin_patching_libraries_and_imlbench_changes_no_other_run(tmp_path, monkeypatch, jobs, drop):
    predict = sklearn.ensemble.RandomForestClassifier.predict
    assert main(["run", *SMALL, "--learner", "rf", "--out", str(tmp_path / "alone")]) == 0
    notes = drop / "imports"
    monkeypatch.setenv("IMLBENCH_HOSTILE_IMPORTS", str(notes))
    grid = ["run", *SMALL, "--learner", "rf,hostileplugins:Saboteur", "--jobs", jobs, "--out", str(tmp_path / "grid")]
    main(grid)
    alone, together = records(tmp_path / "alone"), records(tmp_path / "grid")
    assert timings_aside(together["rf"]) == timings_aside(alone["rf"])  # byte for byte, timings aside
    # neither this process (the driver) nor a process any run was forked from imported the plugin
    assert "hostileplugins" not in sys.modules and sklearn.ensemble.RandomForestClassifier.predict is predict
    imported = [tuple(map(int, line.split())) for line in notes.read_text().splitlines()]
    pids, parents = {pid for pid, _ in imported}, {parent for _, parent in imported}
    assert len(imported) >= 2 and os.getpid() not in pids and not pids & parents  # the probe, its learner


def pids_of(path):
    deadline = time.monotonic() + 20
    while not (path.exists() and len(path.read_text().split()) == 3) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [int(p) for p in path.read_text().split()]


def gone_soon(pids, seconds=10):
    deadline = time.monotonic() + seconds
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive(pids) == []


@pytest.mark.parametrize(
    "then, argv, status",
    [
        ("hang", ["--timeout", "4"], "timed out after 4 s at stage stage1, checkpoint 0"),
        ("raise", [], "RuntimeError: fails after starting children"),
        ("ok", ["--jobs", "2"], None),
    ],
)
def test_nothing_a_learner_starts_outlives_its_run(tmp_path, then, argv, status, drop):
    pid_file = drop / "pids"
    learner = spec(tmp_path, "escapes", "Escapes", pid_file=str(pid_file), then=then)
    main(["run", *SMALL, "--learner", f"{learner},majority", *argv, "--out", str(tmp_path / "r")])
    found = records(tmp_path / "r")
    assert found["majority"]["status"] == "ok" and found["escapes"]["error"] == status
    assert gone_soon(pids_of(pid_file))  # the learner, its new-session child, its double-forked sleep


@pytest.mark.parametrize("then, argv", [("ok", []), ("hang", ["--timeout", "3"]), ("ok", ["--jobs", "1"])])
def test_a_piped_run_returns_when_the_run_does(tmp_path, then, argv, drop):
    pid_file = drop / "pids"
    learner = spec(tmp_path, "escapes", "Escapes", pid_file=str(pid_file), then=then)
    command = [sys.executable, "-m", "imlbench", "run", *SMALL, "--learner", learner, *argv, "--out", str(tmp_path)]
    environ = {**os.environ, "PYTHONPATH": str(TESTS)}
    environ.pop("IMLBENCH_JOBS")  # the command line's default, auto
    start = time.monotonic()
    piped = subprocess.run(f"{subprocess.list2cmdline(command)} | cat", shell=True, env=environ, timeout=120)
    assert piped.returncode == 0 and time.monotonic() - start < 120
    assert gone_soon(pids_of(pid_file))


def test_a_learner_that_stops_the_next_runs_processes_does_not_stop_that_run(tmp_path, monkeypatch):
    """Where a learner may signal its worker's other children, it can SIGSTOP the spares forked for
    the next run; the worker continues them before use, so seed 1 does not wait out its time limit."""
    monkeypatch.setenv("IMLBENCH_NO_SANDBOX", "1")  # signals unscoped, as under Landlock below ABI 6
    learner = spec(tmp_path, "stops-spares", "StopsSpares")
    start = time.monotonic()
    argv = ["--learner", learner, "--seeds", "2", "--jobs", "1", "--timeout", "60", "--out", str(tmp_path)]
    main(["run", *SMALL, *argv])
    found = [read_record(path) for path in iter_record_files(tmp_path)]
    assert sorted(r["seed"] for r in found) == [0, 1] and all(r["status"] == "ok" for r in found), found
    assert time.monotonic() - start < 60


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_memory_written_to_dev_shm_counts_against_the_limit(tmp_path, jobs):
    path = f"/dev/shm/imlbench-test-{uuid.uuid4().hex}"
    hog, empty = spec(tmp_path, "shm", "FillsShm", path=path, mib=400), spec(tmp_path, "none", "FillsShm", mib=0)
    argv = ["--learner", f"{hog},{empty}", "--memory-limit", "200M", "--jobs", jobs, "--out", str(tmp_path / "r")]
    try:
        assert main(["run", *SMALL, *argv]) == 1
    finally:
        if os.path.exists(path):
            os.unlink(path)
    found = records(tmp_path / "r")
    assert found["none"]["status"] == "ok"  # the same learner writing nothing stays under the limit
    error = found["shm"]["error"]
    assert error.startswith("exceeded memory limit of 200 MiB (") and error.endswith("at stage stage1, checkpoint 0")


def cgroup_possible() -> bool:
    group = MemoryCgroup.open(1 << 30)
    if group is not None:
        group.remove()
    return group is not None


@pytest.mark.skipif(not cgroup_possible(), reason="no memory cgroup can be made here")
def test_a_closed_dev_shm_file_counts_where_a_cgroup_can_be_made(tmp_path):
    """Written and closed, a /dev/shm file is held by no process (polling /proc misses it); the
    learner's cgroup is charged for its pages, and the kernel stops the tree at the limit."""
    path = f"/dev/shm/imlbench-test-{uuid.uuid4().hex}"
    hog = spec(tmp_path, "shm", "FillsShm", path=path, mib=1000, hold=False)
    argv = ["--learner", hog, "--memory-limit", "500M", "--out", str(tmp_path / "r")]
    try:  # 20 MiB files one after the other: what /proc shows stays far under 500M
        assert main(["run", *SMALL, *argv]) == 1
    finally:
        for part in glob.glob(f"{path}-*"):
            os.unlink(part)
    error = records(tmp_path / "r")["shm"]["error"]
    assert error.startswith("exceeded memory limit of 500 MiB (") and "counted by its cgroup" in error
