"""Paired statistics for comparing results: bootstrap intervals, exact and t tests, Holm, power.

Comparisons of inits (or adaptations, models) in gaia-bench are paired by construction: both
sides are scored on the same test items, with the same seeds drawing the same training subsets.
Pairing removes the item-to-item and subset-to-subset variation both sides share, so every test
here works on paired differences, never on two independent samples (the mistake that
lm-evaluation-harness#3831 describes).

Item-level uncertainty comes from a bootstrap over test items: :func:`bootstrap_counts` draws the
resamples once, as multinomial counts per item, and the *same* counts are applied to both sides
(that is what makes the bootstrap paired) and to every seed. Seed-level uncertainty (which
training subset was drawn, how the head was initialized) comes from resampling seeds as well
(:func:`paired_bootstrap` with several seeds) or from the paired t-test across seeds
(:func:`paired_t`).

All functions are pure: the same inputs and seed give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats

from gaia_bench.predictions import resample_counts

ArrayLike = npt.ArrayLike


class Interval(NamedTuple):
    low: float
    high: float


class PairedDifference(NamedTuple):
    """A - B with its bootstrap percentile interval and two-sided bootstrap p-value."""

    estimate: float
    low: float
    high: float
    p_value: float
    resamples: int


class McNemar(NamedTuple):
    """Discordant pairs and the exact two-sided p-value.

    ``b01``: items A got wrong and B right; ``b10``: items A got right and B wrong.
    """

    b01: int
    b10: int
    p_value: float


class PairedT(NamedTuple):
    """Mean of A - B over seeds, the t statistic, its two-sided p-value, the number of pairs and the
    t interval of the mean difference."""

    mean_diff: float
    t: float
    p_value: float
    n: int
    low: float = math.nan
    high: float = math.nan


class KendallTau(NamedTuple):
    """Kendall's tau-b of two rankings with its bootstrap percentile interval."""

    tau: float
    low: float
    high: float
    resamples: int


def bootstrap_counts(n_items: int, resamples: int = 1000, seed: int = 0) -> npt.NDArray[np.int64]:
    """``resamples`` × ``n_items`` multinomial counts: how often each test item is drawn in each resample.

    Counts rather than index lists, so that any metric that is a (weighted) sum over items, such as
    top-1, per-class accuracy or summed confusion counts, is evaluated on a resample without
    copying predictions; and one array, so both sides of a comparison see the same resamples.
    """
    return np.concatenate(list(bootstrap_count_chunks(n_items, resamples, seed)))


def bootstrap_count_chunks(n_items: int, resamples: int = 1000, seed: int = 0,
                           max_cells: int = 20_000_000) -> Iterator[npt.NDArray[np.int64]]:
    """The rows of :func:`bootstrap_counts`, in chunks of at most ``max_cells`` counts (at least one row).

    A large test set (ImageNet's 50,000 items × 1,000 resamples) would otherwise need 400 MB at once;
    the chunks depend only on ``n_items``, so their concatenation is the same for every caller.
    """
    if n_items < 1:
        raise ValueError(f"cannot resample {n_items} items")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples}")
    # the core's draws: a record's interval and a comparison see the same resamples of a test split
    yield from resample_counts(n_items, resamples, seed, max_cells)


def percentile_interval(values: ArrayLike, level: float = 0.95) -> Interval:
    """The central ``level`` percentile interval of bootstrap values (linear interpolation).

    The percentile interval needs no assumption about the shape of the sampling distribution,
    which for accuracies near 0 or 100 is skewed.
    """
    _check_level(level)
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError("no values to take an interval of")
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(arr, [tail, 1.0 - tail])
    return Interval(float(low), float(high))


def bootstrap_p_value(differences: ArrayLike) -> float:
    """Two-sided p-value of "no difference" from bootstrap differences.

    ``p = min(1, 2 × min(share of differences ≤ 0, share ≥ 0))``, and never below ``1 / (B + 1)``:
    B resamples cannot resolve a smaller p-value. It is the interval-inversion p-value, so
    ``p < 1 - level`` exactly when the percentile interval at ``level`` lies on one side of 0 (up to
    interpolation between neighbouring resamples); identical sides give p = 1.
    """
    d = np.asarray(differences, dtype=float).ravel()
    if d.size == 0:
        raise ValueError("no differences to test")
    share = min(np.mean(d <= 0), np.mean(d >= 0))
    return float(min(1.0, max(2.0 * share, 1.0 / (d.size + 1))))


