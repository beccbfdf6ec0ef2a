"""delbench.reports.stats against values computed by hand (the arithmetic is in the comments)."""
import math

import numpy as np
import pytest

from delbench.reports.stats import (BOOTSTRAP_RESAMPLES, PairedGap, bootstrap_interval, bootstrap_means, curve_area,
                                    mean_interval, mean_std, paired_gap, percentile_interval, sign_flip_test, spearman)

T_975_2 = 4.302653  # Student t quantile 0.975 with 2 degrees of freedom (tables)
T_975_9 = 2.262157  # ... with 9 degrees of freedom


def test_mean_interval_by_hand():
    # [1, 2, 3]: mean 2, sd sqrt(((-1)² + 0² + 1²) / 2) = 1, half width 4.302653 · 1 / √3 = 2.484138
    mean, low, high, half = mean_interval([1, 2, 3])
    assert mean == 2.0
    assert half == pytest.approx(T_975_2 / math.sqrt(3), abs=1e-6)
    assert half == pytest.approx(2.484138, abs=1e-6)
    assert (low, high) == (pytest.approx(2 - 2.484138, abs=1e-6), pytest.approx(2 + 2.484138, abs=1e-6))


def test_mean_interval_one_value_and_none():
    mean, low, high, half = mean_interval([0.5, float("nan"), None])  # NaN and None are ignored
    assert mean == 0.5 and all(math.isnan(v) for v in (low, high, half))
    assert all(math.isnan(v) for v in mean_interval([]))
    assert mean_std([]) == (pytest.approx(math.nan, nan_ok=True), pytest.approx(math.nan, nan_ok=True), 0)


def test_paired_gap_holds():
    # paired on the common seeds 0, 1, 2 (seed 3 has no partner): gaps 0.10, 0.11, 0.12;
    # mean 0.11, sd 0.01, half width 4.302653 · 0.01 / √3 = 0.024841 < 0.11
    gap = paired_gap({0: 0.70, 1: 0.72, 2: 0.74, 3: 0.99}, {0: 0.60, 1: 0.61, 2: 0.62})
    assert isinstance(gap, PairedGap)
    assert gap.seeds == (0, 1, 2)
    assert gap.gaps == pytest.approx((0.10, 0.11, 0.12))
    assert gap.mean == pytest.approx(0.11)
    assert gap.half_width == pytest.approx(0.024841, abs=1e-6)
    assert (gap.low, gap.high) == (pytest.approx(0.11 - 0.024841, abs=1e-6), pytest.approx(0.11 + 0.024841, abs=1e-6))
    assert gap.holds
    with pytest.raises(AttributeError):
        gap.mean = 0.0  # frozen


def test_paired_gap_fails_on_one_negative_seed():
    # nine seeds with gap 1.0 and one with −0.1: mean 0.89; deviations 0.11 (×9) and −0.99,
    # squares sum 9 · 0.0121 + 0.9801 = 1.089, sd √(1.089 / 9) = 0.347851,
    # half width 2.262157 · 0.347851 / √10 = 0.248838 < 0.89, but one seed is not better
    higher = {seed: 1.0 for seed in range(10)}
    lower = {seed: 0.0 for seed in range(9)} | {9: 1.1}
    gap = paired_gap(higher, lower)
    assert gap.mean == pytest.approx(0.89)
    assert gap.half_width == pytest.approx(T_975_9 * 0.347851 / math.sqrt(10), abs=1e-5)
    assert gap.half_width == pytest.approx(0.248838, abs=1e-5)
    assert gap.mean > gap.half_width and min(gap.gaps) < 0
    assert not gap.holds


def test_paired_gap_fails_on_the_half_width():
    # gaps 0.1, 0.2, 3.0, all positive: mean 1.1; deviations −1, −0.9, 1.9, squares sum 5.42,
    # sd √2.71 = 1.646208, half width 4.302653 · 1.646208 / √3 = 4.089407 > 1.1
    gap = paired_gap({0: 1.1, 1: 1.2, 2: 4.0}, {0: 1.0, 1: 1.0, 2: 1.0})
    assert gap.mean == pytest.approx(1.1)
    assert gap.half_width == pytest.approx(4.089407, abs=1e-5)
    assert min(gap.gaps) > 0 and not gap.holds


def test_paired_gap_needs_two_common_seeds():
    gap = paired_gap({0: 0.9, 1: 0.9}, {1: 0.1, 2: 0.1})  # one common seed: gap 0.8, no spread
    assert gap.seeds == (1,) and gap.mean == pytest.approx(0.8)
    assert math.isnan(gap.half_width) and not gap.holds
    assert gap.to_json()["gaps"] == [pytest.approx(0.8)]


def test_spearman_perfect_monotone_exact():
    # n = 4: of the 4! = 24 orderings of y's ranks only the identity and its reverse reach |rho| = 1,
    # so the two-sided exact p is 2 / 24 = 1/12
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == (pytest.approx(1.0), pytest.approx(1 / 12))
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == (pytest.approx(-1.0), pytest.approx(1 / 12))


