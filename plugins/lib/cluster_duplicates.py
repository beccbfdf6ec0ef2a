"""The per-cluster duplicate score shared by MedDEL, SemDeDup and D4, and their common base.

Not a plugin: it registers nothing. MedDEL, SemDeDup and D4 start from the same spherical
k-means (:mod:`delbench_plugins.lib.clustering`) and share one per-cluster score, computed once
per item:

    score(i) = max cosine similarity of i to any item of its cluster with higher priority

where priority orders a cluster's items by their cosine distance to the centroid (farthest
first, ties by index). Deleting "the member of every pair with similarity > t that has the
lower priority" deletes exactly the items with ``score > t``, so the kept set shrinks
monotonically as ``t`` falls and the threshold that keeps exactly ``round(ratio · n)`` items is
found by sorting the scores: no selection is ever re-run for a candidate threshold.

The score is computed in row blocks of the (priority-ordered) cluster, each block against
the items before it, so no cluster ever needs more than ``block_floats`` similarities in
memory (default 2**26 floats = 256 MiB) and rows are read from a memory-mapped float16 file
one cluster at a time.

``center=True`` (MedDEL and the SemDeDup family; default False, as in the papers) subtracts
the pool's mean embedding before any cosine is taken: clustering, centroid distances, MedDEL's
``eps`` and the pairwise similarities. Encoder embeddings often share a large common
component (on the smoke pool, MAE ViT-Tiny after a 100-step warm-up: norm of the mean 12.0
against a mean row norm 13.7), which pushes every cosine towards 1; centring measures angles
around the pool's own centre instead. The mean is computed in one streamed pass
(:func:`delbench_plugins.lib.clustering.pool_mean`).
"""
from __future__ import annotations

import functools
from typing import Any, Mapping

import numpy as np

from delbench.interfaces import Selector
from delbench.params import check_bool, check_choice, check_int
from delbench_plugins.lib.clustering import (
    KEEP_CHOICES,
    KMeansResult,
    check_kmeans_params,
    cluster_members,
    kmeans,
    normalized_rows,
    parallel_map,
    pool_mean,
    resolve_n_clusters,
)

#: most similarities held at once while scoring one cluster (2**26 float32 = 256 MiB)
DEFAULT_BLOCK_FLOATS = 1 << 26
#: a cluster is scored in about this many row blocks, each against the rows before it, so
#: only ~(1 + 1/4) / 2 of the c × c products are computed; blocks stay ≥ MIN_BLOCK_ROWS rows
#: so each product is still large enough to run at full BLAS speed
BLOCKS_PER_CLUSTER = 4
MIN_BLOCK_ROWS = 256


def _priority_order(members: np.ndarray, distances: np.ndarray, keep: str) -> np.ndarray:
    """``members`` sorted by priority: largest centroid distance first for ``keep='hard'``,
    smallest first for ``'easy'``; ties by index (so the order is deterministic)."""
    key = -distances[members] if keep == "hard" else distances[members]
    return members[np.lexsort((members, key))]


@functools.lru_cache(maxsize=2)
def _upper_with_diagonal(size: int) -> np.ndarray:
    """Boolean size × size mask of the entries a row may not see (itself and later rows);
    shared between threads, hence read-only."""
    mask = ~np.tri(size, size, -1, dtype=bool)
    mask.flags.writeable = False
    return mask


