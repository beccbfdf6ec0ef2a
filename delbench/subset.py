"""Deprecated alias: the subset helpers a plugin uses live in :mod:`delbench.sdk`; import them
from there.

Kept so that plugins written against the earlier layout still import; new code writes
``from delbench.sdk import subset_size``. To be removed in a later release.
"""
import warnings

from delbench.sdk import (DerivedImage, DerivedSelection, DerivedSource, Selection, check_embeddings,
                          check_positive_int, ids_sha256, largest_remainder, lowest_first, pixel_sha256, read_png,
                          selected_ids_sha256, subset_sha256, subset_size, write_derived_image)

__all__ = [
    "DerivedImage", "DerivedSelection", "DerivedSource", "Selection", "check_embeddings", "check_positive_int",
    "ids_sha256", "largest_remainder", "lowest_first", "pixel_sha256", "read_png", "selected_ids_sha256",
    "subset_sha256", "subset_size", "write_derived_image",
]

warnings.warn("delbench.subset is deprecated; import the subset helpers from delbench.sdk", DeprecationWarning,
              stacklevel=2)
