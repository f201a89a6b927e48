"""imlbench.testing: the conformance checker passes the built-ins and the example plugin, and names
each way a broken plugin breaks the contract in a line of its own."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from imlbench import Learner
from imlbench.protocol import LearnerTags, TableData, TableQueries
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.testing import ConformanceError, check_learner, check_task, conformance_problems, task_problems

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "imlbench-plugin-example" / "src"


def example_plugin():
    """The example package, installed or from its source folder."""
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    import imlbench_nearest
    from imlbench_nearest.colours import Colours

    return imlbench_nearest.LastDefinition, Colours


# --- learners that keep the contract, and learners that each break one clause of it


class Frequent(Learner):
    """Conforms: answers every query with the most frequent training label."""

    views = ("table",)
    tags = LearnerTags(continue_training=True)

    def __init__(self, random_state: int = 0):
        self.random_state = random_state

    def fit(self, data: TableData) -> Iterator[None]:
        self.space_ = data.label_space
        self.label_ = int(np.bincount(data.y).argmax())
        yield

    def continue_fit(self, data: TableData) -> Iterator[None]:
        yield

    def predict(self, queries: TableQueries) -> np.ndarray:
        return np.full(len(queries.X), self.label_, dtype=np.int64)


class FitReturnsList(Frequent):
    def fit(self, data: TableData):
        self.space_, self.label_ = data.label_space, int(data.y[0])
        return [None]


class FitNeverYields(Frequent):
    def fit(self, data: TableData) -> Iterator[None]:
        self.space_, self.label_ = data.label_space, int(data.y[0])
        return
        yield


class PredictsOutside(Frequent):
    def predict(self, queries: TableQueries) -> np.ndarray:
        return np.full(len(queries.X), self.space_.max() + 1, dtype=np.int64)


class Unseeded(Frequent):
    """Draws its answers from an unseeded generator: another run, other answers."""

    def predict(self, queries: TableQueries) -> np.ndarray:
        return np.random.default_rng().choice(self.space_, len(queries.X))


class RaisesInFit(Frequent):
    def fit(self, data: TableData) -> Iterator[None]:
        raise RuntimeError("broken on purpose")
        yield


class ContinueReturnsNone(Frequent):
    def continue_fit(self, data: TableData):
        return None


class BadScores(Frequent):
    def predict_scores(self, queries: TableQueries, candidates: np.ndarray) -> np.ndarray:
        return np.zeros((len(queries.X), len(candidates) - 1))


class RenamesParameter(Frequent):
    def __init__(self, random_state: int = 0):
        self.seed = random_state


class WorksInConstructor(Frequent):
    def __init__(self, random_state: int = 0):
        self.random_state = random_state
        self.table_ = np.zeros(10)


BROKEN = [  # learner, its one line's start, words the line must hold
    (FitReturnsList, "fit: returned a list, not a generator", "Learner.fit must `yield` once per checkpoint"),
    (FitNeverYields, "fit: yielded no checkpoint", "Learner.fit must `yield` once per checkpoint"),
    (PredictsOutside, "predict: returned ", "ids outside the label space"),
    (Unseeded, "determinism: two fresh learners with the same random_state predicted differently", "random_state"),
    (RaisesInFit, "fit: raised RuntimeError: broken on purpose", "PROTOCOL §3"),
    (ContinueReturnsNone, "continue_fit: returned None, not a generator", "tagged continue_training"),
    (BadScores, "predict_scores: returned shape (", "log-scores"),
    (RenamesParameter, "get_params: cannot rebuild the learner from get_params(): AttributeError", "round-trips"),
    (WorksInConstructor, "constructor: sets fitted attribute(s) table_", "hyperparameters only"),
]


@pytest.mark.parametrize("learner, start, words", BROKEN, ids=[b[0].__name__ for b in BROKEN])
def test_a_broken_learner_fails_with_one_line_of_its_own(learner, start, words):
    problems = conformance_problems(learner)
    assert len(problems) == 1, problems
    assert problems[0].startswith(start) and words in problems[0], problems[0]


def test_check_learner_raises_one_line_per_failed_check():
    """The issue's three: a fit returning a list, predictions outside the label space, no determinism."""
    messages = []
    for learner in (FitReturnsList, PredictsOutside, Unseeded):
        with pytest.raises(ConformanceError) as raised:
            check_learner(learner)
        assert isinstance(raised.value, AssertionError)
        messages.append(str(raised.value).splitlines())
    assert [m[0] for m in messages] == [
        f"{c.__name__} fails 1 conformance check(s):" for c in (FitReturnsList, PredictsOutside, Unseeded)
    ]
    assert [m[1].split(":")[0] for m in messages] == ["fit", "predict", "determinism"]

    class TwoWrongs(PredictsOutside, WorksInConstructor):
        pass

    assert [line.split(":")[0] for line in conformance_problems(TwoWrongs)] == ["constructor", "predict"]


