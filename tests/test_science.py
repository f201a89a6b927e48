"""Multi-seed science checks on the default synthetic-defs task (fixed seeds; slow)."""

import pytest

import imlbench

pytestmark = pytest.mark.slow
SEEDS = 10  # scoring v4: five seeds can never show an effect (sign-flip floor 2/32)


def score(tmp_path, learner, pipeline, params=None):
    summary = imlbench.run(
        learner=learner, task="synthetic-defs", seeds=SEEDS, pipeline=pipeline, params=params or {}, out=tmp_path
    )
    assert summary.attrs["problems"] == []
    return summary.iloc[0]


def test_tag_blind_control_shows_no_effect(tmp_path):
    """Without its tag the mlp one-stage internalizes (almost) nothing: never IML, a tight CI at 0,
    and the floor guard says why the row is not `none`."""
    row = score(tmp_path, "tag-blind", "one-stage")
    assert row["verdict"] != "IML" and -3 <= row["ci_low"] and row["ci_high"] <= 3
    assert row["verdict"] == "none" or "floor" in row["verdict_note"]


def test_majority_control_is_guarded_not_called(tmp_path):
    """Majority answers nothing: its effect is exactly 0, and the questions-learned guard keeps the
    verdict from claiming anything about internalization (scoring v4)."""
    row = score(tmp_path, "majority", "two-stage")
    assert row["effect_mean"] == 0 and row["verdict"] == "inconclusive"
    assert "questions-not-learned" in row["flags"].split(";")
    assert "by the tests, but questions not learned" in row["verdict_note"]


def test_random_forest_shows_no_effect_and_learns_the_definitions(tmp_path):
    """One-stage, where a forest's trees see both stages: it answers from both sources alike, at the
    ceiling, so the row is censored and judged on its answer scores, where it shows no tag preference
    either. Two-stage its stage 2 cannot depend on stage 1, so the row is guarded, never `none`."""
    row = score(tmp_path, "rf", "one-stage")
    assert row["n_definitions_not_learned"] == 0 and row["acc_d1consis"] > 90 and row["acc_d2consis"] > 90
    assert "censored" in row["flags"].split(";") and row["basis"] == "scores"
    assert row["verdict"] != "IML" and abs(row["logprob_effect"]) < 0.2 and row["logprob_ci_low"] < 0
    two = score(tmp_path, "rf", "two-stage")
    assert two["verdict"] == "inconclusive" and "by construction" in two["verdict_note"]


def test_mlp_pushed_hard_in_stage2_internalizes_only_the_reliable_source(tmp_path):
    row = score(tmp_path, "mlp", "two-stage", {"stage2_lr": 1e-3})
    assert row["verdict"] == "IML" and row["effect_mean"] > 20 and row["ci_low"] > 0 and row["p_signflip"] < 0.05
    assert row["acc_d2consis"] < 5 and row["n_definitions_not_learned"] == 0
