"""The base classes of every dataset read from a folder of image files (no plugin hooks here).

Every public endoscopy dataset, pool and the generic ``image_folder`` is a
:class:`FolderDataset`: a subclass only says how to *discover* its files (a
:class:`~delbench_plugins.lib.discovery.Discovery`: items plus the problems found while
listing them) and, where the dataset publishes one, its train/test split. The concerns live
in their own library modules, each documenting its rules once:

- :mod:`~delbench_plugins.lib.discovery`: the root (``root=`` or ``DELBENCH_<NAME>_ROOT``),
  listing image files, ids (paths relative to the root), class folders;
- :mod:`~delbench_plugins.lib.pairing`: images paired with masks by file stem;
- :mod:`~delbench_plugins.lib.splits`: published and seeded train/test splits;
- :mod:`~delbench_plugins.lib.masks`: reading masks as binary arrays.

Splits
    Split "train"/"test" uses the plan (:attr:`FolderDataset.plan`); split "all" makes it only
    when asked (``dataset.plan``, ``metadata()``'s ``split`` column, ``delbench data check``),
    so a plan that cannot be made or has problems does not stop loading the whole dataset.
    Building a dataset writes nothing: the harness keeps the plan as a split file
    (:meth:`FolderDataset.split_record`, written by :func:`delbench.store.write_split_file`
    when a run opens the dataset and by ``delbench data check``); ``dataset.split_sha256``
    identifies it.
Problems
    By default any problem (unpaired file; for train/test, a file missing from a published
    split list) stops the construction with a :class:`DatasetError` naming the first path and
    the ``delbench data check`` command; an unreadable file raises when it is read. With
    ``skip_unreadable=True`` every file of the split is decoded up front and problem items (a
    file that does not decode, a mask whose size differs from its image's, a mask that
    ``delbench data check`` flags for its values or colours) are skipped,
    recorded in ``dataset.skipped`` ((path, reason) pairs) and logged with ``logging.warning``
    — never silently.
"""
from __future__ import annotations

import logging
import os
from functools import cached_property, partial
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from delbench.sdk import (ConfigError, Dataset, DatasetError, DelbenchError, check_bool, check_int, check_number,
                          check_path, check_split, item_decode_problems, mask_content_problems, read_image)
from delbench_plugins.lib.discovery import Discovery, FileItem, Problem, resolve_root
from delbench_plugins.lib.masks import read_union_mask
from delbench_plugins.lib.pairing import PairedLayout, pair_folders
from delbench_plugins.lib.splits import (SplitPlan, plan_from_lists, read_list_file, seeded_test_ids,
                                         strip_image_suffix)

logger = logging.getLogger(__name__)

#: how many skipped items are logged one by one before a summary line takes over
_SKIP_LOG_LIMIT = 20


