"""delbench: a plugin-based benchmark harness for data-effective pre-training.

Importing this package is light (no torch): plugins and the runner import torch only when
they train or embed. Plugins import :mod:`delbench.sdk`; this package's face adds the
registries' timm-style lookups (``get_selector``, ``list_selectors``, …).
"""
from delbench.discovery import (get_backbone, get_dataset, get_selector, get_task, list_backbones, list_datasets,
                                list_selectors, list_tasks)
from delbench.sdk import Backbone, Dataset, DerivedSelection, Selection, Selector, Task, hookimpl

__version__ = "0.1.0"

__all__ = [
    "Backbone", "Dataset", "DerivedSelection", "Selection", "Selector", "Task", "__version__", "get_backbone",
    "get_dataset", "get_selector", "get_task", "hookimpl", "list_backbones", "list_datasets",
    "list_selectors", "list_tasks",
]
