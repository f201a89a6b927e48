"""What a plugin package adds beside learners: a view (one View subclass and its plain data classes),
a task that offers it, and a pipeline (plain data). `tests/test_views.py` installs them as a
distribution whose entry points name `TRIPLES` and `DEFINITIONS_LAST`, so that every process (the
driver, workers, the learner's own) finds them by name without importing this module first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imlbench.core.pipelines import Pipeline, Step
from imlbench.core.protocol import Examples, TaskData
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.views.base import View, is_query


@dataclass(frozen=True)
class TripleData:
    triples: np.ndarray  # (n, 3): kind, relation, subject
    y: np.ndarray


@dataclass(frozen=True)
class TripleQueries:
    triples: np.ndarray


class TripleView(View):
    name, data_class, queries_class = "triples", TripleData, TripleQueries
    tagged = False

    def encode(self, data: TaskData, examples: Examples) -> TripleData | TripleQueries:
        triples = np.stack([examples.kind, examples.relation, examples.subject], axis=1)
        return TripleQueries(triples) if is_query(examples) else TripleData(triples, examples.target)


class TripleTask(SyntheticDefs):
    views = ("triples",)


TRIPLES = TripleView()

# stage 1's questions first, then its definitions, then stage 2: a pipeline is three steps of data
DEFINITIONS_LAST = Pipeline(
    "definitions-last",
    (
        Step("stage1", ("stage1",), kinds="rest"),
        Step("stage1", ("stage1",), kinds="definitions"),
        Step("stage2", ("stage2",), settings="stage2"),
    ),
)
