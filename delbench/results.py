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
    report.md         the Markdown report (report.html: the same, self-contained)
    scores.png        score and NormDEL against the ratio, per selector (and the other
                      figures of delbench.plots)
    .delbench.lock    the work-dir lock (pid, host, start time of the run holding it)

Rows are never rewritten: a re-run cell (a failed one retried on ``--resume``) appends a
new row and readers keep the last row per ``key``. A run holds the work directory's lock
(:class:`WorkDirLock`, ``.delbench.lock``) from start to end; every file is written through
:func:`atomic_path` (a temporary named after its process, renamed into place), and an I/O
error names the file.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from delbench.errors import DelbenchError, LockError, WriteError, one_line
from delbench.sdk.files import CACHE_ENV, atomic_write_json, cache_base, dumps, write_error

logger = logging.getLogger(__name__)

#: 2.0: one typed row (ResultRow) for selection, failed and reference rows alike, with the
#: subset's id digests, plugin versions and the task's metric direction; 2.1: ``stage`` (where
#: a failed cell failed)
SCHEMA_VERSION = "2.1"
HEADER_FILE, ROWS_FILE, SUBSETS_FILE = "run.json", "results.jsonl", "subsets.json"
#: where a run keeps derived subsets (generative selectors' images): ``derived/<manifest sha256>/``
DERIVED_DIR = "derived"
SUMMARY_FILE, REPORT_FILE, PLOT_FILE = "summary.json", "report.md", "scores.png"
HTML_FILE = "report.html"


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
    - the subset (``delbench.sdk.subsets``): ``n_pool``, ``n_selected``, ``subset_sha256``,
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
        """A row read back; keys this version does not know (a newer minor schema) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


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
    except WriteError as exc:
        logger.warning("%s: cannot write split file to %s (%s); set %s to a writable folder",
                       record["dataset"], directory, exc, CACHE_ENV)
        return None
    return path


def append_row(path: str | Path, row: ResultRow) -> None:
    """Append one JSON line and fsync, so a killed run loses at most the cell in progress.

    A write that fails part-way (disk full) is cut back to the previous end of the file, so
    no half line is left for the next row to be glued to, and raises a
    :class:`~delbench.errors.WriteError` naming the file.
    """
    line = (dumps(row.to_json(), sort_keys=True) + "\n").encode("utf-8")
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        end = os.fstat(fd).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)
            raise write_error(path, exc) from None
    finally:
        os.close(fd)


LOCK_FILE = ".delbench.lock"


class WorkDirLock:
    """Exclusive use of a work directory by one process, for the whole run.

    The exclusion is ``fcntl.flock`` on ``<work_dir>/.delbench.lock``: the kernel releases
    it when the holder exits in any way (a crash or ``kill -9`` included), so a lock can
    never outlive its process. The file's content (JSON: pid, host, start time) only serves
    the messages: a second run is refused naming the holder, and a run that finds content
    but gets the lock knows its previous holder died without releasing it (a stale lock)
    and says so. Releasing empties the file and keeps it: removing it would let a process
    that opened it just before lock an unlinked file while a third locks a new one.

    Re-entrant within a process (the CLI holds it around the run and its report, and the
    runner takes it too).
    """

    _held: dict[str, "WorkDirLock"] = {}

    def __init__(self, work_dir: str | Path) -> None:
        self.work_dir = Path(work_dir)
        self.path = self.work_dir / LOCK_FILE
        self._fd: int | None = None
        self._depth = 0

    @classmethod
    def of(cls, work_dir: str | Path) -> "WorkDirLock":
        key = os.path.realpath(work_dir)
        return cls._held.get(key) or cls(work_dir)

    def _holder(self, fd: int) -> dict[str, Any]:
        data = os.pread(fd, 4096, 0)
        try:
            return json.loads(data) if data.strip() else {}
        except ValueError:
            return {"pid": "?", "note": "unreadable lock file"}

    def acquire(self) -> None:
        import fcntl
        import socket

        if self._depth:
            self._depth += 1
            return
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_error(self.path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise LockError(f"{self.work_dir} is in use by another delbench run (pid {holder.get('pid', '?')} on "
                            f"{holder.get('host', '?')}, started {holder.get('started_at', '?')}); wait for it "
                            f"to finish or choose another --work-dir") from None
        previous = self._holder(fd)
        if previous:
            logger.warning("%s: taking over a stale lock: pid %s on %s (started %s) ended without releasing "
                           "it", self.work_dir, previous.get("pid", "?"), previous.get("host", "?"),
                           previous.get("started_at", "?"))
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode() + b"\n", 0)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise write_error(self.path, exc) from None
        self._fd, self._depth = fd, 1
        WorkDirLock._held[os.path.realpath(self.work_dir)] = self

    def release(self) -> None:
        import fcntl

        if not self._depth:
            return
        self._depth -= 1
        if self._depth:
            return
        WorkDirLock._held.pop(os.path.realpath(self.work_dir), None)
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(OSError):  # an empty file reads as "not held" (see above)
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "WorkDirLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock_work_dir(work_dir: str | Path) -> WorkDirLock:
    """The lock of ``work_dir`` (a context manager; re-entrant within this process)."""
    return WorkDirLock.of(work_dir)


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
    from delbench import discovery

    spec = header.get("protocol_config", {}).get("pool") or {}
    try:
        pool = discovery.create("dataset", spec["name"], spec.get("params", {}), where="pool", split="all")
        return list(pool.item_ids()), None
    except (DelbenchError, KeyError) as exc:
        return None, (f"pool {spec.get('name')!r} could not be re-opened to check its ids ({exc}); "
                      f"pass --no-pool to check the hashes alone")


def _verify_derived_entry(run_dir: Path, entry: dict[str, Any], pool_ids: list[str] | None) -> list[str]:
    """A derived subset of a run against its record: the manifest's sha256, every image's
    pixels (``delbench.sdk.derived.verify_derived``), the image count, the ids digest and, with
    ``pool_ids``, its sources in the pool."""
    from delbench.sdk.derived import verify_derived
    from delbench.sdk.subsets import ids_sha256

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
    from delbench.protocol import protocol_sha256
    from delbench.sdk.subsets import ids_sha256, selected_ids_sha256, subset_sha256

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
    for entry in sorted(recorded.values(), key=lambda e: str(e.get("file") or e.get("manifest") or "")):
        if entry.get("kind") == "derived":
            manifest = entry.get("manifest")
            if not isinstance(manifest, str) or Path(manifest).is_absolute() or ".." in Path(manifest).parts:
                # a path from the file, never one that leads outside the run
                problems.append(f"subsets/{SUBSETS_FILE}: manifest path {manifest!r} is not inside the run")
            else:
                problems += _verify_derived_entry(run_dir, entry, pool_ids)
            continue
        if not isinstance(entry.get("file"), str) or Path(entry["file"]).name != entry["file"] \
                or entry["file"].startswith("."):  # a name from the file, never a path to read elsewhere
            problems.append(f"subsets/{SUBSETS_FILE}: file name {entry.get('file')!r} is not a plain file name")
            continue
        file = run_dir / "subsets" / entry["file"]
        if not file.is_file():
            problems.append(f"subsets/{entry['file']}: missing")
            continue
        try:
            indices = np.load(file, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:  # object arrays (pickles) are refused, never loaded
            problems.append(f"subsets/{entry['file']}: not a readable numeric .npy ({one_line(str(exc))})")
            continue
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
