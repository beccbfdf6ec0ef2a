"""Protocol configuration: mmengine ``Config`` files validated into small typed objects.

A protocol file (``benchmarks/*.py``) is plain data inheriting from ``benchmarks/_base_/``.
``load_protocol`` reads it, applies ``--cfg-options`` overrides, checks every key once, and
returns a frozen :class:`Protocol`. Everything that defines a result is inside the protocol,
so its canonical JSON hash (``config_sha256``) identifies comparable results.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from delbench.errors import ConfigError, one_line
from delbench.sdk.contracts import PRECISIONS, check_precision, pretrain_takes
from delbench.sdk.params import (check_choice, check_int, check_known_keys, check_number, check_path,
                                 check_plugin_params, is_int, is_number)

BUDGET_RULES = ("compute_matched", "epoch_matched")
TOP_LEVEL_KEYS = ("protocol", "pool", "selectors", "ratios", "seeds", "backbone", "pretrain",
                  "embedding", "tasks", "normdel", "runtime", "generalization", "references", "timeouts",
                  "statistics")
#: the significance level of the report's tests and intervals (config key
#: ``statistics.significance``); not NormDEL's α, which weighs the retained ratio
DEFAULT_SIGNIFICANCE = 0.05
#: settings that change how a run executes, never its results (not hashed into config_sha256)
RUNTIME_KEYS = ("cache_dir",)
#: the stages of a cell that ``timeouts`` can bound
STAGES = ("select", "pretrain", "evaluate")
#: Protocol fields that say how a run executes, not what a result means: left out of
#: config_sha256, so raising a timeout or the checkpoint cadence can ``--resume`` a run
UNHASHED_FIELDS = ("runtime", "execution")


def _freeze(value: Any) -> Any:
    """Plain JSON-able copy (mmengine ConfigDict → dict, tuples → lists)."""
    if isinstance(value, Mapping):
        return {str(k): _freeze(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_freeze(v) for v in value]
    return value


def _section(raw: Mapping[str, Any], key: str, allowed: set[str] | tuple[str, ...],
             required: set[str] = frozenset()) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a dict, got {value!r}")
    value = _freeze(value)
    check_known_keys(value, tuple(allowed), key)
    missing = sorted(set(required) - set(value))
    if missing:
        raise ConfigError(f"{key}: missing key {missing[0]!r}; required: {', '.join(sorted(required))}")
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
    #: seeds for this selector; None = the protocol's seeds (e.g. more seeds for the bracket
    #: selectors whose gaps the validity check tests, fewer for the rest)
    seeds: tuple[int, ...] | None = None


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
    ``precision``: ``fp32``, or ``bf16`` autocast (CUDA only), recorded in every row.
    ``batch_size`` is the global batch: under ``torchrun`` each process trains on its slice.
    ``init_seed``: the seed of the encoder's initial weights, the same for every cell (the run
    seed then varies the data order, masks, flips and the task only); None draws them from
    the cell's seed.
    """

    budget: str
    reference_epochs: float
    batch_size: int
    optimizer: dict[str, Any]
    checkpoint_epochs: tuple[float, ...] = ()
    precision: str = "fp32"
    init_seed: int | None = None

    def record(self) -> dict[str, Any]:
        """The spec as plain data for hashes; an unset ``init_seed`` is left out, so protocols
        that do not pin one keep the config hash and pre-training keys they had before it."""
        data = asdict(self)
        if data["init_seed"] is None:
            del data["init_seed"]
        return data

    def steps(self, n_pool: int, n_selected: int) -> int:
        images = self.reference_epochs * (n_pool if self.budget == "compute_matched" else n_selected)
        return max(1, math.ceil(images / self.batch_size))

    def steps_at_epoch(self, epoch: float, n_selected: int) -> int:
        """The optimizer step at which ``epoch`` epochs of the cell's own subset are done."""
        return max(1, math.ceil(epoch * n_selected / self.batch_size))

    def reaches(self, epoch: float, n_pool: int, n_selected: int) -> bool:
        """Whether a cell's schedule gets to ``epoch`` of its own subset (a checkpoint epoch
        beyond the last step has no checkpoint and no row)."""
        return self.steps_at_epoch(epoch, n_selected) <= self.steps(n_pool, n_selected)

    def epochs(self, n_pool: int, n_selected: int) -> float:
        return self.steps(n_pool, n_selected) * self.batch_size / max(1, n_selected)


