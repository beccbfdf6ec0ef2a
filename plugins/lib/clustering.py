"""Spherical k-means over (possibly memory-mapped, float16) embeddings, for the selectors.

Not a plugin: it registers nothing. Selectors that group the pool by k-means (MedDEL,
SemDeDup, SSL prototypes, D4, coverage-centric selection, ...) share it so that every one of
them clusters the same way and scales the same way:

* rows are L2-normalised, so inner product = cosine similarity (spherical k-means, as in
  SemDeDup, Abbas et al. 2023, and SSL prototypes, Sorscher et al. 2022);
* the centroids are trained on a seeded random sample of the rows when the pool is large
  (faiss' own rule of thumb is 39 to 256 training points per centroid);
* every row is then assigned to its nearest centroid in chunks, so an n × d float16
  memory-mapped file is never copied whole into float32;
* with many clusters (``kmeans='hierarchical'``, or 'auto' from
  :data:`HIERARCHICAL_MIN_CLUSTERS` clusters) two levels of k-means replace one
  (:func:`hierarchical_kmeans`): assigning n rows then costs n·2·sqrt(k) products, not n·k;
* optionally the rows are centred first (``offset``, usually :func:`pool_mean`): encoder
  embeddings often share a large common component, which squeezes every cosine towards 1
  and leaves the angular geometry to the small remainder; subtracting the pool mean before
  normalising measures angles around the pool's own centre instead.

The centroid trainer is faiss when it is importable (``pip install delbench[faiss]``) and
scikit-learn otherwise; ``backend`` pins one. The two give different (equally valid)
clusterings for the same seed, so the backend used is returned and selectors record it.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Mapping, TypeVar

import numpy as np

from delbench.sdk import ConfigError, SelectionError, check_choice, check_int, check_positive_int

#: training points drawn per centroid when ``sample_size`` is not given (faiss: 39 … 256)
SAMPLE_PER_CLUSTER = 64
#: but never fewer than this many (small k would otherwise train on a handful of rows)
MIN_SAMPLE_SIZE = 20_000
#: rows normalised and assigned per step; 32,768 × 768 float32 is 96 MiB
DEFAULT_CHUNK = 32_768
DEFAULT_ITERATIONS = 20
#: multiply-adds per Lloyd iteration below which the trainer runs on one thread
SMALL_TRAINING_PROBLEM = 1 << 28

#: the two ways a difficulty-ranking selector can keep items: farthest/hardest or closest/easiest
KEEP_CHOICES = ("hard", "easy")
#: the centroid trainers ``kmeans`` can use ("auto": faiss when installed, else scikit-learn)
KMEANS_BACKENDS = ("auto", "faiss", "sklearn")
#: how the clusters are found: one k-means ("flat"), or two levels (:func:`hierarchical_kmeans`)
KMEANS_METHODS = ("auto", "flat", "hierarchical")
#: "auto" clusters in two levels from this many clusters on. Below it flat k-means is cheap
#: enough (at 1M × 768 and 1,000 clusters: the selection timings in docs/performance.md) and
#: every protocol so far (at most a few hundred clusters) keeps its subsets bit for bit; above it
#: flat k-means' n·k assignment and k² training dominate the selection.
HIERARCHICAL_MIN_CLUSTERS = 4096
#: a row of two-level k-means takes the nearest fine centroid of its this-many nearest coarse
#: clusters (1 = of its own only). On the perf pool at 1M rows and 1,000 clusters, whose
#: scenes have no coarse structure, a scene's frames fell into 2.7 clusters on average with
#: flat k-means, 4.6 with 1 probe, 3.3 with 4, 3.1 with 8 (assignment cost grows with it)
HIERARCHICAL_PROBES = 4

Backend = Literal["auto", "faiss", "sklearn"]
_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


@dataclass(frozen=True)
class KMeansResult:
    """Outcome of :func:`kmeans`.

    ``centroids`` float32 (k, d), unit norm; ``labels`` int64 (n,), the centroid of each row;
    ``distances`` float32 (n,), cosine distance ``1 - <x/|x|, c>`` of each row to its centroid
    (in [0, 2]; a zero row has distance 1); ``backend`` the trainer used ("faiss", "sklearn",
    or "trivial" when no training was needed: k = 1 or fewer distinct rows than clusters).
    """

    centroids: np.ndarray
    labels: np.ndarray
    distances: np.ndarray
    backend: str = "trivial"
    #: "flat" (:func:`kmeans`) or "hierarchical" (:func:`hierarchical_kmeans`, with
    #: ``coarse_clusters`` coarse clusters)
    method: str = "flat"
    coarse_clusters: int | None = None

    @property
    def n_clusters(self) -> int:
        return int(self.centroids.shape[0])


def normalized_rows(embeddings: Any, start: int, stop: int, *,
                    rows: np.ndarray | None = None, offset: np.ndarray | None = None) -> np.ndarray:
    """L2-normalised float32 copy of rows ``[start, stop)`` of ``embeddings``.

    ``embeddings`` may be any 2-D float array, typically a float16 ``np.memmap``; only the
    requested rows are read. Zero rows stay zero. With ``rows`` (an int array of row
    indices), rows ``rows[start:stop]`` are taken instead of a contiguous range. With
    ``offset`` (a length-d vector, e.g. :func:`pool_mean`), it is subtracted from every row
    before normalising.
    """
    block = embeddings[rows[start:stop]] if rows is not None else embeddings[start:stop]
    block = np.array(block, dtype=np.float32, copy=True)
    if offset is not None:
        block -= offset
    norms = np.sqrt(np.einsum("ij,ij->i", block, block))
    np.divide(block, norms[:, None], out=block, where=norms[:, None] > 0)
    return block


def pool_mean(embeddings: Any, *, rows: np.ndarray | None = None,
              chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Mean row of ``embeddings`` (or of its rows ``rows``) as a float32 length-d vector.

    One streamed pass of ``chunk`` rows at a time, accumulated in float64 so the sum of many
    float16 rows loses nothing; a memory-mapped file is never copied whole.
    """
    if embeddings is None or getattr(embeddings, "ndim", None) != 2:
        raise SelectionError(f"pool_mean needs a 2-D n × d embedding array, got "
                             f"{type(embeddings).__name__} with shape {getattr(embeddings, 'shape', None)}")
    check_positive_int("chunk", chunk)
    n = int(rows.size if rows is not None else embeddings.shape[0])
    if n == 0:
        raise SelectionError("pool_mean of an empty embedding array is undefined")
    total = np.zeros(embeddings.shape[1], np.float64)
    for start in range(0, n, int(chunk)):
        stop = min(n, start + int(chunk))
        block = embeddings[rows[start:stop]] if rows is not None else embeddings[start:stop]
        total += np.asarray(block, dtype=np.float64).sum(axis=0)
    return (total / n).astype(np.float32)


