import math

import numpy as np
import pytest

from imlbench.cli import parse_seeds
from imlbench.registry import ImlbenchError
from imlbench.scoring import run_scores, standardized_score, summarize, verdict


def test_verdict_rules():
    assert verdict(0.5, 9.0, 10, 5) == "IML"
    assert verdict(-9.0, -0.5, 10, 5) == "reverse"
    assert verdict(-4.0, 4.0, 10, 5) == "none"
    assert verdict(-4.0, 14.0, 10, 5) == "inconclusive"
    assert verdict(1.0, 2.0, 10, 1) == "inconclusive"  # one seed decides nothing


def test_standardized_score_is_deterministic_and_sensible():
    effects = [12.0, 8.0, 15.0, 9.0, 11.0]
    a, b = standardized_score(effects), standardized_score(effects)
    assert a == b and a["verdict"] == "IML" and a["ci_low"] > 5 and a["mean"] == pytest.approx(11.0)
    assert a["d_z"] == pytest.approx(11.0 / np.std(effects, ddof=1)) and a["p_one_sided"] < 0.001
    null = standardized_score([0.0] * 5)
    assert null["verdict"] == "none" and null["p_one_sided"] == 0.5 and null["d_z"] == 0.0
    assert standardized_score([])["verdict"] == "inconclusive"


def test_run_scores_in_points():
    point = {"d1consis": 0.9, "d2consis": 0.2, "d3consis": 0.5, "no_qd_baseline": 0.01}
    stage1 = {"qd1consis": 1.0, "qd2incons": 0.4, "d1consis": 0.03, "d2consis": 0.01}
    s = run_scores(point, stage1)
    assert s["iml_effect"] == pytest.approx(70) and s["stage1_gap"] == pytest.approx(60)
    assert s["neutral_offset"] == pytest.approx(30) and s["effect_before_stage2"] == pytest.approx(2)
    assert math.isnan(run_scores(point, point, two_stage=False)["effect_before_stage2"])


def fake_record(seed, d1, d2, q_after_stage1, baseline=0.5):
    accuracy = {"d1consis": d1, "d2consis": d2, "q": q_after_stage1, "no_qd_baseline": baseline}
    return {"task": {"name": "t"}, "learner": {"name": "l"}, "pipeline": "two-stage", "protocol": {}, "seed": seed,
            "status": "ok", "definitions_learned": True, "accuracy": accuracy, "accuracy_after_stage1": accuracy,
            "scores": run_scores(accuracy, accuracy), "measurements": {"seconds": {"total": 1.0}}, "versions": {}}


def test_an_effect_without_learned_questions_is_inconclusive():
    chance = summarize([fake_record(s, 0.52 + 0.01 * s, 0.48, 0.51) for s in range(5)])
    assert chance["verdict"].iloc[0] == "inconclusive"
    assert chance["verdict_note"].iloc[0] == "IML by CI, but questions not learned"
    learned = summarize([fake_record(s, 0.52 + 0.01 * s, 0.48, 0.9) for s in range(5)])
    assert learned["verdict"].iloc[0] == "IML" and learned["verdict_note"].iloc[0] == ""


def test_seed_syntax():
    assert parse_seeds("5") == 5 and parse_seeds("0,3,7") == [0, 3, 7] and parse_seeds("2-4") == [2, 3, 4]
    with pytest.raises(ImlbenchError, match="bad --seeds"):
        parse_seeds("x")
