"""The SemDeDup family of embedding-cluster selectors: SemDeDup, SSL prototypes and D4.

All three start from the same spherical k-means (:mod:`delbench_plugins.lib.clustering`);
SemDeDup and D4 use the per-cluster duplicate score of
:mod:`delbench_plugins.lib.cluster_duplicates` (shared with MedDEL, which has its own module),
where the score, its memory bound and ``center`` are documented.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from delbench.sdk import Dataset, SelectionWork, check_number, hookimpl, lowest_first, subset_size
from delbench_plugins.lib.cluster_duplicates import (DEFAULT_BLOCK_FLOATS, ClusteringSelector, duplicate_scores,
                                                     threshold_value)
from delbench_plugins.lib.clustering import DEFAULT_ITERATIONS, KMeansResult, kmeans_diagnostics


# --- SemDeDup -------------------------------------------------------------------------------
def semdedup_keep(embeddings: Any, clustering: KMeansResult, k: int, *, keep: str,
                  block_floats: int, offset: np.ndarray | None = None,
                  work: SelectionWork | None = None) -> tuple[np.ndarray, float | None, int]:
    """The ``k`` items SemDeDup keeps, the similarity threshold ``1 - eps`` that keeps
    them, and how many items tied at that threshold were trimmed."""
    scores = duplicate_scores(embeddings, clustering, keep=keep, block_floats=block_floats, offset=offset,
                              work=work)
    rank_key = -clustering.distances if keep == "hard" else clustering.distances
    ranked = lowest_first(scores, secondary=rank_key)
    if k == 0:
        return ranked[:0], None, 0
    threshold = scores[ranked[k - 1]]
    ties = int(np.count_nonzero(scores[ranked[k:]] == threshold))
    return ranked[:k], threshold_value(threshold), ties


class SemDeDup(ClusteringSelector):
    """SemDeDup (Abbas et al. 2023, "SemDeDup: Data-efficient learning at web-scale through
    semantic deduplication", arXiv 2303.09540).

    K-means the L2-normalised embeddings; within each cluster, items whose cosine similarity
    to another item exceeds ``1 - eps`` are semantic duplicates. The cluster's items are
    ordered by their cosine similarity to the centroid, lowest first (farthest from it; the
    paper's code calls this ``keep_hard``), and an item is removed when it is a duplicate of
    *any* earlier item of that order, whether that earlier item is kept or removed itself:
    the paper's pairwise rule, so of each pair the one nearer the centroid goes. Unlike
    MedDEL there is no outlier step. ``eps`` is searched to keep exactly
    ``round(ratio · n)`` items (same one-pass score sort as MedDEL) and recorded.

    Parameters: ``n_clusters`` (default about sqrt(n)), ``keep`` ('hard' = paper: keep the
    item farthest from the centroid; 'easy' = keep the closest), ``center`` (default False,
    the paper's geometry; True subtracts the pool mean before every cosine),
    ``kmeans_iterations``, ``kmeans_backend``, ``kmeans`` (as MedDEL's), ``block_floats``. Diagnostics: ``eps``,
    ``similarity_threshold``, ``keep``, ``center``, ``n_clusters``, ``ties_trimmed``, ``time_s``.
    """

    name = "semdedup"
    # 2: kmeans='auto' (the default) clusters in two levels from 4,096 clusters on; with fewer
    #    clusters every subset is version 1's, bit for bit
    version = "2"
    description = ("SemDeDup (Abbas et al. 2023): per k-means cluster, drop items with cosine > 1-eps "
                   "to any item farther from the centroid, kept or not; eps searched")

    def choose(self, pool: Dataset, k: int, *, seed: int, embeddings: np.ndarray, n_clusters: int | None = None,
               keep: str = "hard", center: bool = False, kmeans_iterations: int = DEFAULT_ITERATIONS,
               kmeans_backend: str = "auto", kmeans: str = "auto", block_floats: int = DEFAULT_BLOCK_FLOATS,
               work: SelectionWork | None = None) -> tuple[np.ndarray, dict]:
        offset, clustering = self._centred_clusters(embeddings, seed=seed, center=center, n_clusters=n_clusters,
                                                    kmeans_iterations=kmeans_iterations, kmeans_backend=kmeans_backend,
                                                    kmeans=kmeans, work=work)
        kept, threshold, ties = semdedup_keep(embeddings, clustering, k, keep=keep, block_floats=block_floats,
                                              offset=offset, work=work)
        diagnostics = {"similarity_threshold": threshold,
                       "eps": None if threshold is None else round(1.0 - threshold, 7),
                       "keep": keep, "center": bool(center), "ties_trimmed": ties,
                       **kmeans_diagnostics(clustering)}
        return kept, diagnostics


# --- SSL prototypes ---------------------------------------------------------------------------
def prototype_keep(distances: np.ndarray, candidates: np.ndarray, k: int, keep: str) -> np.ndarray:
    """The ``k`` candidates farthest from (``hard``) or closest to (``easy``) their centroid."""
    key = -distances if keep == "hard" else distances
    return lowest_first(key, candidates)[:k]


class Prototypes(ClusteringSelector):
    """SSL prototypes (Sorscher et al. 2022, "Beyond neural scaling laws: beating power law
    scaling via data pruning", NeurIPS).

    K-means the L2-normalised self-supervised embeddings; an item's difficulty is its cosine
    distance to its cluster centroid (prototype). ``keep='hard'`` keeps the farthest items
    (the paper's advice for large pools), ``'easy'`` the closest (for small ones). Exactly
    ``round(ratio · n)`` items, ties by index.

    Parameters: ``keep`` ('hard' | 'easy', default 'hard'), ``n_clusters`` (default about
    sqrt(n)), ``center`` (default False, the paper's geometry; True subtracts the pool mean
    before every cosine), ``kmeans_iterations``, ``kmeans_backend``. Diagnostics:
    ``distance_threshold`` (distance of the last kept item), ``keep``, ``center``,
    ``n_clusters``, ``time_s``.
    """

    name = "prototypes"
    # 2: kmeans='auto' (the default) clusters in two levels from 4,096 clusters on; with fewer
    #    clusters every subset is version 1's, bit for bit
    version = "2"
    description = ("SSL prototypes (Sorscher et al. 2022): cosine distance to the k-means centroid, "
                   "keep the hardest (farthest) or easiest items")

    def choose(self, pool: Dataset, k: int, *, seed: int, embeddings: np.ndarray, keep: str = "hard",
               n_clusters: int | None = None, center: bool = False, kmeans_iterations: int = DEFAULT_ITERATIONS,
               kmeans_backend: str = "auto", kmeans: str = "auto",
               work: SelectionWork | None = None) -> tuple[np.ndarray, dict]:
        offset, clustering = self._centred_clusters(embeddings, seed=seed, center=center, n_clusters=n_clusters,
                                                    kmeans_iterations=kmeans_iterations, kmeans_backend=kmeans_backend,
                                                    kmeans=kmeans, work=work)
        kept = prototype_keep(clustering.distances, np.arange(len(pool)), k, keep)
        diagnostics = {"keep": keep, "center": bool(center),
                       "distance_threshold": float(clustering.distances[kept[-1]]),
                       **kmeans_diagnostics(clustering)}
        return kept, diagnostics


# --- D4 -------------------------------------------------------------------------------------
class D4(ClusteringSelector):
    """D4 (Tirumala et al. 2023, "D4: Improving LLM pretraining via document de-duplication
    and diversification", NeurIPS).

    SemDeDup down to ``max(ratio, dedup_ratio)`` of the pool, then k-means again on the
    survivors and SSL prototypes (keep hard: farthest from the new centroids) down to the
    final ``round(ratio · n)`` items. At ``ratio ≥ dedup_ratio`` it is SemDeDup alone.

    Parameters: ``dedup_ratio`` (share kept by the SemDeDup stage, in (0, 1], default 0.75;
    the paper tunes it), ``n_clusters`` (both stages; default about sqrt of the stage's
    size), ``center`` (default False, the paper's geometry; True subtracts the whole pool's
    mean before every cosine, in both stages), ``kmeans_iterations``, ``kmeans_backend``,
    ``block_floats``. Diagnostics: ``dedup_ratio``, ``center``, ``n_after_dedup``,
    ``similarity_threshold``, ``distance_threshold``, ``n_clusters`` (first stage),
    ``n_clusters_prototypes``, ``time_s``.
    """

    name = "d4"
    # 2: kmeans='auto' (the default) clusters in two levels from 4,096 clusters on; with fewer
    #    clusters every subset is version 1's, bit for bit
    version = "2"
    description = ("D4 (Tirumala et al. 2023): SemDeDup to an intermediate ratio, re-cluster, then "
                   "SSL prototypes (keep hard) to the final ratio")

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        super().check_params(params)
        check_number(params, "dedup_ratio", 0.0, 1.0, low_open=True)

    def choose(self, pool: Dataset, k: int, *, seed: int, embeddings: np.ndarray, dedup_ratio: float = 0.75,
               n_clusters: int | None = None, center: bool = False, kmeans_iterations: int = DEFAULT_ITERATIONS,
               kmeans_backend: str = "auto", kmeans: str = "auto", block_floats: int = DEFAULT_BLOCK_FLOATS,
               work: SelectionWork | None = None) -> tuple[np.ndarray, dict]:
        n = len(pool)
        diagnostics: dict[str, Any] = {"dedup_ratio": float(dedup_ratio), "center": bool(center)}
        # one offset (the whole pool's mean) for both stages: the survivors are measured in
        # the same geometry they were deduplicated in
        offset, clustering = self._centred_clusters(embeddings, seed=seed, center=center, n_clusters=n_clusters,
                                                    kmeans_iterations=kmeans_iterations, kmeans_backend=kmeans_backend,
                                                    kmeans=kmeans, work=work)
        intermediate = max(k, subset_size(n, float(dedup_ratio)))
        deduplicated, threshold, _ = semdedup_keep(embeddings, clustering, intermediate, keep="hard",
                                                   block_floats=block_floats, offset=offset, work=work)
        diagnostics.update(n_after_dedup=int(intermediate), similarity_threshold=threshold,
                           **kmeans_diagnostics(clustering))
        if intermediate == k:
            return deduplicated, diagnostics
        survivors = np.sort(deduplicated)
        # seed + 1: the second clustering must not just replay the first one's sample
        second = self._cluster(embeddings, seed=seed + 1, n_clusters=n_clusters,
                               kmeans_iterations=kmeans_iterations, kmeans_backend=kmeans_backend, kmeans=kmeans,
                               offset=offset, rows=survivors, work=work)
        chosen = prototype_keep(second.distances, np.arange(survivors.size), k, "hard")
        diagnostics.update(n_clusters_prototypes=second.n_clusters,
                           distance_threshold=float(second.distances[chosen[-1]]))
        return survivors[chosen], diagnostics


@hookimpl
def delbench_register_selectors() -> list[type]:
    return [SemDeDup, Prototypes, D4]