def worker_count(n_jobs: int | None = None) -> int:
    """Threads for :func:`parallel_map`: ``n_jobs``, or the CPUs this process may use."""
    if n_jobs is None:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    return check_positive_int("n_jobs", n_jobs)


def single_threaded_blas():
    """Context manager limiting BLAS to one thread.

    Selectors issue many moderate matrix products (one per chunk, cluster or greedy step);
    a multi-threaded BLAS spends more time waking its threads, which spin while they wait,
    than computing them (measured on a busy 2-core machine: 3.2 ms vs 0.32 ms for a
    10,000 × 128 matrix-vector product, and chunked products up to 4× slower).
    """
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    return threadpool_limits(limits=1, user_api="blas")


def parallel_map(function: Callable[[_Item], _Result], items: Iterable[_Item], *,
                 n_jobs: int | None = None) -> list[_Result]:
    """``[function(item) for item in items]`` on ``n_jobs`` threads, order kept.

    BLAS is limited to one thread meanwhile (:func:`single_threaded_blas`); numpy releases
    the GIL in the products, so the threads run in parallel.
    """
    workers = worker_count(n_jobs)
    with single_threaded_blas():
        if workers == 1:
            return [function(item) for item in items]
        with ThreadPoolExecutor(max_workers=workers) as executor:
            return list(executor.map(function, items))


