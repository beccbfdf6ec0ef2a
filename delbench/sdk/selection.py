"""Helpers selectors share: deterministic rankings and budget splits (numpy only)."""
from __future__ import annotations

from typing import Any

import numpy as np

from delbench.errors import SelectionError


def lowest_first(primary: Any, candidates: Any = None, *, secondary: Any = None) -> np.ndarray:
    """``candidates`` (default: every position of ``primary``) ordered by ``primary``
    ascending, then by ``secondary`` ascending when given, then by index: the deterministic
    ranking selectors use to keep "the lowest key first, ties by index".

    ``primary`` and ``secondary`` are 1-D keys indexed by item (not by candidate); negate a
    key to rank highest first. NaN keys sort last.
    """
    primary = np.asarray(primary)
    if candidates is None:
        candidates = np.arange(primary.size)
    candidates = np.asarray(candidates)
    keys = (candidates, primary[candidates]) if secondary is None else \
        (candidates, np.asarray(secondary)[candidates], primary[candidates])
    return candidates[np.lexsort(keys)]


def largest_remainder(total: int, weights: Any, *, tie_break: Any = None) -> np.ndarray:
    """Split ``total`` into int64 parts proportional to ``weights`` (Hamilton's method).

    Each part gets the floor of its quota ``total · w_i / Σw``; the ``total − Σ floors``
    units left over go, one each, to the parts with the largest fractional quotas. Equal
    fractions are ordered by ``tie_break`` ascending (e.g. a seeded random key per part, so
    no part is favoured by its position), else by position (lower first).

    Integer weights (counts) are split in exact integer arithmetic, so equal fractions are
    really equal; floating-point weights use float quotas, where fractions equal on paper may
    differ in their last bit. With counts and ``total ≤ Σw`` no part exceeds its weight.

    Parameters: ``total`` — units to split (≥ 0); ``weights`` — 1-D, non-negative, positive
    sum unless ``total`` is 0; ``tie_break`` — optional 1-D keys, one per weight.
    """
    weights = np.asarray(weights)
    if total == 0 or weights.size == 0:
        return np.zeros(weights.size, np.int64)
    if np.issubdtype(weights.dtype, np.integer):
        wanted = int(total) * weights.astype(np.int64)
        whole = int(weights.sum())
        parts, fraction = wanted // whole, wanted % whole  # fraction in units of 1 / whole
    else:
        quota = total * weights.astype(np.float64) / weights.astype(np.float64).sum()
        parts = np.floor(quota).astype(np.int64)
        fraction = quota - parts
    leftover = int(total) - int(parts.sum())
    secondary = np.arange(weights.size) if tie_break is None else np.asarray(tie_break)
    parts[np.lexsort((secondary, -fraction))[:leftover]] += 1
    return parts


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """A selector parameter that must be an integer ≥ ``minimum`` (booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise SelectionError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)
