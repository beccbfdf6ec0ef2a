"""The dataset contract checker (:class:`delbench.sdk.Dataset`).

::

    from delbench.testing import check_dataset
    check_dataset(MyDataset, params={"root": "/data/mine"})

The class is built once per split in ``splits`` (default: all of ``cls.splits``) as
``cls(split=..., **params)``, the way the harness builds it. The checks:
``check_attributes`` (``name``, ``version``, non-empty ``roles`` and ``splits``);
``check_no_side_effects`` (building every split writes no file: not under the data root, not
in the cache folder ``$DELBENCH_CACHE_DIR``, which is pointed at an empty folder meanwhile);
``check_items`` (first, middle and last item of every split: a uint8 H×W×3 ``image``, the
``id`` that ``item_id`` returns, a binary ``mask`` of the image's size and an int ``label``
in range where present; the train split of a dataset whose only task role is
"segmentation" or "classification" carries masks or labels); ``check_item_ids``
(``item_ids()`` equals ``item_id(i)`` for every i, unique, no newline, identical on a second
build); ``check_index_errors`` (``dataset[len]`` raises ``IndexError``); ``check_metadata``
(every column has one value per item); ``check_load_images`` (stacks the items' images);
``check_image_size`` (when the constructor takes ``image_size``: 16 gives 16 × 16 images and
masks); ``check_split_record`` (None, or a JSON-able record naming the dataset and its
sha256).
"""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from delbench.sdk.params import parameter_space
from delbench.testing.checks import named_check

TASK_ROLES = ("segmentation", "classification")


def _files_under(folder: Path | None) -> set[Path]:
    return set() if folder is None or not folder.is_dir() else set(folder.rglob("*"))


class _DatasetHarness:
    def __init__(self, dataset_cls: Any, params: Mapping[str, Any] | None, splits: Sequence[str] | None) -> None:
        self.cls = dataset_cls
        self.name = getattr(dataset_cls, "name", getattr(dataset_cls, "__name__", repr(dataset_cls)))
        self.params = dict(params or {})
        self.splits = tuple(splits if splits is not None else getattr(dataset_cls, "splits", ()))

    def build(self, split: str, **extra: Any) -> Any:
        return self.cls(split=split, **{**self.params, **extra})

    @functools.cached_property
    def built(self) -> dict[str, Any]:
        """One instance per split, built with the cache folder pointed at an empty one."""
        with tempfile.TemporaryDirectory() as cache:
            previous = os.environ.get("DELBENCH_CACHE_DIR")
            os.environ["DELBENCH_CACHE_DIR"] = cache
            root = Path(self.params["root"]) if self.params.get("root") else None
            before = _files_under(root)
            try:
                datasets = {split: self.build(split) for split in self.splits}
            finally:
                if previous is None:
                    os.environ.pop("DELBENCH_CACHE_DIR", None)
                else:
                    os.environ["DELBENCH_CACHE_DIR"] = previous
            self.written = sorted(map(str, (_files_under(root) - before) | _files_under(Path(cache))))
        return datasets


