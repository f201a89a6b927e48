import math

import numpy as np
import pytest

from imlbench.cli import parse_seeds
from imlbench.core.registry import ImlbenchError
from scipy import stats

from imlbench.scoring.verdicts import holm, run_scores, standardized_score, summarize, verdict


def test_verdict_rule():
    assert verdict(5.0, 0.01, 0.5) == ("IML", "")
    assert verdict(-5.0, 0.01, 0.5) == ("reverse", "")
    assert verdict(2.0, 0.01, 0.01) == ("none", "non-zero but within margin")
    assert verdict(0.5, 0.6, 0.01) == ("none", "")
    assert verdict(5.0, 0.2, 0.3) == ("inconclusive", "")
    assert standardized_score([1.0])["verdict"] == "inconclusive"  # one seed decides nothing
    assert standardized_score([])["verdict"] == "inconclusive"


def _simulated_verdicts(mean: float, sd: float, rows: int = 4000, n: int = 5) -> dict[str, float]:
    x = np.random.default_rng(0).normal(mean, sd, size=(rows, n))
    verdicts = [standardized_score(row, margin=10.0)["verdict"] for row in x]
    return {v: verdicts.count(v) / rows for v in ("IML", "reverse", "none", "inconclusive")}


def test_verdicts_are_calibrated_on_simulated_seeds():
    """The rule's error rates at n = 5: a false IML/reverse call on null data and a false `none`
    at the margin each stay near alpha; a large effect is found. (v1's percentile bootstrap called
    IML/reverse on ~16% of null rows.)"""
    null = _simulated_verdicts(0.0, 4.0)
    assert null["IML"] + null["reverse"] <= 0.06
    at_margin = _simulated_verdicts(10.0, 4.0)
    assert at_margin["none"] <= 0.05
    large = _simulated_verdicts(40.0, 10.0)
    assert large["IML"] >= 0.95


def test_score_matches_scipy_and_the_protocol_formulas():
    effects = [12.0, 8.0, 15.0, 9.0, 11.0]
    a = standardized_score(effects)
    assert a == standardized_score(effects) and a["verdict"] == "IML" and a["mean"] == pytest.approx(11.0)
    t = stats.t(df=4)
    half = t.ppf(0.975) * np.std(effects, ddof=1) / math.sqrt(5)
    assert (a["ci_low"], a["ci_high"]) == pytest.approx((11.0 - half, 11.0 + half))
    assert a["d_z"] == pytest.approx(11.0 / np.std(effects, ddof=1))
    assert a["p_difference"] == pytest.approx(2 * t.sf(11.0 / (np.std(effects, ddof=1) / math.sqrt(5))))
    se = np.std(effects, ddof=1) / math.sqrt(5)
    assert a["p_equivalence"] == pytest.approx(max(t.sf((11.0 + 10) / se), t.cdf((11.0 - 10) / se)))
    assert a["mde"] == pytest.approx((t.ppf(0.975) + t.ppf(0.8)) * se)


def test_zero_spread_follows_the_protocol():
    assert standardized_score([0.0] * 5)["verdict"] == "none"
    assert standardized_score([12.0] * 5)["verdict"] == "IML"
    assert standardized_score([-12.0] * 5)["verdict"] == "reverse"
    small = standardized_score([3.0] * 5)
    assert small["verdict"] == "none" and small["note"] == "non-zero but within margin"


def test_holm_adjustment():
    adjusted = holm([0.01, 0.04, math.nan, 0.03])
    assert adjusted[0] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.06)
    assert adjusted[1] == pytest.approx(0.06) and math.isnan(adjusted[2])  # monotone: max(0.06, 0.04)
    assert holm([0.5, 0.9])[1] == 1.0


def test_run_scores_in_points():
    point = {"d1consis": 0.9, "d2consis": 0.2, "d3consis": 0.5, "no_qd_baseline": 0.01}
    stage1 = {"qd1consis": 1.0, "qd2incons": 0.4, "d1consis": 0.03, "d2consis": 0.01}
    s = run_scores(point, stage1)
    assert s["iml_effect"] == pytest.approx(70) and s["stage1_gap"] == pytest.approx(60)
    assert s["neutral_offset"] == pytest.approx(30) and s["effect_before_stage2"] == pytest.approx(2)
    assert math.isnan(run_scores(point, point, two_stage=False)["effect_before_stage2"])


def fake_record(seed, d1, d2, q_after_stage1, baseline=0.5):
    accuracy = {"d1consis": d1, "d2consis": d2, "q": q_after_stage1, "no_qd_baseline": baseline}
    after_stage1 = {**accuracy, "d1consis": 0.0, "d2consis": 0.0}
    return {"key": f"k{seed}", "task": {"name": "t"}, "learner": {"name": "l"}, "pipeline": "two-stage",
            "protocol": {}, "seed": seed, "curve": [], "evaluation_point": {"stage": "stage2", "checkpoint": 1},
            "status": "ok", "definitions_learned": True, "accuracy": accuracy, "accuracy_after_stage1": after_stage1,
            "scores": run_scores(accuracy, after_stage1), "measurements": {"seconds": {"total": 1.0}}, "versions": {}}


def test_guards_turn_any_verdict_inconclusive_and_notes_say_why():
    chance = summarize([fake_record(s, 0.62 + 0.01 * s, 0.48, 0.51) for s in range(5)])
    assert chance["verdict"].iloc[0] == "inconclusive"
    assert chance["verdict_note"].iloc[0].startswith("IML by the tests, but questions not learned")
    learned = summarize([fake_record(s, 0.62 + 0.01 * s, 0.48, 0.9) for s in range(5)])
    assert learned["verdict"].iloc[0] == "IML" and learned["verdict_note"].iloc[0] == ""
    flat = summarize([fake_record(s, 0.50, 0.50, 0.51) for s in range(5)])  # `none` is downgraded too
    assert flat["verdict"].iloc[0] == "inconclusive" and "questions not learned" in flat["verdict_note"].iloc[0]
    floor = summarize([fake_record(s, 0.01 * (s % 2), 0.0, 0.9) for s in range(5)])
    assert floor["verdict"].iloc[0] == "none" and "floor" in floor["verdict_note"].iloc[0]
    unlearned = [dict(fake_record(s, 0.9, 0.3, 0.9), definitions_learned=s < 2) for s in range(5)]
    row = summarize(unlearned).iloc[0]
    assert row["verdict"] == "inconclusive" and "definitions not learned in 3 of 5 seeds" in row["verdict_note"]


def test_leaderboard_columns_list_effects_in_seed_order():
    records = [fake_record(s, 0.6 + 0.05 * s, 0.5, 0.9) for s in (3, 0, 1)]
    row = summarize(records).iloc[0]
    assert row["seeds"] == "0;1;3" and [float(e) for e in row["effects"].split(";")] == pytest.approx([10, 15, 25])
    assert {"p_difference", "p_equivalence", "p_holm", "mde", "scoring_version"} <= set(row.index)
    assert row["scoring_version"] == 2


def test_seed_syntax():
    assert parse_seeds("5") == 5 and parse_seeds("0,3,7") == [0, 3, 7] and parse_seeds("2-4") == [2, 3, 4]
    with pytest.raises(ImlbenchError, match="bad --seeds"):
        parse_seeds("x")
