"""The elicitation search: its space, its objective, confirmation on disjoint seeds, resuming after
kill -9, and two processes sharing one study."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from imlbench.core.errors import ImlbenchError
from imlbench.core.specs import search_space_of
from imlbench.scoring.runs import load_scored
from imlbench.search import CENSORED, EXPLORE_SEED_START, distributions, search, trial_value
from imlbench.search_results import search_verdict

TESTS = Path(__file__).resolve().parent
# rf on a small synthetic-defs with few, shallow-ish trees: a run takes about a second and d1/d2 are
# not pinned at the ceiling, so trials are measured (not censored) and a confirmation runs.
SPEC = """
name = "small-rf"
learner = "rf"
[params]
trees_per_checkpoint = 5
[search]
n_estimators = {low = 3, high = 12}
min_samples_leaf = {low = 1, high = 2}
"""


@pytest.fixture
def small_rf(tmp_path):
    path = tmp_path / "small-rf.toml"
    path.write_text(SPEC)
    return str(path)


def test_every_builtin_learner_declares_a_space_optuna_accepts():
    for name in ("rf", "gbm", "mlp", "convnet", "transformer", "hf-causal-lm", "tag-blind-transformer"):
        space = distributions(search_space_of(name), name)
        assert len(space) >= 4, name
    # the control searches its base learner's space, through its base_params
    assert set(distributions(search_space_of("tag-blind-transformer"), "x")) == set(
        distributions(search_space_of("transformer"), "x")
    )


def test_a_spec_search_table_replaces_the_class_space(small_rf):
    space = distributions(search_space_of(small_rf), "small-rf")
    assert set(space) == {"n_estimators", "min_samples_leaf"}
    assert space["min_samples_leaf"].low == 1 and type(space["min_samples_leaf"]).__name__ == "IntDistribution"
    assert (
        type(distributions({"lr": {"low": 1e-4, "high": 1e-2, "log": True}}, "x")["lr"]).__name__ == "FloatDistribution"
    )


@pytest.mark.parametrize(
    "space, message",
    [
        ({}, "declares no search space"),
        ({"lr": {"low": 1e-3}}, "bad search space entry 'lr'"),
        ({"lr": {"low": 1e-3, "high": 1e-2, "step": 2}}, "bad search space entry 'lr'"),
        ({"lr": {"low": 0.0, "high": 1.0, "log": True}}, "bad search space entry 'lr'"),
        ({"k": {"choices": []}}, "bad search space entry 'k'"),
    ],
)
def test_a_malformed_space_is_one_clear_error(space, message):
    with pytest.raises(ImlbenchError, match=message):
        distributions(space, "x")


def _row(**changes):
    row = {
        "margin": 10.0,
        "n_seeds": 3,
        "n_unattainable": 0,
        "effect_mean": 8.0,
        "ci_low": 4.0,
        "q_over_baseline": 90.0,
        "n_stage1_not_fit": 0,
        "n_definitions_not_learned": 0,
        "n_floor": 0,
        "by_construction": False,
        "retention": 1.0,
        "mde": 5.0,
    }
    return {**row, **changes}


def test_the_objective_is_the_ci_lower_end_and_censored_trials_rank_last():
    assert trial_value(_row()) == (4.0, False)
    assert trial_value(_row(ci_low=-50.0)) == (-50.0, False)
    assert trial_value(_row(n_unattainable=3, effect_mean=60.0, ci_low=50.0)) == (50.0, False)  # stands when bounded
    assert trial_value(_row(n_seeds=3)) == (4.0, False)  # exploration runs few seeds by design
    for censored in (
        _row(n_floor=2, ci_low=60.0),
        _row(n_unattainable=3, effect_mean=2.0, ci_low=1.0),  # both arms at a bound, no difference there
        _row(by_construction=True),
        _row(q_over_baseline=0.0),
        _row(ci_low=math.nan),
    ):
        value, is_censored = trial_value(censored)
        assert is_censored and value == CENSORED < -100  # below any measured CI of an effect in [-100, 100]


def test_the_verdict_needs_a_confirmed_iml_that_survives_holm():
    row = {"trial": 3, "params": {"a": 1}, "n_seeds": 10, "effect_mean": 20.0, "ci_low": 10.0, "ci_high": 30.0}
    base = {"trials": 20, "confirmed": []}
    assert search_verdict({**base, "confirmed": [{**row, "verdict": "IML", "p_holm": 0.01}]}).startswith("IML elicited")
    assert search_verdict({**base, "confirmed": [{**row, "verdict": "IML", "p_holm": 0.2}]}).startswith("not elicited")
    assert search_verdict({**base, "confirmed": [{**row, "verdict": "none", "p_holm": 0.9}]}).startswith(
        "not elicited in 20 trials (best confirmed effect +20.0"
    )
    assert "every trial censored" in search_verdict(base)


def test_a_search_explores_and_confirms_on_disjoint_seeds(small_rf, out):
    result = search(
        small_rf,
        "synthetic-defs",
        trials=3,
        confirm_top=2,
        pipeline="one-stage",
        out=out,
        explore_seeds=2,
        confirm_seeds=3,
        params={"n_entities": 60},
        verbose=False,
    )
    folder = out / "searches" / result["name"]
    trials = pd.read_csv(folder / "trials.csv")
    assert len(trials) == 3 and set(trials["state"]) == {"COMPLETE"}
    explored, _ = load_scored(folder)
    confirmed, _ = load_scored(out)
    assert {r.seed for r in explored} == {EXPLORE_SEED_START, EXPLORE_SEED_START + 1}
    assert {r.seed for r in confirmed} == {0, 1, 2}
    assert result["confirmed"], "at least one trial was measured, so a confirmation ran"
    board = pd.read_csv(out / "leaderboard.csv")
    assert {c["row"] for c in result["confirmed"]} <= set(board["learner"])  # confirmed rows, named by config
    saved = json.loads((folder / "search.json").read_text())
    assert saved["verdict"] == result["verdict"] and not set(saved["explore_seeds"]) & set(saved["confirm_seeds"])
    assert (folder / "search.png").stat().st_size > 0
    # a second call finds the study done: no new trial, the same confirmation
    again = search(
        small_rf,
        "synthetic-defs",
        trials=3,
        confirm_top=2,
        pipeline="one-stage",
        out=out,
        explore_seeds=2,
        confirm_seeds=3,
        params={"n_entities": 60},
        verbose=False,
    )
    assert again["verdict"] == result["verdict"] and len(pd.read_csv(folder / "trials.csv")) == 3


def test_a_study_name_is_not_reused_for_another_search(small_rf, out):
    search(
        small_rf,
        "synthetic-defs",
        trials=1,
        pipeline="one-stage",
        out=out,
        explore_seeds=2,
        confirm_seeds=2,
        params={"n_entities": 60},
        verbose=False,
        name="mine",
    )
    with pytest.raises(ImlbenchError, match="is another search"):
        search(
            small_rf,
            "synthetic-defs",
            trials=1,
            pipeline="two-stage",
            out=out,
            explore_seeds=2,
            confirm_seeds=2,
            params={"n_entities": 60},
            verbose=False,
            name="mine",
        )


def _command(spec, out, trials, *extra):
    return [
        sys.executable,
        "-m",
        "imlbench",
        "search",
        "--learner",
        spec,
        "--task",
        "synthetic-defs",
        "--pipeline",
        "one-stage",
        "--param",
        "n_entities=60",
        "--trials",
        str(trials),
        "--explore-seeds",
        "2",
        "--confirm-seeds",
        "2",
        "--out",
        str(out),
        "-q",
        *extra,
    ]


def _trials(storage: str, missing_ok: bool = False):
    import optuna

    try:
        study = optuna.load_study(study_name="study", storage=storage)
    except KeyError:  # the database exists a moment before the study in it
        if missing_ok:
            return []
        raise
    return study.get_trials(deepcopy=False)


@pytest.mark.slow
def test_a_killed_search_resumes_without_redoing_finished_trials(small_rf, out, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = _command(small_rf, out, 3, "--storage", storage, "--name", "study")
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    first = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill -9 once a trial is finished and the next one is running
        trials = _trials(storage, missing_ok=True) if (tmp_path / "study.db").exists() else []
        running = [t for t in trials if t.state.name == "RUNNING" and "pid" in t.user_attrs]
        if any(t.state.name == "COMPLETE" for t in trials) and running:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the search never had a finished trial and a running one")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = {t.number: (t.state.name, t.params, t.value) for t in _trials(storage)}
    finished = {n for n, (state, _, _) in before.items() if state == "COMPLETE"}
    killed = [n for n, (state, _, _) in before.items() if state == "RUNNING"]
    assert len(killed) == 1
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, timeout=600)
    after = {t.number: t for t in _trials(storage)}
    for n in finished:  # kept as they were, not run again
        assert (after[n].state.name, after[n].params, after[n].value) == before[n]
    assert after[killed[0]].state.name == "FAIL"
    retries = [t for t in after.values() if t.user_attrs.get("retry_of") == killed[0]]
    assert len(retries) == 1 and retries[0].params == before[killed[0]][1] and retries[0].state.name == "COMPLETE"
    assert sum(t.state.name == "COMPLETE" for t in after.values()) == 3


@pytest.mark.slow
def test_two_processes_share_one_study(small_rf, out, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = _command(small_rf, out, 4, "--storage", storage, "--name", "study")
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL) for _ in range(2)]
    assert [p.wait(timeout=600) for p in processes] == [0, 0]
    done = [t for t in _trials(storage) if t.state.name == "COMPLETE"]
    assert 4 <= len(done) <= 5  # two processes may both ask for the last trial at once
    assert len({t.user_attrs["pid"] for t in done}) == 2  # both worked on the one study
    # no configuration drawn twice: each trial's sampler is seeded by its number, unique in the storage
    # (20 configurations; a shared seed would make both processes draw the same first one)
    assert len({json.dumps(t.params, sort_keys=True) for t in done}) == len(done)
