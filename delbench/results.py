"""Result files of a run: versioned JSON/JSONL, atomic writes, reading and verification.

A run directory holds::

    run.json          header: schema_version, protocol, protocol_version, config_sha256,
                      package and plugin versions, environment, the validated protocol
    config.py         the resolved config (mmengine dump) that produced it
    results.jsonl     one row per finished cell (appended as each cell ends)
    subsets/*.npy     the selected indices of every (selector, ratio, seed), + subsets.json hashes
    derived/<sha>/    a generative selector's images (<sha256>.png) and manifest.json, named by
                      the manifest's sha256 (the row's subset_sha256); indexed in subsets.json
    summary.json      aggregated table (written atomically by `delbench report`)
    report.md         the Markdown report
    scores.png        score and NormDEL against the ratio, per selector

Rows are never rewritten: a re-run cell (a failed one retried on ``--resume``) appends a
new row and readers keep the last row per ``key``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from delbench.errors import DelbenchError

logger = logging.getLogger(__name__)

#: 2.0: one typed row (ResultRow) for selection, failed and reference rows alike, with the
#: subset's id digests, plugin versions and the task's metric direction
SCHEMA_VERSION = "2.0"
HEADER_FILE, ROWS_FILE, SUBSETS_FILE = "run.json", "results.jsonl", "subsets.json"
#: where a run keeps derived subsets (generative selectors' images): ``derived/<manifest sha256>/``
DERIVED_DIR = "derived"
SUMMARY_FILE, REPORT_FILE, PLOT_FILE = "summary.json", "report.md", "scores.png"
#: split files go to $DELBENCH_CACHE_DIR/splits (default ~/.cache/delbench/splits)
CACHE_ENV = "DELBENCH_CACHE_DIR"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(value: Any) -> Any:
    """NaN/inf → None, recursively (numpy values included): result files are strict JSON."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@dataclass
class ResultRow:
    """One line of ``results.jsonl``: a cell of the run (a selection evaluated on a task, at
    the end of pre-training or at a checkpoint epoch) or a reference encoder on a task.

    Written in one place (``delbench.runner``), read by the report, ``verify`` and
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
    - the subset (``delbench.subset``): ``n_pool``, ``n_selected``, ``subset_sha256``,
      ``ids_sha256``, ``pool_ids_sha256``, ``selection`` (the selector's ``diagnostics`` and
      the pool ``composition`` it kept, where the pool has planted kinds; for a derived
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
      ``started_at``, ``finished_at``, ``env``; ``error`` and ``traceback`` when failed.
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
        """A row read back; keys this version does not know (a newer minor schema) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(_finite(value), default=_json_default, allow_nan=False, **kwargs)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temporary file in the same directory and rename: never a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared and read
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, value: Any) -> None:
    atomic_write_text(path, dumps(value, indent=2, sort_keys=True) + "\n")


def cache_base() -> Path:
    """The machine-wide cache: ``$DELBENCH_CACHE_DIR``, else ``~/.cache/delbench`` (split
    files, OptiDEL's proposals and scores, ``delbench select``'s scoring warm-ups)."""
    base = os.environ.get(CACHE_ENV)
    return Path(base).expanduser() if base else Path("~/.cache/delbench").expanduser()


def split_files_dir() -> Path:
    """Where split files go: ``$DELBENCH_CACHE_DIR/splits``, else ``~/.cache/delbench/splits``."""
    return cache_base() / "splits"


