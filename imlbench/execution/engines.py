"""Where runs execute: supervised local workers, dask.distributed, or Slurm via submitit.

The driver reads the existing records first and hands only missing runs to an engine, so a rerun of a
finished grid costs no job. Local runs go to a pool of supervised worker processes, one per job
(`imlbench.execution.workers`); every other engine is used through the same `submit(fn, *args) -> future`
call, a job starting a worker of its own, and the driver polls `future.done()` (`as_completed` does
not accept foreign futures). Each job writes its own record, so a driver that dies loses nothing: a
rerun reuses every finished record.

Every run executes under a worker (`imlbench.execution.supervisor`) that forks its harness and its
learner, stops it at its time limit (`timeout`, or a learner spec's `timeout`) with an error record,
bounds its learner's process tree to `memory_limit`, and kills everything it started when it ends.
No plugin learner's code runs in the driver (`imlbench.harness.probe`).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from imlbench.core.specs import ImlbenchError, did_you_mean
from imlbench.execution.progress import Progress, say
from imlbench.execution.workers import Execution, run_job, run_pool
from imlbench.harness.probe import module_of, relative_costs
from imlbench.harness.processes import preload
from imlbench.harness.runner import RunRequest, cached_record
from imlbench.harness.sandbox import MemoryCgroup
from imlbench.store.records import prepare_out

EXECUTORS = ("local", "dask", "dask://HOST:PORT", "slurm", "submitit-local")
POLL_SECONDS = 0.2
DASK_CONNECT_SECONDS = 10
SLURM_MARGIN_MINUTES = 5  # Slurm's own limit is a backstop: the job stops the run at its limit first
AUTO_JOBS = "auto"
# the published runs peaked at 0.37-2.0 GB resident (rf on synthetic-defs highest): room for twice that
MEMORY_PER_AUTO_JOB = 4 * 1024**3
DEFAULT_SHARE = 0.75  # of the machine's memory, split between the parallel runs, when no limit is given
UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
JOBS_HELP = (
    "a number, or auto (the default; IMLBENCH_JOBS sets another): one per CPU core, at most one per "
    "4 GiB of memory and per run to do"
)


def resolve_jobs(jobs: int | str, n_runs: int) -> int:
    """A --jobs value as a number of parallel runs. "auto": one per CPU core this process may use,
    no more than there are runs to execute, and no more than leaves each run 4 GiB of the machine's
    memory (each run's default memory limit is the machine's memory divided by the jobs)."""
    if jobs == AUTO_JOBS:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, min(cores, n_runs, total_memory() // MEMORY_PER_AUTO_JOB))
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ImlbenchError(f"--jobs must be a whole number of at least 1 or {AUTO_JOBS!r}, got {jobs!r}")
    return jobs


def parse_memory(value: str | int | float | None, jobs: int = 1) -> int | None:
    """A --memory-limit in bytes: "4G", "512M", "1.5G", a byte count, 0 = no limit; None = the
    default: DEFAULT_SHARE of the machine's memory divided by the parallel runs."""
    if value is None:
        return int(total_memory() * DEFAULT_SHARE) // max(jobs, 1)
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)", text)
    if isinstance(value, bool) or match is None:
        raise ImlbenchError(f"bad memory limit {value!r}; expected e.g. 4G, 512M or 0 for no limit")
    amount = int(float(match[1]) * UNITS[match[2]])
    return amount or None


def total_memory() -> int:
    """The machine's memory, or the limit of this process's memory cgroup (v2 or v1) where lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if (own := MemoryCgroup.own()) is not None:
        limit = own.limit_file.read_text().strip()
        total = min(total, int(limit)) if limit.isdigit() else total
    return total


def default_jobs() -> str:
    """The command line's --jobs when none is given: IMLBENCH_JOBS, else auto."""
    return os.environ.get("IMLBENCH_JOBS", AUTO_JOBS)


def parse_jobs(text: str) -> int | str:
    """--jobs as the command line reads it: a whole number of at least 1, or auto."""
    value = AUTO_JOBS if text.strip().lower() == AUTO_JOBS else (int(text) if text.strip().isdigit() else text)
    try:
        resolve_jobs(value, 1)
    except ImlbenchError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--jobs ")) from None
    return value