def default_n_clusters(n: int) -> int:
    """About sqrt(n) clusters, at least 1: balances the cost of assigning n rows to k
    centroids (n·k) against the per-cluster pairwise work (n²/k)."""
    return max(1, int(round(math.sqrt(max(n, 0)))))


def resolve_n_clusters(n_clusters: Any, n: int) -> int:
    """``n_clusters`` checked as an integer ≥ 1, or :func:`default_n_clusters` of ``n`` when None."""
    if n_clusters is None:
        return default_n_clusters(n)
    return check_positive_int("n_clusters", n_clusters)


def faiss_available() -> bool:
    """Whether faiss can be imported (the optional ``delbench[faiss]`` extra)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """The trainer ``kmeans`` will use for ``backend`` ("auto" picks faiss when installed)."""
    if backend == "auto":
        return "faiss" if faiss_available() else "sklearn"
    if backend == "faiss" and not faiss_available():
        raise SelectionError("k-means backend 'faiss' requested but faiss is not installed "
                             "(pip install 'delbench[faiss]' or use backend='sklearn')")
    if backend not in ("faiss", "sklearn"):
        raise SelectionError(f"k-means backend must be 'auto', 'faiss' or 'sklearn', got {backend!r}")
    return backend


def check_kmeans_params(params: Mapping[str, Any]) -> None:
    """The k-means parameters selectors share, for their ``check_params``: ``n_clusters``
    (an integer ≥ 1, or None for :func:`default_n_clusters`), ``kmeans_iterations`` (≥ 1),
    ``kmeans_backend`` (one of :data:`KMEANS_BACKENDS`; 'faiss' only where it is installed)
    and ``kmeans`` (one of :data:`KMEANS_METHODS`)."""
    check_int(params, "n_clusters", 1, allow_none=True)
    check_int(params, "kmeans_iterations", 1)
    check_choice(params, "kmeans_backend", KMEANS_BACKENDS)
    check_choice(params, "kmeans", KMEANS_METHODS)
    if params.get("kmeans_backend") == "faiss" and not faiss_available():
        raise ConfigError("kmeans_backend 'faiss' needs faiss, which is not installed "
                          "(pip install 'delbench[faiss]', or use 'sklearn' or 'auto')")


def _train_faiss(sample: np.ndarray, k: int, *, seed: int, iterations: int) -> np.ndarray:
    import faiss

    trainer = faiss.Kmeans(sample.shape[1], k, niter=iterations, seed=seed, spherical=True,
                           verbose=False, nredo=1,
                           # we already sampled; stop faiss from subsampling again
                           max_points_per_centroid=max(256, -(-sample.shape[0] // k)),
                           min_points_per_centroid=1)
    trainer.train(np.ascontiguousarray(sample))
    return np.asarray(trainer.centroids, dtype=np.float32)


def _train_sklearn(sample: np.ndarray, k: int, *, seed: int, iterations: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    # Euclidean k-means on unit vectors; the centroids are re-normalised below, which makes
    # the final assignment (largest inner product) exactly spherical.
    model = KMeans(n_clusters=k, n_init=1, max_iter=iterations, random_state=seed,
                   algorithm="lloyd", tol=1e-6)
    model.fit(sample)
    return np.asarray(model.cluster_centers_, dtype=np.float32)


_TRAINERS = {"faiss": _train_faiss, "sklearn": _train_sklearn}


def _distinct_rows(sample: np.ndarray, limit: int) -> np.ndarray:
    """Up to ``limit`` distinct rows of ``sample`` (first occurrences, in row order).

    Stops as soon as ``limit`` are found, which on real data is within the first rows.
    """
    seen: set[bytes] = set()
    keep: list[int] = []
    for position, row in enumerate(sample):
        key = row.tobytes()
        if key not in seen:
            seen.add(key)
            keep.append(position)
            if len(keep) >= limit:
                break
    return sample[keep]


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0).astype(np.float32)


def _checked_input(embeddings: Any, n_clusters: int, *, iterations: int, chunk: int, sample_size: int | None,
                   rows: np.ndarray | None, offset: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The argument checks :func:`kmeans` and :func:`hierarchical_kmeans` share; returns
    ``rows`` and ``offset`` as arrays."""
    if embeddings is None or getattr(embeddings, "ndim", None) != 2:
        raise SelectionError(f"kmeans needs a 2-D n × d embedding array, got "
                             f"{type(embeddings).__name__} with shape {getattr(embeddings, 'shape', None)}")
    check_positive_int("n_clusters", n_clusters)
    check_positive_int("k-means iterations", iterations)
    check_positive_int("chunk", chunk)
    if sample_size is not None:
        check_positive_int("sample_size", sample_size)
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
    if offset is not None:
        offset = np.asarray(offset, dtype=np.float32)
        if offset.shape != (embeddings.shape[1],) or not np.isfinite(offset).all():
            raise SelectionError(f"offset must be a finite vector of length {embeddings.shape[1]}, "
                                 f"got shape {offset.shape}")
    return rows, offset


