"""The bracket selectors on the synthetic pool: ``oracle`` keeps what a selector should keep,
``anti_oracle`` what it should drop; both are deterministic and read only the planted kinds."""
from __future__ import annotations

import collections

import numpy as np
import pytest

import delbench
from delbench.errors import SelectionError
from delbench.run.select import run_selector
from delbench.testing import InMemoryDataset

from delbench_plugins.datasets.synthetic import SyntheticEndoscopy


@pytest.fixture(scope="module")
def pool():
    return SyntheticEndoscopy(num_frames=4000, frames_per_sequence=200, scene_length=25,
                              invalid_fraction=0.5, image_size=16, seed=0)


def _kinds(pool, indices):
    kind = pool.metadata()["kind"].astype(str)[indices]
    return {name: int((kind == name).sum()) for name in ("core", "near_duplicate", "invalid")}


def test_anti_oracle_keeps_invalid_frames_first(pool):
    subset = run_selector(delbench.get_selector("anti_oracle")(), pool, 0.05, seed=0)
    assert len(subset.indices) == 200
    assert _kinds(pool, subset.indices) == {"core": 0, "near_duplicate": 0, "invalid": 200}
    # invalid frames of the scenes with the most invalid frames: few scenes touched
    scene = pool.metadata()["scene_id"]
    assert subset.diagnostics["n_groups"] == np.unique(scene[subset.indices]).size < 20


def test_anti_oracle_keeps_the_invalid_types_that_teach_least_first(pool):
    """Dark frames first, then bubbles, over-exposed, out of body, motion blur: at every size
    the kept invalid frames are a prefix of that order, the last type possibly cut."""
    selector = delbench.get_selector("anti_oracle")()
    assert selector.invalid_types == ("dark", "bubbles", "overexposed", "out_of_body", "motion_blur")
    invalid_type = pool.metadata()["invalid_type"].astype(str)
    available = {name: int((invalid_type == name).sum()) for name in selector.invalid_types}
    for k in (100, 800, 1500):
        subset = run_selector(selector, pool, k / len(pool), seed=0)
        kept = subset.diagnostics["kept_by_invalid_type"]
        assert kept == {name: int(n) for name, n in
                        collections.Counter(invalid_type[subset.indices]).items()}
        remaining = k
        for name in selector.invalid_types:
            expected = min(remaining, available[name])
            assert kept.get(name, 0) == expected, (k, name)
            remaining -= expected


def test_anti_oracle_needs_the_invalid_types(pool):
    metadata = {column: values for column, values in pool.metadata().items() if column != "invalid_type"}
    without = InMemoryDataset(np.zeros((len(pool), 4, 4, 3), np.uint8), metadata=metadata)
    with pytest.raises(SelectionError, match="invalid_type"):
        run_selector(delbench.get_selector("anti_oracle")(), without, 0.05, seed=0)
    renamed = dict(pool.metadata())
    renamed["invalid_type"] = np.where(renamed["invalid_type"] == "dark", "smoke", renamed["invalid_type"])
    with pytest.raises(SelectionError, match="unknown invalid types"):
        run_selector(delbench.get_selector("anti_oracle")(),
                     InMemoryDataset(np.zeros((len(pool), 4, 4, 3), np.uint8), metadata=renamed), 0.05, seed=0)


def test_anti_oracle_then_near_duplicates_of_as_few_scenes_as_possible(pool):
    metadata = pool.metadata()
    kind, scene = metadata["kind"].astype(str), metadata["scene_id"]
    n_invalid = int((kind == "invalid").sum())
    k = n_invalid + 100
    subset = run_selector(delbench.get_selector("anti_oracle")(), pool, k / len(pool), seed=0)
    kept = _kinds(pool, subset.indices)
    assert kept == {"core": 0, "near_duplicate": 100, "invalid": n_invalid}
    valid = subset.indices[kind[subset.indices] != "invalid"]
    # the fewest scenes that hold 100 near-duplicates: the scenes with the most of them
    counts = np.sort(np.bincount(scene[kind == "near_duplicate"]))[::-1]
    fewest = int(np.searchsorted(np.cumsum(counts), 100) + 1)
    assert np.unique(scene[valid]).size == fewest


def test_bracket_selectors_order_the_core_frames_kept(pool):
    core = {}
    for name in ("oracle", "random", "anti_oracle"):
        subset = run_selector(delbench.get_selector(name)(), pool, 0.05, seed=0)
        core[name] = _kinds(pool, subset.indices)["core"]
    n_core = int((pool.metadata()["kind"].astype(str) == "core").sum())
    assert core["oracle"] == min(200, n_core) and core["anti_oracle"] == 0
    assert core["oracle"] > core["random"] > core["anti_oracle"]


