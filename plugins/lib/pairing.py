"""Pairing image files with their mask files by file stem.

Not a plugin: it registers nothing. An image pairs with a mask by file stem (optionally with
a mask prefix/suffix such as ETIS's ``p1.tif`` or PolypGen's ``<stem>_mask.jpg``). Images
without a mask, masks without an image, and two files competing for one stem are
*problems*, each with its path; the items that did pair form a
:class:`~delbench_plugins.lib.discovery.Discovery`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from delbench_plugins.lib.discovery import Discovery, FileItem, Problem, list_images, relative_id


@dataclass(frozen=True)
class PairedLayout:
    """An image folder and a mask folder under the root, paired by file stem.

    A mask named ``{mask_prefix}{stem}{mask_suffix}.<any image suffix>`` belongs to the image
    ``{stem}.<any image suffix>``. ``image_stem_rstrip`` removes trailing characters from image
    stems before pairing (PolypGen ships ``C3_EndoCV2021_00489_.jpg`` whose mask is
    ``C3_EndoCV2021_00489_mask.jpg``).
    """

    images: str
    masks: str
    mask_prefix: str = ""
    mask_suffix: str = ""
    image_stem_rstrip: str = ""

    def describe(self) -> str:
        return (f"{self.images}/<stem>.<ext> with masks {self.masks}/"
                f"{self.mask_prefix}<stem>{self.mask_suffix}.<ext>")

    def exists(self, root: Path) -> bool:
        return (root / self.images).is_dir() and (root / self.masks).is_dir()


def index_by_key(paths: Iterable[Path], key_of, kind: str) -> tuple[dict[str, Path], list[Problem]]:
    """Map key → path; keys claimed by two files are problems for both (neither is used)."""
    by_key: dict[str, list[Path]] = {}
    problems: list[Problem] = []
    for path in paths:
        key = key_of(path)
        if key is None:
            problems.append((str(path), f"{kind} file name does not follow the dataset's naming; not used"))
            continue
        by_key.setdefault(key, []).append(path)
    unique = {}
    for key, group in by_key.items():
        if len(group) == 1:
            unique[key] = group[0]
        else:
            names = ", ".join(p.name for p in group)
            problems.extend((str(p), f"{len(group)} {kind}s share the stem {key!r} ({names}); cannot pair")
                            for p in group)
    return unique, problems


def pair_folders(root: Path, layout: PairedLayout, *, id_root: Path | None = None,
                 meta: Mapping[str, Any] | None = None) -> Discovery:
    """Pair ``root/layout.images`` with ``root/layout.masks`` by stem; unpaired files are problems."""
    id_root = id_root or root
    image_dir, mask_dir = root / layout.images, root / layout.masks

    def image_key(path: Path) -> str:
        stem = path.stem
        return stem.rstrip(layout.image_stem_rstrip) if layout.image_stem_rstrip else stem

    def mask_key(path: Path) -> str | None:
        stem = path.stem
        if not (stem.startswith(layout.mask_prefix) and stem.endswith(layout.mask_suffix)):
            return None
        stem = stem[len(layout.mask_prefix):]
        return stem[:len(stem) - len(layout.mask_suffix)] if layout.mask_suffix else stem

    images, problems = index_by_key(list_images(image_dir), image_key, "image")
    masks, mask_problems = index_by_key(list_images(mask_dir), mask_key, "mask")
    problems += mask_problems
    items = []
    for key, image in images.items():
        mask = masks.get(key)
        if mask is None:
            problems.append((str(image), f"image has no mask {layout.mask_prefix}{key}"
                                         f"{layout.mask_suffix}.<ext> in {mask_dir}"))
            continue
        items.append(FileItem(relative_id(image, id_root), image, (mask,), meta=dict(meta or {})))
    for key in sorted(set(masks) - set(images)):
        problems.append((str(masks[key]), f"mask has no image {key}.<ext> in {image_dir}"))
    items.sort(key=lambda it: it.id)
    return Discovery(items, problems, layout=layout.describe())


def paired_layout_help(layouts: Sequence[PairedLayout], extra: str = "") -> str:
    text = " or ".join(layout.describe() for layout in layouts)
    return f"{text}{extra}"