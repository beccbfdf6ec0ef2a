"""Protocol configuration: mmengine ``Config`` files validated into small typed objects.

A protocol file (``benchmarks/*.py``) is plain data inheriting from ``benchmarks/_base_/``.
``load_protocol`` reads it, applies ``--cfg-options`` overrides, checks every key once, and
returns a frozen :class:`Protocol`. Everything that defines a result is inside the protocol,
so its canonical JSON hash (``config_sha256``) identifies comparable results.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from delbench.errors import ConfigError

BUDGET_RULES = ("compute_matched", "epoch_matched")
TOP_LEVEL_KEYS = {"protocol", "pool", "selectors", "ratios", "seeds", "backbone", "pretrain",
                  "embedding", "tasks", "normdel", "runtime", "generalization", "references"}


def _freeze(value: Any) -> Any:
    """Plain JSON-able copy (mmengine ConfigDict → dict, tuples → lists)."""
    if isinstance(value, Mapping):
        return {str(k): _freeze(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_freeze(v) for v in value]
    return value


def _section(raw: Mapping[str, Any], key: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"'{key}' must be a dict, got {type(value).__name__}")
    value = _freeze(value)
    unknown = set(value) - allowed
    if unknown:
        raise ConfigError(f"unknown key(s) in '{key}': {sorted(unknown)}; allowed: {sorted(allowed)}")
    missing = required - set(value)
    if missing:
        raise ConfigError(f"'{key}' needs key(s) {sorted(missing)}")
    return value


@dataclass(frozen=True)
class PluginSpec:
    """A plugin by registry name plus constructor/select parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SelectorSpec(PluginSpec):
    #: ratios for this selector; None = the protocol's ratios
    ratios: tuple[float, ...] | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    dataset: PluginSpec
    params: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    test_split: str = "test"

    @property
    def label(self) -> str:
        return f"{self.dataset.name}/{self.name}"


@dataclass(frozen=True)
class PretrainSpec:
    """How many optimizer steps a cell gets.

    ``compute_matched``: every ratio gets the steps of ``reference_epochs`` over the whole pool
    (so epochs ∝ 1/ratio: the published protocol). ``epoch_matched``: every ratio trains
    ``reference_epochs`` epochs over its own subset. ``checkpoint_epochs`` lists epochs (of the
    cell's own subset) at which the encoder is also evaluated, without re-training.
    """

    budget: str
    reference_epochs: float
    batch_size: int
    optimizer: dict[str, Any]
    checkpoint_epochs: tuple[float, ...] = ()

    def steps(self, n_pool: int, n_selected: int) -> int:
        images = self.reference_epochs * (n_pool if self.budget == "compute_matched" else n_selected)
        return max(1, math.ceil(images / self.batch_size))

    def steps_at_epoch(self, epoch: float, n_selected: int) -> int:
        """The optimizer step at which ``epoch`` epochs of the cell's own subset are done."""
        return max(1, math.ceil(epoch * n_selected / self.batch_size))

    def epochs(self, n_pool: int, n_selected: int) -> float:
        return self.steps(n_pool, n_selected) * self.batch_size / max(1, n_selected)


@dataclass(frozen=True)
class EmbeddingSpec:
    """Features for selectors: from ``checkpoint`` (a file) or a short MAE warm-up on the pool."""

    checkpoint: str | None = None
    warmup_steps: int = 0
    batch_size: int = 256
    dtype: str = "float16"


@dataclass(frozen=True)
class GeneralizationSpec:
    """Cross-dataset evaluation: fine-tune on dataset i, test on every other dataset j.

    Applies to the task cells whose training dataset is in ``datasets`` and whose selector
    and ratio are listed (empty = all).
    """

    datasets: tuple[str, ...] = ()
    selectors: tuple[str, ...] = ()
    ratios: tuple[float, ...] = ()

    def applies(self, selector: str, ratio: float, dataset: str) -> bool:
        return (dataset in self.datasets and (not self.selectors or selector in self.selectors)
                and (not self.ratios or any(abs(ratio - r) < 1e-12 for r in self.ratios)))


@dataclass(frozen=True)
class ReferenceSpec:
    """An encoder evaluated as is, without pool pre-training: a checkpoint file (e.g. ImageNet
    weights), or ``None`` for the randomly initialised encoder (what pre-training must beat)."""

    label: str
    checkpoint: str | None


