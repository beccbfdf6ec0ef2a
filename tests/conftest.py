"""Shared fixtures: a throw-away plugin registered for one test, tiny pools, a finished tiny run."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

os.environ.setdefault("DELBENCH_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".cache", "test"))


@pytest.fixture
def register_plugin():
    """Register plugin objects for one test; they are removed (and registries rebuilt) after."""
    from delbench.discovery import registered_plugin

    with contextlib.ExitStack() as stack:
        yield lambda plugin, name: stack.enter_context(registered_plugin(plugin, name))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests use tiny models, where a second thread costs more than it gives (and on a busy
    2-core CI machine, much more)."""
    try:
        import torch
    except ImportError:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished run of tests/configs/tiny.py, made once per test module that asks for it."""
    from delbench.cli import main

    work = tmp_path_factory.mktemp("tiny") / "run"
    assert main(["run", str(Path(__file__).parent / "configs" / "tiny.py"), "--work-dir", str(work),
                 "--no-progress", "--quiet"]) == 0
    return work
