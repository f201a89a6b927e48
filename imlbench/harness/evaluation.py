"""The answer key: the Evaluator scores a learner's predictions on target-free queries.

It is never handed to the learner: the learner's public `predict` is called on queries whose
targets are HIDDEN, and the targets stay here. Predictions are validated before scoring.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from imlbench.core.protocol import DEFINITION, KIND_NAMES, NO_ANSWER, SUBSETS, TAGS, Examples, Learner, Task, TaskData
from imlbench.views.base import get_view


class InvalidPredictions(ValueError):
    """A learner's `predict` returned something that is not one vocabulary id per query."""


class Evaluator:
    """Holds the targets; predicts through the learner's public `predict` on target-free queries."""

    def __init__(self, task: Task, data: TaskData, view: str, stage1_definitions: bool = False):
        """`stage1_definitions`: the definitions whose fit marks the evaluation point include the
        stage-1 ones (one-stage fits train on them together with stage 2's, PROTOCOL §3)."""
        self._task, self._data, self._view = task, data, view
        self._vocab_size = len(data.vocab)
        self.seconds = 0.0  # time spent evaluating (learner.predict included)
        self._sets: dict[str, tuple[Any, np.ndarray, np.ndarray]] = {}
        stage2_defs = data.stage2.select(data.stage2.kind == DEFINITION)
        self._add("test", data.test, "test", data.test.subset)
        self._add("definitions", stage2_defs, "stage2", stage2_defs.relation)
        self._stage1_definitions = stage1_definitions
        if stage1_definitions:
            stage1_defs = data.stage1.select(data.stage1.kind == DEFINITION)
            self._add("stage1_definitions", stage1_defs, "stage1", stage1_defs.subset)
        labels = np.array([_train_label(s, k) for s, k in zip(data.stage1.subset, data.stage1.kind)])
        self._add("train", data.stage1, "stage1", labels)
        tag_ids = data.vocab.roles["tag"]
        self._tag_name = {int(i): TAGS[j] for j, i in enumerate(tag_ids)}

    def _add(self, name: str, examples: Examples, split: str, groups: np.ndarray) -> None:
        queries = self._task.encode(get_view(self._view), self._data, examples.without_targets(), split)
        self._sets[name] = (queries, examples.target.copy(), groups)

    def _accuracy(self, learner: Learner, name: str) -> dict[Any, float]:
        queries, targets, groups = self._sets[name]
        start = time.perf_counter()
        predicted = check_predictions(learner.predict(queries), len(targets), self._vocab_size)
        correct = predicted == targets
        accuracy = {g: float(correct[groups == g].mean()) for g in np.unique(groups)}
        self.seconds += time.perf_counter() - start
        return accuracy

    def test(self, learner: Learner) -> dict[str, float]:
        return {SUBSETS[int(code)]: acc for code, acc in self._accuracy(learner, "test").items()}

    def definitions(self, learner: Learner) -> dict[str, float]:
        """Stage-2 definition accuracy per tag, and in single fits the stage-1 definitions' per
        subset (`qd2incons` among them: the conflict that teaches reliability)."""
        found = {self._tag_name[int(t)]: acc for t, acc in self._accuracy(learner, "definitions").items()}
        if self._stage1_definitions:
            found.update({SUBSETS[int(s)]: acc for s, acc in self._accuracy(learner, "stage1_definitions").items()})
        return found

    def answer_logprob(self, learner: Learner) -> dict[str, float] | None:
        """Mean log-probability of the correct answer per test subset, for a learner with
        `predict_scores` (None otherwise). The learner scores every candidate of the label space;
        only here, with the answer key, is the correct one picked."""
        if not callable(getattr(learner, "predict_scores", None)):
            return None
        queries, targets, groups = self._sets["test"]
        start = time.perf_counter()
        candidates = self._data.label_space
        scores = check_scores(learner.predict_scores(queries, candidates), len(targets), len(candidates))
        column = np.searchsorted(candidates, targets)
        inside = (column < len(candidates)) & (candidates[np.minimum(column, len(candidates) - 1)] == targets)
        picked = np.where(inside, scores[np.arange(len(targets)), np.minimum(column, len(candidates) - 1)], np.nan)
        found = {SUBSETS[int(g)]: float(np.nanmean(picked[groups == g])) for g in np.unique(groups)}
        self.seconds += time.perf_counter() - start
        return found

    def train(self, learner: Learner) -> dict[str, float]:
        return {str(k): v for k, v in self._accuracy(learner, "train").items()}


def check_predictions(predicted: Any, n: int, vocab_size: int) -> np.ndarray:
    """One integer vocabulary id per query, or InvalidPredictions naming what is wrong: scoring NaN,
    fractions or ids outside the vocabulary as wrong answers would show a broken learner as one
    with 0% accuracy. (Any vocabulary id is a legal answer: the tokens view predicts over all of it.)"""
    array = np.asarray(predicted)
    valid = f"expected {n} integer vocabulary ids in 0..{vocab_size - 1} (or NO_ANSWER = {NO_ANSWER})"
    if array.shape != (n,):
        raise InvalidPredictions(f"predict returned shape {array.shape} for {n} queries; {valid}")
    if array.dtype.kind not in "iuf":
        raise InvalidPredictions(f"predict returned values of dtype {array.dtype}; {valid}")
    problems = [("NaN or infinite values", ~np.isfinite(array))] if array.dtype.kind == "f" else []
    if array.dtype.kind == "f":
        problems.append(("non-integer values", np.isfinite(array) & (array != np.round(array))))
    problems += [
        ("negative ids other than NO_ANSWER", (array < 0) & (array != NO_ANSWER)),
        ("ids outside the vocabulary", array >= vocab_size),
    ]
    for what, bad in problems:
        if bad.any():
            raise InvalidPredictions(
                f"predict returned {what} for {int(bad.sum())} of {n} queries (e.g. {array[bad][0].item()!r}); {valid}"
            )
    return array.astype(np.int64)


def check_scores(scores: Any, n: int, n_candidates: int) -> np.ndarray:
    """(n, candidates) finite log-probabilities, or InvalidPredictions naming what is wrong."""
    array = np.asarray(scores, dtype=float)
    if array.shape != (n, n_candidates):
        raise InvalidPredictions(
            f"predict_scores returned shape {array.shape}; expected ({n}, {n_candidates}): "
            f"one log-probability per query and candidate label"
        )
    if np.isnan(array).any() or np.isposinf(array).any():
        raise InvalidPredictions("predict_scores returned NaN or +inf; expected log-probabilities")
    return array


def _train_label(subset: int, kind: int) -> str:
    name = SUBSETS[subset] if subset >= 0 else "facts"
    return f"{name}/{KIND_NAMES[kind]}"
