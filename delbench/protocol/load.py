"""Protocol files: mmengine ``Config`` files (``_base_`` inheritance, ``--cfg-options``
overrides) read and validated into a :class:`~delbench.protocol.specs.Protocol`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from delbench.errors import ConfigError, one_line
from delbench.protocol.parse import protocol_from_dict
from delbench.protocol.specs import Protocol


def load_config(path: str | Path, cfg_options: Mapping[str, Any] | None = None):
    """Read a protocol file with mmengine (``_base_`` inheritance) and apply overrides.

    A config file is Python that this executes, with the user's rights: load only configs
    you trust (submissions, which are loaded elsewhere, are data only).
    """
    from mmengine.config import Config

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        cfg = Config.fromfile(str(path))
    except SystemExit as exc:  # a config is Python run in this process; it must not end it unsaid
        raise ConfigError(f"config {path} called SystemExit({exc.code!r}) while it was read; a config "
                          f"must only assign values") from None
    except Exception as exc:  # syntax errors, missing _base_ files: one line naming the file
        raise ConfigError(f"cannot read config {path}: {type(exc).__name__}: {one_line(str(exc))}") from None
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    return cfg


def load_protocol(path: str | Path, cfg_options: Mapping[str, Any] | None = None) -> tuple[Protocol, Any]:
    cfg = load_config(path, cfg_options)
    return protocol_from_dict(cfg.to_dict()), cfg
