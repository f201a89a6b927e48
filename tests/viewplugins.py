"""A view added by a plugin: one View subclass, its plain data classes, and `register_view` when the
module is imported (so that every process that imports the module knows the view)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imlbench.core.protocol import Examples, TaskData
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.views.base import View, is_query, register_view


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


register_view(TripleView())