def check_timeout(timeout: float | None) -> None:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0 or math.isinf(timeout)
    ):
        raise ImlbenchError(f"timeout must be a number of seconds > 0 (or 0 for no limit), got {timeout!r}")


def limit_for(request: RunRequest, timeout: float | None) -> float | None:
    """The run's wall-clock limit: `timeout` if given (0 = none), else its learner spec's `timeout`."""
    return Execution("", timeout=timeout).limit(request)


@contextmanager
def open_executor(spec: str, jobs: int, out: str | Path, limit: float | None = None) -> Iterator[Any]:
    """An engine with `submit`: "dask" (a LocalCluster of `jobs` single-threaded workers on loopback),
    "dask://HOST:PORT" (a running scheduler), "slurm" (submitit's AutoExecutor; logs under
    OUT/submitit) or "submitit-local". `limit` (the longest run limit) sets submitit's timeout_min."""
    if spec == "dask" or spec.startswith("dask://"):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError as exc:
            raise ImlbenchError("--executor dask needs dask.distributed: pip install 'imlbench[dask]'") from exc
        if spec == "dask":
            with (
                LocalCluster(
                    n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
                ) as cluster,
                Client(cluster) as client,
            ):
                yield client
        else:
            address = _reachable(spec)
            try:
                client = Client(address, timeout=DASK_CONNECT_SECONDS)
            except (OSError, TimeoutError) as exc:
                raise ImlbenchError(f"cannot connect to the dask scheduler at {address}: {exc}") from exc
            with client:
                yield client
    elif spec in ("slurm", "submitit-local"):
        try:
            import submitit
        except ImportError as exc:
            raise ImlbenchError("--executor slurm needs submitit: pip install 'imlbench[slurm]'") from exc
        folder = Path(out) / "submitit" / "%j"
        executor = submitit.AutoExecutor(folder=folder) if spec == "slurm" else submitit.LocalExecutor(folder=folder)
        if limit is not None:
            executor.update_parameters(timeout_min=math.ceil(limit / 60) + SLURM_MARGIN_MINUTES)
        elif spec == "submitit-local":
            executor.update_parameters(timeout_min=60)
        yield executor
    else:
        check_executor(spec)
        raise ImlbenchError(f"executor {spec!r} runs in this process, not through an engine")


def check_executor(spec: str) -> None:
    if spec not in ("local", "dask", "slurm", "submitit-local") and not spec.startswith("dask://"):
        raise ImlbenchError(f"unknown executor {spec!r}; valid: {', '.join(EXECUTORS)}{did_you_mean(spec, EXECUTORS)}")


