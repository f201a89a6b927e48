"""Reading results runs no code and trusts no number it can recompute (issue #20): controls are data,
records are checked against their own key, scores come from accuracies, plugin code versions key
runs; files are readable, names bounded, concurrent runs share work, and bad input is one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import imlbench
from imlbench.cli import main
from imlbench.core.errors import ImlbenchError
from imlbench.core.specs import resolve
from imlbench.execution.workers import Execution, run_job
from imlbench.store.claims import claim_path
from imlbench.store.records import RunRecord, identity_of, load_records, read_record, run_key, write_record
from imlbench.store.results import is_control

TINY = {"n_entities": 100}


def run_one(request, out) -> tuple[dict, bool]:
    """One run as every run executes: its harness and learner under a worker. (record, cached)."""
    outcome = run_job(request, Execution(str(out)))
    return outcome["record"], outcome["cached"]


FEW_TREES = {**TINY, "n_estimators": 5, "stage2_estimators": 5, "trees_per_checkpoint": 5}


def rekeyed(path: Path, change) -> Path:
    """Apply `change` to a record and write it back under its honest key (a forger's edit)."""
    record = json.loads(path.read_text())
    change(record)
    record["key"] = run_key(identity_of(record))
    new = path.with_name(path.name.rsplit("-", 1)[0] + f"-{record['key']}.json")
    path.unlink()
    write_record(new, record)
    return new


def plugin(tmp_path: Path, monkeypatch, source: str) -> str:
    """A learner module written into tmp_path, importable here and in child processes."""
    name = f"trustplug_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("from imlbench.learners.controls import Majority\n" + source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return name


@pytest.fixture(scope="module")
def majority_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("majority") / "results"
    imlbench.run(learner="majority", seeds=2, params=TINY, out=out)
    return out


@pytest.fixture(scope="module")
def rf_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("rf") / "results"
    imlbench.run(learner="rf", seeds=3, params=FEW_TREES, out=out)
    return out


def copy_of(results: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "results"
    shutil.copytree(results / "records", copy / "records")
    return copy


# -- 1. reading imports nothing ---------------------------------------------------------------------


def test_report_and_plot_import_no_module_a_record_names(majority_results, tmp_path, monkeypatch, capsys):
    results = copy_of(majority_results, tmp_path)
    marker = tmp_path / "imported"
    (results / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass X: pass\n")
    monkeypatch.syspath_prepend(str(results))
    for path in (results / "records").rglob("*.json"):
        rekeyed(path, lambda r: (r["learner"].update(target="evilmod:X"), r.pop("is_control", None)))
    assert main(["report", str(results), "--out", str(tmp_path / "r.md")]) == 0
    assert main(["plot", str(results), "--out", str(tmp_path / "f"), "--formats", "png"]) == 0
    assert not marker.exists() and "evilmod" not in sys.modules
    monkeypatch.delitem(sys.modules, "this", raising=False)
    for path in (results / "records").rglob("*.json"):
        rekeyed(path, lambda r: r["learner"].update(target="this:X"))
    capsys.readouterr()
    assert main(["report", str(results), "--out", str(tmp_path / "r.md")]) == 0
    assert "Beautiful is better" not in capsys.readouterr().out and "this" not in sys.modules


def test_controls_are_what_the_record_says(majority_results):
    record = read_record(next((majority_results / "records").rglob("*.json")))
    assert record["is_control"] is True  # written by the runner from the class attribute
    r = RunRecord.from_json(record)
    assert is_control(r)
    legacy = {k: v for k, v in record.items() if k != "is_control"}
    assert is_control(RunRecord.from_json(legacy))  # published records: the built-in names
    other = dict(legacy, learner={**legacy["learner"], "target": "evilmod:X"})
    assert not is_control(RunRecord.from_json(other))
    assert is_control(RunRecord.from_json(dict(other, is_control=True)))


# -- 2. records verified on read --------------------------------------------------------------------


def test_an_edited_score_does_not_move_the_row(rf_results, tmp_path):
    results = copy_of(rf_results, tmp_path)
    before = imlbench.leaderboard(results)
    victim = sorted((results / "records").rglob("*.json"))[0]
    record = json.loads(victim.read_text())
    record["scores"]["iml_effect"] = 99.0
    victim.write_text(json.dumps(record))
    after = imlbench.leaderboard(results)
    assert not after.attrs["problems"] and after["n_seeds"].iloc[0] == 3
    assert after["effect_mean"].iloc[0] == before["effect_mean"].iloc[0]


@pytest.mark.parametrize("edit", ["seed", "renamed", "copied", "nan accuracy", "inf score"])
def test_an_edited_record_is_one_problem_naming_its_file(rf_results, tmp_path, edit):
    results = copy_of(rf_results, tmp_path)
    victim = sorted((results / "records").rglob("*.json"))[0]
    record = json.loads(victim.read_text())
    if edit == "seed":
        record["seed"] = 7  # would count as a fourth seed
    elif edit == "nan accuracy":
        record["accuracy"]["d1consis"] = float("nan")
    elif edit == "inf score":
        record["scores"]["stage1_gap"] = float("inf")
    if edit == "renamed":
        victim = victim.rename(victim.with_name(victim.name[:-10] + "0000.json"))
    elif edit == "copied":
        victim = Path(shutil.copy(victim, victim.with_name("x" + victim.name)))
    else:
        victim.write_text(json.dumps(record))
    board = imlbench.leaderboard(results)
    (problem,) = board.attrs["problems"]
    assert "\n" not in problem and str(victim) in problem
    assert board["n_seeds"].iloc[0] == (3 if edit == "copied" else 2)  # the rest still count


# -- 3. plugin code versions key runs ---------------------------------------------------------------


def test_builtins_are_keyed_by_the_imlbench_version():
    """An editable install never bumps it: a built-in learner's code change keeps its key."""
    from importlib.metadata import version

    assert resolve("learner", "rf").code == resolve("task", "synthetic-defs").code == f"imlbench=={version('imlbench')}"


def test_changed_plugin_source_is_not_reused(tmp_path, monkeypatch):
    name = plugin(tmp_path, monkeypatch, "class Mine(Majority):\n    pass\n")
    out = tmp_path / "results"
    request = imlbench.plan(f"{name}:Mine", "synthetic-defs", seeds=[0], params=TINY)[0]
    assert run_one(request, out)[1] is False and run_one(request, out)[1] is True
    with open(tmp_path / f"{name}.py", "a") as f:
        f.write("# changed\n")
    changed = imlbench.plan(f"{name}:Mine", "synthetic-defs", seeds=[0], params=TINY)[0]
    assert changed.learner.code != request.learner.code and changed.path(out) != request.path(out)
    record, cached = run_one(changed, out)
    assert not cached and record["code"]["learner"] == changed.learner.code


# -- 4. readable files ------------------------------------------------------------------------------


def test_records_and_leaderboards_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        imlbench.run(learner="majority", seeds=1, params=TINY, out=tmp_path)
    finally:
        os.umask(old)
    files = list((tmp_path / "records").rglob("*.json")) + [tmp_path / "leaderboard.csv"]
    assert len(files) == 2 and all(f.stat().st_mode & 0o777 == 0o644 for f in files)


# -- 5. small items ---------------------------------------------------------------------------------


def spec(path: Path, name: str, kind: str = "learner", target: str = "majority", extra: str = "") -> str:
    path.write_text(f"name = {json.dumps(name)}\n{kind} = {json.dumps(target)}\n{extra}")
    return str(path)


def test_long_and_colliding_names_get_their_own_files(tmp_path):
    out = tmp_path / "results"
    task = spec(tmp_path / "t.toml", "t" * 300, "task", "synthetic-defs", "[params]\nn_entities = 100\n")
    learners = [
        spec(tmp_path / "a.toml", "a/b/c"),
        spec(tmp_path / "b.toml", "a_b_c"),
        spec(tmp_path / "c.toml", "x" * 230),
    ]
    assert main(["run", "--learner", ",".join(learners), "--task", task, "--seeds", "1", "--out", str(out), "-q"]) == 0
    assert len(load_records(out)[0]) == 3
    assert main(["report", str(out), "--out", str(tmp_path / "r.md")]) == 0
    assert len(list((tmp_path / "figures").glob("curves-*.png"))) == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--out", ""],
        ["plot", "R", "--out", ""],
        ["run", "--margin", "nan"],
        ["run", "--margin", "-5"],
        ["leaderboard", "R", "--margin", "nan"],
    ],
)
def test_bad_out_and_margin_are_one_line_errors_before_any_run(tmp_path, capsys, argv, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "R" / "records").mkdir(parents=True)
    assert main(argv + ["--learner", "majority"] * (argv[0] == "run")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("imlbench: error:")
    assert not (tmp_path / "results").exists() and not list(tmp_path.glob("*.png"))


def test_infinite_timeout_is_refused_at_resolve_time(tmp_path):
    with pytest.raises(ImlbenchError, match="timeout"):
        resolve("learner", spec(tmp_path / "l.toml", "l", extra="timeout = inf\n"))


def test_imlbench_error_in_fit_is_an_error_record_and_plain_iterators_work(tmp_path, monkeypatch):
    name = plugin(
        tmp_path,
        monkeypatch,
        """
from imlbench.core.errors import ImlbenchError

class Raises(Majority):
    def fit(self, data):
        raise ImlbenchError("boom in fit")

class Plain(Majority):
    def fit(self, data):
        self.counts_ = {}
        return self.continue_fit(data)

    def continue_fit(self, data):
        for _ in Majority.continue_fit(self, data):
            pass
        return iter([None])
""",
    )
    summary = imlbench.run(learner=[f"{name}:Raises", f"{name}:Plain"], seeds=1, params=TINY, out=tmp_path / "o")
    statuses = {r["learner"]["name"].split(":")[1]: r["status"] for r in summary.attrs["records"]}
    assert statuses == {"Raises": "error", "Plain": "ok"}
    (problem,) = summary.attrs["problems"]
    assert "boom in fit" in problem and "Raises" in problem


SLOW = """
import time
from pathlib import Path

class Slow(Majority):
    def fit(self, data):
        with open(LOG, "a") as f:
            f.write("fit\\n")
        time.sleep(SLEEP)
        yield from Majority.fit(self, data)
"""


def slow_plugin(tmp_path, monkeypatch, sleep: float, drop: Path) -> tuple[str, Path]:
    log = drop / "fits.log"  # where a sandboxed learner may write
    return plugin(tmp_path, monkeypatch, f"LOG = {str(log)!r}\nSLEEP = {sleep}\n" + SLOW), log


def test_sigterm_stops_a_run_with_one_line(tmp_path, monkeypatch, drop):
    name, log = slow_plugin(tmp_path, monkeypatch, 60, drop)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imlbench",
            "run",
            "--learner",
            f"{name}:Slow",
            "--seeds",
            "1",
            "--param",
            "n_entities=100",
            "--out",
            str(tmp_path / "o"),
            "-q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a shell's background job starts with SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not log.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and err.strip().splitlines() == [
        "imlbench: terminated (SIGTERM); finished runs are saved and will be reused"
    ]


def test_a_claimed_run_is_computed_once(tmp_path, monkeypatch, drop):
    name, log = slow_plugin(tmp_path, monkeypatch, 1, drop)
    request = imlbench.plan(f"{name}:Slow", "synthetic-defs", seeds=[0], params=TINY)[0]
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(run_one(request, tmp_path / "o"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(cached for _, cached in results) == [False, True]
    assert log.read_text() == "fit\n" and not claim_path(request.path(tmp_path / "o")).exists()


def test_a_stale_claim_of_a_dead_process_is_taken_over(tmp_path):
    request = imlbench.plan("majority", "synthetic-defs", seeds=[0], params=TINY)[0]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claim = claim_path(request.path(tmp_path))
    claim.parent.mkdir(parents=True)
    claim.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    record, cached = run_one(request, tmp_path)
    assert record["status"] == "ok" and not cached and not claim.exists()


# -- 6. forged records are reported; huge seeds and parameters are one line (Isolation v2) -------------


def forged(path: Path, change) -> Path:
    """A forger's edit written as plain JSON under its recomputed key and file name (no check)."""
    record = json.loads(path.read_text())
    change(record)
    record["key"] = run_key(identity_of(record))
    new = path.with_name(f"{record['pipeline']}-seed{record['seed']}-{record['key']}.json")
    path.unlink()
    new.write_text(json.dumps(record))
    return new


def _drop_q(record):
    del record["accuracy"]["q"]


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda r: r["accuracy"].update(d2consis=0.0), "accuracy (differs from the curve's at the evaluation point)"),
        (lambda r: r.update(margin=1e6), "margin (1000000.0"),
        (lambda r: r.update(margin=float("nan")), "margin (nan"),
        (_drop_q, "accuracy (no q, where the task has variables)"),
        (lambda r: r.update(by_construction_null="false"), "by_construction_null ('false': true or false)"),
        (lambda r: r.update(by_construction_null=1), "by_construction_null (1: true or false)"),
        (lambda r: r.update(definitions_learned=not r["definitions_learned"]), "definitions_learned (the evaluation"),
        (lambda r: r.update(seed=2**40), "seed (1099511627776: a run's seed is an integer in [0, 2**32))"),
        (lambda r: r.update(seed=-1), "seed (-1"),
        (lambda r: r["sizes"].update(variables_q=-5), "sizes"),
    ],
    ids=["d2consis 0", "margin 1e6", "margin nan", "no q", "flag string", "flag int", "learned", "seed", "-1", "size"],
)
def test_a_forged_record_is_one_leaderboard_problem_naming_file_and_field(rf_results, tmp_path, change, field):
    results = copy_of(rf_results, tmp_path)
    victim = forged(sorted((results / "records").rglob("*.json"))[0], change)
    board = imlbench.leaderboard(results)
    (problem,) = board.attrs["problems"]
    assert "\n" not in problem and str(victim) in problem and f"malformed {field}" in problem
    assert board["n_seeds"].iloc[0] == 2  # the row is built from the rest


