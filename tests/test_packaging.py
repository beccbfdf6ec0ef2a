"""The package ships every sub-package (setup.cfg lists them; a wheel would miss any other)."""
import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _packages_on_disk(folder: str, package: str) -> set[str]:
    return {".".join([package, *init.parent.relative_to(ROOT / folder).parts])
            for init in (ROOT / folder).rglob("__init__.py")}


def test_every_subpackage_is_listed_in_setup_cfg():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    on_disk = _packages_on_disk("plugins", "delbench_plugins") | _packages_on_disk("delbench", "delbench")
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to packages in setup.cfg"