@pytest.mark.parametrize("name", ["oracle", "anti_oracle"])
def test_bracket_selectors_ignore_the_seed_and_need_planted_kinds(pool, name):
    selector = delbench.get_selector(name)()
    first = run_selector(selector, pool, 0.2, seed=0).indices
    assert np.array_equal(first, run_selector(selector, pool, 0.2, seed=7).indices)
    plain = InMemoryDataset(np.zeros((10, 8, 8, 3), np.uint8))
    with pytest.raises(SelectionError, match="kind"):
        run_selector(selector, plain, 0.5, seed=0)


# -- the coverage references ----------------------------------------------------------------

@pytest.fixture(scope="module")
def centres_pool():
    """Version 4's defaults: four centres of unequal size, heavy-tailed scenes."""
    return SyntheticEndoscopy(num_frames=4000, invalid_fraction=0.5, image_size=16, seed=3)


@pytest.mark.parametrize("ratio", [0.05, 0.2])
def test_coverage_references_keep_as_many_valid_frames_spread_or_packed(centres_pool, ratio):
    meta = centres_pool.metadata()
    kind, scene, centre = meta["kind"].astype(str), meta["scene_id"], meta["centre_id"]
    spread = run_selector(delbench.get_selector("spread_valid")(), centres_pool, ratio, seed=0)
    packed = run_selector(delbench.get_selector("packed_valid")(), centres_pool, ratio, seed=0)
    assert spread.size == packed.size == round(ratio * 4000)
    for subset in (spread, packed):  # only valid frames while the pool has enough
        assert (kind[subset.indices] != "invalid").all()
    # spread: every scene with a valid frame, and every centre, before any scene's second frame
    valid_scenes = np.unique(scene[kind != "invalid"])
    assert np.unique(scene[spread.indices]).size == min(valid_scenes.size, spread.size)
    assert set(centre[spread.indices]) == {0, 1, 2, 3}
    # packed: the biggest centre's scenes with the most valid frames, each taken whole
    assert set(centre[packed.indices]) == {int(np.bincount(centre).argmax())}
    kept_scenes = np.unique(scene[packed.indices])
    per_scene = collections.Counter(scene[(kind != "invalid") & (centre == 0)])
    ranked = sorted(per_scene, key=lambda s: (-per_scene[s], s))
    assert set(kept_scenes) == set(ranked[:kept_scenes.size])
    assert all(per_scene[s] == int((scene[packed.indices] == s).sum()) for s in ranked[:kept_scenes.size - 1])
    assert kept_scenes.size < 0.2 * np.unique(scene[spread.indices]).size
    assert spread.diagnostics["n_centres"] == 4 and packed.diagnostics["n_centres"] == 1
    assert packed.diagnostics["n_scenes"] == kept_scenes.size


def test_spread_valid_interleaves_the_centres_inside_a_round(centres_pool):
    """A round cut short: the first valid frame of each centre's first scenes, the scenes of the
    centres taken place by place (the first scene of each centre, then the second, …)."""
    meta = centres_pool.metadata()
    kind, scene, centre = meta["kind"].astype(str), meta["scene_id"], meta["centre_id"]
    subset = run_selector(delbench.get_selector("spread_valid")(), centres_pool, 12 / 4000, seed=0)
    assert (kind[subset.indices] == "core").all()  # round 0: each scene's first valid frame
    assert set(centre[subset.indices]) == {0, 1, 2, 3}
    for c in range(4):
        scenes = np.unique(scene[centre == c])  # the centre's scenes in time order
        kept = np.unique(scene[subset.indices][centre[subset.indices] == c])
        last = np.searchsorted(scenes, kept.max())
        with_valid = [s for s in scenes[:last + 1] if (kind[scene == s] != "invalid").any()]
        assert list(kept) == with_valid  # every earlier scene with a valid frame is kept
        assert last < 12  # no centre runs far ahead of the others
    # the same frames oracle keeps, wherever no invalid frame is needed
    oracle = run_selector(delbench.get_selector("oracle")(), centres_pool, 0.2, seed=0)
    spread = run_selector(delbench.get_selector("spread_valid")(), centres_pool, 0.2, seed=0)
    assert np.array_equal(oracle.indices, spread.indices)


def test_coverage_references_past_the_valid_frames_and_without_centres():
    pool = SyntheticEndoscopy(num_frames=200, frames_per_sequence=50, scene_length=10, centre_shares=[1],
                              invalid_fraction=0.5, image_size=16, seed=0)
    kind = pool.metadata()["kind"].astype(str)
    for name in ("spread_valid", "packed_valid"):
        subset = run_selector(delbench.get_selector(name)(), pool, 0.9, seed=0)
        kept = kind[subset.indices]
        assert (kept != "invalid").sum() == (kind != "invalid").sum()  # every valid frame, then invalid ones
        assert np.array_equal(subset.indices, run_selector(delbench.get_selector(name)(), pool, 0.9, seed=5).indices)
    plain = InMemoryDataset(np.zeros((10, 8, 8, 3), np.uint8))
    with pytest.raises(SelectionError, match="kind"):
        run_selector(delbench.get_selector("spread_valid")(), plain, 0.5, seed=0)