class FolderDataset(Dataset):
    """A dataset read lazily from image files under a root folder (see the module docstring).

    Common parameters: ``split`` ("train", "test" or "all"), ``root``, ``image_size`` (resize
    to image_size × image_size; None keeps the original size), ``test_fraction`` and
    ``split_seed`` (seeded split, where no published split exists), ``skip_unreadable``,
    ``mask_threshold`` (foreground where grey ≥ this).

    Subclasses implement :meth:`discover` and, where the dataset publishes a split,
    :meth:`published_split`; ``split_stratify``/``split_group`` name an item metadata key
    ("label" stratifies by class) used by the seeded split.
    """

    roles: ClassVar[tuple[str, ...]] = ("segmentation",)
    splits: ClassVar[tuple[str, ...]] = ("train", "test", "all")
    #: one line describing the published layout (error messages, docs/datasets.md)
    layout_help: ClassVar[str] = ""
    #: stratify the seeded split by this item attribute ("label") or not at all (None)
    split_stratify: ClassVar[str | None] = None
    #: split whole groups of items sharing this metadata key (e.g. "sequence_id"); an item
    #: with an empty value forms a group of its own
    split_group: str | None = None

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        check_split(params, cls.splits)
        check_path(params, "root")
        check_int(params, "image_size", 1, allow_none=True)
        check_number(params, "test_fraction", 0.0, 1.0, low_open=True, high_open=True)
        check_int(params, "split_seed")
        check_bool(params, "skip_unreadable")
        check_int(params, "mask_threshold", 1, 255)

    def __init__(self, *, split: str = "train", root: str | os.PathLike | None = None,
                 image_size: int | None = None, test_fraction: float = 0.2, split_seed: int = 0,
                 skip_unreadable: bool = False, mask_threshold: int = 128, _inspect_only: bool = False) -> None:
        self.split = split
        self.image_size = None if image_size is None else int(image_size)
        self.test_fraction = float(test_fraction)
        self.split_seed = int(split_seed)
        self.skip_unreadable = bool(skip_unreadable)
        self.mask_threshold = int(mask_threshold)
        self.root = self.resolve_root(root)
        self.discovery = self.discover(self.root)
        self.class_names = self.discovery.class_names or getattr(type(self), "class_names", ())
        # problems that stop (or, with skip_unreadable, are skipped by) this split; split "all"
        # does not need the train/test plan, so the plan's problems count only for train/test
        self.problems: list[Problem] = list(self.discovery.problems)
        if split != "all" and self.plan is not None:
            self.problems += self.plan.problems
        self.skipped: list[Problem] = []
        items = [it for it in self.discovery.items if self._in_split(it)]
        if not _inspect_only:
            items = self._apply_problem_policy(items)
        self._items: list[FileItem] = items
        self._metadata: dict[str, np.ndarray] | None = None

    # --- hooks for subclasses ----------------------------------------------------------
    def resolve_root(self, root: str | os.PathLike | None) -> Path:
        return resolve_root(self.name, root, self.layout_help)

    def discover(self, root: Path) -> Discovery:
        raise NotImplementedError

    def published_split(self, items: Sequence[FileItem]) -> SplitPlan | None:
        """The dataset's own split (id → split for the splittable items), or None."""
        return None

    def splittable(self, item: FileItem) -> bool:
        """Whether the item takes part in train/test (HyperKvasir: only labelled images)."""
        return True

    # --- splits ------------------------------------------------------------------------
    @cached_property
    def plan(self) -> SplitPlan | None:
        """The train/test plan (None for datasets without train/test), made on first use.

        Split "all" never needs it, so a plan that cannot be made (Kvasir-Capsule split by
        video with a single video) raises only where the plan is asked for.
        """
        if "train" not in self.splits:
            return None
        return self._make_plan(self.discovery.items)

    @property
    def split_sha256(self) -> str | None:
        return None if self.plan is None else self.plan.sha256

    def split_record(self) -> Mapping[str, Any] | None:
        """The train/test plan as a split-file record (None for split "all" or no train/test)."""
        if self.split == "all" or self.plan is None:
            return None
        return self.plan.record(self.name, str(self.version))

    def _make_plan(self, all_items: Sequence[FileItem]) -> SplitPlan:
        items = [it for it in all_items if self.splittable(it)]
        plan = self.published_split(items)
        if plan is not None:
            return plan
        ids = [it.id for it in items]
        strata = [it.label for it in items] if self.split_stratify == "label" else None
        groups = None
        if self.split_group:
            groups = [str(it.meta.get(self.split_group) or f"\0{it.id}") for it in items]
        test = seeded_test_ids(ids, test_fraction=self.test_fraction, seed=self.split_seed,
                               strata=strata, groups=groups)
        if groups is not None:
            strata = None  # seeded_test_ids splits whole groups and ignores strata
        details: dict[str, Any] = {"seed": self.split_seed, "fraction": self.test_fraction,
                                   "rank": "sha256(seed \\0 id)"}
        if strata is not None:
            details["stratified_by"] = "label"
        if groups is not None:
            details["grouped_by"] = self.split_group
        return SplitPlan({i: ("test" if i in test else "train") for i in ids}, "seeded", details)

    def _in_split(self, item: FileItem) -> bool:
        if self.split == "all":
            return True
        return self.plan is not None and self.plan.assignment.get(item.id) == self.split

    # --- problems ------------------------------------------------------------------------
    def _apply_problem_policy(self, items: list[FileItem]) -> list[FileItem]:
        if not self.skip_unreadable:
            if self.problems:
                path, message = self.problems[0]
                raise DatasetError(
                    f"{self.name}: {len(self.problems)} problem(s) under {self.root}, first: {path}: "
                    f"{message}. Run 'delbench data check {self.name} --root {self.root}' for all of "
                    f"them, or set skip_unreadable=True to skip the items concerned")
            return items
        skipped = list(self.problems)
        kept = []
        # the mask rules of `delbench data check` too: a mask it flags (values {0, 128, 255}, a
        # colour mask, 0/1 read at threshold 128) must not be trained on when problems are skipped
        inspect = partial(mask_content_problems, threshold=self.mask_threshold)
        for item in items:
            problems = item_decode_problems(item.image, item.masks, inspect_mask=inspect)
            if problems:
                skipped.extend(problems)
            else:
                kept.append(item)
        self.skipped = skipped
        for path, reason in skipped[:_SKIP_LOG_LIMIT]:
            logger.warning("%s: skipping %s: %s", self.name, path, reason)
        if skipped:
            logger.warning("%s: skipped %d file(s) under %s (skip_unreadable=True); the full list is "
                           "in dataset.skipped", self.name, len(skipped), self.root)
        return kept

    # --- the Dataset contract ------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def item_id(self, index: int) -> str:
        return self._items[int(index)].id

    def item_ids(self) -> list[str]:
        return [item.id for item in self._items]

    @property
    def items(self) -> Sequence[FileItem]:
        return tuple(self._items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < len(self._items):
            raise IndexError(f"{self.name}: index {index} out of range [0, {len(self._items)})")
        item = self._items[index]
        out: dict[str, Any] = {"image": read_image(item.image, self.image_size), "id": item.id}
        if item.masks:
            mask = self.read_mask(item)
            if mask.shape != out["image"].shape[:2]:
                raise DatasetError(f"mask {item.masks[0]} is {mask.shape[1]}×{mask.shape[0]} but image "
                                   f"{item.image} is {out['image'].shape[1]}×{out['image'].shape[0]}")
            out["mask"] = mask
        if item.label is not None:
            out["label"] = int(item.label)
        return out

    def read_mask(self, item: FileItem) -> np.ndarray:
        """The item's mask, uint8 (H, W): the union of its mask files, binarised (a dataset with
        one mask file per class overrides this to build its label map)."""
        return read_union_mask(item.masks, self.image_size, self.mask_threshold)

    def load_images(self, indices: np.ndarray) -> np.ndarray:
        images = [self[int(i)]["image"] for i in indices]
        if len({im.shape for im in images}) > 1:
            raise DatasetError(f"{self.name}: images differ in size; set image_size to stack them")
        return np.stack(images) if images else np.zeros((0, 0, 0, 3), np.uint8)

    def labels(self) -> np.ndarray:
        """Class index per item (int64), −1 where an item has no label; reads no pixels."""
        return np.array([-1 if it.label is None else it.label for it in self._items], dtype=np.int64)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def metadata(self) -> Mapping[str, np.ndarray]:
        if self._metadata is None:
            keys = sorted({k for it in self._items for k in it.meta})
            columns: dict[str, np.ndarray] = {}
            for key in keys:
                values = [it.meta.get(key, "") for it in self._items]
                columns[key] = np.asarray(values, dtype=object if any(isinstance(v, str) for v in values) else None)
            if "source" not in columns:  # a union (datadel) carries a per-item source instead
                columns["source"] = np.full(len(self._items), self.name, dtype=object)
            plan = self._plan_for_metadata()
            if plan is not None:
                columns["split"] = np.asarray([plan.assignment.get(it.id, "") for it in self._items],
                                              dtype=object)
            if any(it.label is not None for it in self._items):
                columns["label"] = self.labels()
            self._metadata = columns
        return self._metadata

    def _plan_for_metadata(self) -> SplitPlan | None:
        """The plan for the ``split`` column; split "all" loads without one when it cannot be made."""
        if self.split != "all":
            return self.plan
        try:
            return self.plan
        except DelbenchError as exc:
            logger.warning("%s: no 'split' metadata column: the train/test split cannot be made (%s)",
                           self.name, exc)
            return None

    @classmethod
    def inspect_files(cls, **params: Any) -> "FolderDataset":
        """Build without applying the problem policy (``delbench data check`` uses this).

        ``split`` defaults to "all"; ``problems`` and ``discovery`` are filled, ``plan`` is
        made when first read.
        """
        params.setdefault("split", "all")
        return cls(**params, _inspect_only=True)


class PairedFolderDataset(FolderDataset):
    """Images paired with binary masks; the first of ``layouts`` found under the root is used.

    Extra parameters: ``train_list`` / ``test_list``: text files (one image stem or file name
    per line, relative paths resolved against the root) that define the split instead of the
    seeded one — e.g. a split published next to the data. ``default_lists`` names the files a
    dataset publishes in its archive (Kvasir-Instrument's ``train.txt``/``test.txt``).
    """

    layouts: ClassVar[tuple[PairedLayout, ...]] = ()
    num_classes: ClassVar[int] = 2  # type: ignore[assignment]
    class_names: ClassVar[tuple[str, ...]] = ("background", "foreground")
    #: split list files shipped with the dataset, relative to the root (train, test)
    default_lists: ClassVar[tuple[str, str] | None] = None

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        super().check_params(params)
        check_path(params, "train_list")
        check_path(params, "test_list")
        if (params.get("train_list") is None) != (params.get("test_list") is None):
            raise ConfigError("give both train_list and test_list, or neither")

    def __init__(self, *, train_list: str | os.PathLike | None = None,
                 test_list: str | os.PathLike | None = None, **common: Any) -> None:
        self._lists = None if train_list is None else (train_list, test_list)
        super().__init__(**common)

    def discover(self, root: Path) -> Discovery:
        for layout in self.layouts:
            if layout.exists(root):
                return pair_folders(root, layout)
        expected = " or ".join(layout.describe() for layout in self.layouts)
        raise DatasetError(f"{self.name}: {root} does not hold the expected layout: {expected}")

    def published_split(self, items: Sequence[FileItem]) -> SplitPlan | None:
        lists = self._lists or self.default_lists
        if lists is None:
            return None
        paths = {}
        for split, entry in zip(("train", "test"), lists):
            path = Path(entry).expanduser()
            path = path if path.is_absolute() else self.root / path
            if not path.is_file():
                raise DatasetError(f"{self.name}: split list {path} not found (the {split} list"
                                   + (" published with the dataset" if self._lists is None else "")
                                   + ")")
            paths[split] = path
        entries = {split: [strip_image_suffix(Path(e).name) for e in read_list_file(path)]
                   for split, path in paths.items()}
        return plan_from_lists(items, entries, key_of=lambda it: it.image.stem,
                               sources={s: str(p) for s, p in paths.items()},
                               method="published" if self._lists is None else "lists")