def paired_bootstrap(a: ArrayLike, b: ArrayLike, seed: int = 0, level: float = 0.95,
                     observed: float | None = None) -> PairedDifference:
    """A - B with a paired (and, over several seeds, hierarchical) bootstrap interval and p-value.

    ``a[s, r]`` is side A's metric for seed ``s`` on item resample ``r``, ``b[s, r]`` side B's on
    the *same* item resample. With one seed the bootstrap differences are ``a[0] - b[0]``. With
    S > 1 seeds each resample ``r`` also draws S seeds with replacement and takes the mean of
    ``a - b`` over the drawn seeds at item resample ``r`` (:func:`seed_item_means`): a two-level
    bootstrap, so the interval carries both the test-item and the seed-to-seed variation.

    ``observed``, the difference on the full test set (mean over seeds), is the reported estimate;
    without it the estimate is the mean of the bootstrap differences. See :func:`bootstrap_p_value`
    for the p-value.
    """
    a_arr, b_arr = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if a_arr.shape != b_arr.shape or a_arr.ndim != 2:
        raise ValueError(f"both sides need the same seeds × resamples shape, got {a_arr.shape} and {b_arr.shape}")
    diffs = seed_item_means(a_arr - b_arr, seed)
    low, high = percentile_interval(diffs, level)
    estimate = float(np.mean(diffs)) if observed is None else float(observed)
    return PairedDifference(estimate, low, high, bootstrap_p_value(diffs), diffs.size)


def seed_item_means(per_seed: ArrayLike, seed: int = 0) -> npt.NDArray[np.float64]:
    """The two-level bootstrap of a mean over seeds: ``per_seed[s, r]`` is seed s's value on item
    resample r; each resample r draws the S seeds with replacement (from ``default_rng([seed, 1])``)
    and averages their values at r. One seed: its row as it is. (``default_rng([seed, 1])`` is a
    stream apart from :func:`bootstrap_counts`' for the same seed.)

    The seed draws depend only on S, R and ``seed``, so two cells with the same seeds in the same
    order are drawn alike: differences and ratios of their draws stay paired. A value that is the
    same on every item resample (a record without stored predictions) makes this the bootstrap
    over seeds alone.
    """
    values = np.atleast_2d(np.asarray(per_seed, dtype=float))
    if values.ndim != 2:
        raise ValueError(f"need seeds × resamples values, got shape {values.shape}")
    n_seeds, n_resamples = values.shape
    if n_seeds == 1:
        return values[0].copy()
    drawn = np.random.default_rng([seed, 1]).integers(0, n_seeds, size=(n_resamples, n_seeds))
    return values[drawn, np.arange(n_resamples)[:, None]].mean(axis=1)


def mean_t_interval(values: ArrayLike, level: float = 0.95) -> Interval:
    """Student's t interval of a mean: ``mean ± t(level, n-1) · sd / sqrt(n)`` (NaN below 2 values)."""
    _check_level(level)
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size < 2:
        return Interval(math.nan, math.nan)
    mean = float(np.mean(arr))
    half = float(stats.t.ppf(0.5 + level / 2, arr.size - 1)) * float(np.std(arr, ddof=1)) / math.sqrt(arr.size)
    return Interval(mean - half, mean + half)


def median_interval(values: ArrayLike, level: float = 0.95) -> Interval:
    """Distribution-free ``level`` interval of the median from order statistics: ``[x_(j), x_(n-j+1)]``
    with the largest j for which a Binomial(n, 1/2) count falls in [j, n - j] with probability at
    least ``level`` (no assumption on the shape of, e.g., a latency distribution's long right tail).
    Too few values for that level (fewer than 6 at 95%): their whole range."""
    _check_level(level)
    arr = np.sort(np.asarray(values, dtype=float).ravel())
    if arr.size == 0:
        raise ValueError("no values to take the median's interval of")
    j = int(stats.binom.ppf((1.0 - level) / 2, arr.size, 0.5))  # P(count < j) < (1 - level) / 2
    if j < 1:
        return Interval(float(arr[0]), float(arr[-1]))
    return Interval(float(arr[j - 1]), float(arr[arr.size - j]))


