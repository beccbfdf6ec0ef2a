"""MedDEL, SemDeDup, SSL prototypes, D4 and the k-means helper on hand-built embeddings."""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

import delbench
from delbench.errors import ConfigError, SelectionError
from delbench.testing import InMemoryDataset
from delbench_plugins.lib.clustering import cluster_members, kmeans, normalized_rows, pool_mean
from delbench_plugins.lib.cluster_duplicates import max_similarity_to_priors

BACKENDS = ["sklearn"] + (["faiss"] if importlib.util.find_spec("faiss") else [])


def _pool(n):
    return InMemoryDataset(np.zeros((n, 4, 4, 3), np.uint8), [str(i) for i in range(n)])


def _at(degrees):
    radians = math.radians(degrees)
    return [math.cos(radians), math.sin(radians), 0.0]


# One cluster, symmetric about +x so its centroid is exactly +x. Index: angle.
#   0: +40°  1: +38° (near-duplicate of 0, closer to the centroid)
#   2: -40°  3: -38° (near-duplicate of 2, closer)   4: 0° (on the centroid)   5: 180° (outlier)
ANGLES = [40, 38, -40, -38, 0, 180]
EMBEDDINGS = np.array([_at(a) for a in ANGLES], np.float32)
COS = {a: math.cos(math.radians(a)) for a in (2, 38, 40, 80)}


def _select(name, ratio, embeddings=EMBEDDINGS, **params):
    selector = delbench.get_selector(name)()
    params.setdefault("n_clusters", 1)
    return selector.select(_pool(len(embeddings)), ratio, seed=0, embeddings=embeddings, **params)


# --- MedDEL -----------------------------------------------------------------------------------
def test_meddel_removes_outlier_and_keeps_the_duplicate_farther_from_the_centroid():
    result = _select("meddel", 0.5)
    assert result.indices.tolist() == [0, 2, 4]  # 1 and 3 were the closer duplicates, 5 the outlier
    assert result.indices.dtype == np.int64
    diagnostics = result.diagnostics
    assert diagnostics["n_outliers"] == 1
    assert diagnostics["eps"] == 0.9
    assert diagnostics["filled"] == 0
    assert diagnostics["n_clusters"] == 1
    # item 4's largest similarity to a farther item is cos(38°) (to item 1): the threshold
    assert diagnostics["eta"] == pytest.approx(COS[38], abs=1e-5)
    assert diagnostics["time_s"] >= 0


def test_meddel_trims_ties_deterministically_and_records_eta():
    result = _select("meddel", 4 / 6)
    # items 1 and 3 tie (score cos 2°, same distance); the lower index is kept
    assert result.indices.tolist() == [0, 1, 2, 4]
    assert result.diagnostics["eta"] == pytest.approx(COS[2], abs=1e-5)
    assert result.diagnostics["ties_trimmed"] == 1


def test_meddel_fills_with_outliers_when_too_few_survive():
    result = _select("meddel", 1.0)
    assert result.indices.tolist() == list(range(6))
    assert result.diagnostics["filled"] == 1


def test_meddel_eps_controls_outliers():
    result = _select("meddel", 0.5, eps=0.22)  # ±40° (distance 0.234) become outliers too
    assert result.diagnostics["n_outliers"] == 3
    assert result.indices.tolist() == [1, 3, 4]
    with pytest.raises(ConfigError, match="eps"):
        _select("meddel", 0.5, eps=-1)


def test_meddel_block_size_does_not_change_the_result():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(12, 24))
    embeddings = (centres[rng.integers(0, 12, 600)] + 0.4 * rng.normal(size=(600, 24))).astype(np.float16)
    default = _select("meddel", 0.3, embeddings, n_clusters=5)
    tiny_blocks = _select("meddel", 0.3, embeddings, n_clusters=5, block_floats=500)
    assert np.array_equal(default.indices, tiny_blocks.indices)
    assert default.indices.size == 180


# --- centring (center=True) -------------------------------------------------------------------
def _offset_pool():
    """40 inliers just off a large common offset, and 4 outliers on the opposite side of it.

    Raw, every row is within ~0.002 cosine distance of the centroid (the offset dominates),
    so MedDEL's eps step finds nothing and the outliers, farthest from the centroid, win the
    deduplication. Centred, the inliers point one way and the outliers the other (cosine
    distance ~2 to the centroid)."""
    rng = np.random.default_rng(7)
    offset = np.array([60.0, 40.0, 0.0, 0.0, 0.0, 0.0])
    inliers = offset + [0.0, 0.0, 1.0, 0.0, 0.0, 0.0] + 0.02 * rng.normal(size=(40, 6))
    outliers = offset + [0.0, 0.0, -3.0, 0.0, 0.0, 0.0] + 0.3 * rng.normal(size=(4, 6))
    return np.vstack([inliers, outliers]).astype(np.float32)


