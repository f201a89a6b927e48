"""Learners that attack the harness, other runs and the machine (tests/test_hostile.py).

Importing this module patches scikit-learn, numpy and imlbench's own evaluation in the importing
process, and notes the importing process's pid in $IMLBENCH_HOSTILE_IMPORTS (when set): the driver,
its workers and the processes runs are forked from must never import it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import numpy as np
import sklearn.ensemble
from testplugins import Spy

import imlbench.harness.evaluation as evaluation
import imlbench.scoring.runs as runs
from imlbench.harness import processes


def sabotage() -> None:
    """What a plugin that wanted to change other runs' records would patch."""
    sklearn.ensemble.RandomForestClassifier.predict = lambda self, X: np.zeros(len(X), dtype=np.int64)
    sklearn.ensemble.RandomForestClassifier.predict_proba = lambda self, X: np.ones((len(X), 2)) / 2
    evaluation.Evaluator.test = lambda self, learner: {"d1consis": 1.0, "d2consis": 0.0}
    evaluation.check_predictions = lambda predicted, n, vocab_size: np.zeros(n, dtype=np.int64)
    runs.run_scores = lambda *args, **kwargs: {"iml_effect": 100.0}
    np.mean = lambda *args, **kwargs: 1.0
    np.random.seed(12345)


if os.environ.get("IMLBENCH_HOSTILE_IMPORTS"):
    with open(os.environ["IMLBENCH_HOSTILE_IMPORTS"], "a") as notes:
        notes.write(f"{os.getpid()} {os.getppid()}\n")
sabotage()


class Saboteur(Spy):
    """Patches at import (above) and again in fit."""

    def fit(self, data) -> Iterator[None]:
        sabotage()
        yield from super().fit(data)


def _spawn(argv: list[str]) -> int:
    """A double-forked process running argv (its parent exits at once: it is re-parented); its pid."""
    read, write = os.pipe()
    if (child := os.fork()) == 0:
        if (grandchild := os.fork()) == 0:
            os.execvp(argv[0], argv)
        os.write(write, str(grandchild).encode())
        os._exit(0)
    os.waitpid(child, 0)
    os.close(write)
    return int(os.read(read, 64))


class Escapes(Spy):
    """Starts a child in a new session and a double-forked `sleep 600` (both keep its stdout), writes
    every pid of its run to `pid_file`, then hangs, raises or finishes (`then`)."""

    def __init__(self, view: str = "table", pid_file: str = "", then: str = "hang"):
        super().__init__(view)
        self.pid_file, self.then = pid_file, then

    def fit(self, data) -> Iterator[None]:
        import subprocess

        session = subprocess.Popen(["sleep", "600"], start_new_session=True)
        pids = [os.getpid(), session.pid, _spawn(["sleep", "600"])]
        with open(self.pid_file, "w") as out:
            out.write(" ".join(map(str, pids)))
        if self.then == "hang":
            time.sleep(3600)
        if self.then == "raise":
            raise RuntimeError("fails after starting children")
        yield from super().fit(data)


class FillsShm(Spy):
    """Has a child in a new session write `mib` MiB to a /dev/shm file and hold it open, then waits
    up to a minute for the harness to stop the run. With `hold` false it writes 20 MiB files
    (`path`-0, -1, ...), 4 MiB at a time, each closed before the next is opened, and exits: no
    process holds more than one file of them open at any time, and none when it is done."""

    def __init__(self, view: str = "table", path: str = "", mib: int = 400, hold: bool = True):
        super().__init__(view)
        self.path, self.mib, self.hold = path, mib, hold

    def fit(self, data) -> Iterator[None]:
        if self.mib and os.fork() == 0:
            os.setsid()
            if not self.hold:
                chunk = b"\1" * (4 << 20)
                for part in range(self.mib // 20):
                    with open(f"{self.path}-{part}", "wb") as closed:
                        for _ in range(5):
                            closed.write(chunk)
                os._exit(0)
            with open(self.path, "wb") as held:
                for _ in range(self.mib // 4):
                    held.write(b"\1" * (4 << 20))
                held.flush()
                signal.pause()
        time.sleep(60 if self.mib else 0)
        yield from super().fit(data)


class StopsSpares(Spy):
    """For a second, sends SIGSTOP to every process its worker forked after it: the next run's spare
    harness and learner. Possible only where nothing scopes a learner's signals (IMLBENCH_NO_SANDBOX=1,
    or Landlock below ABI 6); the worker must not hand the next run a stopped process."""

    def fit(self, data) -> Iterator[None]:
        for _ in range(20):
            for pid in processes.descendants(os.getppid()):  # its worker's tree
                if pid > os.getpid():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
            time.sleep(0.05)
        yield from super().fit(data)
