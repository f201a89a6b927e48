import math

import numpy as np
import pandas as pd
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
    # scoring v4: fewer than six seeds decide nothing, whatever the tests say
    assert verdict(5.0, 0.001, 0.001, 0.5, n=5) == ("inconclusive", "fewer than 6 seeds (5)")
    # censoring: equivalence where a ±margin difference was not attainable proves nothing...
    assert verdict(0.5, 0.6, 0.7, 0.01, attainable=False) == ("inconclusive", "censored")
    assert verdict(2.0, 0.01, 0.01, 0.01, attainable=False) == ("inconclusive", "censored")
    # ...but a significant difference stands when bounded
    assert verdict(5.0, 0.01, 0.01, 0.5, attainable=False) == ("IML", "")


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
    """The rule's error rates at n = 10 for a row judged alone (a family of one, scoring v4): a false
    IML/reverse call on null data and a false `none` at the margin each stay at alpha; a large effect
    is found."""
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
    assert standardized_score([0.0] * 2, MARGIN)["verdict"] == "inconclusive"  # two equal seeds are no evidence
    # v4: `none` when |effect| <= margin (v3 left the margin itself inconclusive), IML/reverse only beyond it
    assert standardized_score([10.0] * 10, MARGIN)["verdict"] == "none"
    assert standardized_score([10.5] * 10, MARGIN)["verdict"] == "IML"
    small = standardized_score([3.0] * 10, MARGIN)
    assert small["verdict"] == "none" and small["note"] == "all 10 seeds equal"
    # the margin was not attainable: no `none`, but an effect beyond the margin stands
    assert standardized_score([0.0] * 10, MARGIN, attainable=False)["verdict"] == "inconclusive"
    assert standardized_score([3.0] * 10, MARGIN, attainable=False)["verdict"] == "inconclusive"
    assert standardized_score([-12.0] * 10, MARGIN, attainable=False)["verdict"] == "reverse"


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
    # the window is checkpoints 2..4 (p = 2); 3 was not evaluated, so it is read at 2 and 4:
    # d1 (90 + 70) / 2 = 80, d2 (20 + 60) / 2 = 40; d3, q and the baseline only at 2
    assert s["iml_effect"] == pytest.approx(40) and s["window_checkpoints"] == 2 and not s["window_short"]
    assert s["iml_effect_point"] == pytest.approx(70) and s["iml_effect_window_end"] == pytest.approx(10)
    assert s["iml_effect_end"] == pytest.approx(10) and "persistence" not in s
    assert s["stage1_gap"] == pytest.approx(60) and s["effect_before_stage2"] == pytest.approx(2)
    assert s["neutral_offset"] == pytest.approx(50 - 40)
    assert s["retention"] == pytest.approx((60 - 1) / (81 - 1))
    # no answer scores in the window: read at the point, and said so
    assert s["logprob_effect"] == pytest.approx(1.5) and s["logprob_at_point"] is True
    assert s["stage1_fit"] is False and not s["floor"] and "ceiling" not in s
    assert s["attainable"] is True  # 80 and 40 both within [10, 90]
    assert run_scores(dict(record, margin=45.0))["attainable"] is False  # 80 > 100 - 45
    scored_curve = [dict(e, answer_logprob={"d1consis": -1.0, "d2consis": -1.0 - e["checkpoint"]}) for e in curve]
    windowed = run_scores(dict(record, curve=scored_curve))
    assert windowed["logprob_effect"] == pytest.approx((2 + 4) / 2) and windowed["logprob_at_point"] is False
    short = run_scores(dict(record, curve=curve[:3]))  # the budget ended at checkpoint 3 < 2p
    assert short["window_short"] and short["iml_effect"] == pytest.approx(70) and short["window_checkpoints"] == 1
    unlearned = run_scores(dict(record, definitions_learned=False))  # no point, no window: the point's table
    assert unlearned["iml_effect"] == pytest.approx(70) and unlearned["window_checkpoints"] == 1
    single = dict(record, pipeline="one-stage", evaluation_point={"stage": "single", "checkpoint": 2})
    assert math.isnan(run_scores(single)["effect_before_stage2"])
    steps = dict(record, pipeline="my-plugin-pipeline", steps=[{"stage": "single"}])  # read, not looked up
    assert math.isnan(run_scores(steps)["effect_before_stage2"])


