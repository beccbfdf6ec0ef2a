"""What the stages of one run share, and opening a run: the protocol, the work and cache
folders, the pool and every dataset (opened before any work), the environment, the observers;
the header written (or, on ``--resume``, checked) and killed runs' temporaries removed."""
from __future__ import annotations

import contextlib
import logging
import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from delbench import __version__, discovery
from delbench.errors import DelbenchError
from delbench.protocol import PluginSpec, Protocol, content_hash
from delbench.sdk.contracts import pretrain_takes
from delbench.sdk.files import atomic_write_json, atomic_write_text, remove_orphan_temporaries
from delbench.sdk.subsets import ids_sha256
from delbench.store import (HEADER_FILE, ROWS_FILE, SCHEMA_VERSION, ResultRow, read_header, repair_rows_file,
                            write_split_file)

logger = logging.getLogger(__name__)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _cpu_model() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    import torch
    import timm

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"python": platform.python_version(), "platform": platform.platform(), "delbench": __version__,
            "torch": torch.__version__, "timm": timm.__version__, "numpy": np.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cpu": _cpu_model(),
            "gpus": gpus}


@dataclass
class RunContext:
    """What the stages of one run share: where files go, the pool, cached artefacts."""

    protocol: Protocol
    work_dir: Path
    cache_dir: Path
    progress: bool
    pool: Any = None
    #: the pool's ids in pool order and their digest (``delbench.sdk.subsets``), listed once per run
    pool_ids: list[str] = field(default_factory=list)
    pool_ids_sha256: str = ""
    datasets: dict[str, Any] = field(default_factory=dict)
    embeddings: np.ndarray | None = None
    embedding_backbone: Any = None
    #: seconds the embedding/scoring backbone's warm-up took (recorded with it; 0: a checkpoint)
    warmup_seconds: float = 0.0
    #: how well the selectors' embeddings know the pool's planted scenes (None: no ground truth)
    embedding_quality: dict[str, Any] | None = None
    #: clean images no cell pre-trains on, for the held-out reconstruction loss, and their name
    heldout: tuple[np.ndarray, str] | None = None
    env: dict[str, Any] = field(default_factory=dict)
    observers: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    #: where a finished row goes (None: appended to the work dir's results.jsonl); a launched
    #: job records each row in its own cell file instead (:mod:`delbench.run.launch`)
    record: Callable[[ResultRow], None] | None = None


def open_dataset(ctx: RunContext, spec: PluginSpec, split: str) -> Any:
    """A dataset split, opened once per run; its train/test split, if it has one, is kept as a
    split file now (building a dataset writes nothing)."""
    key = content_hash([spec, split])
    if key not in ctx.datasets:
        dataset = discovery.create("dataset", spec.name, spec.params, **ctx.protocol.dataset_arguments(spec, split))
        write_split_file(dataset.split_record())
        ctx.datasets[key] = dataset
    return ctx.datasets[key]


