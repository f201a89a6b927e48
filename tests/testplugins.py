"""Learners used by the tests: a spy that keeps everything it is handed, and broken learners."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import numpy as np

from imlbench import Learner
from imlbench.views.base import n_rows, training_labels

HANDED: list = []  # every object any Spy instance received, in order


class Spy(Learner):
    """Answers with the first category code it can find, and keeps every object it is handed."""

    views = ("table", "tokens")
    capabilities = frozenset({"continue_training"})

    def __init__(self, view: str = "table"):
        self.view = view

    def supported_views(self) -> tuple[str, ...]:
        return (self.view,)

    def fit(self, data) -> Iterator[None]:
        HANDED.append(("fit", data))
        self.label_ = int(training_labels(data)[0])
        yield

    def continue_fit(self, data) -> Iterator[None]:
        HANDED.append(("continue_fit", data))
        yield

    def predict(self, queries) -> np.ndarray:
        HANDED.append(("predict", queries))
        return np.full(n_rows(queries), self.label_, dtype=np.int64)


class ExplodesInStage2(Spy):
    def continue_fit(self, data) -> Iterator[None]:
        raise RuntimeError("stage 2 is broken\non purpose")
        yield


class NoContinue(Spy):
    capabilities = frozenset()


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


from imlbench.core import seeds as _seeds  # noqa: E402
from imlbench.learners.mlp import MLP  # noqa: E402


class ProbeFailsOnSeed1(MLP):
    """An mlp whose hidden states raise for run seed 1; with SLOW_SEED1 set they hang there instead
    (so that a driver can be killed while seed 1 is still running)."""

    def hidden_states(self, queries):
        if self.random_state == _seeds.derive_seed(1, _seeds.LEARNER):
            if os.environ.get("SLOW_SEED1"):
                time.sleep(600)
            raise RuntimeError("probe failed on purpose")
        return super().hidden_states(queries)
