import pytest

import delbench
from delbench import hookimpl, discovery
from delbench.errors import RegistryError
from delbench.registry import Registry


class Alpha:
    name = "alpha_selector"
    version = "2"
    description = "first"


class AlphaTwin:
    name = "alpha_selector"


def test_duplicate_name_names_both_sources():
    registry = Registry("selector")
    registry.register(Alpha, source="plugin_one")
    with pytest.raises(RegistryError, match="plugin_two.*already registered by plugin 'plugin_one'"):
        registry.register(AlphaTwin, source="plugin_two")


def test_unknown_name_suggests_close_matches():
    registry = Registry("selector")
    registry.register(Alpha, source="p")
    with pytest.raises(RegistryError, match=r"Did you mean 'alpha_selector'\?.*delbench list selectors"):
        registry.get("alpha_selectr")


def test_class_without_name_is_rejected():
    with pytest.raises(RegistryError, match="no string attribute 'name'"):
        Registry("task").register(type("Nameless", (), {}), source="p")


def test_describe_and_glob():
    registry = Registry("selector")
    registry.register(Alpha, source="p")
    assert registry.describe("alpha_selector") == {"name": "alpha_selector", "version": "2",
                                                    "description": "first", "plugin": "p"}
    assert registry.names("alpha*") == ["alpha_selector"] and registry.names("beta*") == []


class ThrowAwaySelector:
    name = "throwaway_selector"
    version = "0.1"
    description = "registered for one test"

    def select(self, pool, ratio, *, seed, embeddings=None, **params):
        raise NotImplementedError


class ThrowAwayPlugin:
    @hookimpl
    def delbench_register_selectors(self):
        return [ThrowAwaySelector]


def test_throwaway_plugin_is_registered_then_removed(register_plugin):
    register_plugin(ThrowAwayPlugin(), "throwaway")
    assert delbench.get_selector("throwaway_selector") is ThrowAwaySelector
    assert discovery.registries()["selector"].source("throwaway_selector") == "throwaway"


def test_throwaway_plugin_is_gone_after_the_test():
    assert "throwaway_selector" not in delbench.list_selectors()


def test_duplicate_across_plugins_fails_loudly(register_plugin):
    class Clash:
        name = "random"

    class ClashPlugin:
        @hookimpl
        def delbench_register_selectors(self):
            return [Clash]

    with pytest.raises(RegistryError, match="'random' from plugin 'clash'.*delbench_plugins.selectors.baselines"):
        register_plugin(ClashPlugin(), "clash")


def test_every_builtin_kind_is_populated():
    assert "synthetic_endoscopy" in delbench.list_datasets()
    assert {"full", "random", "meddel"} <= set(delbench.list_selectors())
    assert delbench.list_backbones() == ["timm_mae"]
    assert "segmentation" in delbench.list_tasks()


def test_autoload_can_be_disabled(monkeypatch):
    calls = []
    monkeypatch.setattr(discovery, "entry_points", lambda group: calls.append(group) or [])
    monkeypatch.setenv(discovery.AUTOLOAD_ENV, "1")
    discovery.create_plugin_manager()
    assert calls == []
    monkeypatch.delenv(discovery.AUTOLOAD_ENV)
    discovery.create_plugin_manager()
    assert calls == ["delbench"]


def test_block_list_skips_builtins(monkeypatch):
    monkeypatch.setenv(discovery.BLOCK_ENV, "delbench_plugins.datasets.synthetic")
    manager, _ = discovery.create_plugin_manager(autoload=False)
    assert not manager.has_plugin("delbench_plugins.datasets.synthetic")
    assert "synthetic_endoscopy" not in discovery.build_registries(manager)["dataset"]
