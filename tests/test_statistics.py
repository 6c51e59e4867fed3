"""Paired statistics against independent implementations: scipy's exact binomial test and paired
t-test, bootstrap distributions enumerated by hand on tiny cases, Holm on Wikipedia's example,
power against G*Power's published values and a simulation; a side compared with itself differs by
nothing."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from gaia_bench.plugins.reporters.lib.statistics import (
    bootstrap_count_chunks,
    bootstrap_counts,
    bootstrap_p_value,
    holm,
    kendall_tau_with_ci,
    mcnemar_exact,
    paired_bootstrap,
    paired_t,
    paired_t_power,
    percentile_interval,
    seeds_for_power,
    tau_b_rows,
)


def resampled_accuracy(correct: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Top-1 on each resample: the count-weighted share of correct items."""
    return counts @ correct.astype(float) / correct.size


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_counts_are_seeded_multinomial_resamples():
    counts = bootstrap_counts(7, resamples=50, seed=3)
    assert counts.shape == (50, 7) and counts.dtype.kind == "i"
    assert (counts.sum(axis=1) == 7).all() and (counts >= 0).all()
    assert np.array_equal(counts, bootstrap_counts(7, resamples=50, seed=3))
    assert not np.array_equal(counts, bootstrap_counts(7, resamples=50, seed=4))
    with pytest.raises(ValueError):
        bootstrap_counts(0)
    chunks = list(bootstrap_count_chunks(7, resamples=50, seed=3, max_cells=7 * 8))
    assert [len(c) for c in chunks] == [8] * 6 + [2]
    assert np.array_equal(np.concatenate(chunks), counts)


def test_bootstrap_counts_draw_every_index_triple_equally_often():
    """3 items: each of the 27 ordered draws has probability 1/27, so a count vector's probability is
    its number of orderings / 27, e.g. (1, 1, 1) has 6 orderings."""
    counts = bootstrap_counts(3, resamples=54_000, seed=0)
    expected: dict[tuple, float] = {}
    for draw in itertools.product(range(3), repeat=3):
        key = tuple(np.bincount(draw, minlength=3))
        expected[key] = expected.get(key, 0.0) + 1 / 27
    rows, freq = np.unique(counts, axis=0, return_counts=True)
    observed = {tuple(r): f / counts.shape[0] for r, f in zip(rows, freq)}
    assert observed.keys() == expected.keys()
    for key, p in expected.items():
        assert observed[key] == pytest.approx(p, abs=0.006)


def test_paired_bootstrap_on_fixed_counts_by_hand():
    """3 items, A right on items 0 and 1, B on item 0; four fixed resamples.
    A: [1, 1, 2/3, 1/3], B: [1, 0, 1/3, 0], A - B: [0, 1, 1/3, 1/3]."""
    counts = np.array([[3, 0, 0], [0, 3, 0], [1, 1, 1], [0, 1, 2]])
    a = resampled_accuracy(np.array([1, 1, 0]), counts)
    b = resampled_accuracy(np.array([1, 0, 0]), counts)
    result = paired_bootstrap(a[None], b[None], level=0.5)
    # share <= 0 is 1/4, share >= 0 is 1: p = 2 x 1/4
    assert result.p_value == pytest.approx(0.5)
    # quantiles 0.25 and 0.75 of [0, 1/3, 1/3, 1] at positions 0.75 and 2.25 (linear interpolation)
    assert result.low == pytest.approx(0.75 * (1 / 3))
    assert result.high == pytest.approx(1 / 3 + 0.25 * (2 / 3))
    assert result.estimate == pytest.approx((0 + 1 + 1 / 3 + 1 / 3) / 4)
    assert paired_bootstrap(a[None], b[None], observed=1 / 3).estimate == 1 / 3
    assert result.resamples == 4


def test_paired_bootstrap_matches_the_enumerated_bootstrap_distribution():
    """A - B per item is [0, 1, 0]: the resampled difference is (draws of item 1) / 3, and
    P(difference <= 0) = P(item 1 never drawn) = (2/3)^3 = 8/27, so p = 16/27."""
    counts = bootstrap_counts(3, resamples=40_000, seed=1)
    a = resampled_accuracy(np.array([1, 1, 0]), counts)
    b = resampled_accuracy(np.array([1, 0, 0]), counts)
    result = paired_bootstrap(a[None], b[None])
    assert result.p_value == pytest.approx(16 / 27, abs=0.01)
    assert np.mean(a - b) == pytest.approx(1 / 3, abs=0.005)  # the mean of Binomial(3, 1/3) / 3
    # P(0) = 8/27 > 2.5% and P(1) = P(item 1 drawn three times) = 1/27 > 2.5%: the 95% interval is [0, 1]
    assert (result.low, result.high) == (0.0, 1.0)


