"""Reading an item's mask files as one mask: binary, or a label map of one file per class.

Not a plugin: it registers nothing. Masks are read with :func:`delbench.sdk.read_mask`:
converted to grey, foreground where grey ≥ ``threshold`` (default 128, the middle of 0/255
masks, so JPEG edge noise falls to the nearer side; ``mask_threshold=1`` for masks stored as
0/1), resized with nearest neighbour. An item with several mask files takes their union
(:func:`read_union_mask`), or, where each file is one class (EDD2020), a label map
(:func:`read_label_mask`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from delbench.sdk import DatasetError, read_mask


def read_union_mask(paths: Sequence[Path], size: int | None, threshold: int) -> np.ndarray:
    """uint8 (H, W) mask in {0, 1}: the union of the masks at ``paths``, all of one size."""
    return read_label_mask(((1, path) for path in paths), size, threshold)


def read_label_mask(labelled: Iterable[tuple[int, Path]], size: int | None, threshold: int) -> np.ndarray:
    """uint8 (H, W) label map from ``(label, path)`` pairs, one binary mask file each.

    Background is 0; each file's foreground takes its label, and where two files overlap the
    later pair wins. All files must have one size.
    """
    mask: np.ndarray | None = None
    first: Path | None = None
    for label, path in labelled:
        layer = read_mask(path, size, threshold)
        if mask is None:
            mask, first = np.zeros_like(layer), path
        elif layer.shape != mask.shape:
            raise DatasetError(f"mask {path} is {layer.shape[1]}×{layer.shape[0]} but {first} is "
                               f"{mask.shape[1]}×{mask.shape[0]}")
        mask[layer.astype(bool)] = label
    if mask is None:
        raise DatasetError("read_label_mask needs at least one mask file")
    return mask