@dataclass(frozen=True)
class ExecutionSpec:
    """How cells execute, never what they compute (not part of ``config_sha256``).

    ``checkpoint_every`` (config key ``pretrain.checkpoint_every``): optimizer steps between
    resumable pre-training states (0: none); a killed or timed-out pre-training continues
    from the latest one. ``timeouts`` (config key ``timeouts``): seconds each stage of a cell
    may run (``select``, ``pretrain``, ``evaluate``); a stage past it fails its cell (None:
    no limit).
    """

    checkpoint_every: int = 1000
    timeouts: dict[str, float | None] = field(default_factory=dict)

    def timeout(self, stage: str) -> float | None:
        return self.timeouts.get(stage)


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
    execution: ExecutionSpec = ExecutionSpec()
    #: significance level of the report's paired tests; its intervals are at 1 − significance
    significance: float = DEFAULT_SIGNIFICANCE

    def to_dict(self) -> dict[str, Any]:
        """The validated protocol as plain JSON (``run.json``'s ``protocol_config``, a
        submission's ``config.json``); :func:`protocol_from_json` reads it back."""
        data = asdict(self)
        data["pretrain"] = self.pretrain.record()
        for selector in data["selectors"]:  # unset per-selector seeds leave the config hash unchanged
            if selector["seeds"] is None:
                del selector["seeds"]
        if data["significance"] == DEFAULT_SIGNIFICANCE:  # likewise the default significance level
            del data["significance"]
        return _freeze(data)

    @property
    def sha256(self) -> str:
        return protocol_sha256(self.to_dict())

    def selector_ratios(self, selector: SelectorSpec) -> tuple[float, ...]:
        return selector.ratios if selector.ratios is not None else self.ratios

    def selector_seeds(self, selector: SelectorSpec) -> tuple[int, ...]:
        return selector.seeds if selector.seeds is not None else self.seeds

    def dataset_arguments(self, dataset: PluginSpec, split: str) -> dict[str, Any]:
        """What the harness passes a dataset besides its params: the ``split`` and, unless the
        dataset's params set one, the backbone's ``image_size`` (datasets load at the size the
        backbone takes)."""
        size = self.backbone.params.get("image_size")
        return {"split": split, **({"image_size": size} if size and "image_size" not in dataset.params else {})}


def protocol_sha256(protocol: Mapping[str, Any]) -> str:
    """Hash of everything that defines results: ``Protocol.to_dict()`` without
    :data:`UNHASHED_FIELDS` (``runtime``, ``execution``)."""
    data = {k: v for k, v in _freeze(protocol).items() if k not in UNHASHED_FIELDS}
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _plugin(value: Any, where: str) -> PluginSpec:
    if isinstance(value, str):
        return PluginSpec(value)
    if not isinstance(value, Mapping) or not isinstance(value.get("name"), str):
        raise ConfigError(f"{where} must be a name or dict(name=..., params=dict(...)), got {value!r}")
    check_known_keys(value, ("name", "params"), where, hint=" (put settings under 'params')")
    params = value.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}.params must be a dict, got {params!r}")
    return PluginSpec(str(value["name"]), _freeze(params))


def _ratios(values: Any, where: str) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"{where} must be a non-empty list of ratios in (0, 1], got {values!r}")
    bad = [v for v in values if not is_number(v) or not 0.0 < v <= 1.0]
    if bad:
        raise ConfigError(f"{where}: ratios must be in (0, 1], got {bad}")
    ratios = tuple(float(v) for v in values)
    if len(set(ratios)) != len(ratios):
        raise ConfigError(f"{where}: duplicate ratios {list(ratios)}")
    return ratios


def _seeds(values: Any, where: str = "seeds") -> tuple[int, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"{where} must list at least one integer seed ≥ 0, got {values!r}")
    bad = [v for v in values if not is_int(v) or v < 0]
    if bad:
        raise ConfigError(f"{where} must be integers ≥ 0, got {bad[0]!r} in {list(values)}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{where} must be distinct, got {list(values)}")
    return tuple(int(v) for v in values)