def test_hierarchical_bootstrap_resamples_seeds():
    """No item variation, seed differences 0 and 2: the mean of two seeds drawn with replacement is
    0, 1 or 2 with probabilities 1/4, 1/2, 1/4."""
    n = 40_000
    a = np.vstack([np.zeros(n), np.full(n, 2.0)])
    b = np.zeros((2, n))
    diffs_low_high = paired_bootstrap(a, b, seed=5, level=0.9)
    assert (diffs_low_high.low, diffs_low_high.high) == (0.0, 2.0)
    assert diffs_low_high.p_value == pytest.approx(0.5, abs=0.015)  # 2 x P(mean <= 0) = 2 x 1/4
    assert paired_bootstrap(a, b, seed=5) == paired_bootstrap(a, b, seed=5)
    # seeds that agree: the same as one seed
    one = np.random.default_rng(0).normal(size=(1, 500))
    assert paired_bootstrap(np.vstack([one, one]), np.zeros((2, 500)))[1:] == paired_bootstrap(one, np.zeros((1, 500)))[1:]


def test_a_side_compared_with_itself_differs_by_nothing():
    counts = bootstrap_counts(200, resamples=300, seed=0)
    correct = np.random.default_rng(2).random((3, 200)) < 0.7
    per_seed = np.vstack([resampled_accuracy(c, counts) for c in correct])
    same = paired_bootstrap(per_seed, per_seed)
    assert (same.estimate, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert mcnemar_exact(correct[0], correct[0]) == (0, 0, 1.0)
    assert paired_t([0.6, 0.7, 0.65], [0.6, 0.7, 0.65]) == (0.0, 0.0, 1.0, 3, 0.0, 0.0)


def test_bootstrap_p_value_and_percentile_interval():
    assert bootstrap_p_value(np.ones(99)) == 1 / 100  # all on one side: the floor 1/(B+1)
    assert bootstrap_p_value(np.r_[-np.ones(10), np.ones(90)]) == pytest.approx(0.2)
    assert percentile_interval(np.arange(101), 0.9) == (pytest.approx(5.0), pytest.approx(95.0))
    with pytest.raises(ValueError):
        percentile_interval([1.0, 2.0], level=95)


# ---------------------------------------------------------------- McNemar, t-test


@pytest.mark.parametrize("n_items,p_a,p_b,seed", [(30, 0.6, 0.6, 0), (101, 0.8, 0.6, 1), (500, 0.7, 0.72, 2),
                                                   (12, 0.5, 0.5, 3), (1000, 0.9, 0.85, 4)])
def test_mcnemar_equals_scipy_binomtest_on_the_discordant_pairs(n_items, p_a, p_b, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.random(n_items) < p_a, rng.random(n_items) < p_b
    result = mcnemar_exact(a, b)
    assert result.b01 == int(np.sum(~a & b)) and result.b10 == int(np.sum(a & ~b))
    reference = stats.binomtest(result.b10, result.b01 + result.b10, 0.5, alternative="two-sided").pvalue
    assert result.p_value == pytest.approx(reference, rel=1e-9)


def test_mcnemar_balanced_discordance_gives_p_one():
    a = np.array([1, 0, 1, 0, 1], dtype=bool)
    b = np.array([0, 1, 1, 0, 1], dtype=bool)
    assert mcnemar_exact(a, b) == (1, 1, 1.0)
    assert mcnemar_exact(np.ones(4, bool), np.zeros(4, bool)).p_value == pytest.approx(stats.binomtest(4, 4).pvalue)


@pytest.mark.parametrize("n,seed", [(2, 0), (3, 1), (5, 2), (10, 3)])
def test_paired_t_equals_scipy_ttest_rel(n, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(70, 5, n)
    b = a - rng.normal(1, 2, n)
    result = paired_t(a, b)
    reference = stats.ttest_rel(a, b)
    assert result.t == pytest.approx(reference.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert result.mean_diff == pytest.approx(np.mean(a - b)) and result.n == n
    interval = reference.confidence_interval(0.9)
    assert paired_t(a, b, level=0.9)[4:] == (pytest.approx(interval.low), pytest.approx(interval.high))


def test_paired_t_degenerate_cases():
    one = paired_t([70.0], [69.0])
    assert one.mean_diff == 1.0 and math.isnan(one.t) and math.isnan(one.p_value)
    constant = paired_t([70.1, 71.1, 60.1], [70.0, 71.0, 60.0])  # every seed the same 0.1 (up to rounding)
    assert constant.mean_diff == pytest.approx(0.1) and math.isnan(constant.p_value)
    with pytest.raises(ValueError):
        paired_t([1.0, 2.0], [1.0])


# ---------------------------------------------------------------- Holm


def test_holm_on_wikipedias_example():
    """Wikipedia, Holm-Bonferroni method: p = 0.01, 0.04, 0.03, 0.005 at alpha 0.05 rejects H1 and
    H4 only. Adjusted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, max(0.04 x 1, 0.06)."""
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert list(adjusted < 0.05) == [True, False, False, True]


def test_holm_caps_at_one_keeps_nan_and_order():
    adjusted = holm([0.5, float("nan"), 0.2, 0.9])
    assert math.isnan(adjusted[1])
    assert adjusted[[0, 2, 3]] == pytest.approx([1.0, 0.6, 1.0])  # m = 3: 0.2 x 3, then 0.5 x 2 capped
    assert holm([]).size == 0 and holm([0.04]) == pytest.approx([0.04])


# ---------------------------------------------------------------- power


@pytest.mark.parametrize("effect,n,achieved", [(0.5, 34, 0.8077775), (0.8, 15, 0.8213105), (1.0, 10, 0.8030969)])
def test_seeds_for_power_matches_gpower(effect, n, achieved):
    """G*Power 3, t tests, means: difference from constant (matched pairs), two tails, alpha 0.05,
    power 0.8: total sample size and actual power for Cohen's d = 0.5, 0.8, 1.0."""
    assert seeds_for_power(2.0, 2.0 * effect) == n
    assert paired_t_power(n, 2.0, 2.0 * effect) == pytest.approx(achieved, abs=1e-6)
    assert paired_t_power(n - 1, 2.0, 2.0 * effect) < 0.8


def test_power_against_a_simulation_of_paired_t_tests():
    rng = np.random.default_rng(0)
    n, sd, delta, reps = 8, 1.5, 1.2, 40_000
    d = rng.normal(delta, sd, size=(reps, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    simulated = np.mean(2 * stats.t.sf(np.abs(t), n - 1) < 0.05)
    assert float(paired_t_power(n, sd, delta)) == pytest.approx(simulated, abs=0.01)


def test_seeds_for_power_edges():
    assert seeds_for_power(0.0, 0.5) == 2
    assert seeds_for_power(10.0, 0.01, max_seeds=1000) is None
    assert seeds_for_power(1.0, 0.5, power=0.9) > seeds_for_power(1.0, 0.5, power=0.8)
    for bad in ({"sd_of_paired_differences": 1.0, "delta": 0.0}, {"sd_of_paired_differences": float("nan"), "delta": 1.0}):
        with pytest.raises(ValueError):
            seeds_for_power(**bad)


# ---------------------------------------------------------------- Kendall tau


def test_kendall_tau_by_hand_with_resampled_interval():
    """Four inits: one swapped pair of six gives (5 - 1) / 6 = 2/3. Resamples: identical rankings
    (tau 1), the reverse (tau -1), the original (2/3), and one with a constant ranking (left out)."""
    x, y = [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 4.0, 3.0]
    xr = np.array([x, x, x, [5.0, 5.0, 5.0, 5.0]])
    yr = np.array([x, x[::-1], y, y])
    result = kendall_tau_with_ci(x, y, xr, yr, level=0.5)
    assert result.tau == pytest.approx(2 / 3)
    assert result.tau == pytest.approx(stats.kendalltau(x, y).statistic)
    assert result.resamples == 3
    # taus [1, -1, 2/3] sorted [-1, 2/3, 1]: quantiles 0.25 and 0.75 at positions 0.5 and 1.5
    assert (result.low, result.high) == (pytest.approx((-1 + 2 / 3) / 2), pytest.approx((2 / 3 + 1) / 2))
    with pytest.raises(ValueError):
        kendall_tau_with_ci(x, y, xr[:, :3], yr[:, :3])


def test_tau_b_of_many_resamples_at_once_equals_scipy_with_ties():
    rng = np.random.default_rng(5)
    x, y = rng.integers(0, 4, (300, 6)).astype(float), rng.integers(0, 4, (300, 6)).astype(float)
    x[0], y[1] = 2.0, 1.0  # all ties: undefined
    mine = tau_b_rows(x, y)
    theirs = np.array([stats.kendalltau(a, b).statistic for a, b in zip(x, y)])
    assert np.array_equal(np.isnan(mine), np.isnan(theirs)) and np.isnan(mine[:2]).all()
    assert np.allclose(mine[~np.isnan(mine)], theirs[~np.isnan(theirs)], rtol=0, atol=1e-12)
