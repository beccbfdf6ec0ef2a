"""delbench: a plugin-based benchmark harness for data-effective pre-training.

Importing this package is light (no torch): plugins and the runner import torch only when
they train or embed.
"""
from delbench.hookspecs import hookimpl
from delbench.interfaces import Backbone, Dataset, DerivedSelection, Selection, Selector, Task
from delbench.plugins import (
    get_backbone,
    get_dataset,
    get_selector,
    get_task,
    list_backbones,
    list_datasets,
    list_selectors,
    list_tasks,
)

__version__ = "0.1.0"

__all__ = [
    "Backbone", "Dataset", "DerivedSelection", "Selection", "Selector", "Task", "__version__", "get_backbone",
    "get_dataset", "get_selector", "get_task", "hookimpl", "list_backbones", "list_datasets",
    "list_selectors", "list_tasks",
]
