"""Parallel and cluster execution give the same records as in-process runs, and lose nothing."""

import os
import threading
import time

import pytest

import imlbench
from imlbench.api import execute_plan
from imlbench.store.records import iter_record_files, read_record

GRID = dict(
    learner="rf",
    task="synthetic-defs",
    seeds=2,
    pipeline="two-stage,one-stage",
    params={"n_entities": 100, "n_estimators": 10, "stage2_estimators": 10},
)


PROVENANCE = ("measurements", "versions", "environment")  # timings and where it ran, not what it computed


def records_by_name(out):
    return {p.name: {k: v for k, v in read_record(p).items() if k not in PROVENANCE} for p in iter_record_files(out)}


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("in_process")
    imlbench.run(out=out, **GRID)
    return records_by_name(out)


@pytest.mark.parametrize(
    "executor",
    ["local", pytest.param("dask", marks=pytest.mark.slow), pytest.param("submitit-local", marks=pytest.mark.slow)],
)
def test_engines_reproduce_in_process_records(tmp_path, in_process, executor):
    summary = imlbench.run(out=tmp_path, executor=executor, jobs=2, **GRID)
    assert summary.attrs["problems"] == []
    assert records_by_name(tmp_path) == in_process and len(in_process) == 4


def test_a_concurrent_futures_executor_object_works(tmp_path, in_process):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        imlbench.run(out=tmp_path, executor=pool, **GRID)
    assert records_by_name(tmp_path) == in_process


def test_unknown_executor_is_a_clear_error(tmp_path):
    with pytest.raises(imlbench.ImlbenchError, match="unknown executor 'yarn'; valid: local, dask"):
        imlbench.run(out=tmp_path, executor="yarn", jobs=2, **GRID)


@pytest.mark.slow  # minutes of waiting on processes and clocks: the default suite stays under ~10 min
def test_killed_dask_worker_loses_nothing_after_a_rerun(tmp_path):
    from dask.distributed import Client, LocalCluster

    requests = imlbench.plan(
        learner="mlp", task="synthetic-defs", seeds=6, params={"n_entities": 100, "epochs": 20, "stage2_epochs": 20}
    )
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        victim = sorted(client.scheduler_info()["workers"])[0]

        def kill_one_worker():
            time.sleep(4)
            client.run(os._exit, 1, workers=[victim])

        killer = threading.Thread(target=kill_one_worker)
        killer.start()
        records, problems = execute_plan(requests, tmp_path, executor=client, verbose=False)
        killer.join()
    done_first = len(iter_record_files(tmp_path))
    assert done_first >= 1  # the other worker kept finishing runs
    records, problems = execute_plan(requests, tmp_path, verbose=False)
    assert problems == [] and len(records) == 6
    assert len(iter_record_files(tmp_path)) == 6
    assert all(r["status"] == "ok" for r in records)


def test_suite_runs_every_learner_on_every_task_it_supports():
    requests = imlbench.api.plan_suite("smoke")
    combos = {(r.task.name.split("[")[0], r.learner.name, r.pipeline) for r in requests}
    assert ("tagged-digits", "tag-blind", "one-stage") not in combos  # the tag is in the pixels
    assert ("synthetic-defs", "tag-blind", "two-stage") in combos and ("tagged-digits", "rf", "one-stage") in combos
    assert len(combos) == 14 and len(requests) == 28 and all(r.task.params["n_entities"] == 100 for r in requests)
    default = imlbench.api.plan_suite("default")
    assert {r.learner.name for r in default} == {"transformer", "convnet", "mlp", "rf", "gbm", "tag-blind"}
    assert len(default) == 250 and {r.seed for r in default} == set(range(10))  # 25 rows (one family) x 10 seeds
    twins = {(r.task.name, r.learner.name, r.pipeline) for r in default if r.task.name.endswith("-null")}
    assert ("synthetic-defs-null", "transformer", "one-stage") in twins and len(twins) == 7  # the controls


def test_suite_errors_are_one_line(capsys, tmp_path):
    from imlbench.cli import main

    assert main(["run", "--suite", "nope", "--out", str(tmp_path)]) == 2
    valid = "valid: baselines, controls, default, extended, gpu, llm, smoke"
    assert f"unknown suite 'nope'; {valid}" in capsys.readouterr().err
    assert main(["run", "--suite", "smoke", "--learner", "rf", "--out", str(tmp_path)]) == 2
    assert "drop --learner/--task/--param or drop --suite" in capsys.readouterr().err


def test_jobs_auto_uses_the_cores_but_no_more_than_the_runs_or_the_memory(monkeypatch):
    from imlbench.cli import build_parser
    from imlbench.execution import engines

    monkeypatch.setattr(engines.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(engines, "total_memory", lambda: 64 * 1024**3)
    assert engines.resolve_jobs("auto", 10) == 4 and engines.resolve_jobs("auto", 3) == 3
    assert engines.resolve_jobs("auto", 0) == 1 and engines.resolve_jobs(7, 2) == 7
    monkeypatch.setattr(engines, "total_memory", lambda: 9 * 1024**3)
    assert engines.resolve_jobs("auto", 10) == 2  # 4 GiB per run
    for bad in (0, -1, 1.5, True, "two"):
        with pytest.raises(imlbench.ImlbenchError, match="at least 1 or 'auto'"):
            engines.resolve_jobs(bad, 4)
    monkeypatch.delenv("IMLBENCH_JOBS")
    assert build_parser().parse_args(["run"]).jobs == "auto"  # the command line's default
    assert build_parser().parse_args(["run", "--jobs", "3"]).jobs == 3
