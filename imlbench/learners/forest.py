"""`rf`: a random forest on the one-hot table view.

A forest cannot update its trees, but it can *grow*: stage 2 continues training by adding trees
fitted on the stage-2 data, and the forest votes with all its trees (each batch of trees keeps its
own class list; votes are mapped into the task-wide label space). A checkpoint is a batch of trees.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from imlbench.core.protocol import Learner, TableData, TableQueries
from imlbench.views.base import one_hot


class RandomForest(Learner):
    views = ("table",)
    capabilities = frozenset({"continue_training"})

    def __init__(self, n_estimators: int = 100, stage2_estimators: int = 100, trees_per_checkpoint: int = 25,
                 max_features: str = "sqrt", min_samples_leaf: int = 1, n_jobs: int = 1, random_state: int = 0):
        self.n_estimators = n_estimators
        self.stage2_estimators = stage2_estimators
        self.trees_per_checkpoint = trees_per_checkpoint
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.n_jobs = n_jobs
        self.random_state = random_state

    def validate(self) -> None:
        self.require_at_least_one("n_estimators", "stage2_estimators", "trees_per_checkpoint", "min_samples_leaf")

    def fit(self, data: TableData) -> Iterator[None]:
        self.label_space_ = data.label_space
        self.forests_: list[RandomForestClassifier] = []
        yield from self._grow(data, self.n_estimators)

    def continue_fit(self, data: TableData) -> Iterator[None]:
        if not hasattr(self, "forests_"):
            raise RuntimeError("continue_fit called before fit")
        yield from self._grow(data, self.stage2_estimators)

    def _grow(self, data: TableData, n_trees: int) -> Iterator[None]:
        X = one_hot(data.X)
        while n_trees > 0:
            batch = min(self.trees_per_checkpoint, n_trees)
            seed = np.random.SeedSequence([self.random_state, len(self.forests_)]).generate_state(1)[0]
            forest = RandomForestClassifier(n_estimators=batch, max_features=self.max_features,
                                            min_samples_leaf=self.min_samples_leaf, n_jobs=self.n_jobs,
                                            random_state=int(seed))
            with warnings.catch_warnings():  # every definition has its own label: expected here
                warnings.filterwarnings("ignore", message="The number of unique classes")
                self.forests_.append(forest.fit(X, data.y))
            n_trees -= batch
            yield

    def predict(self, queries: TableQueries) -> np.ndarray:
        X = one_hot(queries.X)
        votes = np.zeros((X.shape[0], len(self.label_space_)))
        for forest in self.forests_:
            columns = np.searchsorted(self.label_space_, forest.classes_)
            votes[:, columns] += forest.predict_proba(X) * forest.n_estimators
        return self.label_space_[votes.argmax(axis=1)]
