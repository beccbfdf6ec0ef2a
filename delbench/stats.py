"""Statistics over seeds and selectors: means with t intervals, paired gaps, rank correlation.

The one place for each statistic the report uses (hand-checked in tests/test_stats.py):

- :func:`mean_std` — mean, sample standard deviation and count of the finite values;
- :func:`mean_interval` — the Student-t confidence interval of a mean over seeds;
- :func:`paired_gap` — the gap between two selectors on their common seeds, and whether it
  separates them beyond seed noise (the bracket check of the validity section);
- :func:`spearman` — rank correlation with a permutation p-value.

numpy only at import; scipy (a dependency of scikit-learn) is imported inside the functions
that need it, so importing this module stays light.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import permutations
from typing import Any, Iterable, Mapping

import numpy as np

#: permutations are enumerated in full up to this many values, sampled above it
EXACT_PERMUTATION_MAX_N = 8
MONTE_CARLO_PERMUTATIONS = 20_000


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count; None and NaN are ignored."""
    array = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if array.size == 0:
        return math.nan, math.nan, 0
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return float(array.mean()), std, int(array.size)


def mean_interval(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """``(mean, low, high, half_width)``: the Student-t interval of the mean over seeds.

    ``half_width = t_{(1+confidence)/2, n-1} · sd / √n`` with the sample standard deviation of
    the finite values (None and NaN are ignored, as in :func:`mean_std`). One value has a mean
    but no spread to estimate, so its half-width, low and high are NaN; no value gives NaN
    throughout.
    """
    mean, std, n = mean_std(values)
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    from scipy import stats

    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return mean, mean - half, mean + half, half


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


def _rank_correlations(x_ranks: np.ndarray, y_ranks: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``x_ranks`` with each row of ``y_ranks`` (rows are permutations
    of one rank vector, so their mean and spread are those of the first row)."""
    dx = x_ranks - x_ranks.mean()
    dy = y_ranks - y_ranks[0].mean()
    return dy @ dx / math.sqrt(float(dx @ dx) * float(dy[0] @ dy[0]))


def spearman(x: Iterable[float], y: Iterable[float], seed: int = 0) -> tuple[float, float]:
    """``(rho, p_value)``: Spearman's rank correlation of paired values and its two-sided p.

    ``rho`` is the Pearson correlation of the ranks, ties given their average rank. The
    p-value is that of a permutation test of "no association": the share of orderings of
    ``y``'s ranks whose ``|rho|`` is at least the observed one. For ``n <= 8`` every one of
    the ``n!`` orderings is enumerated (the observed ordering among them, so p >= 2/n! for a
    perfect correlation); above that, 20,000 orderings drawn with ``numpy.random.default_rng
    (seed)`` give ``p = (1 + count) / (1 + 20,000)``, the same for the same seed. Both are
    NaN for fewer than three pairs or when either variable is constant.
    """
    from scipy.stats import rankdata

    x_values, y_values = np.asarray(list(x), dtype=float), np.asarray(list(y), dtype=float)
    if x_values.shape != y_values.shape:
        raise ValueError(f"spearman needs paired values, got {x_values.size} and {y_values.size}")
    n = x_values.size
    if n < 3 or np.ptp(x_values) == 0 or np.ptp(y_values) == 0:
        return math.nan, math.nan
    x_ranks, y_ranks = rankdata(x_values), rankdata(y_values)
    rho = float(_rank_correlations(x_ranks, y_ranks[None, :])[0])
    threshold = abs(rho) - 1e-12  # orderings that tie the observed |rho| count as extreme
    if n <= EXACT_PERMUTATION_MAX_N:
        orderings = np.array(list(permutations(y_ranks)))
        p_value = float(np.mean(np.abs(_rank_correlations(x_ranks, orderings)) >= threshold))
    else:
        rng = np.random.default_rng(seed)
        orderings = rng.permuted(np.tile(y_ranks, (MONTE_CARLO_PERMUTATIONS, 1)), axis=1)
        count = int(np.sum(np.abs(_rank_correlations(x_ranks, orderings)) >= threshold))
        p_value = (1 + count) / (1 + MONTE_CARLO_PERMUTATIONS)
    return float(np.clip(rho, -1.0, 1.0)), p_value
