"""The learner half of the conformance checker: both stages and their yields, predictions, answer
scores, the parameter contract and determinism for a seed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from imlbench.core.protocol import NO_ANSWER, Learner, Task, TaskData
from imlbench.testing.common import TINY_TASKS, Problems, _build, _built, _error, _fresh, _raise, _span
from imlbench.views.base import get_view

FIT = "Learner.fit must `yield` once per checkpoint (PROTOCOL §3)"
CONTINUE = "a learner tagged continue_training must `yield` from continue_fit once per checkpoint (PROTOCOL §3)"
PREDICT = "predict returns one integer id per query, from its view's label space, or NO_ANSWER (PROTOCOL §4)"
SCORES = "predict_scores(queries, candidates) returns (queries, candidates) finite log-scores (PROTOCOL §5)"
SEEDED = "a run is a pure function of the parameters and random_state (PROTOCOL §3, Seeds)"
VIEWS = "the learner reads a view the task offers (Learner.views / supported_views, PROTOCOL §4)"


def check_learner(
    learner: Learner | type | str,
    task: Task | str | None = None,
    seed: int = 0,
    task_params: dict[str, Any] | None = None,
) -> None:
    """Raise ConformanceError listing every way `learner` breaks the contract (`conformance_problems`)."""
    _raise(learner, conformance_problems(learner, task, seed, task_params))


# --- learners
def conformance_problems(
    learner: Learner | type | str,
    task: Task | str | None = None,
    seed: int = 0,
    task_params: dict[str, Any] | None = None,
) -> list[str]:
    """One line per failed check of a learner. `learner`: an instance (run at its parameters: pass
    small budgets for speed), a class (its defaults) or a name. `task`: a Task, a name (a built-in
    at its TINY_TASKS size unless `task_params` says otherwise) or None: the first tiny built-in task
    offering a view the learner reads. Runs on fresh copies; `learner` itself is never fitted."""
    problems = Problems()
    learner = _built("learner", learner, None, problems)
    if learner is not None:
        task = _build("task", task or _task_for(learner), task_params)
        view = _choose_view(learner, task, problems)
        if view is not None:
            data = task.generate(seed)
            first = _run(_fresh(learner), task, view, data, seed, problems)
            if first is not None:
                _compare_runs(learner, first, _run(_fresh(learner), task, view, data, seed, Problems()), problems)
    return list(problems.values())


def _task_for(learner: Learner) -> str:
    """The first tiny built-in task that offers a view the learner reads (synthetic-defs if none)."""
    return next(
        (name for name in TINY_TASKS if _choose_view(learner, _build("task", name, None), Problems())), "synthetic-defs"
    )


def _choose_view(learner: Learner, task: Task, problems: Problems) -> str | None:
    """The harness's rule: the first view the learner reads that the task offers (for a tag-blind
    learner, only views that keep the tag apart)."""
    try:
        reads = tuple(learner.supported_views())
    except Exception as exc:
        return problems.add("views", f"supported_views() raised {_error(exc)}", VIEWS)
    blind = learner.supports("hides_tags")
    offered = [v for v in task.views if not blind or (task.separable_tags and get_view(v).tagged)]
    found = next((v for v in reads if v in offered), None)
    problems.add(
        "views",
        not found
        and f"reads {', '.join(reads) or 'no view'}, but {type(task).__name__} "
        f"offers {', '.join(offered) or 'none it can use'}",
        VIEWS,
    )
    return found


def _run(
    learner: Learner, task: Task, view: str, data: TaskData, seed: int, problems: Problems
) -> dict[str, np.ndarray] | None:
    """Both stages as the two-stage pipeline runs them (stage 1 only without continue_training);
    the predictions at the end of each, or None where a stage broke."""
    if "random_state" in learner.get_params():
        learner.set_params(random_state=seed)
    encoder = get_view(view)
    stage1 = task.encode(encoder, data, data.stage1, "stage1")
    labels = getattr(stage1, "label_space", None)  # the tokens view hands over the whole vocabulary
    space = np.arange(len(data.vocab)) if labels is None else np.asarray(labels)
    queries, n = task.encode(encoder, data, data.test.without_targets(), "test"), len(data.test)

    def predict(when: str) -> np.ndarray | None:
        try:
            predicted = np.asarray(learner.predict(queries))
        except Exception as exc:
            return problems.add("predict", f"raised {_error(exc)}", PREDICT, when)
        problems.add("predict", _prediction_problem(predicted, n, space), PREDICT, when)
        if callable(getattr(learner, "predict_scores", None)):
            problems.add("predict_scores", _scores_problem(learner, queries, data.label_space, n), SCORES, when)
        return predicted

    outputs = {"fit": _drive("fit", learner.fit, stage1, predict, problems, FIT)}
    if outputs["fit"] is not None and learner.supports("continue_training"):
        stage2 = task.encode(encoder, data, data.stage2, "stage2")
        outputs["continue_fit"] = _drive("continue_fit", learner.continue_fit, stage2, predict, problems, CONTINUE)
    return None if any(v is None for v in outputs.values()) else outputs


def _drive(
    stage: str,
    method: Callable[[Any], Any],
    data: Any,
    predict: Callable[[str], Any],
    problems: Problems,
    contract: str,
) -> np.ndarray | None:
    """Run one stage's generator to its end, predicting after its first checkpoint (a learner must
    predict between yields) and at its end; None if the stage broke."""
    try:
        fit = method(data)
    except Exception as exc:
        return problems.add(stage, f"raised {_error(exc)} when called", contract)
    if not isinstance(fit, Iterator):
        return problems.add(
            stage, f"returned {'None' if fit is None else 'a ' + type(fit).__name__}, not a generator", contract
        )
    count = 0
    try:
        for count, _ in enumerate(fit, start=1):
            if count == 1:
                predict(f"after {stage}'s first checkpoint")
    except Exception as exc:
        where = f"after checkpoint {count}" if count else "before its first checkpoint"
        return problems.add(stage, f"raised {_error(exc)} {where}", contract)
    finally:
        getattr(fit, "close", lambda: None)()
    if count == 0:
        return problems.add(stage, "yielded no checkpoint", contract)
    return predict(f"at the end of {stage}")


def _prediction_problem(predicted: np.ndarray, n: int, space: np.ndarray) -> str:
    """What is wrong with predictions ("" if nothing)."""
    if predicted.shape != (n,):
        return f"returned shape {predicted.shape} for {n} queries"
    if predicted.dtype.kind not in "iu":
        return f"returned dtype {predicted.dtype}, not integer ids"
    outside = ~np.isin(predicted, space) & (predicted != NO_ANSWER)
    return (
        ""
        if not outside.any()
        else (
            f"returned {outside.sum()} of {n} ids outside the label space "
            f"(e.g. {predicted[outside][0]}; labels: {_span(space)})"
        )
    )


def _scores_problem(learner: Learner, queries: Any, candidates: np.ndarray, n: int) -> str:
    """What is wrong with answer scores ("" if nothing)."""
    try:
        scores = np.asarray(learner.predict_scores(queries, candidates), dtype=float)
    except Exception as exc:
        return f"raised {_error(exc)}"
    if scores.shape != (n, len(candidates)):
        return f"returned shape {scores.shape}, expected {(n, len(candidates))}"
    return "returned NaN or +inf" if np.isnan(scores).any() or np.isposinf(scores).any() else ""


def _compare_runs(
    learner: Learner, first: dict[str, np.ndarray], second: dict[str, np.ndarray] | None, problems: Problems
) -> None:
    """Two fresh learners with the same parameters (random_state among them) must predict alike."""
    same = "the same random_state" if "random_state" in learner.get_params() else "the same parameters"
    if second is None:
        return problems.add("determinism", f"a second learner with {same} broke where the first did not", SEEDED)
    for stage, predicted in first.items():
        differ = np.sum(predicted != second[stage]) if predicted.shape == second[stage].shape else len(predicted)
        problems.add(
            "determinism",
            differ
            and f"two fresh learners with {same} predicted differently at the end "
            f"of {stage} ({differ} of {len(predicted)} queries)",
            SEEDED,
        )
