"""The across-seed tests of scoring v3 (PROTOCOL §5), on the per-seed effects x₁…xₙ.

- p_difference: two-sided one-sample t-test of effect = 0;
- p_signflip: the exact two-sided sign-flip permutation test of effect = 0 (all 2ⁿ sign patterns):
  no normality assumed, and its smallest possible value is 2/2ⁿ, so
  five seeds can never reach α = 0.05 — one outlying seed cannot carry a verdict on its own;
- p_equivalence: TOST against ±margin (the larger of the two one-sided t-test p's);
- mde: the smallest effect these seeds detect with 80% power at α.
`IML`/`reverse` needs both difference tests and no equivalence; `none` needs equivalence.
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
    mean: float, p_difference: float, p_signflip_: float, p_equivalence: float, alpha: float = ALPHA
) -> tuple[str, str]:
    """(verdict, note) from the three tests. Equivalence wins: an effect shown to lie inside the
    margin is `none` even when it is also shown to be non-zero."""
    if any(math.isnan(p) for p in (p_difference, p_signflip_, p_equivalence)):
        return "inconclusive", ""
    if p_equivalence < alpha:
        return "none", "non-zero but within margin" if p_difference < alpha and p_signflip_ < alpha else ""
    if p_difference < alpha and p_signflip_ < alpha:
        return ("IML" if mean > 0 else "reverse"), ""
    if p_difference < alpha:
        return "inconclusive", "the t-test alone rejects 0 (sign-flip p ≥ α)"
    return "inconclusive", ""


def standardized_score(effects: Any, margin: float, alpha: float = ALPHA) -> dict[str, Any]:
    """Mean over seeds, Student-t CI, d_z, the three tests, mde and the verdict."""
    x = np.asarray([e for e in effects if not math.isnan(e)], dtype=float)
    n = len(x)
    score: dict[str, Any] = {
        "n": n,
        "mean": float(x.mean()) if n else math.nan,
        "sd": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "d_z": math.nan,
        "p_difference": math.nan,
        "p_signflip": p_signflip(x) if n else math.nan,
        "p_equivalence": math.nan,
        "mde": math.nan,
    }
    if n < 2:  # one seed decides nothing
        return {**score, "verdict": "inconclusive", "note": ""}
    mean, sd = score["mean"], float(x.std(ddof=1))
    score["sd"] = sd
    if sd == 0:  # every seed gave the same effect: the t-tests are undefined, the answer is not
        score.update(
            ci_low=mean,
            ci_high=mean,
            mde=0.0,
            d_z=0.0 if mean == 0 else math.copysign(math.inf, mean),
            p_difference=1.0 if mean == 0 else 0.0,
            p_equivalence=0.0 if abs(mean) < margin else 1.0,
        )
        if abs(mean) == margin or (abs(mean) > margin and n < MIN_SEEDS_FOR_EFFECT):
            why = "at the margin" if abs(mean) == margin else "too few seeds to call an effect"
            return {**score, "verdict": "inconclusive", "note": f"all {n} seeds equal; {why}"}
    else:
        # scipy's one-sample t-tests written out on one t distribution: `ttest_1samp` computes the
        # same statistics, but its input checks cost ~1 ms a call, and a leaderboard (or the
        # calibration tests, 12,000 rows) calls this thousands of times
        se, df = sd / math.sqrt(n), n - 1
        critical = float(stats.t.ppf(1 - alpha / 2, df))
        above = stats.t.sf((mean + margin) / se, df)  # H0: effect <= -margin
        below = stats.t.cdf((mean - margin) / se, df)  # H0: effect >= +margin
        score.update(
            ci_low=mean - critical * se,
            ci_high=mean + critical * se,
            d_z=mean / sd,
            p_difference=float(2 * stats.t.sf(abs(mean) / se, df)),
            p_equivalence=float(max(above, below)),
            mde=float((critical + stats.t.ppf(POWER, df)) * se),
        )
    score["verdict"], score["note"] = verdict(
        mean, score["p_difference"], score["p_signflip"], score["p_equivalence"], alpha
    )
    return score


def holm(p_values: Any) -> np.ndarray:
    """Holm's step-down adjustment (family = the finite p-values); NaN stays NaN.

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
