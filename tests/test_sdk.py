"""The SDK is the boundary: built-in plugins import nothing of delbench but ``delbench.sdk``,
and the SDK reaches no layer above it (the protocol, the run, the store, reports, submissions)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_FILES = sorted((ROOT / "plugins").rglob("*.py"))


def _delbench_imports(path: Path) -> list[str]:
    """Every module of delbench (not delbench_plugins) a file imports, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module] if node.module != "delbench" else [f"delbench.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            continue
        found += [m for m in modules if m == "delbench" or m.startswith("delbench.")]
    return found


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_built_in_plugins_import_only_the_sdk(path):
    assert all(module == "delbench.sdk" for module in _delbench_imports(path)), _delbench_imports(path)


def test_the_sdk_imports_no_layer_above_it_and_no_torch():
    code = ("import sys, delbench.sdk; print(sorted({m for m in sys.modules if m.startswith('delbench')})); "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules, torch = done.stdout.splitlines()
    allowed = ("delbench", "delbench.errors", "delbench.registry", "delbench.discovery")
    assert all(m in allowed or m.startswith("delbench.sdk") for m in ast.literal_eval(modules)), modules
    assert torch == "False"


def test_every_name_the_sdk_lists_is_there():
    import delbench.sdk

    assert sorted(set(delbench.sdk.__all__)) == sorted(delbench.sdk.__all__)
    for name in delbench.sdk.__all__:
        assert getattr(delbench.sdk, name) is not None, name


def test_the_layout_before_the_sdk_still_imports_with_a_warning():
    with pytest.warns(DeprecationWarning, match="delbench.sdk"):
        import importlib

        import delbench.interfaces
        importlib.reload(delbench.interfaces)
    from delbench.sdk import Selector

    assert delbench.interfaces.Selector is Selector