def _reachable(spec: str) -> str:
    """dask://HOST:PORT -> tcp://HOST:PORT, after checking something listens there (a refused
    connection fails at once instead of after dask's connect retries)."""
    host, _, port = spec.removeprefix("dask://").rpartition(":")
    if not host or not port.isdigit():
        raise ImlbenchError(f"bad --executor {spec!r}; expected dask://HOST:PORT (e.g. dask://10.0.0.5:8786)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=DASK_CONNECT_SECONDS).close()
    except OSError as exc:
        raise ImlbenchError(
            f"no dask scheduler reachable at {host}:{port}: {exc.strerror or exc}; start one "
            f"(`dask scheduler`) or use --executor dask for a local cluster"
        ) from exc
    return f"tcp://{host}:{port}"


def drive(
    requests: list[RunRequest],
    out: str | Path,
    force: bool = False,
    executor: str | Any = None,
    jobs: int | str = 1,
    quiet: bool = False,
    timeout: float | None = None,
    memory_limit: str | int | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Load finished runs, execute the missing ones, and show one progress bar (runs done / total,
    failures, ETA; the current run's stage and checkpoint where known). Returns (records, problems).
    `executor` is a name ("local": in this process with one job and no time limit, else `jobs`
    supervised workers; see `open_executor` for the others) or any object with a
    concurrent.futures-style `submit`; `jobs` a number or "auto" (`resolve_jobs`). `timeout` (seconds,
    0 = none) limits every run; `memory_limit` ("4G", "512M", bytes; 0 = none; None = the machine's
    memory / jobs) every run's learner."""
    resolve_jobs(jobs, 1)
    check_timeout(timeout)
    parse_memory(memory_limit)  # a bad limit is an error before anything runs
    if isinstance(executor, str):
        check_executor(executor)
    prepare_out(out)
    progress = Progress(len(requests), quiet)  # a bar on a terminal, else one line per finished run
    found: dict[int, dict[str, Any]] = {}  # id(request) -> record, returned in request order
    problems: list[str] = []

    def finish(request: RunRequest, outcome: dict[str, Any] | None, error: BaseException | None = None) -> None:
        failures = len(problems)
        if error is not None:
            problems.append(f"{request.label()}: the job failed: {type(error).__name__}: {error}")
        elif "problem" in outcome:
            problems.append(outcome["problem"])
        else:
            record = found[id(request)] = outcome["record"]
            if record["status"] != "ok":
                problems.append(f"{request.label()}: {record['error']}")
        if len(problems) > failures:
            progress.finished(request.label(), error=problems[-1])
        else:
            seconds = record.get("measurements", record).get("seconds", {})  # a run's, or a diagnostic's
            took = None if outcome["cached"] else float(seconds.get("total", float("nan")))
            progress.finished(request.label(), request.summary(record), took)

    def show(request: RunRequest, stage: str, checkpoint: int, detail: str) -> None:
        progress.stage(request.label(), stage, checkpoint, detail)

    try:
        todo = longest_first(_missing(requests, out, force, finish))
        preload(sorted({module for module in map(learner_module, todo) if module}))
        jobs = resolve_jobs(jobs, len(todo))
        execution = Execution(str(out), force, timeout, parse_memory(memory_limit, jobs))
        _execute(todo, execution, executor, jobs, finish, show)
    finally:
        progress.close()
    return [found[id(r)] for r in requests if id(r) in found], problems


def learner_module(request) -> str | None:
    """The module of a request's learner class where it is imlbench's own (the workers import it
    once, not every run); None for a plugin's, which only its learner processes import."""
    return module_of(request.learner.target)


def longest_first(requests: list) -> list:
    """Runs ordered by their learner's declared `relative_cost`, longest first (stable otherwise), so
    that parallel workers do not end a grid waiting on one long straggler started last. A plugin's
    cost is what the probe read in its own process."""
    costs = relative_costs([request.learner for request in requests])
    return sorted(requests, key=lambda request: costs.get(request.learner.target, 1.0), reverse=True)


def _missing(requests: list[RunRequest], out, force: bool, finish) -> list[RunRequest]:
    """The requests without a finished record; finished ones are reported as cached right away. A run
    whose record file is unreadable (truncated, edited) is recomputed, that file kept beside it as
    `NAME.json.unreadable` and named in one line; the others are reused as they are."""
    if force:
        return list(requests)
    todo = []
    for request in requests:
        try:
            record = cached_record(request, Path(out))
        except ImlbenchError as exc:  # an unreadable record: set it aside and recompute that run alone
            path = request.path(Path(out))
            aside = path.with_name(path.name + ".unreadable")
            try:
                path.replace(aside)
            except OSError as moved:
                finish(request, {"problem": f"{exc} (cannot set it aside: {moved.strerror or moved})"})
                continue
            why = str(exc).removesuffix("; delete it or rerun with --force")
            say(f"imlbench: {why}; recomputing {request.label()} (the old file is kept as {aside.name})")
            record = None
        if record is None:
            todo.append(request)
        else:
            finish(request, {"record": record, "cached": True})
    return todo


def _execute(todo: list[RunRequest], execution: Execution, executor, jobs: int, finish, show) -> None:
    """One worker per job locally; through `submit` on any other engine."""
    if not todo:
        return
    if executor is not None and not isinstance(executor, str):
        _poll(executor, todo, execution, finish)
    elif (executor or "local") != "local":
        longest = max((limit for limit in map(execution.limit, todo) if limit is not None), default=None)
        with open_executor(executor, jobs, execution.out, longest) as engine:
            _poll(engine, todo, execution, finish)
    else:
        run_pool(todo, execution, jobs, finish, show)


def _poll(engine: Any, todo: list[RunRequest], execution: Execution, finish) -> None:
    pending = {engine.submit(run_job, request, execution): request for request in todo}
    while pending:
        for future in [f for f in pending if f.done()]:
            request = pending.pop(future)
            try:
                outcome, error = future.result(), None
            except Exception as exc:  # a worker that died, a job the engine lost
                outcome, error = None, exc
            finish(request, outcome, error)
        if pending:
            time.sleep(POLL_SECONDS)