def test_spearman_with_ties():
    # x = [1, 2, 2, 3] has average ranks [1, 2.5, 2.5, 4]; y ranks [1, 2, 3, 4]; both mean 2.5.
    # centred: dx = [−1.5, 0, 0, 1.5], dy = [−1.5, −0.5, 0.5, 1.5];
    # Σdx·dy = 2.25 + 2.25 = 4.5, Σdx² = 4.5, Σdy² = 5, rho = 4.5 / √22.5 = √0.9 = 0.948683.
    # Permuting y's ranks: Σdx·dy' = 1.5 · (dy'[3] − dy'[0]) reaches ±4.5 only when positions 0 and 3
    # hold ranks 1 and 4 (2 ways) with either order in the middle (2 ways): p = 4 / 24 = 1/6.
    rho, p_value = spearman([1, 2, 2, 3], [1, 2, 3, 4])
    assert rho == pytest.approx(math.sqrt(0.9))
    assert p_value == pytest.approx(1 / 6)


def test_spearman_undefined():
    assert all(math.isnan(v) for v in spearman([1, 2], [2, 1]))  # n < 3
    assert all(math.isnan(v) for v in spearman([1, 2, 3], [5, 5, 5]))  # constant
    with pytest.raises(ValueError, match="paired"):
        spearman([1, 2, 3], [1, 2])


def test_spearman_monte_carlo_is_seeded():
    # n = 10 > 8: 20,000 sampled orderings, p = (1 + count) / 20,001.
    # A perfect ranking is matched only by the identity or its reverse (2 / 10! ≈ 5.5e-7 per draw):
    # count 0, p = 1 / 20,001
    assert spearman(range(10), range(10)) == (pytest.approx(1.0), pytest.approx(1 / 20_001))
    y = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    rho, p_value = spearman(range(10), y, seed=0)
    assert spearman(range(10), y, seed=0) == (rho, p_value)  # same seed, same p
    assert p_value * 20_001 == pytest.approx(round(p_value * 20_001))  # on the (1 + count) / 20,001 grid
    assert rho == pytest.approx(0.391454, abs=1e-6)  # scipy.stats.spearmanr gives the same rho
    other = spearman(range(10), y, seed=1)[1]
    assert abs(other - p_value) < 0.02  # another seed: the same p up to Monte-Carlo error


# -- bootstrap, sign-flip test, curve area ---------------------------------------------------

def test_bootstrap_of_two_values_by_hand():
    # [0.60, 0.64]: a resample's mean is 0.60 (both draws 0.60, probability 1/4), 0.62 (1/2) or 0.64 (1/4);
    # the 2.5 % quantile lies in the lowest quarter and the 97.5 % one in the highest: exactly [0.60, 0.64]
    assert bootstrap_interval([0.60, 0.64]) == (pytest.approx(0.60), pytest.approx(0.64))
    means = bootstrap_means([[0.60, 0.64]])
    assert means.shape == (BOOTSTRAP_RESAMPLES, 1)
    assert np.mean(np.isclose(means[:, 0], 0.62)) == pytest.approx(0.5, abs=0.02)


def test_bootstrap_percentiles_by_hand():
    # [0, 0, 0, 1]: a resample's mean is k/4 with k ~ Binomial(4, 1/4):
    # P(k=0) = 81/256 = 0.316, P(k≤1) = 189/256 = 0.738, P(k≤2) = 243/256 = 0.949, P(k≤3) = 255/256 = 0.996.
    # The 2.5 % quantile is at k = 0 (0.316 > 0.025); the 97.5 % one at k = 3 (0.949 < 0.975 ≤ 0.996): [0, 0.75]
    assert bootstrap_interval([0, 0, 0, 1]) == (0.0, 0.75)
    means = bootstrap_means([[0, 0, 0, 1]])[:, 0]
    assert np.mean(means == 0) == pytest.approx(81 / 256, abs=0.015)  # 10,000 draws: sd ≈ 0.005
    # 80 %: the 10 % quantile at k = 0 (0.316 > 0.10), the 90 % one at k = 2 (0.738 < 0.90 ≤ 0.949)
    assert bootstrap_interval([0, 0, 0, 1], 0.8) == (0.0, 0.5)
    assert np.array_equal(bootstrap_means([[0, 0, 0, 1]]), bootstrap_means([[0, 0, 0, 1]]))  # seeded


def test_bootstrap_edge_cases_and_strata():
    assert all(math.isnan(v) for v in bootstrap_interval([0.5]))  # one value: no spread, no interval
    assert all(math.isnan(v) for v in bootstrap_interval([None, float("nan")]))
    assert bootstrap_interval([0.3, 0.3, 0.3]) == (pytest.approx(0.3), pytest.approx(0.3))
    means = bootstrap_means([[0.7], [0.0, 1.0], []], resamples=1000)
    assert (means[:, 0] == 0.7).all() and set(np.unique(means[:, 1])) == {0.0, 0.5, 1.0}  # strata resampled apart
    assert np.isnan(means[:, 2]).all()
    assert all(math.isnan(v) for v in percentile_interval(means[:, 2]))


