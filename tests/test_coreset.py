"""k-center greedy, herding and facility location on small hand-made embeddings."""
from __future__ import annotations

import heapq
import importlib.util

import numpy as np
import pytest

import delbench
from delbench.errors import ConfigError
from delbench.sdk.selection import largest_remainder
from delbench.testing import InMemoryDataset
from delbench_plugins.selectors import coreset
from delbench_plugins.selectors.coreset import (
    farthest_first_order,
    knn_graph,
    lazy_greedy_facility_location,
    partition_pool,
)

KNN_BACKENDS = ["numpy"] + (["faiss"] if importlib.util.find_spec("faiss") else [])


def _pool(n):
    return InMemoryDataset(np.zeros((n, 2, 2, 3), np.uint8), [str(i) for i in range(n)])


def _blobs(n_clusters, per_cluster, dim=32, spread=0.05, seed=0):
    """Well-separated clusters: unit centres (random, nearly orthogonal) plus small noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    points = centres[labels] + spread * rng.standard_normal((labels.size, dim))
    return points.astype(np.float32), labels


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _select(name, ratio, embeddings, seed=0, **params):
    return delbench.get_selector(name)().select(_pool(len(embeddings)), ratio, seed=seed,
                                                embeddings=embeddings, **params)


# --- k-center greedy -------------------------------------------------------------------------
@pytest.mark.parametrize("params", [{}, {"exact": False, "partition_size": 10_000},
                                    {"exact": False, "partition_size": 60}])
def test_kcenter_covers_every_cluster_before_repeating_one(params):
    points, labels = _blobs(6, 50)
    for seed in range(3):
        chosen = _select("kcenter_greedy", 6 / 300, points, seed=seed, **params).indices
        assert sorted(labels[chosen].tolist()) == [0, 1, 2, 3, 4, 5]
        twelve = _select("kcenter_greedy", 12 / 300, points, seed=seed, **params).indices
        assert set(labels[twelve].tolist()) == set(range(6))


def test_kcenter_radius_beats_random_and_shrinks_with_budget():
    rng = np.random.default_rng(1)
    points = rng.standard_normal((400, 8)).astype(np.float32)
    unit = _unit(points)

    def radius(chosen):
        distances = np.linalg.norm(unit[:, None, :] - unit[chosen][None, :, :], axis=2)
        return distances.min(axis=1).max()

    small = _select("kcenter_greedy", 0.05, points)
    large = _select("kcenter_greedy", 0.2, points)
    assert large.diagnostics["radius"] < small.diagnostics["radius"]
    # no projection at d = 8 < 128 and one partition: the recorded radius is the true one
    assert small.diagnostics["radius"] == pytest.approx(radius(small.indices), rel=1e-4)
    random_radii = [radius(rng.choice(400, 20, replace=False)) for _ in range(20)]
    assert radius(small.indices) < min(random_radii)


def test_kcenter_with_few_centres_spreads_over_partitions():
    points, labels = _blobs(8, 40, seed=3)
    selection = _select("kcenter_greedy", 3 / 320, points, exact=False, partition_size=40, global_steps=0)
    assert selection.diagnostics["partitions"] == 8
    assert selection.diagnostics["partitions_without_centre"] == 5
    assert len(set(labels[selection.indices].tolist())) == 3


def test_farthest_first_order_by_hand():
    points = np.array([[0.0], [1.0], [10.0], [4.0]])
    assert farthest_first_order(points, 0).tolist() == [0, 2, 3, 1]


# --- herding -----------------------------------------------------------------------------
@pytest.mark.parametrize("params", [{}, {"exact": False, "partition_size": 300},
                                    {"exact": False, "partition_size": 300, "global_steps": 0}])
def test_herding_mean_tracks_pool_mean_better_than_random(params):
    rng = np.random.default_rng(2)
    points = (rng.standard_normal((1200, 24)) + np.linspace(0, 2, 24)).astype(np.float32)
    unit = _unit(points)
    target = unit.mean(axis=0)
    selection = _select("herding", 0.05, points, **params)
    herded = np.linalg.norm(unit[selection.indices].mean(axis=0) - target)
    assert selection.diagnostics["mean_error"] == pytest.approx(herded, rel=1e-3, abs=1e-6)
    random_errors = [np.linalg.norm(unit[rng.choice(1200, 60, replace=False)].mean(axis=0) - target)
                     for _ in range(50)]
    # herding's error falls like 1/k, random sampling's like 1/sqrt(k)
    assert herded < 0.25 * np.median(random_errors)
    assert herded < min(random_errors)


def test_herding_picks_the_point_nearest_the_mean_first():
    points = np.array([[1, 0], [0, 1], [0.6, 0.6]], np.float32)  # normalised: (.707, .707)
    chosen = _select("herding", 1 / 3, points).indices
    assert chosen.tolist() == [2]


def test_largest_remainder_by_hand():
    assert largest_remainder(10, np.array([5, 3, 2])).tolist() == [5, 3, 2]
    # quotas 4.5, 2.7, 1.8: floors 4, 2, 1; the two left go to .8 and .7
    assert largest_remainder(9, np.array([5, 3, 2])).tolist() == [4, 3, 2]
    assert largest_remainder(1, np.array([1, 1, 1])).tolist() == [1, 0, 0]
    assert largest_remainder(0, np.array([4, 4])).tolist() == [0, 0]


def test_largest_remainder_exact_ties_and_tie_break():
    # quotas 4/3, 1/3, 1/3: the three remainders are equal exactly, so position decides ...
    assert largest_remainder(2, np.array([4, 1, 1])).tolist() == [2, 0, 0]
    # ... while float quotas see 4/3 - 1 < 1/3 in the last bit and hand the unit on
    assert largest_remainder(2, np.array([4.0, 1.0, 1.0])).tolist() == [1, 1, 0]
    # a tie-break key orders equal remainders (smallest key first)
    key = np.array([0.9, 0.1, 0.5])
    assert largest_remainder(1, np.array([1, 1, 1]), tie_break=key).tolist() == [0, 1, 0]
    assert largest_remainder(2, np.array([1, 1, 1]), tie_break=key).tolist() == [0, 1, 1]
    result = largest_remainder(7, np.array([3, 3, 3]))
    assert result.dtype == np.int64 and result.tolist() == [3, 2, 2]


# --- facility location -------------------------------------------------------------------
def test_facility_location_picks_one_representative_per_cluster():
    points, labels = _blobs(8, 10, spread=0.08, seed=4)
    selection = _select("facility_location", 8 / 80, points, exact=False, n_neighbors=10)
    chosen = selection.indices
    assert sorted(labels[chosen].tolist()) == list(range(8))
    # each pick is its cluster's medoid: the member with the largest summed similarity
    unit = _unit(points)
    for pick in chosen:
        members = np.flatnonzero(labels == labels[pick])
        similarity = np.clip(unit[members] @ unit[members].T, 0, 1).sum(axis=1)
        assert pick == members[np.argmax(similarity)]
    assert 0 < selection.diagnostics["coverage"] <= 1


def _plain_greedy(count, source, target, weight, budget):
    coverage = np.zeros(count)
    picked = []
    for _ in range(budget):
        gains = np.zeros(count)
        np.add.at(gains, target, np.maximum(weight - coverage[source], 0))
        gains[picked] = -1
        best = int(np.argmax(gains))
        picked.append(best)
        covered = target == best
        np.maximum.at(coverage, source[covered], weight[covered])
    return picked, coverage.sum()


def test_lazy_greedy_equals_plain_greedy():
    rng = np.random.default_rng(5)
    rows = _unit(rng.standard_normal((60, 5))).astype(np.float32)
    source, target, weight = knn_graph(rows, 6)
    lazy, objective, evaluations = lazy_greedy_facility_location(60, source, target, weight, 15)
    plain, plain_objective = _plain_greedy(60, source, target, weight, 15)
    assert lazy.tolist() == plain
    assert objective == pytest.approx(plain_objective)
    assert evaluations >= 15


@pytest.mark.parametrize("backend", KNN_BACKENDS)
def test_knn_graph_is_exact_and_includes_self(backend):
    rng = np.random.default_rng(6)
    rows = _unit(rng.standard_normal((50, 4))).astype(np.float32)
    rows[7] = rows[3]  # an identical pair: both must still list themselves
    source, target, weight = knn_graph(rows, 5, backend=backend)
    assert source.size == 250
    for i in range(50):
        mine = target[source == i]
        assert i in mine
        similarity = rows @ rows[i]
        similarity[i] = np.inf
        # compare similarities, not identities: rows 3 and 7 tie for every other row
        best = np.sort(similarity)[::-1][:5]
        assert np.allclose(np.sort(similarity[mine])[::-1], best, atol=1e-6)
    assert np.all((weight >= 0) & (weight <= 1))
    assert np.allclose(weight[source == target], 1.0)


def test_facility_location_fills_budget_after_full_coverage():
    points, _ = _blobs(3, 4)
    for params in ({"exact": False, "n_neighbors": 20}, {"exact": True}):
        chosen = _select("facility_location", 1.0, points, **params).indices
        assert chosen.tolist() == list(range(12))


# --- shared machinery -------------------------------------------------------------------
def test_partitions_split_oversized_groups_and_cover_every_row():
    points, labels = _blobs(2, 300, seed=7)  # two clusters of 300, target partitions of 50
    partitioning = partition_pool(points, 50, seed=0)
    order = partitioning.order
    assert np.array_equal(np.sort(order), np.arange(600))
    assert max(m.size for m in partitioning.members) <= 100
    for members in partitioning.members:
        assert np.unique(labels[members]).size == 1


def test_identical_rows_are_cut_into_chunks():
    partitioning = partition_pool(np.ones((250, 4), np.float32), 40, seed=0)
    assert max(m.size for m in partitioning.members) <= 80
    assert np.array_equal(np.sort(partitioning.order), np.arange(250))


@pytest.mark.parametrize("name", ["kcenter_greedy", "herding", "facility_location"])
def test_float16_memmap_input_and_projection(tmp_path, name):
    points, labels = _blobs(5, 80, dim=200, seed=8)
    path = tmp_path / "embeddings.npy"
    np.save(path, points.astype(np.float16))
    mapped = np.load(path, mmap_mode="r")
    selection = _select(name, 0.05, mapped, exact=False, projection_dim=64, partition_size=100)
    assert selection.indices.size == 20 and selection.diagnostics["exact"] is False
    assert selection.diagnostics["projection_dim"] == 64
    assert selection.diagnostics["partitions"] >= 4
    assert set(labels[selection.indices].tolist()) == set(range(5))
    again = _select(name, 0.05, mapped, exact=False, projection_dim=64, partition_size=100)
    assert np.array_equal(selection.indices, again.indices)


@pytest.mark.parametrize("name", ["kcenter_greedy", "herding", "facility_location"])
@pytest.mark.parametrize("params", [{"partition_size": 0}, {"projection_dim": 0}, {"partition_size": 1.5}])
def test_bad_parameters_are_clear_errors(name, params):
    points, _ = _blobs(2, 5)
    with pytest.raises(ConfigError, match=next(iter(params))):
        _select(name, 0.5, points, **params)


def test_unknown_knn_backend_is_a_clear_error():
    points, _ = _blobs(2, 5)
    with pytest.raises(ConfigError, match="knn_backend"):
        _select("facility_location", 0.5, points, knn_backend="annoy")


# --- exact where it is cheap ---------------------------------------------------------------
def _brute_kcenter(unit, start, budget):
    """Gonzalez's farthest-first traversal, written plainly (float64, all pairs)."""
    distance = np.linalg.norm(unit[:, None, :] - unit[None, :, :], axis=2)
    picked = [start]
    while len(picked) < budget:
        picked.append(int(np.argmax(distance[:, picked].min(axis=1))))
    return sorted(picked), float(distance[:, picked].min(axis=1).max())


