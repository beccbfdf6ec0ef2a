"""Reading an item's mask files as one binary mask.

Not a plugin: it registers nothing. Masks are read with :func:`delbench.sdk.read_mask`:
converted to grey, foreground where grey ≥ ``threshold`` (default 128, the middle of 0/255
masks, so JPEG edge noise falls to the nearer side; ``mask_threshold=1`` for masks stored as
0/1), resized with nearest neighbour. An item with several mask files (none of the built-in
datasets has one) takes their union.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from delbench.sdk import DatasetError, read_mask


def read_union_mask(paths: Sequence[Path], size: int | None, threshold: int) -> np.ndarray:
    """uint8 (H, W) mask in {0, 1}: the union of the masks at ``paths``, all of one size."""
    mask = read_mask(paths[0], size, threshold)
    for path in paths[1:]:
        other = read_mask(path, size, threshold)
        if other.shape != mask.shape:
            raise DatasetError(f"mask {path} is {other.shape[1]}×{other.shape[0]} but {paths[0]} is "
                               f"{mask.shape[1]}×{mask.shape[0]}")
        mask |= other
    return mask
