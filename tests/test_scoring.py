import math

import numpy as np
import pytest
from scipy import stats

from imlbench.api import parse_seeds
from imlbench.core.specs import ImlbenchError
from imlbench.scoring.statistics import p_signflip, verdict
from imlbench.scoring.verdicts import holm, run_scores, standardized_score, summarize

MARGIN = 10.0


def test_verdict_rule():
    assert verdict(5.0, 0.01, 0.01, 0.5) == ("IML", "")
    assert verdict(-5.0, 0.01, 0.01, 0.5) == ("reverse", "")
    assert verdict(5.0, 0.01, 0.06, 0.5)[0] == "inconclusive"  # the t-test alone is not enough
    assert verdict(2.0, 0.01, 0.01, 0.01) == ("none", "non-zero but within margin")
    assert verdict(0.5, 0.6, 0.7, 0.01) == ("none", "")
    assert verdict(5.0, 0.2, 0.3, 0.3) == ("inconclusive", "")
    assert standardized_score([1.0], MARGIN)["verdict"] == "inconclusive"  # one seed decides nothing
    assert standardized_score([], MARGIN)["verdict"] == "inconclusive"


def test_signflip_is_the_exact_permutation_p():
    """Against a direct enumeration of all 2^n sign patterns (independent of scipy's resampling)."""
    import itertools

    x = np.array([3.0, -1.0, 4.0, 1.5, 5.0, 9.0, 2.0])
    observed = abs(x.sum())
    sums = [abs(sum(s * v for s, v in zip(signs, x))) for signs in itertools.product((1, -1), repeat=len(x))]
    expected = sum(t >= observed - 1e-9 for t in sums) / len(sums)
    assert p_signflip(x) == pytest.approx(expected)
    assert p_signflip(np.arange(1.0, 6.0)) == pytest.approx(2 / 2**5)  # the floor at n = 5


def _simulated_verdicts(mean: float, sd: float, rows: int = 4000, n: int = 10) -> dict[str, float]:
    x = np.random.default_rng(0).normal(mean, sd, size=(rows, n))
    verdicts = [standardized_score(row, margin=MARGIN)["verdict"] for row in x]
    return {v: verdicts.count(v) / rows for v in ("IML", "reverse", "none", "inconclusive")}


def test_verdicts_are_calibrated_on_simulated_seeds():
    """The rule's error rates at n = 10 (scoring v3): a false IML/reverse call on null data and a
    false `none` at the margin each stay at alpha; a large effect is found."""
    null = _simulated_verdicts(0.0, 4.0)
    assert null["IML"] + null["reverse"] <= 0.05
    at_margin = _simulated_verdicts(10.0, 4.0)
    assert at_margin["none"] <= 0.05
    large = _simulated_verdicts(40.0, 10.0)
    assert large["IML"] >= 0.95


def test_five_seeds_can_never_show_an_effect():
    """The sign-flip floor: 2/2^5 = 0.0625 > alpha, so no row of five seeds is IML, however large."""
    x = np.random.default_rng(1).normal(40.0, 10.0, size=(500, 5))
    assert all(standardized_score(row, MARGIN)["verdict"] != "IML" for row in x)
    assert standardized_score([12.0] * 5, MARGIN)["verdict"] == "inconclusive"


