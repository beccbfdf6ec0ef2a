"""A protocol's plain data validated into a :class:`~delbench.protocol.specs.Protocol`, one
section at a time: every key and value checked once, each error one line naming the key
(``pretrain.batch_size must be an integer ≥ 1, got 0``). :func:`protocol_from_dict` reads a
loaded config file, :func:`protocol_from_json` a protocol recorded in a run or a submission
(data only, never executed), :func:`check_values` one built in code.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

from delbench.errors import ConfigError
from delbench.protocol.checks import check_plugins
from delbench.protocol.specs import (BUDGET_RULES, DEFAULT_SIGNIFICANCE, RUNTIME_KEYS, STAGES, EmbeddingSpec,
                                     ExecutionSpec, GeneralizationSpec, PluginSpec, PretrainSpec, Protocol,
                                     ReferenceSpec, SelectorSpec, TaskSpec, plain_data)
from delbench.sdk.contracts import PRECISIONS
from delbench.sdk.params import check_choice, check_int, check_known_keys, check_number, check_path, is_int, is_number

TOP_LEVEL_KEYS = ("protocol", "pool", "selectors", "ratios", "seeds", "backbone", "pretrain",
                  "embedding", "tasks", "normdel", "runtime", "generalization", "references", "timeouts",
                  "statistics")
PRETRAIN_KEYS = ("budget", "reference_epochs", "batch_size", "optimizer", "checkpoint_epochs", "checkpoint_every",
                 "precision", "init_seed")


def _section(raw: Mapping[str, Any], key: str, allowed: set[str] | tuple[str, ...],
             required: set[str] = frozenset()) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a dict, got {value!r}")
    value = plain_data(value)
    check_known_keys(value, tuple(allowed), key)
    missing = sorted(set(required) - set(value))
    if missing:
        raise ConfigError(f"{key}: missing key {missing[0]!r}; required: {', '.join(sorted(required))}")
    return value


def _plugin(value: Any, where: str) -> PluginSpec:
    if isinstance(value, str):
        return PluginSpec(value)
    if not isinstance(value, Mapping) or not isinstance(value.get("name"), str):
        raise ConfigError(f"{where} must be a name or dict(name=..., params=dict(...)), got {value!r}")
    check_known_keys(value, ("name", "params"), where, hint=" (put settings under 'params')")
    params = value.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}.params must be a dict, got {params!r}")
    return PluginSpec(str(value["name"]), plain_data(params))


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


def _meta(raw: Mapping[str, Any]) -> dict[str, str]:
    meta = _section(raw, "protocol", {"name", "version", "description"}, {"name", "version"})
    return {"name": str(meta["name"]), "version": str(meta["version"]), "description": str(meta.get("description", ""))}


def _selectors(raw: Mapping[str, Any]) -> tuple[SelectorSpec, ...]:
    selectors = []
    for i, entry in enumerate(raw.get("selectors") or []):
        entry = {"name": entry} if isinstance(entry, str) else plain_data(entry)
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
    return tuple(selectors)


def _distinct_selectors(protocol: Protocol) -> None:
    """Two selector entries with one label (name and parameters) and a ratio and seed in
    common would plan the same cells twice (every such cell run twice, its key recorded
    twice): refused, naming both entries."""
    for j, later in enumerate(protocol.selectors):
        for i, earlier in enumerate(protocol.selectors[:j]):
            if earlier.label != later.label:
                continue
            ratios = sorted(set(protocol.selector_ratios(earlier)) & set(protocol.selector_ratios(later)))
            seeds = sorted(set(protocol.selector_seeds(earlier)) & set(protocol.selector_seeds(later)))
            if ratios and seeds:
                raise ConfigError(f"selectors[{i}] and selectors[{j}] are both '{later.label}' at ratio {ratios[0]:g} "
                                  f"and seed {seeds[0]}: each of their common cells would run twice; remove one, or "
                                  f"give them other params, ratios or seeds")


def _pretrain(raw: Mapping[str, Any]) -> PretrainSpec:
    pre = _section(raw, "pretrain", PRETRAIN_KEYS, {"budget", "reference_epochs", "batch_size"})
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
    return PretrainSpec(pre["budget"], float(pre["reference_epochs"]), int(pre["batch_size"]),
                        dict(pre.get("optimizer", {})), tuple(float(e) for e in epochs),
                        pre.get("precision", "fp32"), None if init_seed is None else int(init_seed))


def _embedding(raw: Mapping[str, Any]) -> EmbeddingSpec:
    emb = _section(raw, "embedding", {"checkpoint", "warmup_steps", "batch_size", "dtype"})
    with _in_section("embedding"):
        check_path(emb, "checkpoint")
        check_int(emb, "warmup_steps", 0)
        check_int(emb, "batch_size", 1)
        check_choice(emb, "dtype", ("float16", "float32"))
    return EmbeddingSpec(emb.get("checkpoint"), int(emb.get("warmup_steps", 0)), int(emb.get("batch_size", 256)),
                         emb.get("dtype", "float16"))


def _tasks(raw: Mapping[str, Any]) -> tuple[TaskSpec, ...]:
    tasks = []
    for i, entry in enumerate(raw.get("tasks") or []):
        entry = plain_data(entry)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or "dataset" not in entry:
            raise ConfigError(f"tasks[{i}] must be dict(name=..., dataset=dict(name=..., params=...), params=...)")
        check_known_keys(entry, ("name", "dataset", "params", "train_split", "test_split"), f"tasks[{i}]")
        task = _plugin({k: entry[k] for k in ("name", "params") if k in entry}, f"tasks[{i}]")
        splits = {key: entry.get(key, default) for key, default in (("train_split", "train"), ("test_split", "test"))}
        for key, split in splits.items():
            if not isinstance(split, str):
                raise ConfigError(f"tasks[{i}].{key} must be a split name, got {split!r}")
        dataset, label = entry["dataset"], None
        if isinstance(dataset, Mapping) and "label" in dataset:
            dataset, label = {k: v for k, v in dataset.items() if k != "label"}, dataset["label"]
            if not (isinstance(label, str) and label and "/" not in label and "|" not in label):
                raise ConfigError(f"tasks[{i}].dataset.label must be a non-empty name without '/' or '|', "
                                  f"got {label!r}")
        tasks.append(TaskSpec(task.name, _plugin(dataset, f"tasks[{i}].dataset"), task.params, **splits,
                              dataset_label=label))
        taken = [j for j, other in enumerate(tasks[:-1]) if other.label == tasks[-1].label]
        if taken:
            raise ConfigError(f"tasks[{i}] and tasks[{taken[0]}] are both '{tasks[-1].label}': give one of them a "
                              f"dataset label (tasks[{i}].dataset.label='...') to tell their rows apart")
    if not tasks:
        raise ConfigError("'tasks' must list at least one downstream task")
    return tuple(tasks)


def _alpha(raw: Mapping[str, Any]) -> float:
    normdel = _section(raw, "normdel", {"alpha"})
    with _in_section("normdel"):
        check_number(normdel, "alpha", 0.0, None, low_open=True)
    return float(normdel.get("alpha", 1.0))


def _runtime(raw: Mapping[str, Any]) -> dict[str, Any]:
    runtime = _section(raw, "runtime", RUNTIME_KEYS)
    with _in_section("runtime"):
        check_path(runtime, "cache_dir")
    return runtime


def _generalization(raw: Mapping[str, Any], tasks: tuple[TaskSpec, ...]) -> GeneralizationSpec:
    gen = _section(raw, "generalization", {"datasets", "selectors", "ratios"})
    generalization = GeneralizationSpec(_strings(gen.get("datasets", ()), "generalization.datasets"),
                                        _strings(gen.get("selectors", ()), "generalization.selectors"),
                                        _ratios(gen["ratios"], "generalization.ratios") if gen.get("ratios") else ())
    task_datasets = {t.dataset_key for t in tasks}
    missing = [d for d in generalization.datasets if d not in task_datasets]
    if missing:
        raise ConfigError(f"generalization.datasets {missing} are not datasets of any task "
                          f"({sorted(task_datasets)})")
    return generalization


def _execution(raw: Mapping[str, Any]) -> ExecutionSpec:
    """How cells execute: ``pretrain.checkpoint_every`` (checked with the pretrain section) and
    ``timeouts``."""
    timeouts = _section(raw, "timeouts", STAGES)
    with _in_section("timeouts"):
        for stage in STAGES:
            check_number(timeouts, stage, 0.0, None, low_open=True, allow_none=True)
    pre = raw.get("pretrain") or {}
    return ExecutionSpec(int(pre.get("checkpoint_every", ExecutionSpec.checkpoint_every)),
                         {k: None if v is None else float(v) for k, v in timeouts.items()})


def _references(raw: Mapping[str, Any]) -> tuple[ReferenceSpec, ...]:
    references = []
    for i, entry in enumerate(raw.get("references") or []):
        if not isinstance(entry, Mapping) or set(entry) != {"label", "checkpoint"} or not isinstance(entry["label"], str):
            raise ConfigError(f"references[{i}] must be dict(label=NAME, checkpoint=PATH or None), got {entry!r}")
        with _in_section(f"references[{i}]"):
            check_path(entry, "checkpoint")
        checkpoint = entry["checkpoint"]
        references.append(ReferenceSpec(entry["label"], None if checkpoint is None else str(checkpoint)))
    return tuple(references)


def _significance(raw: Mapping[str, Any]) -> float:
    statistics = _section(raw, "statistics", {"significance"})
    with _in_section("statistics"):
        check_number(statistics, "significance", 0.0, 0.5, low_open=True)
    return float(statistics.get("significance", DEFAULT_SIGNIFICANCE))


def protocol_from_dict(raw: Mapping[str, Any], *, plugins: bool = True) -> Protocol:
    """Validate a plain dict (a loaded config) into a :class:`Protocol`, one section at a time:
    every key, every value and, with ``plugins``, every plugin parameter
    (:func:`~delbench.protocol.checks.check_plugins`), before any work."""
    check_known_keys({k: v for k, v in raw.items() if not k.startswith("_")}, TOP_LEVEL_KEYS, "protocol file",
                     noun="top-level key")
    tasks = _tasks(raw)
    protocol = Protocol(
        **_meta(raw), pool=_plugin(raw.get("pool"), "pool"), selectors=_selectors(raw),
        ratios=_ratios(raw.get("ratios"), "ratios"), seeds=_seeds(raw.get("seeds")),
        backbone=_plugin(raw.get("backbone"), "backbone"), pretrain=_pretrain(raw), embedding=_embedding(raw),
        tasks=tasks, alpha=_alpha(raw), runtime=_runtime(raw), generalization=_generalization(raw, tasks),
        references=_references(raw), execution=_execution(raw), significance=_significance(raw))
    _distinct_selectors(protocol)
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
    data = plain_data(data)
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
    key. ``run_protocol`` calls it with :func:`~delbench.protocol.checks.check_plugins`."""
    _seeds(list(protocol.seeds))
    _ratios(list(protocol.ratios), "ratios")
    for i, selector in enumerate(protocol.selectors):
        if selector.seeds is not None:
            _seeds(list(selector.seeds), f"selectors[{i}].seeds")
        if selector.ratios is not None:
            _ratios(list(selector.ratios), f"selectors[{i}].ratios")
    _distinct_selectors(protocol)
    check_known_keys(protocol.execution.timeouts, STAGES, "timeouts")
    with _in_section("timeouts"):
        for stage in STAGES:
            check_number(protocol.execution.timeouts, stage, 0.0, None, low_open=True, allow_none=True)
    with _in_section("pretrain"):
        check_int({"checkpoint_every": protocol.execution.checkpoint_every}, "checkpoint_every", 0)
