"""Statistics over seeds and selectors: means with intervals, paired tests, rank correlation.

The one place for each statistic the report uses, each a call to :mod:`scipy.stats` where
scipy has one (values checked by hand in tests/test_stats.py):

- :func:`mean_std` — mean, sample standard deviation and count of the finite values;
- :func:`mean_interval` — the Student-t confidence interval of a mean over seeds
  (``scipy.stats.t.interval``; the validity section's bracket);
- :func:`bootstrap_interval`, :func:`bootstrap_means` — the seeded percentile bootstrap
  (``scipy.stats.bootstrap``, B = 10,000) of a mean, or the bootstrap distribution of several
  groups' means each resampled within itself; :func:`percentile_interval` reads an interval off
  such a distribution (the score tables, aggregate NormDEL, curve areas);
- :func:`sign_flip_test` — the paired permutation (sign-flip) test of a mean paired
  difference (``scipy.stats.permutation_test``, exact up to 16 pairs; every selector against
  ``random`` at the same ratio);
- :func:`paired_gap` — the gap between two selectors on their common seeds, and whether it
  separates them beyond seed noise (the bracket check of the validity section);
- :func:`curve_area` — the normalised area under a score-vs-ratio curve;
- :func:`spearman` — rank correlation (``scipy.stats.spearmanr``) with a permutation p-value
  (``scipy.stats.permutation_test``, exact up to 8 pairs).

Every random draw here comes from a ``numpy.random.default_rng`` with a fixed seed, so the same
values always give the same interval and p-value.

numpy only at import; scipy (a dependency of scikit-learn) is imported inside the functions
that need it, so importing this module stays light.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

#: permutations are enumerated in full up to this many values, sampled above it
EXACT_PERMUTATION_MAX_N = 8
MONTE_CARLO_PERMUTATIONS = 20_000
#: the percentile bootstrap: resamples per interval and the seed of their generator
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
#: the sign-flip test enumerates all 2**n sign patterns up to this many pairs (65,536 × 16
#: numbers), and draws MONTE_CARLO_PERMUTATIONS seeded patterns above it
EXACT_SIGN_FLIP_MAX_N = 16


def _finite(values: Iterable[float]) -> np.ndarray:
    """The finite values as a float array: None and NaN (and infinities) are ignored."""
    return np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count; None and NaN are ignored."""
    array = _finite(values)
    if array.size == 0:
        return math.nan, math.nan, 0
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return float(array.mean()), std, int(array.size)


def mean_interval(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """``(mean, low, high, half_width)``: the Student-t interval of the mean over seeds.

    ``half_width = t_{(1+confidence)/2, n-1} · sem``: the quantile from ``scipy.stats.t``, the
    standard error from ``scipy.stats.sem`` (sample standard deviation / √n) of the finite
    values (None and NaN are ignored, as in :func:`mean_std`). Equal values give a zero-width
    interval (``scipy.stats.t.interval`` would give NaN for a zero scale). One value has a mean
    but no spread to estimate, so its half-width, low and high are NaN; no value gives NaN
    throughout.
    """
    array = _finite(values)
    mean = float(array.mean()) if array.size else math.nan
    if array.size < 2:
        return mean, math.nan, math.nan, math.nan
    from scipy import stats

    half = float(stats.t.ppf(0.5 + confidence / 2, array.size - 1) * stats.sem(array))
    return mean, mean - half, mean + half, half


def _percentile_bootstrap(samples: Sequence[np.ndarray], statistic, confidence: float, resamples: int, seed: int):
    """``scipy.stats.bootstrap`` of ``statistic`` over independently resampled ``samples``
    (each of two or more values), percentile method, ``default_rng(seed)``."""
    from scipy import stats

    return stats.bootstrap(tuple(samples), statistic, n_resamples=resamples, paired=False, vectorized=True,
                           confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))


def _group_means(*samples: np.ndarray, axis: int) -> np.ndarray:
    """Each sample's mean, stacked along the first axis (a vector-valued bootstrap statistic)."""
    return np.stack([sample.mean(axis=axis) for sample in samples])


