"""Two-level k-means: fine counts by size, clusters of structured data, determinism, opt-in."""
import numpy as np
import pytest

import delbench
from delbench.errors import ConfigError
from delbench.sdk.params import check_plugin_params
from delbench.testing import InMemoryDataset
from delbench_plugins.lib.clustering import (HIERARCHICAL_MIN_CLUSTERS, cluster, hierarchical_kmeans, kmeans,
                                             proportional_counts, resolve_kmeans_method)


@pytest.mark.parametrize("sizes, total, expected", [
    ([50, 30, 20], 10, [5, 3, 2]),
    ([1, 99], 10, [1, 9]),            # a small group still gets one
    ([0, 5, 5], 3, [0, 2, 1]),        # equal remainders: the lower group first; empty groups none
    ([2, 2, 2], 10, [2, 2, 2]),       # never more than a group's size
    ([1, 1, 1], 2, [1, 1, 1]),        # more non-empty groups than clusters: one each
    ([10, 1, 1, 1], 4, [1, 1, 1, 1]),  # one each comes first: 13 rows, 4 clusters
    ([97, 1, 1, 1], 10, [7, 1, 1, 1]),
])
def test_proportional_counts(sizes, total, expected):
    counts = proportional_counts(np.array(sizes), total)
    assert counts.tolist() == expected


def _blobs(groups=4, per_group=4, rows=40, dim=24, seed=0):
    """``groups`` far-apart directions, each with ``per_group`` blobs around it: two levels of
    structure. Returns rows and each row's blob number."""
    rng = np.random.default_rng(seed)
    tops = rng.normal(size=(groups, dim)) * 4
    centres = np.concatenate([top + rng.normal(size=(per_group, dim)) for top in tops])
    blob = np.repeat(np.arange(groups * per_group), rows)
    return (centres[blob] + 0.05 * rng.normal(size=(blob.size, dim))).astype(np.float32), blob


@pytest.mark.parametrize("probes", [1, 3])
def test_two_levels_find_the_blobs(probes):
    data, blob = _blobs()
    result = hierarchical_kmeans(data, 16, seed=0, probes=probes, backend="sklearn")
    assert result.method == "hierarchical" and result.coarse_clusters == 4 and result.n_clusters == 16
    # every blob is one cluster and every cluster one blob
    pairs = {(b, l) for b, l in zip(blob.tolist(), result.labels.tolist())}
    assert len(pairs) == 16 and len({l for _, l in pairs}) == 16
    assert result.distances.max() < 0.05
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    assert np.allclose(1 - np.sum(unit * result.centroids[result.labels], axis=1), result.distances, atol=1e-5)


def test_two_levels_are_deterministic_and_need_no_more_than_the_seed():
    data, _ = _blobs(seed=1)
    first = hierarchical_kmeans(data, 12, seed=3, chunk=50, n_jobs=2)
    again = hierarchical_kmeans(data, 12, seed=3, chunk=1000, n_jobs=1)
    assert np.array_equal(first.labels, again.labels) and np.array_equal(first.centroids, again.centroids)
    assert np.array_equal(first.distances, again.distances)
    # more probes can only bring a row nearer to a centroid of the same set
    one = hierarchical_kmeans(data, 12, seed=3, probes=1)
    many = hierarchical_kmeans(data, 12, seed=3, probes=4)
    assert np.array_equal(one.centroids, many.centroids)
    assert np.all(many.distances <= one.distances + 1e-6)


def test_few_clusters_and_rows_subsets():
    data, _ = _blobs()
    flat = kmeans(data, 3, seed=0)
    assert np.array_equal(hierarchical_kmeans(data, 3, seed=0).labels, flat.labels)  # < 4 clusters: flat
    rows = np.arange(0, data.shape[0], 2)
    sub = hierarchical_kmeans(data, 8, seed=0, rows=rows)
    assert sub.labels.shape == rows.shape and sub.n_clusters == 8


def test_auto_switches_at_the_documented_number_of_clusters():
    assert resolve_kmeans_method("auto", HIERARCHICAL_MIN_CLUSTERS - 1) == "flat"
    assert resolve_kmeans_method("auto", HIERARCHICAL_MIN_CLUSTERS) == "hierarchical"
    assert resolve_kmeans_method("flat", 10 ** 6) == "flat"
    data, _ = _blobs()
    assert cluster(data, 16, seed=0).method == "flat"
    assert cluster(data, 16, seed=0, method="hierarchical").method == "hierarchical"


@pytest.mark.parametrize("name", ["meddel", "semdedup", "prototypes", "d4"])
def test_selectors_take_the_method_and_flat_is_their_default_below_the_threshold(name):
    data, _ = _blobs()
    pool = InMemoryDataset(np.zeros((data.shape[0], 2, 2, 3), np.uint8), [str(i) for i in range(data.shape[0])])
    selector = delbench.get_selector(name)()
    default = selector.select(pool, 0.25, seed=0, embeddings=data, n_clusters=16)
    flat = selector.select(pool, 0.25, seed=0, embeddings=data, n_clusters=16, kmeans="flat")
    two = selector.select(pool, 0.25, seed=0, embeddings=data, n_clusters=16, kmeans="hierarchical")
    assert np.array_equal(default.indices, flat.indices) and default.diagnostics["kmeans"] == "flat"
    assert two.diagnostics["kmeans"] == "hierarchical" and two.diagnostics["n_coarse_clusters"] == 4
    assert two.indices.size == default.indices.size
    with pytest.raises(ConfigError, match="kmeans must be one of"):
        check_plugin_params("selector", type(selector), {"kmeans": "tree"}, name)
