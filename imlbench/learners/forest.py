"""`rf`: a random forest on the one-hot table view.

A forest cannot update its trees, but it can *grow*: stage 2 continues training by adding trees
fitted on the stage-2 data, and the forest votes with all its trees (each batch of trees keeps its
own class list; votes are mapped into the task-wide label space). A checkpoint is a batch of trees.

The harness asks for predictions on the same query sets at every checkpoint, so the forest keeps
each set's summed votes and adds only the new trees' (the same additions in the same order as a
full re-vote: identical predictions at a fraction of the cost).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from imlbench.core.protocol import Learner, LearnerTags, TableData, TableQueries
from imlbench.views.base import one_hot


class RandomForest(Learner):
    views = ("table",)
    # stage 2's trees see only stage-2 data, where the tag predicts nothing
    tags = LearnerTags(continue_training=True, stage2_uses_stage1=False)
    # What `imlbench search` may vary (PROTOCOL §8): tree count, feature sampling, leaf size. Not
    # max_features=None: on the one-hot table a forest of all-feature trees takes ~3 min per run.
    search_space = {
        "n_estimators": {"low": 10, "high": 300, "log": True},
        "stage2_estimators": {"low": 25, "high": 300, "log": True},
        "max_features": {"choices": ["sqrt", "log2"]},
        "min_samples_leaf": {"low": 1, "high": 16, "log": True},
    }

    def __init__(
        self,
        n_estimators: int = 100,
        stage2_estimators: int = 150,
        trees_per_checkpoint: int = 25,
        max_features: str = "sqrt",
        min_samples_leaf: int = 1,
        n_jobs: int = 1,
        random_state: int = 0,
    ):
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
        self.votes_: dict[bytes, tuple[int, np.ndarray, object]] = {}  # query set -> (forests counted, votes, X)
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
            forest = RandomForestClassifier(
                n_estimators=batch,
                max_features=self.max_features,
                min_samples_leaf=self.min_samples_leaf,
                n_jobs=self.n_jobs,
                random_state=int(seed),
            )
            with warnings.catch_warnings():  # every definition has its own label: expected here
                warnings.filterwarnings("ignore", message="The number of unique classes")
                self.forests_.append(forest.fit(X, data.y))
            n_trees -= batch
            yield

    def predict(self, queries: TableQueries) -> np.ndarray:
        return self.label_space_[self._votes(queries).argmax(axis=1)]

    def predict_scores(self, queries: TableQueries, candidates: np.ndarray) -> np.ndarray:
        """Log of each candidate's share of the tree votes, with one pseudo-vote spread over all
        labels so that a label no tree votes for has a finite score."""
        votes = self._votes(queries)
        share = (votes + 1 / votes.shape[1]) / (votes.sum(axis=1, keepdims=True) + 1)
        return np.log(share[:, np.searchsorted(self.label_space_, candidates)])

    def _votes(self, queries: TableQueries) -> np.ndarray:
        """Summed votes of every tree per query; a known query set only adds the new trees' votes."""
        key = hashlib.blake2b(pd.util.hash_pandas_object(queries.X, index=False).to_numpy().tobytes()).digest()
        counted, votes, X = self.votes_.get(key, (0, None, None))
        if votes is None:
            X = self.forests_[0].estimators_[0]._validate_X_predict(one_hot(queries.X), True)
            votes = np.zeros((X.shape[0], len(self.label_space_)))
        for forest in self.forests_[counted:]:
            rows, classes, weights = forest_votes(forest, X)
            votes[rows, np.searchsorted(self.label_space_, forest.classes_)[classes]] += weights
        if len(self.votes_) >= 8 and key not in self.votes_:  # a bounded cache: the harness's few query sets
            self.votes_.pop(next(iter(self.votes_)))
        self.votes_[key] = (len(self.forests_), votes, X)
        return votes.copy()


def forest_votes(forest: RandomForestClassifier, X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nonzero entries of `forest.predict_proba(X) * n_trees`, to the last bit: (rows, classes,
    weights), each (row, class) once.

    scikit-learn copies a dense (queries x classes) row per tree and adds it; with a thousand
    classes and (nearly) pure leaves that is a thousand times the work that matters. Adding only
    the nonzero entries, tree by tree in the same order (`np.add.at` is sequential), performs the
    same float additions (adding 0.0 changes nothing); the division and multiplication by the tree
    count are scikit-learn's and ours."""
    parts = []
    for tree in forest.estimators_:
        indptr, classes, fractions = _leaf_fractions(tree)
        leaf = tree.apply(X, check_input=False)
        start, count = indptr[leaf], indptr[leaf + 1] - indptr[leaf]
        entries = np.repeat(start - np.cumsum(count) + count, count) + np.arange(count.sum())
        parts.append(
            (np.repeat(np.arange(len(leaf)), count) * forest.n_classes_ + classes[entries], fractions[entries])
        )
    cells = np.concatenate([cell for cell, _ in parts])
    unique, position = np.unique(cells, return_inverse=True)
    sums = np.zeros(len(unique))
    np.add.at(sums, position, np.concatenate([fraction for _, fraction in parts]))
    return unique // forest.n_classes_, unique % forest.n_classes_, sums / len(forest.estimators_) * forest.n_estimators


def _leaf_fractions(tree) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fitted tree's leaves as a sparse table, node id -> (classes, fractions), kept on the tree."""
    if not hasattr(tree, "leaf_fractions_"):
        value = tree.tree_.value[:, 0, :]
        leaves = np.flatnonzero(tree.tree_.children_left == -1)
        at, classes = np.nonzero(value[leaves])
        nodes = leaves[at]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(nodes, minlength=len(value)))])
        tree.leaf_fractions_ = (indptr, classes, value[nodes, classes])
    return tree.leaf_fractions_
