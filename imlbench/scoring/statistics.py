"""The across-seed tests of scoring v4 (PROTOCOL §5), on the per-seed effects x₁…xₙ.

- p_difference: two-sided one-sample t-test of effect = 0;
- p_signflip: the exact two-sided sign-flip permutation test of effect = 0 (all 2ⁿ sign patterns):
  no normality assumed, and its smallest possible value is 2/2ⁿ, so
  five seeds can never reach α = 0.05 — one outlying seed cannot carry a verdict on its own;
- p_equivalence: TOST against ±margin (the larger of the two one-sided t-test p's);
- mde: the smallest effect these seeds detect with 80% power at α.
`IML`/`reverse` needs both difference tests and no equivalence; `none` needs equivalence where a
±margin difference was attainable. A leaderboard decides on the p's Holm-adjusted within the row's
family (`imlbench.scoring.verdicts`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.80
MIN_SEEDS_FOR_EFFECT = 6  # 2/2⁵ = 0.0625: below six seeds the sign-flip test cannot reach α


EXACT_UP_TO = 16  # seeds: up to here every sign pattern is enumerated (65,536 patterns)


@functools.lru_cache(maxsize=None)
def _sign_patterns(n: int) -> np.ndarray:
    """Every one of the 2ⁿ sign patterns, one per row."""
    return 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(float)


def p_signflip(x: np.ndarray) -> float:
    """Exact two-sided sign-flip p of mean = 0: the share of the 2ⁿ sign patterns whose |sum| is at
    least the observed one (a seed with effect 0 flips to itself). Up to `EXACT_UP_TO` seeds by
    enumeration (a leaderboard scores thousands of rows in tests; scipy's `permutation_test` gives the
    same p, 100× slower); beyond, scipy's randomized test with 100,000 resamples."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return math.nan if len(x) == 0 else 1.0  # one seed: both sign patterns are as extreme
    if not np.any(x):
        return 1.0
    if len(x) <= EXACT_UP_TO:
        observed = abs(x.sum())
        sums = np.abs(_sign_patterns(len(x)) @ x)
        return float(np.mean(sums >= observed * (1 - 1e-12) - 1e-12))
    result = stats.permutation_test(
        (x,),
        np.mean,
        permutation_type="samples",
        n_resamples=100_000,
        alternative="two-sided",
        vectorized=True,
        axis=-1,
        random_state=np.random.default_rng(0),
    )
    return float(result.pvalue)


def verdict(
    mean: float,
    p_difference: float,
    p_signflip_: float,
    p_equivalence: float,
    alpha: float = ALPHA,
    *,
    n: int = MIN_SEEDS_FOR_EFFECT,
    sd: float = math.nan,
    margin: float = math.nan,
    attainable: bool = True,
) -> tuple[str, str]:
    """(verdict, note) on the accuracy basis (scoring v4) from the tests' p-values (the family-adjusted
    ones for a leaderboard row). `IML`/`reverse` needs both difference tests and no equivalence;
    `none` needs equivalence *and* room for a ±margin difference (`attainable`): where both arms sit
    at a bound, TOST cannot fail, so it proves nothing. Fewer than six seeds decide nothing."""
    if n < MIN_SEEDS_FOR_EFFECT:
        return "inconclusive", f"fewer than {MIN_SEEDS_FOR_EFFECT} seeds ({n})"
    if sd == 0:  # every seed gave the same effect: the t-tests are undefined, the answer is not
        if abs(mean) > margin:
            return ("IML" if mean > 0 else "reverse"), f"all {n} seeds equal"
        if attainable:
            return "none", f"all {n} seeds equal"
        return "inconclusive", f"all {n} seeds equal, censored"
    if any(math.isnan(p) for p in (p_difference, p_signflip_, p_equivalence)):
        return "inconclusive", ""
    different = p_difference < alpha and p_signflip_ < alpha
    if p_equivalence < alpha:
        if not attainable:
            return "inconclusive", "censored"
        return "none", "non-zero but within margin" if different else ""
    if different:
        return ("IML" if mean > 0 else "reverse"), ""
    if p_difference < alpha:
        return "inconclusive", "the t-test alone rejects 0 (sign-flip p ≥ α)"
    return "inconclusive", ""


