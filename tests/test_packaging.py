"""The package ships every plugin sub-package (setup.cfg lists them; a wheel would miss any other)."""
import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_plugin_subpackage_is_listed_in_setup_cfg():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    on_disk = {"delbench_plugins" + "".join(f".{part}" for part in init.parent.relative_to(ROOT / "plugins").parts)
               for init in (ROOT / "plugins").rglob("__init__.py")}
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to packages in setup.cfg"
    assert "delbench" in listed
