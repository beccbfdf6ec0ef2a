"""Geometric coreset selectors on embeddings: k-center greedy, herding, facility location.

All three are greedy algorithms whose exact form touches every item at every step (or needs
all pairwise similarities). Each runs that exact form while it is cheap and a documented
approximation beyond.

Exact where it is cheap
    Each selector takes ``exact`` (True, False or "auto", the default). The exact algorithm is
    the authors' greedy on every row at once: one partition, the full embedding dimension and,
    for facility location, the dense similarity matrix (computed in row blocks) instead of a
    kNN graph. Given the same metric and start, its steps pick what the authors' code picks.
    "auto" runs it when its estimated cost (:meth:`_CoresetSelector.exact_cost`: a fixed
    function of n, d and k whose constants were measured on the 2-core development machine)
    stays within :data:`EXACT_MAX_SECONDS` and :data:`EXACT_MAX_BYTES` (about a minute and 2
    GiB), and the approximation above; True and False force either. The estimate, not a
    clock, decides, so the same pool gives the same subset on every machine. The diagnostics
    say which ran (``exact``) and what the exact algorithm was estimated to cost
    (``exact_estimate_s``, ``exact_estimate_mib``). ``benchmarks/perf/selection.py
    --compare-exact`` measures each approximation against the exact algorithm at the bound
    (docs/performance.md).

The approximations share two devices (each selector's docstring says which it uses):

* **Partitions.** The pool is split by the shared spherical k-means
  (:mod:`delbench_plugins.lib.clustering`) into about ``n / partition_size`` groups; a group
  that comes out larger than twice ``partition_size`` is split again by k-means on its own
  rows (and, only if k-means cannot split it because its rows are identical, into
  consecutive chunks). Distances and similarities are then only taken *inside* a partition,
  so a step costs O(partition size), not O(n).
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
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from delbench.sdk import (ConfigError, Dataset, SelectionError, Selector, check_choice, check_int, hookimpl,
                          largest_remainder)
from delbench_plugins.lib.clustering import (DEFAULT_CHUNK, DEFAULT_ITERATIONS, check_kmeans_params, cluster_members,
                                             faiss_available, kmeans, normalized_rows, single_threaded_blas)

#: partitions are split again when k-means leaves one bigger than this many times the target
OVERSIZE_FACTOR = 2
#: how often an oversized partition is re-clustered before it is cut into chunks
MAX_SPLIT_ROUNDS = 3
#: ``exact="auto"`` runs the exact algorithm while its estimated time is at most this many
#: seconds (on the 2-core development machine) ...
EXACT_MAX_SECONDS = 60.0
#: ... and its estimated peak memory at most this many bytes
EXACT_MAX_BYTES = 2 * 2**30
#: cost model of the exact algorithms, measured on the 2-core development machine while other
#: jobs shared it (load average 3–3.6; docs/performance.md: ``benchmarks/perf/selection.py
#: --compare-exact`` prints estimate and measurement side by side): seconds per multiply-add
#: of a greedy step's n × d matrix-vector product and its other passes over n (memory-bound;
#: k-center 464 ps and herding 335 ps at n = 71,791, d = 768; 290 ps on the idle machine), ...
GREEDY_STEP_SECONDS = 4.5e-10
#: ... a step's other passes over its n rows, counted as this many multiply-adds per row, ...
GREEDY_STEP_PASSES = 8
#: ... seconds per multiply-add of the dense n × n × d similarity product (BLAS on both
#: threads: 13.5 ps measured idle, 30 ps with other jobs running) ...
DENSE_SECONDS = 3.0e-11
#: ... and seconds per n² of the lazy greedy on the dense matrix: up to 30·n gain evaluations
#: of a row were measured (random Gaussian rows, the worst case: 28 s at n = 20,000; 7.5·n
#: on clustered rows)
DENSE_GREEDY_SECONDS = 7.0e-8
#: the smallest partition ``partition_size="auto"`` makes (k-center greedy)
MIN_AUTO_PARTITION = 1_000
#: rows per block when the dense similarities are computed
DENSE_BLOCK = 2048


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
class ExactCost:
    """Estimated time (seconds on the 2-core development machine) and peak memory (bytes) of
    a selector's exact algorithm on one problem (see :meth:`_CoresetSelector.exact_cost`)."""

    seconds: float
    bytes: int

    def within_bounds(self) -> bool:
        """Both within :data:`EXACT_MAX_SECONDS` and :data:`EXACT_MAX_BYTES` (read at call time)."""
        return self.seconds <= EXACT_MAX_SECONDS and self.bytes <= EXACT_MAX_BYTES