def write_split_file(record: Any, directory: str | Path | None = None) -> Path | None:
    """Keep a dataset's train/test split (``Dataset.split_record()``) as a JSON split file.

    The explicit step that records a split: ``delbench run`` calls it for every dataset it
    opens and ``delbench data check`` for the dataset it checks; building a dataset writes
    nothing. The file is ``<dataset>-<sha256[:16]>.json`` in ``directory`` (default
    :func:`split_files_dir`), written atomically and readable (0644) like every result file; a
    file of that name already holds the same split and is kept. ``record`` None (a dataset
    without a train/test split) writes nothing. A split file that cannot be written does not
    stop a run (the split itself is determined by the ids): it is logged and None returned.
    """
    if record is None:
        return None
    directory = split_files_dir() if directory is None else Path(directory)
    path = directory / f"{record['dataset']}-{record['sha256'][:16]}.json"
    if path.is_file():
        return path
    try:
        atomic_write_json(path, record)
    except OSError as exc:
        logger.warning("%s: cannot write split file to %s (%s); set %s to a writable folder",
                       record["dataset"], directory, exc, CACHE_ENV)
        return None
    return path


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def append_row(path: str | Path, row: ResultRow) -> None:
    """Append one JSON line and fsync, so a killed run loses at most the cell in progress."""
    line = dumps(row.to_json(), sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def repair_rows_file(path: str | Path) -> bool:
    """Cut an unterminated last line (a writer killed mid-row) off a results.jsonl.

    The fragment is kept beside it as ``results.jsonl.partial`` so nothing disappears
    silently; returns whether a repair was needed.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return False
    cut = data.rfind(b"\n") + 1
    with open(path.with_name(path.name + ".partial"), "ab") as handle:
        handle.write(data[cut:] + b"\n")
    with open(path, "r+b") as handle:
        handle.truncate(cut)
    return True


def iter_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a results.jsonl; a truncated last line (a killed writer) is skipped."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        lines = handle.readlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not line.endswith("\n"):
                continue  # the interrupted final write
            raise DelbenchError(f"{path}:{number}: not a JSON line") from None


def latest_rows(rows: Iterable[ResultRow]) -> list[ResultRow]:
    """Last row per cell key, in first-seen order."""
    latest: dict[str, ResultRow] = {}
    for row in rows:
        latest[row.key] = row
    return list(latest.values())


def read_header(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / HEADER_FILE
    if not path.is_file():
        raise DelbenchError(f"{run_dir} is not a delbench run directory (no {HEADER_FILE})")
    header = json.loads(path.read_text(encoding="utf-8"))
    major = str(header.get("schema_version", "0")).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise DelbenchError(f"{path}: schema_version {header.get('schema_version')} is not readable by "
                            f"this delbench (schema {SCHEMA_VERSION})")
    return header


def read_rows(run_dir: str | Path) -> list[ResultRow]:
    return latest_rows(ResultRow.from_json(data) for data in iter_rows(Path(run_dir) / ROWS_FILE))


def _reopened_pool_ids(header: dict[str, Any]) -> tuple[list[str] | None, str | None]:
    """The ids of the run's pool, re-opened here from its recorded protocol (its data root
    must exist on this machine), or None and why it could not be opened."""
    from delbench import plugins

    spec = header.get("protocol_config", {}).get("pool") or {}
    try:
        pool = plugins.create("dataset", spec["name"], spec.get("params", {}), where="pool", split="all")
        return list(pool.item_ids()), None
    except (DelbenchError, KeyError) as exc:
        return None, (f"pool {spec.get('name')!r} could not be re-opened to check its ids ({exc}); "
                      f"pass --no-pool to check the hashes alone")


def _verify_derived_entry(run_dir: Path, entry: dict[str, Any], pool_ids: list[str] | None) -> list[str]:
    """A derived subset of a run against its record: the manifest's sha256, every image's
    pixels (``delbench.subset.verify_derived``), the image count, the ids digest and, with
    ``pool_ids``, its sources in the pool."""
    from delbench.subset import ids_sha256, verify_derived

    manifest = run_dir / entry["manifest"]
    problems = verify_derived(manifest.parent, entry["sha256"], pool_ids=pool_ids)
    if problems or not manifest.is_file():
        return [f"{entry['manifest']}: {p.replace(str(manifest.parent) + '/', '')}" for p in problems]
    images = json.loads(manifest.read_bytes())["images"]
    if len(images) != entry.get("n_selected"):
        problems.append(f"{entry['manifest']}: {len(images)} images, recorded {entry.get('n_selected')}")
    if ids_sha256(sorted(image["sha256"] for image in images)) != entry.get("ids_sha256"):
        problems.append(f"{entry['manifest']}: its images' ids_sha256 differs from the recorded one")
    return problems


def verify_run(run_dir: str | Path, *, check_pool: bool = True) -> list[str]:
    """Recompute what a run's files let one recompute; return the problems (empty: all match).

    ``run.json``'s config_sha256 against its recorded protocol; every subset file's sha256
    and size against ``subsets/subsets.json``; every ok row against the subset it names
    (``subset_sha256``, ``ids_sha256``, ``pool_ids_sha256``); every derived subset's manifest
    and images (an altered, missing or replaced image is reported). With ``check_pool`` the
    pool is re-opened from the recorded protocol: its ``pool_ids_sha256`` must still be the
    run's (otherwise the pool changed or was reordered since), and each subset's indices (a
    derived subset's sources) must still name the images it selected (``ids_sha256``).
    """
    from delbench.config import protocol_sha256
    from delbench.subset import ids_sha256, selected_ids_sha256, subset_sha256

    run_dir = Path(run_dir)
    header = read_header(run_dir)
    problems: list[str] = []
    recomputed = protocol_sha256(header.get("protocol_config", {}))
    if recomputed != header.get("config_sha256"):
        problems.append(f"{HEADER_FILE}: config_sha256 {header.get('config_sha256')} does not match the "
                        f"recorded protocol ({recomputed})")
    pool_ids = None
    if check_pool:
        pool_ids, problem = _reopened_pool_ids(header)
        if problem:
            problems.append(problem)
        elif ids_sha256(pool_ids) != header.get("pool_ids_sha256"):
            problems.append(f"the pool changed or was reordered since the run: its pool_ids_sha256 is now "
                            f"{ids_sha256(pool_ids)}, the run recorded {header.get('pool_ids_sha256')} "
                            f"({len(pool_ids)} items now, {header.get('n_pool')} then)")
    subsets_path = run_dir / "subsets" / SUBSETS_FILE
    recorded = json.loads(subsets_path.read_text()) if subsets_path.is_file() else {}
    for entry in sorted(recorded.values(), key=lambda e: e.get("file") or e.get("manifest") or ""):
        if entry.get("kind") == "derived":
            problems += _verify_derived_entry(run_dir, entry, pool_ids)
            continue
        file = run_dir / "subsets" / entry["file"]
        if not file.is_file():
            problems.append(f"subsets/{entry['file']}: missing")
            continue
        indices = np.load(file, allow_pickle=False)
        actual = subset_sha256(indices)
        if actual != entry["sha256"]:
            problems.append(f"subsets/{entry['file']}: sha256 {actual} != recorded {entry['sha256']}")
        if indices.size != entry.get("n_selected", indices.size):
            problems.append(f"subsets/{entry['file']}: {indices.size} indices, recorded {entry['n_selected']}")
        if pool_ids is not None:
            if indices.size and (indices.min() < 0 or indices.max() >= len(pool_ids)):
                problems.append(f"subsets/{entry['file']}: indices beyond the pool's {len(pool_ids)} items")
            elif selected_ids_sha256(pool_ids, indices) != entry.get("ids_sha256"):
                problems.append(f"subsets/{entry['file']}: its indices name other images in the pool now "
                                f"(ids_sha256 {selected_ids_sha256(pool_ids, indices)} != recorded "
                                f"{entry.get('ids_sha256')})")
    by_hash = {entry["sha256"]: entry for entry in recorded.values()}
    for row in read_rows(run_dir):  # reference rows use no subset
        if not row.ok or row.subset_sha256 is None:
            continue
        entry = by_hash.get(row.subset_sha256)
        if entry is None:
            problems.append(f"row {row.key}: subset_sha256 {row.subset_sha256} has no subset file")
        elif (row.ids_sha256, row.pool_ids_sha256) != (entry.get("ids_sha256"), entry.get("pool_ids_sha256")):
            problems.append(f"row {row.key}: ids_sha256/pool_ids_sha256 differ from its subset's")
    return problems
