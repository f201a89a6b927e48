"""Learners used by the tests: a spy that logs everything it is handed, and broken learners."""

from __future__ import annotations

import os
import pickle
import signal
import time
from collections.abc import Iterator

import numpy as np
from reference import training_labels

from imlbench import Learner
from imlbench.core.protocol import LearnerTags
from imlbench.views.base import n_rows


class Spy(Learner):
    """Answers with the first category code it can find: a learner that knows nothing."""

    views = ("table", "tokens")
    tags = LearnerTags(continue_training=True)

    def __init__(self, view: str = "table"):
        self.view = view

    def supported_views(self) -> tuple[str, ...]:
        return (self.view,)

    def fit(self, data) -> Iterator[None]:
        self.label_ = int(training_labels(data)[0])
        yield

    def continue_fit(self, data) -> Iterator[None]:
        yield

    def predict(self, queries) -> np.ndarray:
        return np.full(n_rows(queries), self.label_, dtype=np.int64)


class LoggingSpy(Spy):
    """A Spy that also appends every object it is handed, pickled, to the file `log`: what crossed
    into the learner's process, read back by the test."""

    def __init__(self, view: str = "table", log: str = ""):
        super().__init__(view)
        self.log = log

    def fit(self, data) -> Iterator[None]:
        self._keep("fit", data)
        yield from super().fit(data)

    def continue_fit(self, data) -> Iterator[None]:
        self._keep("continue_fit", data)
        yield from super().continue_fit(data)

    def predict(self, queries) -> np.ndarray:
        self._keep("predict", queries)
        return super().predict(queries)

    def _keep(self, call: str, obj) -> None:
        with open(self.log, "ab") as f:
            pickle.dump((call, obj), f)


class ExplodesInStage2(Spy):
    def continue_fit(self, data) -> Iterator[None]:
        raise RuntimeError("stage 2 is broken\non purpose")
        yield


class NoContinue(Spy):
    tags = LearnerTags()


class FailsToConstruct(Spy):
    def validate(self) -> None:
        raise ValueError("view must be 'table' or 'tokens'")


# --- learners that misbehave in every way a plugin can; the harness must isolate each one


class NeverYields(Spy):
    """Blocks inside fit (in C, where no Python-level interruption reaches) before any checkpoint."""

    def fit(self, data) -> Iterator[None]:
        time.sleep(3600)
        yield


class YieldsForever(Spy):
    """Reaches checkpoint after checkpoint of stage 1 and never finishes."""

    def fit(self, data) -> Iterator[None]:
        self.label_ = int(training_labels(data)[0])
        while True:
            yield


class RaisesInFit(Spy):
    """Raises a BaseException that is not an Exception (`raises`: SystemExit or KeyboardInterrupt)."""

    def __init__(self, view: str = "table", raises: str = "SystemExit"):
        super().__init__(view)
        self.raises = raises

    def fit(self, data) -> Iterator[None]:
        raise {"SystemExit": SystemExit(3), "KeyboardInterrupt": KeyboardInterrupt()}[self.raises]
        yield


class ExitsProcess(Spy):
    """Ends its whole process from inside fit, as a crashing extension would."""

    def fit(self, data) -> Iterator[None]:
        os._exit(1)
        yield


class SendsSigint(Spy):
    """Delivers a real SIGINT to its own process mid-fit, as a Ctrl-C of the driver would."""

    def fit(self, data) -> Iterator[None]:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job starts with it ignored
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)
        yield


BAD_ANSWERS = {"nan": np.nan, "fraction": 2.5, "negative": -1, "outside": 10**6}


class BadPredictions(Spy):
    """Answers every query with one broken value (`answer`: a key of BAD_ANSWERS, or "text")."""

    def __init__(self, view: str = "table", answer: str = "nan"):
        super().__init__(view)
        self.answer = answer

    def predict(self, queries) -> np.ndarray:
        if self.answer == "text":
            return np.full(n_rows(queries), "tag1")
        return np.full(n_rows(queries), BAD_ANSWERS[self.answer])


# --- learners that try to reach beyond their own run (tests/test_isolation.py)


class PatchesHarness(Spy):
    """Patches the harness, numpy and scikit-learn in its own process mid-fit, as a plugin that
    wanted to change other runs' scores would."""

    def fit(self, data) -> Iterator[None]:
        import sklearn.ensemble

        import imlbench.harness.evaluation as evaluation
        import imlbench.harness.stages as runner

        evaluation.Evaluator.test = lambda self, learner: {"d1consis": 1.0, "d2consis": 0.0}
        evaluation.check_predictions = lambda predicted, n, vocab_size: np.zeros(n, dtype=np.int64)
        runner.run_scores = lambda *args, **kwargs: {"iml_effect": 100.0}
        np.mean = lambda *args, **kwargs: 1.0
        np.random.seed(12345)
        sklearn.ensemble.RandomForestClassifier.predict = lambda self, X: np.zeros(len(X), dtype=np.int64)
        yield from super().fit(data)


class ReadsAnswers(Spy):
    """Looks for the answer key from inside `predict`: up the call stack (an Evaluator's locals) and
    over every object the garbage collector knows; answers with it where found, else as Spy does."""

    def predict(self, queries) -> np.ndarray:
        n = n_rows(queries)
        found = _answers_on_stack(n)
        if found is None:
            found = _answers_on_heap(n)
        return found if found is not None else super().predict(queries)


def _answers_on_stack(n: int):
    import sys

    frame = sys._getframe()
    while frame is not None:
        targets = frame.f_locals.get("targets")
        if isinstance(targets, np.ndarray) and len(targets) == n:
            return targets
        frame = frame.f_back
    return None


def _answers_on_heap(n: int):
    import gc

    for obj in gc.get_objects():
        sets = getattr(obj, "_sets", None) if type(obj).__name__ == "Evaluator" else None
        for entry in (sets or {}).values():
            if len(entry[1]) == n:
                return entry[1]
    return None


class LeavesChildren(Spy):
    """Starts a multiprocessing pool and a `sleep 600` subprocess in fit, writes every pid of its run
    to `pid_file`, then hangs (`hang`) or finishes, leaving them running."""

    def __init__(self, view: str = "table", pid_file: str = "", hang: bool = True):
        super().__init__(view)
        self.pid_file, self.hang = pid_file, hang

    def fit(self, data) -> Iterator[None]:
        import multiprocessing
        import subprocess

        self.pool_ = multiprocessing.get_context("fork").Pool(2)
        self.sleeper_ = subprocess.Popen(["sleep", "600"])
        pids = [os.getpid(), self.sleeper_.pid] + [p.pid for p in self.pool_._pool]
        with open(self.pid_file, "w") as out:
            out.write(" ".join(map(str, pids)))
        if self.hang:
            time.sleep(3600)
        yield from super().fit(data)


class HogsMemory(Spy):
    """Allocates (and touches) memory in 100 MiB blocks up to `mib` inside fit."""

    def __init__(self, view: str = "table", mib: int = 3000):
        super().__init__(view)
        self.mib = mib

    def fit(self, data) -> Iterator[None]:
        self.blocks_ = []
        for _ in range(self.mib // 100):
            self.blocks_.append(np.ones(100 * 2**20 // 8))
            time.sleep(0.02)
        yield from super().fit(data)
