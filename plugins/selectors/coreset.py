"""Geometric coreset selectors on embeddings: k-center greedy, herding, facility location.

All three are greedy algorithms whose exact form touches every item at every step (or needs
all pairwise similarities), which is out of reach at a million images on a small machine.
They share one documented approximation:

* **Partitions.** The pool is split by the shared spherical k-means
  (:mod:`delbench_plugins.lib.clustering`) into about ``n / partition_size`` groups; a group
  that comes out larger than twice ``partition_size`` is split again by k-means on its own
  rows (and, only if k-means cannot split it because its rows are identical, into
  consecutive chunks). Distances and similarities are then only taken *inside* a partition,
  so a step costs O(partition size), not O(n). With ``n ≤ partition_size`` there is one
  partition and the algorithm is the exact one.
* **Projection.** Rows are L2-normalised and, when ``projection_dim`` is smaller than the
  embedding dimension, multiplied by a seeded Gaussian random matrix (d × p, scaled by
  1/sqrt(p)), which preserves pairwise distances up to a small relative error
  (Johnson–Lindenstrauss). The projection is computed in one sequential pass over the
  (possibly float16, memory-mapped) embeddings.

Each selector records these choices (``partitions``, ``largest_partition``,
``projection_dim``) in its diagnostics.
"""
from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from delbench.sdk import (ConfigError, Dataset, SelectionError, Selector, check_choice, check_int, hookimpl,
                          largest_remainder)
from delbench_plugins.lib.clustering import (DEFAULT_CHUNK, DEFAULT_ITERATIONS, check_kmeans_params, cluster_members,
                                             faiss_available, kmeans, normalized_rows, single_threaded_blas)

#: partitions are split again when k-means leaves one bigger than this many times the target
OVERSIZE_FACTOR = 2
#: how often an oversized partition is re-clustered before it is cut into chunks
MAX_SPLIT_ROUNDS = 3


# --- shared machinery -----------------------------------------------------------------------


@dataclass(frozen=True)
class Partitioning:
    """Disjoint groups of pool rows; ``order`` lists all rows group by group."""

    members: list[np.ndarray]
    kmeans_backend: str

    @property
    def order(self) -> np.ndarray:
        return np.concatenate(self.members) if self.members else np.zeros(0, np.int64)

    @property
    def offsets(self) -> np.ndarray:
        return np.r_[0, np.cumsum([m.size for m in self.members])].astype(np.int64)

    def diagnostics(self) -> dict[str, Any]:
        sizes = [int(m.size) for m in self.members]
        return {"partitions": len(sizes), "largest_partition": max(sizes, default=0),
                "kmeans_backend": self.kmeans_backend}


def partition_pool(embeddings: Any, partition_size: int, *, seed: int,
                   kmeans_iterations: int = DEFAULT_ITERATIONS,
                   kmeans_backend: str = "auto") -> Partitioning:
    """Split the rows into k-means groups of about ``partition_size`` (see module docstring)."""
    n = int(embeddings.shape[0])
    if n <= partition_size:
        return Partitioning([np.arange(n, dtype=np.int64)] if n else [], "none")
    backends: set[str] = set()

    def split(rows: np.ndarray | None, count: int, round_: int) -> list[np.ndarray]:
        result = kmeans(embeddings, math.ceil(count / partition_size), seed=seed + round_,
                        iterations=kmeans_iterations, backend=kmeans_backend, rows=rows)
        backends.add(result.backend)
        groups = cluster_members(result.labels, result.n_clusters)
        return [(g if rows is None else rows[g]) for g in groups if g.size]

    pending = [(group, 1) for group in split(None, n, 0)]
    final: list[np.ndarray] = []
    while pending:
        group, rounds = pending.pop()
        if group.size <= OVERSIZE_FACTOR * partition_size:
            final.append(group)
            continue
        pieces = split(group, group.size, rounds) if rounds <= MAX_SPLIT_ROUNDS else [group]
        if len(pieces) > 1:
            pending.extend((piece, rounds + 1) for piece in pieces)
        else:  # k-means cannot split it (identical rows) or gave up: any cut is as good
            final.extend(np.array_split(group, math.ceil(group.size / partition_size)))
    final.sort(key=lambda g: int(g[0]))  # deterministic order: by first row
    return Partitioning(final, "+".join(sorted(backends)))