def _train_centroids(embeddings: Any, n: int, k: int, *, seed: int, sample_size: int | None, iterations: int,
                     backend: str, rows: np.ndarray | None, offset: np.ndarray | None) -> tuple[np.ndarray, str]:
    """Unit centroids (at most ``k``: fewer when the sample has fewer distinct rows) trained on
    a seeded sample of the ``n`` rows (``rows`` of ``embeddings``, or its first ``n``), and
    the trainer used. ``backend`` is resolved already."""
    wanted = sample_size if sample_size is not None else max(MIN_SAMPLE_SIZE, SAMPLE_PER_CLUSTER * k)
    rng = np.random.default_rng([int(seed), 0x6B6D])  # own stream: the caller's seed use stays free
    positions = (np.arange(n) if wanted >= n
                 else np.sort(rng.choice(n, size=max(int(wanted), k), replace=False)))
    sample_rows = rows[positions] if rows is not None else positions
    sample = normalized_rows(embeddings, 0, sample_rows.size, rows=sample_rows, offset=offset)

    distinct = _distinct_rows(sample, k + 1)
    if distinct.shape[0] <= k:  # no more distinct points than clusters: they are the centroids
        return _unit(distinct), "trivial"
    if k == 1:
        return _unit(sample.mean(axis=0, keepdims=True)), "trivial"
    # OpenMP/BLAS threads cost more than they save on small problems (0.3 s instead of
    # 1 ms for 120 rows on a busy 2-core machine): those train on one thread
    from threadpoolctl import threadpool_limits

    small = sample.shape[0] * k * sample.shape[1] < SMALL_TRAINING_PROBLEM
    with threadpool_limits(limits=1 if small else None):
        # faiss takes a signed 32-bit seed (scikit-learn an unsigned one); seeds below 2**31,
        # every seed a protocol has used, pass unchanged
        trained = _TRAINERS[backend](sample, k, seed=int(seed) % 2 ** 31, iterations=int(iterations))
    return _unit(trained), backend


