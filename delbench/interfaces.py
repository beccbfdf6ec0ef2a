"""Deprecated alias: the plugin contracts live in :mod:`delbench.sdk`; import them from there.

Kept so that plugins written against the earlier layout still import; new code writes
``from delbench.sdk import Selector``. To be removed in a later release.
"""
import warnings

from delbench.sdk import Backbone, Dataset, DerivedSelection, Plugin, Selection, Selector, Task

__all__ = ["Backbone", "Dataset", "DerivedSelection", "Plugin", "Selection", "Selector", "Task"]

warnings.warn("delbench.interfaces is deprecated; import the plugin contracts from delbench.sdk", DeprecationWarning,
              stacklevel=2)