def _brute_herding(unit, budget):
    """Step t picks the unpicked x minimising ||(t + 1)·mean − (S + x)|| (iCaRL's argmin)."""
    mean, total, picked = unit.mean(axis=0), np.zeros(unit.shape[1]), []
    for step in range(budget):
        cost = np.linalg.norm((step + 1) * mean - (total + unit), axis=1)
        cost[picked] = np.inf
        picked.append(int(np.argmin(cost)))
        total += unit[picked[-1]]
    return sorted(picked)


def _brute_facility_location(unit, budget):
    """The plain greedy on all pairs: similarity = cosine clipped to [0, 1], self 1."""
    similarity = np.clip(unit @ unit.T, 0.0, 1.0)
    np.fill_diagonal(similarity, 1.0)
    coverage, picked = np.zeros(len(unit)), []
    for _ in range(budget):
        gains = np.maximum(similarity - coverage, 0.0).sum(axis=1)
        gains[picked] = -1.0
        picked.append(int(np.argmax(gains)))
        coverage = np.maximum(coverage, similarity[picked[-1]])
    return sorted(picked), float(coverage.sum())


def test_exact_kcenter_is_the_plain_greedy():
    points = np.random.default_rng(11).standard_normal((90, 6)).astype(np.float32)
    unit = _unit(points)
    for seed in range(3):
        selection = _select("kcenter_greedy", 9 / 90, points, seed=seed, exact=True)
        assert selection.diagnostics["exact"] is True and selection.diagnostics["partitions"] == 1
        # the start is a seeded random row: the plain greedy from one of the picks gives them all
        matches = [_brute_kcenter(unit, int(start), 9) for start in selection.indices]
        assert selection.indices.tolist() in [picked for picked, _ in matches]
        radius = next(r for picked, r in matches if picked == selection.indices.tolist())
        assert selection.diagnostics["radius"] == pytest.approx(radius, rel=1e-4)


