"""Launchers: a protocol's cells as separate processes, through submitit (local, debug, SLURM).

The unit of a job is a selection group (selector, ratio, seed: one selection and one
pre-training shared by its task rows, :func:`delbench.plan_groups`), plus one job for
the reference encoders. A job runs the sweep's own functions on its group and records each
row in its own cell file, ``<work_dir>/cells/<sha256 of the cell key>.json`` (atomically), so
jobs never share a file they write. The launcher alone holds the work dir's lock, writes the
header before any job starts and, once the jobs are over, merges the cell files into
``results.jsonl`` in plan order (:func:`merge_cells`: one writer; a row already there is not
appended twice). A re-run or a resubmitted array skips the cells finished in either place.

Executors are submitit's: ``local`` (``LocalExecutor``: processes on this machine; it starts
every submitted job at once, so at most ``max_parallel`` are submitted at a time), ``debug``
(``DebugExecutor``: in this process, one after another, for tests and pdb) and ``slurm``
(``AutoExecutor`` job array, ``slurm_array_parallelism`` bounding it). delbench schedules
nothing itself. submitit is an optional extra (``pip install delbench[launch]``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from delbench.errors import ConfigError, DelbenchError
from delbench.protocol import check_plugins, check_values, load_protocol
from delbench.run.context import seed_everything, start_run
from delbench.run.plan import group_cells, plan_groups, reference_cells
from delbench.run.select import rebuild_subset_index
from delbench.run.sweep import run_references, run_selection
from delbench.sdk.files import atomic_write_json
from delbench.store import ROWS_FILE, ResultRow, append_row, lock_work_dir, read_rows

logger = logging.getLogger(__name__)

CELLS_DIR = "cells"
LAUNCHERS = ("inprocess", "local", "debug", "slurm")


def cell_path(work_dir: str | Path, key: str) -> Path:
    """Where a launched job records the row of cell ``key``."""
    return Path(work_dir) / CELLS_DIR / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def write_cell(work_dir: str | Path, row: ResultRow) -> None:
    atomic_write_json(cell_path(work_dir, row.key), row.to_json())


def read_cell(work_dir: str | Path, key: str) -> ResultRow | None:
    path = cell_path(work_dir, key)
    return ResultRow.from_json(json.loads(path.read_text())) if path.is_file() else None


@dataclass(frozen=True)
class SlurmOptions:
    """What ``--launcher slurm`` asks the queue for (submitit's AutoExecutor parameters)."""

    partition: str | None = None
    array_parallelism: int = 16
    timeout_min: int = 24 * 60
    gpus_per_node: int = 0
    cpus_per_task: int = 8
    mem_gb: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def parameters(self) -> dict[str, Any]:
        """The keyword arguments of ``AutoExecutor.update_parameters``."""
        params: dict[str, Any] = {"timeout_min": self.timeout_min, "gpus_per_node": self.gpus_per_node,
                                  "cpus_per_task": self.cpus_per_task, "tasks_per_node": 1, "nodes": 1,
                                  "slurm_array_parallelism": self.array_parallelism, "name": "delbench"}
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.mem_gb:
            params["mem_gb"] = self.mem_gb
        return {**params, **self.extra}


@dataclass(frozen=True)
class Job:
    """One job: the config the launcher loaded (file and overrides), the work dir, and the
    index of its selection group (``len(groups)``: the reference encoders)."""

    config: str
    cfg_options: dict[str, Any]
    work_dir: str
    group: int


def _done_keys(work_dir: Path, keys: list[str]) -> set[str]:
    done = {row.key for row in read_rows(work_dir) if row.ok}
    for key in keys:
        if key not in done:
            row = read_cell(work_dir, key)
            if row is not None and row.ok:
                done.add(key)
    return done


def run_job(job: Job) -> int:
    """In the job's process: run one group's unfinished cells, each row to its cell file."""
    protocol, _ = load_protocol(job.config, job.cfg_options)
    work_dir = Path(job.work_dir)
    ctx = start_run(protocol, work_dir, True, None, False, prepare=False)
    ctx.record = lambda row: write_cell(work_dir, row)
    groups = plan_groups(protocol)
    seed_everything(min(protocol.seeds))
    if job.group < len(groups):
        cells = group_cells(protocol, groups[job.group])
        rows = run_selection(ctx, groups[job.group], _done_keys(work_dir, [c.key for c in cells]))
    else:
        cells = reference_cells(protocol)
        rows = run_references(ctx, _done_keys(work_dir, [c.key for c in cells]))
    return len(rows)


def merge_cells(work_dir: Path, protocol: Any) -> list[ResultRow]:
    """Append the cell files' rows to results.jsonl in plan order (the caller holds the lock);
    a row already there (same key and finish time) is skipped. Returns the rows appended."""
    present = {(row.key, row.finished_at) for row in read_rows(work_dir)}
    cells = [c for group in plan_groups(protocol) for c in group_cells(protocol, group)]
    cells += reference_cells(protocol)
    merged = []
    for cell in cells:
        row = read_cell(work_dir, cell.key)
        if row is not None and (row.key, row.finished_at) not in present:
            append_row(work_dir / ROWS_FILE, row)
            merged.append(row)
    return merged


def make_executor(launcher: str, folder: Path, slurm: SlurmOptions = SlurmOptions()):
    """submitit's executor for ``launcher`` (a clear message when submitit is missing)."""
    try:
        import submitit
    except ImportError:
        raise ConfigError(f"--launcher {launcher} needs submitit: pip install 'delbench[launch]'") from None
    if launcher == "local":
        return submitit.LocalExecutor(folder)
    if launcher == "debug":
        return submitit.DebugExecutor(folder)
    if launcher == "slurm":
        executor = submitit.AutoExecutor(folder, cluster="slurm")
        executor.update_parameters(**slurm.parameters())
        return executor
    raise ConfigError(f"unknown launcher {launcher!r}; choose one of {LAUNCHERS}")


def launch(protocol: Any, config: str | Path, cfg_options: dict[str, Any], work_dir: str | Path, *,
           launcher: str, resume: bool = False, config_text: str | None = None, max_parallel: int = 1,
           slurm: SlurmOptions = SlurmOptions(), poll_s: float = 0.5) -> list[ResultRow]:
    """Run ``protocol``'s unfinished groups as submitit jobs, then merge their cell files.

    Returns the rows merged into results.jsonl this time. Jobs that fail outside a cell (the
    runner records cell failures as rows) are logged and named in the error raised after
    the merge, so what finished is kept.
    """
    if max_parallel < 1:
        raise ConfigError(f"--max-parallel must be at least 1, got {max_parallel}")
    work_dir = Path(work_dir)
    with lock_work_dir(work_dir):
        check_values(protocol)
        check_plugins(protocol)
        start_run(protocol, work_dir, resume, config_text, False)  # header, splits, orphans
        groups = plan_groups(protocol)
        jobs = []
        for index, cells in [*enumerate(plan_groups(protocol)), (len(groups), None)]:
            keys = [c.key for c in (group_cells(protocol, cells) if cells is not None
                                    else reference_cells(protocol))]
            if keys and not set(keys) <= _done_keys(work_dir, keys):
                jobs.append(Job(str(Path(config).resolve()), dict(cfg_options), str(work_dir.resolve()), index))
        logger.info("%s launcher: %d job(s) to run, %d group(s) already finished", launcher, len(jobs),
                    len(groups) + 1 - len(jobs))
        failures = _run_jobs(make_executor(launcher, work_dir / "submitit", slurm), jobs, launcher,
                             max_parallel, poll_s) if jobs else []
        rebuild_subset_index(work_dir)
        merged = merge_cells(work_dir, protocol)
    if failures:
        raise DelbenchError(f"{len(failures)} job(s) failed ({'; '.join(failures[:3])}); their logs are under "
                            f"{work_dir / 'submitit'}; the finished cells were merged, re-run with --resume")
    return merged


def _run_jobs(executor: Any, jobs: list[Job], launcher: str, max_parallel: int, poll_s: float) -> list[str]:
    """Submit ``jobs`` and wait for them; returns one line per failed job."""
    failures: list[str] = []

    def collect(job: Job, handle: Any) -> None:
        try:
            handle.result()
        except Exception as exc:  # a job's crash is recorded and the others go on
            failures.append(f"group {job.group}: {type(exc).__name__}: "
                            f"{(str(exc).strip().splitlines() or [''])[-1]}")
            logger.error("job for group %d failed: %s", job.group, exc)

    if launcher == "slurm":  # one array; the queue bounds it (slurm_array_parallelism)
        for job, handle in zip(jobs, executor.map_array(run_job, jobs)):
            collect(job, handle)
        return failures
    if launcher == "debug":  # DebugExecutor runs a job when its result is asked for
        for job in jobs:
            collect(job, executor.submit(run_job, job))
        return failures
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < max_parallel:  # LocalExecutor would start all at once
            job = pending.pop(0)
            running.append((job, executor.submit(run_job, job)))
        finished = [(job, handle) for job, handle in running if handle.done()]
        if not finished:
            time.sleep(poll_s)
            continue
        for job, handle in finished:
            running.remove((job, handle))
            collect(job, handle)
    return failures
