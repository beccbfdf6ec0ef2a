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
import logging
from typing import Any, Mapping

import numpy as np

from delbench.sdk import (SelectionError, SelectionWork, Selector, ShardFiles, array_digest, check_bool, check_choice,
                          check_int, embeddings_fingerprint, run_shards)
from delbench_plugins.lib.clustering import (
    KEEP_CHOICES,
    KMeansResult,
    check_kmeans_params,
    cluster,
    cluster_members,
    normalized_rows,
    parallel_map,
    pool_mean,
    resolve_backend,
    resolve_kmeans_method,
    resolve_n_clusters,
)

logger = logging.getLogger(__name__)

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
                     offset: np.ndarray | None = None, n_jobs: int | None = None,
                     work: SelectionWork | None = None) -> np.ndarray:
    """Per-item duplicate score (see the module docstring), float32 (n,).

    Only ``eligible`` items (boolean mask, default all) take part: they are scored against
    each other; the others get NaN. The highest-priority eligible item of each cluster gets
    ``-inf`` (nothing can make it a duplicate). ``offset`` (the one the clustering used, if
    any) is subtracted from every row before the cosines. Clusters are scored on ``n_jobs``
    threads (default all CPUs); the result does not depend on it.

    With ``work`` the clusters are scored in fixed shards of ``work.clusters_per_shard``
    consecutive cluster numbers, one file per shard, shared with the other processes of
    ``work.world`` and kept for a re-run (:func:`delbench.sdk.shards.run_shards`, ``claim=True``);
    the scores are the same bits as without it (each cluster is scored by the same function
    on the same rows, on one BLAS thread either way).
    """
    n = clustering.labels.size
    scores = np.full(n, np.nan, np.float32)
    eligible_mask = np.ones(n, bool) if eligible is None else np.asarray(eligible, bool)

    def cluster_scores(members: np.ndarray) -> np.ndarray:
        """Scores of ``members`` (one cluster, ascending), NaN where not eligible."""
        out = np.full(members.size, np.nan, np.float32)
        chosen = members[eligible_mask[members]]
        if chosen.size == 0:
            return out
        ordered = _priority_order(chosen, clustering.distances, keep)
        # read rows in file order (chosen is ascending), then put them in priority order
        rows = normalized_rows(embeddings, 0, chosen.size, rows=chosen, offset=offset)
        rows = rows[np.searchsorted(chosen, ordered)]
        out[np.searchsorted(members, ordered)] = max_similarity_to_priors(rows, block_floats=block_floats)
        return out

    members = cluster_members(clustering.labels, clustering.n_clusters)
    if work is None:
        def score(group: np.ndarray) -> None:  # clusters are disjoint: each writes its own items
            scores[group] = cluster_scores(group)

        # largest clusters first, so no big one is left running alone at the end
        parallel_map(score, sorted(members, key=len, reverse=True), n_jobs=n_jobs)
        return scores
    return _sharded_scores(members, cluster_scores, scores, work, identity={
        "clustering": array_digest(clustering.labels), "distances": array_digest(clustering.distances),
        "eligible": array_digest(np.packbits(eligible_mask)), "keep": keep, "block_floats": int(block_floats),
        "offset": array_digest(offset), "clusters_per_shard": int(work.clusters_per_shard)})


def _sharded_scores(members: list[np.ndarray], cluster_scores: Any, scores: np.ndarray, work: SelectionWork,
                    identity: dict[str, Any]) -> np.ndarray:
    """:func:`duplicate_scores` through score shard files (see there)."""
    per_shard = int(work.clusters_per_shard)
    count = -(-len(members) // per_shard)
    files = ShardFiles(work.stage("scores", identity), prefix="scores")

    def shard_members(i: int) -> list[np.ndarray]:
        return members[i * per_shard:(i + 1) * per_shard]

    def compute(i: int) -> np.ndarray:
        groups = shard_members(i)
        largest_first = sorted(range(len(groups)), key=lambda j: -groups[j].size)  # as without work
        parts = dict(zip(largest_first, parallel_map(cluster_scores, [groups[j] for j in largest_first],
                                                     n_jobs=work.threads())))
        return np.concatenate([parts[j] for j in range(len(groups))]) if groups else np.zeros(0, np.float32)

    done = run_shards(files, count, compute, world=work.world, claim=True)
    logger.info("duplicate scores: %d shards computed, %d found finished in %s", len(done["computed"]),
                len(done["skipped"]), files.out_dir)
    for i in range(count):
        part = files.read(i)
        rows = np.concatenate(shard_members(i)) if shard_members(i) else np.zeros(0, np.int64)
        if part.shape != rows.shape:
            raise SelectionError(f"score shard {files.path(i)} holds {part.shape} scores for {rows.size} items; "
                                 f"delete {files.out_dir} and run again")
        scores[rows] = part
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
    #: keeps its clustering and per-cluster scores in the harness' ``work`` (resumable,
    #: sharded by cluster over processes: :class:`delbench.sdk.shards.SelectionWork`)
    resumable_work = True

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        check_kmeans_params(params)
        check_bool(params, "center")
        check_choice(params, "keep", KEEP_CHOICES)
        check_int(params, "block_floats", 1)

    def _centred_clusters(self, embeddings: Any, *, seed: int, center: bool, n_clusters: int | None,
                          kmeans_iterations: int, kmeans_backend: str, kmeans: str = "auto",
                          work: SelectionWork | None = None) -> tuple[np.ndarray | None, KMeansResult]:
        """The centring offset (the pool mean when ``center``, else None) and the k-means of
        the pool in that geometry."""
        offset = pool_mean(embeddings) if center else None
        return offset, self._cluster(embeddings, seed=seed, n_clusters=n_clusters, kmeans_iterations=kmeans_iterations,
                                     kmeans_backend=kmeans_backend, kmeans=kmeans, offset=offset, work=work)

    @staticmethod
    def _cluster(embeddings: Any, *, seed: int, n_clusters: Any, kmeans_iterations: int,
                 kmeans_backend: str, offset: np.ndarray | None, kmeans: str = "auto",
                 rows: np.ndarray | None = None, work: SelectionWork | None = None) -> KMeansResult:
        """The clustering (:func:`delbench_plugins.lib.clustering.cluster`); with ``work`` it is
        computed once per work directory (the first process; the others wait and read it)."""
        n = embeddings.shape[0] if rows is None else rows.size
        k = resolve_n_clusters(n_clusters, n)

        def compute() -> KMeansResult:
            return cluster(embeddings, k, seed=seed, method=kmeans, iterations=kmeans_iterations,
                           backend=kmeans_backend, rows=rows, offset=offset)

        if work is None:
            return compute()
        method = resolve_kmeans_method(kmeans, min(k, n))
        directory = work.stage("kmeans", {
            "n_clusters": k, "seed": int(seed), "method": method, "iterations": int(kmeans_iterations),
            "backend": resolve_backend(kmeans_backend), "rows": array_digest(rows), "offset": array_digest(offset),
            "embeddings": embeddings_fingerprint(embeddings)})

        def computed() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
            result = compute()
            return ({"centroids": result.centroids, "labels": result.labels, "distances": result.distances},
                    {"backend": result.backend, "method": result.method, "coarse_clusters": result.coarse_clusters})

        arrays, meta = work.cached(directory, computed)
        return KMeansResult(arrays["centroids"], arrays["labels"], arrays["distances"], meta["backend"],
                            method=meta["method"], coarse_clusters=meta["coarse_clusters"])