def fake_record(
    seed, d1, d2, q_after_stage1, baseline=0.5, d3=0.5, *, window=None, logprob=None, families=None, **fields
):
    """A finished run of seed `seed` with d1, d2 (fractions) at its evaluation point.
    window: (d1, d2) at each checkpoint p … 2p of its reading window (p = len(window) - 1, the first
    pair at the point); without it the record has no curve and is read at the point.
    logprob: its answer-score gap d1 − d2 at the point (nats); families: the families it declares;
    fields: any other record field (task, learner, key, margin, ...)."""
    accuracy = {"d1consis": d1, "d2consis": d2, "d3consis": d3, "q": q_after_stage1, "no_qd_baseline": baseline}
    after_stage1 = {**accuracy, "d1consis": 0.0, "d2consis": 0.0}
    curve, point = [], 1
    if window is not None:
        point = len(window) - 1
        accuracy = {**accuracy, "d1consis": window[0][0], "d2consis": window[0][1]}
        curve = [
            {
                "stage": "stage2",
                "checkpoint": point + i,
                "definitions": {},
                "accuracy": {**accuracy, "d1consis": a, "d2consis": b},
            }
            for i, (a, b) in enumerate(window)
        ]
    record = {
        "key": f"k{seed}",
        "task": {"name": "t"},
        "learner": {"name": "l"},
        "pipeline": "two-stage",
        "protocol": {},
        "seed": seed,
        "curve": curve,
        "evaluation_point": {"stage": "stage2", "checkpoint": point},
        "status": "ok",
        "definitions_learned": True,
        "accuracy": accuracy,
        "accuracy_after_stage1": after_stage1,
        "measurements": {"seconds": {"total": 1.0}},
        "versions": {},
    }
    if logprob is not None:
        record["answer_logprob"] = {"d1consis": -1.0 + logprob, "d2consis": -1.0}
    if families is not None:
        record["families"] = list(families)
    record.update(fields)
    return dict(record, scores=run_scores(record))


def test_guards_turn_any_verdict_inconclusive_and_notes_say_why():
    chance = summarize([fake_record(s, 0.62 + 0.01 * s, 0.48, 0.51) for s in range(10)])
    assert chance["verdict"].iloc[0] == "inconclusive"
    assert chance["verdict_note"].iloc[0].startswith("IML by the tests, but questions not learned")
    learned = summarize([fake_record(s, 0.62 + 0.01 * s, 0.48, 0.9) for s in range(10)])
    # no tag_reliability = 0.5 control beside it: still IML, and said to be uncontrolled
    assert learned["verdict"].iloc[0] == "IML" and learned["basis"].iloc[0] == "accuracy"
    assert learned["verdict_note"].iloc[0].startswith("uncontrolled") and not learned["controlled"].iloc[0]
    flat = summarize([fake_record(s, 0.50, 0.50, 0.51) for s in range(10)])  # `none` is downgraded too
    assert flat["verdict"].iloc[0] == "inconclusive" and "questions not learned" in flat["verdict_note"].iloc[0]
    # nothing internalized (d1 = d2 = d3 = 0): v2 called this `none`; a preference was not measured
    floor = summarize([fake_record(s, 0.01 * (s % 2), 0.0, 0.9, d3=0.0) for s in range(10)]).iloc[0]
    assert floor["verdict"] == "inconclusive" and "by the tests, but floor" in floor["verdict_note"]
    assert floor["basis"] == "" and "floor" in floor["flags"].split(";")
    unlearned = [dict(fake_record(s, 0.9, 0.3, 0.9), definitions_learned=s < 4) for s in range(10)]
    row = summarize(unlearned).iloc[0]
    assert row["verdict"] == "inconclusive" and "definitions not learned in 6 of 10 seeds" in row["verdict_note"]
    by_design = summarize([dict(fake_record(s, 0.5, 0.5, 0.9), by_construction_null=True) for s in range(10)]).iloc[0]
    assert by_design["verdict"] == "inconclusive" and "by construction" in by_design["verdict_note"]


