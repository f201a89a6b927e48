"""Where runs execute: in-process, local worker processes, dask.distributed, or Slurm via submitit.

Every engine is used through the same `submit(fn, *args) -> future` call; the driver polls
`future.done()` rather than relying on `as_completed` (which does not accept foreign futures). Each
job writes its own record, so a driver that dies loses nothing: a rerun reuses every finished record.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterator

from tqdm.auto import tqdm

from imlbench.registry import ImlbenchError
from imlbench.runner import RunRequest, run_one

EXECUTORS = ("local", "dask", "dask://HOST:PORT", "slurm", "submitit-local")
POLL_SECONDS = 0.2


def run_job(request: RunRequest, out: str, force: bool, progress=None) -> dict[str, Any]:
    """One run, as a picklable job for any engine. Returns {"record", "cached"} or {"problem"}."""
    try:
        record, cached = run_one(request, Path(out), force=force, progress=progress)
    except ImlbenchError as exc:  # e.g. an unreadable record file: report it, keep going
        return {"problem": str(exc)}
    return {"record": record, "cached": cached}


@contextmanager
def open_executor(spec: str | None, jobs: int, out: str | Path) -> Iterator[Any]:
    """An engine with `submit`: "local" (`jobs` worker processes), "dask"
    (a LocalCluster of `jobs` single-threaded workers on loopback), "dask://HOST:PORT" (a running
    scheduler), "slurm" (submitit's AutoExecutor; logs under OUT/submitit) or "submitit-local"."""
    if jobs < 1:
        raise ImlbenchError(f"--jobs must be at least 1, got {jobs}")
    spec = spec or "local"
    if spec == "local":
        # spawn, not fork: forked torch/OpenMP state is unsafe, and spawn matches a cluster worker
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            yield pool
    elif spec == "dask" or spec.startswith("dask://"):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError as exc:
            raise ImlbenchError("--executor dask needs dask.distributed: pip install 'imlbench[dask]'") from exc
        if spec == "dask":
            with LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                              dashboard_address=None) as cluster, Client(cluster) as client:
                yield client
        else:
            with Client("tcp://" + spec.removeprefix("dask://"), timeout=30) as client:
                yield client
    elif spec in ("slurm", "submitit-local"):
        try:
            import submitit
        except ImportError as exc:
            raise ImlbenchError("--executor slurm needs submitit: pip install 'imlbench[slurm]'") from exc
        folder = Path(out) / "submitit" / "%j"
        executor = submitit.AutoExecutor(folder=folder) if spec == "slurm" else submitit.LocalExecutor(folder=folder)
        if spec == "submitit-local":
            executor.update_parameters(timeout_min=60)
        yield executor
    else:
        raise ImlbenchError(f"unknown executor {spec!r}; valid: {', '.join(EXECUTORS)}")


def drive(requests: list[RunRequest], out: str | Path, force: bool = False, executor: str | Any = None,
          jobs: int = 1, quiet: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """Submit every run, poll until all are done, and show one progress bar (runs done / total,
    failures, ETA; in-process also the current run's stage and checkpoint). Returns (records, problems).
    `executor` is a name (see `open_executor`; "local" with one job runs in this process) or any
    object with a concurrent.futures-style `submit`."""
    bar = tqdm(total=len(requests), unit="run", disable=quiet, file=sys.stderr, dynamic_ncols=True)
    records, problems = [], []

    def finish(request: RunRequest, outcome: dict[str, Any] | None, error: BaseException | None) -> None:
        if error is not None:
            problems.append(f"{request.label()}: the job failed: {type(error).__name__}: {error}")
        elif "problem" in outcome:
            problems.append(outcome["problem"])
        else:
            record = outcome["record"]
            records.append(record)
            if record["status"] != "ok":
                problems.append(f"{request.label()}: {record['error']}")
            elif not quiet:
                how = "cached" if outcome["cached"] else f"{record['measurements']['seconds']['total']:.1f}s"
                bar.write(f"{request.label()}: effect {record['scores']['iml_effect']:+.1f} ({how})", file=sys.stderr)
        bar.set_postfix(failed=len(problems), refresh=False)
        bar.update(1)

    if executor is None or isinstance(executor, str):
        if (executor or "local") == "local" and jobs == 1:
            _drive_in_process(requests, out, force, bar, finish)
            bar.close()
            return records, problems
        with open_executor(executor, jobs, out) as engine:
            _poll(engine, requests, out, force, finish)
    else:
        _poll(executor, requests, out, force, finish)
    bar.close()
    return records, problems


def _drive_in_process(requests, out, force, bar, finish) -> None:
    for request in requests:
        def progress(message: str, request=request) -> None:
            bar.set_postfix_str(f"{request.label()}: {message}")

        finish(request, run_job(request, str(out), force, None if bar.disable else progress), None)


def _poll(engine: Any, requests: list[RunRequest], out, force: bool, finish) -> None:
    pending = {engine.submit(run_job, request, str(out), force): request for request in requests}
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