def mcnemar_exact(a_correct: ArrayLike, b_correct: ArrayLike) -> McNemar:
    """McNemar's exact test: a two-sided binomial test (p = 1/2) on the discordant pairs.

    Only items where exactly one side is right carry information about which side is better;
    under "equally good" each of them is A's with probability 1/2. The distribution is symmetric,
    so the two-sided p-value is ``min(1, 2 × P(X ≤ min(b01, b10)))``, X ~ Binomial(b01 + b10, 1/2);
    no discordant pair gives p = 1.
    """
    a_ok, b_ok = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if a_ok.shape != b_ok.shape or a_ok.ndim != 1:
        raise ValueError(f"both sides need one flag per test item, got shapes {a_ok.shape} and {b_ok.shape}")
    b01 = int(np.sum(~a_ok & b_ok))
    b10 = int(np.sum(a_ok & ~b_ok))
    n = b01 + b10
    if n == 0:
        return McNemar(0, 0, 1.0)
    return McNemar(b01, b10, float(min(1.0, 2.0 * stats.binom.cdf(min(b01, b10), n, 0.5))))


def paired_t(a_per_seed: ArrayLike, b_per_seed: ArrayLike, level: float = 0.95) -> PairedT:
    """Student's paired t-test across seeds (two-sided), on the per-seed differences A - B, with the
    ``level`` t interval of the mean difference.

    Degenerate cases, where the t statistic does not exist:
    fewer than 2 seeds gives ``t = p = NaN`` (no seed-to-seed variation observed); differences that
    are all 0 give ``t = 0, p = 1`` and the interval [0, 0] (the sides agree on every seed);
    differences that are equal but not 0 (spread within 1e-9 relative, e.g. a deterministic cell
    where the seed changes nothing) give ``t = p = NaN``: there is no variation to compare the
    difference with, so a seed-level test says nothing and the item-level tests have to decide.
    """
    _check_level(level)
    a_arr, b_arr = np.asarray(a_per_seed, dtype=float).ravel(), np.asarray(b_per_seed, dtype=float).ravel()
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"both sides need one value per seed, got {a_arr.size} and {b_arr.size}")
    d = a_arr - b_arr
    n = d.size
    mean = float(np.mean(d)) if n else math.nan
    if n < 2:
        return PairedT(mean, math.nan, math.nan, n)
    if np.all(d == 0):
        return PairedT(0.0, 0.0, 1.0, n, 0.0, 0.0)
    if np.ptp(d) <= 1e-9 * max(1.0, float(np.max(np.abs(d)))):
        return PairedT(mean, math.nan, math.nan, n)
    se = float(np.std(d, ddof=1)) / math.sqrt(n)
    t = mean / se
    low, high = mean_t_interval(d, level)
    return PairedT(mean, t, float(2.0 * stats.t.sf(abs(t), n - 1)), n, low, high)


def holm(p_values: Sequence[float] | ArrayLike) -> npt.NDArray[np.float64]:
    """Holm's step-down adjustment, in the input order: controls the family-wise error over datasets.

    The k-th smallest of m p-values is multiplied by ``m - k + 1``, made non-decreasing along the
    sorted order and capped at 1. Holm is valid under any dependence between the tests (the datasets
    share a backbone) and uniformly more powerful than Bonferroni. NaN p-values stay NaN and do not
    count in m.
    """
    p = np.asarray(p_values, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def paired_t_power(n: int | ArrayLike, sd: float, delta: float, alpha: float = 0.05) -> npt.NDArray[np.float64]:
    """Power of the two-sided paired t-test with ``n`` pairs to detect a true mean difference ``delta``.

    The t statistic then follows a noncentral t with ``n - 1`` degrees of freedom and noncentrality
    ``delta / (sd / sqrt(n))``; power is the chance it falls beyond either critical value.
    """
    n_arr = np.asarray(n, dtype=float)
    df = n_arr - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = abs(delta) / sd * np.sqrt(n_arr)
    return stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)