def kmeans(embeddings: Any, n_clusters: int, *, seed: int, sample_size: int | None = None,
           iterations: int = DEFAULT_ITERATIONS, chunk: int = DEFAULT_CHUNK,
           backend: Backend = "auto", rows: np.ndarray | None = None,
           offset: np.ndarray | None = None, n_jobs: int | None = None) -> KMeansResult:
    """Spherical k-means of the L2-normalised rows of ``embeddings`` (minus ``offset``).

    Parameters
    ----------
    embeddings: n × d float array (float16/float32, memory-mapped or not); rows are
        normalised on the fly, chunk by chunk.
    n_clusters: wanted number of clusters k ≥ 1; clamped to the number of rows, and to the
        number of distinct rows in the training sample (duplicate-only pools give k = 1).
    seed: seeds the training sample and the trainer's initialisation; same seed, same data,
        same backend → same result.
    sample_size: rows used to train the centroids; default ``max(MIN_SAMPLE_SIZE,
        SAMPLE_PER_CLUSTER · k)`` capped at n. All rows are assigned afterwards.
    iterations: Lloyd iterations of the trainer.
    chunk: rows normalised and assigned at a time (memory ∝ chunk · max(d, k)).
    backend: "faiss", "sklearn" or "auto" (faiss when installed).
    rows: optional sorted int array; cluster only these rows of ``embeddings`` (the result's
        arrays are then indexed like ``rows``).
    offset: optional length-d vector subtracted from every row before normalising (e.g.
        :func:`pool_mean` to centre the pool); centroids and distances are then those of the
        centred rows.
    n_jobs: threads assigning chunks (default: all CPUs); the result does not depend on it.
    """
    rows, offset = _checked_input(embeddings, n_clusters, iterations=iterations, chunk=chunk,
                                  sample_size=sample_size, rows=rows, offset=offset)
    n = int(rows.size if rows is not None else embeddings.shape[0])
    d = int(embeddings.shape[1])
    resolved = resolve_backend(backend)
    if n == 0:
        return KMeansResult(np.zeros((0, d), np.float32), np.zeros(0, np.int64),
                            np.zeros(0, np.float32), "trivial")
    centroids, used = _train_centroids(embeddings, n, min(int(n_clusters), n), seed=seed, sample_size=sample_size,
                                       iterations=iterations, backend=resolved, rows=rows, offset=offset)
    labels = np.empty(n, np.int64)
    distances = np.empty(n, np.float32)
    centroids_t = np.ascontiguousarray(centroids.T)

    def assign(start: int) -> None:  # each chunk writes its own slice: no ordering issue
        stop = min(n, start + int(chunk))
        similarity = normalized_rows(embeddings, start, stop, rows=rows, offset=offset) @ centroids_t
        best = np.argmax(similarity, axis=1)
        labels[start:stop] = best
        distances[start:stop] = 1.0 - similarity[np.arange(stop - start), best]

    parallel_map(assign, range(0, n, int(chunk)), n_jobs=n_jobs)
    np.clip(distances, 0.0, 2.0, out=distances)
    return KMeansResult(centroids, labels, distances, used)


# --- two-level k-means ------------------------------------------------------------------------
def proportional_counts(sizes: np.ndarray, total: int) -> np.ndarray:
    """``total`` split over groups of ``sizes`` in proportion to their size (largest
    remainder; ties to the lower group): every non-empty group gets at least 1 and at most
    its size, empty groups 0. The counts sum to ``min(total, sizes.sum())`` unless more
    groups are non-empty than ``total`` (then each non-empty group gets 1)."""
    sizes = np.asarray(sizes, np.int64)
    filled = sizes > 0
    total = min(int(total), int(sizes.sum()))
    if total <= int(filled.sum()):
        return filled.astype(np.int64)
    exact = total * sizes / sizes.sum()
    counts = np.minimum(np.maximum(np.floor(exact).astype(np.int64), filled), sizes)
    # hand out (or take back) the difference one at a time by remainder; bounded by the groups
    remainder = exact - counts
    while counts.sum() != total:
        if counts.sum() < total:
            room = np.flatnonzero(counts < sizes)
            give = room[np.argmax(remainder[room])]  # argmax: the first of equal remainders
            counts[give] += 1
            remainder[give] -= 1.0
        else:
            spare = np.flatnonzero(counts > 1)
            take = spare[np.argmin(remainder[spare])]
            counts[take] -= 1
            remainder[take] += 1.0
    return counts


def _group_seed(seed: int, group: int) -> int:
    """A seed for coarse cluster ``group``'s own k-means, derived from (``seed``, ``group``)."""
    return int(np.random.SeedSequence([int(seed), 0x686B, int(group)]).generate_state(1)[0]) % 2 ** 31


