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


def test_anti_oracle_keeps_the_invalid_types_showing_the_least_tissue_first(pool):
    """Out-of-body frames first, then over-exposed, bubbles, dark, motion blur: at every size
    the kept invalid frames are a prefix of that order, the last type possibly cut."""
    selector = delbench.get_selector("anti_oracle")()
    assert selector.invalid_types == ("out_of_body", "overexposed", "bubbles", "dark", "motion_blur")
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
