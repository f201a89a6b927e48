"""One learner must never take down, hang or corrupt a grid; bad input is one line; records say what ran.

Each failure case runs beside a small rf run that must complete, in-process and with --jobs 2
(supervised workers), and checks that nothing lands outside --out.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from conftest import TESTS

import imlbench
from imlbench.cli import main
from imlbench.core.specs import ImlbenchError, resolve
from imlbench.execution.engines import limit_for, open_executor
from imlbench.store.records import iter_record_files, read_record, record_path

SMALL = ["--param", "n_entities=100", "--seeds", "1"]
RF = "rf"


def cli(out, *argv):
    return main(["run", *SMALL, *argv, "--out", str(out), "-q"])


def by_learner(out):
    """{learner name: record} of everything under out (one seed per learner in these tests)."""
    return {r["learner"]["name"]: r for r in map(read_record, iter_record_files(out))}


def only_inside(tmp_path, out, *allowed):
    assert {p.name for p in tmp_path.iterdir()} <= {out.name, *allowed}


@pytest.fixture
def out(tmp_path):
    return tmp_path / "results"


# --------------------------------------------------------------------------------------------
# time limits


def check_timed_out(out, limit=5):
    records = by_learner(out)
    assert records[RF]["status"] == "ok"
    never, forever = records["testplugins:NeverYields"], records["testplugins:YieldsForever"]
    assert never["error"] == f"timed out after {limit} s at stage stage1, checkpoint 0"
    assert forever["error"].startswith(f"timed out after {limit} s at stage stage1, checkpoint ")
    assert int(forever["error"].rsplit(" ", 1)[1]) > 0
    for record in (never, forever):
        assert limit <= record["measurements"]["seconds"]["total"] < limit + 5


@pytest.mark.parametrize("jobs", ["1", pytest.param("2", marks=pytest.mark.slow)])
def test_timeout_stops_hanging_runs_and_the_others_go_on(out, tmp_path, capsys, jobs):
    code = cli(
        out, "--learner", "testplugins:NeverYields,testplugins:YieldsForever,rf", "--timeout", "5", "--jobs", jobs
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("timed out after 5 s") == 2
    check_timed_out(out)
    only_inside(tmp_path, out)


@pytest.mark.slow  # minutes of waiting on processes and clocks: the default suite stays under ~10 min
def test_timeout_on_a_dask_local_cluster(out):
    summary = imlbench.run(
        learner="testplugins:NeverYields,testplugins:YieldsForever,rf",
        seeds=1,
        params={"n_entities": 100},
        out=out,
        executor="dask",
        jobs=2,
        timeout=5,
    )
    assert len(summary.attrs["problems"]) == 2
    check_timed_out(out)


def test_a_learner_spec_sets_a_default_timeout_that_timeout_overrides(out, tmp_path):
    spec = tmp_path / "stuck.toml"
    spec.write_text('name = "stuck"\nlearner = "testplugins:NeverYields"\ntimeout = 3\n')
    request = imlbench.plan(learner=str(spec), task="synthetic-defs", seeds=1, params={"n_entities": 100})[0]
    assert request.learner.timeout == 3 and "timeout" not in request.learner.to_dict()
    assert limit_for(request, None) == 3 and limit_for(request, 7) == 7 and limit_for(request, 0) is None
    assert cli(out, "--learner", str(spec)) == 1
    assert by_learner(out)["stuck"]["error"] == "timed out after 3 s at stage stage1, checkpoint 0"


@pytest.mark.slow  # minutes of waiting on processes and clocks: the default suite stays under ~10 min
def test_timeout_through_submitit(out, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # submitit's job process imports testplugins
    summary = imlbench.run(
        learner="testplugins:NeverYields",
        seeds=1,
        params={"n_entities": 100},
        out=out,
        executor="submitit-local",
        timeout=3,
    )
    assert summary.attrs["records"][0]["error"] == "timed out after 3 s at stage stage1, checkpoint 0"


def test_submitit_jobs_get_a_slurm_limit_above_the_run_limit(tmp_path):
    with open_executor("submitit-local", 1, tmp_path, limit=90) as executor:
        assert executor.parameters["timeout_min"] == 2 + 5


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_bad_timeout_is_one_line(out, capsys, value):
    assert cli(out, "--timeout", value) == 2
    assert "timeout must be a number of seconds > 0" in capsys.readouterr().err
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# cached runs never become jobs


class CountingExecutor:
    """A concurrent.futures executor that counts the jobs it was handed."""

    def __init__(self, pool):
        self.pool, self.submitted = pool, 0

    def submit(self, fn, *args):
        self.submitted += 1
        return self.pool.submit(fn, *args)


def test_a_rerun_of_a_finished_grid_submits_no_job(out):
    grid = dict(learner="rf,majority", task="synthetic-defs", seeds=2, params={"n_entities": 100}, out=out)
    with ThreadPoolExecutor(2) as pool:
        first = CountingExecutor(pool)
        imlbench.run(executor=first, **grid)
        again = CountingExecutor(pool)
        summary = imlbench.run(executor=again, **grid)
        iter_record_files(out)[0].unlink()
        partly = CountingExecutor(pool)
        imlbench.run(executor=partly, **grid)
    assert (first.submitted, again.submitted, partly.submitted) == (4, 0, 1)
    assert summary.attrs["problems"] == [] and len(summary.attrs["records"]) == 4


# --------------------------------------------------------------------------------------------
# bad input: one line, exit 2, nothing written


def one_line_error(capsys, code, message, out=None):
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("imlbench: error: ") and "\n" not in err, err
    assert message in err, err
    if out is not None:
        assert not (out / "records").exists() or not iter_record_files(out)


def test_out_naming_a_file_is_one_line(tmp_path, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me")
    one_line_error(capsys, cli(afile, "--learner", "majority"), "is a file, not a directory")
    one_line_error(capsys, cli(afile / "results", "--learner", "majority"), "is not a writable folder")
    assert afile.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_refused_before_training(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        one_line_error(capsys, cli(locked / "results", "--learner", "majority"), "is not a writable folder")
    finally:
        locked.chmod(0o700)


def test_unreachable_dask_scheduler_fails_fast(out, capsys):
    start = time.monotonic()
    code = cli(out, "--learner", "majority", "--executor", "dask://127.0.0.1:1")
    assert time.monotonic() - start < 5
    one_line_error(capsys, code, "no dask scheduler reachable at 127.0.0.1:1", out)


def write(path, text):
    path.write_text(text)
    return str(path)


def bad_learner(tmp_path, target, **params):
    """A learner spec named "bad" for a testplugins class, so its parameters do not reach rf."""
    lines = ['name = "bad"', f'learner = "testplugins:{target}"', "[params]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in params.items()]
    return write(tmp_path / "bad.toml", "\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "body, message",
    [
        (
            'learner = "majority"\ncolour = "blue"\n',
            "unknown key 'colour' in learner spec {}; valid: name, version, description, learner, params, timeout",
        ),
        ('learner = "rf"\n[parameters]\nn_estimators = 3\n', "unknown key 'parameters'"),
        (
            'learner = "rf"\nversion = "abc"\n',
            "bad 'version' in learner spec {}: expected a positive integer, got 'abc'",
        ),
        ('learner = "rf"\nparams = 5\n', "bad 'params' in learner spec {}: expected a table ([params]), got 5"),
        ('learner = "rf"\n[params]\nn_estimator = 3\n', "unknown parameter 'n_estimator'"),
    ],
)
def test_learner_spec_keys_are_checked(tmp_path, out, capsys, body, message):
    spec = write(tmp_path / "mine.toml", body)
    one_line_error(capsys, cli(out, "--learner", spec), message.format(spec), out)


def test_unknown_keys_suggest_the_valid_one(tmp_path, out, capsys):
    spec = write(tmp_path / "mine.toml", 'learner = "rf"\n[parameters]\nn_estimators = 3\n')
    one_line_error(capsys, cli(out, "--learner", spec), "did you mean params?", out)
    task = write(tmp_path / "task.toml", 'task = "synthetic-defs"\nn_entities = 100\n')
    one_line_error(
        capsys,
        cli(out, "--task", task),
        f"unknown key 'n_entities' in task spec {task}; valid: name, version, description, task, params",
    )
    suite = write(tmp_path / "suite.toml", 'tasks = ["synthetic-defs"]\nlerners = ["rf"]\n')
    one_line_error(capsys, main(["run", "--suite", suite, "--out", str(out)]), "unknown key 'lerners' in suite")
    assert "did you mean learners?" in str(pytest.raises(ImlbenchError, imlbench.api.plan_suite, suite).value)
    bad = write(tmp_path / "bad.toml", 'tasks = ["synthetic-defs"]\nlearners = ["rf"]\nparams = 5\n')
    one_line_error(capsys, main(["run", "--suite", bad, "--out", str(out)]), "bad 'params' in suite")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--learner", "rfx"], "did you mean rf?"),
        (["--task", "synthetic-def"], "did you mean synthetic-defs?"),
        (["--learner", ""], "empty learner ''"),
        (["--task", ""], "empty task ''"),
        (["--learner", "rf", "--seeds", "0,0,1"], "seed 0 listed more than once"),
        (["--executor", "dusk"], "did you mean dask?"),
    ],
)
def test_names_and_seeds_are_checked(out, capsys, argv, message):
    code = main(["run", *argv, "--param", "n_entities=100", "--out", str(out), "-q"])
    one_line_error(capsys, code, message, out)


# --------------------------------------------------------------------------------------------
# failure isolation


@pytest.mark.parametrize("jobs", ["1", pytest.param("2", marks=pytest.mark.slow)])
@pytest.mark.parametrize("raises", ["SystemExit", "KeyboardInterrupt"])
def test_base_exceptions_in_fit_become_error_records(out, tmp_path, capsys, raises, jobs):
    spec = bad_learner(tmp_path, "RaisesInFit", raises=raises)
    assert cli(out, "--learner", f"{spec},rf", "--jobs", jobs) == 1
    records = by_learner(out)
    assert records[RF]["status"] == "ok"
    assert records["bad"]["status"] == "error" and records["bad"]["error"].startswith(raises)
    assert "testplugins.py" in records["bad"]["traceback"] and "in fit" in records["bad"]["traceback"]
    assert f"bad x synthetic-defs[n_entities=100] two-stage seed 0: {raises}" in capsys.readouterr().err
    only_inside(tmp_path, out, "bad.toml")


def test_a_process_exit_in_fit_costs_only_that_run(out, tmp_path):
    assert cli(out, "--learner", "testplugins:ExitsProcess,rf", "--seeds", "2", "--jobs", "2") == 1
    records = [read_record(p) for p in iter_record_files(out)]
    ok = [r for r in records if r["status"] == "ok"]
    died = [r for r in records if r["status"] == "error"]
    assert len(ok) == 2 and {r["learner"]["name"] for r in ok} == {RF}
    assert len(died) == 2 and all(
        r["error"] == "the worker process died (exit status 1) at stage stage1, checkpoint 0" for r in died
    )
    only_inside(tmp_path, out)


def test_a_real_ctrl_c_still_stops_an_in_process_grid(out):
    # a Ctrl-C reaches the driver (a learner's own SIGINT stays in its process: tests/test_isolation.py)
    # a Ctrl-C every 3 s until one lands: under load the first may arrive before the learner's process
    # exists (while the fork server starts), and a run of NeverYields would otherwise wait forever
    stop = threading.Event()

    def press_ctrl_c() -> None:
        while not stop.wait(3):
            os.kill(os.getpid(), signal.SIGINT)

    # a shell starts background jobs with SIGINT ignored, and Python then installs no handler of its
    # own: give this test the interpreter's default, as an interactive Ctrl-C would find it
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    presser = threading.Thread(target=press_ctrl_c, daemon=True)
    presser.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            imlbench.run(learner="testplugins:NeverYields", seeds=1, params={"n_entities": 100}, out=out)
    finally:
        stop.set()
        signal.signal(signal.SIGINT, previous)
    presser.join()
    assert iter_record_files(out) == []  # an interrupted run is simply missing, not an error


def start_driver(out, *argv):
    command = [
        sys.executable,
        "-m",
        "imlbench",
        "run",
        "--learner",
        "testplugins:NeverYields",
        "--seeds",
        "2",
        "--param",
        "n_entities=100",
        "--jobs",
        "2",
        "--out",
        str(out),
        "-q",
        *argv,
    ]
    # the driver gets SIGINT's default disposition even where this test runs as a background job (which
    # starts with SIGINT ignored, passed on to children), so that a Ctrl-C reaches it
    driver = subprocess.Popen(
        command,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(psutil.Process(driver.pid).children()) < 2:
        time.sleep(0.2)
    workers = psutil.Process(driver.pid).children()
    assert len(workers) == 2
    time.sleep(3)  # the workers are inside fit now
    return driver, workers


def gone(process):
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(workers, seconds=5):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(gone(w) for w in workers):
        time.sleep(0.1)
    return all(gone(w) for w in workers)


def test_killing_the_driver_leaves_no_worker_running(out):
    driver, workers = start_driver(out)
    driver.kill()
    driver.wait()
    assert wait_gone(workers)


def test_ctrl_c_of_a_parallel_driver_stops_its_workers_and_records_nothing(out):
    driver, workers = start_driver(out)
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=15) == 130
    assert "interrupted" in driver.stderr.read()
    assert wait_gone(workers) and iter_record_files(out) == []


@pytest.mark.parametrize(
    "answer, message",
    [
        ("nan", "NaN or infinite values"),
        ("fraction", "non-integer values"),
        ("negative", "negative ids"),
        ("outside", "ids outside the vocabulary"),
        ("text", "values of dtype <U4"),
    ],
)
def test_invalid_predictions_are_an_error_not_zero_accuracy(out, tmp_path, answer, message):
    assert cli(out, "--learner", bad_learner(tmp_path, "BadPredictions", answer=answer) + ",rf") == 1
    records = by_learner(out)
    assert records[RF]["status"] == "ok"
    error = records["bad"]["error"]
    assert error.startswith("InvalidPredictions: predict returned " + message), error
    assert "integer vocabulary ids in 0.." in error


@pytest.mark.slow  # minutes of waiting on processes and clocks: the default suite stays under ~10 min
def test_invalid_predictions_are_caught_in_workers_too(out):
    assert cli(out, "--learner", "testplugins:BadPredictions,rf", "--jobs", "2") == 1
    assert by_learner(out)["testplugins:BadPredictions"]["error"].startswith("InvalidPredictions")


# --------------------------------------------------------------------------------------------
# records: paths, malformed files, tracebacks, provenance


@pytest.mark.parametrize("name", ["..", ".", "../../x", "/etc/passwd"])
def test_spec_names_never_leave_out(tmp_path, capsys, name):
    out = tmp_path / "a" / "b" / "results"
    task = write(
        tmp_path / "task.toml", f'name = {json.dumps(name)}\ntask = "synthetic-defs"\n[params]\nn_entities = 100\n'
    )
    learner = write(tmp_path / "learner.toml", f'name = {json.dumps(name)}\nlearner = "majority"\n')
    assert main(["run", "--learner", learner, "--task", task, "--seeds", "1", "--out", str(out), "-q"]) == 0
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".json"]
    assert len(files) == 1 and (out / "records") in files[0].parents
    assert files[0].resolve().is_relative_to((out / "records").resolve())
    assert {p.name for p in (tmp_path / "a" / "b").iterdir()} == {"results"}


def test_record_path_of_dot_names_is_a_hash_inside_out(tmp_path):
    request = imlbench.plan(learner="majority", task="synthetic-defs", seeds=1)[0]
    identity = request.identity()
    for name in ("..", ".", "", "...."):
        identity["task"]["name"] = identity["learner"]["name"] = name
        path = record_path(tmp_path, identity)
        assert path.resolve().parent.parent.parent == (tmp_path / "records").resolve()
        assert path.parent.name.startswith("name-")


def test_a_record_without_scores_is_one_line_and_the_others_load(out, capsys):
    assert cli(out, "--learner", "majority", "--seeds", "3") == 0
    files = iter_record_files(out)
    broken = json.loads(files[0].read_text())
    del broken["scores"]
    files[0].write_text(json.dumps(broken))
    capsys.readouterr()
    assert main(["leaderboard", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err == f"imlbench: error: unreadable record file {files[0]}: missing or malformed scores; "
        f"delete it or rerun with --force"
    )
    board = imlbench.leaderboard(out)
    assert board["n_seeds"].tolist() == [2] and len(board.attrs["problems"]) == 1
    assert cli(out, "--learner", "majority", "--seeds", "3") == 0  # the rerun recomputes that run alone
    err = capsys.readouterr().err
    assert "missing or malformed scores" in err and "recomputing" in err
    assert imlbench.leaderboard(out)["n_seeds"].tolist() == [3]


def test_error_records_keep_the_traceback(out):
    run = imlbench.run(learner="testplugins:ExplodesInStage2", seeds=1, params={"n_entities": 100}, out=out)
    record = run.attrs["records"][0]
    assert record["error"] == "RuntimeError: stage 2 is broken on purpose"
    assert record["traceback"].startswith("Traceback (most recent call last):")
    assert "in continue_fit" in record["traceback"] and record["traceback"].rstrip().endswith("on purpose")


def test_records_say_what_ran_without_changing_keys(out):
    record = imlbench.run(learner="majority", seeds=1, params={"n_entities": 100}, out=out).attrs["records"][0]
    repo = TESTS.parent
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert record["versions"]["imlbench_commit"] in (head, head + "-dirty")
    assert record["environment"]["cpu"] and record["environment"]["accelerator"] is None  # no CUDA used
    assert record["environment"]["cpu_family"] and record["environment"]["cpu_capability"]  # e.g. AVX2
    # the key hashes only what determines the result (code versions too): the committed record's key,
    # whatever machine wrote it
    plain = imlbench.plan(learner="rf", task="synthetic-defs", seeds=[0])[0]
    key = imlbench.store.records.run_key(plain.identity())
    committed = repo / "docs" / "results" / "main-command" / "records" / "synthetic-defs" / "rf"
    assert list(committed.glob(f"two-stage-seed0-{key}.json")), key
    assert "environment" not in plain.identity() and "versions" not in plain.identity()


def test_accelerator_is_recorded_when_cuda_was_used(monkeypatch):
    from types import SimpleNamespace

    names = ["NVIDIA A100", "NVIDIA H200"]
    cuda = SimpleNamespace(
        is_initialized=lambda: True,
        current_device=lambda: 1,
        device_count=lambda: len(names),
        get_device_name=lambda index: names[index],
    )
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda, version=SimpleNamespace(cuda="12.4")))
    # the device the run used is the current one (here device 1, not device 0), among all it could see
    assert imlbench.store.records.environment()["accelerator"] == {"name": "NVIDIA H200", "cuda": "12.4", "count": 2}
    cuda.is_initialized = lambda: False  # torch imported, CUDA never touched: a CPU run
    assert imlbench.store.records.environment()["accelerator"] is None
    cuda.is_initialized, cuda.current_device = (lambda: True), (lambda: 1 / 0)  # a broken driver
    assert imlbench.store.records.environment()["accelerator"] is None  # costs the entry, not the record


def test_spec_timeout_is_not_part_of_the_key(tmp_path):
    spec = write(tmp_path / "rf.toml", 'name = "rf"\nlearner = "rf"\ntimeout = 60\n')
    assert resolve("learner", spec).to_dict() == resolve("learner", "rf").to_dict()


def test_concurrent_leaderboard_rebuilds_never_collide(tmp_path):
    """Each rebuild writes its own uniquely named temporary file, so rebuilds racing in threads (or
    processes) neither fail nor leave a half-written leaderboard for a reader."""
    import threading

    from imlbench.scoring.verdicts import write_leaderboard

    record = {
        "key": "k",
        "task": {"name": "t"},
        "learner": {"name": "l"},
        "pipeline": "two-stage",
        "protocol": {},
        "seed": 0,
        "status": "ok",
        "definitions_learned": True,
        "curve": [],
        "evaluation_point": {"stage": "stage2", "checkpoint": 1},
        "accuracy": {"d1consis": 0.9, "d2consis": 0.1},
        "accuracy_after_stage1": {},
        "scores": {"iml_effect": 80.0},
        "measurements": {"seconds": {"total": 1.0}},
        "versions": {},
    }
    path, errors = tmp_path / "leaderboard.csv", []

    def rebuild():
        try:
            for _ in range(30):
                write_leaderboard([record], path)
                assert path.read_text().startswith("family,task,")
        except BaseException as exc:  # noqa: BLE001 - report any failure from the thread
            errors.append(exc)

    threads = [threading.Thread(target=rebuild) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and not list(tmp_path.glob(".tmp-*"))
