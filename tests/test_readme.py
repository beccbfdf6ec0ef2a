"""The README is part of the product: its commands are what CI runs, its plugin guide is complete."""
import re
from pathlib import Path

from delbench.sdk import hookspecs

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_readme_opens_with_two_setup_commands_and_ci_runs_the_test_one():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    run_command, test_command = [b.strip() for b in _bash_blocks(quick_start)][:2]
    assert run_command.endswith("delbench run benchmarks/smoke.py")
    assert "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text()
    # CI creates its own venv; everything after the venv activation must be the README's text
    assert test_command.split(". .venv/bin/activate && ", 1)[1] in ci
    for command in (run_command, test_command):  # torch pinned before the package
        assert command.index("torch==") < command.index("pip install -e")


def test_every_hook_spec_is_documented_in_the_plugin_guide():
    guide = README.split("## Writing a plugin", 1)[1]
    specs = [name for name in dir(hookspecs) if name.startswith("delbench_")]
    assert len(specs) >= 5
    for name in specs:
        assert f"`{name}(" in guide, f"hook {name} is not documented in the README's plugin guide"
        assert getattr(hookspecs, name).__doc__, f"hook {name} has no docstring"


def test_the_plugin_guides_selector_meets_the_contract():
    from delbench.errors import ConfigError
    from delbench.testing import check_selector, make_contract_pool

    example = next(block for block in re.findall(r"```python\n(.*?)```", README, flags=re.S) if "class EveryKth" in block)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    every_kth = namespace["EveryKth"]
    check_selector(every_kth)
    pool, _ = make_contract_pool()
    assert every_kth().select(pool, 0.1, seed=0, offset=3).indices.size == 12
    try:
        every_kth().select(pool, 0.1, seed=0, offset=-1)
    except ConfigError as exc:
        assert "offset" in str(exc)
    else:
        raise AssertionError("a negative offset was accepted")
