"""The forest's and the booster's shortcuts in evaluation must not change a single prediction:
the forest adds each leaf's nonzero class fractions instead of scikit-learn's dense rows, and
both keep a query set's votes or margins and add only what was trained since."""

import numpy as np
import pytest

from imlbench.learners.boosting import GradientBoosting
from imlbench.learners.forest import RandomForest, forest_votes
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.views.base import get_view, one_hot


@pytest.fixture(scope="module")
def table():
    task = SyntheticDefs(n_entities=200)
    data = task.generate(3)
    encode = lambda examples, split: task.encode(get_view("table"), data, examples, split)  # noqa: E731
    return encode(data.stage1, "stage1"), encode(data.stage2, "stage2"), encode(data.test.without_targets(), "test")


def grow(learner, table):
    """Fit both stages, predicting the test set after every checkpoint; returns the predictions."""
    stage1, stage2, test = table
    return [
        learner.predict(test)
        for fit, data in ((learner.fit, stage1), (learner.continue_fit, stage2))
        for _ in fit(data)
    ]


@pytest.mark.parametrize("min_samples_leaf", [1, 4])  # 4: impure leaves, fractions other than 1
def test_forest_votes_are_scikit_learns_probabilities_to_the_bit(table, min_samples_leaf):
    forest = RandomForest(
        n_estimators=20,
        stage2_estimators=20,
        trees_per_checkpoint=10,
        min_samples_leaf=min_samples_leaf,
        random_state=1,
    )
    grow(forest, table)
    X = forest.forests_[0].estimators_[0]._validate_X_predict(one_hot(table[2].X), True)
    impure = 0
    for batch in forest.forests_:
        rows, classes, weights = forest_votes(batch, X)
        sparse = np.zeros((X.shape[0], batch.n_classes_))
        sparse[rows, classes] = weights
        dense = batch.predict_proba(X) * batch.n_estimators
        assert np.array_equal(sparse, dense)
        impure += int((dense % 1 != 0).any())
    assert impure > 0 if min_samples_leaf > 1 else True  # the fractional case really was exercised


class Forgetful:
    """Forget the kept votes or margins before every prediction: everything is summed again."""

    def _votes(self, queries):
        self.votes_ = {}
        return super()._votes(queries)

    def _margins(self, queries):
        self.margins_ = {}
        return super()._margins(queries)


def test_kept_votes_predict_what_a_full_recount_does(table):
    params = {"n_estimators": 20, "stage2_estimators": 20, "trees_per_checkpoint": 10}
    kept = grow(RandomForest(**params), table)
    recounted = grow(type("Recounting", (Forgetful, RandomForest), {})(**params), table)
    assert len(kept) == len(recounted) == 4
    assert all(np.array_equal(a, b) for a, b in zip(kept, recounted))


def test_kept_margins_are_a_full_recounts_to_float_precision(table):
    """XGBoost sums a prediction in float32: the kept margins (float64 sums of the new rounds') agree
    to rounding, not to the bit; after a few rounds many of a thousand classes tie exactly, so
    argmax may pick another of the tied labels."""
    kept = margins_each_checkpoint(GradientBoosting(n_rounds=3, stage2_rounds=3), table, recount=False)
    recounted = margins_each_checkpoint(GradientBoosting(n_rounds=3, stage2_rounds=3), table, recount=True)
    assert len(kept) == len(recounted) == 6
    for a, b in zip(kept, recounted):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def margins_each_checkpoint(booster: GradientBoosting, table, recount: bool) -> list[np.ndarray]:
    """The test set's margins after every round: kept (`_margins`) or summed over all trees again."""
    stage1, stage2, test = table
    return [
        booster.booster_.predict(booster._matrix(test.X), output_margin=True).reshape(len(test.X), -1)
        if recount
        else booster._margins(test)
        for fit, data in ((booster.fit, stage1), (booster.continue_fit, stage2))
        for _ in fit(data)
    ]