def _score_block_rows(rows: int, block_floats: int) -> int:
    wanted = max(MIN_BLOCK_ROWS, -(-rows // BLOCKS_PER_CLUSTER))
    return max(1, min(rows, wanted, block_floats // max(rows, 1)))


def max_similarity_to_priors(ordered: np.ndarray, *, block_floats: int = DEFAULT_BLOCK_FLOATS) -> np.ndarray:
    """For unit rows ``ordered`` (c × d, highest priority first): the largest inner product
    of each row with any earlier row; ``-inf`` for the first row. Computed in row blocks of
    at most ``block_floats`` similarities; never the full c × c matrix for a big cluster."""
    count = ordered.shape[0]
    scores = np.full(count, -np.inf, np.float32)
    step = _score_block_rows(count, block_floats)
    for start in range(0, count, step):
        stop = min(count, start + step)
        similarity = ordered[start:stop] @ ordered[:stop].T  # only items up to this block
        square = similarity[:, start:stop]  # a view: row r may only see columns < start + r
        np.putmask(square, _upper_with_diagonal(stop - start), -np.inf)
        scores[start:stop] = similarity.max(axis=1)
    return scores


def duplicate_scores(embeddings: Any, clustering: KMeansResult, *, eligible: np.ndarray | None = None,
                     keep: str = "hard", block_floats: int = DEFAULT_BLOCK_FLOATS,
                     offset: np.ndarray | None = None, n_jobs: int | None = None) -> np.ndarray:
    """Per-item duplicate score (see the module docstring), float32 (n,).

    Only ``eligible`` items (boolean mask, default all) take part: they are scored against
    each other; the others get NaN. The highest-priority eligible item of each cluster gets
    ``-inf`` (nothing can make it a duplicate). ``offset`` (the one the clustering used, if
    any) is subtracted from every row before the cosines. Clusters are scored on ``n_jobs``
    threads (default all CPUs); the result does not depend on it.
    """
    n = clustering.labels.size
    scores = np.full(n, np.nan, np.float32)
    eligible_mask = np.ones(n, bool) if eligible is None else np.asarray(eligible, bool)

    def score(members: np.ndarray) -> None:  # clusters are disjoint: each writes its own items
        members = members[eligible_mask[members]]
        if members.size == 0:
            return
        ordered = _priority_order(members, clustering.distances, keep)
        # read rows in file order (members is ascending), then put them in priority order
        rows = normalized_rows(embeddings, 0, members.size, rows=members, offset=offset)
        rows = rows[np.searchsorted(members, ordered)]
        scores[ordered] = max_similarity_to_priors(rows, block_floats=block_floats)

    # largest clusters first, so no big one is left running alone at the end
    members = cluster_members(clustering.labels, clustering.n_clusters)
    parallel_map(score, sorted(members, key=len, reverse=True), n_jobs=n_jobs)
    return scores


def threshold_value(value: float) -> float | None:
    """A similarity threshold as JSON-safe float (``-inf`` = "nothing may be a duplicate")."""
    if np.isnan(value):
        return None
    return float(np.clip(value, -1.0, 1.0))


class ClusteringSelector(Selector):
    """The common base of MedDEL and the SemDeDup family: their shared parameters and set-up
    (the optional centring offset, the k-means of the pool)."""

    requires_embeddings = True

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        check_kmeans_params(params)
        check_bool(params, "center")
        check_choice(params, "keep", KEEP_CHOICES)
        check_int(params, "block_floats", 1)

    def _centred_clusters(self, embeddings: Any, *, seed: int, center: bool, n_clusters: int | None,
                          kmeans_iterations: int, kmeans_backend: str) -> tuple[np.ndarray | None, KMeansResult]:
        """The centring offset (the pool mean when ``center``, else None) and the k-means of
        the pool in that geometry."""
        offset = pool_mean(embeddings) if center else None
        return offset, self._cluster(embeddings, seed=seed, n_clusters=n_clusters, kmeans_iterations=kmeans_iterations,
                                     kmeans_backend=kmeans_backend, offset=offset)

    @staticmethod
    def _cluster(embeddings: Any, *, seed: int, n_clusters: Any, kmeans_iterations: int,
                 kmeans_backend: str, offset: np.ndarray | None,
                 rows: np.ndarray | None = None) -> KMeansResult:
        n = embeddings.shape[0] if rows is None else rows.size
        return kmeans(embeddings, resolve_n_clusters(n_clusters, n), seed=seed,
                      iterations=kmeans_iterations, backend=kmeans_backend, rows=rows, offset=offset)