def test_score_matches_scipy_and_the_protocol_formulas():
    """Each number recomputed independently of the code (which uses scipy's `ttest_1samp`): from the
    Student-t distribution and the textbook formulas, the sample moments worked out by hand."""
    effects = [12.0, 8.0, 15.0, 9.0, 11.0]
    a = standardized_score(effects, MARGIN)
    sd = math.sqrt((1.0 + 9.0 + 16.0 + 4.0 + 0.0) / 4)  # squared deviations from the mean 11, over n - 1
    se, t = sd / math.sqrt(5), stats.t(df=4)
    assert a["n"] == 5 and a["mean"] == pytest.approx(11.0) and a["sd"] == pytest.approx(sd)
    assert t.ppf(0.975) == pytest.approx(2.7764451, abs=1e-6)  # the table value the CI rests on
    assert (a["ci_low"], a["ci_high"]) == pytest.approx((11.0 - 2.7764451 * se, 11.0 + 2.7764451 * se))
    assert a["d_z"] == pytest.approx(11.0 / sd)
    assert a["p_difference"] == pytest.approx(2 * t.sf(11.0 / se))
    assert a["p_equivalence"] == pytest.approx(max(t.sf((11.0 + 10) / se), t.cdf((11.0 - 10) / se)))
    assert a["mde"] == pytest.approx((t.ppf(0.975) + t.ppf(0.8)) * se)
    # non-zero by the t-test (p ~ 0.001), but five seeds: the sign-flip p is 2/32 > 0.05
    assert a["p_difference"] < 0.005 and a["p_equivalence"] > 0.5
    assert a["p_signflip"] == pytest.approx(0.0625) and a["verdict"] == "inconclusive"


def test_zero_spread_follows_the_protocol():
    assert standardized_score([0.0] * 10, MARGIN)["verdict"] == "none"
    assert standardized_score([12.0] * 10, MARGIN)["verdict"] == "IML"
    assert standardized_score([-12.0] * 10, MARGIN)["verdict"] == "reverse"
    assert standardized_score([12.0] * 5, MARGIN)["verdict"] == "inconclusive"  # too few seeds
    assert standardized_score([10.0] * 10, MARGIN)["verdict"] == "inconclusive"  # exactly at the margin
    small = standardized_score([3.0] * 10, MARGIN)
    assert small["verdict"] == "none" and small["note"] == "non-zero but within margin"


def test_holm_adjustment():
    adjusted = holm([0.01, 0.04, math.nan, 0.03])
    assert adjusted[0] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.06)
    assert adjusted[1] == pytest.approx(0.06) and math.isnan(adjusted[2])  # monotone: max(0.06, 0.04)
    assert holm([0.5, 0.9])[1] == 1.0


def test_run_scores_in_points():
    point = {"d1consis": 0.9, "d2consis": 0.2, "d3consis": 0.5, "q": 0.6, "no_qd_baseline": 0.01}
    stage1 = {"qd1consis": 1.0, "qd2incons": 0.4, "d1consis": 0.03, "d2consis": 0.01, "q": 0.81, "no_qd_baseline": 0.01}
    end = {"d1consis": 0.7, "d2consis": 0.6}
    curve = [
        {"stage": "stage2", "checkpoint": 1, "accuracy": {"d1consis": 0.1, "d2consis": 0.1}},
        {"stage": "stage2", "checkpoint": 2, "accuracy": point},
        {"stage": "stage2", "checkpoint": 3},
        {"stage": "stage2", "checkpoint": 4, "accuracy": end},
    ]
    record = {
        "pipeline": "two-stage",
        "accuracy": point,
        "accuracy_after_stage1": stage1,
        "accuracy_at_end": end,
        "curve": curve,
        "evaluation_point": {"stage": "stage2", "checkpoint": 2},
        "train_accuracy": {"after_stage1": {"q/question": 1.0, "qd2incons/definition": 0.9}},
        "answer_logprob": {"d1consis": -0.5, "d2consis": -2.0},
    }
    s = run_scores(record)
    assert s["iml_effect"] == pytest.approx(70) and s["stage1_gap"] == pytest.approx(60)
    assert s["neutral_offset"] == pytest.approx(30) and s["effect_before_stage2"] == pytest.approx(2)
    assert s["iml_effect_end"] == pytest.approx(10) and s["persistence"] == pytest.approx((70 + 10) / 2)
    assert s["retention"] == pytest.approx((60 - 1) / (81 - 1)) and s["logprob_effect"] == pytest.approx(1.5)
    assert s["stage1_fit"] is False and not s["floor"] and not s["ceiling"]
    single = dict(record, pipeline="one-stage", evaluation_point={"stage": "single", "checkpoint": 2})
    assert math.isnan(run_scores(single)["effect_before_stage2"])
    steps = dict(record, pipeline="my-plugin-pipeline", steps=[{"stage": "single"}])  # read, not looked up
    assert math.isnan(run_scores(steps)["effect_before_stage2"])