def seeds_for_power(sd_of_paired_differences: float, delta: float, alpha: float = 0.05, power: float = 0.8,
                    max_seeds: int = 1000) -> int | None:
    """The fewest seeds (at least 2) with which a paired t-test detects ``delta`` with ``power``.

    ``sd_of_paired_differences`` is the seed-to-seed standard deviation of A - B, as observed;
    a zero sd needs the minimum, 2 seeds. Returns None when even ``max_seeds`` seeds do not reach
    the power: report that as "more than max_seeds".
    """
    if not delta > 0:
        raise ValueError(f"the difference to detect must be positive, not {delta}")
    if not sd_of_paired_differences >= 0 or math.isinf(sd_of_paired_differences):
        raise ValueError(f"the standard deviation must be finite and non-negative, not {sd_of_paired_differences}")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must lie in (0, 1), not {alpha} and {power}")
    if sd_of_paired_differences == 0:
        return 2
    ns = np.arange(2, max_seeds + 1)
    reached = np.flatnonzero(paired_t_power(ns, sd_of_paired_differences, delta, alpha) >= power)
    return int(ns[reached[0]]) if reached.size else None


def kendall_tau_with_ci(x: ArrayLike, y: ArrayLike, x_resampled: ArrayLike, y_resampled: ArrayLike,
                        level: float = 0.95) -> KendallTau:
    """Kendall's tau-b between two scorings of the same entries (e.g. inits at 1% and at 100%), with a CI.

    ``x[i]``, ``y[i]``: entry i's score under each condition; ``x_resampled[r, i]``,
    ``y_resampled[r, i]``: the same scores on bootstrap resample r (the same resample for every
    entry and both conditions, so the interval keeps their pairing). Resamples where a ranking is
    all ties (tau undefined) are left out; ``resamples`` says how many remain.
    """
    xs, ys = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    xr, yr = np.asarray(x_resampled, dtype=float), np.asarray(y_resampled, dtype=float)
    if xs.shape != ys.shape or xs.size < 2:
        raise ValueError(f"need the same two or more entries on both sides, got {xs.size} and {ys.size}")
    if xr.shape != yr.shape or xr.ndim != 2 or xr.shape[1] != xs.size:
        raise ValueError(f"resampled scores must be resamples × {xs.size}, got {xr.shape} and {yr.shape}")
    tau = float(stats.kendalltau(xs, ys).statistic)
    taus = np.concatenate([tau_b_rows(xr[i:i + 256], yr[i:i + 256]) for i in range(0, len(xr), 256)] or [np.empty(0)])
    taus = taus[~np.isnan(taus)]
    if taus.size == 0:
        return KendallTau(tau, math.nan, math.nan, 0)
    low, high = percentile_interval(taus, level)
    return KendallTau(tau, low, high, int(taus.size))


def tau_b_rows(x: ArrayLike, y: ArrayLike) -> npt.NDArray[np.float64]:
    """Kendall's tau-b of each row pair ``x[r]``, ``y[r]`` at once (scipy's ``kendalltau`` per row,
    without its per-call overhead: a thousand resamples in milliseconds instead of seconds).

    ``tau_b = Σ sign(x_j - x_i) · sign(y_j - y_i) / sqrt((P - T_x) (P - T_y))`` over the P pairs
    i < j, where T_x and T_y count the pairs tied in x and in y; NaN when a row is all ties.
    """
    xa, ya = np.atleast_2d(np.asarray(x, dtype=float)), np.atleast_2d(np.asarray(y, dtype=float))
    i, j = np.triu_indices(xa.shape[1], k=1)
    dx, dy = np.sign(xa[:, j] - xa[:, i]), np.sign(ya[:, j] - ya[:, i])
    pairs = i.size
    denominator = np.sqrt((pairs - np.sum(dx == 0, axis=1)) * (pairs - np.sum(dy == 0, axis=1)).astype(float))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, np.sum(dx * dy, axis=1) / denominator, np.nan)


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"the interval level must lie in (0, 1), e.g. 0.95, not {level}")
