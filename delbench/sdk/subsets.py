"""Subsets: the size rule, how a subset is identified, and the checks of a selector's output.

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

Ids hold no newline (the separator); :func:`ids_sha256` refuses one. A generative selector's
subset is new images, identified by its manifest (:mod:`delbench.sdk.derived`).
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from delbench.errors import DatasetError, SelectionError

logger = logging.getLogger(__name__)


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

    #: "indices" (items of the pool) or "derived" (:class:`DerivedSubset`: new images)
    kind = "indices"

    @property
    def size(self) -> int:
        """Items (images) pre-training uses: the budget R = size / n_pool."""
        return int(self.indices.size)

    def training_set(self, pool: Any) -> tuple[Any, np.ndarray]:
        """What pre-training reads: ``(dataset, indices into it)``; here the pool and the indices."""
        return pool, self.indices


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


def check_embeddings(embeddings: Any, n: int, *, distinct: bool = True) -> np.ndarray:
    """Validate an embedding matrix for a pool of ``n`` items; return it as a 2-D float array.

    Selectors call this first so bad input fails with one clear message: not 2-D, not ``n``
    rows, no columns, not floating point, NaN or inf, or (``distinct``, for a whole pool's
    matrix rather than one shard of it) zero for every item, which no encoder computes and
    every selector would pick from blindly. One non-zero vector for every item (a pool of
    duplicates) is allowed, with a warning: the selection is then arbitrary.
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
    if array.shape[1] == 0:
        raise SelectionError(f"embeddings have no columns (shape {array.shape}): each item needs a feature vector")
    chunk = 65536  # streamed, so a memory-mapped float16 file is never copied whole
    first, varies, nonzero = np.asarray(array[:1]), False, False
    for start in range(0, array.shape[0], chunk):
        block = np.asarray(array[start:start + chunk])
        if not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise SelectionError(f"embeddings contain NaN or inf (first at row {bad})")
        varies, nonzero = varies or bool((block != first).any()), nonzero or bool(block.any())
    if distinct and n >= 2 and not nonzero:
        raise SelectionError(f"embeddings are zero for all {n} items: a selector could tell no item from another; "
                             f"check how they were computed")
    if distinct and n >= 2 and not varies:
        logger.warning("embeddings are one vector for all %d items (a pool of duplicates?): any selection of them "
                       "is arbitrary", n)
    return array