def prepare_work_dir(ctx: RunContext, resume: bool, config_text: str | None) -> None:
    protocol, work_dir = ctx.protocol, ctx.work_dir
    header_path = work_dir / HEADER_FILE
    if header_path.is_file():
        header = read_header(work_dir)
        if not resume:
            raise DelbenchError(f"{work_dir} already holds a run; pass --resume to continue it or "
                                f"choose another --work-dir")
        if header.get("config_sha256") != protocol.sha256:
            raise DelbenchError(f"{work_dir} holds a run of a different config (config_sha256 "
                                f"{header.get('config_sha256', '?')[:12]} ≠ {protocol.sha256[:12]}); "
                                f"use a new --work-dir")
        if header.get("pool_ids_sha256") != ctx.pool_ids_sha256:
            raise DelbenchError(f"{work_dir} was run on another pool (pool_ids_sha256 "
                                f"{str(header.get('pool_ids_sha256'))[:12]} ≠ {ctx.pool_ids_sha256[:12]}): the pool "
                                f"changed or was reordered since; use a new --work-dir")
        if repair_rows_file(work_dir / ROWS_FILE):
            logger.warning("%s ended in a half-written row (killed run); moved it to %s.partial",
                           work_dir / ROWS_FILE, ROWS_FILE)
        return
    work_dir.mkdir(parents=True, exist_ok=True)
    registries = discovery.registries()
    versions = {kind: {name: registries[kind].describe(name)["version"] for name in registries[kind].names()}
                for kind in discovery.KINDS}
    header = {"schema_version": SCHEMA_VERSION, "protocol": protocol.name, "protocol_version": protocol.version,
              "config_sha256": protocol.sha256, "delbench_version": __version__, "plugin_versions": versions,
              "n_pool": len(ctx.pool), "pool_ids_sha256": ctx.pool_ids_sha256,
              "created_at": utc_now(), "env": ctx.env, "protocol_config": protocol.to_dict()}
    if config_text is not None:
        atomic_write_text(work_dir / "config.py", config_text)
    atomic_write_json(header_path, header)


def start_run(protocol: Protocol, work_dir: Path, resume: bool, config_text: str | None, progress: bool,
              observers: list[Callable[[dict[str, Any]], None]] | None = None, *,
              prepare: bool = True) -> RunContext:
    """Open a run: clear killed runs' temporaries, open every dataset, write (or check) the
    header. With ``prepare=False`` (a launched job: the launcher holds the lock and prepared
    the work dir) only the datasets are opened and the header is checked against the protocol."""
    cache_dir = Path(protocol.runtime.get("cache_dir") or work_dir / "cache")
    if prepare:
        _remove_orphans(work_dir, cache_dir)
    backbone = discovery.get("backbone", protocol.backbone.name)
    if protocol.execution.checkpoint_every and not pretrain_takes(backbone, "resume_dir"):
        logger.warning("backbone %r cannot resume pre-training (its pretrain takes no resume_dir): a killed "
                       "pre-training restarts from step 0", protocol.backbone.name)
    ctx = RunContext(protocol, work_dir, cache_dir, progress, observers=list(observers or []))
    # Every dataset is opened before anything is written or trained: a missing root or a
    # broken layout is one clear error now, not a failed cell hours into the run.
    ctx.pool = open_dataset(ctx, protocol.pool, "all")
    ctx.pool_ids = list(ctx.pool.item_ids())
    ctx.pool_ids_sha256 = ids_sha256(ctx.pool_ids)
    if len(set(ctx.pool_ids)) != len(ctx.pool_ids):
        raise DelbenchError(f"pool '{protocol.pool.name}' has repeated item ids: a subset could not name its images")
    for task in protocol.tasks:
        open_dataset(ctx, task.dataset, task.train_split)
        open_dataset(ctx, task.dataset, task.test_split)
    ctx.env = environment()
    if prepare:
        prepare_work_dir(ctx, resume, config_text)
    elif read_header(work_dir).get("config_sha256") != protocol.sha256:
        raise DelbenchError(f"{work_dir} holds a run of another config than this job's; the launcher and its jobs "
                            f"must load the same config")
    return ctx


def _remove_orphans(work_dir: Path, cache_dir: Path) -> None:
    # temporaries whose process is gone were left by a killed run; the lock is ours, so in the
    # work dir the pid-less ones of older versions are orphans too (a cache dir outside it,
    # runtime.cache_dir, may be shared with other runs: there only those of dead processes)
    removed = remove_orphan_temporaries(work_dir, legacy=True) + remove_orphan_temporaries(cache_dir)
    if removed:
        logger.info("removed %d temporary file(s) left by killed runs: %s", len(removed),
                    ", ".join(str(p) for p in removed[:5]) + (" …" if len(removed) > 5 else ""))


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators, as the runner does before every
    stage whose result must not depend on what ran before it."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
