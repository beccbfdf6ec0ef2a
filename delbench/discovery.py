"""Plugin discovery and the process-wide registries: the built-in plugins, then the ``delbench``
entry-point group, called through the hook specifications (:mod:`delbench.sdk.hookspecs`) to
fill one :class:`~delbench.registry.Registry` per kind; looked up by name with :func:`get`,
built with :func:`create`, listed with :func:`names` (and the timm-style ``get_selector``,
``list_selectors``, … that ``delbench`` re-exports).

Order is deterministic (built-ins in the order below, then entry points sorted by name). An
entry point that fails to import is recorded in :attr:`Registries.failures` and logged; the
others still load. ``DELBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` turns entry points off and
``DELBENCH_BLOCK_PLUGINS=a,b`` skips the named ones (built-ins included).
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, Iterable, Iterator, Mapping

import pluggy

from delbench.registry import Registry
from delbench.sdk import hookspecs
from delbench.sdk.params import check_plugin_params

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "delbench"
AUTOLOAD_ENV = "DELBENCH_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "DELBENCH_BLOCK_PLUGINS"
KINDS = ("dataset", "selector", "backbone", "task")

BUILTIN_PLUGINS = (
    "delbench_plugins.datasets.synthetic",
    "delbench_plugins.backbones.timm_mae",
    "delbench_plugins.tasks.segmentation",
    "delbench_plugins.selectors.baselines",
    "delbench_plugins.selectors.meddel",
    "delbench_plugins.selectors.semdedup",
    "delbench_plugins.selectors.coreset",
    "delbench_plugins.selectors.difficulty",
    "delbench_plugins.selectors.image_filters",
    "delbench_plugins.selectors.optidel",
    "delbench_plugins.datasets.endoscopy_segmentation",
    "delbench_plugins.datasets.endoscopy_pools",
    "delbench_plugins.datasets.image_folder",
    "delbench_plugins.tasks.classification",
)


@dataclass(frozen=True)
class PluginFailure:
    """An entry point that could not be loaded, kept so `delbench list` can show it."""

    name: str
    target: str
    error: str


@dataclass
class Registries:
    """One registry per plugin kind plus the plugins that failed to load."""

    manager: pluggy.PluginManager
    by_kind: dict[str, Registry]
    failures: list[PluginFailure] = field(default_factory=list)

    def __getitem__(self, kind: str) -> Registry:
        return self.by_kind[kind]


def _blocked() -> set[str]:
    return {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}


def _autoload_enabled() -> bool:
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("1", "true", "yes")


def create_plugin_manager(*, autoload: bool | None = None,
                          extra_plugins: Iterable[tuple[str, Any]] = ()) -> tuple[pluggy.PluginManager, list[PluginFailure]]:
    """Build a PluginManager with the built-in plugins and, unless disabled, entry points."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    blocked = _blocked()
    failures: list[PluginFailure] = []
    for module_name in BUILTIN_PLUGINS:
        if module_name not in blocked:
            manager.register(importlib.import_module(module_name), name=module_name)
    if autoload if autoload is not None else _autoload_enabled():
        for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if entry.name in blocked or manager.has_plugin(entry.name):
                continue
            try:
                plugin = entry.load()
                manager.register(plugin, name=entry.name)
            except Exception as exc:  # a broken third-party plugin must not take down the rest
                failures.append(PluginFailure(entry.name, entry.value, f"{type(exc).__name__}: {exc}"))
                logger.warning("plugin %r (%s) failed to load: %s: %s",
                               entry.name, entry.value, type(exc).__name__, exc)
    for name, plugin in extra_plugins:
        manager.register(plugin, name=name)
    return manager, failures


def _fill(registry: Registry, manager: pluggy.PluginManager, hook_name: str) -> None:
    # Call each implementation on its own (in registration order) so every class is
    # registered with the plugin it came from: duplicate-name errors can then name both.
    for impl in getattr(manager.hook, hook_name).get_hookimpls():
        for cls in impl.function() or ():
            registry.register(cls, source=impl.plugin_name)


def build_registries(manager: pluggy.PluginManager,
                     failures: list[PluginFailure] | None = None) -> Registries:
    by_kind = {}
    for kind in KINDS:
        registry = Registry(kind)
        _fill(registry, manager, f"delbench_register_{kind}s")
        by_kind[kind] = registry
    return Registries(manager, by_kind, list(failures or []))


_registries: Registries | None = None


def registries() -> Registries:
    """The process-wide registries, built on first use."""
    global _registries
    if _registries is None:
        _registries = build_registries(*create_plugin_manager())
    return _registries


def reset_registries(value: Registries | None = None) -> Registries | None:
    """Replace the process-wide registries (tests); returns the previous value."""
    global _registries
    previous, _registries = _registries, value
    return previous


def register_plugin(plugin: ModuleType | object, name: str) -> None:
    """Register a plugin object at run time (notebooks, tests) and rebuild the registries.

    If its classes clash with registered names, it is unregistered again and the error raised.
    """
    current = registries()
    current.manager.register(plugin, name=name)
    try:
        rebuilt = build_registries(current.manager, current.failures)
    except Exception:
        current.manager.unregister(name=name)
        raise
    reset_registries(rebuilt)


def unregister_plugin(name: str) -> None:
    current = registries()
    current.manager.unregister(name=name)
    reset_registries(build_registries(current.manager, current.failures))


@contextlib.contextmanager
def registered_plugin(plugin: ModuleType | object, name: str) -> Iterator[None]:
    """Register ``plugin`` for the duration of a ``with`` block (tests, notebooks)."""
    register_plugin(plugin, name)
    try:
        yield
    finally:
        unregister_plugin(name)


def get(kind: str, name: str) -> type:
    return registries()[kind].get(name)


def create(kind: str, name: str, params: Mapping[str, Any] | None = None, *, where: str | None = None,
           **harness: Any) -> Any:
    """A plugin built by name (timm's ``create_model``, for every kind): ``params`` and what
    the harness adds (a dataset's ``split``) are checked against its signature and its
    ``check_params`` first (:mod:`delbench.sdk.params`); ``where`` names it in errors."""
    cls = get(kind, name)
    params = dict(params or {})
    check_plugin_params(kind, cls, params, where or f"{kind} ({name})", harness=harness)
    return cls(**params, **harness)


def names(kind: str, pattern: str | None = None) -> list[str]:
    return registries()[kind].names(pattern)


# timm-style entry points, one per kind.
def get_dataset(name: str) -> type: return get("dataset", name)
def get_selector(name: str) -> type: return get("selector", name)
def get_backbone(name: str) -> type: return get("backbone", name)
def get_task(name: str) -> type: return get("task", name)
def list_datasets(pattern: str | None = None) -> list[str]: return names("dataset", pattern)
def list_selectors(pattern: str | None = None) -> list[str]: return names("selector", pattern)
def list_backbones(pattern: str | None = None) -> list[str]: return names("backbone", pattern)
def list_tasks(pattern: str | None = None) -> list[str]: return names("task", pattern)