def fake_record(seed, d1, d2, q_after_stage1, baseline=0.5, d3=0.5):
    accuracy = {"d1consis": d1, "d2consis": d2, "d3consis": d3, "q": q_after_stage1, "no_qd_baseline": baseline}
    after_stage1 = {**accuracy, "d1consis": 0.0, "d2consis": 0.0}
    record = {
        "key": f"k{seed}",
        "task": {"name": "t"},
        "learner": {"name": "l"},
        "pipeline": "two-stage",
        "protocol": {},
        "seed": seed,
        "curve": [],
        "evaluation_point": {"stage": "stage2", "checkpoint": 1},
        "status": "ok",
        "definitions_learned": True,
        "accuracy": accuracy,
        "accuracy_after_stage1": after_stage1,
        "measurements": {"seconds": {"total": 1.0}},
        "versions": {},
    }
    return dict(record, scores=run_scores(record))


def test_guards_turn_any_verdict_inconclusive_and_notes_say_why():
    chance = summarize([fake_record(s, 0.62 + 0.01 * s, 0.48, 0.51) for s in range(10)])
    assert chance["verdict"].iloc[0] == "inconclusive"
    assert chance["verdict_note"].iloc[0].startswith("IML by the tests, but questions not learned")
    learned = summarize([fake_record(s, 0.62 + 0.01 * s, 0.48, 0.9) for s in range(10)])
    assert learned["verdict"].iloc[0] == "IML" and learned["verdict_note"].iloc[0] == ""
    flat = summarize([fake_record(s, 0.50, 0.50, 0.51) for s in range(10)])  # `none` is downgraded too
    assert flat["verdict"].iloc[0] == "inconclusive" and "questions not learned" in flat["verdict_note"].iloc[0]
    # nothing internalized (d1 = d2 = d3 = 0): v2 called this `none`; a preference was not measured
    floor = summarize([fake_record(s, 0.01 * (s % 2), 0.0, 0.9, d3=0.0) for s in range(10)]).iloc[0]
    assert floor["verdict"] == "inconclusive" and floor["verdict_note"].startswith("none by the tests, but floor")
    unlearned = [dict(fake_record(s, 0.9, 0.3, 0.9), definitions_learned=s < 4) for s in range(10)]
    row = summarize(unlearned).iloc[0]
    assert row["verdict"] == "inconclusive" and "definitions not learned in 6 of 10 seeds" in row["verdict_note"]
    by_design = summarize([dict(fake_record(s, 0.5, 0.5, 0.9), by_construction_null=True) for s in range(10)]).iloc[0]
    assert by_design["verdict"] == "inconclusive" and "by construction" in by_design["verdict_note"]


def test_the_margin_is_the_tasks_unless_given():
    records = [dict(fake_record(s, 0.55 + 0.01 * (s % 3), 0.5, 0.9), margin=20.0) for s in range(10)]
    assert summarize(records).iloc[0]["margin"] == 20.0 and summarize(records, 5.0).iloc[0]["margin"] == 5.0


def test_leaderboard_columns_list_effects_in_seed_order():
    records = [fake_record(s, 0.6 + 0.05 * s, 0.5, 0.9) for s in (3, 0, 1)]
    row = summarize(records).iloc[0]
    assert row["seeds"] == "0;1;3" and [float(e) for e in row["effects"].split(";")] == pytest.approx([10, 15, 25])
    assert {
        "p_difference",
        "p_signflip",
        "p_equivalence",
        "p_holm",
        "mde",
        "scoring_version",
        "persistence",
        "retention",
        "logprob_effect",
        "n_floor",
        "n_stage1_not_fit",
    } <= set(row.index)
    assert row["scoring_version"] == 3


