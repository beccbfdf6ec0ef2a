"""Reference selectors that need no features: full pool, random, stratified random, oracle.

They bound what a learned selector should be compared with: ``full`` is the 100 % reference
of NormDEL, ``random`` and ``stratified`` the baselines every data-pruning paper reports,
and, on the synthetic pool only, two brackets built from the planted ground truth. Quality:
``oracle`` / ``anti_oracle``, the best and the worst a selector could do with what it keeps
(clean frames against invalid ones), with ``random`` between them. Coverage:
``spread_valid`` / ``packed_valid``, the same number of valid frames spread over every centre
and scene, or packed into the fewest scenes of the biggest centre. A benchmark whose score
cannot separate either pair is not measuring selection.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from delbench.sdk import ConfigError, Dataset, SelectionError, Selector, hookimpl, largest_remainder


def _pool_metadata(pool: Dataset) -> Mapping[str, Any]:
    """``pool.metadata()``, or no columns for a pool without metadata."""
    return pool.metadata() if hasattr(pool, "metadata") else {}


def _metadata_column(pool: Dataset, column: str, selector: str,
                     metadata: Mapping[str, Any] | None = None) -> np.ndarray:
    """Column ``column`` of ``metadata`` (default: ``pool.metadata()``, fetched here), checked
    for length; a clear error if absent. Pass ``metadata`` to read several columns from one call."""
    if metadata is None:
        metadata = _pool_metadata(pool)
    if column not in metadata:
        available = ", ".join(sorted(metadata)) or "none"
        raise SelectionError(f"{selector}: pool {getattr(pool, 'name', type(pool).__name__)!r} has no "
                             f"metadata column {column!r} (available: {available})")
    values = np.asarray(metadata[column])
    if values.shape != (len(pool),):
        raise SelectionError(f"{selector}: metadata column {column!r} has shape {values.shape}, "
                             f"expected ({len(pool)},)")
    return values


def _check_column_name(params: Mapping[str, Any], key: str) -> None:
    """``params[key]`` names a metadata column (whether the pool has it is checked when selecting)."""
    if key in params and not (isinstance(params[key], str) and params[key]):
        raise ConfigError(f"{key} must name a metadata column (a non-empty string), got {params[key]!r}")


class Full(Selector):
    """The whole pool: the 100 % reference every NormDEL table is read against.

    Only defined at ratio 1.0 (``fixed_ratio``); any other ratio is an error rather than a
    silently different subset. No parameters.
    """

    name = "full"
    version = "1"
    description = "The whole pool (ratio 1.0 only): the reference run of every NormDEL table"
    fixed_ratio = 1.0
    deterministic_in_seed = True

    def choose(self, pool: Dataset, k: int, *, seed: int) -> np.ndarray:
        return np.arange(len(pool))


class Random(Selector):
    """Uniform random subset without replacement, seeded (numpy ``default_rng(seed)``).

    The baseline of every data-pruning paper (e.g. Sorscher et al. 2022; MedDEL, arXiv
    2401.17542, compares against it). No parameters.
    """

    name = "random"
    version = "1"
    description = "Uniform random subset without replacement (seeded)"

    def choose(self, pool: Dataset, k: int, *, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).choice(len(pool), size=k, replace=False)


class Stratified(Selector):
    """Stratified random subset: every stratum (video, sequence, source) keeps its share.

    Stratum sizes follow proportional allocation, ``k · n_s / n`` items for stratum s, rounded
    by the largest-remainder (Hamilton) method so the total is exactly ``round(ratio · n)``;
    equal remainders are ordered by a seeded random key, so no stratum is favoured by its
    name. Items inside a stratum are drawn uniformly at random (seeded). Standard survey
    sampling (e.g. Cochran, *Sampling Techniques*, 1977), used in data selection to keep
    every video represented.

    Parameters: ``by`` — the ``pool.metadata()`` column holding the stratum of each item
    (default ``'sequence_id'``; ``'source'`` for a multi-source pool). Diagnostics:
    ``by``, ``n_strata``, ``time_s``.
    """

    name = "stratified"
    version = "1"
    description = "Stratified random subset per video/sequence or source (proportional, largest remainder)"

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        _check_column_name(params, "by")

    def choose(self, pool: Dataset, k: int, *, seed: int, by: str = "sequence_id") -> tuple[np.ndarray, dict]:
        n = len(pool)
        strata = _metadata_column(pool, by, self.name)
        _, stratum, counts = np.unique(strata, return_inverse=True, return_counts=True)
        stratum = stratum.reshape(-1)
        rng = np.random.default_rng(seed)
        # counts are integers, so the quotas k·n_s/n are split exactly; equal remainders by a seeded key
        quota = largest_remainder(k, counts, tie_break=rng.random(counts.size))
        # draw inside each stratum: random key, group by stratum, keep the first `quota`
        order = np.lexsort((rng.random(n), stratum))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(n) - starts[stratum[order]]
        return order[rank < quota[stratum[order]]], {"by": by, "n_strata": int(counts.size)}


class _PlantedTiers(Selector):
    """What the bracket selectors share: read the planted kinds of a synthetic pool, order the
    frames tier by tier (``tiers``) and group by group (the ``by`` column), keep the first k.
    Deterministic: the seed plays no role. Subclasses write only :meth:`order`."""

    deterministic_in_seed = True
    #: tiers in the order they are kept
    tiers: tuple[str, ...] = ()

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        _check_column_name(params, "by")

    def choose(self, pool: Dataset, k: int, *, seed: int, by: str = "scene_id") -> tuple[np.ndarray, dict]:
        metadata = _pool_metadata(pool)  # fetched once: a pool may build it on every call
        kind, tier, group = _planted_tiers(pool, metadata, self.name, self.tiers, by)
        tier, diagnostics = self.refine_tiers(pool, metadata, kind, tier)
        chosen = self.order(tier, group, _centres(pool, metadata, self.name))[:k]
        return chosen, {"kept_by_kind": _counts(kind[chosen]), "n_groups": int(np.unique(group[chosen]).size),
                        **{name: _counts(column[chosen]) for name, column in diagnostics.items()}}

    def refine_tiers(self, pool: Dataset, metadata: Mapping[str, Any], kind: np.ndarray,
                     tier: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Finer tiers (still integers, kept in increasing order) and the columns whose kept
        counts the diagnostics report (``kept_by_<column>``); the default keeps ``tiers``."""
        return tier, {}

    def order(self, tier: np.ndarray, group: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Every item's index, in the order the selector keeps them."""
        raise NotImplementedError


class Oracle(_PlantedTiers):
    """Upper reference on the synthetic pool: keeps frames by their planted ground truth.

    Uses ``pool.metadata()['kind']`` (``synthetic_endoscopy``): all ``core`` frames first,
    then ``near_duplicate`` frames spread across scenes (round robin over the ``by`` column:
    the first near-duplicate of every scene, then the second, …), ``invalid`` frames last.
    Inside a round the groups of the pool's centres (``centre_id``, where it has one) are
    interleaved: the first group of each centre, then the second, … (:func:`_interleaved`), so
    a round cut short still covers every centre. Deterministic, so the seed plays no role. Not
    a method for real data — it shows how much a selector could gain. Wherever a ratio needs
    no invalid frame it keeps the frames ``spread_valid`` keeps (the first valid frame of a
    scene is its core frame), so both brackets share one pre-training there.

    Parameters: ``by`` — column to spread over (default ``'scene_id'``). Diagnostics:
    ``kept_by_kind`` (counts per kind), ``n_groups`` (groups touched), ``time_s``.
    """

    name = "oracle"
    #: 2: inside a round, the groups of the pool's centres are interleaved (were in id order)
    version = "2"
    description = ("Synthetic pool only: keeps planted core frames first, then near-duplicates spread over scenes "
                   "and centres")
    tiers = ("core", "near_duplicate", "invalid")

    def order(self, tier: np.ndarray, group: np.ndarray, centre: np.ndarray) -> np.ndarray:
        rank = _rank_in_group(tier * (group.max(initial=0) + 1) + group, np.ones(len(tier), bool))
        return np.lexsort((np.arange(len(tier)), centre, _interleaved(group, centre), rank, tier))


class AntiOracle(_PlantedTiers):
    """Lower reference on the synthetic pool: keeps first what a selector should drop.

    Uses ``pool.metadata()['kind']`` and ``['invalid_type']`` (``synthetic_endoscopy``):
    ``invalid`` frames first, type by type in :attr:`invalid_types` order, then
    ``near_duplicate`` frames, ``core`` frames last; inside each tier (and type) the frames are
    taken group by group (``by`` column, a scene by default), the groups with the most frames
    of that tier first, so the subset covers as few scenes as possible: the least diverse valid
    data there is. Deterministic (ties by group, then index): the seed plays no role.

    Parameters: ``by`` — column grouping near-duplicates (default ``'scene_id'``).
    Diagnostics: ``kept_by_kind`` (counts per kind), ``kept_by_invalid_type``, ``n_groups``
    (groups touched), ``time_s``.
    """

    name = "anti_oracle"
    #: 3: dark frames come after over-exposed and bubbles (v2 took them second)
    #: 4: dark frames first, out-of-body frames fourth (the linear probe's measured order)
    version = "4"
    description = ("Synthetic pool only: keeps invalid frames first (those that teach the encoder least first), "
                   "then near-duplicates of as few scenes as possible")
    tiers = ("invalid", "near_duplicate", "core")
    #: invalid types in the order they are kept: those whose frames teach the embedded
    #: benchmark's encoder least first, as measured with its frozen linear probe (200 frames of
    #: one type, 600 steps, pool seed 0, mean mIoU over both centres' sets in %; the initial
    #: encoder 68.56, the pool's valid frames 71.66): dark 68.50 (faint tissue under sensor
    #: noise: nothing to learn), bubbles 70.23, over-exposed 70.78, out of body 71.39 (a defocused
    #: room is a natural image, and a generic one teaches a masked autoencoder almost as much as
    #: tissue), motion blur 71.41 (docs/findings.md). Versions 1–3 were ordered for the kNN probe
    #: (version 3: out of body, over-exposed, bubbles, dark, motion blur).
    invalid_types = ("dark", "bubbles", "overexposed", "out_of_body", "motion_blur")

    def refine_tiers(self, pool: Dataset, metadata: Mapping[str, Any], kind: np.ndarray,
                     tier: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        invalid_type = _metadata_column(pool, "invalid_type", self.name, metadata).astype(str)
        invalid = kind == "invalid"
        unknown = sorted(set(np.unique(invalid_type[invalid])) - set(self.invalid_types))
        if unknown:
            raise SelectionError(f"{self.name}: unknown invalid types {unknown}; expected {list(self.invalid_types)}")
        rank = np.zeros(len(kind), np.int64)
        for position, name in enumerate(self.invalid_types):
            rank[invalid & (invalid_type == name)] = position
        return tier * len(self.invalid_types) + rank, {"kept_by_invalid_type": np.where(invalid, invalid_type, "")}

    def order(self, tier: np.ndarray, group: np.ndarray, centre: np.ndarray) -> np.ndarray:
        # frames of each (tier, group): the biggest groups of a tier come first
        cell = tier * (group.max(initial=0) + 1) + group
        size = np.bincount(cell)[cell]
        return np.lexsort((np.arange(len(tier)), group, -size, tier))


class _Coverage(Selector):
    """What the coverage references share: the valid frames (planted ``kind`` other than
    ``invalid``) of a synthetic pool first, in an order over centres (``centre_id``; a pool
    without it is one centre) and scenes (``scene_id``) that subclasses write in
    :meth:`order`, the invalid frames last (reached only when the ratio exceeds the pool's
    valid share). Deterministic: the seed plays no role."""

    deterministic_in_seed = True

    def choose(self, pool: Dataset, k: int, *, seed: int) -> tuple[np.ndarray, dict]:
        metadata = _pool_metadata(pool)
        invalid = _metadata_column(pool, "kind", self.name, metadata).astype(str) == "invalid"
        scene = np.unique(_metadata_column(pool, "scene_id", self.name, metadata), return_inverse=True)[1].reshape(-1)
        centre = _centres(pool, metadata, self.name)
        chosen = self.order(invalid, scene, centre)[:k]
        valid = chosen[~invalid[chosen]]
        return chosen, {"kept_valid": int(valid.size), "n_scenes": int(np.unique(scene[valid]).size),
                        "n_centres": int(np.unique(centre[valid]).size),
                        "kept_by_centre": _counts(centre[valid].astype(str))}

    def order(self, invalid: np.ndarray, scene: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Every item's index, in the order the selector keeps them (valid frames first)."""
        raise NotImplementedError


def _centres(pool: Dataset, metadata: Mapping[str, Any], selector: str) -> np.ndarray:
    """Every item's centre as a dense integer (``centre_id``); a pool without one is one centre."""
    if "centre_id" not in metadata:
        return np.zeros(len(pool), np.int64)
    return np.unique(_metadata_column(pool, "centre_id", selector, metadata), return_inverse=True)[1].reshape(-1)


def _interleaved(group: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Every item's group's place among its centre's groups, in id order: sorting a round by
    (place, centre) takes the first group of each centre, then the second, …"""
    pairs, pair = np.unique(np.stack([centre, group], 1), axis=0, return_inverse=True)
    first = np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]
    place = np.arange(len(pairs)) - np.maximum.accumulate(np.where(first, np.arange(len(pairs)), 0))
    return place[pair.reshape(-1)]


def _rank_in_group(group: np.ndarray, members: np.ndarray) -> np.ndarray:
    """For every item, its rank in index order among the ``members`` of its group (members
    only; others get their rank among the non-members, which no caller reads)."""
    n = len(group)
    by_group = np.lexsort((np.arange(n), group, ~members))
    key = group[by_group] * 2 + (~members[by_group])
    first = np.r_[True, key[1:] != key[:-1]]
    run_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    rank = np.empty(n, np.int64)
    rank[by_group] = np.arange(n) - run_start
    return rank


class SpreadValid(_Coverage):
    """Upper coverage reference on the synthetic pool: valid frames spread over every centre
    and scene.

    Uses ``pool.metadata()``'s ``kind``, ``scene_id`` and ``centre_id``
    (``synthetic_endoscopy``): the first valid frame of every scene, then the second valid
    frame of every scene that has one, and so on (round robin over scenes); inside a round the
    scenes of the centres are interleaved (the first scene of each centre, then the second, …,
    scenes in time order: :func:`_interleaved`), so a round cut short still touches every
    centre. Invalid frames last. Wherever a ratio needs only valid frames this is the most
    diverse valid subset of its size, and the frames ``oracle`` keeps. No parameters.
    Diagnostics: ``kept_valid``, ``n_scenes``, ``n_centres``, ``kept_by_centre``, ``time_s``.
    """

    name = "spread_valid"
    version = "1"
    description = "Synthetic pool only: valid frames, one per scene first, interleaved over centres"

    def order(self, invalid: np.ndarray, scene: np.ndarray, centre: np.ndarray) -> np.ndarray:
        in_scene = _rank_in_group(scene, ~invalid)  # a valid frame's round
        return np.lexsort((np.arange(len(scene)), centre, _interleaved(scene, centre), in_scene, invalid))


class PackedValid(_Coverage):
    """Lower coverage reference on the synthetic pool: valid frames packed into the fewest
    scenes of the biggest centre.

    Uses ``pool.metadata()``'s ``kind``, ``scene_id`` and ``centre_id``
    (``synthetic_endoscopy``): every valid frame of the centre with the most frames, scene by
    scene, the scenes with the most valid frames first; past that centre's valid frames the
    next biggest centre's, the same way; invalid frames last. The same number of equally
    clean frames as ``spread_valid``, but as few distinct views as the pool allows: what a
    uniformly random subset of a pool of long, static stretches drifts towards. No
    parameters. Diagnostics: ``kept_valid``, ``n_scenes``, ``n_centres``, ``kept_by_centre``,
    ``time_s``.
    """

    name = "packed_valid"
    version = "1"
    description = "Synthetic pool only: valid frames of the fewest scenes of the biggest centre"

    def order(self, invalid: np.ndarray, scene: np.ndarray, centre: np.ndarray) -> np.ndarray:
        valid = ~invalid
        centre_size = np.bincount(centre)
        centre_place = np.argsort(np.lexsort((np.arange(centre_size.size), -centre_size)))[centre]
        scene_valid = np.bincount(scene, weights=valid, minlength=scene.max(initial=-1) + 1)[scene]
        return np.lexsort((np.arange(len(scene)), scene, -scene_valid, centre_place, invalid))


def _counts(values: np.ndarray) -> dict[str, int]:
    """How many of each value (empty strings left out): a bracket selector's kept counts."""
    names, counts = np.unique(values.astype(str), return_counts=True)
    return {str(a): int(b) for a, b in zip(names, counts) if a}


def _planted_tiers(pool: Dataset, metadata: Mapping[str, Any], selector: str, tiers: tuple[str, ...],
                   by: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The planted ``kind`` of every item, its position in ``tiers`` and its group id (dense
    integers from the ``by`` column) in the pool's ``metadata``: what the bracket selectors
    order by."""
    kind = _metadata_column(pool, "kind", selector, metadata).astype(str)
    unknown = sorted(set(np.unique(kind)) - set(tiers))
    if unknown:
        raise SelectionError(f"{selector}: unknown frame kinds {unknown}; expected {list(tiers)}")
    group = np.unique(_metadata_column(pool, by, selector, metadata), return_inverse=True)[1].reshape(-1)
    tier = np.empty(len(pool), np.int64)
    for position, name in enumerate(tiers):
        tier[kind == name] = position
    return kind, tier, group


@hookimpl
def delbench_register_selectors() -> list[type]:
    return [Full, Random, Stratified, Oracle, AntiOracle, SpreadValid, PackedValid]
