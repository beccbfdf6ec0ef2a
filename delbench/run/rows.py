"""Rows: the one place a result row is made (selection, failed and reference rows alike), and
recording it: appended to the run's rows (or a launched job's cell file), then every observer
told."""
from __future__ import annotations

import functools
import logging
import traceback
from dataclasses import dataclass
from typing import Any

from delbench import discovery
from delbench.errors import one_line
from delbench.run.context import RunContext, utc_now
from delbench.run.evaluate import Evaluation
from delbench.run.plan import Cell
from delbench.sdk.subsets import Subset
from delbench.store import ROWS_FILE, ResultRow, append_row

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelectionFacts:
    """What the selection and pre-training shared by a group of cells produced: the subset,
    its file record (diagnostics, composition, seconds) and the pre-training record."""

    subset: Subset
    meta: dict[str, Any]
    pretrain: dict[str, Any]


def make_row(ctx: RunContext, cell: "Cell", started_at: str, outcome: Evaluation | BaseException,
         facts: SelectionFacts | None = None, stage: str | None = None) -> ResultRow:
    """The one place a result row is made: selection, failed and reference rows alike.

    ``outcome`` is the cell's evaluation or the exception that failed it (in ``stage``);
    ``facts`` what its selection and pre-training produced, when they ran.
    """
    protocol = ctx.protocol
    task_cls = discovery.get("task", cell.task.name)
    selector = cell.selector
    row = ResultRow(
        key=cell.key, status="ok" if isinstance(outcome, Evaluation) else "failed",
        kind="reference" if cell.reference else "selection", dataset=protocol.pool.name, selector=cell.label,
        selector_name=selector.name if selector else None,
        selector_version=_version("selector", selector.name) if selector else None,
        selector_params=dict(selector.params) if selector else {},
        checkpoint=cell.reference.checkpoint if cell.reference else None,
        backbone=protocol.backbone.name, backbone_version=_version("backbone", protocol.backbone.name),
        backbone_model=protocol.backbone.params.get("model"), task=cell.task.name,
        task_version=_version("task", cell.task.name), task_dataset=cell.task.dataset_key, ratio=cell.ratio,
        seed=cell.seed, pretrain_epoch=cell.pretrain_epoch, n_pool=len(ctx.pool),
        n_selected=0 if cell.reference else None, metric=task_cls.metric,
        higher_is_better=bool(task_cls.higher_is_better), started_at=started_at, finished_at=utc_now(), env=ctx.env)
    if facts is not None:
        subset, meta, pre = facts.subset, facts.meta, facts.pretrain
        row.n_selected, row.subset_sha256 = subset.size, subset.sha256
        row.ids_sha256, row.pool_ids_sha256 = subset.ids_sha256, subset.pool_ids_sha256
        row.selection = {"diagnostics": meta.get("diagnostics", {}), "composition": meta.get("composition")}
        if meta.get("coverage"):
            row.selection["coverage"] = meta["coverage"]
        if meta.get("kind") == "derived":
            row.selection["derived"] = {"manifest": meta["manifest"], "n_images": subset.size,
                                        "patch_sources": meta.get("patch_sources")}
        row.pretrain = {k: pre.get(k) for k in ("steps", "epochs", "loss_first", "loss_last",
                                                "heldout_recon_loss", "heldout", "precision")}
        if meta.get("embedding_quality"):
            row.selection["embedding_quality"] = meta["embedding_quality"]
        row.time_s = {"select": meta.get("select_seconds"), "pretrain": pre["seconds"], **_selection_costs(meta)}
    if isinstance(outcome, Evaluation):
        row.metrics, row.fit, row.cross_dataset = outcome.metrics, outcome.fit, outcome.cross_dataset
        row.normdel = outcome.normdel
        row.time_s = {**row.time_s, "task": outcome.seconds}
    else:
        row.error = f"{type(outcome).__name__}: {one_line(str(outcome))}"
        row.stage = stage
        logger.error("cell %s failed in %s: %s", cell.key, stage, row.error)
        row.traceback = "".join(traceback.format_exception(type(outcome), outcome, outcome.__traceback__))[-4000:]
    return row


def _selection_costs(meta: dict[str, Any]) -> dict[str, float]:
    """The selection's cost by stage, for ``row.time_s``: ``select_warmup`` (the scoring
    model's warm-up, for selectors that read the backbone) and ``select_<stage>`` for each
    stage a selector reports in ``diagnostics['stage_cost_seconds']`` (compute seconds; a
    stage that came from a cache counts what it cost when computed)."""
    costs = {}
    if meta.get("warmup_seconds") is not None:
        costs["select_warmup"] = float(meta["warmup_seconds"])
    for stage, seconds in ((meta.get("diagnostics") or {}).get("stage_cost_seconds") or {}).items():
        costs[f"select_{stage}"] = float(seconds)
    return costs


def _version(kind: str, name: str) -> str:
    return str(getattr(discovery.get(kind, name), "version", "0"))


def record_row(ctx: RunContext, row: ResultRow) -> ResultRow:
    """Append the row, then tell every observer: in-process ones and ``delbench_cell_finished``
    plugins, each on its own (one that raises is logged, the others still hear of the row)."""
    if ctx.record is not None:
        ctx.record(row)
    else:
        append_row(ctx.work_dir / ROWS_FILE, row)
    record = row.to_json()
    # each implementation is called on its own: pluggy's hook call would stop at the first
    # one that raises, silencing every observer registered after it
    hook = discovery.registries().manager.hook.delbench_cell_finished
    calls = [(f"observer {observer!r}", functools.partial(observer, record)) for observer in ctx.observers]
    calls += [(f"plugin {impl.plugin_name!r}", functools.partial(impl.function, row=record))
              for impl in hook.get_hookimpls()]
    for name, call in calls:
        try:
            call()
        except Exception as exc:  # an observer must not stop the sweep or silence the others
            logger.warning("%s failed on %s (the other observers still ran): %s: %s", name, row.key,
                           type(exc).__name__, exc)
    return row