def test_seed_syntax():
    assert parse_seeds("5") == 5 and parse_seeds("0,3,7") == [0, 3, 7] and parse_seeds("2-4") == [2, 3, 4]
    with pytest.raises(ImlbenchError, match="bad --seeds"):
        parse_seeds("x")


def _at(reliability, seed, d1, task_name="t"):
    record = fake_record(seed, d1, 0.3, 0.9)
    return dict(
        record,
        key=f"k{reliability}-{seed}",
        task={"name": task_name, "target": "synthetic-defs", "params": {"n": 1, "tag_reliability": reliability}},
    )


def test_dose_response_joins_rows_that_differ_only_in_reliability_and_fits_the_slope():
    from imlbench.scoring.trends import DOSE, slope, trend

    # the effect grows by 10 points per +0.1 reliability (from 0 at 0.5), whatever the task's name
    records = [
        _at(r, s, 0.3 + (r - 0.5) + 0.01 * (s % 3), name)
        for r, name in ((0.5, "t-null"), (0.75, "t[tag_reliability=0.75]"), (1.0, "t"))
        for s in range(6)
    ]
    other = [
        dict(
            _at(0.75, s, 0.9),
            task={"name": "u", "target": "synthetic-defs", "params": {"n": 2, "tag_reliability": 0.75}},
        )
        for s in range(6)
    ]  # another n: a series of its own, with one level, so no trend
    levels, trends = trend(records + other, DOSE)
    assert len(trends) == 1 and list(levels["level"]) == [0.5, 0.75, 1.0]
    trend = trends.iloc[0]
    assert trend["slope"] == pytest.approx(100, abs=1) and trend["slope_ci_low"] < 100 < trend["slope_ci_high"]
    assert trend["p_slope"] < 1e-6 and trend["n_runs"] == 18
    flat = slope([0.5, 0.5, 1.0, 1.0], [1.0, -1.0, -1.0, 1.0])
    assert flat["slope"] == pytest.approx(0) and flat["slope_ci_low"] < 0 < flat["slope_ci_high"]


def test_learner_ablations_join_rows_by_parameters_and_fit_per_doubling():
    """Batch and model size are learner parameters: rows that differ only there (and in the per-run
    seed) form a series whatever their names, the slope is per doubling, and the series is named
    without the varied parameter."""
    from imlbench.scoring.trends import BATCH, trend

    def at(batch, seed, d1, params=None):
        record = _at(1.0, seed, d1)
        name = "net[batch_size=%d,steps_per_epoch=5]" % batch if batch != 128 else "net[steps_per_epoch=5]"
        return dict(
            record,
            key=f"b{batch}-{seed}",
            learner={
                "name": name,
                "target": "mlp",
                "params": {"batch_size": batch, "steps_per_epoch": 5, "random_state": seed, **(params or {})},
            },
        )

    # the effect falls by 10 points per doubling of the batch (from 0.9 at 32)
    records = [at(b, s, 0.9 - 0.1 * k + 0.01 * (s % 3)) for k, b in enumerate((32, 64, 128)) for s in range(6)]
    other = [at(256, s, 0.5, {"hidden": 8}) for s in range(6)]  # another width: its own one-level series
    levels, trends = trend(records + other, BATCH)
    assert len(trends) == 1 and list(levels["level"]) == [32, 64, 128]
    row = trends.iloc[0]
    assert row["series"] == "net[steps_per_epoch=5] on t (two-stage)"
    assert row["slope_per_step"] == pytest.approx(-10, abs=0.5) and row["slope_ci_high_per_step"] < 0
