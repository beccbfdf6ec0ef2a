"""What only the installed plugins can tell about a protocol, checked when it loads: names,
parameters, ratios, dataset roles and splits, the backbone's optimizer and precision, and
checkpoint files."""
from __future__ import annotations

from pathlib import Path

from delbench import discovery
from delbench.errors import ConfigError
from delbench.protocol.specs import PluginSpec, Protocol
from delbench.sdk.contracts import check_precision, pretrain_takes
from delbench.sdk.params import check_plugin_params


def check_plugins(protocol: Protocol) -> None:
    """Fail before any work on what only the plugins can tell: unknown names (with
    suggestions), parameters their signatures do not take or values their ``check_params``
    refuses, ratios a selector cannot run at, a dataset without the role or split its use
    needs, and missing checkpoint files. Each error is one line naming the plugin's place in
    the protocol (``selectors[2] (meddel)``) and the key."""
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
