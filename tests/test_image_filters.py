"""Perceptual-hash dedup and the quality filter on hand-made images and the synthetic pool."""
from __future__ import annotations

import numpy as np
import pytest

import delbench
from delbench.errors import ConfigError
from delbench.testing import InMemoryDataset
from delbench_plugins.selectors.image_filters import (
    area_resize_matrix,
    badly_exposed_share,
    candidate_pairs,
    dct_matrix,
    greedy_leaders,
    grey,
    grey_entropy,
    hamming,
    laplacian_variance,
    perceptual_hashes,
)
from delbench_plugins.datasets.synthetic import SyntheticEndoscopy


def _pool(images):
    return InMemoryDataset(np.ascontiguousarray(images), [str(i) for i in range(len(images))])


def _textures(count, size=48, seed=0):
    """Distinct smooth colour textures: a random 6 × 6 grid upsampled, plus fine detail."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(30, 220, size=(count, 6, 6, 3))
    smooth = coarse.repeat(size // 6, axis=1).repeat(size // 6, axis=2)
    detail = rng.normal(0, 10, size=(count, size, size, 3))
    return np.clip(smooth + detail, 0, 255).astype(np.uint8)


def _noisy(images, seed, sigma=4.0, gain=1.04):
    rng = np.random.default_rng(seed)
    return np.clip(images * gain + rng.normal(0, sigma, images.shape), 0, 255).astype(np.uint8)


# --- the building blocks ---------------------------------------------------------------------
def test_dct_matrix_is_the_orthonormal_dct_ii():
    from scipy.fft import dct

    x = np.random.default_rng(0).standard_normal(32)
    assert np.allclose(dct_matrix(32) @ x, dct(x, norm="ortho"), atol=1e-5)
    assert np.allclose(dct_matrix(32) @ dct_matrix(32).T, np.eye(32), atol=1e-5)


def test_area_resize_is_a_box_filter():
    image = np.random.default_rng(1).uniform(0, 255, size=(64, 64)).astype(np.float32)
    halved = area_resize_matrix(64, 32) @ image @ area_resize_matrix(64, 32).T
    assert np.allclose(halved, image.reshape(32, 2, 32, 2).mean(axis=(1, 3)), atol=1e-3)
    assert np.allclose(area_resize_matrix(48, 32).sum(axis=1), 1.0)
    assert np.allclose(area_resize_matrix(20, 32).sum(axis=1), 1.0)  # upsampling works too


def test_phash_is_robust_to_noise_and_separates_distinct_images():
    originals = _textures(30)
    copies = _noisy(originals, seed=1)
    hashes, copy_hashes = perceptual_hashes(originals), perceptual_hashes(copies)
    assert hashes.dtype == np.uint64
    # measured: at most 6 of 64 bits flip (mean 2.3); distinct textures differ in 18 or more
    assert hamming(hashes, copy_hashes).max() <= 8
    assert hamming(hashes, copy_hashes).mean() <= 4
    a, b = np.triu_indices(30, 1)
    assert np.median(hamming(hashes[a], hashes[b])) >= 24
    assert hamming(hashes[a], hashes[b]).min() > 10


def test_greedy_leaders_on_a_path():
    a, b = np.array([0, 1, 2]), np.array([1, 2, 3])  # 0 - 1 - 2 - 3
    assert greedy_leaders(4, a, b, np.arange(4)).tolist() == [True, False, True, False]
    assert greedy_leaders(4, a, b, np.array([1, 0, 2, 3])).tolist() == [False, True, False, True]
    assert greedy_leaders(3, np.zeros(0, int), np.zeros(0, int), np.arange(3)).all()


def test_candidate_search_finds_planted_close_pairs():
    rng = np.random.default_rng(2)
    base = rng.integers(0, 2 ** 63, size=1000, dtype=np.int64).astype(np.uint64)
    flips = (np.uint64(1) << rng.integers(0, 64, size=(1000, 2)).astype(np.uint64))
    twins = base ^ flips[:, 0] ^ flips[:, 1]   # each differs from its base in ≤ 2 bits
    hashes = np.concatenate([base, twins])
    a, b, distance = candidate_pairs(hashes, rounds=8, window=4, seed=0)
    assert np.array_equal(distance, hamming(hashes[a], hashes[b]))
    found = {(min(x, y), max(x, y)) for x, y, d in zip(a.tolist(), b.tolist(), distance.tolist()) if d <= 2}
    planted = {(i, i + 1000) for i in range(1000)}
    assert len(planted & found) >= 990


# --- phash_dedup ---------------------------------------------------------------------------
def test_phash_dedup_keeps_one_frame_per_planted_group():
    rng = np.random.default_rng(3)
    originals = _textures(20, seed=3)
    copies_per = rng.integers(1, 6, size=20)
    images = [originals] + [_noisy(originals[g:g + 1].repeat(c, 0), seed=10 + g)
                            for g, c in enumerate(copies_per)]
    group = np.concatenate([np.arange(20)] + [np.full(c, g) for g, c in enumerate(copies_per)])
    images = np.concatenate(images)
    shuffle = rng.permutation(len(images))          # copies scattered, not consecutive
    images, group = images[shuffle], group[shuffle]
    selection = delbench.get_selector("phash_dedup")().select(_pool(images), 20 / len(images), seed=0)
    chosen = selection.indices
    assert sorted(group[chosen].tolist()) == list(range(20))
    # the kept frame of each group is its first in pool order
    first = [int(np.flatnonzero(group == g)[0]) for g in range(20)]
    assert sorted(chosen.tolist()) == sorted(first)
    assert selection.diagnostics["threshold"] <= 10
    assert selection.diagnostics["filled"] == 0 and selection.diagnostics["trimmed"] == 0


def test_phash_dedup_hits_every_ratio_and_fills_from_duplicates():
    images = np.concatenate([_textures(5, seed=4)] * 4)   # 5 images, each 4 times exactly
    selector = delbench.get_selector("phash_dedup")()
    for ratio in (0.05, 0.25, 0.5, 1.0):
        selection = selector.select(_pool(images), ratio, seed=0)
        assert selection.indices.size == round(ratio * 20)
    half = selector.select(_pool(images), 0.5, seed=0)
    # 5 distinct hashes kept at threshold 0, then 5 extra copies filled in
    assert half.diagnostics["threshold"] == 0
    assert half.diagnostics["kept_at_threshold"] == 5 and half.diagnostics["filled"] == 5
    assert set(range(5)) <= set(half.indices.tolist())


def test_phash_dedup_rejects_bad_parameters():
    with pytest.raises(ConfigError, match="batch_size"):
        delbench.get_selector("phash_dedup")().select(_pool(_textures(3)), 0.5, seed=0, batch_size=0)


# --- quality_filter ------------------------------------------------------------------------
def test_quality_measures_by_hand():
    flat = np.full((1, 16, 16), 120.0, np.float32)
    assert laplacian_variance(flat)[0] == 0.0
    assert grey_entropy(flat, 64)[0] == 0.0
    ramp = np.tile(np.arange(256, dtype=np.float32), (1, 4, 1))   # every grey level equally often
    assert grey_entropy(ramp, 64)[0] == pytest.approx(6.0)
    assert badly_exposed_share(np.zeros((1, 8, 8), np.float32), 20, 235)[0] == 1.0
    assert badly_exposed_share(ramp, 20, 235)[0] == pytest.approx((20 + 20) / 256)
    checker = (np.indices((16, 16)).sum(axis=0) % 2 * 255.0)[None].astype(np.float32)
    blurred = (checker + np.roll(checker, 1, axis=2)) / 2
    assert laplacian_variance(checker)[0] > laplacian_variance(blurred)[0]
    rgb = np.array([[[[255, 0, 0]]]], np.uint8)
    assert grey(rgb)[0, 0, 0] == pytest.approx(0.299 * 255)


def test_quality_filter_removes_mostly_invalid_frames_of_the_synthetic_pool():
    pool = SyntheticEndoscopy(num_frames=400, image_size=48, invalid_fraction=0.5, seed=0)
    kind = pool.metadata()["kind"]
    selector = delbench.get_selector("quality_filter")()
    half = selector.select(pool, 0.5, seed=0)
    removed = np.setdiff1d(np.arange(400), half.indices)
    # measured with invalid frames planted in 10-frame episodes (200 of 400; synthetic_endoscopy
    # v3): 95 % of the removed frames are invalid (random removal: 50 %); the invalid ones kept
    # are 9 out-of-body frames (a well-lit room passes exposure and entropy) and 1 motion-blurred
    assert (kind[removed] == "invalid").mean() >= 0.9
    smaller = selector.select(pool, 0.3, seed=0)
    # measured: no invalid frame among the 120 kept (random: 60)
    assert (kind[smaller.indices] == "invalid").mean() <= 0.03
    assert 0.0 < smaller.diagnostics["quality_cut"] <= 1.0
    assert sum(smaller.diagnostics["removed_by"].values()) == 280


def test_quality_filter_rejects_bad_levels():
    with pytest.raises(ConfigError, match="dark_level"):
        delbench.get_selector("quality_filter")().select(_pool(_textures(3)), 0.5, seed=0,
                                                         dark_level=200, bright_level=100)
