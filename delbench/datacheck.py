"""``delbench data check``: validate every item of a dataset and report problems by file.

For datasets read from files (the built-in folder datasets, which expose ``inspect_files``), every
file is checked on the original files, before any resizing:

- the image decodes completely (a truncated or corrupt file is a problem with its path);
- each mask decodes, has the image's width × height, and holds binary values:
  lossless masks (PNG, TIF, BMP, …) must hold only 0/255, or 0/1 when the dataset is built
  with ``mask_threshold=1`` (0/1 masks read at the default threshold 128 would be all
  background); JPEG masks may carry compression noise, so they pass while at most
  ``jpeg_tolerance`` (default 5 %) of their pixels lie in the ambiguous band 33–223;
  masks whose colour channels differ (colour-coded multi-class masks) are reported;
- pairing problems found while listing the files (images without masks, masks without
  images, two files for one stem) and split-file problems are included;
- counts per split ("train", "test", "all") are reported, and the train/test split is kept
  as a split file (:func:`delbench.store.write_split_file`).

Any other registered dataset is checked through its public interface: each split is built
and every item is read; errors and non-binary or mis-sized masks are reported by item id.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from delbench.errors import DelbenchError
from delbench.sdk.imaging import item_decode_problems, mask_content_problems, mask_value_problem
from delbench.store import write_split_file

@dataclass
class DataCheckReport:
    """What ``check_dataset`` found: counts per split and (path, message) problems."""

    dataset: str
    root: str | None
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self, max_problems: int | None = None) -> str:
        lines = [f"dataset: {self.dataset}" + (f"   root: {self.root}" if self.root else "")]
        for key, value in self.details.items():
            lines.append(f"{key}: {value}")
        lines.append("counts: " + ", ".join(f"{split} {n}" for split, n in self.counts.items()))
        lines.append(f"files checked: {self.files_checked}")
        if self.ok:
            lines.append("problems: none")
            return "\n".join(lines)
        lines.append(f"problems: {len(self.problems)}")
        shown = self.problems if max_problems is None else self.problems[:max_problems]
        lines += [f"  {path}: {message}" for path, message in shown]
        if len(shown) < len(self.problems):
            lines.append(f"  … and {len(self.problems) - len(shown)} more")
        return "\n".join(lines)


def _check_folder_dataset(dataset_cls: type, report: DataCheckReport, params: dict[str, Any], *,
                          jpeg_tolerance: float, progress: bool) -> None:
    from tqdm.auto import tqdm

    dataset = dataset_cls.inspect_files(**params)
    report.root = str(dataset.root)
    if dataset.discovery.layout:
        report.details["layout"] = dataset.discovery.layout
    report.problems.extend(dataset.problems)
    items = list(dataset.discovery.items)
    if not items:
        report.problems.append((str(dataset.root), f"no images found (layout: {dataset.discovery.layout or '?'}); "
                                                   f"expected: {getattr(dataset_cls, 'layout_help', '?')}"))
    try:
        plan = dataset.plan  # made on demand: split "all" does not need it to load
    except DelbenchError as exc:
        report.problems.append((str(dataset.root), f"cannot make the train/test split: {exc}"))
        plan = None
    if plan is not None:
        if dataset.split == "all":  # otherwise the plan's problems are in dataset.problems already
            report.problems.extend(plan.problems)
        settings = ", ".join(f"{k} {v}" for k, v in plan.details.items())
        report.details["split"] = f"{plan.method}" + (f" ({settings})" if settings else "")
        report.details["split sha256"] = plan.sha256
        # data check is one of the explicit steps that keep a split (building one writes nothing)
        split_file = write_split_file(plan.record(report.dataset, str(getattr(dataset_cls, "version", "1"))))
        if split_file is not None:
            report.details["split file"] = str(split_file)
        report.counts["train"] = len(plan.ids("train"))
        report.counts["test"] = len(plan.ids("test"))
    report.counts["all"] = len(items)
    threshold = dataset.mask_threshold
    for item in tqdm(items, desc=f"check {report.dataset}", disable=not progress, unit="item"):
        report.files_checked += 1 + len(item.masks)
        report.problems.extend(item_decode_problems(
            item.image, item.masks,
            inspect_mask=partial(mask_content_problems, threshold=threshold, jpeg_tolerance=jpeg_tolerance)))


def _check_generic(dataset_cls: type, report: DataCheckReport, params: dict[str, Any]) -> None:
    params = dict(params)
    for split in [params.pop("split")] if "split" in params else dataset_cls.splits:
        dataset = dataset_cls(split=split, **params)
        report.counts[split] = len(dataset)
        for index in range(len(dataset)):
            where = f"{split}[{index}]"
            try:
                item = dataset[index]
            except DelbenchError as exc:
                report.problems.append((where, str(exc)))
                continue
            where = str(item.get("id", where))
            report.files_checked += 1
            image = np.asarray(item["image"])
            if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
                report.problems.append((where, f"image must be uint8 H×W×3, got {image.dtype} {image.shape}"))
            if "mask" in item:
                mask = np.asarray(item["mask"])
                if mask.shape != image.shape[:2]:
                    report.problems.append((where, f"mask shape {mask.shape} differs from image {image.shape[:2]}"))
                if not set(np.unique(mask).tolist()) <= {0, 1}:
                    report.problems.append((where, "mask values are not in {0, 1}"))


def check_dataset(dataset_cls: type, *, root: str | Path | None = None, jpeg_tolerance: float = 0.05,
                  progress: bool = False, **params: Any) -> DataCheckReport:
    """Check every item of every split of ``dataset_cls`` built with ``root`` and ``params``.

    Returns a :class:`DataCheckReport`; it raises only when the dataset cannot be built at
    all (no root, wrong layout: a :class:`~delbench.errors.DatasetError` saying what is
    expected).
    """
    report = DataCheckReport(getattr(dataset_cls, "name", dataset_cls.__name__),
                             None if root is None else str(root))
    if root is not None:
        params["root"] = root
    if hasattr(dataset_cls, "inspect_files"):
        _check_folder_dataset(dataset_cls, report, params, jpeg_tolerance=jpeg_tolerance, progress=progress)
    else:
        _check_generic(dataset_cls, report, params)
    report.problems.sort(key=lambda p: (p[0], p[1]))
    return report