def hierarchical_kmeans(embeddings: Any, n_clusters: int, *, seed: int, iterations: int = DEFAULT_ITERATIONS,
                        chunk: int = DEFAULT_CHUNK, backend: Backend = "auto", rows: np.ndarray | None = None,
                        offset: np.ndarray | None = None, n_jobs: int | None = None,
                        coarse_clusters: int | None = None, probes: int = HIERARCHICAL_PROBES) -> KMeansResult:
    """Two-level spherical k-means: about ``sqrt(k)`` coarse clusters (:func:`kmeans`), then
    each coarse cluster split by its own k-means into a share of the ``k`` fine clusters
    proportional to its size (:func:`proportional_counts`); every row gets the nearest fine
    centroid among those of its ``probes`` nearest coarse clusters (its own first).

    Why: flat k-means with n-proportional clusters costs n·k·d to assign and
    SAMPLE_PER_CLUSTER·k²·d per training iteration; two levels cost n·(k1 + k/k1)·d to assign
    and about SAMPLE_PER_CLUSTER·k·(k1 + k/k1)·d per iteration, i.e. n·2·sqrt(k)·d at
    ``k1 = sqrt(k)`` (the hierarchical k-means used to curate self-supervised pre-training
    data, e.g. Vo et al. 2024, works the same way). Each coarse cluster trains on
    ``SAMPLE_PER_CLUSTER`` rows per fine centroid, so the training rows total about those of
    flat k-means. The assignment is one sequential pass over the rows, so a memory-mapped
    file is read in order once for each level.

    A row can only join a fine cluster of its ``probes`` nearest coarse clusters (as an
    inverted-file index searches a few lists), so near coarse boundaries it may miss its
    globally nearest centroid: the clusters differ from flat k-means' (compare them with
    ``benchmarks/perf/selection.py --compare-kmeans``). More probes miss less and cost
    ``probes · k / k1`` products per row instead of ``k / k1``. Arguments as for
    :func:`kmeans` (no ``sample_size``: each level follows the default rule); fewer than 4
    clusters is flat k-means. Deterministic per seed (each coarse cluster's training seed is
    derived from ``seed`` and its number); the result does not depend on ``n_jobs``.
    ``backend`` of the result is the coarse level's.
    """
    rows, offset = _checked_input(embeddings, n_clusters, iterations=iterations, chunk=chunk, sample_size=None,
                                  rows=rows, offset=offset)
    n = int(rows.size if rows is not None else embeddings.shape[0])
    k = min(int(n_clusters), n)
    k1 = default_n_clusters(k) if coarse_clusters is None else check_positive_int("coarse_clusters", coarse_clusters)
    if k < 4 or k1 >= k:
        return kmeans(embeddings, n_clusters, seed=seed, iterations=iterations, chunk=chunk, backend=backend,
                      rows=rows, offset=offset, n_jobs=n_jobs)
    resolved = resolve_backend(backend)
    coarse = kmeans(embeddings, k1, seed=seed, iterations=iterations, chunk=chunk, backend=resolved,
                    rows=rows, offset=offset, n_jobs=n_jobs)
    groups = cluster_members(coarse.labels, coarse.n_clusters)
    counts = proportional_counts(np.array([g.size for g in groups]), k)
    fine: list[np.ndarray] = []
    for group, (members, count) in enumerate(zip(groups, counts)):
        if count == 0:  # an empty coarse cluster: no row can reach it
            fine.append(np.zeros((0, embeddings.shape[1]), np.float32))
            continue
        centroids, _ = _train_centroids(embeddings, members.size, int(count), seed=_group_seed(seed, group),
                                        sample_size=SAMPLE_PER_CLUSTER * int(count), iterations=iterations,
                                        backend=resolved, rows=members if rows is None else rows[members],
                                        offset=offset)
        fine.append(centroids)
    first = np.concatenate([[0], np.cumsum([c.shape[0] for c in fine])]).astype(np.int64)
    fine_t = [np.ascontiguousarray(c.T) for c in fine]
    labels = np.empty(n, np.int64)
    distances = np.empty(n, np.float32)

    coarse_t = np.ascontiguousarray(coarse.centroids.T)
    probes = max(1, min(int(probes), coarse.n_clusters))

    def assign(start: int) -> None:  # each chunk writes its own slice: no ordering issue
        stop = min(n, start + int(chunk))
        block = normalized_rows(embeddings, start, stop, rows=rows, offset=offset)
        if probes == 1:
            candidates = coarse.labels[start:stop, None]
        else:  # the nearest coarse centroids, nearest first; the first is the row's own
            # coarse cluster (pinned: a product of another shape could round a near-tie apart)
            candidates = np.argsort(-(block @ coarse_t), axis=1, kind="stable")[:, :probes]
            candidates[:, 0] = coarse.labels[start:stop]
        best_similarity = np.full(stop - start, -np.inf, np.float32)
        best_label = np.zeros(stop - start, np.int64)
        for probe in range(candidates.shape[1]):
            column = candidates[:, probe]
            for group in np.unique(column):
                where = np.flatnonzero(column == group)
                if fine_t[group].shape[1] == 0:
                    continue
                similarity = block[where] @ fine_t[group]
                best = np.argmax(similarity, axis=1)
                value = similarity[np.arange(where.size), best]
                better = value > best_similarity[where]  # strictly: an earlier probe wins a tie
                best_similarity[where[better]] = value[better]
                best_label[where[better]] = first[group] + best[better]
        labels[start:stop] = best_label
        distances[start:stop] = 1.0 - best_similarity

    parallel_map(assign, range(0, n, int(chunk)), n_jobs=n_jobs)
    np.clip(distances, 0.0, 2.0, out=distances)
    return KMeansResult(np.concatenate(fine), labels, distances, coarse.backend, method="hierarchical",
                        coarse_clusters=coarse.n_clusters)


