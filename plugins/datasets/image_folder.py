"""``image_folder``: any lab's folder of images, with optional masks or class folders.

Three shapes, chosen by parameters (never guessed from the files):

- a plain folder of images (``images``, searched recursively when ``recursive``): a pool,
  split "all";
- with ``masks`` (a folder of masks paired with the images by stem, optionally with a
  ``mask_suffix`` such as ``_mask``): segmentation, seeded train/test split;
- with ``classes=True`` (one sub-folder of ``images`` per class): classification, seeded
  train/test split stratified by class.

All folders are relative to ``root`` (or ``$DELBENCH_IMAGE_FOLDER_ROOT``). Masks are
binarised as everywhere in delbench: grey ≥ ``mask_threshold`` (128; use 1 for 0/1 masks).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

from delbench.sdk import ConfigError, DatasetError, check_bool, check_path, hookimpl

from delbench_plugins.lib.discovery import Discovery, FileItem, class_folder_items, labelled_items, list_images, relative_id
from delbench_plugins.lib.folder_dataset import FolderDataset
from delbench_plugins.lib.pairing import PairedLayout, pair_folders


class ImageFolder(FolderDataset):
    """Images under ``root/images``; masks under ``root/masks`` or classes as sub-folders.

    Parameters (besides the common ones of :class:`FolderDataset`): ``images`` (folder of
    images relative to the root, default the root itself), ``masks`` (mask folder relative to
    the root, or None), ``mask_suffix`` (mask stem = image stem + suffix), ``classes`` (class
    sub-folders), ``recursive`` (plain folders only: include sub-folders).
    """

    name = "image_folder"
    version = "1"
    description = "Any folder of images; optional masks/ folder (by stem) or class sub-folders"
    roles: ClassVar[tuple[str, ...]] = ("pool", "segmentation", "classification")
    layout_help = ("images in the root, or in images=DIR under it (recursive=True: in sub-folders too); masks=DIR "
                   "pairs DIR/<stem><mask_suffix>.<ext>; classes=True reads <class>/ folders")

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        super().check_params(params)
        check_path(params, "images")
        check_path(params, "masks")
        check_bool(params, "classes")
        check_bool(params, "recursive")
        masks, classes = params.get("masks"), params.get("classes", False)
        if masks is not None and classes:
            raise ConfigError("use masks (segmentation) or classes=True (classification), not both")
        if masks is None and not classes and params.get("split", "train") != "all":
            raise ConfigError(f"a plain image folder (no masks=, no classes=True) is a pool with split 'all' "
                              f"only, got split {params.get('split', 'train')!r}")

    def __init__(self, *, images: str = ".", masks: str | None = None, mask_suffix: str = "",
                 classes: bool = False, recursive: bool = False, **common: Any) -> None:
        if masks is None and not classes:
            # a plain folder is a pool: no train/test split, so none is planned, counted or recorded
            self.splits = ("all",)
        self.images_dir, self.masks_dir, self.mask_suffix = images, masks, mask_suffix
        self.use_classes, self.recursive = bool(classes), bool(recursive)
        self.split_stratify = "label" if classes else None
        super().__init__(**common)
        if masks is not None:
            self.class_names = ("background", "foreground")

    def discover(self, root: Path) -> Discovery:
        image_dir = root / self.images_dir
        if not image_dir.is_dir():
            raise DatasetError(f"{self.name}: image folder {image_dir} not found")
        if self.masks_dir is not None:
            layout = PairedLayout(self.images_dir, self.masks_dir, mask_suffix=self.mask_suffix)
            if not (root / self.masks_dir).is_dir():
                raise DatasetError(f"{self.name}: mask folder {root / self.masks_dir} not found")
            return pair_folders(root, layout)
        if self.use_classes:
            found, problems = class_folder_items(image_dir)
            items, class_names = labelled_items(found, id_root=root)
            return Discovery(items, problems, class_names, layout=f"{self.images_dir}/<class>/*")
        paths = list_images(image_dir, recursive=self.recursive)
        return Discovery([FileItem(relative_id(p, root), p) for p in paths], layout=f"{self.images_dir}/*")


@hookimpl
def delbench_register_datasets() -> list[type]:
    return [ImageFolder]
