"""Stage 4, the downstream tasks: a task fitted on a checkpoint's encoder and evaluated (and
on the other datasets of a generalization study), its metrics checked against the contract,
NormDEL computed."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from delbench import discovery
from delbench.errors import DelbenchError
from delbench.protocol import Protocol, TaskSpec
from delbench.run.context import RunContext, open_dataset
from delbench.run.plan import Cell
from delbench.run.pretrain import initial_backbone
from delbench.run.timeouts import stage_deadline
from delbench.sdk.metrics import normdel


@dataclass(frozen=True)
class Evaluation:
    """What one task cell measured: the task's metric and metrics, its fit statistics, the
    cross-dataset metrics, NormDEL (None for reference encoders) and the seconds it took."""

    metric: str
    metrics: dict[str, float]
    fit: dict[str, Any]
    cross_dataset: dict[str, dict[str, float]]
    normdel: float | None
    seconds: float


def evaluate_task(ctx: RunContext, task_spec: TaskSpec, checkpoint: Path | None, seed: int, *,
                  cross_tasks: tuple[TaskSpec, ...] = (), ratio: float | None = None) -> Evaluation:
    """Fit the task on its training split, evaluate on its test split and on the test split
    of each task in ``cross_tasks`` (cross-dataset generalisation); NormDEL at ``ratio``."""
    started = time.perf_counter()
    protocol = ctx.protocol
    train = open_dataset(ctx, task_spec.dataset, task_spec.train_split)
    test = open_dataset(ctx, task_spec.dataset, task_spec.test_split)
    if checkpoint is None:  # the freshly initialised encoder (a reference row)
        backbone = initial_backbone(protocol)
    else:
        backbone = discovery.create("backbone", protocol.backbone.name, protocol.backbone.params)
        backbone.load(checkpoint)
    task = discovery.create("task", task_spec.name, task_spec.params)
    with stage_deadline("evaluate", protocol.execution.timeout("evaluate")):
        fit_stats = task.fit(backbone, train, seed=seed)
        metrics = _checked_metrics(task_spec.name, task.metric, task.evaluate(backbone, test))
        cross = {other.dataset_key: _checked_metrics(task_spec.name, task.metric, task.evaluate(
            backbone, open_dataset(ctx, other.dataset, other.test_split))) for other in cross_tasks}
    score = None if ratio is None else normdel(metrics[task.metric], ratio, protocol.alpha)
    return Evaluation(task.metric, metrics, fit_stats, cross, score, time.perf_counter() - started)


def _checked_metrics(name: str, metric: str, metrics: Any) -> dict[str, float]:
    """A task's metrics as the contract says: a dict of finite numbers holding ``metric``, a
    fraction in [0, 1]. Anything else fails the cell rather than reaching the report."""
    if not isinstance(metrics, dict):
        raise DelbenchError(f"task '{name}' returned {type(metrics).__name__} from evaluate, expected a dict of metrics")
    if metric not in metrics:
        raise DelbenchError(f"task '{name}' did not report its metric '{metric}'")
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(value)):
            raise DelbenchError(f"task '{name}' returned {key} = {value!r}, not a finite number")
    if not 0.0 <= float(metrics[metric]) <= 1.0:
        raise DelbenchError(f"task '{name}' returned {metric} = {metrics[metric]!r}, outside [0, 1]")
    return {key: float(value) for key, value in metrics.items()}


def cross_tasks(protocol: Protocol, cell: "Cell") -> tuple[TaskSpec, ...]:
    """The other tasks of the same kind a cell's head is also tested on (final checkpoint only)."""
    if cell.pretrain_epoch is not None or not protocol.generalization.applies(
            cell.selector.name, cell.ratio, cell.task.dataset_key):
        return ()
    return tuple(t for t in protocol.tasks if t.name == cell.task.name and t.dataset_key != cell.task.dataset_key
                 and t.dataset_key in protocol.generalization.datasets)
