"""MedDEL: the baseline selector of the MedDEL benchmark (arXiv 2401.17542, Algorithm 1).

Built on the per-cluster duplicate score of :mod:`delbench_plugins.lib.cluster_duplicates`
(shared with SemDeDup and D4), which documents the score, its memory bound and ``center``.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from delbench.errors import SelectionError
from delbench.hookspecs import hookimpl
from delbench.interfaces import Dataset, Selection
from delbench.subset import check_positive_int, finish_selection, lowest_first, selection_target
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
    ``kmeans_iterations``, ``kmeans_backend`` ('auto' | 'faiss' | 'sklearn'),
    ``block_floats`` (memory bound of the pairwise step). Diagnostics: ``eta``, ``eps``,
    ``center``, ``n_outliers``, ``n_clusters``, ``filled``, ``ties_trimmed``, ``time_s``.
    """

    name = "meddel"
    version = "1"
    description = ("MedDEL (arXiv 2401.17542, Alg. 1): k-means, drop centroid-distance outliers > eps, "
                   "then of each pair with cosine > eta drop the one nearer the centroid; eta searched")

    def select(self, pool: Dataset, ratio: float, *, seed: int, embeddings: np.ndarray | None = None,
               n_clusters: int | None = None, eps: float = MEDDEL_EPS, max_iterations: int = 1,
               center: bool = False, kmeans_iterations: int = DEFAULT_ITERATIONS,
               kmeans_backend: str = "auto", block_floats: int = DEFAULT_BLOCK_FLOATS) -> Selection:
        started = time.perf_counter()
        embeddings, n, k = selection_target(pool, ratio, embeddings)
        if not isinstance(eps, (int, float)) or not 0.0 <= float(eps) <= 2.0:
            raise SelectionError(f"meddel: eps is a cosine distance in [0, 2], got {eps!r}")
        check_positive_int("meddel: max_iterations", max_iterations)
        diagnostics: dict[str, Any] = {"eps": float(eps), "max_iterations": int(max_iterations),
                                       "center": bool(center)}
        offset = self._offset(embeddings, center)
        if k == 0:
            return finish_selection(np.zeros(0, np.int64), {**diagnostics, "eta": None}, started)
        clustering = self._cluster(embeddings, seed=seed, n_clusters=n_clusters, kmeans_iterations=kmeans_iterations,
                                   kmeans_backend=kmeans_backend, offset=offset)
        distances = clustering.distances
        inlier = distances <= eps
        scores = duplicate_scores(embeddings, clustering, eligible=inlier, keep="hard",
                                  block_floats=block_floats, offset=offset)
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
        return finish_selection(kept, diagnostics, started)



@hookimpl
def delbench_register_selectors() -> list[type]:
    return [MedDEL]