def random_projection(dim: int, projection_dim: int | None, seed: int) -> np.ndarray | None:
    """Seeded Gaussian d × p matrix scaled by 1/sqrt(p); None when no reduction is asked."""
    if projection_dim is None or projection_dim >= dim:
        return None
    rng = np.random.default_rng([int(seed), 0x5250])
    return (rng.standard_normal((dim, projection_dim)) / math.sqrt(projection_dim)).astype(np.float32)


def rows_in_partition_order(embeddings: Any, partitioning: Partitioning,
                            projection: np.ndarray | None, *, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Normalised (and projected) rows, float32, laid out partition by partition.

    One sequential pass over ``embeddings``; memory is the result (n × p float32) plus one
    chunk.
    """
    n, dim = int(embeddings.shape[0]), int(embeddings.shape[1])
    width = dim if projection is None else projection.shape[1]
    position = np.empty(n, np.int64)
    position[partitioning.order] = np.arange(n)
    out = np.empty((n, width), np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        block = normalized_rows(embeddings, start, stop)
        out[position[start:stop]] = block if projection is None else block @ projection
    return out


def partition_rows(embeddings: Any, members: np.ndarray, projection: np.ndarray | None) -> np.ndarray:
    """Normalised (and projected) float32 rows of one partition, read straight from ``embeddings``."""
    rows = normalized_rows(embeddings, 0, members.size, rows=members)
    return rows if projection is None else rows @ projection


@dataclass(frozen=True)
class CoresetSetup:
    """What every coreset selector starts from (:meth:`_CoresetSelector._set_up`)."""

    diagnostics: dict[str, Any]
    partitioning: Partitioning
    projection: np.ndarray | None = None


class _CoresetSelector(Selector):
    """Common parameters and set-up: the partitions and the projection."""

    requires_embeddings = True

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        check_kmeans_params(params)
        check_int(params, "partition_size", 1)
        check_int(params, "projection_dim", 1, allow_none=True)

    @staticmethod
    def _set_up(embeddings: Any, *, seed: int, partition_size: int, projection_dim: int | None,
                kmeans_iterations: int, kmeans_backend: str, diagnostics: dict[str, Any] | None = None) -> CoresetSetup:
        """Partition the pool and draw the projection.

        ``diagnostics`` are the caller's own entries; ``projection_dim`` and the partition
        details are added (``projection_dim`` None when the full dimension is kept).
        """
        diagnostics = {"projection_dim": projection_dim, **(diagnostics or {})}
        partitioning = partition_pool(embeddings, partition_size, seed=seed,
                                      kmeans_iterations=kmeans_iterations, kmeans_backend=kmeans_backend)
        diagnostics.update(partitioning.diagnostics())
        projection = random_projection(embeddings.shape[1], projection_dim, seed)
        diagnostics["projection_dim"] = None if projection is None else projection.shape[1]
        return CoresetSetup(diagnostics, partitioning, projection)


# --- k-center greedy ------------------------------------------------------------------------

def farthest_first_order(points: np.ndarray, start: int) -> np.ndarray:
    """Gonzalez's farthest-first traversal of a few points (rows), from row ``start``."""
    count = points.shape[0]
    order = [start]
    nearest = ((points - points[start]) ** 2).sum(axis=1)
    nearest[start] = -1.0
    for _ in range(count - 1):
        nxt = int(np.argmax(nearest))
        order.append(nxt)
        # visited points stay at -1: distances are ≥ 0, so the minimum keeps them there
        np.minimum(nearest, ((points - points[nxt]) ** 2).sum(axis=1), out=nearest)
        nearest[nxt] = -1.0
    return np.asarray(order, np.int64)


class KCenterGreedy(_CoresetSelector):
    """k-center greedy core-set (Sener & Savarese, "Active Learning for Convolutional Neural
    Networks: A Core-Set Approach", ICLR 2018; Gonzalez's 2-approximation, 1985).

    Repeatedly adds the item farthest from every item chosen so far, which minimises the
    largest distance from any pool item to its nearest chosen one (the covering radius).
    Scalable variant (module docstring): distances are Euclidean between L2-normalised rows
    after a seeded random projection to ``projection_dim`` dimensions, and only within k-means
    partitions of about ``partition_size`` rows. The greedy is still global: a heap holds
    each partition's current farthest item, and every step serves the partition with the
    largest one, so spread-out partitions receive more centres (no fixed allocation). Every
    partition receives its first centre — a seeded random member, as in the original
    algorithm — before any receives a second, in farthest-first order of the partition means
    starting from the partition of a seeded random row (so with fewer centres than
    partitions, the partitions covered are spread out). Exact when ``n ≤ partition_size`` and
    ``projection_dim ≥ d``. Parameters: ``partition_size`` (10,000), ``projection_dim`` (128;
    None keeps the full dimension), ``kmeans_iterations``, ``kmeans_backend``. Diagnostics:
    ``radius`` (largest remaining distance, projected space, over partitions with a centre),
    ``partitions_without_centre``, partition and projection details, ``time_s``.
    """

    name = "kcenter_greedy"
    version = "1"
    description = ("k-center greedy core-set (Sener & Savarese 2018): farthest-first within k-means "
                   "partitions on randomly projected embeddings, global heap over partitions")

    def choose(self, pool: Dataset, k: int, *, seed: int, embeddings: np.ndarray, partition_size: int = 10_000,
               projection_dim: int | None = 128, kmeans_iterations: int = DEFAULT_ITERATIONS,
               kmeans_backend: str = "auto") -> tuple[np.ndarray, dict]:
        setup = self._set_up(embeddings, seed=seed, partition_size=partition_size, projection_dim=projection_dim,
                             kmeans_iterations=kmeans_iterations, kmeans_backend=kmeans_backend)
        n, budget, partitioning, diagnostics = len(pool), k, setup.partitioning, setup.diagnostics
        rows = rows_in_partition_order(embeddings, partitioning, setup.projection)
        squared = np.einsum("ij,ij->i", rows, rows)
        offsets = partitioning.offsets
        count = len(partitioning.members)
        # squared distance of each row to its partition's nearest centre; -1 marks a centre
        nearest = np.full(n, np.inf, np.float32)
        chosen: list[int] = []

        def add_centre(position: int, part: int) -> None:
            lo, hi = offsets[part], offsets[part + 1]
            block = rows[lo:hi]
            distance = squared[lo:hi] - 2.0 * (block @ rows[position]) + squared[position]
            np.maximum(distance, 0.0, out=distance)  # rounding must not look like a centre
            np.minimum(nearest[lo:hi], distance, out=nearest[lo:hi])
            nearest[position] = -1.0
            chosen.append(position)

        rng = np.random.default_rng([int(seed), 0x4B43])
        means = np.stack([rows[offsets[c]:offsets[c + 1]].mean(axis=0) for c in range(count)])
        first_part = int(np.searchsorted(offsets, rng.integers(n), side="right") - 1)
        opened = farthest_first_order(means, first_part)[:budget]
        for part in opened.tolist():
            add_centre(int(offsets[part] + rng.integers(offsets[part + 1] - offsets[part])), part)

        heap = []
        for part in opened.tolist():
            lo, hi = offsets[part], offsets[part + 1]
            if nearest[lo:hi].max() >= 0.0:
                heap.append((-float(nearest[lo:hi].max()), part))
        heapq.heapify(heap)
        with single_threaded_blas():
            while len(chosen) < budget:
                _, part = heapq.heappop(heap)
                lo, hi = offsets[part], offsets[part + 1]
                position = int(lo + np.argmax(nearest[lo:hi]))  # ties: first in partition order
                add_centre(position, part)
                farthest = float(nearest[lo:hi].max())
                if farthest >= 0.0:  # someone in the partition is not a centre yet
                    heapq.heappush(heap, (-farthest, part))

        covered = np.zeros(count, bool)
        covered[opened] = True
        radius = max((float(nearest[offsets[c]:offsets[c + 1]].max()) for c in np.flatnonzero(covered)),
                     default=0.0)
        diagnostics.update({"radius": float(np.sqrt(max(radius, 0.0))),
                            "partitions_without_centre": int(count - covered.sum())})
        return partitioning.order[np.asarray(chosen, np.int64)], diagnostics


# --- herding --------------------------------------------------------------------------------

def herd(rows: np.ndarray, budget: int, share: float, carried: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy herding inside one partition, continuing the error of the partitions before.

    The partition should contribute ``share · mean(rows)`` to the selection's sum (``share``
    is its fractional budget) using ``budget`` picks; ``carried`` is the sum error left so far
    (selected sum minus target sum). Step t picks the unpicked row x minimising
    ``|| carried + S + x − (t / budget) · share · mean(rows) ||`` where S sums this partition's
    picks so far — Welling's herding (2009) in the form used by iCaRL (Rebuffi et al. 2017),
    with the earlier partitions' error fed forward so errors do not add up over partitions.
    Returns the picked positions in pick order and the new carried error.
    """
    target = rows.mean(axis=0, dtype=np.float64) * (share / budget if budget else 0.0)
    squared = np.einsum("ij,ij->i", rows, rows).astype(np.float64)
    error = np.array(carried, dtype=np.float64, copy=True)
    available = np.ones(rows.shape[0], bool)
    picked = np.empty(budget, np.int64)
    for step in range(budget):
        residual = (target - error).astype(np.float32)  # what the next pick should supply
        error -= target
        cost = squared - 2.0 * (rows @ residual)
        cost[~available] = np.inf
        best = int(np.argmin(cost))
        picked[step] = best
        available[best] = False
        error += rows[best]
    if budget == 0:
        error -= share * rows.mean(axis=0, dtype=np.float64)
    return picked, error


class Herding(_CoresetSelector):
    """Herding (Welling, "Herding Dynamical Weights to Learn", ICML 2009; kernel herding with a
    linear kernel, Chen, Welling & Smola, UAI 2010): greedily pick items whose running mean
    tracks the pool mean of the L2-normalised embeddings.

    Scalable variant (module docstring): the budget is split across k-means partitions of
    about ``partition_size`` rows in proportion to their sizes (largest remainder), and each
    partition herds towards its share of the pool sum, one partition in memory at a time
    (rows read straight from the embedding file). The sum error left by the partitions
    already done is carried into the next one, so the final mean error stays that of one
    herding run instead of adding up over partitions (and the rounding of the integer
    budgets is absorbed as well). By default in the full embedding dimension
    (``projection_dim`` None), because herding in a random projection only controls the
    projected part of the mean. The greedy uses no randomness; the seed only enters through
    the partitioning of large pools (the class sets ``deterministic_in_seed``). Parameters:
    ``partition_size`` (2,000), ``projection_dim`` (None), ``kmeans_iterations``,
    ``kmeans_backend``. Diagnostics: ``mean_error`` (distance between the selected and the
    pool mean of the normalised rows, in the herding space), partition details, ``time_s``.
    """

    name = "herding"
    version = "1"
    description = ("Herding (Welling 2009): running mean of the selection tracks the pool mean; "
                   "per k-means partition with proportional budgets and error carried over")
    deterministic_in_seed = True

    def choose(self, pool: Dataset, k: int, *, seed: int, embeddings: np.ndarray, partition_size: int = 2_000,
               projection_dim: int | None = None, kmeans_iterations: int = DEFAULT_ITERATIONS,
               kmeans_backend: str = "auto") -> tuple[np.ndarray, dict]:
        setup = self._set_up(embeddings, seed=seed, partition_size=partition_size, projection_dim=projection_dim,
                             kmeans_iterations=kmeans_iterations, kmeans_backend=kmeans_backend)
        projection = setup.projection
        n, budget, partitioning, diagnostics = len(pool), k, setup.partitioning, setup.diagnostics
        sizes = np.array([m.size for m in partitioning.members])
        # float quotas, as herding version 1 always used: there, remainders equal on paper are
        # ordered by float rounding, not by position as exact integer quotas would; the two differ
        # for about 0.2 % of size vectors, so switching would need a new version
        quotas = largest_remainder(budget, sizes.astype(np.float64))
        error = np.zeros(embeddings.shape[1] if projection is None else projection.shape[1])
        chosen: list[np.ndarray] = []
        with single_threaded_blas():
            for members, quota, size in zip(partitioning.members, quotas.tolist(), sizes.tolist()):
                rows = partition_rows(embeddings, members, projection)
                picked, error = herd(rows, quota, budget * size / n, error)
                chosen.append(members[picked])
        diagnostics["mean_error"] = float(np.linalg.norm(error) / budget)
        return np.concatenate(chosen), diagnostics


# --- facility location ----------------------------------------------------------------------

def _numpy_neighbours(rows: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products of every row with all rows, one row block at a time."""
    count = rows.shape[0]
    neighbours = np.empty((count, k), np.int64)
    values = np.empty((count, k), np.float32)
    for start in range(0, count, block):
        similarity = rows[start:start + block] @ rows.T
        top = (np.argpartition(similarity, count - k, axis=1)[:, count - k:] if k < count
               else np.broadcast_to(np.arange(count), similarity.shape))
        neighbours[start:start + block] = top
        values[start:start + block] = np.take_along_axis(similarity, top, axis=1)
    return neighbours, values


def _faiss_neighbours(rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    values, neighbours = faiss.knn(np.ascontiguousarray(rows), np.ascontiguousarray(rows), k,
                                   metric=faiss.METRIC_INNER_PRODUCT)
    return neighbours.astype(np.int64), values.astype(np.float32)


#: exact k-nearest-neighbour search by backend name; both give the same neighbours up to ties
KNN_BACKENDS = {"numpy": _numpy_neighbours, "faiss": _faiss_neighbours}


def resolve_knn_backend(backend: str) -> str:
    """"auto" → faiss when importable (about 10× faster here), numpy otherwise."""
    if backend == "auto":
        return "faiss" if faiss_available() else "numpy"
    if backend not in KNN_BACKENDS:
        raise SelectionError(f"knn_backend must be 'auto', 'faiss' or 'numpy', got {backend!r}")
    if backend == "faiss" and not faiss_available():
        raise SelectionError("knn_backend 'faiss' requested but faiss is not installed "
                             "(pip install 'delbench[faiss]' or use knn_backend='numpy')")
    return backend


def knn_graph(rows: np.ndarray, n_neighbors: int, *, backend: str = "numpy"
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse k-nearest-neighbour similarity graph of unit rows (cosine, clipped at 0).

    Exact search (``backend`` "numpy" or "faiss"). Every row is among its own neighbours with
    similarity 1 (with identical rows the search may rank a twin first; the weakest
    neighbour then makes room for the row itself). Returns ``(source, target, similarity)``:
    ``target`` is one of the ``n_neighbors`` most similar rows of ``source``.
    """
    count = rows.shape[0]
    k = min(n_neighbors, count)
    if count == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    neighbours, values = KNN_BACKENDS[backend](rows, k)
    own = np.arange(count)
    missing = ~(neighbours == own[:, None]).any(axis=1)
    weakest = np.argmin(values, axis=1)
    neighbours[missing, weakest[missing]] = own[missing]
    values[neighbours == own[:, None]] = 1.0
    return (np.repeat(own, k), neighbours.ravel(), np.clip(values, 0.0, 1.0).ravel())


def lazy_greedy_facility_location(count: int, source: np.ndarray, target: np.ndarray,
                                  similarity: np.ndarray, budget: int) -> tuple[np.ndarray, float, int]:
    """Maximise F(S) = Σ_i max_{j∈S} sim(i, j) over the sparse graph by lazy greedy.

    Minoux's accelerated greedy (1978): marginal gains of a submodular function only shrink,
    so a heap of stale gains is an upper bound and an item is taken as soon as its refreshed
    gain still tops the heap. Ties go to the lower node number. Returns the picked nodes in
    pick order, F(S) and the number of gain evaluations.
    """
    by_target = np.argsort(target, kind="stable")
    covered_rows = source[by_target]
    weights = similarity[by_target].astype(np.float64)
    bounds = np.r_[0, np.cumsum(np.bincount(target, minlength=count))].tolist()
    initial = np.bincount(target, weights=similarity.astype(np.float64), minlength=count)
    heap = list(zip((-initial).tolist(), range(count)))
    heapq.heapify(heap)
    coverage = np.zeros(count, np.float64)
    picked: list[int] = []
    evaluations = 0
    objective = 0.0
    while len(picked) < budget:
        _, node = heapq.heappop(heap)
        lo, hi = bounds[node], bounds[node + 1]
        rows, weight = covered_rows[lo:hi], weights[lo:hi]
        gain = float(np.maximum(weight - coverage[rows], 0.0).sum())
        evaluations += 1
        if not heap or gain >= -heap[0][0]:
            picked.append(node)
            objective += gain
            coverage[rows] = np.maximum(coverage[rows], weight)
        else:
            heapq.heappush(heap, (-gain, node))
    return np.asarray(picked, np.int64), objective, evaluations


class FacilityLocation(_CoresetSelector):
    """Facility location (submodular coverage; e.g. Mirzasoleiman, Bilmes & Leskovec,
    "Coresets for Data-efficient Training of Machine Learning Models", ICML 2020; lazy
    greedy of Minoux 1978): choose S maximising Σ_i max_{j∈S} sim(i, j), so that every pool
    item has a similar chosen item.

    Similarities live on a sparse k-nearest-neighbour graph (``n_neighbors`` per item, self
    included, cosine similarity of the L2-normalised — and by default randomly projected —
    embeddings, clipped at 0), found by exact search inside k-means partitions of about
    ``partition_size`` rows (module docstring), so near a partition border an item's
    neighbours are its nearest ones inside the partition. The search runs in faiss when it
    is installed (``knn_backend='auto'``; about 10× faster) or in numpy; both are exact and
    differ at most in how exact ties are broken; the backend is recorded. The lazy greedy runs once over
    the whole graph, so partitions get centres in proportion to what they add, without a
    fixed allocation. Once every item is fully covered, the remaining gains are zero and the
    rest of the budget goes to the lowest-numbered items, in partition order. The greedy uses
    no randomness; the seed enters only through the partitioning and projection of large
    pools (the class sets ``deterministic_in_seed``). Parameters: ``n_neighbors`` (10),
    ``partition_size`` (5,000), ``projection_dim`` (128; None keeps d), ``kmeans_iterations``,
    ``kmeans_backend``, ``knn_backend`` ('auto' | 'faiss' | 'numpy'). Diagnostics: ``coverage`` (F(S)/n, in [0, 1]), ``gain_evaluations``,
    partition and projection details, ``time_s``.
    """

    name = "facility_location"
    version = "1"
    description = ("Facility location on a sparse kNN cosine graph (per k-means partition), "
                   "maximised by lazy greedy (Minoux)")
    deterministic_in_seed = True

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        super().check_params(params)
        check_int(params, "n_neighbors", 1)
        check_choice(params, "knn_backend", ("auto", *KNN_BACKENDS))
        if params.get("knn_backend") == "faiss" and not faiss_available():
            raise ConfigError("knn_backend 'faiss' needs faiss, which is not installed "
                              "(pip install 'delbench[faiss]', or use 'numpy' or 'auto')")

    def choose(self, pool: Dataset, k: int, *, seed: int, embeddings: np.ndarray, n_neighbors: int = 10,
               partition_size: int = 5_000, projection_dim: int | None = 128,
               kmeans_iterations: int = DEFAULT_ITERATIONS, kmeans_backend: str = "auto",
               knn_backend: str = "auto") -> tuple[np.ndarray, dict]:
        started = time.perf_counter()
        knn_backend = resolve_knn_backend(knn_backend)
        setup = self._set_up(embeddings, seed=seed, partition_size=partition_size, projection_dim=projection_dim,
                             kmeans_iterations=kmeans_iterations, kmeans_backend=kmeans_backend,
                             diagnostics={"n_neighbors": n_neighbors, "knn_backend": knn_backend})
        n, budget, partitioning, diagnostics = len(pool), k, setup.partitioning, setup.diagnostics
        rows = rows_in_partition_order(embeddings, partitioning, setup.projection)
        if setup.projection is not None:  # back onto the unit sphere, so inner product = cosine
            norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
            np.divide(rows, norms[:, None], out=rows, where=norms[:, None] > 0)
        offsets = partitioning.offsets
        sources, targets, weights = [], [], []
        for part in range(len(partitioning.members)):
            lo, hi = int(offsets[part]), int(offsets[part + 1])
            source, target, weight = knn_graph(rows[lo:hi], n_neighbors, backend=knn_backend)
            sources.append(source + lo)
            targets.append(target + lo)
            weights.append(weight)
        del rows
        graphed = time.perf_counter()
        picked, objective, evaluations = lazy_greedy_facility_location(
            n, np.concatenate(sources), np.concatenate(targets), np.concatenate(weights), budget)
        diagnostics.update({"coverage": objective / n, "gain_evaluations": evaluations,
                            "graph_time_s": round(graphed - started, 3)})
        return partitioning.order[picked], diagnostics


@hookimpl
def delbench_register_selectors() -> list[type]:
    return [KCenterGreedy, Herding, FacilityLocation]
