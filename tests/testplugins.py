"""Learners used by the tests: a spy that keeps everything it is handed, and broken learners."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from imlbench import Learner
from imlbench.views import n_rows, training_labels

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
