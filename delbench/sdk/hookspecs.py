"""The pluggy hook specifications every delbench plugin implements a subset of.

A plugin is a plain module (or object) with functions decorated by ``delbench.hookimpl``;
nothing happens when it is imported. The harness calls each ``delbench_register_*`` hook once,
when the registries are first needed, and ``delbench_cell_finished`` after every cell.
"""
from __future__ import annotations

from typing import Any

import pluggy

PROJECT_NAME = "delbench"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def delbench_register_datasets() -> list[type]:
    """Return the dataset classes this plugin provides.

    Called once when the dataset registry is built. Each class implements
    :class:`delbench.sdk.Dataset`; its ``name`` attribute is the registry key.
    """


@hookspec
def delbench_register_selectors() -> list[type]:
    """Return the selector classes this plugin provides.

    Called once when the selector registry is built. Each class has ``name``, ``version``,
    ``description`` and ``select(pool, ratio, *, seed, embeddings=None, **params)`` as in
    :class:`delbench.sdk.Selector`.
    """


@hookspec
def delbench_register_backbones() -> list[type]:
    """Return the backbone classes this plugin provides.

    Called once when the backbone registry is built. Each class implements
    :class:`delbench.sdk.Backbone`.
    """


@hookspec
def delbench_register_tasks() -> list[type]:
    """Return the downstream task classes this plugin provides.

    Called once when the task registry is built. Each class implements
    :class:`delbench.sdk.Task`.
    """


@hookspec
def delbench_cell_finished(row: dict[str, Any]) -> None:
    """Observe one finished cell of a run.

    Called by the runner after the cell's result row has been written, failed cells included
    (``status == "failed"``), with the row's JSON record (``delbench.store.ResultRow``
    ``.to_json()``: the format in ``docs/results.md``). Return values are ignored. Each
    implementation is called on its own: one that raises is logged, and the run and every
    other observer go on.
    """
