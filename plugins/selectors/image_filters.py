"""Model-free frame filters: perceptual-hash near-duplicate removal and an image-quality filter.

Both read the pool's pixels in batches through ``pool.load_images`` and use numpy only (no
model, no OpenCV), so they run before any backbone exists. Per-frame work is vectorised over
a batch; grouping and ranking are O(n log n), nothing is quadratic in the pool size.
"""
from __future__ import annotations

import functools
import time
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from delbench.sdk import (ConfigError, Dataset, SelectionError, Selector, check_bool, check_int, check_number, hookimpl,
                          lowest_first)

#: ITU-R BT.601 luma weights (what PIL's "L" mode uses)
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
#: pHash works on a 32 × 32 grey thumbnail and keeps the 8 × 8 lowest DCT frequencies
PHASH_THUMBNAIL = 32
PHASH_FREQUENCIES = 8
HASH_BITS = PHASH_FREQUENCIES * PHASH_FREQUENCIES  # 64: one uint64 per frame
#: grey levels below / above which a pixel counts as badly exposed (quality_filter defaults)
DARK_LEVEL, BRIGHT_LEVEL = 20.0, 235.0


# --- shared helpers -------------------------------------------------------------------------


def iter_image_batches(pool: Dataset, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, images)`` over the whole pool, ``images`` uint8 (B, H, W, 3)."""
    n = len(pool)
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        images = np.asarray(pool.load_images(np.arange(start, stop, dtype=np.int64)))
        if images.ndim != 4 or images.shape[0] != stop - start or images.shape[-1] != 3:
            raise SelectionError(f"pool.load_images must return (B, H, W, 3) images, got shape "
                                 f"{images.shape} for {stop - start} indices")
        yield start, images


def grey(images: np.ndarray) -> np.ndarray:
    """uint8 RGB (B, H, W, 3) → float32 luma (B, H, W) in [0, 255]."""
    return np.asarray(images, dtype=np.float32) @ LUMA_WEIGHTS


@functools.lru_cache(maxsize=16)
def area_resize_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) matrix that resamples a 1-D signal by area averaging.

    Output sample i is the mean of the input over the interval [i·s/t, (i+1)·s/t), input
    pixels that straddle a boundary counting with their overlapping fraction. Applied on both
    axes (``R @ image @ R.T``) it is the box-filter resize of PIL's ``Image.BOX``.
    """
    edges = np.arange(target + 1, dtype=np.float64) * source / target
    left, right = edges[:-1, None], edges[1:, None]
    pixel = np.arange(source, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(right, pixel + 1) - np.maximum(left, pixel), 0.0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


@functools.lru_cache(maxsize=4)
def dct_matrix(size: int) -> np.ndarray:
    """Orthonormal DCT-II matrix D (size × size): ``D @ x`` is the DCT of a column ``x``."""
    k = np.arange(size, dtype=np.float64)[:, None]
    m = np.arange(size, dtype=np.float64)[None, :]
    matrix = np.cos(np.pi * (2 * m + 1) * k / (2 * size)) * np.sqrt(2.0 / size)
    matrix[0] /= np.sqrt(2.0)
    return matrix.astype(np.float32)


def perceptual_hashes(images: np.ndarray) -> np.ndarray:
    """64-bit perceptual hashes (uint64, one per image) of uint8 RGB images (B, H, W, 3).

    pHash as popularised by Zauner (2010) and the ``imagehash`` package: grey → 32 × 32 box
    resize → 2-D DCT-II → the 8 × 8 lowest frequencies → bit set where the coefficient is
    above their median. Bit ``8·u + v`` is frequency (u, v).
    """
    luma = grey(images)
    rows = area_resize_matrix(luma.shape[1], PHASH_THUMBNAIL)
    cols = area_resize_matrix(luma.shape[2], PHASH_THUMBNAIL)
    thumbnail = rows @ luma @ cols.T                                   # (B, 32, 32)
    dct = dct_matrix(PHASH_THUMBNAIL)[:PHASH_FREQUENCIES]              # only the rows we keep
    low = (dct @ thumbnail @ dct.T).reshape(len(luma), HASH_BITS)       # (B, 64)
    bits = low > np.median(low, axis=1, keepdims=True)
    packed = np.ascontiguousarray(np.packbits(bits, axis=1, bitorder="little"))
    return packed.view("<u8").ravel().astype(np.uint64)


#: set bits of every byte value, for numpy < 2.0 (which has no np.bitwise_count)
_BYTE_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise Hamming distance between uint64 hash arrays."""
    different = np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64))
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(different).astype(np.int64)
    as_bytes = np.ascontiguousarray(different).view(np.uint8).reshape(*different.shape, 8)
    return _BYTE_POPCOUNT[as_bytes].sum(axis=-1).astype(np.int64)


def _permute_bits(hashes: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(hashes.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    packed = np.packbits(bits[:, permutation], axis=1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").ravel()


def candidate_pairs(hashes: np.ndarray, *, rounds: int, window: int, seed: int,
                    extra: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of (distinct) hashes likely to be close in Hamming distance, with their distance.

    Charikar's sorted-permutation search (STOC 2002, §5): under a random permutation of the
    64 bit positions, hashes that differ in few bits usually share a long prefix, so they end
    up near each other when the permuted values are sorted. Each of ``rounds`` seeded
    permutations contributes every hash paired with its next ``window`` neighbours in sorted
    order: O(rounds · window · n) pairs, O(rounds · n log n) time. ``extra`` adds known
    candidate pairs (e.g. consecutive video frames). Returns ``(a, b, distance)``.
    """
    count = hashes.size
    firsts: list[np.ndarray] = []
    seconds: list[np.ndarray] = []
    rng = np.random.default_rng([int(seed), 0x5048])
    for _ in range(rounds if count > 1 else 0):
        order = np.argsort(_permute_bits(hashes, rng.permutation(HASH_BITS)), kind="stable")
        for offset in range(1, min(window, count - 1) + 1):
            firsts.append(order[:-offset])
            seconds.append(order[offset:])
    if extra is not None:
        firsts.append(np.asarray(extra[0], np.int64))
        seconds.append(np.asarray(extra[1], np.int64))
    if not firsts:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    a = np.concatenate(firsts).astype(np.int64, copy=False)
    b = np.concatenate(seconds).astype(np.int64, copy=False)
    different = a != b
    a, b = a[different], b[different]
    return a, b, hamming(hashes[a], hashes[b])


def greedy_leaders(count: int, a: np.ndarray, b: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Greedy near-duplicate removal over the links ``(a, b)``: visit nodes in ``order``;
    a node not yet removed is kept (a leader) and removes all its linked nodes.

    The kept nodes form a maximal independent set of the link graph (no two kept nodes are
    linked, every removed node is linked to a kept one). One pass, O(count + links).
    Returns a boolean mask over the ``count`` nodes.
    """
    source = np.concatenate([a, b])
    target = np.concatenate([b, a])
    by_source = np.argsort(source, kind="stable")
    target = target[by_source]
    degree = np.bincount(source, minlength=count)
    bounds = np.r_[0, np.cumsum(degree)].tolist()
    removed = np.zeros(count, bool)
    leader = degree == 0  # unlinked nodes are kept whatever the order; only linked ones loop
    for node in order[degree[order] > 0].tolist():
        if removed[node]:
            continue
        leader[node] = True
        start, stop = bounds[node], bounds[node + 1]
        if stop > start:
            removed[target[start:stop]] = True
    return leader


# --- perceptual-hash deduplication ----------------------------------------------------------

class PHashDedup(Selector):
    """Perceptual-hash near-duplicate removal (no model needed).

    Every frame gets a 64-bit pHash (Zauner, "Implementation and Benchmarking of Perceptual
    Image Hash Functions", 2010: 32 × 32 grey thumbnail, 2-D DCT, the 8 × 8 lowest
    frequencies thresholded at their median). Two frames whose hashes differ in at most
    ``t`` bits are near-duplicates. Removal is greedy in pool order, as in the common
    dedup tools (e.g. imagededup): a frame is kept unless an earlier kept frame is its
    near-duplicate, so the kept frames are pairwise more than ``t`` bits apart (no chaining
    through long videos). Exact hash collisions collapse first. Near-duplicate candidates are
    consecutive frames and the close pairs found by Charikar's sorted bit-permutation search
    (STOC 2002; ``search_rounds`` seeded permutations, each hash compared with its next
    ``search_window`` neighbours in sorted order), so the work is O(n log n); a pair closer
    than ``t`` is occasionally not linked, more often for large ``t``. The ratio sets ``t``:
    the smallest threshold whose kept count fits the budget, found by bisection over
    [0, 64] (each probe one linear greedy pass over the candidate links) and recorded as
    ``threshold``. The gap to the exact size is filled from the frames kept at ``t − 1`` but
    not at ``t`` (at ``t = 0``: the extra copies of exact duplicates), in a seeded random
    order; if even ``t = 64`` keeps too many, a seeded random subset of its kept frames is
    taken. Parameters: ``batch_size`` (frames hashed per batch, 256), ``search_rounds`` (8),
    ``search_window`` (4), ``link_consecutive`` (True: always compare each frame with the
    next one, exact for video order).
    """

    name = "phash_dedup"
    version = "1"
    description = "Perceptual-hash (DCT pHash) near-duplicate removal; Hamming threshold searched to hit the ratio"

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        check_int(params, "batch_size", 1)
        check_int(params, "search_rounds", 0)
        check_int(params, "search_window", 1)
        check_bool(params, "link_consecutive")

    def choose(self, pool: Dataset, k: int, *, seed: int, batch_size: int = 256, search_rounds: int = 8,
               search_window: int = 4, link_consecutive: bool = True) -> tuple[np.ndarray, dict]:
        started = time.perf_counter()
        n, budget = len(pool), k
        hashes = np.empty(n, np.uint64)
        for start, images in iter_image_batches(pool, batch_size):
            hashes[start:start + len(images)] = perceptual_hashes(images)
        hashed = time.perf_counter()

        # Exact duplicates collapse first; the search then runs on distinct hashes, each
        # standing for its first frame in pool order.
        unique, first_frame, frame_to_unique = np.unique(hashes, return_index=True, return_inverse=True)
        frame_to_unique = frame_to_unique.ravel()
        visit_order = np.argsort(first_frame, kind="stable")
        consecutive = None
        if link_consecutive and n > 1:
            consecutive = (frame_to_unique[:-1], frame_to_unique[1:])
        a, b, distance = candidate_pairs(unique, rounds=search_rounds, window=search_window,
                                         seed=seed, extra=consecutive)

        def kept_frames(threshold: int) -> np.ndarray:
            """Frames kept with links of Hamming distance ≤ threshold (every frame at -1)."""
            if threshold < 0:
                return np.arange(n, dtype=np.int64)
            close = distance <= threshold
            leaders = greedy_leaders(unique.size, a[close], b[close], visit_order)
            return np.sort(first_frame[leaders]).astype(np.int64)

        counts: dict[int, int] = {}

        def kept_count(threshold: int) -> int:
            counts[threshold] = kept_frames(threshold).size
            return counts[threshold]

        # bisection for the smallest threshold whose kept count fits the budget (raising the
        # threshold adds links, so the count falls, up to the greedy order's small wiggles)
        low, high = 0, HASH_BITS
        if kept_count(HASH_BITS) > budget:
            low = HASH_BITS
        while low < high:
            middle = (low + high) // 2
            if kept_count(middle) <= budget:
                high = middle
            else:
                low = middle + 1
        threshold = low
        kept = kept_frames(threshold)
        rng = np.random.default_rng([int(seed), 0x4648])
        filled = trimmed = 0
        if kept.size > budget:  # only at t = 64
            trimmed = kept.size - budget
            chosen = rng.choice(kept, size=budget, replace=False)
        elif kept.size < budget:
            candidates = np.setdiff1d(kept_frames(threshold - 1), kept)
            filled = budget - kept.size
            chosen = np.concatenate([kept, rng.choice(candidates, size=filled, replace=False)])
        else:
            chosen = kept
        return chosen, {
            "threshold": int(threshold),
            "kept_at_threshold": int(kept.size),
            "filled": int(filled),
            "trimmed": int(trimmed),
            "distinct_hashes": int(unique.size),
            "candidate_links": int(a.size),
            "probes": {int(t): int(c) for t, c in sorted(counts.items())},
            "hash_time_s": round(hashed - started, 3),
        }


# --- image-quality filter -------------------------------------------------------------------

def laplacian_variance(luma: np.ndarray) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian over the interior pixels (Pech-Pacheco et al.,
    ICPR 2000): low for blurred or featureless frames. ``luma`` is (B, H, W)."""
    centre = luma[:, 1:-1, 1:-1]
    laplacian = (luma[:, :-2, 1:-1] + luma[:, 2:, 1:-1] + luma[:, 1:-1, :-2] + luma[:, 1:-1, 2:]
                 - 4.0 * centre)
    return laplacian.reshape(len(luma), -1).var(axis=1)


def badly_exposed_share(luma: np.ndarray, dark_level: float, bright_level: float) -> np.ndarray:
    """Share of pixels darker than ``dark_level`` or brighter than ``bright_level``."""
    flat = luma.reshape(len(luma), -1)
    return ((flat < dark_level) | (flat > bright_level)).mean(axis=1)


def grey_entropy(luma: np.ndarray, bins: int) -> np.ndarray:
    """Shannon entropy (bits) of the ``bins``-bin grey-level histogram of each image."""
    count = len(luma)
    flat = luma.reshape(count, -1)
    level = np.minimum((flat * (bins / 256.0)).astype(np.int64), bins - 1)
    histogram = np.bincount((level + bins * np.arange(count)[:, None]).ravel(),
                            minlength=bins * count).reshape(count, bins)
    p = histogram / flat.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)


def percentile_rank(values: np.ndarray) -> np.ndarray:
    """Rank of each value among all, scaled to (0, 1]; ties share their average rank."""
    from scipy.stats import rankdata

    return rankdata(values, method="average") / values.size


class QualityFilter(Selector):
    """Image-quality filter for blurred, badly exposed and low-information frames (no model).

    Three classic no-reference measures per frame, on its grey (luma) image: sharpness =
    variance of the Laplacian (Pech-Pacheco et al., "Diatom autofocusing in brightfield
    microscopy", ICPR 2000; the usual blur detector), exposure = share of pixels darker than
    ``dark_level`` or brighter than ``bright_level`` (under/over-exposure, glare), and
    information = entropy of the ``entropy_bins``-bin grey histogram (uniform views such as
    out-of-body frames or a lens cap). Each measure becomes a percentile rank within the pool
    (sharper, better exposed, richer = higher), and a frame's quality is its *worst* rank (a
    frame is only as usable as its weakest aspect; ranks make the three measures comparable
    without image-size-dependent constants). The ratio picks the cut: the ``subset_size``
    best frames are kept (ties by pool order); the cut and, per measure, the worst value kept
    are recorded. Endoscopes' dark vignette adds the same dark share to every frame, so it
    does not change the ranking. Parameters: ``batch_size`` (256), ``dark_level`` (20),
    ``bright_level`` (235), ``entropy_bins`` (64).
    """

    name = "quality_filter"
    version = "1"
    description = "No-reference quality filter (Laplacian blur, exposure, grey entropy); keeps the best frames"
    deterministic_in_seed = True  # a pure ranking of pixel statistics

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        check_int(params, "batch_size", 1)
        check_int(params, "entropy_bins", 2)
        check_number(params, "dark_level", 0.0, 255.0)
        check_number(params, "bright_level", 0.0, 255.0)
        dark, bright = params.get("dark_level", DARK_LEVEL), params.get("bright_level", BRIGHT_LEVEL)
        if not dark < bright:
            raise ConfigError(f"dark_level must be below bright_level, got {dark!r} and {bright!r}")

    def choose(self, pool: Dataset, k: int, *, seed: int, batch_size: int = 256, dark_level: float = DARK_LEVEL,
               bright_level: float = BRIGHT_LEVEL, entropy_bins: int = 64) -> tuple[np.ndarray, dict]:
        n, budget = len(pool), k
        measures: dict[str, Callable[[np.ndarray], np.ndarray]] = {
            "sharpness": laplacian_variance,
            "badly_exposed": lambda luma: badly_exposed_share(luma, float(dark_level), float(bright_level)),
            "entropy": lambda luma: grey_entropy(luma, entropy_bins),
        }
        #: +1 where larger is better, -1 where smaller is better
        direction = {"sharpness": 1.0, "badly_exposed": -1.0, "entropy": 1.0}
        values = {name: np.empty(n, np.float64) for name in measures}
        for start, images in iter_image_batches(pool, batch_size):
            luma = grey(images)
            for name, measure in measures.items():
                values[name][start:start + len(images)] = measure(luma)

        ranks = np.stack([percentile_rank(direction[name] * values[name]) for name in measures])
        quality = ranks.min(axis=0)
        order = lowest_first(-quality)
        kept = np.sort(order[:budget]).astype(np.int64)
        removed = np.setdiff1d(np.arange(n), kept)
        limiting = np.bincount(ranks[:, removed].argmin(axis=0), minlength=len(measures))
        names = list(measures)
        return kept, {
            "quality_cut": float(quality[order[budget - 1]]),
            "min_sharpness_kept": float(values["sharpness"][kept].min()),
            "max_badly_exposed_kept": float(values["badly_exposed"][kept].max()),
            "min_entropy_kept": float(values["entropy"][kept].min()),
            "removed_by": {names[i]: int(limiting[i]) for i in range(len(names))},
        }


@hookimpl
def delbench_register_selectors() -> list[type]:
    return [PHashDedup, QualityFilter]
