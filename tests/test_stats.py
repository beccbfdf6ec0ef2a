"""delbench.stats against values computed by hand (the arithmetic is in the comments)."""
import math

import pytest

from delbench.metrics import confidence_interval
from delbench.stats import PairedGap, mean_interval, mean_std, paired_gap, spearman

T_975_2 = 4.302653  # Student t quantile 0.975 with 2 degrees of freedom (tables)
T_975_9 = 2.262157  # ... with 9 degrees of freedom


def test_mean_interval_by_hand():
    # [1, 2, 3]: mean 2, sd sqrt(((-1)² + 0² + 1²) / 2) = 1, half width 4.302653 · 1 / √3 = 2.484138
    mean, low, high, half = mean_interval([1, 2, 3])
    assert mean == 2.0
    assert half == pytest.approx(T_975_2 / math.sqrt(3), abs=1e-6)
    assert half == pytest.approx(2.484138, abs=1e-6)
    assert (low, high) == (pytest.approx(2 - 2.484138, abs=1e-6), pytest.approx(2 + 2.484138, abs=1e-6))
    assert confidence_interval([1, 2, 3]) == (low, high)  # the metrics module's view of the same interval


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
