"""The selector contract checker: ``check_selector`` and ``selector_checks`` (usage in
:mod:`delbench.testing`).

The selector may be any class with ``name`` and ``select(pool, ratio, *, seed, embeddings=None,
**params)``; the optional class attributes of :class:`delbench.sdk.Selector` are read
with their defaults (``requires_embeddings``, ``requires_backbone``, ``fixed_ratio``,
``deterministic_in_seed``). It is constructed with no arguments.

What the checks feed it, unless the caller passes its own ``pool``/``embeddings``: a small
in-memory pool of frames rendered once by the ``synthetic_endoscopy`` generator (images and
its metadata columns ``sequence_id``, ``scene_id``, ``kind``, ``invalid_type``) and clustered
float32 embeddings (one cluster per scene, invalid frames scattered). Selectors with
``requires_backbone = True`` receive ``backbone=`` a :class:`FakeBackbone`, which offers
``reconstruction_loss(images, *, seed) -> (B,) float32`` and ``embed(images) -> (B, D) float32``.

A selector that ``produces_derived`` (writes new images, e.g. ``optidel``) is given an
``output_dir`` in a temporary directory the checks own; its subsets are compared by their
manifest sha256 and sized by their image count (its ``indices`` are the source items).

The checks: ``check_attributes``; ``check_exact_size`` (ratios 1/n, 0.001, 0.05, 0.2, 1/3,
0.5, 1.0 — only ``fixed_ratio`` when set — each giving exactly ``subset_size(n, ratio)``
sorted, unique, in-range int64 indices); ``check_fixed_ratio_rejects_others`` (another
ratio raises ``SelectionError``); ``check_deterministic`` (same seed, same subset);
``check_seed_sensitivity`` (some seed in 0…4 changes the subset, unless
``deterministic_in_seed``); ``check_empty_pool`` (0 items → an empty array, no error);
``check_one_item_pool`` (→ ``[0]``); ``check_duplicate_only_pool`` (40 identical items and
embeddings: exact size, deterministic); and for ``requires_embeddings`` selectors
``check_nonfinite_embeddings`` (NaN/±inf → ``SelectionError``) and ``check_embedding_shapes``
(None, 1-D, 3-D, one row too many or too few → ``SelectionError``); for ``resumable_work``
selectors ``check_work_changes_nothing`` (with a fresh ``SelectionWork`` and again with the
files it left, the subset is the one without). The built-in pool's images and embeddings are
read-only, like the runner's memory-mapped cache.

Every check raises ``AssertionError`` whose message starts with the check's name.
"""
from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from delbench.errors import DelbenchError, SelectionError
from delbench.run.select import call_selector, run_selector
from delbench.sdk.subsets import Subset, subset_size
from delbench.testing.checks import named_check
from delbench.testing.fixtures import FakeBackbone, PoolView, clustered_embeddings, make_contract_pool

#: ratios every selector must hit exactly (1/n is added per pool)
CONTRACT_RATIOS = (0.001, 0.05, 0.2, 1 / 3, 0.5, 1.0)
#: seeds tried before a stochastic selector is declared seed-insensitive
SEED_SENSITIVITY_SEEDS = (0, 1, 2, 3, 4)
SEED_SENSITIVITY_RATIO = 0.5


@dataclass(frozen=True)
class _Case:
    """What one call of ``select`` receives."""

    pool: Any
    embeddings: np.ndarray | None


