"""How numbers read in every report, summary table and leaderboard: percentages with their
spread and interval, p-values, the one sentence on NormDEL's α and the significance level,
and the settings every section states (the baseline selector, the default confidence)."""
from __future__ import annotations

import math
from typing import Any, Iterable

from delbench.protocol import DEFAULT_SIGNIFICANCE
from delbench.reports.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED

#: the label of the baseline every selector is tested against
BASELINE_SELECTOR = "random"


def pct_text(mean: float, std: float, n: int, interval: Iterable[float | None] | None = None) -> str:
    """``mean`` (one seed), ``mean ± std`` or ``mean ± std [low, high]``, in %."""
    if n == 0 or missing(mean):
        return "—"
    if n == 1:
        return f"{100 * mean:.2f}"
    low, high = interval if interval is not None else (None, None)
    bounds = "" if missing(low) or missing(high) else f" [{100 * low:.2f}, {100 * high:.2f}]"
    return f"{100 * mean:.2f} ± {100 * std:.2f}{bounds}"


def statistics_note(summary: dict[str, Any]) -> str:
    """The one sentence every output states: NormDEL's α and the significance level."""
    stats = summary.get("statistics") or {}
    return (f"NormDEL α = {stats.get('normdel_alpha', summary.get('alpha'))} (weight of the retained ratio); "
            f"significance level {stats.get('significance', DEFAULT_SIGNIFICANCE):g} "
            f"({100 * stats.get('confidence', 1 - DEFAULT_SIGNIFICANCE):g} % intervals: percentile bootstrap over "
            f"seeds, B = {stats.get('bootstrap_resamples', BOOTSTRAP_RESAMPLES):,}, seed "
            f"{stats.get('bootstrap_seed', BOOTSTRAP_SEED)}; tests: exact sign-flip permutation test of paired "
            f"differences against {BASELINE_SELECTOR})")


def p_text(p_value: Any) -> str:
    return "—" if missing(p_value) else f"{p_value:.3g}"


def interval_text(mean: Any, interval: Any) -> str:
    if missing(mean):
        return "—"
    low, high = interval or (None, None)
    return value_text(mean, percent=True) + ("" if missing(low) or missing(high) else
                                         f" [{value_text(low, percent=True)}, {value_text(high, percent=True)}]")


CONFIDENCE = 1 - DEFAULT_SIGNIFICANCE  # the protocol's statistics.significance overrides it


def missing(x: Any) -> bool:
    """None (NaN read back from summary.json) or NaN."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def value_text(x: Any, percent: bool, signed: bool = False) -> str:
    if missing(x):
        return "—"
    sign = "+" if signed else ""
    return f"{100 * x:{sign}.2f}".replace("-", "−") if percent else f"{x:{sign}.4g}".replace("-", "−")
