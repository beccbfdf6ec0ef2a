"""MedDEL: the baseline selector of the MedDEL benchmark (arXiv 2401.17542, Algorithm 1).

Built on the per-cluster duplicate score of :mod:`delbench_plugins.lib.cluster_duplicates`
(shared with SemDeDup and D4), which documents the score, its memory bound and ``center``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from delbench.sdk import Dataset, SelectionWork, check_int, check_number, hookimpl, lowest_first
from delbench_plugins.lib.cluster_duplicates import (DEFAULT_BLOCK_FLOATS, ClusteringSelector, duplicate_scores,
                                                     threshold_value)
from delbench_plugins.lib.clustering import DEFAULT_ITERATIONS, kmeans_diagnostics

#: MedDEL's outlier threshold on the cosine distance to the centroid (paper: eps = 0.9)
MEDDEL_EPS = 0.9


class MedDEL(ClusteringSelector):
    """MedDEL baseline selector (Algorithm 1 of the MedDEL benchmark, arXiv 2401.17542).

    K-means the L2-normalised embeddings; in each cluster delete items whose cosine distance
    to the centroid exceeds ``eps`` (disruptive/invalid frames), then for every pair with
    cosine similarity > ``eta`` delete the member closer to the centroid (the paper keeps the
    one with the larger centroid distance). The user asks for a ratio; ``eta`` is searched by
    sorting each item's score (its largest similarity to a farther item of its cluster), so
    exactly ``round(ratio · n)`` items remain. Ties at the threshold are trimmed keeping the
    farther-from-centroid item, then the lower index. If fewer items than asked survive the
    outlier step, outliers closest to their centroid are added back first (``filled``).

    Parameters: ``n_clusters`` (default about sqrt(n)), ``eps`` (default 0.9, the paper's;
    the distance is cosine distance, *inferred*), ``max_iterations`` (the paper repeats the
    sweep; with fixed clusters the rule is idempotent — after one sweep no kept pair is
    above ``eta`` — so any value ≥ 1 gives the same subset; recorded only),
    ``center`` (default False, the paper's geometry: subtract the pool mean before every
    cosine, see the module docstring; it rescales the distances ``eps`` is compared with),
    ``kmeans_iterations``, ``kmeans_backend`` ('auto' | 'faiss' | 'sklearn'), ``kmeans``
    ('auto' | 'flat' | 'hierarchical': one k-means or two levels; 'auto' is two levels from
    4,096 clusters on), ``block_floats`` (memory bound of the pairwise step). With the
    harness' ``work`` the clustering and the per-cluster scores are kept in files, sharded by
    cluster over processes and resumed (:mod:`delbench.sdk.shards`). Diagnostics: ``eta``, ``eps``,
    ``center``, ``n_outliers``, ``n_clusters``, ``filled``, ``ties_trimmed``, ``time_s``.
    """

    name = "meddel"
    # 2: kmeans='auto' (the default) clusters in two levels from 4,096 clusters on; with fewer
    #    clusters every subset is version 1's, bit for bit
    version = "2"
    description = ("MedDEL (arXiv 2401.17542, Alg. 1): k-means, drop centroid-distance outliers > eps, "
                   "then of each pair with cosine > eta drop the one nearer the centroid; eta searched")

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        super().check_params(params)
        check_number(params, "eps", 0.0, 2.0)  # a cosine distance
        check_int(params, "max_iterations", 1)

    def choose(self, pool: Dataset, k: int, *, seed: int, embeddings: np.ndarray, n_clusters: int | None = None,
               eps: float = MEDDEL_EPS, max_iterations: int = 1, center: bool = False,
               kmeans_iterations: int = DEFAULT_ITERATIONS, kmeans_backend: str = "auto", kmeans: str = "auto",
               block_floats: int = DEFAULT_BLOCK_FLOATS,
               work: SelectionWork | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        n = len(pool)
        diagnostics: dict[str, Any] = {"eps": float(eps), "max_iterations": int(max_iterations),
                                       "center": bool(center)}
        offset, clustering = self._centred_clusters(embeddings, seed=seed, center=center, n_clusters=n_clusters,
                                                    kmeans_iterations=kmeans_iterations, kmeans_backend=kmeans_backend,
                                                    kmeans=kmeans, work=work)
        distances = clustering.distances
        inlier = distances <= eps
        scores = duplicate_scores(embeddings, clustering, eligible=inlier, keep="hard",
                                  block_floats=block_floats, offset=offset, work=work)
        # low score first; at equal score the item farther from its centroid first
        ranked = lowest_first(scores, np.flatnonzero(inlier), secondary=-distances)
        kept = ranked[:k]
        filled = max(0, k - kept.size)
        if filled:
            outliers = lowest_first(distances, np.flatnonzero(~inlier))
            kept = np.concatenate([kept, outliers[:filled]])
        eta = scores[ranked[min(k, ranked.size) - 1]] if ranked.size else np.nan
        ties = int(np.count_nonzero(scores[ranked[k:]] == eta)) if ranked.size > k else 0
        diagnostics.update(eta=threshold_value(eta), n_outliers=int(n - np.count_nonzero(inlier)),
                           filled=int(filled), ties_trimmed=ties, **kmeans_diagnostics(clustering))
        return kept, diagnostics


@hookimpl
def delbench_register_selectors() -> list[type]:
    return [MedDEL]
