"""Resumable pre-training state: what a backbone needs to continue a pre-training bitwise.

A state is two files in the backbone's ``resume_dir`` (the runner passes one per pre-training,
under the cell's cache folder):

``state-step<k>.safetensors``
    every tensor: the model (``model.*``), the optimizer's per-parameter state
    (``optimizer.<index>.<name>``, e.g. AdamW's moments and step counts), and whatever the
    backbone adds (RNG states of torch generators as uint8 tensors, the data order, the
    loss history);
``state.json``
    the step ``k``, the name of that tensors file, a ``fingerprint`` of the run it belongs
    to (steps, batch size, seed, indices digest, optimizer settings), the optimizer's
    hyper-parameters and non-tensor values, and JSON-able extras (numpy bit-generator
    states, the cursor into the data order).

Both are written atomically, the tensors first: ``state.json`` only ever names a complete
tensors file, so a kill at any moment leaves the previous state usable. Older tensors files
are removed once the new ``state.json`` is in place (and on the next load, if a kill came
between). No pickle anywhere: safetensors and JSON only. torch is imported inside the
functions so ``import delbench`` stays light.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from delbench.sdk.files import atomic_path, atomic_write_json

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
_TENSORS_FILE = re.compile(r"^state-step(\d+)\.safetensors$")
FORMAT = 1


def indices_digest(indices: np.ndarray) -> str:
    """sha256 of the indices as little-endian int64: which items a state was trained on."""
    return hashlib.sha256(np.ascontiguousarray(indices, dtype="<i8").tobytes()).hexdigest()


@dataclass
class TrainingState:
    """A loaded (or to-be-saved) state: ``step`` optimizer steps done, ``tensors`` by name,
    ``extra`` JSON-able values, and the optimizer's ``param_groups`` and non-tensor values."""

    step: int
    tensors: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)

    def prefixed(self, prefix: str) -> dict[str, Any]:
        """The tensors named ``<prefix>.<name>``, by ``name``."""
        return {name[len(prefix) + 1:]: value for name, value in self.tensors.items()
                if name.startswith(prefix + ".")}


def optimizer_tensors(optimizer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A torch optimizer's ``state_dict`` split into tensors (``optimizer.<index>.<name>``)
    and a JSON-able rest (``param_groups`` and non-tensor per-parameter values)."""
    import torch

    state = optimizer.state_dict()
    tensors: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for index, entry in state["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                values[f"{index}.{name}"] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in group.items()} for group in state["param_groups"]]
    return tensors, {"param_groups": groups, "values": values}


def load_optimizer(optimizer: Any, state: TrainingState) -> None:
    """Restore what :func:`optimizer_tensors` saved into ``optimizer`` (built the same way)."""
    per_param: dict[int, dict[str, Any]] = {}
    for name, value in state.prefixed("optimizer").items():
        index, key = name.split(".", 1)
        per_param.setdefault(int(index), {})[key] = value
    for name, value in state.optimizer.get("values", {}).items():
        index, key = name.split(".", 1)
        per_param.setdefault(int(index), {})[key] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in group.items()}
              for group in state.optimizer["param_groups"]]
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})


def save_state(directory: str | Path, state: TrainingState, fingerprint: dict[str, Any]) -> None:
    """Write ``state`` into ``directory`` atomically (module docstring), then drop older ones."""
    from safetensors.torch import save_file

    directory = Path(directory)
    name = f"state-step{state.step}.safetensors"
    with atomic_path(directory / name) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.tensors.items()}, str(tmp))
    atomic_write_json(directory / STATE_FILE, {"format": FORMAT, "step": state.step, "tensors": name,
                                               "fingerprint": fingerprint, "extra": state.extra,
                                               "optimizer": state.optimizer})
    _remove_unreferenced(directory, name)


def _remove_unreferenced(directory: Path, keep: str) -> None:
    for path in directory.glob("state-step*.safetensors"):
        if path.name != keep and _TENSORS_FILE.match(path.name):
            path.unlink(missing_ok=True)


def load_state(directory: str | Path, fingerprint: dict[str, Any]) -> TrainingState | None:
    """The state saved in ``directory`` for the run ``fingerprint`` describes, or None (no
    state yet). A state of another run, or one that cannot be read, is logged and ignored:
    pre-training then starts from step 0 and overwrites it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    path = directory / STATE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        tensors_path = directory / record["tensors"]
        if record.get("format") != FORMAT or record.get("fingerprint") != json.loads(json.dumps(fingerprint)):
            logger.warning("%s belongs to another pre-training (its settings differ); starting from step 0", path)
            return None
        tensors = load_file(str(tensors_path))
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        logger.warning("%s cannot be resumed from (%s: %s); starting from step 0", path, type(exc).__name__, exc)
        return None
    _remove_unreferenced(directory, tensors_path.name)  # a kill between the two writes of save_state
    return TrainingState(int(record["step"]), tensors, record.get("extra", {}), record.get("optimizer", {}))
