"""Coverage-centric selection (CCS) and MAE-loss ranking on hand-made inputs."""
from __future__ import annotations

import math

import numpy as np
import pytest

import delbench
from delbench.errors import ConfigError, SelectionError
from delbench.testing import InMemoryDataset
from delbench_plugins.selectors.difficulty import stratified_allocation


def _pool(n, images=None):
    images = np.zeros((n, 2, 2, 3), np.uint8) if images is None else images
    return InMemoryDataset(images, [str(i) for i in range(n)])


def _fan(angles_degrees):
    """Unit vectors in the plane; with one cluster the centroid is the mean direction."""
    radians = np.radians(np.asarray(angles_degrees, np.float64))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


# --- CCS ---------------------------------------------------------------------------------
def test_stratified_allocation_by_hand():
    # smallest first: stratum 1 (size 1) takes min(1, 12 // 4 = 3) = 1, leaving 11;
    # stratum 3 (size 3) takes min(3, 11 // 3 = 3) = 3, leaving 8; stratum 0 (size 5)
    # takes min(5, 8 // 2 = 4) = 4, leaving 4; stratum 2 (size 10) takes the last 4.
    assert stratified_allocation(np.array([5, 1, 10, 3]), 12).tolist() == [4, 1, 4, 3]
    assert stratified_allocation(np.array([2, 2, 2]), 6).tolist() == [2, 2, 2]
    assert stratified_allocation(np.array([0, 7, 0, 1]), 5).tolist() == [0, 4, 0, 1]
    with pytest.raises(SelectionError):
        stratified_allocation(np.array([1, 1]), 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_allocation_always_sums_to_budget(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        sizes = rng.integers(0, 30, size=rng.integers(1, 12))
        budget = int(rng.integers(0, sizes.sum() + 1))
        allocation = stratified_allocation(sizes, budget)
        assert allocation.sum() == budget
        assert np.all(allocation <= sizes)


def test_ccs_prunes_the_hardest_and_spreads_over_strata():
    # 100 items on a fan around +x: item i sits at angle (i - 49.5) * 0.8 degrees, so the
    # centroid distance (difficulty) grows with |i - 49.5|; the 10 hardest are the 5 at each end.
    angles = (np.arange(100) - 49.5) * 0.8
    embeddings = _fan(angles)
    selection = delbench.get_selector("ccs")().select(
        _pool(100), 0.3, seed=0, embeddings=embeddings, n_clusters=1, n_strata=5, hard_prune=0.1)
    chosen = selection.indices
    hardest = np.r_[np.arange(5), np.arange(95, 100)]
    assert not set(chosen.tolist()) & set(hardest.tolist())
    assert selection.diagnostics["hard_pruned"] == 10
    sizes = np.array(selection.diagnostics["stratum_sizes"])
    allocation = np.array(selection.diagnostics["stratum_allocation"])
    assert sizes.sum() == 90 and allocation.sum() == 30
    assert allocation.tolist() == stratified_allocation(sizes, 30).tolist()
    # the chosen items' difficulty follows the allocation stratum by stratum
    distance = 1 - np.cos(np.radians(np.abs(angles)))
    eligible = np.setdiff1d(np.arange(100), hardest)
    low, high = distance[eligible].min(), distance[eligible].max()
    stratum = np.minimum(((distance[chosen] - low) / ((high - low) / 5)).astype(int), 4)
    assert np.bincount(stratum, minlength=5).tolist() == allocation.tolist()


def test_ccs_is_seeded_and_lowers_the_hard_cut_when_the_budget_needs_it():
    embeddings = _fan((np.arange(60) - 29.5) * 1.5)
    ccs = delbench.get_selector("ccs")()
    first = ccs.select(_pool(60), 0.5, seed=0, embeddings=embeddings, n_clusters=1)
    again = ccs.select(_pool(60), 0.5, seed=0, embeddings=embeddings, n_clusters=1)
    other = ccs.select(_pool(60), 0.5, seed=1, embeddings=embeddings, n_clusters=1)
    assert np.array_equal(first.indices, again.indices)
    assert not np.array_equal(first.indices, other.indices)
    nearly_all = ccs.select(_pool(60), 0.95, seed=0, embeddings=embeddings, n_clusters=1, hard_prune=0.2)
    assert nearly_all.indices.size == 57
    assert nearly_all.diagnostics["hard_pruned"] == 3


@pytest.mark.parametrize("params", [{"score": "forgetting"}, {"hard_prune": 1.0}, {"hard_prune": -0.1},
                                    {"n_strata": 0}])
def test_ccs_bad_parameters_are_clear_errors(params):
    with pytest.raises(ConfigError, match=next(iter(params))):
        delbench.get_selector("ccs")().select(_pool(10), 0.5, seed=0, embeddings=_fan(np.arange(10)), **params)


# --- MAE loss ----------------------------------------------------------------------------
class BrightnessBackbone:
    """A stand-in backbone whose 'reconstruction loss' is the image's mean brightness."""

    def __init__(self):
        self.calls = []

    def reconstruction_loss(self, images, *, seed):
        self.calls.append((len(images), seed))
        return np.asarray(images, np.float32).mean(axis=(1, 2, 3)) / 255.0


def _brightness_pool(levels):
    images = np.broadcast_to(np.asarray(levels, np.uint8)[:, None, None, None], (len(levels), 4, 4, 3))
    return _pool(len(levels), np.ascontiguousarray(images))


def test_mae_loss_keeps_the_highest_losses():
    levels = [10, 200, 30, 250, 90, 120, 5, 180]
    pool = _brightness_pool(levels)
    backbone = BrightnessBackbone()
    selector = delbench.get_selector("mae_loss")()
    hard = selector.select(pool, 3 / 8, seed=4, backbone=backbone, batch_size=3)
    assert hard.indices.tolist() == [1, 3, 7]                    # 200, 250, 180
    assert backbone.calls == [(3, 4), (3, 4), (2, 4)]            # batches of 3, the seed passed on
    assert hard.diagnostics["loss_cut"] == pytest.approx(180 / 255)
    easy = selector.select(pool, 3 / 8, seed=4, backbone=backbone, keep="easy")
    assert easy.indices.tolist() == [0, 2, 6]                    # 10, 30, 5
    whole_batch = selector.select(pool, 3 / 8, seed=4, backbone=BrightnessBackbone(), batch_size=64)
    assert np.array_equal(whole_batch.indices, hard.indices)


def test_mae_loss_breaks_ties_by_pool_order():
    pool = _brightness_pool([50, 50, 50, 50])
    chosen = delbench.get_selector("mae_loss")().select(pool, 0.5, seed=0, backbone=BrightnessBackbone())
    assert chosen.indices.tolist() == [0, 1]


def test_mae_loss_needs_a_backbone_and_checks_its_output():
    pool = _brightness_pool([1, 2, 3])
    selector = delbench.get_selector("mae_loss")()
    with pytest.raises(SelectionError, match="backbone"):
        selector.select(pool, 0.5, seed=0)

    class Broken:
        def reconstruction_loss(self, images, *, seed):
            return np.full(len(images) + 1, math.nan)

    with pytest.raises(SelectionError, match="reconstruction_loss"):
        selector.select(pool, 0.5, seed=0, backbone=Broken())
    with pytest.raises(ConfigError, match="keep"):
        selector.select(pool, 0.5, seed=0, backbone=BrightnessBackbone(), keep="medium")
    assert delbench.get_selector("mae_loss").requires_backbone is True