def test_by_construction_null_on_a_one_stage_run_is_refused(tmp_path):
    imlbench.run(learner="majority", seeds=1, pipeline="one-stage", params=TINY, out=tmp_path)
    (path,) = (tmp_path / "records").rglob("*.json")
    forged(path, lambda r: r.update(by_construction_null=True))
    (problem,) = imlbench.leaderboard(tmp_path).attrs["problems"]
    assert "by_construction_null (true for a one-stage run" in problem


def test_every_published_record_passes_the_checks():
    root = Path(__file__).resolve().parent.parent / "docs" / "results"
    paths = [p for p in root.rglob("records/**/*.json") if not p.name.startswith(".tmp-")]
    assert len(paths) > 700
    for path in paths:
        read_record(path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "100000000000000000000"], "seeds must be a count of at most 100000"),
        (["--seeds", "1000000000"], "seeds must be a count of at most 100000"),
        (["--seeds", "0-1000000000"], "'0-1000000000' is out of range"),
        (["--seeds", "4294967296"], "at most 100000"),
        (["--seeds", "1,4294967296"], "'4294967296' is out of range"),
        (["--seeds", "9" * 5000], "bad --seeds"),
        (["--param", "n_estimators=99999999999999999999"], "parameter 'n_estimators': 99999999999999999999 is out"),
        (["--param", "n_entities=-99999999999999999999"], "integer parameters lie within"),
    ],
)
def test_huge_seeds_and_integer_parameters_are_one_line_errors(tmp_path, capsys, argv, message):
    assert main(["run", "--learner", "rf", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("imlbench: error:") and message in err
    assert not (tmp_path / "o").exists()


def test_a_suite_or_spec_with_huge_integers_is_one_line(tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text('tasks = ["synthetic-defs"]\nlearners = ["majority"]\nseeds = 99999999999999999999\n')
    learner = spec(tmp_path / "l.toml", "big", target="rf", extra="[params]\nn_estimators = 99999999999999999999\n")
    for argv in (["--suite", str(suite)], ["--learner", learner]):
        assert main(["run", *argv, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("out of range" in err or "at most 100000" in err)
    with pytest.raises(ImlbenchError, match="at most 100000"):
        imlbench.plan("rf", "synthetic-defs", seeds=range(100_001))
    assert imlbench.plan("majority", "synthetic-defs", seeds=[0, 2**32 - 1], params=TINY)[1].seed == 2**32 - 1