class _Harness:
    """Runs a selector the way the runner does (``run_selector``) and turns contract breaches
    into assertions."""

    def __init__(self, selector_cls: Any, pool: Any = None, embeddings: Any = None) -> None:
        self.selector_cls = selector_cls
        self.name = getattr(selector_cls, "name", getattr(selector_cls, "__name__", repr(selector_cls)))
        self.requires_embeddings = bool(getattr(selector_cls, "requires_embeddings", False))
        self.requires_backbone = bool(getattr(selector_cls, "requires_backbone", False))
        self.fixed_ratio = getattr(selector_cls, "fixed_ratio", None)
        self.deterministic_in_seed = bool(getattr(selector_cls, "deterministic_in_seed", False))
        self.produces_derived = bool(getattr(selector_cls, "produces_derived", False))
        self.resumable_work = bool(getattr(selector_cls, "resumable_work", False))
        self._pool, self._embeddings = pool, embeddings

    @functools.cached_property
    def output_dir(self) -> str | None:
        """Where a generative selector's images go (removed with the harness)."""
        if not self.produces_derived:
            return None
        self._scratch = tempfile.TemporaryDirectory(prefix="delbench-check-")
        return self._scratch.name

    @functools.cached_property
    def base(self) -> _Case:
        pool, embeddings = self._pool, self._embeddings
        if pool is None:
            pool, default_embeddings = make_contract_pool(
                num_frames=len(embeddings) if embeddings is not None else 120)
            embeddings = default_embeddings if embeddings is None else embeddings
        elif embeddings is None and self.requires_embeddings:
            metadata = pool.metadata() if hasattr(pool, "metadata") else {}
            scene = np.asarray(metadata.get("scene_id", np.arange(len(pool)) // 6))
            embeddings = clustered_embeddings(scene, np.zeros(len(pool), bool))
        return _Case(pool, None if embeddings is None else np.asarray(embeddings))

    def view(self, indices: np.ndarray) -> _Case:
        embeddings = self.base.embeddings
        if embeddings is not None:
            embeddings = np.ascontiguousarray(embeddings[indices])
            embeddings.flags.writeable = False
        return _Case(PoolView(self.base.pool, indices), embeddings)

    def ratios(self, n: int) -> list[float]:
        if self.fixed_ratio is not None:
            return [float(self.fixed_ratio)]
        tiny = [1.0 / n] if n else []
        return tiny + list(CONTRACT_RATIOS)

    def few_ratios(self) -> list[float]:
        """A tiny, a middle and the full ratio (or the fixed one): for the degenerate pools."""
        return [float(self.fixed_ratio)] if self.fixed_ratio is not None else [0.001, 0.5, 1.0]

    def _inputs(self, case: _Case, embeddings: Any) -> dict[str, Any]:
        selector = self.selector_cls() if isinstance(self.selector_cls, type) else self.selector_cls
        return {"selector": selector, "pool": case.pool, "backbone": FakeBackbone(),
                "embeddings": case.embeddings if isinstance(embeddings, str) else embeddings}

    def call(self, case: _Case, ratio: float, *, seed: int = 0, embeddings: Any = "case") -> Any:
        """What ``select`` returns, unchecked (the inputs are what is being tested)."""
        output_dir = tempfile.mkdtemp(dir=self.output_dir) if self.produces_derived else None
        return call_selector(ratio=ratio, seed=seed, output_dir=output_dir, **self._inputs(case, embeddings))

    def selected(self, case: _Case, ratio: float, *, seed: int = 0, work: Any = None) -> Subset:
        """Run the selector as the runner does (``run_selector``) and check its output against
        the contract; return the subset (``indices``; ``sha256`` identifies either kind)."""
        try:
            return run_selector(ratio=ratio, seed=seed, output_dir=self.output_dir, work=work,
                                **self._inputs(case, "case"))
        except SelectionError as exc:
            raise AssertionError(f"{exc} (ratio {ratio}, n {len(case.pool)}, seed {seed})") from exc

    def expect_selection_error(self, what: str, case: _Case, ratio: float, **kwargs: Any) -> None:
        try:
            self.call(case, ratio, **kwargs)
        except DelbenchError:
            return
        except Exception as exc:  # a crash is a contract breach too: name what was raised
            raise AssertionError(f"{what}: raised {type(exc).__name__}: {exc}; expected "
                                 f"delbench.errors.SelectionError (a DelbenchError)") from exc
        raise AssertionError(f"{what}: no error raised; expected delbench.errors.SelectionError")


# --- the checks ---------------------------------------------------------------------------
def check_attributes(h: _Harness) -> None:
    assert isinstance(h.name, str) and h.name, "the class needs a non-empty string attribute 'name'"
    assert callable(getattr(h.selector_cls, "select", None)), "the class needs a 'select' method"
    if h.fixed_ratio is not None:
        assert 0.0 < float(h.fixed_ratio) <= 1.0, f"fixed_ratio must be in (0, 1], got {h.fixed_ratio!r}"


def check_exact_size(h: _Harness) -> None:
    case = h.base
    for ratio in h.ratios(len(case.pool)):
        subset = h.selected(case, ratio)
        assert subset.size == subset_size(len(case.pool), ratio)


def check_fixed_ratio_rejects_others(h: _Harness) -> None:
    if h.fixed_ratio is None:
        return
    other = 0.5 if float(h.fixed_ratio) != 0.5 else 0.25
    h.expect_selection_error(f"ratio {other} for a selector with fixed_ratio {h.fixed_ratio}", h.base, other)


def _difference(first: Subset, second: Subset) -> str:
    if first.kind == "derived":
        return f"manifest sha256 {first.sha256[:12]} vs {second.sha256[:12]}"
    return f"{first.size} indices, {np.setxor1d(first.indices, second.indices).size} not shared"


def check_deterministic(h: _Harness) -> None:
    for ratio in h.ratios(len(h.base.pool))[-3:]:
        for seed in (0, 7):
            first = h.selected(h.base, ratio, seed=seed)
            second = h.selected(h.base, ratio, seed=seed)
            assert first.sha256 == second.sha256, (
                f"two runs with seed {seed} at ratio {ratio} differ ({_difference(first, second)})")


def check_seed_sensitivity(h: _Harness) -> None:
    if h.deterministic_in_seed:
        return
    ratio = h.fixed_ratio if h.fixed_ratio is not None else SEED_SENSITIVITY_RATIO
    if float(ratio) == 1.0:
        return  # every seed must return the whole pool
    results = [h.selected(h.base, ratio, seed=seed).sha256 for seed in SEED_SENSITIVITY_SEEDS]
    assert any(results[0] != other for other in results[1:]), (
        f"seeds {list(SEED_SENSITIVITY_SEEDS)} all give the same subset at ratio {ratio}; if the "
        f"method ignores the seed by design, set the class attribute deterministic_in_seed = True")


def check_empty_pool(h: _Harness) -> None:
    case = h.view(np.zeros(0, np.int64))
    for ratio in h.few_ratios():
        subset = h.selected(case, ratio)
        assert subset.size == 0, f"an empty pool gave {subset.size} items"


def check_one_item_pool(h: _Harness) -> None:
    case = h.view(np.zeros(1, np.int64))
    for ratio in h.few_ratios():
        subset = h.selected(case, ratio)
        what = "images built from items" if subset.kind == "derived" else "indices"
        assert subset.size == 1 and subset.indices.tolist() == [0], (
            f"a one-item pool at ratio {ratio} gave {subset.size} {what} {subset.indices.tolist()}, expected "
            f"one from [0]")


def check_duplicate_only_pool(h: _Harness) -> None:
    case = h.view(np.zeros(40, np.int64))  # 40 copies of item 0: equal images and embeddings
    for ratio in h.few_ratios():
        first = h.selected(case, ratio, seed=3)
        assert first.sha256 == h.selected(case, ratio, seed=3).sha256, (
            f"a duplicate-only pool at ratio {ratio} gives different subsets for the same seed")


def check_nonfinite_embeddings(h: _Harness) -> None:
    if not h.requires_embeddings:
        return
    ratio = h.ratios(len(h.base.pool))[-1]
    for bad in (np.nan, np.inf, -np.inf):
        embeddings = np.array(h.base.embeddings, dtype=np.float32, copy=True)
        embeddings[len(embeddings) // 2, 0] = bad
        h.expect_selection_error(f"embeddings containing {bad}", h.base, ratio, embeddings=embeddings)


def check_embedding_shapes(h: _Harness) -> None:
    if not h.requires_embeddings:
        return
    ratio = h.ratios(len(h.base.pool))[-1]
    embeddings = h.base.embeddings
    wrong = {
        "missing embeddings (None)": None,
        "1-D embeddings": np.asarray(embeddings[:, 0]),
        "3-D embeddings": np.asarray(embeddings)[:, :, None],
        "embeddings with one row too many": np.concatenate([embeddings, embeddings[:1]]),
        "embeddings with one row too few": np.asarray(embeddings[:-1]),
    }
    for what, value in wrong.items():
        h.expect_selection_error(what, h.base, ratio, embeddings=value)


def check_work_changes_nothing(h: _Harness) -> None:
    if not h.resumable_work:
        return
    from delbench.sdk.shards import SelectionWork

    with tempfile.TemporaryDirectory(prefix="delbench-check-work-") as root:
        work = SelectionWork(Path(root), clusters_per_shard=2, n_jobs=1)
        for ratio in h.few_ratios():
            plain = h.selected(h.base, ratio, seed=3)
            for attempt in ("with a fresh work directory", "again, from the files it left"):
                other = h.selected(h.base, ratio, seed=3, work=work)
                assert other.sha256 == plain.sha256, (
                    f"at ratio {ratio}, {attempt}, the subset differs from the one without work= "
                    f"({_difference(plain, other)})")


CHECKS: tuple[Callable[[_Harness], None], ...] = (
    check_attributes, check_exact_size, check_fixed_ratio_rejects_others, check_deterministic,
    check_seed_sensitivity, check_empty_pool, check_one_item_pool, check_duplicate_only_pool,
    check_nonfinite_embeddings, check_embedding_shapes, check_work_changes_nothing,
)


def selector_checks(selector_cls: Any, *, pool: Any = None,
                    embeddings: Any = None) -> Iterator[tuple[str, Callable[[], None]]]:
    """Yield ``(check_name, check)`` pairs; ``check()`` raises AssertionError on a breach.

    Nothing runs until a check is called; the pool and embeddings are built once, on first
    use, and shared by the checks of this call.
    """
    harness = _Harness(selector_cls, pool, embeddings)
    for check in CHECKS:
        yield check.__name__, named_check(check, harness, f"selector {harness.name!r}")


def check_selector(selector_cls: Any, *, pool: Any = None, embeddings: Any = None) -> None:
    """Run every contract check on ``selector_cls``; raise AssertionError naming the first
    that fails. ``pool``/``embeddings`` replace the built-in tiny pool and its embeddings
    (the degenerate pools — empty, one item, duplicates only — are views of ``pool``)."""
    for _, check in selector_checks(selector_cls, pool=pool, embeddings=embeddings):
        check()