@contextlib.contextmanager
def _in_section(section: str) -> Iterator[None]:
    """Name the section in the one-line errors of the value checks run inside."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(f"{section}.{exc}") from None


def _strings(values: Any, where: str) -> tuple[str, ...]:
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{where} must be a list of names, got {values!r}")
    return tuple(values)


def protocol_from_dict(raw: Mapping[str, Any], *, plugins: bool = True) -> Protocol:
    """Validate a plain dict (a loaded config) into a :class:`Protocol`: every key, every
    value and, with ``plugins``, every plugin parameter (:func:`check_plugins`), before any
    work."""
    check_known_keys({k: v for k, v in raw.items() if not k.startswith("_")}, TOP_LEVEL_KEYS, "protocol file",
                     noun="top-level key")
    meta = _section(raw, "protocol", {"name", "version", "description"}, {"name", "version"})
    pool = _plugin(raw.get("pool"), "pool")
    selectors = []
    for i, entry in enumerate(raw.get("selectors") or []):
        entry = {"name": entry} if isinstance(entry, str) else _freeze(entry)
        if not isinstance(entry, Mapping):
            raise ConfigError(f"selectors[{i}] must be a name or dict(name=..., params=..., ratios=..., seeds=...), "
                              f"got {entry!r}")
        check_known_keys(entry, ("name", "params", "ratios", "seeds"), f"selectors[{i}]")
        spec = _plugin({k: v for k, v in entry.items() if k in ("name", "params")}, f"selectors[{i}]")
        ratios, own_seeds = entry.get("ratios"), entry.get("seeds")
        selectors.append(SelectorSpec(spec.name, spec.params,
                                      None if ratios is None else _ratios(ratios, f"selectors[{i}].ratios"),
                                      None if own_seeds is None else _seeds(own_seeds, f"selectors[{i}].seeds")))
    if not selectors:
        raise ConfigError("'selectors' must list at least one selector")
    seeds = _seeds(raw.get("seeds"))
    pre = _section(raw, "pretrain", {"budget", "reference_epochs", "batch_size", "optimizer", "checkpoint_epochs",
                                     "checkpoint_every", "precision", "init_seed"}, {"budget", "reference_epochs", "batch_size"})
    with _in_section("pretrain"):
        check_choice(pre, "budget", BUDGET_RULES)
        check_number(pre, "reference_epochs", 0.0, None, low_open=True)
        check_int(pre, "batch_size", 1)
        if not isinstance(pre.get("optimizer", {}), Mapping):
            raise ConfigError(f"optimizer must be a dict, got {pre['optimizer']!r}")
        epochs = pre.get("checkpoint_epochs", [])
        if not isinstance(epochs, (list, tuple)) or not all(is_number(e) and e > 0 for e in epochs):
            raise ConfigError(f"checkpoint_epochs must be a list of epochs > 0, got {epochs!r}")
        check_int(pre, "checkpoint_every", 0)
        check_choice(pre, "precision", PRECISIONS)
        check_int(pre, "init_seed", 0, allow_none=True)
    init_seed = pre.get("init_seed")
    pretrain = PretrainSpec(pre["budget"], float(pre["reference_epochs"]), int(pre["batch_size"]),
                            dict(pre.get("optimizer", {})), tuple(float(e) for e in epochs),
                            pre.get("precision", "fp32"), None if init_seed is None else int(init_seed))
    emb = _section(raw, "embedding", {"checkpoint", "warmup_steps", "batch_size", "dtype"})
    with _in_section("embedding"):
        check_path(emb, "checkpoint")
        check_int(emb, "warmup_steps", 0)
        check_int(emb, "batch_size", 1)
        check_choice(emb, "dtype", ("float16", "float32"))
    embedding = EmbeddingSpec(emb.get("checkpoint"), int(emb.get("warmup_steps", 0)),
                              int(emb.get("batch_size", 256)), emb.get("dtype", "float16"))
    tasks = []
    for i, entry in enumerate(raw.get("tasks") or []):
        entry = _freeze(entry)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or "dataset" not in entry:
            raise ConfigError(f"tasks[{i}] must be dict(name=..., dataset=dict(name=..., params=...), params=...)")
        check_known_keys(entry, ("name", "dataset", "params", "train_split", "test_split"), f"tasks[{i}]")
        task = _plugin({k: entry[k] for k in ("name", "params") if k in entry}, f"tasks[{i}]")
        splits = {key: entry.get(key, default) for key, default in (("train_split", "train"), ("test_split", "test"))}
        for key, split in splits.items():
            if not isinstance(split, str):
                raise ConfigError(f"tasks[{i}].{key} must be a split name, got {split!r}")
        tasks.append(TaskSpec(task.name, _plugin(entry["dataset"], f"tasks[{i}].dataset"), task.params, **splits))
    if not tasks:
        raise ConfigError("'tasks' must list at least one downstream task")
    normdel = _section(raw, "normdel", {"alpha"})
    with _in_section("normdel"):
        check_number(normdel, "alpha", 0.0, None, low_open=True)
    alpha = float(normdel.get("alpha", 1.0))
    runtime = _section(raw, "runtime", RUNTIME_KEYS)
    with _in_section("runtime"):
        check_path(runtime, "cache_dir")
    gen = _section(raw, "generalization", {"datasets", "selectors", "ratios"})
    generalization = GeneralizationSpec(_strings(gen.get("datasets", ()), "generalization.datasets"),
                                        _strings(gen.get("selectors", ()), "generalization.selectors"),
                                        _ratios(gen["ratios"], "generalization.ratios") if gen.get("ratios") else ())
    timeouts = _section(raw, "timeouts", STAGES)
    with _in_section("timeouts"):
        for stage in STAGES:
            check_number(timeouts, stage, 0.0, None, low_open=True, allow_none=True)
    execution = ExecutionSpec(int(pre.get("checkpoint_every", ExecutionSpec.checkpoint_every)),
                              {k: None if v is None else float(v) for k, v in timeouts.items()})
    task_datasets = {t.dataset.name for t in tasks}
    missing = [d for d in generalization.datasets if d not in task_datasets]
    if missing:
        raise ConfigError(f"generalization.datasets {missing} are not datasets of any task "
                          f"({sorted(task_datasets)})")
    references = []
    for i, entry in enumerate(raw.get("references") or []):
        if not isinstance(entry, Mapping) or set(entry) != {"label", "checkpoint"} or not isinstance(entry["label"], str):
            raise ConfigError(f"references[{i}] must be dict(label=NAME, checkpoint=PATH or None), got {entry!r}")
        with _in_section(f"references[{i}]"):
            check_path(entry, "checkpoint")
        checkpoint = entry["checkpoint"]
        references.append(ReferenceSpec(entry["label"], None if checkpoint is None else str(checkpoint)))
    statistics = _section(raw, "statistics", {"significance"})
    with _in_section("statistics"):
        check_number(statistics, "significance", 0.0, 0.5, low_open=True)
    protocol = Protocol(
        name=str(meta["name"]), version=str(meta["version"]), description=str(meta.get("description", "")),
        pool=pool, selectors=tuple(selectors), ratios=_ratios(raw.get("ratios"), "ratios"), seeds=seeds,
        backbone=_plugin(raw.get("backbone"), "backbone"), pretrain=pretrain, embedding=embedding,
        tasks=tuple(tasks), alpha=alpha, runtime=runtime, generalization=generalization,
        references=tuple(references), execution=execution,
        significance=float(statistics.get("significance", DEFAULT_SIGNIFICANCE)))
    if plugins:
        check_plugins(protocol)
    return protocol


def protocol_from_json(data: Mapping[str, Any], *, plugins: bool = True) -> Protocol:
    """The inverse of :meth:`Protocol.to_dict`: a protocol recorded as JSON (``run.json``'s
    ``protocol_config``, a submission's ``config.json``), validated again key by key as a
    config file is (:func:`protocol_from_dict`). Data only: nothing in it is executed.

    ``plugins=False`` skips the checks only the installed plugins can make (names,
    parameters, data roots, checkpoint files): a verifier may lack a submitter's selector
    plugin or data and still check everything else.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"a protocol record must be a JSON object, got {type(data).__name__}")
    data = _freeze(data)
    fields = ("name", "version", "description", "pool", "selectors", "ratios", "seeds", "backbone", "pretrain",
              "embedding", "tasks", "alpha", "runtime", "generalization", "references", "execution", "significance")
    check_known_keys(data, fields, "protocol record")
    execution = data.get("execution") or {}
    if not isinstance(execution, Mapping) or not isinstance(data.get("pretrain", {}), Mapping):
        raise ConfigError("protocol record: execution and pretrain must be objects")
    raw = {"protocol": {k: data[k] for k in ("name", "version", "description") if k in data},
           "selectors": [{k: v for k, v in s.items() if v is not None} if isinstance(s, Mapping) else s
                         for s in data.get("selectors") or []],
           "pretrain": {**data.get("pretrain", {}),
                        **({"checkpoint_every": execution["checkpoint_every"]} if "checkpoint_every" in execution else {})},
           "normdel": {"alpha": data["alpha"]} if "alpha" in data else {},
           "timeouts": execution.get("timeouts") or {},
           "statistics": {"significance": data["significance"]} if "significance" in data else {},
           **{k: data[k] for k in ("pool", "ratios", "seeds", "backbone", "embedding", "tasks", "runtime",
                                   "generalization", "references") if k in data}}
    return protocol_from_dict(raw, plugins=plugins)


