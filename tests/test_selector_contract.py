"""The selector contract, checked for every registered selector and for broken third-party ones."""
from __future__ import annotations

import numpy as np
import pytest

import delbench
from delbench.sdk.subsets import subset_size
from delbench.testing import check_selector, selector_checks

CASES = [(name, check_name)
         for name in delbench.list_selectors()
         for check_name, _ in selector_checks(delbench.get_selector(name))]


@pytest.mark.parametrize("selector_name, check_name", CASES)
def test_registered_selector_meets_contract(selector_name, check_name):
    checks = dict(selector_checks(delbench.get_selector(selector_name)))
    checks[check_name]()


def test_every_builtin_selector_of_this_suite_is_registered():
    expected = {"full", "random", "stratified", "oracle", "anti_oracle", "meddel", "semdedup", "prototypes", "d4"}
    assert expected <= set(delbench.list_selectors())


# --- third-party selectors: a plain class with only `name` and `select` ----------------------
class MinimalRandom:
    name = "minimal_random"

    def select(self, pool, ratio, *, seed, embeddings=None):
        k = subset_size(len(pool), ratio)
        return np.sort(np.random.default_rng(seed).choice(len(pool), size=k, replace=False))


def _variant(name, select, **attributes):
    return type(name, (), {"name": name, "select": select, **attributes})


def _unsorted(self, pool, ratio, *, seed, embeddings=None):
    return MinimalRandom().select(pool, ratio, seed=seed)[::-1].copy()


def _one_too_many(self, pool, ratio, *, seed, embeddings=None):
    n, k = len(pool), subset_size(len(pool), ratio)
    return np.arange(min(n, k + 1), dtype=np.int64)


def _unseeded(self, pool, ratio, *, seed, embeddings=None):
    k = subset_size(len(pool), ratio)
    return np.sort(np.random.default_rng().choice(len(pool), size=k, replace=False))


def _first_k(self, pool, ratio, *, seed, embeddings=None):
    return np.arange(subset_size(len(pool), ratio), dtype=np.int64)


def _int32(self, pool, ratio, *, seed, embeddings=None):
    return MinimalRandom().select(pool, ratio, seed=seed).astype(np.int32)


def _trusts_embeddings(self, pool, ratio, *, seed, embeddings=None):
    # uses the embeddings without validating them: NaN and bad shapes slip through
    k = subset_size(len(pool), ratio)
    norms = np.linalg.norm(np.atleast_2d(np.asarray(embeddings, dtype=float)), axis=-1)
    order = np.argsort(np.nan_to_num(norms), kind="stable")[:k]
    return np.sort(order % max(len(pool), 1)).astype(np.int64)


def test_minimal_third_party_selector_passes():
    check_selector(MinimalRandom)


@pytest.mark.parametrize("select, attributes, failing_check, words", [
    (_unsorted, {}, "check_exact_size", "sorted"),
    (_one_too_many, {}, "check_exact_size", "expected round"),
    (_int32, {}, "check_exact_size", "int64"),
    (_unseeded, {}, "check_deterministic", "seed 0"),
    (_first_k, {}, "check_seed_sensitivity", "deterministic_in_seed"),
    (_trusts_embeddings, {"requires_embeddings": True, "deterministic_in_seed": True},
     "check_nonfinite_embeddings", "nan"),
])
def test_checker_catches_broken_selector(select, attributes, failing_check, words):
    broken = _variant("broken", select, **attributes)
    with pytest.raises(AssertionError) as caught:
        check_selector(broken)
    message = str(caught.value)
    assert message.startswith(f"{failing_check} failed for selector 'broken'"), message
    assert words in message


def test_opt_out_of_seed_sensitivity_is_honoured():
    check_selector(_variant("first_k", _first_k, deterministic_in_seed=True))


def test_wrong_shapes_are_reported_by_name():
    checks = dict(selector_checks(_variant("shapes", _trusts_embeddings, requires_embeddings=True,
                                           deterministic_in_seed=True)))
    with pytest.raises(AssertionError, match="check_embedding_shapes.*(1-D|None|row)"):
        checks["check_embedding_shapes"]()


def test_fixed_ratio_selector_must_refuse_other_ratios():
    def whole_pool(self, pool, ratio, *, seed, embeddings=None):
        return np.arange(len(pool), dtype=np.int64)

    lenient = _variant("lenient_full", whole_pool, fixed_ratio=1.0, deterministic_in_seed=True)
    with pytest.raises(AssertionError, match="check_fixed_ratio_rejects_others.*no error raised"):
        check_selector(lenient)


def test_checker_uses_a_callers_pool_and_embeddings():
    pool, embeddings = delbench.testing.make_contract_pool(num_frames=60)
    seen = []

    class Recording(MinimalRandom):
        name = "recording"
        requires_embeddings = True

        def select(self, pool, ratio, *, seed, embeddings=None):
            delbench.sdk.check_embeddings(embeddings, len(pool))
            seen.append(len(pool))
            return super().select(pool, ratio, seed=seed)

    check_selector(Recording, pool=pool, embeddings=embeddings)
    assert 60 in seen and 0 in seen and 1 in seen and 40 in seen