def check_exact(params: Mapping[str, Any]) -> None:
    """``exact`` is True, False or "auto" (not 1 or 0: they compare equal to the booleans)."""
    value = params.get("exact", "auto")
    if not (isinstance(value, (bool, np.bool_)) or (isinstance(value, str) and value == "auto")):
        raise ConfigError(f"exact must be True, False or 'auto', got {value!r}")


@dataclass(frozen=True)
class CoresetSetup:
    """What every coreset selector starts from (:meth:`_CoresetSelector._set_up`)."""

    diagnostics: dict[str, Any]
    partitioning: Partitioning
    projection: np.ndarray | None = None
    exact: bool = False


class _CoresetSelector(Selector):
    """Common parameters and set-up: exact or approximate, the partitions and the projection."""

    requires_embeddings = True
    #: parameters that only shape the approximation; refused together with ``exact=True``
    approximation_params: tuple[str, ...] = ("partition_size", "projection_dim", "kmeans_iterations",
                                             "kmeans_backend")
    #: the selector sizes its partitions itself with ``partition_size="auto"``
    auto_partition_size: ClassVar[bool] = False

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        check_kmeans_params(params)
        if not (cls.auto_partition_size and params.get("partition_size") == "auto"):
            check_int(params, "partition_size", 1)
        check_int(params, "projection_dim", 1, allow_none=True)
        check_exact(params)
        exact = params.get("exact", "auto")
        if isinstance(exact, (bool, np.bool_)) and exact:
            ignored = [name for name in cls.approximation_params if name in params]
            if ignored:
                raise ConfigError(f"exact=True runs the exact algorithm, which takes no {', '.join(ignored)} "
                                  f"(they set the approximation); drop them or use exact='auto'/False")

    @classmethod
    def exact_cost(cls, n: int, dim: int, k: int) -> ExactCost:
        """The estimated cost of the exact algorithm on ``n`` rows of dimension ``dim``, ``k`` picks."""
        raise NotImplementedError

    @classmethod
    def _set_up(cls, embeddings: Any, k: int, *, seed: int, exact: bool | str, partition_size: int,
                projection_dim: int | None, kmeans_iterations: int, kmeans_backend: str,
                diagnostics: dict[str, Any] | None = None) -> CoresetSetup:
        """Decide exact or approximate, then partition the pool and draw the projection.

        The exact algorithm has one partition and no projection. ``diagnostics`` are the
        caller's own entries; ``exact``, its cost estimate, ``projection_dim`` (None when the
        full dimension is kept) and the partition details are added.
        """
        n, dim = int(embeddings.shape[0]), int(embeddings.shape[1])
        cost = cls.exact_cost(n, dim, k)
        run_exact = cost.within_bounds() if exact == "auto" else bool(exact)
        diagnostics = {"exact": run_exact, "exact_estimate_s": round(cost.seconds, 3),
                       "exact_estimate_mib": round(cost.bytes / 2**20, 1), **(diagnostics or {})}
        if run_exact:
            partitioning = Partitioning([np.arange(n, dtype=np.int64)] if n else [], "none")
            projection = None
        else:
            partitioning = partition_pool(embeddings, partition_size, seed=seed,
                                          kmeans_iterations=kmeans_iterations, kmeans_backend=kmeans_backend)
            projection = random_projection(dim, projection_dim, seed)
        diagnostics.update(partitioning.diagnostics())
        diagnostics["projection_dim"] = None if projection is None else projection.shape[1]
        return CoresetSetup(diagnostics, partitioning, projection, run_exact)


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


def nearest_squared_distances(rows: np.ndarray, squared: np.ndarray, centres: np.ndarray,
                              *, block: int = DENSE_BLOCK) -> np.ndarray:
    """Squared Euclidean distance of every row to its nearest row of ``centres`` (positions),
    float32, −1 at the centres; one (block × k) matrix product at a time."""
    centre_rows, centre_squared = rows[centres], squared[centres]
    nearest = np.empty(rows.shape[0], np.float32)
    for start in range(0, rows.shape[0], block):
        distance = squared[start:start + block, None] - 2.0 * (rows[start:start + block] @ centre_rows.T)
        distance += centre_squared
        nearest[start:start + block] = distance.min(axis=1) if centres.size else np.inf
    np.maximum(nearest, 0.0, out=nearest)  # rounding must not look like a centre
    nearest[centres] = -1.0
    return nearest


