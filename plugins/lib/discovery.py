"""Finding a folder dataset's files: its root, the image files under it, and their items.

Not a plugin: it registers nothing. The folder datasets (:mod:`delbench_plugins.lib.folder_dataset`)
describe what they found as a :class:`Discovery`: items sorted by id plus the problems met
while listing (each a ``(path, message)`` pair), so ``delbench data check`` can list them all.

Root
    ``root=`` (the CLI's ``--root``, a config key), else the environment variable
    ``DELBENCH_<NAME>_ROOT`` (``kvasir_seg`` → ``DELBENCH_KVASIR_SEG_ROOT``), else a
    :class:`~delbench.errors.DatasetError` naming both and the expected layout.
Ids
    The image path relative to the root, with ``/`` separators: stable across machines.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from delbench.sdk import DatasetError, IMAGE_SUFFIXES

Problem = tuple[str, str]  # (path, message)

# --- roots and caches ------------------------------------------------------------------------
def root_env_var(name: str) -> str:
    """``kvasir_seg`` → ``DELBENCH_KVASIR_SEG_ROOT``."""
    return f"DELBENCH_{re.sub(r'[^0-9A-Za-z]+', '_', name).upper()}_ROOT"


def resolve_root(name: str, root: str | os.PathLike | None, layout: str) -> Path:
    """The data root of dataset ``name``: ``root``, else ``$DELBENCH_<NAME>_ROOT``, else an error."""
    env = root_env_var(name)
    source = "root"
    value: Any = root
    if value is None or str(value) == "":
        value, source = os.environ.get(env) or None, env
    if value is None:
        raise DatasetError(f"{name}: no data root given: set {env}, or give the root (config: "
                           f"params.root; 'delbench select'/'data check': --root PATH); expected layout: {layout}")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{name}: data root {path} (from {source}) is not a directory; "
                           f"expected layout: {layout}")
    return path


# --- listing files --------------------------------------------------------------------------
def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (suffixes of :data:`delbench.sdk.IMAGE_SUFFIXES`, any case),
    sorted by path; hidden files and other suffixes (``.txt``, ``.json``) are ignored."""
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames if is_image_file(Path(f)))
    return sorted(found)


def relative_id(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


# --- items and discovery -------------------------------------------------------------------
@dataclass(frozen=True)
class FileItem:
    """One image file (and its mask files) with its stable id, label and metadata."""

    id: str
    image: Path
    masks: tuple[Path, ...] = ()
    label: int | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Discovery:
    """What listing a dataset's root found: items sorted by id, and problems with paths."""

    items: list[FileItem]
    problems: list[Problem] = field(default_factory=list)
    class_names: tuple[str, ...] = ()
    #: human-readable description of the layout actually used (e.g. which CVC variant)
    layout: str = ""


def class_folder_items(base: Path) -> tuple[list[tuple[str, Path]], list[Problem]]:
    """(class name, image) for every image below ``base``; the class is the image's parent folder.

    Images directly in ``base`` are problems (no class). Two class folders with the same name
    in different places are a problem too (their images would silently merge).
    """
    found, problems = [], []
    owners: dict[str, Path] = {}
    for path in list_images(base, recursive=True):
        parent = path.parent
        if parent == base:
            problems.append((str(path), f"image is not inside a class folder of {base}; not used"))
            continue
        cls = parent.name
        if owners.setdefault(cls, parent) != parent:
            problems.append((str(path), f"class folder name {cls!r} appears twice ({owners[cls]} and "
                                        f"{parent}); rename one"))
            continue
        found.append((cls, path))
    return found, problems


def labelled_items(found: Sequence[tuple[str, Path]], *, id_root: Path, id_prefix: str = "",
                   extra_meta=None) -> tuple[list[FileItem], tuple[str, ...]]:
    """Turn (class name, path) pairs into items; labels index the sorted class names."""
    class_names = tuple(sorted({cls for cls, _ in found}))
    index = {cls: i for i, cls in enumerate(class_names)}
    items = []
    for cls, path in found:
        meta = {"class_name": cls}
        if extra_meta is not None:
            meta.update(extra_meta(path))
        items.append(FileItem(id_prefix + relative_id(path, id_root), path, label=index[cls], meta=meta))
    items.sort(key=lambda it: it.id)
    return items, class_names