def _probe_indices(n: int) -> list[int]:
    return sorted({0, n // 2, n - 1}) if n else []


def check_attributes(h: _DatasetHarness) -> None:
    assert isinstance(h.name, str) and h.name, "the class needs a non-empty string attribute 'name'"
    assert isinstance(getattr(h.cls, "version", "1"), str), "'version' must be a string"
    roles = getattr(h.cls, "roles", ())
    assert isinstance(roles, tuple) and roles and all(isinstance(r, str) for r in roles), (
        f"'roles' must be a non-empty tuple of strings, got {roles!r}")
    assert h.splits and all(isinstance(s, str) for s in h.splits), f"'splits' must name splits, got {h.splits!r}"


def check_no_side_effects(h: _DatasetHarness) -> None:
    h.built  # noqa: B018 - builds every split
    assert not h.written, f"building the dataset wrote {h.written[:3]}; building must have no side effects"


def _check_item(h: _DatasetHarness, dataset: Any, index: int, split: str) -> dict[str, Any]:
    item = dataset[index]
    where = f"split {split!r} item {index}"
    assert isinstance(item, dict), f"{where}: __getitem__ must return a dict, got {type(item).__name__}"
    image = np.asarray(item.get("image"))
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, (
        f"{where}: image must be uint8 H×W×3, got {image.dtype} {image.shape}")
    assert isinstance(item.get("id"), str), f"{where}: 'id' must be a string, got {item.get('id')!r}"
    assert item["id"] == dataset.item_id(index), f"{where}: id {item['id']!r} but item_id gives {dataset.item_id(index)!r}"
    if "mask" in item:
        mask = np.asarray(item["mask"])
        assert mask.shape == image.shape[:2] and mask.dtype == np.uint8, (
            f"{where}: mask must be uint8 of the image's size {image.shape[:2]}, got {mask.dtype} {mask.shape}")
        classes = max(2, len(getattr(dataset, "class_names", ()) or ()))
        assert set(np.unique(mask).tolist()) <= set(range(classes)), (
            f"{where}: mask values must be 0/1, or below the {classes} class_names")
    if "label" in item:
        label = item["label"]
        assert isinstance(label, (int, np.integer)) and label >= 0, f"{where}: label must be an int ≥ 0, got {label!r}"
        classes = len(getattr(dataset, "class_names", ()) or ())
        assert not classes or label < classes, f"{where}: label {label} but only {classes} class_names"
    return item


def check_items(h: _DatasetHarness) -> None:
    task_roles = [role for role in getattr(h.cls, "roles", ()) if role in TASK_ROLES]
    needed = {"segmentation": "mask", "classification": "label"}.get(task_roles[0]) if len(task_roles) == 1 else None
    for split, dataset in h.built.items():
        n = len(dataset)
        assert isinstance(n, int) and n >= 0, f"len() must be an int ≥ 0, got {n!r}"
        items = [_check_item(h, dataset, i, split) for i in _probe_indices(n)]
        if needed and split == "train" and items:
            assert all(needed in item for item in items), (
                f"a {task_roles[0]} dataset's train items need a {needed!r}")


def check_item_ids(h: _DatasetHarness) -> None:
    for split, dataset in h.built.items():
        ids = dataset.item_ids()
        expected = [dataset.item_id(i) for i in range(len(dataset))]
        assert list(ids) == expected, f"split {split!r}: item_ids() differs from [item_id(i) for i in range(len)]"
        assert len(set(ids)) == len(ids), f"split {split!r}: ids are not unique"
        assert not any("\n" in i for i in ids), f"split {split!r}: an id holds a newline"
        assert list(h.build(split).item_ids()) == list(ids), f"split {split!r}: ids differ between two builds"


def check_index_errors(h: _DatasetHarness) -> None:
    for split, dataset in h.built.items():
        try:
            dataset[len(dataset)]
        except IndexError:
            continue
        raise AssertionError(f"split {split!r}: dataset[len(dataset)] must raise IndexError")


def check_metadata(h: _DatasetHarness) -> None:
    for split, dataset in h.built.items():
        for column, values in dataset.metadata().items():
            assert len(values) == len(dataset), (
                f"split {split!r}: metadata column {column!r} has {len(values)} values for {len(dataset)} items")


def check_load_images(h: _DatasetHarness) -> None:
    for split, dataset in h.built.items():
        indices = np.asarray(_probe_indices(len(dataset)), dtype=np.int64)
        if not indices.size:
            continue
        images = np.asarray(dataset.load_images(indices))
        expected = np.stack([np.asarray(dataset[int(i)]["image"]) for i in indices])
        assert images.dtype == np.uint8 and np.array_equal(images, expected), (
            f"split {split!r}: load_images must stack the items' images (uint8 B×H×W×3)")


def check_image_size(h: _DatasetHarness) -> None:
    if "image_size" not in parameter_space("dataset", h.cls).names or not h.splits:
        return
    split = h.splits[0]
    dataset = h.build(split, image_size=16)
    for index in _probe_indices(len(dataset))[:1]:
        item = dataset[index]
        assert np.asarray(item["image"]).shape == (16, 16, 3), f"image_size=16 gave an image of {item['image'].shape}"
        if "mask" in item:
            assert np.asarray(item["mask"]).shape == (16, 16), f"image_size=16 gave a mask of {item['mask'].shape}"


def check_split_record(h: _DatasetHarness) -> None:
    from delbench.sdk.files import dumps

    for split, dataset in h.built.items():
        record = dataset.split_record()
        if record is None:
            continue
        assert record.get("dataset") == h.name and isinstance(record.get("sha256"), str), (
            f"split {split!r}: split_record() must name the dataset ({h.name!r}) and its 'sha256'")
        dumps(record)  # JSON-able


CHECKS: tuple[Callable[[_DatasetHarness], None], ...] = (
    check_attributes, check_no_side_effects, check_items, check_item_ids, check_index_errors,
    check_metadata, check_load_images, check_image_size, check_split_record,
)


def dataset_checks(dataset_cls: Any, *, params: Mapping[str, Any] | None = None,
                   splits: Sequence[str] | None = None) -> Iterator[tuple[str, Callable[[], None]]]:
    """Yield ``(check_name, check)`` pairs; the splits are built once, on first use."""
    harness = _DatasetHarness(dataset_cls, params, splits)
    for check in CHECKS:
        yield check.__name__, named_check(check, harness, f"dataset {harness.name!r}")


def check_dataset(dataset_cls: Any, *, params: Mapping[str, Any] | None = None,
                  splits: Sequence[str] | None = None) -> None:
    """Run every dataset check; raise AssertionError naming the first that fails."""
    for _, check in dataset_checks(dataset_cls, params=params, splits=splits):
        check()