@pytest.mark.parametrize(
    ("variables", "margin", "fires"),
    [(19, 10.0, True), (29, 10.0, True), (40, 10.0, False), (95, 10.0, False), (19, 25.0, False)],
)
def test_arms_of_few_variables_are_noted_unless_the_margin_spans_four_answers(variables, margin, fires):
    """PROTOCOL §5: under 40 variables an answer moves an arm by more than 2.5 points; such a task
    grows its subsets or declares a margin of at least four answers, and the row says which it lacks."""
    sizes = {"variables_d1consis": variables, "variables_d2consis": variables + 3}
    records = [dict(fake_record(s, 0.55 + 0.01 * (s % 3), 0.5, 0.9), sizes=sizes, margin=margin) for s in range(10)]
    row = summarize(records).iloc[0]
    assert row["d_variables"] == variables
    assert ("coarse-subsets" in row["flags"].split(";")) is fires
    note = f"coarse: {variables} variables an arm, one answer {100 / variables:.1f} points"
    assert (note in row["verdict_note"]) is fires


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
        "iml_effect_point",
        "iml_effect_window_end",
        "window_checkpoints",
        "n_window_short",
        "retention",
        "logprob_effect",
        "n_floor",
        "n_stage1_not_fit",
        "family",
        "p_difference_holm",
        "p_signflip_holm",
        "p_logprob_difference_holm",
        "p_logprob_signflip_holm",
        "n_unattainable",
        "basis",
        "structural_null",
        "controlled",
    } <= set(row.index)
    assert "persistence" not in row.index and row["family"] == "undeclared"  # these records declare none
    assert row["scoring_version"] == 4 and row["p_holm"] == row["p_difference_holm"]


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

    # the effect grows by 10 points per +0.1 reliability (from 0 at 0.5; each seed by 9.6 to 10.4),
    # whatever the task's name
    records = [
        _at(r, s, 0.3 + (r - 0.5) * (0.96 + 0.016 * s) + 0.01 * (s % 3), name)
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
    assert trend["p_slope"] < 1e-6 and trend["p_slope_signflip"] == pytest.approx(2 / 2**6)
    assert trend["n_runs"] == 18 and trend["n_seeds"] == 6 and trend["n_seeds_dropped"] == 0
    # these records have no curve, so the window holds the point alone and the two slopes agree
    assert trend["slope_point"] == pytest.approx(trend["slope"]) and trend["reported"]
    assert trend["sign_agrees"] and trend["trend_verdict"] == "up"
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


def _sloped(seed, level, per_step, offset=0.0):
    """A dose-response run whose effect is `offset` + `per_step` points per +0.5 reliability from 0.5."""
    return _at(level, seed, 0.4 + (offset + per_step * (level - 0.5) / 0.5) / 100)


def test_the_trend_is_the_mean_per_seed_slope_so_offsets_shared_across_levels_cancel():
    """PROTOCOL §5: the levels share seeds. Each seed rises by 9 to 11 points per step from its own
    offset of ±30 points: one regression over all runs counts the offsets as noise and its CI takes
    in 0, while each seed's own slope has no offset in it."""
    from imlbench.scoring.trends import DOSE, slope, trend

    records = [_sloped(s, r, 10 + (s % 3 - 1), 30 if s % 2 else -30) for r in (0.5, 0.75, 1.0) for s in range(6)]
    _, trends = trend(records, DOSE)
    row = trends.iloc[0]
    assert row["slope_per_step"] == pytest.approx(10) and 0 < row["slope_ci_low_per_step"] < 10
    assert row["p_slope"] < 1e-4 and row["p_slope_signflip"] < 0.05 and row["trend_verdict"] == "up"
    assert row["n_seeds"] == 6 and row["n_runs"] == 18
    x = [r["task"]["params"]["tag_reliability"] for r in records]
    pooled = slope(x, [r["scores"]["iml_effect"] for r in records])  # every run taken as independent
    assert pooled["slope"] == pytest.approx(row["slope"]) and pooled["slope_ci_low"] < 0 < pooled["slope_ci_high"]


def test_a_trend_whose_sign_differs_at_the_point_and_over_the_window_is_not_reported(monkeypatch):
    import dataclasses

    from imlbench.outputs.report import _trend_line
    from imlbench.scoring import trends as module

    original = module.scored

    def point_reversed(record):  # the effect at the point the opposite of the window's
        run = original(record)
        return dataclasses.replace(run, scores={**run.scores, "iml_effect_point": -run.scores["iml_effect"]})

    monkeypatch.setattr(module, "scored", point_reversed)
    records = [_sloped(s, r, 10 + (s % 3 - 1)) for r in (0.5, 0.75, 1.0) for s in range(6)]
    _, trends = module.trend(records, module.DOSE)
    row = trends.iloc[0]
    assert row["slope_per_step"] == pytest.approx(10) and row["slope_point_per_step"] == pytest.approx(-10)
    assert row["slope_point_ci_high"] < 0 < row["slope_ci_low"] and row["p_slope"] < 0.05
    assert not row["sign_agrees"] and not row["reported"] and row["trend_verdict"] == "depends on when it is read"
    line = _trend_line(row, module.DOSE)
    assert "depends on when it is read: slope +10.0 points per +0.5 at the window, -10.0 at the point" in line


def test_a_seed_missing_at_a_level_is_left_out_of_the_trend_and_counted():
    from imlbench.scoring.trends import DOSE, trend

    records = [_sloped(s, r, 10 + (s % 3 - 1)) for r in (0.5, 0.75, 1.0) for s in range(6) if (r, s) != (0.75, 5)]
    levels, trends = trend(records, DOSE)
    row = trends.iloc[0]
    assert row["n_seeds"] == 5 and row["n_seeds_dropped"] == 1 and row["n_runs"] == 17
    assert list(levels["n_seeds"]) == [6, 5, 6]  # each level's own effect keeps all its seeds
    # five seeds: the t-test rejects a zero slope, but the sign-flip test cannot (2/2⁵ > 0.05)
    assert row["p_slope"] < 0.05 and row["p_slope_signflip"] == pytest.approx(2 / 2**5)
    assert row["reported"] and row["trend_verdict"] == "flat/unclear"


# --- scoring v4 on simulated seeds (PROTOCOL §5) ---------------------------------------------------


def _runs(name, pairs, logprobs=None, families=None, **fields):
    """One leaderboard row's records: seed s has (d1, d2) = pairs[s] (fractions) and answer-score gap
    logprobs[s] (None: no answer scores); `name` names its task unless `fields` give one."""
    return [
        fake_record(
            s,
            float(np.clip(d1, 0, 1)),
            float(np.clip(d2, 0, 1)),
            0.9,
            logprob=None if logprobs is None else logprobs[s],
            families=families,
            **{"key": f"{name}-{s}", "task": {"name": name}, **fields},
        )
        for s, (d1, d2) in enumerate(pairs)
    ]


def _null_pairs(rng, n=10, sd=0.04):
    """n seeds of a row with no effect: d2 somewhere in 30-70%, d1 = d2 + noise (sd in fractions)."""
    d2 = rng.uniform(0.3, 0.7) + rng.normal(0, 0.03, n)
    return list(zip(d2 + rng.normal(0, sd, n), d2))


def test_each_seed_is_read_over_its_window():
    """The point is a transient: a seed 60 points apart at the point (p = 3) and level over the
    checkpoints after it is read as its mean over checkpoints p … 2p, about 15 points."""
    rng = np.random.default_rng(7)
    records = [
        fake_record(s, 0.9, 0.3, 0.9, window=[(0.9, 0.3)] + [(0.5 + rng.normal(0, 0.02), 0.5) for _ in range(3)])
        for s in range(10)
    ]
    row = summarize(records).iloc[0]
    expected = [
        np.mean([100 * (e["accuracy"]["d1consis"] - e["accuracy"]["d2consis"]) for e in r["curve"]]) for r in records
    ]
    assert row["window_checkpoints"] == 4 and row["iml_effect_point"] == pytest.approx(60)
    assert row["effect_mean"] == pytest.approx(np.mean(expected)) and abs(row["effect_mean"] - 15) < 2
    assert [float(e) for e in row["effects"].split(";")] == pytest.approx(expected)


def test_arms_at_a_bound_are_never_none_on_accuracy():
    """Censoring: where both arms sit within the margin of 100% in most seeds, no ±margin difference
    could show, so equivalence proves nothing (v3 called such rows `none`). Without answer scores
    they are inconclusive; with them they are judged on the scores, never on accuracy."""
    rng = np.random.default_rng(2)
    full = summarize(_runs("full", [(1.0, 1.0)] * 10)).iloc[0]
    assert full["verdict"] == "inconclusive" and full["basis"] == "" and full["n_unattainable"] == 10
    assert full["verdict_note"].startswith("censored: a ±10 difference was not attainable in 10 of 10 seeds")
    # 40 rows near the ceiling with no effect: TOST says equivalent in (nearly) every one, none is `none`
    near = [
        r
        for i in range(40)
        for r in _runs(f"near{i}", [(0.965 + rng.normal(0, 0.01), 0.965 + rng.normal(0, 0.01)) for _ in range(10)])
    ]
    board = summarize(near)
    assert (board["p_equivalence"] < 0.05).mean() > 0.9 and (board["n_unattainable"] > 5).all()
    assert set(board["verdict"]) == {"inconclusive"} and "censored" in set(";".join(board["flags"]).split(";"))
    # with answer scores (no effect in them either) the same rows are judged on the scores
    scored_rows = summarize(
        [
            r
            for i in range(10)
            for r in _runs(f"s{i}", [(1.0, 1.0)] * 10, logprobs=list(rng.normal(0, 0.3, 10)), families=["f"])
        ]
    )
    assert set(scored_rows["basis"]) == {"scores"} and "none" not in set(scored_rows["verdict"])


def test_a_censored_row_is_judged_on_its_answer_scores():
    rng = np.random.default_rng(3)
    top = [(1.0, 1.0)] * 10
    iml = summarize(_runs("iml", top, logprobs=list(0.5 + rng.normal(0, 0.1, 10)))).iloc[0]
    assert iml["verdict"] == "IML" and iml["basis"] == "scores" and iml["logprob_effect"] > 0
    assert iml["p_logprob_difference_holm"] < 0.05 and iml["p_logprob_signflip_holm"] < 0.05
    assert "judged on the answer scores" in iml["verdict_note"] and not iml["structural_null"]
    reverse = summarize(_runs("rev", top, logprobs=list(-0.5 + rng.normal(0, 0.1, 10)))).iloc[0]
    assert reverse["verdict"] == "reverse" and reverse["basis"] == "scores"
    # the tag does not reach the answer scores at all: a structural null
    zero = summarize(_runs("zero", top, logprobs=[0.0] * 10)).iloc[0]
    assert zero["verdict"] == "none" and zero["basis"] == "scores" and zero["structural_null"]
    assert "structural null" in zero["verdict_note"] and "structural-null" in zero["flags"].split(";")
    # no answer scores, or not in every seed: nothing to judge by
    for logprobs in (None, [0.5 + 0.01 * s for s in range(9)] + [None]):
        bare = summarize(_runs("bare", top, logprobs=logprobs)).iloc[0]
        assert bare["verdict"] == "inconclusive" and bare["basis"] == "" and not bare["structural_null"]
        assert bare["verdict_note"].endswith("no answer scores to judge by")
    # noisy scores around 0: judged on them, and they say nothing
    noise = summarize(_runs("noise", top, logprobs=list(rng.normal(0, 0.3, 10)))).iloc[0]
    assert noise["verdict"] == "inconclusive" and noise["basis"] == "scores"
    # an accuracy difference beyond the bound stands on accuracy (d2 under the margin in every seed)
    low = summarize(_runs("low", [(0.6 + 0.01 * s, 0.05) for s in range(10)], logprobs=[0.0] * 10)).iloc[0]
    assert low["n_unattainable"] == 10 and low["verdict"] == "IML" and low["basis"] == "accuracy"


def test_two_seeds_with_equal_effects_are_inconclusive():
    for pairs in ([(0.5, 0.5)] * 2, [(0.8, 0.5)] * 2):  # zero spread: `none` and IML with six seeds or more
        row = summarize(_runs("two", pairs)).iloc[0]
        assert row["n_seeds"] == 2 and row["verdict"] == "inconclusive" and row["basis"] == ""
        assert "fewer than 6 seeds (2)" in row["verdict_note"]
        assert summarize(_runs("six", pairs * 3)).iloc[0]["verdict"] in ("none", "IML")


def test_holm_acts_within_the_declared_family():
    """22 rows of +30 ± 3 points at 10 seeds: each sign-flip p is the floor 2/1024, and Holm over a
    family of 22 keeps them under alpha (22 × 2/1024 = 0.043); the same records in a family of 30
    cannot be (30 × 2/1024 = 0.059 > 0.05). Only the declared family changes the answer."""
    rng = np.random.default_rng(4)
    records = []
    for i in range(22):
        d2 = rng.uniform(0.1, 0.55, 10)
        records += _runs(f"strong{i}", list(zip(d2 + 0.30 + rng.normal(0, 0.03, 10), d2)), families=["of22", "of30"])
    for i in range(8):
        records += _runs(f"null{i}", _null_pairs(rng), families=["of30"])
    board = summarize(records)
    small, large = board[board["family"] == "of22"], board[board["family"] == "of30"]
    assert len(small) == 22 and len(large) == 30
    assert small["p_signflip"].eq(2 / 1024).all() and small["p_signflip_holm"].max() == pytest.approx(22 * 2 / 1024)
    assert (small["verdict"] == "IML").all() and (small["p_holm"] < 1e-6).all()
    strong = large[large["task"].str.startswith("strong")]
    assert strong["p_signflip"].eq(2 / 1024).all() and strong["p_signflip_holm"].eq(30 * 2 / 1024).all()
    assert not large["verdict"].isin(["IML", "reverse"]).any() and (strong["verdict"] == "inconclusive").all()
    assert list(strong["effect_mean"]) == pytest.approx(list(small["effect_mean"]))  # the same rows


def test_null_families_call_iml_or_reverse_in_at_most_5_percent_of_families():
    """Family-wise error on simulated null data: 400 families of 10 rows, 10 seeds each, every effect
    0 with noise of 10 to 25 points per seed (wide enough that equivalence seldom says `none` first).
    Holm within the family keeps the chance of any IML/reverse in a family at alpha; each row's own
    unadjusted tests would call one in about a third of the families."""
    rng = np.random.default_rng(5)
    families, rows = 400, 10
    records = [
        r
        for f in range(families)
        for i in range(rows)
        for r in _runs(f"t{i}", _null_pairs(rng, sd=rng.uniform(0.10, 0.25)), families=[f"f{f}"])
    ]
    board = summarize(records)
    assert len(board) == families * rows and set(board["n_seeds"]) == {10}
    called = board["verdict"].isin(["IML", "reverse"]).groupby(board["family"]).any()
    alone = (board["p_difference"] < 0.05) & (board["p_signflip"] < 0.05) & (board["p_equivalence"] >= 0.05)
    assert called.sum() <= 0.05 * families, called.sum()
    # the count is a binomial draw: its one-sided 95% (Clopper-Pearson) upper bound on the family-wise
    # rate is itself within alpha, far below the rate without the adjustment
    upper = stats.beta.ppf(0.95, called.sum() + 1, families - called.sum())
    assert upper <= 0.05 and alone.groupby(board["family"]).any().mean() > 0.2, upper


def _dose_row(
    reliability, effect, family, seeds=range(10), sd=0.03, random_state=0, name=None, top=False, logprob=None, lsd=0.05
):
    """A row of learner `net` on synthetic-defs at tag_reliability `reliability`: d1 − d2 = effect
    (fraction) ± sd per seed around d2 = 50% (or both arms at 100% with `top`); with `logprob`,
    answer scores whose gap is logprob ± lsd nats per seed."""
    rng = np.random.default_rng(int(reliability * 1000) + random_state)
    task = {
        "name": name or f"t@{reliability}",
        "target": "synthetic-defs",
        "params": {"n": 1, "tag_reliability": reliability},
    }
    learner = {"name": "net", "target": "mlp", "params": {"hidden": 8, "random_state": random_state}}
    records = []
    for s in seeds:
        d2 = 0.5 + rng.normal(0, 0.02)
        d1, d2 = (1.0, 1.0) if top else (float(np.clip(d2 + effect + rng.normal(0, sd), 0, 1)), d2)
        key = f"{task['name']}-{family}-{s}"
        gap = None if logprob is None else float(logprob + rng.normal(0, lsd))
        records.append(fake_record(s, d1, d2, 0.9, logprob=gap, families=[family], key=key, task=task, learner=learner))
    return records


def test_an_iml_row_is_controlled_only_by_its_null_twin_in_its_family():
    def board(*rows):
        frame = summarize([r for row in rows for r in row])
        return frame[(frame["task"] == "t@1.0") & (frame["family"] == "f")].iloc[0], frame

    iml = _dose_row(1.0, 0.20, "f")
    # the twin at 0.5 (its learner's random_state aside: the same learner) is `none` and sees +20
    row, frame = board(iml, _dose_row(0.5, 0.0, "f", random_state=1))
    twin = frame[frame["task"] == "t@0.5"].iloc[0]
    assert twin["verdict"] == "none" and twin["mde"] <= row["effect_mean"] and pd.isna(twin["controlled"])
    assert row["verdict"] == "IML" and row["controlled"] is True and "uncontrolled" not in row["verdict_note"]
    # the same twin declared in another family controls nothing here
    row, _ = board(iml, _dose_row(0.5, 0.0, "g"))
    assert row["verdict"] == "IML" and row["controlled"] is False
    assert "uncontrolled (no tag_reliability = 0.5 control on the same seeds in its family)" in row["verdict_note"]
    # a twin that is itself IML, censored, blind to the effect (mde above it), or on other seeds fails
    for twin, why in (
        (_dose_row(0.5, 0.20, "f"), "is IML"),
        (_dose_row(0.5, 0.0, "f", top=True), "is censored"),
        (_dose_row(0.5, 0.0, "f", sd=0.3), "above the effect"),
        (_dose_row(0.5, 0.0, "f", seeds=range(1, 11)), "no tag_reliability = 0.5 control"),
    ):
        row, _ = board(iml, twin)
        assert row["verdict"] == "IML" and row["controlled"] is False and why in row["verdict_note"], why


def test_a_row_judged_on_its_answer_scores_is_controlled_on_its_twins_answer_scores():
    """Both arms at 100%: accuracy is censored in the row and in its twin alike, so the row stands on
    its answer scores and so does its control (PROTOCOL §5 as docs/PROTOCOL.md has it)."""

    def board(*rows):
        frame = summarize([r for row in rows for r in row])
        return frame[(frame["task"] == "t@1.0") & (frame["family"] == "f")].iloc[0]

    iml = _dose_row(1.0, 0.0, "f", top=True, logprob=0.3)
    row = board(iml, _dose_row(0.5, 0.0, "f", top=True, logprob=0.0, random_state=1))
    assert (row["verdict"], row["basis"], row["controlled"]) == ("IML", "scores", True), row["verdict_note"]
    for twin, why in (
        (_dose_row(0.5, 0.0, "f", top=True, logprob=0.3), "is IML"),
        (_dose_row(0.5, 0.0, "f", top=True, logprob=0.0, lsd=1.0), "scores mde"),
        (_dose_row(0.5, 0.0, "f", top=True), "lacks answer scores"),
    ):
        row = board(iml, twin)
        assert row["verdict"] == "IML" and row["controlled"] is False and why in row["verdict_note"], why


def test_console_and_csv_show_the_p_adjusted_within_the_same_family(tmp_path):
    """The printed table and the CSV show a row's p adjusted in its own family: the same records in
    a family of one and in a family of five show different adjusted p's, the same on both."""
    from imlbench.outputs.console import _p, leaderboard_rows, verdict_sentence
    from imlbench.scoring.verdicts import write_leaderboard

    rng = np.random.default_rng(6)
    records = _runs("a", [(0.55 + rng.normal(0, 0.04), 0.4) for _ in range(10)], families=["alone", "five"])
    for i in range(4):
        records += _runs(f"b{i}", _null_pairs(rng), families=["five"])
    frame = write_leaderboard(records, tmp_path / "leaderboard.csv")
    csv = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(csv["family"]) == list(frame["family"]) and list(csv["task"]) == list(frame["task"])
    printed, from_csv = leaderboard_rows(frame), leaderboard_rows(csv)
    for (_, row), shown, shown_csv in zip(frame.iterrows(), printed, from_csv):
        for short, column in (("p_holm", "p_holm"), ("p_flip_holm", "p_signflip_holm")):
            assert shown[short] == shown_csv[short] == _p(row[column])
        assert f"family {row['family']}: Holm-adjusted p = {shown['p_holm']}," in verdict_sentence(row)
    a = frame[frame["task"] == "a"].set_index("family")
    assert a.loc["five", "p_holm"] > a.loc["alone", "p_holm"] == pytest.approx(a.loc["alone", "p_difference"])
    shown_a = {r["p_holm"] for r, f in zip(printed, frame["family"]) if r["task"] == "a"}
    assert len(shown_a) == 2  # two families, two adjusted p's on the screen