OUTLIERS = [40, 41, 42, 43]


def test_meddel_center_removes_outliers_hidden_by_a_common_offset():
    embeddings = _offset_pool()
    raw = _select("meddel", 0.25, embeddings)
    assert raw.diagnostics["n_outliers"] == 0 and raw.diagnostics["center"] is False
    assert np.isin(OUTLIERS, raw.indices).all()  # kept: they are the farthest from the centroid
    centred = _select("meddel", 0.25, embeddings, center=True)
    assert centred.diagnostics["n_outliers"] == 4 and centred.diagnostics["center"] is True
    assert centred.indices.size == 11 and not np.isin(OUTLIERS, centred.indices).any()
    assert centred.diagnostics["filled"] == 0


@pytest.mark.parametrize("name", ["semdedup", "prototypes", "d4"])
def test_center_is_shared_by_the_cluster_selectors(name):
    embeddings = _offset_pool()
    result = _select(name, 0.25, embeddings, center=True)
    assert result.indices.size == 11 and result.diagnostics["center"] is True
    # the same geometry by hand: centring the rows first gives the same subset
    by_hand = _select(name, 0.25, embeddings - pool_mean(embeddings))
    assert np.array_equal(result.indices, by_hand.indices)
    with pytest.raises(ConfigError, match="center"):
        _select(name, 0.25, embeddings, center="yes")


def test_pool_mean_streams_a_float16_memmap(tmp_path):
    rng = np.random.default_rng(2)
    data = (30 + rng.normal(size=(1000, 7))).astype(np.float16)
    np.save(tmp_path / "e.npy", data)
    mapped = np.load(tmp_path / "e.npy", mmap_mode="r")
    mean = pool_mean(mapped, chunk=64)
    assert mean.dtype == np.float32 and mean.shape == (7,)
    np.testing.assert_allclose(mean, data.astype(np.float64).mean(axis=0), rtol=1e-6)
    rows = np.array([3, 10, 500])
    np.testing.assert_allclose(pool_mean(mapped, rows=rows), data[rows].astype(np.float64).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(normalized_rows(mapped, 0, 5, offset=mean),
                               normalized_rows(data.astype(np.float32) - mean, 0, 5), atol=1e-6)
    with pytest.raises(SelectionError, match="offset"):
        kmeans(mapped, 2, seed=0, offset=np.zeros(3))


# --- SemDeDup / prototypes / D4 --------------------------------------------------------------
def test_semdedup_has_no_outlier_step_and_keeps_the_farthest_by_default():
    result = _select("semdedup", 0.5)
    # the far item 5 is not an outlier here; it is the highest-priority item of the cluster
    assert result.indices.tolist() == [0, 2, 5]
    assert result.diagnostics["similarity_threshold"] == pytest.approx(COS[80], abs=1e-5)
    assert result.diagnostics["eps"] == pytest.approx(1 - COS[80], abs=1e-5)


def test_semdedup_keep_easy_keeps_the_duplicate_closer_to_the_centroid():
    result = _select("semdedup", 0.5, keep="easy")
    assert result.indices.tolist() == [1, 4, 5]
    with pytest.raises(ConfigError, match="keep"):
        _select("semdedup", 0.5, keep="medium")


@pytest.mark.parametrize("keep, expected", [("hard", [0, 2, 5]), ("easy", [1, 3, 4])])
def test_prototypes_keeps_hard_or_easy(keep, expected):
    result = _select("prototypes", 0.5, keep=keep)
    assert result.indices.tolist() == expected


def test_d4_is_semdedup_then_prototypes():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(10, 16))
    embeddings = (centres[rng.integers(0, 10, 400)] + 0.3 * rng.normal(size=(400, 16))).astype(np.float32)
    dedup = _select("semdedup", 0.6, embeddings, n_clusters=8)
    d4 = _select("d4", 0.2, embeddings, n_clusters=8, dedup_ratio=0.6)
    assert d4.indices.size == 80
    assert np.isin(d4.indices, dedup.indices).all()  # the prototype stage only removes
    assert d4.diagnostics["n_after_dedup"] == 240
    # at or above dedup_ratio D4 is SemDeDup alone
    assert np.array_equal(_select("d4", 0.6, embeddings, n_clusters=8, dedup_ratio=0.6).indices, dedup.indices)


