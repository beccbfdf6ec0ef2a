"""The Selector template (``interfaces.Selector.select``) and the one harness function
(``subset.run_selector``): a selector writes only ``choose``; duck-typed ones still run."""
from __future__ import annotations

import numpy as np
import pytest

from delbench.errors import ConfigError, SelectionError
from delbench.run.select import run_selector
from delbench.sdk.contracts import Selector
from delbench.sdk.subsets import ids_sha256, subset_sha256
from delbench.testing import InMemoryDataset, check_selector


def _pool(n: int) -> InMemoryDataset:
    return InMemoryDataset(np.zeros((n, 2, 2, 3), np.uint8), [f"frame{i:03d}" for i in range(n)])


class LastItems(Selector):
    """Keeps the last k items, returned unsorted as int32 with a diagnostic."""

    name = "last_items"
    deterministic_in_seed = True
    calls: list[int] = []

    def choose(self, pool, k, *, seed, stride: int = 1):
        self.calls.append(k)
        return np.arange(len(pool) - 1, len(pool) - 1 - k * stride, -stride, dtype=np.int32), {"stride": stride}


def test_the_template_owns_size_sorting_timing_and_the_empty_pool():
    LastItems.calls.clear()
    selection = LastItems().select(_pool(10), 0.3, seed=0)
    assert selection.indices.dtype == np.int64 and selection.indices.tolist() == [7, 8, 9]
    assert selection.diagnostics["stride"] == 1 and selection.diagnostics["time_s"] >= 0.0
    empty = LastItems().select(_pool(0), 0.3, seed=0)
    assert empty.indices.dtype == np.int64 and empty.indices.size == 0
    assert LastItems.calls == [3]  # choose never sees an empty pool


def test_the_template_checks_parameters_against_choose():
    with pytest.raises(ConfigError, match=r"last_items: unknown parameter 'strid' \(did you mean 'stride'\?\); valid: stride"):
        LastItems().select(_pool(10), 0.3, seed=0, strid=2)


def test_the_template_checks_what_choose_returns():
    with pytest.raises(SelectionError, match="out of range"):
        LastItems().select(_pool(4), 0.75, seed=0, stride=2)  # 3, 1, -1

    class TooFew(LastItems):
        name = "too_few"

        def choose(self, pool, k, *, seed):
            return np.arange(k - 1)

    with pytest.raises(SelectionError, match="returned 2 indices, expected round"):
        TooFew().select(_pool(10), 0.3, seed=0)


def test_a_template_selector_passes_the_contract_checker():
    check_selector(LastItems)


def test_the_template_checks_embeddings_and_fixed_ratio():
    class NeedsEmbeddings(LastItems):
        name = "needs_embeddings"
        requires_embeddings = True
        fixed_ratio = 0.5

        def choose(self, pool, k, *, seed, embeddings):
            assert embeddings.shape == (len(pool), 2)
            return np.arange(k)

    pool = _pool(4)
    embeddings = np.arange(8.0).reshape(4, 2)
    assert NeedsEmbeddings().select(pool, 0.5, seed=0, embeddings=embeddings).indices.tolist() == [0, 1]
    with pytest.raises(SelectionError, match="NaN"):
        NeedsEmbeddings().select(pool, 0.5, seed=0, embeddings=np.full((4, 2), np.nan))
    with pytest.raises(SelectionError, match="only runs at ratio 0.5"):
        NeedsEmbeddings().select(pool, 0.25, seed=0, embeddings=embeddings)


class DuckTyped:
    """A third-party selector that implements ``select`` itself and subclasses nothing."""

    name = "duck"

    def select(self, pool, ratio, *, seed, embeddings=None, **params):
        from delbench.sdk.subsets import subset_size

        return np.random.default_rng(seed).permutation(len(pool))[:subset_size(len(pool), ratio)].astype(np.int64)


def test_run_selector_identifies_the_subset_by_indices_and_ids():
    pool = _pool(10)
    subset = run_selector(LastItems(), pool, 0.3, seed=0)
    assert subset.sha256 == subset_sha256(np.array([7, 8, 9]))
    assert subset.ids_sha256 == ids_sha256(["frame007", "frame008", "frame009"])
    assert subset.pool_ids_sha256 == ids_sha256([f"frame{i:03d}" for i in range(10)])
    # the documented digest, by hand: sorted ids, each followed by a newline, UTF-8
    import hashlib
    assert subset.ids_sha256 == hashlib.sha256(b"frame007\nframe008\nframe009\n").hexdigest()


def test_run_selector_checks_duck_typed_output():
    with pytest.raises(SelectionError, match="sorted and unique"):
        run_selector(DuckTyped(), _pool(10), 0.5, seed=0)  # a permutation is not sorted