def test_exact_herding_is_the_plain_greedy():
    points = (np.random.default_rng(12).standard_normal((120, 5)) + 0.5).astype(np.float32)
    selection = _select("herding", 0.1, points, exact=True)
    assert selection.diagnostics["exact"] is True and selection.diagnostics["partitions"] == 1
    assert selection.indices.tolist() == _brute_herding(_unit(points), 12)


def test_exact_facility_location_is_the_plain_greedy_on_all_pairs():
    points = np.random.default_rng(13).standard_normal((100, 5)).astype(np.float32)
    selection = _select("facility_location", 0.1, points, exact=True)
    picked, value = _brute_facility_location(_unit(points), 10)
    assert selection.indices.tolist() == picked
    assert selection.diagnostics["coverage"] == pytest.approx(value / 100, rel=1e-5)
    assert selection.diagnostics["exact"] is True and "n_neighbors" not in selection.diagnostics


@pytest.mark.parametrize("name", ["kcenter_greedy", "herding", "facility_location"])
def test_auto_runs_exact_under_the_bound_and_the_approximation_above(monkeypatch, name):
    points, _ = _blobs(4, 60, dim=16, seed=14)
    cheap = _select(name, 0.1, points, partition_size=60)
    assert cheap.diagnostics["exact"] is True and cheap.diagnostics["partitions"] == 1
    estimate = delbench.get_selector(name).exact_cost(240, 16, 24)
    assert cheap.diagnostics["exact_estimate_s"] == pytest.approx(estimate.seconds, abs=1e-3)
    monkeypatch.setattr(coreset, "EXACT_MAX_SECONDS", estimate.seconds / 2)
    slow = _select(name, 0.1, points, partition_size=60)
    assert slow.diagnostics["exact"] is False and slow.diagnostics["partitions"] > 1
    monkeypatch.setattr(coreset, "EXACT_MAX_SECONDS", 60.0)
    monkeypatch.setattr(coreset, "EXACT_MAX_BYTES", estimate.bytes - 1)
    assert _select(name, 0.1, points, partition_size=60).diagnostics["exact"] is False
    forced = _select(name, 0.1, points, exact=True)  # above the bounds, but asked for
    assert forced.diagnostics["exact"] is True and forced.diagnostics["partitions"] == 1