# --- the pairwise score and the k-means helper ------------------------------------------------
def test_blocked_max_similarity_matches_brute_force():
    rng = np.random.default_rng(0)
    rows = normalized_rows(rng.normal(size=(257, 9)), 0, 257)
    full = rows @ rows.T
    expected = np.array([-np.inf] + [full[i, :i].max() for i in range(1, 257)], np.float32)
    for block_floats in (1, 300, 5000, 1 << 26):
        np.testing.assert_allclose(max_similarity_to_priors(rows, block_floats=block_floats), expected, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kmeans_is_deterministic_per_seed_and_chunking_free(backend, tmp_path):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(6, 20))
    data = (centres[rng.integers(0, 6, 500)] + 0.2 * rng.normal(size=(500, 20))).astype(np.float16)
    path = tmp_path / "embeddings.npy"
    np.save(path, data)
    mapped = np.load(path, mmap_mode="r")
    first = kmeans(mapped, 6, seed=0, backend=backend)
    again = kmeans(mapped, 6, seed=0, backend=backend, chunk=37)
    assert first.backend == backend
    assert np.array_equal(first.labels, again.labels)
    np.testing.assert_array_equal(first.centroids, again.centroids)
    assert first.labels.dtype == np.int64 and first.distances.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first.centroids, axis=1), 1.0, rtol=1e-5)
    # the distance is the cosine distance to the assigned centroid
    unit = normalized_rows(mapped, 0, 500)
    np.testing.assert_allclose(first.distances, 1 - np.sum(unit * first.centroids[first.labels], axis=1), atol=1e-5)
    # a sample-trained run still assigns every row
    sampled = kmeans(mapped, 6, seed=0, backend=backend, sample_size=100)
    assert sampled.labels.shape == (500,)


def test_kmeans_edge_cases():
    with pytest.raises(SelectionError, match="n_clusters"):
        kmeans(EMBEDDINGS, 0, seed=0)
    with pytest.raises(SelectionError, match="2-D"):
        kmeans(EMBEDDINGS[:, 0], 2, seed=0)
    assert kmeans(EMBEDDINGS[:0], 3, seed=0).labels.shape == (0,)
    assert kmeans(EMBEDDINGS, 50, seed=0).n_clusters == 6  # clamped to n
    duplicates = kmeans(np.ones((20, 5), np.float32), 4, seed=0)
    assert duplicates.n_clusters == 1 and not duplicates.labels.any()
    assert duplicates.distances == pytest.approx(np.zeros(20), abs=1e-6)
    assert normalized_rows(np.zeros((2, 3), np.float16), 0, 2).tolist() == [[0.0] * 3] * 2


def test_cluster_members_is_ordered_and_complete():
    labels = np.array([2, 0, 2, 1, 0, 2])
    members = cluster_members(labels, 4)
    assert [m.tolist() for m in members] == [[1, 4], [3], [0, 2, 5], []]
    with pytest.raises(SelectionError):
        cluster_members(labels, 2)


def test_semdedup_removes_an_item_similar_to_any_earlier_item_kept_or_not():
    """Issue 26, item 2: the rule is the paper's pairwise one. In the chain 50° → 45° → 40° the
    40° item is a duplicate of the removed 45° item (5° apart, closer than the 7° the threshold
    allows) and is removed too; a rule that compared only with kept items would keep it (10°
    from the kept 50° item)."""
    angles = [50, 45, 40, -50, -43, -36, -29]  # the chain, then items 7° apart
    unit = np.array([_at(a) for a in angles], np.float32)  # unit rows already
    result = _select("semdedup", 5 / 7, embeddings=unit)
    threshold = result.diagnostics["similarity_threshold"]
    centroid = unit.mean(axis=0) / np.linalg.norm(unit.mean(axis=0))
    order = np.argsort(unit @ centroid, kind="stable")  # farthest from the centroid first (keep='hard')

    def kept_by(compare_with):
        kept = []
        for position, i in enumerate(order):
            others = kept if compare_with == "kept" else order[:position]
            if not len(others) or max(float(unit[i] @ unit[j]) for j in others) <= threshold + 1e-6:
                kept.append(int(i))
        return sorted(kept)

    assert result.indices.tolist() == kept_by("any earlier item") == [0, 3, 4, 5, 6]
    assert kept_by("kept") != kept_by("any earlier item")
