"""Deprecated alias: the parameter checks live in :mod:`delbench.sdk`; import them from there.

Kept so that plugins written against the earlier layout still import; new code writes
``from delbench.sdk import check_int``. To be removed in a later release.
"""
import warnings

from delbench.sdk import (check_bool, check_choice, check_int, check_known_keys, check_number, check_path,
                          check_split, check_subset, is_int, is_number)

__all__ = [
    "check_bool", "check_choice", "check_int", "check_known_keys", "check_number", "check_path", "check_split",
    "check_subset", "is_int", "is_number",
]

warnings.warn("delbench.params is deprecated; import the parameter checks from delbench.sdk", DeprecationWarning,
              stacklevel=2)