def test_exact_cost_grows_with_the_problem():
    for name in ("kcenter_greedy", "herding", "facility_location"):
        cls = delbench.get_selector(name)
        small, large = cls.exact_cost(1_000, 64, 50), cls.exact_cost(4_000, 64, 200)
        assert large.seconds > small.seconds and large.bytes > small.bytes
    # facility location's dense matrix: 2 GiB from about 23,000 rows on
    assert not delbench.get_selector("facility_location").exact_cost(24_000, 8, 1).within_bounds()


@pytest.mark.parametrize("name", ["kcenter_greedy", "herding", "facility_location"])
def test_exact_parameter_is_checked(name):
    points, _ = _blobs(2, 5)
    for bad in (1, "yes", None):
        with pytest.raises(ConfigError, match="exact"):
            _select(name, 0.5, points, exact=bad)
    with pytest.raises(ConfigError, match="partition_size"):
        _select(name, 0.5, points, exact=True, partition_size=100)


def test_kcenter_partitions_as_large_as_the_time_bound_allows(monkeypatch):
    points, labels = _blobs(6, 50, dim=16, seed=15)
    monkeypatch.setattr(coreset, "EXACT_MAX_SECONDS", 0.0)  # the exact algorithm never fits
    one = _select("kcenter_greedy", 0.1, points)
    assert one.diagnostics["exact"] is False and one.diagnostics["partitions"] == 1  # 300 < 1,000 rows
    monkeypatch.setattr(coreset, "MIN_AUTO_PARTITION", 100)
    several = _select("kcenter_greedy", 0.1, points)
    assert several.diagnostics["partition_size"] == 100 and several.diagnostics["partitions"] >= 3
    assert coreset.KCenterGreedy.budgeted_partition_size(300, 30, 16) == 100
    monkeypatch.setattr(coreset, "EXACT_MAX_SECONDS", 60.0)
    assert coreset.KCenterGreedy.budgeted_partition_size(10**6, 50_000, 128) == int(
        60.0 // (coreset.GREEDY_STEP_SECONDS * (128 + coreset.GREEDY_STEP_PASSES) * 50_000))


def test_herding_approximation_ends_with_global_steps(monkeypatch):
    rng = np.random.default_rng(16)
    points = (rng.standard_normal((1200, 24)) + np.linspace(0, 2, 24)).astype(np.float32)
    selection = _select("herding", 0.05, points, exact=False, partition_size=200, global_steps=20)
    assert selection.diagnostics["global_steps"] == 20 and selection.diagnostics["partitions"] > 1
    assert np.unique(selection.indices).size == 60
    # the rows of the whole pool must fit in EXACT_MAX_BYTES, else partitions only
    monkeypatch.setattr(coreset, "EXACT_MAX_BYTES", 4 * 1200 * 24 - 1)
    assert _select("herding", 0.05, points, exact=False, partition_size=200).diagnostics["global_steps"] == 0


def test_facility_location_approximation_keeps_the_full_dimension():
    points, _ = _blobs(5, 80, dim=200, seed=17)
    selection = _select("facility_location", 0.05, points, exact=False, partition_size=100)
    assert selection.diagnostics["projection_dim"] is None and selection.diagnostics["partitions"] >= 4


def test_kcenter_approximation_ends_with_exact_global_steps(monkeypatch):
    points = np.random.default_rng(18).standard_normal((400, 40)).astype(np.float32)
    unit = _unit(points)

    def radius(chosen):
        return np.linalg.norm(unit[:, None, :] - unit[chosen][None, :, :], axis=2).min(axis=1).max()

    projected = _select("kcenter_greedy", 0.1, points, exact=False, projection_dim=8, global_steps=0)
    refined = _select("kcenter_greedy", 0.1, points, exact=False, projection_dim=8, global_steps=20)
    assert projected.diagnostics["global_steps"] == 0 and refined.diagnostics["global_steps"] == 20
    # after the global steps the recorded radius is the true one, in the full dimension
    assert refined.diagnostics["radius"] == pytest.approx(radius(refined.indices), rel=1e-4)
    assert radius(refined.indices) <= radius(projected.indices)
    # the steps run only while their cost fits the exact algorithm's bounds
    monkeypatch.setattr(coreset, "EXACT_MAX_BYTES", 1)
    assert _select("kcenter_greedy", 0.1, points, exact=False, projection_dim=8).diagnostics["global_steps"] == 0


def test_defaults_run_the_exact_algorithms_on_a_small_pool():
    """Version 1 projected k-center to 128 dimensions and gave facility location a 10-NN graph
    at any size; now the defaults are the plain greedies where they are cheap."""
    points = np.random.default_rng(19).standard_normal((120, 160)).astype(np.float32)
    unit = _unit(points)
    kcenter = _select("kcenter_greedy", 0.1, points)
    assert kcenter.indices.tolist() in [_brute_kcenter(unit, int(s), 12)[0] for s in kcenter.indices]
    assert _select("facility_location", 0.1, points).indices.tolist() == _brute_facility_location(unit, 12)[0]
    assert _select("herding", 0.1, points).indices.tolist() == _brute_herding(unit, 12)
