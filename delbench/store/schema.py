"""The result schema of a run: the files a run directory holds, the header's schema version,
and the one typed row (:class:`ResultRow`) every cell records.

The layout of a run directory is described once, in ``docs/results.md``; the names below are
its files. Rows are never rewritten: a re-run cell (a failed one retried on ``--resume``)
appends a new row and readers keep the last row per ``key`` (:mod:`delbench.store.rows`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from delbench.errors import DelbenchError

#: 2.0: one typed row (ResultRow) for selection, failed and reference rows alike, with the
#: subset's id digests, plugin versions and the task's metric direction; 2.1: ``stage`` (where
#: a failed cell failed)
SCHEMA_VERSION = "2.1"
#: the header, the rows (appended as each cell ends), and the index of the selections in ``subsets/``
HEADER_FILE, ROWS_FILE, SUBSETS_FILE = "run.json", "results.jsonl", "subsets.json"
#: where a run keeps derived subsets (generative selectors' images): ``derived/<manifest sha256>/``
DERIVED_DIR = "derived"
#: the report (``delbench report``): summary, Markdown, its HTML page, the first figure
SUMMARY_FILE, REPORT_FILE, PLOT_FILE = "summary.json", "report.md", "scores.png"
HTML_FILE = "report.html"


@dataclass
class ResultRow:
    """One line of ``results.jsonl``: a cell of the run (a selection evaluated on a task, at
    the end of pre-training or at a checkpoint epoch) or a reference encoder on a task.

    Written in one place (``delbench.run.rows``), read by the report, ``verify`` and
    ``--resume``; observers (``delbench_cell_finished``) receive :meth:`to_json`. A failed
    cell has ``status == "failed"``, its ``error`` and ``traceback``, and whatever was known
    before it failed. Field by field:

    - identity: ``key`` (unique per cell), ``kind`` ("selection" or "reference"),
      ``status`` ("ok" or "failed"), ``schema_version``;
    - what was run: ``dataset`` (the pool), ``selector`` (the label: registry name plus the
      protocol's parameters, or ``reference:<label>``), ``selector_name``,
      ``selector_version``, ``selector_params``, ``checkpoint`` (reference rows),
      ``backbone``, ``backbone_version``, ``backbone_model``, ``task``, ``task_version``,
      ``task_dataset``, ``ratio`` (None on reference rows), ``seed``, ``pretrain_epoch``
      (None: the end of pre-training);
    - the subset (:mod:`delbench.sdk.subsets`): ``n_pool``, ``n_selected``, ``subset_sha256``,
      ``ids_sha256``, ``pool_ids_sha256``, ``selection`` (the selector's ``diagnostics`` and
      the pool ``composition`` it kept, where the pool has planted kinds, and the
      ``coverage`` of its valid frames, where it has planted scenes or centres: groups of the
      pool with a valid frame and groups the subset kept one of; for a derived
      subset ``n_selected`` counts its images, ``subset_sha256`` is its manifest's sha256,
      the composition counts source frames and ``selection["derived"]`` gives the manifest's
      path and ``patch_sources``, the patches cut from frames of each kind);
    - results: ``metric`` (the task's), ``higher_is_better`` (its direction), ``metrics``,
      ``normdel`` (None on reference rows), ``cross_dataset`` (test dataset → metrics),
      ``pretrain`` (steps, epochs, first/last loss), ``fit`` (the task's statistics);
    - cost and provenance: ``time_s`` (seconds per stage: select, pretrain, task; for a
      selector that reads the backbone also ``select_warmup``, its scoring model's warm-up,
      and ``select_<stage>`` for the stages a selector reports, e.g. OptiDEL's
      ``select_proposal``, ``select_scoring``, ``select_synthesis``),
      ``started_at``, ``finished_at``, ``env``; ``error``, ``traceback`` and ``stage`` (the
      stage that failed: "select", "pretrain" or "evaluate") when failed.
    """

    key: str
    status: str
    kind: str = "selection"
    dataset: str | None = None
    selector: str | None = None
    selector_name: str | None = None
    selector_version: str | None = None
    selector_params: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    backbone: str | None = None
    backbone_version: str | None = None
    backbone_model: str | None = None
    task: str | None = None
    task_version: str | None = None
    task_dataset: str | None = None
    ratio: float | None = None
    seed: int | None = None
    pretrain_epoch: float | None = None
    n_pool: int | None = None
    n_selected: int | None = None
    subset_sha256: str | None = None
    ids_sha256: str | None = None
    pool_ids_sha256: str | None = None
    selection: dict[str, Any] | None = None
    metric: str | None = None
    higher_is_better: bool = True
    metrics: dict[str, float] = field(default_factory=dict)
    normdel: float | None = None
    cross_dataset: dict[str, dict[str, float]] = field(default_factory=dict)
    pretrain: dict[str, Any] | None = None
    fit: dict[str, Any] | None = None
    time_s: dict[str, float] = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    env: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    stage: str | None = None
    schema_version: str = SCHEMA_VERSION

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def score(self) -> float:
        """The value of the task's metric."""
        return self.metrics[self.metric]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ResultRow":
        """A row read back; keys this version does not know (a newer minor schema) are ignored.
        A row without its ``key`` and ``status``, or whose ``status``, ``metric`` or
        ``metrics`` have the wrong type, is a :class:`~delbench.errors.DelbenchError` saying
        which (the readers add the file and line)."""
        missing = [name for name in ("key", "status") if name not in data]
        if missing:
            raise DelbenchError(f"not a result row of schema {SCHEMA_VERSION}: "
                                f"no {' and no '.join(map(repr, missing))}")
        if not isinstance(data["key"], str) or data["status"] not in ("ok", "failed"):
            raise DelbenchError(f"not a result row of schema {SCHEMA_VERSION}: key {data['key']!r} must be a string "
                                f"and status {data['status']!r} 'ok' or 'failed'")
        if not isinstance(data.get("metrics", {}), dict) or not isinstance(data.get("metric", ""), (str, type(None))):
            raise DelbenchError(f"not a result row of schema {SCHEMA_VERSION}: metrics must be an object and metric "
                                f"a name, got {data.get('metrics')!r} and {data.get('metric')!r}")
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def read_header(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / HEADER_FILE
    if not path.is_file():
        raise DelbenchError(f"{run_dir} is not a delbench run directory (no {HEADER_FILE})")
    try:
        header = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else f"{exc.msg} at line {exc.lineno}"
        raise DelbenchError(f"{path} is not valid JSON ({reason}): the run's header is damaged") from None
    if not isinstance(header, dict):
        raise DelbenchError(f"{path} is not a run header (a JSON object), got {type(header).__name__}")
    major = str(header.get("schema_version", "0")).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise DelbenchError(f"{path}: schema_version {header.get('schema_version')} is not readable by "
                            f"this delbench (schema {SCHEMA_VERSION})")
    return header