def resolve_kmeans_method(method: str, n_clusters: int) -> str:
    """'flat' or 'hierarchical' for ``method`` ('auto': hierarchical from
    :data:`HIERARCHICAL_MIN_CLUSTERS` clusters on)."""
    if method == "auto":
        return "hierarchical" if n_clusters >= HIERARCHICAL_MIN_CLUSTERS else "flat"
    if method not in ("flat", "hierarchical"):
        raise SelectionError(f"k-means method must be one of {', '.join(map(repr, KMEANS_METHODS))}, got {method!r}")
    return method


def cluster(embeddings: Any, n_clusters: int, *, seed: int, method: str = "auto", iterations: int = DEFAULT_ITERATIONS,
            backend: Backend = "auto", rows: np.ndarray | None = None, offset: np.ndarray | None = None,
            n_jobs: int | None = None) -> KMeansResult:
    """:func:`kmeans` or :func:`hierarchical_kmeans`, as ``method`` says (:func:`resolve_kmeans_method`)."""
    k = min(int(n_clusters), int(rows.size if rows is not None else embeddings.shape[0]))
    function = hierarchical_kmeans if resolve_kmeans_method(method, k) == "hierarchical" else kmeans
    return function(embeddings, n_clusters, seed=seed, iterations=iterations, backend=backend, rows=rows,
                    offset=offset, n_jobs=n_jobs)


def kmeans_diagnostics(clustering: KMeansResult) -> dict[str, Any]:
    """What a selector records about its clustering: ``n_clusters``, ``kmeans_backend``,
    ``kmeans`` (the method used) and, for two levels, ``n_coarse_clusters``."""
    recorded = {"n_clusters": clustering.n_clusters, "kmeans_backend": clustering.backend,
                "kmeans": clustering.method}
    if clustering.coarse_clusters is not None:
        recorded["n_coarse_clusters"] = clustering.coarse_clusters
    return recorded


def cluster_members(labels: np.ndarray, n_clusters: int | None = None) -> list[np.ndarray]:
    """Row indices of each cluster, cluster 0 first, each ascending (one stable argsort).

    Returns ``n_clusters`` arrays (default ``labels.max() + 1``); empty clusters give empty
    int64 arrays, so list position = cluster label.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise SelectionError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.size and labels.min() < 0:
        raise SelectionError("labels must be non-negative cluster numbers")
    count = int(n_clusters) if n_clusters is not None else (int(labels.max()) + 1 if labels.size else 0)
    order = np.argsort(labels, kind="stable").astype(np.int64, copy=False)
    sizes = np.bincount(labels, minlength=count) if labels.size else np.zeros(count, np.int64)
    if sizes.size > count:
        raise SelectionError(f"labels go up to {sizes.size - 1} but n_clusters is {count}")
    return np.split(order, np.cumsum(sizes)[:-1]) if count else []
