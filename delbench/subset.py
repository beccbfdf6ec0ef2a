"""Subsets: the size rule, validation of selector output, how a subset is identified, the one
function that runs a selector, and the small helpers selectors share.

A subset is identified three ways, all recorded with it (DataComp identifies a submission by
its ids in the same spirit):

``subset_sha256``
    sha256 of the selected indices as little-endian int64 bytes: what was selected, *given*
    the pool's order.
``ids_sha256``
    sha256 of the selected items' ids, sorted (Python string order, i.e. by code point),
    each followed by ``"\n"``, encoded as UTF-8: which images were selected, whatever the
    pool's order.
``pool_ids_sha256``
    the same digest of every pool id in pool order (not sorted): the pool the indices refer
    to. ``delbench verify`` recomputes it from the pool to detect a changed or reordered pool.

Ids hold no newline (the separator); :func:`ids_sha256` refuses one.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from delbench.errors import DatasetError, SelectionError, one_line


@dataclass
class Selection:
    """What a selector may return instead of a bare index array."""

    indices: np.ndarray
    diagnostics: dict[str, Any] = field(default_factory=dict)


def subset_size(n: int, ratio: float) -> int:
    """Number of items a selector must return: ``round(ratio * n)`` rounding halves up.

    At least one item for a non-empty pool and ``ratio > 0`` (a zero-item subset cannot be
    trained on); ``ratio`` must lie in (0, 1].
    """
    if not (isinstance(ratio, (int, float)) and 0.0 < float(ratio) <= 1.0):
        raise SelectionError(f"ratio must be a number in (0, 1], got {ratio!r}")
    if n <= 0:
        return 0
    return min(n, max(1, math.floor(float(ratio) * n + 0.5)))


def subset_sha256(indices: np.ndarray) -> str:
    """sha256 of the indices as little-endian int64 bytes (the submission hash)."""
    return hashlib.sha256(np.ascontiguousarray(indices, dtype="<i8").tobytes()).hexdigest()


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


def check_embeddings(embeddings: Any, n: int) -> np.ndarray:
    """Validate an embedding matrix for a pool of ``n`` items; return it as a 2-D float array.

    Selectors call this first so bad input fails with one clear message.
    """
    if embeddings is None:
        raise SelectionError("this selector needs embeddings (an n × d float array), got None")
    array = np.asarray(embeddings) if not isinstance(embeddings, np.ndarray) else embeddings
    if array.ndim != 2:
        raise SelectionError(f"embeddings must be 2-D (n × d), got shape {array.shape}")
    if array.shape[0] != n:
        raise SelectionError(f"embeddings have {array.shape[0]} rows but the pool has {n} items")
    if not np.issubdtype(array.dtype, np.floating):
        raise SelectionError(f"embeddings must be floating point, got dtype {array.dtype}")
    chunk = 65536  # streamed, so a memory-mapped float16 file is never copied whole
    for start in range(0, array.shape[0], chunk):
        block = np.asarray(array[start:start + chunk])
        if not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise SelectionError(f"embeddings contain NaN or inf (first at row {bad})")
    return array


def read_embeddings(path: str | Path, n: int) -> np.ndarray:
    """An embeddings file (``.npy``, n × d float, row i = pool item i) memory-mapped and
    checked for a pool of ``n`` items (:func:`check_embeddings`); every problem is one
    :class:`~delbench.errors.SelectionError` naming the file. Never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise SelectionError(f"embeddings file {path}: not found" if not path.exists() else
                             f"embeddings file {path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise SelectionError(f"embeddings file {path} is empty; write the n × d array with numpy.save")
    from numpy.lib import format as npy

    with open(path, "rb") as handle:
        magic = handle.read(6)
        if magic != b"\x93NUMPY":
            kind = "a .npz archive" if magic.startswith(b"PK") else "not a .npy file (no numpy header)"
            raise SelectionError(f"embeddings file {path} is {kind}; write one n × d float array with numpy.save")
        handle.seek(0)
        try:
            version = npy.read_magic(handle)
            read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _, dtype = read_header(handle)
        except (ValueError, OSError, EOFError) as exc:
            raise SelectionError(f"embeddings file {path} has a damaged numpy header ({one_line(str(exc))})") from None
        data_start = handle.tell()
    if dtype.hasobject:  # reading it would mean unpickling, which delbench never does
        raise SelectionError(f"embeddings file {path} holds Python objects, not numbers; write a float array")
    expected = data_start + math.prod(shape) * dtype.itemsize
    if size < expected:
        raise SelectionError(f"embeddings file {path} is truncated: its header promises a {dtype} array of shape "
                             f"{tuple(shape)} ({expected} bytes) but the file has {size} bytes")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SelectionError(f"embeddings file {path} cannot be read: {one_line(str(exc))}") from None
    try:
        return check_embeddings(array, n)
    except SelectionError as exc:
        raise SelectionError(f"embeddings file {path}: {exc}") from None


def ids_sha256(ids: Iterable[str]) -> str:
    """sha256 of ``ids`` in the given order, each followed by ``"\\n"``, as UTF-8 (module docstring)."""
    digest = hashlib.sha256()
    for item_id in ids:
        if "\n" in item_id:
            raise DatasetError(f"item id {item_id!r} holds a newline; ids must be single-line strings")
        digest.update(item_id.encode("utf-8") + b"\n")
    return digest.hexdigest()


def selected_ids_sha256(pool_ids: Sequence[str], indices: np.ndarray) -> str:
    """The ``ids_sha256`` of a subset: the ids at ``indices``, sorted."""
    return ids_sha256(sorted(pool_ids[int(i)] for i in indices))


@dataclass(frozen=True)
class Subset:
    """A validated selection: sorted unique int64 indices, how they are identified (module
    docstring), the selector's diagnostics and the seconds the selection took."""

    indices: np.ndarray
    sha256: str
    ids_sha256: str
    pool_ids_sha256: str
    diagnostics: dict[str, Any] = field(default_factory=dict)
    time_s: float = 0.0

    @property
    def size(self) -> int:
        return int(self.indices.size)


def checked_indices(result: Any, n: int, k: int, *, selector: str = "selector") -> tuple[np.ndarray, dict[str, Any]]:
    """A selector's return value (an int64 array or a :class:`Selection`) checked against the
    contract — 1-D int64, sorted, unique, in [0, n), exactly ``k`` — as (indices, diagnostics)."""
    diagnostics: dict[str, Any] = {}
    if not isinstance(result, np.ndarray) and hasattr(result, "indices"):
        diagnostics = dict(getattr(result, "diagnostics", {}) or {})
        result = result.indices
    if not isinstance(result, np.ndarray):
        raise SelectionError(f"{selector}: returned {type(result).__name__}, expected a numpy array or a Selection")
    if result.ndim != 1:
        raise SelectionError(f"{selector}: indices must be 1-D, got shape {result.shape}")
    if result.dtype != np.int64:
        raise SelectionError(f"{selector}: indices have dtype {result.dtype}, expected int64")
    if result.size and (result.min() < 0 or result.max() >= n):
        raise SelectionError(f"{selector}: indices out of range [0, {n})")
    if result.size > 1 and not (np.diff(result) > 0).all():
        raise SelectionError(f"{selector}: indices must be sorted and unique")
    if result.size != k:
        raise SelectionError(f"{selector}: returned {result.size} indices, expected round(ratio × {n}) = {k}")
    return result, diagnostics


def call_selector(selector: Any, pool: Any, ratio: float, *, seed: int, embeddings: Any = None,
                  backbone: Any = None, params: dict[str, Any] | None = None) -> Any:
    """``selector.select`` called as the contract says: ``embeddings`` only when it
    ``requires_embeddings``, ``backbone`` only when it ``requires_backbone``, ``params`` as
    keywords. Returns what ``select`` returned, unchecked (:func:`run_selector` checks it)."""
    kwargs = dict(params or {})
    if getattr(selector, "requires_embeddings", False):
        kwargs["embeddings"] = embeddings
    if getattr(selector, "requires_backbone", False):
        kwargs["backbone"] = backbone
    return selector.select(pool, ratio, seed=seed, **kwargs)


def run_selector(selector: Any, pool: Any, ratio: float, *, seed: int, embeddings: Any = None,
                 backbone: Any = None, params: dict[str, Any] | None = None,
                 pool_ids: Sequence[str] | None = None) -> Subset:
    """Run one selection the one way every caller does: the runner, ``delbench select`` and
    the contract checker.

    ``selector`` is an instance (a :class:`delbench.interfaces.Selector` or any object with
    its ``select`` and class attributes), called by :func:`call_selector`. The result is
    checked against the contract (:func:`checked_indices`) and identified (module
    docstring); ``pool_ids`` (the pool's ``item_ids()``, listed when not given) spare a
    caller that runs many selections on one pool the listing.
    """
    name = str(getattr(selector, "name", type(selector).__name__))
    started = time.perf_counter()
    result = call_selector(selector, pool, ratio, seed=seed, embeddings=embeddings, backbone=backbone, params=params)
    seconds = time.perf_counter() - started
    pool_ids = list(pool.item_ids()) if pool_ids is None else pool_ids
    indices, diagnostics = checked_indices(result, len(pool_ids), subset_size(len(pool_ids), ratio), selector=name)
    return Subset(indices, subset_sha256(indices), selected_ids_sha256(pool_ids, indices), ids_sha256(pool_ids),
                  diagnostics, seconds)


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