def test_sign_flip_test_by_hand():
    # [1, 2, 3]: of the 2³ = 8 sign patterns only +++ and −−− reach |Σ| = 6: p = 2/8
    test = sign_flip_test([1, 2, 3])
    assert (test.n, test.mean, test.p_value, test.exact, test.min_p) == (3, 2.0, 0.25, True, 0.25)
    # [1, −1, 2, 3], Σ = 5: |±1 ±1 ±2 ±3| ≥ 5 for 7 (all +), 5 (either 1 flipped) and their mirror images: 6/16
    assert sign_flip_test([1, -1, 2, 3]).p_value == pytest.approx(6 / 16)
    # six pairs all in one direction: 2 / 2⁶ = 0.03125 ≤ 0.05, the fewest pairs that can be significant
    six = sign_flip_test([0.01, 0.02, 0.03, 0.01, 0.02, 0.03])
    assert six.p_value == pytest.approx(2 / 64) and six.significant(0.05) and not six.significant(0.01)
    five = sign_flip_test([0.01, 0.02, 0.03, 0.01, 0.02])
    assert five.p_value == five.min_p == pytest.approx(2 / 32) and not five.significant(0.05)
    assert sign_flip_test([0.0, 0.0]).p_value == 1.0  # no difference at all
    assert sign_flip_test([0.4]).p_value == 1.0  # one pair: +0.4 and −0.4 are equally extreme
    empty = sign_flip_test([None, float("nan")])
    assert empty.n == 0 and math.isnan(empty.p_value) and not empty.significant(0.05)


def test_sign_flip_test_samples_above_sixteen_pairs():
    # 20 pairs, all +1: only the all-plus and all-minus patterns (2 / 2²⁰ per draw) reach |Σ| = 20, and none of
    # the 20,000 seeded draws does: p = (1 + 0) / 20,001
    test = sign_flip_test([1.0] * 20)
    assert not test.exact and test.p_value == pytest.approx(1 / 20_001)
    mixed = [0.3, -0.1, 0.2, 0.25, -0.05] * 4
    assert sign_flip_test(mixed) == sign_flip_test(mixed)  # seeded: the same p every time
    assert sign_flip_test(mixed).p_value * 20_001 == pytest.approx(round(sign_flip_test(mixed).p_value * 20_001))


def test_curve_area_by_hand():
    # trapezoids over R = 0.05, 0.2, 1.0: 0.15 · (0.5 + 0.6)/2 + 0.8 · (0.6 + 0.7)/2 = 0.0825 + 0.52 = 0.6025,
    # divided by the width 0.95: 0.634211 (the curve's mean height)
    assert curve_area([0.05, 0.2, 1.0], [0.5, 0.6, 0.7]) == pytest.approx(0.6025 / 0.95)
    assert curve_area([1.0, 0.05, 0.2], [0.7, 0.5, 0.6]) == pytest.approx(0.6025 / 0.95)  # any order
    assert curve_area([0.1, 0.3], np.array([[0.2, 0.4], [1.0, 1.0]])) == pytest.approx([0.3, 1.0])  # per row
    assert math.isnan(curve_area([0.1], [0.5]))  # one ratio spans no width


def test_mean_interval_of_equal_values_has_zero_width():
    # [0.2, 0.2, 0.2]: sd 0, so the interval is the point itself (not NaN: a bracket gap equal on every seed holds)
    assert mean_interval([0.2, 0.2, 0.2]) == (pytest.approx(0.2), pytest.approx(0.2), pytest.approx(0.2), pytest.approx(0.0, abs=1e-12))
    assert paired_gap({0: 0.5, 1: 0.5}, {0: 0.3, 1: 0.3}).holds


def test_statistics_are_scipy_calls(monkeypatch):
    # issue 26, item 4: each statistic is the scipy.stats call a reviewer knows, not hand-written maths
    from scipy import stats

    called = []
    for name in ("bootstrap", "permutation_test", "spearmanr", "sem"):
        original = getattr(stats, name)
        monkeypatch.setattr(stats, name, lambda *a, _name=name, _f=original, **k: called.append(_name) or _f(*a, **k))
    mean_interval([1, 2, 3])
    bootstrap_interval([0.1, 0.2, 0.4])
    bootstrap_means([[0.1, 0.2], [0.3, 0.5, 0.6]])
    sign_flip_test([0.1, 0.2, -0.05])
    spearman([1, 2, 3, 4], [2, 1, 4, 3])
    assert called == ["sem", "bootstrap", "bootstrap", "permutation_test", "spearmanr", "permutation_test"]