def bootstrap_means(groups: Sequence[Iterable[float]], *, resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """The bootstrap distribution of each group's mean: a ``(resamples, len(groups))`` array.

    Each group's finite values (None and NaN ignored) are resampled with replacement, within
    the group and independently of the others (a stratified bootstrap: a group is one cell,
    e.g. a selector at one ratio on one dataset, its values the seeds): the
    ``bootstrap_distribution`` of ``scipy.stats.bootstrap`` over the groups with
    ``paired=False`` and each group's mean as the statistic. A group of one value has no spread
    to resample and stays constant (scipy needs two values per sample, so it is left out of the
    call); an empty group is NaN. Callers combine the columns (mean over cells, curve areas) and
    read an interval off with :func:`percentile_interval` (``numpy.percentile``, as scipy's
    percentile method does): one draw then serves both statistics of the aggregate, and the
    one-seed cells, which scipy cannot resample, enter as constants.
    """
    arrays = [_finite(values) for values in groups]
    out = np.empty((resamples, len(arrays)))
    for column, array in enumerate(arrays):
        out[:, column] = array[0] if array.size == 1 else math.nan
    spread = [column for column, array in enumerate(arrays) if array.size >= 2]
    if spread:
        result = _percentile_bootstrap([arrays[c] for c in spread], _group_means, 0.95, resamples, seed)
        out[:, spread] = np.asarray(result.bootstrap_distribution).reshape(len(spread), resamples).T
    return out


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """``(low, high)``: the ``(1 − confidence)/2`` and ``(1 + confidence)/2`` quantiles of a
    bootstrap distribution (numpy's default linear interpolation); NaN when it holds NaN."""
    samples = np.asarray(samples, dtype=float)
    if samples.size == 0 or not np.isfinite(samples).all():
        return math.nan, math.nan
    low, high = np.percentile(samples, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(low), float(high)


def bootstrap_interval(values: Iterable[float], confidence: float = 0.95, *, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """``(low, high)``: the seeded percentile bootstrap interval of the mean of ``values``
    (``scipy.stats.bootstrap``, ``method='percentile'``: with 3–5 seeds the BCa default's
    jackknife acceleration is itself too noisy to correct anything).

    Fewer than two finite values have no spread to resample, so the interval is NaN rather
    than a point.
    """
    array = _finite(values)
    if array.size < 2:
        return math.nan, math.nan
    interval = _percentile_bootstrap([array], np.mean, confidence, resamples, seed).confidence_interval
    return float(interval.low), float(interval.high)


@dataclass(frozen=True)
class SignFlipTest:
    """The paired permutation test of :func:`sign_flip_test`.

    ``mean`` is the mean paired difference, ``p_value`` its two-sided p, ``exact`` whether
    every sign pattern was enumerated, and ``min_p`` the smallest p the test can give with
    ``n`` pairs (``2 / 2**n`` when exact): with fewer than 6 pairs it is above 0.05, so such
    a difference can never be significant at the 5 % level.
    """

    n: int
    mean: float
    p_value: float
    exact: bool
    min_p: float

    def significant(self, significance: float) -> bool:
        """Whether the null hypothesis is rejected at ``significance`` (``p <= significance``)."""
        return bool(self.n > 0 and self.p_value <= significance)

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "p_value": self.p_value, "exact": self.exact, "min_p": self.min_p}


def sign_flip_test(differences: Iterable[float], *, seed: int = BOOTSTRAP_SEED) -> SignFlipTest:
    """Two-sided sign-flip permutation test that the mean paired difference is 0.

    Under the null hypothesis each pair's difference is as likely positive as negative
    (symmetric about 0, no normality assumed), so every pattern of signs is equally likely:
    ``scipy.stats.permutation_test`` with ``permutation_type='samples'`` on the one sample of
    differences. The p-value is the share of sign patterns whose ``|mean|`` is at least the
    observed one (statistic ``|mean|``, divided by its largest value ``mean |d_i|`` and
    rounded to 12 decimals so that patterns equal up to float rounding tie; ``alternative=
    'greater'``: exact enumeration gives the same p as scipy's two-sided rule on the mean,
    since the null distribution is symmetric, and sampling keeps the smallest p at
    1 / (1 + draws) rather than 2 / (1 + draws)). For
    ``n <= 16`` pairs all ``2**n`` patterns are enumerated (the observed one among them, so
    ``p >= 2 / 2**n``); above that, MONTE_CARLO_PERMUTATIONS patterns drawn with
    ``default_rng(seed)`` give ``p = (1 + count) / (1 + draws)``. None and NaN differences are
    ignored; no difference gives NaN, one gives p = 1 (+d and −d are equally extreme).
    """
    d = _finite(differences)
    n = int(d.size)
    if n == 0:
        return SignFlipTest(0, math.nan, math.nan, True, math.nan)
    exact = n <= EXACT_SIGN_FLIP_MAX_N
    min_p = 2.0 / 2 ** n if exact else 1 / (1 + MONTE_CARLO_PERMUTATIONS)
    largest = float(np.abs(d).mean())  # the largest |mean| a sign pattern reaches
    if n == 1 or largest == 0:  # scipy needs two observations; +d and −d (or all zeros) are equally extreme
        return SignFlipTest(n, float(d.mean()), 1.0, exact, min_p)
    from scipy import stats

    def abs_mean(sample: np.ndarray, axis: int) -> np.ndarray:  # on [0, 1], rounded: ties up to float error tie
        return np.round(np.abs(np.mean(sample, axis=axis)) / largest, 12)

    result = stats.permutation_test((d,), abs_mean, permutation_type="samples", vectorized=True,
                                    n_resamples=2 ** n if exact else MONTE_CARLO_PERMUTATIONS,
                                    alternative="greater", rng=np.random.default_rng(seed))
    return SignFlipTest(n, float(d.mean()), float(result.pvalue), exact, min_p)


def curve_area(x: Sequence[float], y: np.ndarray) -> np.ndarray | float:
    """The area under the piecewise-linear curve ``y(x)`` over ``[min x, max x]``, divided by
    that width: the curve's mean height, in ``y``'s units (trapezoidal rule, ``x`` sorted
    here). ``y`` may carry leading axes (bootstrap resamples), its last axis follows ``x``.
    NaN for fewer than two points: one point spans no width.
    """
    x_values = np.asarray(x, dtype=float)
    y_values = np.asarray(y, dtype=float)
    if x_values.size < 2:
        return math.nan if y_values.ndim <= 1 else np.full(y_values.shape[:-1], math.nan)
    order = np.argsort(x_values)
    x_values, y_values = x_values[order], y_values[..., order]
    widths = np.diff(x_values)
    area = ((y_values[..., 1:] + y_values[..., :-1]) / 2 * widths).sum(axis=-1) / (x_values[-1] - x_values[0])
    return float(area) if np.ndim(area) == 0 else area


@dataclass(frozen=True)
class PairedGap:
    """The per-seed gap ``higher − lower`` between two selectors and its t interval.

    ``holds`` is the bracket's test that the first separates from the second beyond seed
    noise: at least two common seeds, every per-seed gap positive and the mean gap larger
    than the half-width of its interval (the interval lies above 0).
    """

    seeds: tuple[Any, ...]
    gaps: tuple[float, ...]
    mean: float
    half_width: float
    low: float
    high: float
    holds: bool

    def to_json(self) -> dict[str, Any]:
        return {"seeds": list(self.seeds), "gaps": list(self.gaps), "mean": self.mean,
                "half_width": self.half_width, "low": self.low, "high": self.high, "holds": self.holds}


def paired_gap(higher: Mapping[Any, float], lower: Mapping[Any, float], confidence: float = 0.95) -> PairedGap:
    """The gap ``higher[s] − lower[s]`` over the seeds ``s`` both dicts have a finite score for.

    ``higher`` is the selector expected to score better; for a lower-is-better metric the
    caller passes negated scores, so a positive gap always means "better".
    """
    seeds = tuple(sorted(s for s in higher.keys() & lower.keys()
                         if higher[s] is not None and lower[s] is not None
                         and math.isfinite(higher[s]) and math.isfinite(lower[s])))
    gaps = tuple(float(higher[s] - lower[s]) for s in seeds)
    mean, low, high, half = mean_interval(gaps, confidence)
    holds = len(gaps) >= 2 and all(g > 0 for g in gaps) and mean > half
    return PairedGap(seeds, gaps, mean, half, low, high, bool(holds))


def spearman(x: Iterable[float], y: Iterable[float], seed: int = 0) -> tuple[float, float]:
    """``(rho, p_value)``: Spearman's rank correlation of paired values and its two-sided p.

    ``rho`` is ``scipy.stats.spearmanr`` (the Pearson correlation of the ranks, ties given
    their average rank). The p-value is that of a permutation test of "no association",
    ``scipy.stats.permutation_test`` with ``permutation_type='pairings'``: the share of
    orderings of ``y``'s ranks whose ``|rho|`` is at least the observed one. For ``n <= 8``
    every one of the ``n!`` orderings is enumerated (the observed ordering among them, so p >=
    2/n! for a perfect correlation); above that, 20,000 orderings drawn with
    ``default_rng(seed)`` give ``p = (1 + count) / (1 + 20,000)``, the same for the same seed.
    The test statistic is ``|rho|`` with ``alternative='greater'`` rather than scipy's two-sided
    rule (twice the smaller one-sided p): with ties in both variables the null distribution is
    not symmetric and the two differ; ``|rho|`` is the usual definition and what the report
    always gave. Both are NaN for fewer than three pairs or when either variable is constant.
    """
    from scipy import stats

    x_values, y_values = np.asarray(list(x), dtype=float), np.asarray(list(y), dtype=float)
    if x_values.shape != y_values.shape:
        raise ValueError(f"spearman needs paired values, got {x_values.size} and {y_values.size}")
    n = x_values.size
    if n < 3 or np.ptp(x_values) == 0 or np.ptp(y_values) == 0:
        return math.nan, math.nan
    rho = float(stats.spearmanr(x_values, y_values).statistic)
    x_ranks, y_ranks = stats.rankdata(x_values), stats.rankdata(y_values)

    def abs_rho(ranks: np.ndarray, axis: int) -> np.ndarray:  # rounded: orderings tied up to float error tie
        return np.round(np.abs(stats.pearsonr(x_ranks, ranks, axis=axis).statistic), 12)

    exact = n <= EXACT_PERMUTATION_MAX_N
    result = stats.permutation_test((y_ranks,), abs_rho, permutation_type="pairings", vectorized=True,
                                    n_resamples=math.factorial(n) if exact else MONTE_CARLO_PERMUTATIONS,
                                    alternative="greater", rng=np.random.default_rng(seed))
    return float(np.clip(rho, -1.0, 1.0)), float(result.pvalue)