def farthest_first_steps(rows: np.ndarray, squared: np.ndarray, nearest: np.ndarray, steps: int) -> list[int]:
    """Continue Gonzalez's traversal over all ``rows`` for ``steps`` centres: each takes the
    row farthest from its nearest centre (``nearest``: squared distances, −1 at centres,
    updated in place; ties to the first row)."""
    picked = []
    for _ in range(steps):
        position = int(np.argmax(nearest))
        distance = squared - 2.0 * (rows @ rows[position]) + squared[position]
        np.maximum(distance, 0.0, out=distance)
        np.minimum(nearest, distance, out=nearest)
        nearest[position] = -1.0
        picked.append(position)
    return picked


def global_steps_that_fit(requested: int, cost: ExactCost) -> int:
    """``requested`` when the approximation's global final steps (estimated ``cost``) stay
    within the exact algorithm's bounds, else 0."""
    return requested if requested and cost.within_bounds() else 0


class KCenterGreedy(_CoresetSelector):
    """k-center greedy core-set (Sener & Savarese, "Active Learning for Convolutional Neural
    Networks: A Core-Set Approach", ICLR 2018; Gonzalez's 2-approximation, 1985).

    Repeatedly adds the item farthest from every item chosen so far, which minimises the
    largest distance from any pool item to its nearest chosen one (the covering radius). The
    first centre is a seeded random row, then ``argmax`` of the nearest-centre distance (ties:
    the first row), as in the authors' code (google/active-learning
    ``sampling_methods/kcenter_greedy.py``) and DeepCore's ``k_center_greedy``; distances are
    Euclidean between L2-normalised rows.

    Exact (module docstring; ``exact='auto'`` while about n·d·k ≤ 1.7·10¹¹, e.g. up to 58,622
    rows at d = 768 and 5 %): one partition, the full dimension. Approximation beyond, in two
    stages. First, all but the last ``global_steps`` centres by the same greedy after a seeded
    random projection to ``projection_dim`` dimensions (128), within k-means partitions of
    ``partition_size`` rows. ``partition_size='auto'`` (the default) makes them as large as the
    time bound allows — the largest size whose projected greedy the cost model puts within
    :data:`EXACT_MAX_SECONDS`, at least :data:`MIN_AUTO_PARTITION` — so past the exact bound
    the first stage is the projected greedy on one partition (up to about 140,000 rows at d =
    768 and 5 %). Then every row's distance to its nearest centre is computed in the full
    dimension (one n × k × d matrix product, in blocks) and the last ``global_steps`` (256)
    centres are exact farthest-first steps over the whole pool: the radius is the distance to
    the farthest row, so the final steps in the true geometry remove what the projection
    missed. They run while their estimated cost (:meth:`global_steps_cost`) fits the exact
    algorithm's bounds; beyond, the first stage takes the whole budget. Measured at the exact
    bound (docs/performance.md): the projected greedy alone leaves the radius 2–5 % above the
    exact one, with the global steps it is between 0.8 % below and 1.1 % above; partitions cost
    more than the projection — a cluster that k-means splits needs a centre per piece, and with
    about as many clusters as centres the radius stays at the distance between clusters (eight
    partitions of 10,000, the version 1 default, 41 % above the exact radius on the synthetic
    pool at 5 %). Over partitions the greedy is still global: a heap holds each partition's
    current farthest item, and every step serves the partition with the largest one, so
    spread-out partitions receive more centres (no fixed allocation). Every partition receives
    its first centre — a seeded random member — before any receives a second, in farthest-first
    order of the partition means starting from the partition of a seeded random row (so with
    fewer centres than partitions, the partitions covered are spread out). Parameters:
    ``exact`` ('auto'), ``partition_size`` ('auto' or rows), ``projection_dim`` (128; None
    keeps the full dimension), ``global_steps`` (256), ``kmeans_iterations``,
    ``kmeans_backend``. Diagnostics: ``exact``, ``radius`` (largest remaining distance, in the
    full dimension when the exact algorithm or the global steps ran, else in the projection and
    within partitions with a centre), ``global_steps`` (how many ran),
    ``partitions_without_centre``, ``partition_size``, partition and projection details,
    ``time_s``. Version 2: exact below the bound, partitions sized by the bound and the global
    steps (version 1 always projected and partitioned by 10,000).
    """

    name = "kcenter_greedy"
    version = "2"
    auto_partition_size = True
    approximation_params = (*_CoresetSelector.approximation_params, "global_steps")
    description = ("k-center greedy core-set (Sener & Savarese 2018): exact farthest-first where cheap, else "
                   "on a random projection within k-means partitions, then exact global final steps")

    @classmethod
    def exact_cost(cls, n: int, dim: int, k: int) -> ExactCost:
        # a step is one n × d product plus a few passes over n (measured: GREEDY_STEP_SECONDS);
        # memory: the rows in float32 and three float32 vectors of n
        return ExactCost(GREEDY_STEP_SECONDS * n * (dim + GREEDY_STEP_PASSES) * k, 4 * n * (dim + 3))

    @staticmethod
    def budgeted_partition_size(n: int, k: int, width: int) -> int:
        """The largest partition whose greedy (k steps over ``width``-wide rows) stays within
        :data:`EXACT_MAX_SECONDS` by the exact algorithm's cost model; at least
        :data:`MIN_AUTO_PARTITION`, at most n (one partition)."""
        steps = GREEDY_STEP_SECONDS * (width + GREEDY_STEP_PASSES) * max(k, 1)
        return int(min(max(n, 1), max(MIN_AUTO_PARTITION, EXACT_MAX_SECONDS // steps)))

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        super().check_params(params)
        check_int(params, "global_steps", 0)

    @staticmethod
    def global_steps_cost(n: int, dim: int, k: int, steps: int, width: int) -> ExactCost:
        """Estimated cost of the final global steps: every row's full-dimension distance to the
        k − steps centres (one n × (k − steps) × d product), then ``steps`` exact greedy steps;
        memory: the full-dimension and the ``width``-wide rows in float32."""
        seconds = DENSE_SECONDS * n * (k - steps) * dim + GREEDY_STEP_SECONDS * n * (dim + GREEDY_STEP_PASSES) * steps
        return ExactCost(seconds, 4 * n * (dim + width + 3))

    def choose(self, pool: Dataset, k: int, *, seed: int, embeddings: np.ndarray, exact: bool | str = "auto",
               partition_size: int | str = "auto", projection_dim: int | None = 128, global_steps: int = 256,
               kmeans_iterations: int = DEFAULT_ITERATIONS, kmeans_backend: str = "auto") -> tuple[np.ndarray, dict]:
        n, dim = len(pool), int(embeddings.shape[1])
        width = min(dim, projection_dim or dim)
        if partition_size == "auto":
            partition_size = self.budgeted_partition_size(n, k, width)
        setup = self._set_up(embeddings, k, seed=seed, exact=exact, partition_size=partition_size,
                             projection_dim=projection_dim, kmeans_iterations=kmeans_iterations,
                             kmeans_backend=kmeans_backend, diagnostics={"partition_size": partition_size})
        budget, partitioning, diagnostics = k, setup.partitioning, setup.diagnostics
        approximate = setup.projection is not None or len(partitioning.members) > 1
        requested = min(global_steps, max(budget - 1, 0)) if approximate else 0
        final = global_steps_that_fit(requested, self.global_steps_cost(n, dim, budget, requested, width))
        first_stage = budget - final
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
        opened = farthest_first_order(means, first_part)[:first_stage]
        for part in opened.tolist():
            add_centre(int(offsets[part] + rng.integers(offsets[part + 1] - offsets[part])), part)

        heap = []
        for part in opened.tolist():
            lo, hi = offsets[part], offsets[part + 1]
            if nearest[lo:hi].max() >= 0.0:
                heap.append((-float(nearest[lo:hi].max()), part))
        heapq.heapify(heap)
        with single_threaded_blas():
            while len(chosen) < first_stage:
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
        if final:  # the last centres: exact steps over the whole pool in the full dimension
            del rows
            full = rows_in_partition_order(embeddings, partitioning, None)
            full_squared = np.einsum("ij,ij->i", full, full)
            nearest = nearest_squared_distances(full, full_squared, np.asarray(chosen, np.int64))
            with single_threaded_blas():
                chosen += farthest_first_steps(full, full_squared, nearest, final)
            radius = float(nearest.max())
        diagnostics.update({"radius": float(np.sqrt(max(radius, 0.0))), "global_steps": final,
                            "partitions_without_centre": int(count - covered.sum())})
        return partitioning.order[np.asarray(chosen, np.int64)], diagnostics


# --- herding --------------------------------------------------------------------------------

def herd(rows: np.ndarray, budget: int, share: float, carried: np.ndarray, *,
         available: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy herding over ``rows`` (a partition, or the whole pool), continuing the error of
    the picks before.

    The rows should contribute ``share · mean(rows)`` to the selection's sum (``share`` is
    their fractional budget) using ``budget`` picks; ``carried`` is the sum error left so far
    (selected sum minus target sum). Step t picks the unpicked row x minimising
    ``|| carried + S + x − (t / budget) · share · mean(rows) ||`` where S sums these picks so
    far — the argmin of Welling's herding (2009) as iCaRL (Rebuffi et al. 2017) implements it,
    with the earlier picks' error fed forward so errors do not add up over partitions.
    ``available`` (bool per row, updated in place) excludes rows picked before. Returns the
    picked positions in pick order and the new carried error.
    """
    target = rows.mean(axis=0, dtype=np.float64) * (share / budget if budget else 0.0)
    squared = np.einsum("ij,ij->i", rows, rows).astype(np.float64)
    error = np.array(carried, dtype=np.float64, copy=True)
    available = np.ones(rows.shape[0], bool) if available is None else available
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

    Step t picks the unpicked item x minimising ``||(t + 1)·μ − (S + x)||`` (μ the pool mean,
    S the sum of the picks so far): the argmin of the papers and of iCaRL's code (Rebuffi et
    al. 2017, the form most herding baselines follow). DeepCore's ``herding``
    (PatrickZH/DeepCore ``deepcore/methods/herding.py``) takes the *argmax* of that distance,
    which picks the item farthest from what the mean needs and does not track it; it is not
    followed here.

    Exact (module docstring; ``exact='auto'`` while about n·d·k ≤ 1.7·10¹¹, e.g. up to 58,622
    rows at d = 768 and 5 %): the greedy over every row. Approximation beyond: the budget
    less the last ``global_steps`` picks is split across k-means partitions of about
    ``partition_size`` rows in proportion to their sizes (largest remainder), and each
    partition herds towards its share of the pool sum, one partition in memory at a time
    (rows read straight from the embedding file). The sum error left by the partitions
    already done is carried into the next one, so errors do not add up over partitions (and
    the rounding of the integer budgets is absorbed as well). The last ``global_steps`` picks
    (256) are exact herding steps over the whole pool, continuing that error: the final mean
    error is set by the last steps, and a partition offers them too few candidates (measured
    at the exact bound in three settings, docs/performance.md: partitions alone 6 % and 11 % above the
    exact algorithm's mean error, and 14 % below in the third; with the 256 global steps
    between 4 % below and 1.2 % above). Those steps hold the pool's rows in float32 and run
    while their estimated cost fits the exact algorithm's bounds (n·d·4 bytes: up to 699,050
    rows at d = 768); beyond, the partitions take the whole budget. In the full embedding dimension
    by default (``projection_dim`` None), because herding in a random projection only
    controls the projected part of the mean. The greedy uses no randomness; the seed only
    enters through the partitioning of large pools (the class sets ``deterministic_in_seed``).
    Parameters: ``exact`` ('auto'), ``partition_size`` (2,000), ``projection_dim`` (None),
    ``global_steps`` (256), ``kmeans_iterations``, ``kmeans_backend``. Diagnostics: ``exact``,
    ``mean_error`` (distance between the selected and the pool mean of the normalised rows,
    in the herding space), ``global_steps`` (how many ran), partition details, ``time_s``.
    Version 2: exact below the bound and the global steps (version 1 always partitioned).
    """

    name = "herding"
    version = "2"
    approximation_params = (*_CoresetSelector.approximation_params, "global_steps")
    description = ("Herding (Welling 2009): running mean of the selection tracks the pool mean; exact where "
                   "cheap, else per k-means partition with error carried over and global final steps")
    deterministic_in_seed = True

    @classmethod
    def exact_cost(cls, n: int, dim: int, k: int) -> ExactCost:
        # a step is one n × d product plus a few passes over n, as k-center's
        return ExactCost(GREEDY_STEP_SECONDS * n * (dim + GREEDY_STEP_PASSES) * k, 4 * n * (dim + 4))

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        super().check_params(params)
        check_int(params, "global_steps", 0)

    def choose(self, pool: Dataset, k: int, *, seed: int, embeddings: np.ndarray, exact: bool | str = "auto",
               partition_size: int = 2_000, projection_dim: int | None = None, global_steps: int = 256,
               kmeans_iterations: int = DEFAULT_ITERATIONS, kmeans_backend: str = "auto") -> tuple[np.ndarray, dict]:
        setup = self._set_up(embeddings, k, seed=seed, exact=exact, partition_size=partition_size,
                             projection_dim=projection_dim, kmeans_iterations=kmeans_iterations,
                             kmeans_backend=kmeans_backend)
        projection = setup.projection
        n, budget, partitioning, diagnostics = len(pool), k, setup.partitioning, setup.diagnostics
        width = embeddings.shape[1] if projection is None else projection.shape[1]
        sizes = np.array([m.size for m in partitioning.members])
        # the last picks search the whole pool when there are partitions and the steps fit the bounds
        requested = min(budget, global_steps) if len(sizes) > 1 else 0
        final = global_steps_that_fit(requested, ExactCost(
            GREEDY_STEP_SECONDS * n * (width + GREEDY_STEP_PASSES) * requested, 4 * n * width))
        in_partitions = budget - final
        # float quotas, as herding version 1 always used: there, remainders equal on paper are
        # ordered by float rounding, not by position as exact integer quotas would; the two differ
        # for about 0.2 % of size vectors, so switching would need a new version
        quotas = largest_remainder(in_partitions, sizes.astype(np.float64))
        error = np.zeros(width)
        chosen: list[np.ndarray] = []
        with single_threaded_blas():
            for members, quota, size in zip(partitioning.members, quotas.tolist(), sizes.tolist()):
                rows = partition_rows(embeddings, members, projection)
                picked, error = herd(rows, quota, in_partitions * size / n, error)
                chosen.append(members[picked])
            if final:
                order = partitioning.order
                available = np.ones(n, bool)
                available[np.argsort(order)[np.concatenate(chosen)]] = False
                picked, error = herd(rows_in_partition_order(embeddings, partitioning, projection), final, final,
                                     error, available=available)
                chosen.append(order[picked])
        diagnostics.update({"global_steps": final, "mean_error": float(np.linalg.norm(error) / budget)})
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


def lazy_greedy(initial_gains: np.ndarray, gain: Callable[[int], float], take: Callable[[int], None],
                budget: int) -> tuple[np.ndarray, float, int]:
    """Minoux's accelerated (lazy) greedy (1978) for a monotone submodular function.

    Marginal gains only shrink as the selection grows, so a heap of stale gains (from
    ``initial_gains``) bounds them from above and a node is taken as soon as its refreshed
    ``gain(node)`` still tops the heap; ``take(node)`` adds it to the selection. Ties go to the
    lower node number. Returns the picked nodes in pick order, the sum of their gains and the
    number of gain evaluations.
    """
    heap = list(zip((-np.asarray(initial_gains, np.float64)).tolist(), range(len(initial_gains))))
    heapq.heapify(heap)
    picked: list[int] = []
    evaluations = 0
    objective = 0.0
    while len(picked) < budget:
        _, node = heapq.heappop(heap)
        value = gain(node)
        evaluations += 1
        if not heap or value >= -heap[0][0]:
            picked.append(node)
            objective += value
            take(node)
        else:
            heapq.heappush(heap, (-value, node))
    return np.asarray(picked, np.int64), objective, evaluations


def lazy_greedy_facility_location(count: int, source: np.ndarray, target: np.ndarray,
                                  similarity: np.ndarray, budget: int) -> tuple[np.ndarray, float, int]:
    """Maximise F(S) = Σ_i max_{j∈S} sim(i, j) over a sparse graph by lazy greedy.

    ``target`` is one of the neighbours of ``source`` with similarity ``similarity``; a
    node's gain is summed over the rows it is a neighbour of (:func:`lazy_greedy`). Returns
    the picked nodes in pick order, F(S) and the number of gain evaluations.
    """
    by_target = np.argsort(target, kind="stable")
    covered_rows = source[by_target]
    weights = similarity[by_target].astype(np.float64)
    bounds = np.r_[0, np.cumsum(np.bincount(target, minlength=count))].tolist()
    coverage = np.zeros(count, np.float64)

    def gain(node: int) -> float:
        lo, hi = bounds[node], bounds[node + 1]
        return float(np.maximum(weights[lo:hi] - coverage[covered_rows[lo:hi]], 0.0).sum())

    def take(node: int) -> None:
        lo, hi = bounds[node], bounds[node + 1]
        rows = covered_rows[lo:hi]
        coverage[rows] = np.maximum(coverage[rows], weights[lo:hi])

    initial = np.bincount(target, weights=similarity.astype(np.float64), minlength=count)
    return lazy_greedy(initial, gain, take, budget)


def dense_similarities(rows: np.ndarray, *, block: int = DENSE_BLOCK) -> np.ndarray:
    """All cosine similarities of unit ``rows``, float32 n × n, clipped to [0, 1], diagonal 1.

    Computed ``block`` rows at a time straight into the result, so the peak memory is the
    result (4·n² bytes) and the rows; the products use every BLAS thread.
    """
    count = rows.shape[0]
    similarity = np.empty((count, count), np.float32)
    for start in range(0, count, block):
        part = similarity[start:start + block]
        np.matmul(rows[start:start + block], rows.T, out=part)
        np.clip(part, 0.0, 1.0, out=part)
    similarity[np.arange(count), np.arange(count)] = 1.0  # as in the kNN graph: self-similarity 1
    return similarity


def dense_facility_location(similarity: np.ndarray, budget: int) -> tuple[np.ndarray, float, int]:
    """Lazy greedy facility location on the dense matrix: F(S) = Σ_i max_{j∈S} similarity[j, i].

    Row j holds what picking j offers every item, so a gain is one pass over a row. The
    result is the plain greedy's (argmax of the gains, ties to the lower index) up to float
    rounding of near-equal gains. Returns the picked rows in pick order, F(S) and the number
    of gain evaluations.
    """
    coverage = np.zeros(similarity.shape[0], np.float32)

    def gain(node: int) -> float:
        return float(np.maximum(similarity[node] - coverage, 0.0).sum(dtype=np.float64))

    def take(node: int) -> None:
        np.maximum(coverage, similarity[node], out=coverage)

    return lazy_greedy(similarity.sum(axis=1, dtype=np.float64), gain, take, budget)


class FacilityLocation(_CoresetSelector):
    """Facility location (submodular coverage; e.g. Mirzasoleiman, Bilmes & Leskovec,
    "Coresets for Data-efficient Training of Machine Learning Models", ICML 2020; lazy
    greedy of Minoux 1978): choose S maximising Σ_i max_{j∈S} sim(i, j), so that every pool
    item has a similar chosen item.

    Similarity is the cosine of the L2-normalised embeddings clipped to [0, 1] (self 1); the
    greedy takes the largest marginal gain, ties to the lower index, by Minoux's lazy
    evaluation (the plain greedy's picks, fewer gain evaluations).

    Exact (module docstring; ``exact='auto'`` while the dense float32 n × n matrix and the
    rows fit in 2 GiB — up to 22,787 rows at d = 768 — and the cost model's time within
    :data:`EXACT_MAX_SECONDS`): all pairwise similarities, computed in row blocks, and the
    lazy greedy on them. Approximation beyond: similarities only on a sparse
    k-nearest-neighbour graph (``n_neighbors`` per item, self included), found by exact
    search inside k-means partitions of about ``partition_size`` rows (module docstring),
    one partition read from the embeddings at a time, so near a partition border an item's
    neighbours are its nearest ones inside the partition. In the full dimension by default
    (``projection_dim`` None; measured at the exact bound in three settings, docs/performance.md: 0.2–1.2 %
    below the exact objective, and 1.5–1.7 % below with version 1's 128-d projection). The search runs in faiss
    when it is installed (``knn_backend='auto'``; about 10× faster) or in numpy; both are exact
    and differ at most in how exact ties are broken; the backend is recorded. The lazy greedy
    runs once over the whole graph, so partitions get centres in proportion to what they
    add, without a fixed allocation. Once every item is fully covered, the remaining gains
    are zero and the rest of the budget goes to the lowest-numbered items, in partition
    order. The greedy uses no randomness; the seed enters only through the partitioning (and
    any projection) of large pools (the class sets ``deterministic_in_seed``). Parameters:
    ``exact`` ('auto'), ``n_neighbors`` (10), ``partition_size`` (5,000), ``projection_dim``
    (None; an int projects), ``kmeans_iterations``, ``kmeans_backend``, ``knn_backend``
    ('auto' | 'faiss' | 'numpy'). Diagnostics: ``exact``, ``coverage`` (F(S)/n, in [0, 1]),
    ``gain_evaluations``, ``graph_time_s``, partition and projection details, ``time_s``.
    Version 2: exact below the bound, full dimension above (version 1 always used the graph
    in a 128-d projection).
    """

    name = "facility_location"
    version = "2"
    description = ("Facility location by lazy greedy (Minoux): dense cosine similarities where cheap, else "
                   "a sparse kNN graph per k-means partition")
    deterministic_in_seed = True
    approximation_params = (*_CoresetSelector.approximation_params, "n_neighbors", "knn_backend")

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        super().check_params(params)
        check_int(params, "n_neighbors", 1)
        check_choice(params, "knn_backend", ("auto", *KNN_BACKENDS))
        if params.get("knn_backend") == "faiss" and not faiss_available():
            raise ConfigError("knn_backend 'faiss' needs faiss, which is not installed "
                              "(pip install 'delbench[faiss]', or use 'numpy' or 'auto')")

    @classmethod
    def exact_cost(cls, n: int, dim: int, k: int) -> ExactCost:
        # the n × n similarities (one n·n·d product), then the lazy greedy on them (at most
        # about 30·n evaluations of a row); memory: the float32 matrix, the rows, a few vectors
        return ExactCost(DENSE_SECONDS * n * n * dim + DENSE_GREEDY_SECONDS * n * n, 4 * n * n + 4 * n * (dim + 4))

    def choose(self, pool: Dataset, k: int, *, seed: int, embeddings: np.ndarray, exact: bool | str = "auto",
               n_neighbors: int = 10, partition_size: int = 5_000, projection_dim: int | None = None,
               kmeans_iterations: int = DEFAULT_ITERATIONS, kmeans_backend: str = "auto",
               knn_backend: str = "auto") -> tuple[np.ndarray, dict]:
        started = time.perf_counter()
        setup = self._set_up(embeddings, k, seed=seed, exact=exact, partition_size=partition_size,
                             projection_dim=projection_dim, kmeans_iterations=kmeans_iterations,
                             kmeans_backend=kmeans_backend)
        n, budget, partitioning, diagnostics = len(pool), k, setup.partitioning, setup.diagnostics
        if setup.exact:
            similarity = dense_similarities(rows_in_partition_order(embeddings, partitioning, None))
            graphed = time.perf_counter()
            with single_threaded_blas():
                picked, objective, evaluations = dense_facility_location(similarity, budget)
        else:
            knn_backend = resolve_knn_backend(knn_backend)
            diagnostics.update({"n_neighbors": n_neighbors, "knn_backend": knn_backend})
            offsets = partitioning.offsets
            sources, targets, weights = [], [], []
            for part, members in enumerate(partitioning.members):
                # one partition's rows at a time, read straight from the embeddings
                rows = partition_rows(embeddings, members, setup.projection)
                if setup.projection is not None:  # back onto the unit sphere, so inner product = cosine
                    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
                    np.divide(rows, norms[:, None], out=rows, where=norms[:, None] > 0)
                source, target, weight = knn_graph(rows, n_neighbors, backend=knn_backend)
                sources.append(source + offsets[part])
                targets.append(target + offsets[part])
                weights.append(weight)
            graphed = time.perf_counter()
            picked, objective, evaluations = lazy_greedy_facility_location(
                n, np.concatenate(sources), np.concatenate(targets), np.concatenate(weights), budget)
        diagnostics.update({"coverage": objective / n if n else 0.0, "gain_evaluations": evaluations,
                            "graph_time_s": round(graphed - started, 3)})
        return partitioning.order[picked], diagnostics


@hookimpl
def delbench_register_selectors() -> list[type]:
    return [KCenterGreedy, Herding, FacilityLocation]
