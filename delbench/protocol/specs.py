"""The typed protocol: small frozen specs, one per section of a protocol file, and the hashes
that identify what defines a result (``config_sha256``, the content keys of cells and caches).
:mod:`delbench.protocol.parse` builds them from a loaded config.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, Mapping

BUDGET_RULES = ("compute_matched", "epoch_matched")

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


def plain_data(value: Any) -> Any:
    """Plain JSON-able copy (mmengine ConfigDict → dict, tuples → lists)."""
    if isinstance(value, Mapping):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
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

    @property
    def label(self) -> str:
        """Registry name, plus the parameters the protocol sets: ``meddel[center=True]``; what
        rows, subsets and reports call this selector. Long parameter sets are shortened to a
        hash (``meddel@1a2b3c4d``) so keys stay readable."""
        if not self.params:
            return self.name
        text = ",".join(f"{key}={json.dumps(value, sort_keys=True, default=str)}"
                        for key, value in sorted(self.params.items()))
        return f"{self.name}[{text}]" if len(text) <= 40 else f"{self.name}@{content_hash(self.params, 8)}"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    dataset: PluginSpec
    params: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    test_split: str = "test"
    #: what rows and reports call the downstream set (config key ``tasks[i].dataset.label``);
    #: None: its registry name. Two sets of one dataset plugin (two centres, two roots) need one.
    dataset_label: str | None = None

    @property
    def dataset_key(self) -> str:
        """The downstream set's name in rows, cell keys and reports: its label, else its
        registry name."""
        return self.dataset_label or self.dataset.name

    @property
    def label(self) -> str:
        return f"{self.dataset_key}/{self.name}"


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
        for task in data["tasks"]:  # a dataset label is written where the config sets it
            label = task.pop("dataset_label")
            if label is not None:
                task["dataset"]["label"] = label
        if data["significance"] == DEFAULT_SIGNIFICANCE:  # likewise the default significance level
            del data["significance"]
        return plain_data(data)

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
    data = {k: v for k, v in plain_data(protocol).items() if k not in UNHASHED_FIELDS}
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _plain(value: Any) -> Any:
    """Dataclasses as dicts for hashing, so keys depend on values, never on field or dict order."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"cannot hash a {type(value).__name__} into a cache key")


def content_hash(value: Any, length: int = 16) -> str:
    """A short sha256 of plain data and specs (dataclasses as dicts), keys sorted: the content
    keys of a run's cached artefacts and long selector labels."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=_plain).encode()).hexdigest()[:length]