def check_values(protocol: Protocol) -> None:
    """The value checks of :func:`protocol_from_dict` on a :class:`Protocol` built in code
    (or changed with ``dataclasses.replace``): seeds, ratios, timeouts, one line naming the
    key. ``run_protocol`` calls it with :func:`check_plugins`."""
    _seeds(list(protocol.seeds))
    _ratios(list(protocol.ratios), "ratios")
    for i, selector in enumerate(protocol.selectors):
        if selector.seeds is not None:
            _seeds(list(selector.seeds), f"selectors[{i}].seeds")
        if selector.ratios is not None:
            _ratios(list(selector.ratios), f"selectors[{i}].ratios")
    check_known_keys(protocol.execution.timeouts, STAGES, "timeouts")
    with _in_section("timeouts"):
        for stage in STAGES:
            check_number(protocol.execution.timeouts, stage, 0.0, None, low_open=True, allow_none=True)
    with _in_section("pretrain"):
        check_int({"checkpoint_every": protocol.execution.checkpoint_every}, "checkpoint_every", 0)


def check_plugins(protocol: Protocol) -> None:
    """Fail before any work on what only the plugins can tell: unknown names (with
    suggestions), parameters their signatures do not take or values their ``check_params``
    refuses, ratios a selector cannot run at, a dataset without the role or split its use
    needs, and missing checkpoint files. Each error is one line naming the plugin's place in
    the protocol (``selectors[2] (meddel)``) and the key."""
    from delbench import discovery

    def where(place: str, spec: PluginSpec) -> str:
        return f"{place} ({spec.name})"

    def check_dataset(place: str, spec: PluginSpec, split: str, role: str, user: str) -> None:
        dataset = discovery.get("dataset", spec.name)
        if role not in dataset.roles:
            raise ConfigError(f"{where(place, spec)}: the dataset has roles {list(dataset.roles)}, "
                              f"but {user} needs the role {role!r}")
        if split not in dataset.splits:
            raise ConfigError(f"{where(place, spec)}: the dataset has splits {list(dataset.splits)}, "
                              f"but {user} needs split {split!r}")
        check_plugin_params("dataset", dataset, spec.params, where(place, spec),
                            harness=protocol.dataset_arguments(spec, split))

    backbone = discovery.get("backbone", protocol.backbone.name)
    check_plugin_params("backbone", backbone, protocol.backbone.params, where("backbone", protocol.backbone))
    check_optimizer = getattr(backbone, "check_optimizer", None)
    if callable(check_optimizer):
        try:
            check_optimizer(protocol.pretrain.optimizer)
        except ConfigError as exc:
            raise ConfigError(f"pretrain.optimizer ({protocol.backbone.name}): {exc}") from None
    if protocol.pretrain.precision != "fp32":
        if not pretrain_takes(backbone, "precision"):
            raise ConfigError(f"pretrain.precision={protocol.pretrain.precision!r}: backbone "
                              f"{protocol.backbone.name!r} trains in fp32 only (its pretrain takes no precision)")
        try:
            check_precision(protocol.pretrain.precision, protocol.backbone.params.get("device", "cpu"))
        except ConfigError as exc:
            raise ConfigError(f"pretrain.{exc}") from None
    check_dataset("pool", protocol.pool, "all", "pool", "the pool")
    for i, selector in enumerate(protocol.selectors):
        cls = discovery.get("selector", selector.name)
        check_plugin_params("selector", cls, selector.params, where(f"selectors[{i}]", selector))
        fixed = getattr(cls, "fixed_ratio", None)
        if fixed is not None and any(abs(fixed - r) > 1e-12 for r in protocol.selector_ratios(selector)):
            raise ConfigError(f"{where(f'selectors[{i}]', selector)}: only runs at ratio {fixed}; give it "
                              f"ratios=[{fixed}] in the protocol")
    for i, task in enumerate(protocol.tasks):
        task_cls = discovery.get("task", task.name)
        check_plugin_params("task", task_cls, task.params, f"tasks[{i}] ({task.name})")
        for split in (task.train_split, task.test_split):
            check_dataset(f"tasks[{i}].dataset", task.dataset, split, task_cls.dataset_role, f"task '{task.name}'")
    for place, checkpoint in [("embedding.checkpoint", protocol.embedding.checkpoint)] + [
            (f"references[{i}].checkpoint", r.checkpoint) for i, r in enumerate(protocol.references)]:
        if checkpoint and not Path(checkpoint).is_file():
            raise ConfigError(f"{place}: checkpoint file not found: {checkpoint}")


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