@dataclass(frozen=True)
class Protocol:
    name: str
    version: str
    description: str
    pool: PluginSpec
    selectors: tuple[SelectorSpec, ...]
    ratios: tuple[float, ...]
    seeds: tuple[int, ...]
    backbone: PluginSpec
    pretrain: PretrainSpec
    embedding: EmbeddingSpec
    tasks: tuple[TaskSpec, ...]
    alpha: float
    runtime: dict[str, Any]
    generalization: GeneralizationSpec = GeneralizationSpec()
    references: tuple[ReferenceSpec, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return _freeze(asdict(self))

    @property
    def sha256(self) -> str:
        return protocol_sha256(self.to_dict())

    def selector_ratios(self, selector: SelectorSpec) -> tuple[float, ...]:
        return selector.ratios if selector.ratios is not None else self.ratios


def protocol_sha256(protocol: Mapping[str, Any]) -> str:
    """Hash of everything that defines results: ``Protocol.to_dict()`` without ``runtime``."""
    data = {k: v for k, v in _freeze(protocol).items() if k != "runtime"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _plugin(value: Any, where: str) -> PluginSpec:
    if isinstance(value, str):
        return PluginSpec(value)
    if not isinstance(value, Mapping) or "name" not in value:
        raise ConfigError(f"{where} must be a name or dict(name=..., params=dict(...)), got {value!r}")
    unknown = set(value) - {"name", "params"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} (put settings under 'params')")
    return PluginSpec(str(value["name"]), _freeze(value.get("params", {}) or {}))


def _ratios(values: Any, where: str) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"{where} must be a non-empty list of ratios in (0, 1]")
    ratios = tuple(float(v) for v in values)
    bad = [r for r in ratios if not 0.0 < r <= 1.0]
    if bad:
        raise ConfigError(f"{where}: ratios must be in (0, 1], got {bad}")
    if len(set(ratios)) != len(ratios):
        raise ConfigError(f"{where}: duplicate ratios {list(ratios)}")
    return ratios


def protocol_from_dict(raw: Mapping[str, Any]) -> Protocol:
    """Validate a plain dict (a loaded config) into a :class:`Protocol`."""
    unknown = {k for k in raw if not k.startswith("_")} - TOP_LEVEL_KEYS
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(TOP_LEVEL_KEYS)}")
    meta = _section(raw, "protocol", {"name", "version", "description"}, {"name", "version"})
    pool = _plugin(raw.get("pool"), "pool")
    selectors = []
    for i, entry in enumerate(raw.get("selectors") or []):
        entry = {"name": entry} if isinstance(entry, str) else dict(_freeze(entry))
        ratios = entry.pop("ratios", None)
        spec = _plugin(entry, f"selectors[{i}]")
        selectors.append(SelectorSpec(spec.name, spec.params,
                                      None if ratios is None else _ratios(ratios, f"selectors[{i}].ratios")))
    if not selectors:
        raise ConfigError("'selectors' must list at least one selector")
    seeds = tuple(int(s) for s in (raw.get("seeds") or ()))
    if not seeds:
        raise ConfigError("'seeds' must list at least one integer seed")
    pre = _section(raw, "pretrain", {"budget", "reference_epochs", "batch_size", "optimizer", "checkpoint_epochs"},
                   {"budget", "reference_epochs", "batch_size"})
    if pre["budget"] not in BUDGET_RULES:
        raise ConfigError(f"pretrain.budget must be one of {BUDGET_RULES}, got {pre['budget']!r}")
    if float(pre["reference_epochs"]) <= 0 or int(pre["batch_size"]) < 1:
        raise ConfigError("pretrain.reference_epochs must be > 0 and pretrain.batch_size ≥ 1")
    pretrain = PretrainSpec(pre["budget"], float(pre["reference_epochs"]), int(pre["batch_size"]),
                            dict(pre.get("optimizer", {})),
                            tuple(float(e) for e in pre.get("checkpoint_epochs", ())))
    emb = _section(raw, "embedding", {"checkpoint", "warmup_steps", "batch_size", "dtype"})
    if emb.get("dtype", "float16") not in ("float16", "float32"):
        raise ConfigError("embedding.dtype must be 'float16' or 'float32'")
    embedding = EmbeddingSpec(emb.get("checkpoint"), int(emb.get("warmup_steps", 0)),
                              int(emb.get("batch_size", 256)), emb.get("dtype", "float16"))
    tasks = []
    for i, entry in enumerate(raw.get("tasks") or []):
        entry = _freeze(entry)
        allowed = {"name", "dataset", "params", "train_split", "test_split"}
        if not isinstance(entry, Mapping) or "name" not in entry or "dataset" not in entry:
            raise ConfigError(f"tasks[{i}] must be dict(name=..., dataset=dict(name=..., params=...), params=...)")
        if set(entry) - allowed:
            raise ConfigError(f"tasks[{i}]: unknown key(s) {sorted(set(entry) - allowed)}")
        tasks.append(TaskSpec(entry["name"], _plugin(entry["dataset"], f"tasks[{i}].dataset"),
                              dict(entry.get("params", {})), entry.get("train_split", "train"),
                              entry.get("test_split", "test")))
    if not tasks:
        raise ConfigError("'tasks' must list at least one downstream task")
    normdel = _section(raw, "normdel", {"alpha"})
    alpha = float(normdel.get("alpha", 1.0))
    if alpha <= 0:
        raise ConfigError(f"normdel.alpha must be > 0, got {alpha}")
    gen = _section(raw, "generalization", {"datasets", "selectors", "ratios"})
    generalization = GeneralizationSpec(tuple(gen.get("datasets", ())), tuple(gen.get("selectors", ())),
                                        _ratios(gen["ratios"], "generalization.ratios") if gen.get("ratios") else ())
    task_datasets = {t.dataset.name for t in tasks}
    missing = [d for d in generalization.datasets if d not in task_datasets]
    if missing:
        raise ConfigError(f"generalization.datasets {missing} are not datasets of any task "
                          f"({sorted(task_datasets)})")
    references = []
    for i, entry in enumerate(raw.get("references") or []):
        if not isinstance(entry, Mapping) or set(entry) != {"label", "checkpoint"}:
            raise ConfigError(f"references[{i}] must be dict(label=..., checkpoint=PATH)")
        checkpoint = entry["checkpoint"]
        references.append(ReferenceSpec(str(entry["label"]), None if checkpoint is None else str(checkpoint)))
    return Protocol(
        name=str(meta["name"]), version=str(meta["version"]), description=str(meta.get("description", "")),
        pool=pool, selectors=tuple(selectors), ratios=_ratios(raw.get("ratios"), "ratios"), seeds=seeds,
        backbone=_plugin(raw.get("backbone"), "backbone"), pretrain=pretrain, embedding=embedding,
        tasks=tuple(tasks), alpha=alpha, runtime=_freeze(raw.get("runtime", {}) or {}),
        generalization=generalization, references=tuple(references))