def difference_tests(values: Any, alpha: float = ALPHA) -> dict[str, float]:
    """Mean, sd, Student-t CI, t-test p and exact sign-flip p of mean = 0 (NaN where undefined)."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    n = len(x)
    tests = {"n": n, "mean": float(x.mean()) if n else math.nan, "sd": math.nan}
    tests.update(ci_low=math.nan, ci_high=math.nan, p_difference=math.nan)
    tests["p_signflip"] = p_signflip(x) if n else math.nan
    if n < 2:
        return tests
    mean, sd = tests["mean"], _spread(x)
    tests["sd"] = sd
    if sd == 0:
        tests.update(ci_low=mean, ci_high=mean, p_difference=1.0 if mean == 0 else 0.0)
        return tests
    se, df = sd / math.sqrt(n), n - 1
    critical = float(stats.t.ppf(1 - alpha / 2, df))
    tests.update(
        ci_low=mean - critical * se,
        ci_high=mean + critical * se,
        p_difference=float(2 * stats.t.sf(abs(mean) / se, df)),
    )
    return tests


def detectable(sd: float, n: int, alpha: float = ALPHA) -> float:
    """The minimal detectable effect of n seeds with this sd: 80% power at α, two-sided."""
    df = n - 1
    return float((float(stats.t.ppf(1 - alpha / 2, df)) + stats.t.ppf(POWER, df)) * sd / math.sqrt(n))


def _spread(x: np.ndarray) -> float:
    """The sample sd, 0 where every value is equal up to float rounding (six copies of 60/76 − 13/76
    have a float sd of 1e-14: the zero-spread rule must see them as equal)."""
    if np.ptp(x) <= 1e-12 * float(np.abs(x).max()):
        return 0.0
    return float(x.std(ddof=1))


def standardized_score(effects: Any, margin: float, alpha: float = ALPHA, attainable: bool = True) -> dict[str, Any]:
    """Mean over seeds, Student-t CI, d_z, the three tests, mde and the verdict of a row judged alone
    (a family of one: the leaderboard adjusts the p's within the row's family before deciding)."""
    score: dict[str, Any] = difference_tests(effects, alpha)
    score.update(d_z=math.nan, p_equivalence=math.nan, mde=math.nan)
    n, mean, sd = score["n"], score["mean"], score["sd"]
    if n >= 2 and sd == 0:
        score.update(mde=0.0, d_z=0.0 if mean == 0 else math.copysign(math.inf, mean))
        score["p_equivalence"] = 0.0 if abs(mean) < margin else 1.0
    elif n >= 2:
        # scipy's one-sample t-tests written out on one t distribution: `ttest_1samp` computes the
        # same statistics, but its input checks cost ~1 ms a call, and a leaderboard (or the
        # calibration tests, 12,000 rows) calls this thousands of times
        se, df = sd / math.sqrt(n), n - 1
        above = stats.t.sf((mean + margin) / se, df)  # H0: effect <= -margin
        below = stats.t.cdf((mean - margin) / se, df)  # H0: effect >= +margin
        score.update(
            d_z=mean / sd,
            p_equivalence=float(max(above, below)),
            mde=detectable(sd, n, alpha),
        )
    score["verdict"], score["note"] = verdict(
        mean,
        score["p_difference"],
        score["p_signflip"],
        score["p_equivalence"],
        alpha,
        n=n,
        sd=sd,
        margin=margin,
        attainable=attainable,
    )
    return score


def holm(p_values: Any) -> np.ndarray:
    """Holm's step-down adjustment over the finite p-values given (one family); NaN stays NaN.

    scipy offers only FDR adjustments (`false_discovery_control`); Holm controls the chance of any
    false call among the rows, which is what a reader scanning a leaderboard for "IML" needs.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    finite = np.flatnonzero(~np.isnan(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m, running = len(order), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted
