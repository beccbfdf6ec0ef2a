"""Train/test splits of folder datasets: seeded from the ids, or read from published lists.

Not a plugin: it registers nothing. Where a dataset publishes no split, the *seeded split*
depends only on the sorted ids, ``split_seed`` and ``test_fraction``: ids are ranked by
``sha256(f"{seed}\\0{id}")`` and the first ``round(fraction × n)`` form the test set (per
class when the dataset stratifies by label, per group of ids such as a video when it splits
by group; a grouped split does not also stratify). No random generator is involved, so the
split is identical on every machine and NumPy version.

A :class:`SplitPlan` is what a dataset was split by; its :meth:`SplitPlan.record` is what
the harness keeps as a split file (:func:`delbench.store.write_split_file`). Building a
dataset writes nothing.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from delbench.sdk import ConfigError, IMAGE_SUFFIXES
from delbench_plugins.lib.discovery import FileItem, Problem

SPLIT_FILE_FORMAT = "delbench-split"
SPLIT_FILE_VERSION = 1


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\x00{key}".encode("utf-8")).hexdigest()


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def seeded_test_ids(ids: Sequence[str], *, test_fraction: float, seed: int,
                    strata: Sequence[Any] | None = None,
                    groups: Sequence[Any] | None = None) -> set[str]:
    """The test ids of a seeded split (see the module docstring); the rest is train.

    Plain: ids ranked by ``sha256(f"{seed}\\0{id}")``; the first ``round(f × n)`` (at least 1
    and at most n − 1 when n ≥ 2) are test. ``strata`` (e.g. labels): the same per stratum, so
    every class keeps its share and a class with ≥ 2 items keeps one in train. ``groups``
    (e.g. video ids): whole groups, ranked by the hash of the group, go to test until it holds
    at least ``round(f × n)`` items, so frames of one video never straddle the split.
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    ids = list(ids)
    n = len(ids)
    if n == 0:
        return set()
    if groups is not None:
        members: dict[str, list[str]] = {}
        for id_, group in zip(ids, groups):
            members.setdefault(str(group), []).append(id_)
        if len(members) < 2:
            raise ConfigError(f"a split by group needs at least two groups, found {len(members)}")
        target = _round_half_up(test_fraction * n)
        ranked = sorted(members, key=lambda g: (_rank(seed, g), g))
        test: set[str] = set()
        for group in ranked[:-1]:  # the last-ranked group always stays in train
            if len(test) >= target:
                break
            test.update(members[group])
        return test
    if strata is not None:
        by_stratum: dict[Any, list[str]] = {}
        for id_, s in zip(ids, strata):
            by_stratum.setdefault(s, []).append(id_)
        test = set()
        for members_ in by_stratum.values():
            k = min(_round_half_up(test_fraction * len(members_)), len(members_) - 1)
            test.update(sorted(members_, key=lambda i: (_rank(seed, i), i))[:max(0, k)])
        return test
    k = _round_half_up(test_fraction * n)
    if n >= 2:
        k = min(max(k, 1), n - 1)
    return set(sorted(ids, key=lambda i: (_rank(seed, i), i))[:k])


def split_digest(train_ids: Iterable[str], test_ids: Iterable[str]) -> str:
    """sha256 of ``{"train": sorted ids, "test": sorted ids}`` as compact UTF-8 JSON."""
    payload = json.dumps({"train": sorted(train_ids), "test": sorted(test_ids)},
                         separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class SplitPlan:
    """id → "train"/"test" for the splittable items, how it was made, and problems found."""

    assignment: dict[str, str]
    method: str
    details: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def ids(self, split: str) -> list[str]:
        return sorted(i for i, s in self.assignment.items() if s == split)

    @property
    def sha256(self) -> str:
        return split_digest(self.ids("train"), self.ids("test"))

    def record(self, dataset: str, dataset_version: str) -> dict[str, Any]:
        train, test = self.ids("train"), self.ids("test")
        return {"format": SPLIT_FILE_FORMAT, "format_version": SPLIT_FILE_VERSION,
                "dataset": dataset, "dataset_version": dataset_version, "method": self.method,
                **self.details, "n_train": len(train), "n_test": len(test),
                "train": train, "test": test, "sha256": split_digest(train, test)}


def read_list_file(path: Path) -> list[str]:
    """Non-empty stripped lines of a split list file (``train.txt``)."""
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def strip_image_suffix(name: str) -> str:
    suffix = Path(name).suffix
    return name[: -len(suffix)] if suffix.lower() in IMAGE_SUFFIXES else name


def plan_from_lists(items: Sequence[FileItem], lists: Mapping[str, Sequence[str]], *, key_of,
                    sources: Mapping[str, str], method: str = "published") -> SplitPlan:
    """Assign items named in per-split lists (entries matched by ``key_of(item)``).

    Items named in no list, in two lists, and list entries with no item are problems.
    ``sources`` names the file each list came from, for the messages.
    """
    by_key: dict[str, list[FileItem]] = {}
    for item in items:
        by_key.setdefault(key_of(item), []).append(item)
    assignment: dict[str, str] = {}
    problems: list[Problem] = []
    for split, entries in lists.items():
        for entry in entries:
            matches = by_key.get(entry, [])
            if not matches:
                problems.append((sources[split], f"lists {entry!r} but no such image was found"))
                continue
            if len(matches) > 1:
                problems.append((sources[split], f"entry {entry!r} matches {len(matches)} images "
                                                 f"({', '.join(m.id for m in matches)})"))
                continue
            item_id = matches[0].id
            if assignment.setdefault(item_id, split) != split:
                problems.append((str(matches[0].image), f"listed in both {sources[assignment[item_id]]} "
                                                        f"and {sources[split]}"))
    for item in items:
        if item.id not in assignment:
            problems.append((str(item.image), "not listed in any split file ("
                             + ", ".join(sources.values()) + ")"))
    return SplitPlan(assignment, method, {"split_files": dict(sources)}, problems)
