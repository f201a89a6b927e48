"""`gbm`: gradient-boosted trees (XGBoost) on the table view, with native categorical splits.

Stage 2 continues boosting: new rounds fit the stage-1 booster's residuals on the stage-2 data.
A checkpoint is `rounds_per_checkpoint` boosting rounds. `min_child_weight` defaults to 0: with
a thousand classes each row's softmax hessian is ~0.002, and XGBoost's default of 1 forbids every
split (nothing is learned at all).

The harness asks for predictions on the same query sets at every checkpoint, so the booster keeps
each set's margins and adds only the new rounds' trees (`iteration_range` over a matrix whose base
margin is then set to zero, so that the intercept is counted once).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pandas as pd
import xgboost as xgb

from imlbench.core.protocol import Learner, LearnerTags, TableData, TableQueries


class GradientBoosting(Learner):
    # What `imlbench search` may vary (PROTOCOL §8): rounds, step size, tree shape.
    search_space = {
        "n_rounds": {"low": 5, "high": 80, "log": True},
        "stage2_rounds": {"low": 10, "high": 120, "log": True},
        "learning_rate": {"low": 0.03, "high": 1.0, "log": True},
        "max_depth": {"low": 2, "high": 10},
        # each fact is one row of a 1000-class softmax: its hessian is ~1e-3, so a
        # min_child_weight of 1 forbids every split (nothing is learned); search below it
        "min_child_weight": {"choices": [0.0, 0.001, 0.01]},
    }
    views = ("table",)
    tags = LearnerTags(continue_training=True, relative_cost=3)

    def __init__(
        self,
        n_rounds: int = 30,
        stage2_rounds: int = 42,
        rounds_per_checkpoint: int = 1,
        learning_rate: float = 0.3,
        max_depth: int = 6,
        min_child_weight: float = 0.0,
        max_cat_to_onehot: int = 1,
        n_threads: int = 1,
        random_state: int = 0,
    ):
        self.n_rounds = n_rounds
        self.stage2_rounds = stage2_rounds
        self.rounds_per_checkpoint = rounds_per_checkpoint
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.max_cat_to_onehot = max_cat_to_onehot
        self.n_threads = n_threads
        self.random_state = random_state

    def validate(self) -> None:
        self.require_at_least_one("n_rounds", "stage2_rounds", "rounds_per_checkpoint", "max_depth", "n_threads")

    def _matrix(self, X, y=None) -> xgb.DMatrix:
        labels = None if y is None else np.searchsorted(self.label_space_, y)
        return xgb.DMatrix(X, label=labels, enable_categorical=True, nthread=self.n_threads)

    def fit(self, data: TableData) -> Iterator[None]:
        self.label_space_ = data.label_space
        params = {
            "objective": "multi:softprob",
            "num_class": len(data.label_space),
            "tree_method": "hist",
            "eta": self.learning_rate,
            "max_depth": self.max_depth,
            "seed": self.random_state,
            "max_cat_to_onehot": self.max_cat_to_onehot,
            "min_child_weight": self.min_child_weight,
            "nthread": self.n_threads,
            "verbosity": 0,
        }
        train = self._matrix(data.X, data.y)
        self.booster_ = xgb.Booster(params, [train])
        self.rounds_ = 0
        self.margins_: dict[bytes, tuple[int, np.ndarray, xgb.DMatrix]] = {}  # query set -> (rounds, margins, matrix)
        yield from self._boost(train, self.n_rounds)

    def continue_fit(self, data: TableData) -> Iterator[None]:
        if not hasattr(self, "booster_"):
            raise RuntimeError("continue_fit called before fit")
        yield from self._boost(self._matrix(data.X, data.y), self.stage2_rounds)

    def _boost(self, train: xgb.DMatrix, n_rounds: int) -> Iterator[None]:
        for i in range(n_rounds):
            self.booster_.update(train, self.rounds_)
            self.rounds_ += 1
            if (i + 1) % self.rounds_per_checkpoint == 0 or i + 1 == n_rounds:
                yield

    def predict(self, queries: TableQueries) -> np.ndarray:
        return self.label_space_[self._margins(queries).argmax(axis=1)]

    def predict_scores(self, queries: TableQueries, candidates: np.ndarray) -> np.ndarray:
        """Softmax log-probabilities of each candidate label."""
        margins = self._margins(queries)
        logp = margins - np.logaddexp.reduce(margins, axis=1, keepdims=True)
        return logp[:, np.searchsorted(self.label_space_, candidates)]

    def _margins(self, queries: TableQueries) -> np.ndarray:
        """Margins per query and class; a known query set only adds the rounds boosted since it
        was last seen."""
        key = hashlib.blake2b(pd.util.hash_pandas_object(queries.X, index=False).to_numpy().tobytes()).digest()
        counted, margins, matrix = self.margins_.get(key, (0, None, None))
        if margins is None:  # the first time: the full margins, intercept included
            matrix = self._matrix(queries.X)
            margins = self.booster_.predict(matrix, output_margin=True, iteration_range=(0, self.rounds_))
            margins = margins.reshape(len(queries.X), -1).astype(np.float64)
            matrix.set_base_margin(np.zeros(margins.size, dtype=np.float32))  # later: the new trees alone
        elif self.rounds_ > counted:
            new = self.booster_.predict(matrix, output_margin=True, iteration_range=(counted, self.rounds_))
            margins = margins + new.reshape(len(queries.X), -1)
        if len(self.margins_) >= 8 and key not in self.margins_:  # a bounded cache: the harness's few query sets
            self.margins_.pop(next(iter(self.margins_)))
        self.margins_[key] = (self.rounds_, margins, matrix)
        return margins
