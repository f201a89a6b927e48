"""Incremental evaluation: protocol v2 runs whole budgets, so the test set is predicted at many
checkpoints. Side by side in one process, a default two-stage rf and gbm fit with the test set
predicted at every checkpoint (as the harness does): re-voting every tree each time (v1) against adding
only the new trees to the kept votes or margins; for rf also the votes summed from scikit-learn's
dense per-tree probabilities (`rf-dense`, what v1 did) against the leaves' nonzero class fractions
(`rf`). The predictions are asserted equal (gbm: in all but exact ties of float32 sums); `extra_info`
holds the seconds spent predicting, their share of the whole and the agreement. Each test times both
ways of predicting, so its targets ("evaluation/<learner>" in benchmarks/targets.py) compare the two
from the same run.
"""

import time

import numpy as np
import pytest
from targets import check_speedup

from imlbench.learners.boosting import GradientBoosting
from imlbench.learners.forest import RandomForest
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.views.base import get_view, one_hot


class RevotingForest(RandomForest):
    def _votes(self, queries):
        self.votes_ = {}  # forget the kept votes: every tree votes again
        return super()._votes(queries)


class DenseVotingForest(RandomForest):
    """Kept votes, each new batch of trees summed through scikit-learn's `predict_proba`."""

    def _votes(self, queries):
        if getattr(self, "revote", False):
            self.votes_ = {}
        key = len(queries.X)
        counted, votes, X = self.votes_.get(key, (0, None, None))
        if votes is None:
            X, votes = one_hot(queries.X), np.zeros((len(queries.X), len(self.label_space_)))
        for forest in self.forests_[counted:]:
            votes[:, np.searchsorted(self.label_space_, forest.classes_)] += (
                forest.predict_proba(X) * forest.n_estimators
            )
        self.votes_[key] = (len(self.forests_), votes, X)
        return votes.copy()


class DenseRevotingForest(DenseVotingForest):
    """v1: every tree votes again at every checkpoint, through scikit-learn's `predict_proba`."""

    revote = True


class RepredictingBooster(GradientBoosting):
    def _margins(self, queries):
        self.margins_ = {}  # forget the kept margins: every round's trees are summed again
        return super()._margins(queries)


@pytest.fixture(scope="module")
def table():
    task = SyntheticDefs()
    data = task.generate(0)
    encode = lambda examples, split: task.encode(get_view("table"), data, examples, split)  # noqa: E731
    return encode(data.stage1, "stage1"), encode(data.stage2, "stage2"), encode(data.test.without_targets(), "test")


def fit_and_predict_each_checkpoint(learner, table) -> tuple[list[np.ndarray], float, float]:
    stage1, stage2, test = table
    predictions, predicting, start = [], 0.0, time.perf_counter()
    for fit, data in ((learner.fit, stage1), (learner.continue_fit, stage2)):
        for _ in fit(data):
            t = time.perf_counter()
            predictions.append(learner.predict(test))
            predicting += time.perf_counter() - t
    return predictions, predicting, time.perf_counter() - start


CASES = {
    "rf": (RandomForest, RevotingForest, {}),
    "rf-dense": (DenseVotingForest, DenseRevotingForest, {}),
    "gbm": (GradientBoosting, RepredictingBooster, {"n_rounds": 10, "stage2_rounds": 10}),
}


@pytest.mark.parametrize("learner", sorted(CASES))
@pytest.mark.parametrize("mode", ["incremental", "full"])
def test_evaluation_share_of_a_two_stage_fit(benchmark, table, learner, mode):
    incremental, full, params = CASES[learner]
    timed = (incremental if mode == "incremental" else full)(**params)
    predictions, predicting, total = benchmark.pedantic(
        lambda: fit_and_predict_each_checkpoint(timed, table), rounds=1, iterations=1
    )
    reference, other_predicting, _ = fit_and_predict_each_checkpoint(
        (full if mode == "incremental" else incremental)(**params), table
    )
    same = [a == b for a, b in zip(predictions, reference)]
    if learner.startswith("rf"):  # the same votes, to the bit
        assert all(s.all() for s in same)
    else:  # XGBoost sums margins in float32: kept and recounted margins agree to rounding, so only a
        # row whose top classes tie exactly (the booster prefers none) may break the tie differently
        recounted = timed.booster_.predict(timed._matrix(table[2].X), output_margin=True).reshape(len(same[-1]), -1)
        np.testing.assert_allclose(timed._margins(table[2]), recounted, rtol=0, atol=1e-5)
        top = np.sort(recounted, axis=1)[:, -2:]
        assert same[-1][top[:, 1] > top[:, 0]].all()
    benchmark.extra_info.update(
        {
            "agreement": round(float(np.mean(np.concatenate(same))), 4),
            "predict_seconds": round(predicting, 3),
            "total_seconds": round(total, 3),
            "predict_share": round(predicting / total, 3),
        }
    )
    kept, revoted = (predicting, other_predicting) if mode == "incremental" else (other_predicting, predicting)
    check_speedup(benchmark, f"evaluation/{learner}", kept, revoted)
