"""The README is the front door and docs/ the manual: its commands are what CI runs, it stays
short, every page of the manual is reachable from it, and the plugin guide is complete."""
import re
from pathlib import Path

import pytest

from delbench.sdk import hookspecs

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
PLUGIN_GUIDE = (DOCS / "plugins.md").read_text()
PAGES = sorted(DOCS.glob("*.md"))
#: the README's length limit (the manual lives in docs/)
README_MAX_LINES = 250


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def _python_block(text: str, marker: str) -> str:
    return next(block for block in re.findall(r"```python\n(.*?)```", text, flags=re.S) if marker in block)


def _links(text: str) -> list[str]:
    """Relative Markdown link targets, outside code blocks."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", prose) if not re.match(r"^[a-z]+:", t)]


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#{1,6} (.+)$", prose, flags=re.M)}


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


def test_readme_is_short_and_reaches_every_page_of_the_manual():
    assert len(README.splitlines()) <= README_MAX_LINES
    linked = {(ROOT / link.split("#")[0]).resolve() for link in _links(README)}
    assert {page.resolve() for page in PAGES} <= linked, "a docs/ page is not linked from the README"


@pytest.mark.parametrize("path", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_every_link_of_the_readme_and_the_manual_resolves(path):
    text = path.read_text()
    for link in _links(text):
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        assert file.is_file(), f"{path.name}: link {link!r} names no file"
        if anchor and file.suffix == ".md":
            assert anchor in _anchors(file.read_text()), f"{path.name}: link {link!r} names no heading"


def test_every_hook_spec_is_documented_in_the_plugin_guide():
    specs = [name for name in dir(hookspecs) if name.startswith("delbench_")]
    assert len(specs) >= 5
    for name in specs:
        assert f"`{name}(" in PLUGIN_GUIDE, f"hook {name} is not documented in docs/plugins.md"
        assert getattr(hookspecs, name).__doc__, f"hook {name} has no docstring"


def test_the_plugin_guide_imports_only_the_sdk():
    imports = re.findall(r"^\s*(?:from|import) (delbench[\w.]*)", "\n".join(
        re.findall(r"```python\n(.*?)```", PLUGIN_GUIDE + README, flags=re.S)), flags=re.M)
    assert imports and set(imports) <= {"delbench.sdk", "delbench.testing"}, imports


@pytest.mark.parametrize("text, marker", [(README, "class EveryKth"), (PLUGIN_GUIDE, "class EveryKth"),
                                          (PLUGIN_GUIDE, "class LastItems")], ids=["readme", "guide", "guide-select"])
def test_the_documented_selectors_meet_the_contract(text, marker):
    from delbench.errors import ConfigError
    from delbench.sdk.params import check_plugin_params
    from delbench.testing import check_selector, make_contract_pool

    namespace: dict = {}
    exec(compile(_python_block(text, marker), "docs", "exec"), namespace)
    selector = namespace[marker.split()[1]]
    check_selector(selector)
    pool, _ = make_contract_pool()
    key = "offset" if "EveryKth" in marker else "stride"
    assert selector().select(pool, 0.1, seed=0, **{key: 3}).indices.size == 12
    with pytest.raises(ConfigError, match=key):  # as a protocol or `delbench select --set` is checked
        check_plugin_params("selector", selector, {key: -1}, "selectors[0]")
    if marker == "class EveryKth":  # the template checks its parameters when called directly too
        with pytest.raises(ConfigError, match=key):
            selector().select(pool, 0.1, seed=0, **{key: -1})


def test_where_things_live_names_every_module_of_the_core():
    block = README.split("## Where things live", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    for path in sorted((ROOT / "delbench").rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py") or "testing" in path.parts:
            continue
        assert re.search(rf"\b{re.escape(path.stem)}(\.py)?\b", block), f"{path.relative_to(ROOT)} is not named"
    for folder in re.findall(r"^  (\w+)/", block, flags=re.M):
        assert (ROOT / "delbench" / folder).is_dir(), f"delbench/{folder}/ is named but absent"
