"""Difficulty-based selectors: coverage-centric coreset selection (CCS) and MAE-loss ranking."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from delbench.sdk import (Dataset, SelectionError, Selector, check_choice, check_int, check_number, hookimpl,
                          lowest_first)
from delbench_plugins.lib.clustering import (DEFAULT_ITERATIONS, KEEP_CHOICES, check_kmeans_params, kmeans,
                                             kmeans_diagnostics, resolve_n_clusters)

# --- coverage-centric coreset selection -----------------------------------------------------

def centroid_distance_score(embeddings: Any, *, seed: int, n_clusters: int | None,
                            kmeans_iterations: int, kmeans_backend: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Difficulty = cosine distance of each item to its spherical k-means centroid (the SSL
    prototype metric of Sorscher et al., NeurIPS 2022): far from the prototype = hard."""
    k = resolve_n_clusters(n_clusters, int(embeddings.shape[0]))
    clustering = kmeans(embeddings, k, seed=seed, iterations=kmeans_iterations, backend=kmeans_backend)
    return clustering.distances.astype(np.float64), kmeans_diagnostics(clustering)


def stratified_allocation(sizes: np.ndarray, budget: int) -> np.ndarray:
    """CCS's budget split over strata (Zheng et al. 2023, Algorithm 1).

    Repeatedly take the smallest remaining stratum and give it
    ``min(its size, floor(remaining budget / strata left))``. Small strata are thus taken
    whole and the rest is spread evenly; the result sums to ``budget`` whenever
    ``budget ≤ sizes.sum()``. Ties in size go to the lower stratum first.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if budget > int(sizes.sum()):
        raise SelectionError(f"cannot take {budget} items from strata holding {int(sizes.sum())}")
    allocation = np.zeros(sizes.size, np.int64)
    remaining = int(budget)
    order = lowest_first(sizes)
    for left, stratum in zip(range(sizes.size, 0, -1), order.tolist()):
        take = min(int(sizes[stratum]), remaining // left)
        allocation[stratum] = take
        remaining -= take
    return allocation


class CoverageCentricSelection(Selector):
    """Coverage-centric coreset selection, CCS (Zheng, Liu, Li & Prakash, "Coverage-centric
    Coreset Selection for High Pruning Rates", ICLR 2023).

    A difficulty score per item (``score``; the default ``'centroid_distance'`` is the cosine
    distance to the item's spherical k-means centroid — SSL prototypes' label-free score,
    since a pre-training pool has no labels for the paper's forgetting/AUM scores); the
    ``hard_prune`` fraction of hardest items is removed first (default 0.1, our choice — the
    paper tunes this cut per pruning rate; it is lowered automatically, and recorded, when
    the budget would not fit in what remains); the remaining score range is split into
    ``n_strata`` equal-width strata (default 50, the paper's) and the budget is allocated by
    the paper's iterative rule (smallest stratum first, each taking at most an equal share of
    what is left), then items are drawn at random (seeded) within each stratum. Parameters:
    ``score``, ``hard_prune``, ``n_strata``, ``n_clusters`` (default about sqrt(n)),
    ``kmeans_iterations``, ``kmeans_backend``. Diagnostics: ``hard_pruned``, ``score_cut``
    (hardest score kept eligible), the strata edges' range, per-stratum sizes and
    allocations, ``time_s``.
    """

    name = "ccs"
    version = "1"
    description = ("Coverage-centric coreset selection (Zheng et al. ICLR 2023): prune hardest, "
                   "stratify difficulty, even budget over strata")
    requires_embeddings = True
    #: difficulty scores by name; each returns (scores, diagnostics), larger = harder
    score_functions: dict[str, Callable[..., tuple[np.ndarray, dict[str, Any]]]] = {
        "centroid_distance": centroid_distance_score,
    }

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        check_kmeans_params(params)
        check_choice(params, "score", tuple(sorted(cls.score_functions)))
        check_number(params, "hard_prune", 0.0, 1.0, high_open=True)
        check_int(params, "n_strata", 1)

    def choose(self, pool: Dataset, k: int, *, seed: int, embeddings: np.ndarray, score: str = "centroid_distance",
               hard_prune: float = 0.1, n_strata: int = 50, n_clusters: int | None = None,
               kmeans_iterations: int = DEFAULT_ITERATIONS, kmeans_backend: str = "auto") -> tuple[np.ndarray, dict]:
        n, budget = len(pool), k
        diagnostics: dict[str, Any] = {"score": score, "n_strata": n_strata}
        difficulty, score_info = self.score_functions[score](
            embeddings, seed=seed, n_clusters=n_clusters, kmeans_iterations=kmeans_iterations,
            kmeans_backend=kmeans_backend)
        diagnostics.update(score_info)

        # 1. prune the hardest items (never so many that the budget no longer fits)
        pruned = min(int(round(hard_prune * n)), n - budget)
        hardest_first = lowest_first(-difficulty)
        eligible = np.sort(hardest_first[pruned:])
        values = difficulty[eligible]
        # 2. equal-width strata over the remaining score range
        low, high = float(values.min()), float(values.max())
        width = (high - low) / n_strata
        stratum = (np.zeros(values.size, np.int64) if width == 0.0
                   else np.minimum(((values - low) / width).astype(np.int64), n_strata - 1))
        sizes = np.bincount(stratum, minlength=n_strata)
        # 3. iterative equal allocation, 4. seeded random draws inside each stratum
        allocation = stratified_allocation(sizes, budget)
        rng = np.random.default_rng([int(seed), 0xCC5])
        chosen = [rng.choice(eligible[stratum == s], size=int(take), replace=False)
                  for s, take in enumerate(allocation.tolist()) if take]
        diagnostics.update({
            "hard_prune": float(hard_prune),
            "hard_pruned": int(pruned),
            "score_cut": high,
            "score_low": low,
            "stratum_sizes": sizes.tolist(),
            "stratum_allocation": allocation.tolist(),
        })
        return np.concatenate(chosen), diagnostics


# --- MAE reconstruction loss ----------------------------------------------------------------

class MAELoss(Selector):
    """Difficulty ranking by masked-autoencoder reconstruction loss (He et al., "Masked
    Autoencoders Are Scalable Vision Learners", CVPR 2022, as the objective; loss-based
    difficulty selection as in "hard example" sampling and the V-information view of OptiDEL,
    arXiv 2408.07107: samples the current model reconstructs badly carry more information).

    The runner passes the current backbone (``backbone=``); every pool image is scored with
    ``backbone.reconstruction_loss(images, seed=seed)`` in batches of ``batch_size``
    (default 64), and the ``round(ratio · n)`` items with the highest loss (``keep='hard'``,
    default) or the lowest (``keep='easy'``) are kept, ties by pool order. The seed is
    handed to the backbone (it fixes the random masks); the same seed is used for every
    batch. The ranking itself uses no randomness, so the class sets ``deterministic_in_seed``
    (how much the subset moves with the seed is up to the backbone's masking). On raw endoscopy pools the hardest frames include invalid ones (noise, bubbles),
    so ``'hard'`` is best combined with a quality filter. Diagnostics: ``loss_cut`` (the
    loss of the last item kept), mean loss kept and removed, ``time_s``.
    """

    name = "mae_loss"
    version = "1"
    description = "MAE reconstruction-loss difficulty of the current backbone; keeps the hardest (or easiest)"
    requires_backbone = True
    #: the ranking itself uses no randomness; the seed only fixes the backbone's masks
    deterministic_in_seed = True

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        check_choice(params, "keep", KEEP_CHOICES)
        check_int(params, "batch_size", 1)

    def choose(self, pool: Dataset, k: int, *, seed: int, backbone: Any, keep: str = "hard",
               batch_size: int = 64) -> tuple[np.ndarray, dict]:
        n, budget = len(pool), k
        if not callable(getattr(backbone, "reconstruction_loss", None)):
            raise SelectionError("mae_loss needs the current backbone (keyword 'backbone=' with a "
                                 f"reconstruction_loss method), got {type(backbone).__name__}")
        diagnostics: dict[str, Any] = {"keep": keep}
        losses = np.empty(n, np.float64)
        for start in range(0, n, batch_size):
            indices = np.arange(start, min(n, start + batch_size), dtype=np.int64)
            loss = np.asarray(backbone.reconstruction_loss(pool.load_images(indices), seed=seed))
            if loss.shape != (indices.size,) or not np.isfinite(loss).all():
                raise SelectionError(f"mae_loss: backbone.reconstruction_loss must return {indices.size} finite "
                                     f"values for a batch of {indices.size}, got shape {loss.shape}")
            losses[start:start + indices.size] = loss
        key = -losses if keep == "hard" else losses
        order = lowest_first(key)
        kept = np.sort(order[:budget]).astype(np.int64)
        removed = order[budget:]
        diagnostics.update({
            "loss_cut": float(losses[order[budget - 1]]),
            "mean_loss_kept": float(losses[kept].mean()),
            "mean_loss_removed": float(losses[removed].mean()) if removed.size else None,
        })
        return kept, diagnostics


@hookimpl
def delbench_register_selectors() -> list[type]:
    return [CoverageCentricSelection, MAELoss]