def test_a_conforming_learner_passes_instance_class_and_without_continue_training():
    check_learner(Frequent)
    mine = Frequent(random_state=3)
    check_learner(mine, seed=2)
    assert mine.random_state == 3 and not hasattr(mine, "label_")  # the checker fits copies, never the learner

    class OneStage(Frequent):
        tags = LearnerTags()

        def continue_fit(self, data):
            raise NotImplementedError

    check_learner(OneStage)


def test_a_learner_without_a_view_of_the_task_is_told_which_views_there_are():
    class ReadsImages(Frequent):
        views = ("image",)

    (line,) = conformance_problems(ReadsImages, task="synthetic-defs")
    assert line.startswith("views: reads image, but SyntheticDefs offers tokens, table, text")


# --- every built-in learner and the example plugin pass (small budgets keep each in seconds)

BUILT_IN = {  # entry point -> its class and small parameters
    "rf": ("forest:RandomForest", {"n_estimators": 10, "stage2_estimators": 10, "trees_per_checkpoint": 5}),
    "gbm": ("boosting:GradientBoosting", {"n_rounds": 3, "stage2_rounds": 3}),
    "mlp": ("mlp:MLP", {"epochs": 3, "stage2_epochs": 3, "device": "cpu"}),
    "majority": ("controls:Majority", {}),
    "tag-blind": ("controls:TagBlind", {"base_params": {"epochs": 3, "stage2_epochs": 3, "device": "cpu"}}),
    "convnet": ("convnet:ConvNet", {"epochs": 2, "stage2_epochs": 2, "device": "cpu"}),
    "transformer": ("transformer:Transformer", {"epochs": 2, "stage2_epochs": 2, "device": "cpu"}),
    "hf-causal-lm": ("hf_causal_lm:HFCausalLM", {"epochs": 2, "stage2_epochs": 2, "device": "cpu"}),
}


@pytest.mark.parametrize("name", list(BUILT_IN))
def test_every_built_in_learner_passes(name):
    import importlib

    if name == "hf-causal-lm":
        pytest.importorskip("transformers")
    target, params = BUILT_IN[name]
    module, _, cls = target.partition(":")
    check_learner(getattr(importlib.import_module(f"imlbench.learners.{module}"), cls)(**params))


def test_builtin_learners_pass_by_name_at_their_defaults():
    check_learner("rf")
    check_learner("majority")


def test_the_example_plugin_passes():
    last_definition, colours = example_plugin()
    check_learner(last_definition)
    check_learner(last_definition(use_questions=False), task=colours(n_things=40))
    check_task(colours, task_params={"n_things": 40})


# --- tasks


@pytest.mark.parametrize(
    "name, params",
    [
        ("synthetic-defs", None),
        ("synthetic-defs", {"n_entities": 20, "questions": "attributes"}),
        ("synthetic-defs", {"n_entities": 20, "tag_reliability": 0.5}),
        ("tagged-digits", None),
        ("set-inclusion", None),
        ("synthetic-defs-text", None),
    ],
)
def test_every_built_in_task_passes(name, params):
    check_task(name, task_params=params)


class UnseededTask(SyntheticDefs):
    def generate(self, seed: int):
        return super().generate(int(np.random.default_rng().integers(1 << 30)))


class LooksUpAnswers(SyntheticDefs):
    """Renders each test query's subject from the answer key it was handed."""

    def encode(self, view, data, examples, split):
        if split == "test":
            examples = replace(examples, subject=data.test.target)
        return super().encode(view, data, examples, split)


def test_broken_tasks_fail_with_their_own_lines():
    (line,) = task_problems(UnseededTask(n_entities=20))
    assert line.startswith("generate: two calls with seed 0 gave different data") and "pure function" in line
    lines = task_problems(LooksUpAnswers(n_entities=20))
    assert [line.split(":")[0] for line in lines] == ["encode[tokens]", "encode[table]", "encode[text]"]
    assert all("leak the answers" in line for line in lines)