def check_plugins(protocol: Protocol) -> None:
    """Fail before any work on unknown plugin names (with suggestions), ratios a selector
    cannot run at, a task given a dataset without its role or split, and missing
    checkpoint files."""
    from delbench import plugins

    pool = plugins.get("dataset", protocol.pool.name)
    if "pool" not in pool.roles:
        raise ConfigError(f"pool: dataset '{protocol.pool.name}' has roles {list(pool.roles)}, not 'pool'")
    plugins.get("backbone", protocol.backbone.name)
    for selector in protocol.selectors:
        fixed = getattr(plugins.get("selector", selector.name), "fixed_ratio", None)
        if fixed is not None and any(abs(fixed - r) > 1e-12 for r in protocol.selector_ratios(selector)):
            raise ConfigError(f"selector '{selector.name}' only runs at ratio {fixed}; give it "
                              f"ratios=[{fixed}] in the protocol")
    for checkpoint in [protocol.embedding.checkpoint] + [r.checkpoint for r in protocol.references]:
        if checkpoint and not Path(checkpoint).is_file():
            raise ConfigError(f"checkpoint file not found: {checkpoint}")
    for i, task in enumerate(protocol.tasks):
        task_cls = plugins.get("task", task.name)
        dataset = plugins.get("dataset", task.dataset.name)
        if task_cls.dataset_role not in dataset.roles:
            raise ConfigError(f"tasks[{i}] ({task.name}): dataset '{task.dataset.name}' has roles "
                              f"{list(dataset.roles)}, but the task needs '{task_cls.dataset_role}'")


def load_config(path: str | Path, cfg_options: Mapping[str, Any] | None = None):
    """Read a protocol file with mmengine (``_base_`` inheritance) and apply overrides."""
    from mmengine.config import Config

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        cfg = Config.fromfile(str(path))
    except Exception as exc:  # syntax errors, missing _base_ files: one line naming the file
        raise ConfigError(f"cannot read config {path}: {type(exc).__name__}: {exc}") from None
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    return cfg


def load_protocol(path: str | Path, cfg_options: Mapping[str, Any] | None = None) -> tuple[Protocol, Any]:
    cfg = load_config(path, cfg_options)
    protocol = protocol_from_dict(cfg.to_dict())
    check_plugins(protocol)
    return protocol, cfg
