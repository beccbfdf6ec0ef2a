"""Executing a protocol: cells = selector × ratio × seed × task, cached and resumable.

The work is organised by what can be shared:

1. the pool and (when a selector needs them) its embeddings, cached per (pool, backbone,
   checkpoint/warm-up) under the cache dir;
2. one selection per (selector, ratio, seed) → a :class:`~delbench.sdk.subsets.Subset` saved under
   ``subsets/``;
3. one pre-training per (subset hash, backbone, pre-training spec, seed), saved as a
   checkpoint, so e.g. ``random`` and ``meddel`` at ratio 1.0 reuse ``full``'s run;
4. one row per (subset, task, pre-training epoch) cell, appended to ``results.jsonl``.

Every cell has a stable key; ``resume`` skips keys already recorded with ``status == "ok"``.
A run holds the work directory's lock (:class:`delbench.store.WorkDirLock`) throughout and
first removes the temporaries that killed runs left behind.

Fault isolation: a cell whose selection, pre-training or task raises, returns something the
contract refuses (a bad subset, a non-finite metric) or runs past its stage's ``timeouts``
entry is recorded as ``failed`` with its ``stage`` and error, and the sweep goes on.

Timeouts use ``SIGALRM`` (``signal.setitimer``) in the main thread, which raises
:class:`~delbench.errors.StageTimeout` inside the stage. Chosen over running each stage in a
subprocess because a stage works on in-process state that a child would have to rebuild or
receive by pickling (the pool, memory-mapped embeddings, the model, RNG state that the
bitwise resume relies on) and would pay a torch import per stage; the cost of the choice is
that a stage blocked inside one long C call (a single huge matmul, a hung read) is stopped
only when that call returns to Python. Pre-training saves resumable states every
``pretrain.checkpoint_every`` steps, so a timed-out or killed pre-training continues where
it stopped on ``--resume``.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import platform
import re
import shutil
import signal
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from delbench import __version__, discovery
from delbench.protocol import (content_hash, EmbeddingSpec, PluginSpec, Protocol, ReferenceSpec, SelectorSpec, TaskSpec,
                               check_plugins, check_values)
from delbench.sdk.distributed import world_from_env
from delbench.errors import DelbenchError, StageTimeout, one_line
from delbench.sdk.metrics import normdel, scene_nn_agreement
from delbench.store import (DERIVED_DIR, HEADER_FILE, ROWS_FILE, ResultRow, SCHEMA_VERSION, SUBSETS_FILE, append_row,
                            lock_work_dir, read_header, read_rows, repair_rows_file, write_split_file)
from delbench.sdk.files import (atomic_path, atomic_save_npy, atomic_write_json, atomic_write_text, file_lock,
                                remove_orphan_temporaries)
from delbench.run.select import run_selector
from delbench.sdk.contracts import pretrain_takes
from delbench.sdk.derived import DerivedSubset, load_derived
from delbench.sdk.subsets import Subset, check_embeddings, ids_sha256, subset_sha256, subset_size

logger = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Cell:
    """One result row: a selection (selector, ratio, seed) evaluated on one task, or a
    reference encoder (``reference``; no selector, no ratio) on one task."""

    selector: SelectorSpec | None
    ratio: float | None
    seed: int
    task: TaskSpec
    pretrain_epoch: float | None = None  # None = the end of pre-training
    reference: ReferenceSpec | None = None

    @property
    def label(self) -> str:
        """What the report calls the row's selection: the selector label or ``reference:<label>``."""
        return f"reference:{self.reference.label}" if self.reference else self.selector.label

    @property
    def key(self) -> str:
        if self.reference:
            return f"{self.label}|seed={self.seed}|{self.task.label}"
        epoch = "" if self.pretrain_epoch is None else f"|epoch={self.pretrain_epoch:g}"
        return f"{self.label}|ratio={self.ratio:g}|seed={self.seed}|{self.task.label}{epoch}"


def plan_cells(protocol: Protocol) -> list[Cell]:
    """All final-checkpoint cells of a protocol, in a deterministic order."""
    return [Cell(selector, ratio, seed, task)
            for selector in protocol.selectors
            for ratio in protocol.selector_ratios(selector)
            for seed in protocol.selector_seeds(selector)
            for task in protocol.tasks]


def planned_cells(protocol: Protocol, n_pool: int) -> list[Cell]:
    """Every cell a complete run of ``protocol`` on a pool of ``n_pool`` items records: each
    cell of :func:`plan_cells`, then each of its checkpoint epochs that its subset's schedule
    reaches, and every reference encoder on every task and seed. ``delbench verify`` checks
    a run's rows against these keys."""
    cells = []
    for cell in plan_cells(protocol):
        cells.append(cell)
        n_selected = subset_size(n_pool, cell.ratio)
        cells += [Cell(cell.selector, cell.ratio, cell.seed, cell.task, epoch)
                  for epoch in protocol.pretrain.checkpoint_epochs
                  if protocol.pretrain.reaches(epoch, n_pool, n_selected)]
    cells += [Cell(None, None, seed, task, reference=reference)
              for reference in protocol.references for seed in protocol.seeds for task in protocol.tasks]
    return cells


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
    #: job records each row in its own cell file instead (:mod:`delbench.launch`)
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


# --- stage 1: embeddings ------------------------------------------------------------------
def embedding_key(protocol: Protocol) -> str:
    spec = protocol.embedding
    checkpoint = spec.checkpoint
    if checkpoint:
        stat = Path(checkpoint).stat()
        checkpoint = {"path": str(Path(checkpoint).resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime)}
    return content_hash({"pool": protocol.pool, "backbone": protocol.backbone, "checkpoint": checkpoint,
                  "warmup_steps": spec.warmup_steps, "dtype": spec.dtype,
                  "optimizer": protocol.pretrain.optimizer, "batch": protocol.pretrain.batch_size})


def warmed_backbone(pool: Any, backbone: PluginSpec, *, checkpoint: str | None, warmup_steps: int, batch_size: int,
                    optimizer: dict[str, Any], directory: Path, progress: bool = False) -> tuple[Any, float]:
    """The backbone selectors see, and what it cost: the given ``checkpoint``, or
    ``warmup_steps`` MAE steps on the whole pool (kept as ``directory/warmup.safetensors``,
    with its seconds in ``warmup.json``, so a cached warm-up still reports its cost).
    Returns ``(backbone, warm-up seconds)`` (0 for a checkpoint or no warm-up)."""
    # seeded here, not by whichever cell first needs features: the initial weights of the
    # warm-up (and so every embedding) must not depend on the cells that ran before
    seed_everything(0)
    model = discovery.create("backbone", backbone.name, backbone.params)
    warm, record = directory / "warmup.safetensors", directory / "warmup.json"
    seconds = 0.0
    if checkpoint:
        model.load(checkpoint)
    elif warmup_steps:
        if warm.is_file():
            model.load(warm)
            seconds = float(json.loads(record.read_text())["seconds"]) if record.is_file() else float("nan")
        else:
            logger.info("scoring/embedding backbone: %d MAE warm-up steps on the whole pool", warmup_steps)
            started = time.perf_counter()
            model.pretrain(pool, np.arange(len(pool)), steps=warmup_steps, batch_size=batch_size, seed=0,
                           optimizer=optimizer, progress=progress)
            seconds = time.perf_counter() - started
            model.save(warm)
            atomic_write_json(record, {"seconds": seconds, "steps": warmup_steps})
    return model, seconds


def embedding_backbone(ctx: RunContext):
    """The backbone selectors see: the given checkpoint, or a short MAE warm-up on the pool
    (its seconds in ``ctx.warmup_seconds``)."""
    if ctx.embedding_backbone is not None:
        return ctx.embedding_backbone
    spec: EmbeddingSpec = ctx.protocol.embedding
    ctx.embedding_backbone, ctx.warmup_seconds = warmed_backbone(
        ctx.pool, ctx.protocol.backbone, checkpoint=spec.checkpoint, warmup_steps=spec.warmup_steps,
        batch_size=ctx.protocol.pretrain.batch_size, optimizer=ctx.protocol.pretrain.optimizer,
        directory=ctx.cache_dir / "embeddings" / embedding_key(ctx.protocol), progress=ctx.progress)
    return ctx.embedding_backbone


def pool_embeddings(ctx: RunContext) -> np.ndarray:
    """Memory-mapped (n × d) embeddings of the pool, computed once per cache key."""
    if ctx.embeddings is not None:
        return ctx.embeddings
    from numpy.lib.format import open_memmap
    from tqdm.auto import tqdm

    spec = ctx.protocol.embedding
    directory = ctx.cache_dir / "embeddings" / embedding_key(ctx.protocol)
    path, manifest = directory / "embeddings.npy", directory / "manifest.json"
    if not manifest.is_file():
        backbone = embedding_backbone(ctx)
        n = len(ctx.pool)
        started = time.perf_counter()
        # atomic_path removes the temporary on any error: a diverged warm-up (check_embeddings
        # refuses NaN) must not leave a cache that every resume would reuse
        with atomic_path(path) as tmp:
            out = None
            for start in tqdm(range(0, n, spec.batch_size), desc="embed pool", disable=not ctx.progress,
                              leave=False):
                stop = min(n, start + spec.batch_size)
                features = backbone.embed(ctx.pool.load_images(np.arange(start, stop)))
                if out is None:
                    out = open_memmap(tmp, mode="w+", dtype=spec.dtype, shape=(n, features.shape[1]))
                out[start:stop] = features
            out.flush()
            try:
                check_embeddings(out, n)
            finally:
                del out
        atomic_write_json(manifest, {"pool": ctx.protocol.pool.name, "pool_params": ctx.protocol.pool.params,
                                     "backbone": ctx.protocol.backbone.name,
                                     "backbone_params": ctx.protocol.backbone.params,
                                     "checkpoint": spec.checkpoint, "warmup_steps": spec.warmup_steps,
                                     "n": n, "dtype": spec.dtype, "seconds": time.perf_counter() - started})
    ctx.embeddings = np.load(path, mmap_mode="r")
    scenes = ctx.pool.metadata().get("scene_id") if hasattr(ctx.pool, "metadata") else None
    if scenes is not None:
        ctx.embedding_quality = {"scene_nn_agreement": scene_nn_agreement(ctx.embeddings, scenes)}
    return ctx.embeddings


# --- stage 2: selection -------------------------------------------------------------------
def _composition(pool: Any, indices: np.ndarray) -> dict[str, dict[str, int]] | None:
    """Per planted kind: how many frames the pool has and how many the subset kept (for a
    derived subset: how many were a source of at least one of its images)."""
    kinds = pool.metadata().get("kind") if hasattr(pool, "metadata") else None
    if kinds is None:
        return None
    kinds = np.asarray(kinds).astype(str)
    kept = np.zeros(kinds.size, bool)
    kept[indices] = True
    return {str(k): {"pool": int((kinds == k).sum()), "kept": int((kept & (kinds == k)).sum())}
            for k in np.unique(kinds)}


def _patch_sources(pool: Any, subset: DerivedSubset) -> dict[str, int] | None:
    """Per planted kind: how many of a derived subset's patches were cut from frames of it."""
    kinds = pool.metadata().get("kind") if hasattr(pool, "metadata") else None
    if kinds is None:
        return None
    cut_from = [str(kinds[int(s["index"])]) for image in subset.manifest["images"] for s in image["sources"]]
    return {str(k): cut_from.count(str(k)) for k in np.unique(np.asarray(kinds).astype(str))}


def select_subset(ctx: RunContext, selector: SelectorSpec, ratio: float, seed: int) -> tuple[Subset, dict[str, Any]]:
    """Run (or reload) one selection; returns the subset and selection facts for the rows.

    An index subset is saved as ``subsets/<name>.npy``; a derived one (a generative
    selector's images) under ``derived/<manifest sha256>/``. Either way ``subsets/<name>.json``
    holds its facts and ``subsets/subsets.json`` indexes it for ``verify``."""
    label = selector.label
    # readable, plus a hash of the exact label: sanitising alone could map two labels to one file
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{label}_ratio{ratio:g}_seed{seed}") + f"_{content_hash([label, ratio, seed], 8)}"
    directory = ctx.work_dir / "subsets"
    index_path = directory / f"{name}.npy"
    meta_path = directory / f"{name}.json"
    cls = discovery.get("selector", selector.name)
    if meta_path.is_file():  # resume: selections are deterministic
        meta = json.loads(meta_path.read_text())
        reloaded = _reload_subset(ctx, meta, index_path)
        if reloaded is not None:
            return reloaded, meta
        logger.warning("subset %s does not match its hash or the pool; selecting again", meta_path)
    requires_embeddings = getattr(cls, "requires_embeddings", False)
    requires_backbone = getattr(cls, "requires_backbone", False)
    # shared inputs are made before the selector's clock starts: they serve every cell
    embeddings = pool_embeddings(ctx) if requires_embeddings else None
    backbone = embedding_backbone(ctx) if requires_backbone else None
    with stage_deadline("select", ctx.protocol.execution.timeout("select")):
        subset = run_selector(cls(), ctx.pool, ratio, seed=seed, params=selector.params, pool_ids=ctx.pool_ids,
                              embeddings=embeddings, backbone=backbone, output_dir=ctx.work_dir / DERIVED_DIR)
    meta = {"selector": selector.name, "label": label, "selector_version": str(getattr(cls, "version", "0")),
            "params": selector.params, "ratio": ratio, "seed": seed, "n_pool": len(ctx.pool), "kind": subset.kind,
            "n_selected": subset.size, "sha256": subset.sha256, "ids_sha256": subset.ids_sha256,
            "pool_ids_sha256": subset.pool_ids_sha256, "select_seconds": subset.time_s,
            # the scoring model's warm-up is part of what a backbone-reading selection costs
            "warmup_seconds": ctx.warmup_seconds if requires_backbone else None,
            "diagnostics": subset.diagnostics, "composition": _composition(ctx.pool, subset.indices),
            "embedding_quality": ctx.embedding_quality if requires_embeddings else None}
    if isinstance(subset, DerivedSubset):
        meta["manifest"] = subset.manifest_path.relative_to(ctx.work_dir).as_posix()
        meta["patch_sources"] = _patch_sources(ctx.pool, subset)
    else:
        meta["file"] = index_path.name
        atomic_save_npy(index_path, subset.indices)
    atomic_write_json(meta_path, meta)
    _record_subset(directory, name, meta)
    return subset, meta


def rebuild_subset_index(work_dir: Path) -> None:
    """Record every subset file of ``work_dir`` in its index again: jobs running side by side
    (:mod:`delbench.launch`) may each have rewritten the index without the others' entries."""
    directory = work_dir / "subsets"
    for meta_path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
        if meta_path.name != SUBSETS_FILE:
            _record_subset(directory, meta_path.stem, json.loads(meta_path.read_text()))


def _reload_subset(ctx: RunContext, meta: dict[str, Any], index_path: Path) -> Subset | None:
    """A saved selection, if it still matches its hashes and this pool; else None."""
    if meta.get("pool_ids_sha256") != ctx.pool_ids_sha256:
        return None
    if meta.get("kind") == "derived":
        try:
            return load_derived((ctx.work_dir / meta["manifest"]).parent, meta["sha256"],
                                diagnostics=meta.get("diagnostics", {}), time_s=meta["select_seconds"])
        except DelbenchError:
            return None
    if not index_path.is_file():
        return None
    indices = np.load(index_path, allow_pickle=False)
    if subset_sha256(indices) != meta["sha256"]:
        return None
    return Subset(indices, meta["sha256"], meta["ids_sha256"], meta["pool_ids_sha256"],
                  meta.get("diagnostics", {}), meta["select_seconds"])


def _record_subset(directory: Path, name: str, meta: dict[str, Any]) -> None:
    index = directory / SUBSETS_FILE
    entries = json.loads(index.read_text()) if index.is_file() else {}
    entries[name] = {k: meta[k] for k in ("kind", "file", "manifest", "sha256", "ids_sha256", "pool_ids_sha256",
                                          "n_selected", "selector", "ratio", "seed") if k in meta}
    atomic_write_json(index, entries)


# --- stage 3: pre-training ----------------------------------------------------------------
def pretrain_checkpoints(ctx: RunContext, subset: Subset, seed: int) -> tuple[dict[float | None, Path], dict[str, Any]]:
    """Pre-train on the subset once (cached by content); checkpoints by pre-training epoch."""
    protocol = ctx.protocol
    n_pool = len(ctx.pool)
    steps = protocol.pretrain.steps(n_pool, subset.size)
    key = content_hash({"subset": subset.sha256, "backbone": protocol.backbone, "pretrain": protocol.pretrain.record(),
                 "steps": steps, "seed": seed, "pool": protocol.pool})
    directory = ctx.cache_dir / "checkpoints" / key
    # intermediate checkpoints are named by step, so epochs that fall on one step share a file;
    # an epoch at the end of the schedule is the final checkpoint, one beyond it has none
    step_of = {e: protocol.pretrain.steps_at_epoch(e, subset.size) for e in protocol.pretrain.checkpoint_epochs}
    by_step = {s: directory / f"step{s}.safetensors" for s in set(step_of.values()) if s < steps}
    paths: dict[float | None, Path] = {None: directory / "final.safetensors"}
    paths.update({e: by_step.get(s, paths[None]) for e, s in step_of.items()
                  if protocol.pretrain.reaches(e, n_pool, subset.size)})
    # Two jobs of a launched sweep can reach one content-keyed pre-training at the same time
    # (e.g. `full` and `random` at ratio 1.0 select the same subset): without the lock both
    # trained into the same resume states and the first to finish deleted them under the
    # other. The second now waits here, then finds the first's checkpoints.
    with file_lock(directory / "pretrain.lock"):
        return _pretrain_checkpoints_locked(ctx, subset, seed, key=key, steps=steps, paths=paths, by_step=by_step)


def _pretrain_checkpoints_locked(ctx: RunContext, subset: Subset, seed: int, *, key: str, steps: int,
                                 paths: dict[float | None, Path], by_step: dict[int, Path]
                                 ) -> tuple[dict[float | None, Path], dict[str, Any]]:
    """:func:`pretrain_checkpoints` under its checkpoint directory's lock."""
    protocol = ctx.protocol
    n_pool = len(ctx.pool)
    directory = paths[None].parent
    info_path = directory / "pretrain.json"
    if info_path.is_file() and all(p.is_file() for p in paths.values()):
        info = json.loads(info_path.read_text())
        # a checkpoint cached before the loss was recorded, or under a protocol whose first
        # task (the held-out images) was another: the cached loss would not be comparable
        if "heldout_recon_loss" not in info or info["heldout"] not in (None, heldout_name(ctx)):
            backbone = discovery.create("backbone", protocol.backbone.name, protocol.backbone.params)
            backbone.load(paths[None])
            info.update(heldout_reconstruction(ctx, backbone))
            atomic_write_json(info_path, info)
        return paths, info
    backbone = initial_backbone(protocol)

    def save_intermediate(step: int, loss: float) -> None:
        if step in by_step:
            backbone.save(by_step[step])

    resume_dir = directory / "resume"
    started = time.perf_counter()
    dataset, indices = subset.training_set(ctx.pool)  # a derived subset trains on its own images
    with stage_deadline("pretrain", protocol.execution.timeout("pretrain")):
        stats = backbone.pretrain(dataset, indices, steps=steps, batch_size=protocol.pretrain.batch_size,
                                  seed=seed, optimizer=protocol.pretrain.optimizer, progress=ctx.progress,
                                  on_step=save_intermediate, **_resume_arguments(backbone, resume_dir, protocol),
                                  **_precision_argument(backbone, protocol))
    backbone.save(paths[None])
    losses = stats.get("loss", [])
    tail = max(1, len(losses) // 10)
    info = {"key": key, "steps": steps, "epochs": protocol.pretrain.epochs(n_pool, subset.size),
            "seconds": time.perf_counter() - started,
            "loss_first": float(np.mean(losses[:tail])) if losses else None,
            "loss_last": float(np.mean(losses[-tail:])) if losses else None,
            "resumed_from_step": stats.get("resumed_from_step"), "precision": protocol.pretrain.precision,
            **heldout_reconstruction(ctx, backbone)}
    atomic_write_json(info_path, info)
    shutil.rmtree(resume_dir, ignore_errors=True)  # the final checkpoint supersedes the states
    return paths, info


def initial_backbone(protocol: Protocol) -> Any:
    """The protocol's backbone before pre-training. Its weights come from ``pretrain.init_seed``
    when the protocol pins one, so every cell and the random-init reference start from the same
    encoder; otherwise from torch's global generator as the caller seeded it (the cell's seed)."""
    init_seed = protocol.pretrain.init_seed
    if init_seed is None:
        return discovery.create("backbone", protocol.backbone.name, protocol.backbone.params)
    import torch

    with torch.random.fork_rng(devices=[]):  # the caller's generator state is left as it was
        torch.manual_seed(init_seed)
        return discovery.create("backbone", protocol.backbone.name, protocol.backbone.params)


def resumable(backbone: Any) -> bool:
    """Whether a backbone (class or instance) implements the contract's optional resumable
    pre-training: ``pretrain`` takes ``resume_dir`` and ``checkpoint_every``."""
    return pretrain_takes(backbone, "resume_dir")


def _resume_arguments(backbone: Any, resume_dir: Path, protocol: Protocol) -> dict[str, Any]:
    """``resume_dir``/``checkpoint_every`` for a backbone that takes them; a backbone without
    them restarts a killed pre-training from step 0 (the run says so when it starts)."""
    if not resumable(backbone):
        return {}
    return {"resume_dir": resume_dir, "checkpoint_every": protocol.execution.checkpoint_every}


def _precision_argument(backbone: Any, protocol: Protocol) -> dict[str, Any]:
    """``precision`` for a backbone whose pretrain takes it; the protocol refused any precision
    but fp32 for one that does not when it loaded."""
    return {"precision": protocol.pretrain.precision} if pretrain_takes(backbone, "precision") else {}


@contextlib.contextmanager
def stage_deadline(stage: str, seconds: float | None):
    """Raise :class:`~delbench.errors.StageTimeout` inside the block once it has run
    ``seconds`` (None: no limit); the module docstring says why an alarm signal."""
    if not seconds:
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        raise DelbenchError(f"timeouts.{stage}: stage timeouts need the main thread (they use SIGALRM); "
                            f"run delbench there or remove the timeout")
    armed = [True]

    def alarm(signum: int, frame: Any) -> None:
        if armed[0]:  # a signal that lands after the block ended must not fail it
            raise StageTimeout(stage, seconds)

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


#: how many of the first task's test images the held-out reconstruction loss averages over
HELDOUT_IMAGES = 256


def _heldout_images(ctx: RunContext) -> tuple[np.ndarray, str]:
    """The held-out images and their name, loaded once per run. The name
    (``dataset@digest/split[:n]``, the digest over the dataset's version and params) tells a
    checkpoint's cached loss whether it was measured on these images: a shared cache serves
    checkpoints to protocols whose first task has other params (e.g. another polyp contrast)."""
    if ctx.heldout is None:
        task = ctx.protocol.tasks[0]
        test = open_dataset(ctx, task.dataset, task.test_split)
        n = min(HELDOUT_IMAGES, len(test))
        digest = content_hash({"version": getattr(test, "version", None), "params": task.dataset.params}, 8)
        ctx.heldout = (test.load_images(np.arange(n)), f"{task.dataset.name}@{digest}/{task.test_split}[:{n}]")
    return ctx.heldout


def heldout_name(ctx: RunContext) -> str:
    return _heldout_images(ctx)[1]


def heldout_reconstruction(ctx: RunContext, backbone: Any) -> dict[str, Any]:
    """The pre-training loss on clean images that no cell trains on: the first task's test
    split (its first :data:`HELDOUT_IMAGES`), with fixed masks. A secondary measure of what
    pre-training learned, reported beside the task score and never used for NormDEL; None for
    a backbone without ``reconstruction_loss``."""
    if not hasattr(backbone, "reconstruction_loss"):
        return {"heldout_recon_loss": None, "heldout": None}
    images, name = _heldout_images(ctx)
    losses = [backbone.reconstruction_loss(images[start:start + 64], seed=0) for start in range(0, len(images), 64)]
    return {"heldout_recon_loss": float(np.mean(np.concatenate(losses))), "heldout": name}


# --- stage 4: downstream tasks ------------------------------------------------------------
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
        cross = {other.dataset.name: _checked_metrics(task_spec.name, task.metric, task.evaluate(
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


def _cross_tasks(protocol: Protocol, cell: "Cell") -> tuple[TaskSpec, ...]:
    """The other tasks of the same kind a cell's head is also tested on (final checkpoint only)."""
    if cell.pretrain_epoch is not None or not protocol.generalization.applies(
            cell.selector.name, cell.ratio, cell.task.dataset.name):
        return ()
    return tuple(t for t in protocol.tasks if t.name == cell.task.name and t.dataset.name != cell.task.dataset.name
                 and t.dataset.name in protocol.generalization.datasets)


@dataclass(frozen=True)
class SelectionFacts:
    """What the selection and pre-training shared by a group of cells produced: the subset,
    its file record (diagnostics, composition, seconds) and the pre-training record."""

    subset: Subset
    meta: dict[str, Any]
    pretrain: dict[str, Any]


def _row(ctx: RunContext, cell: "Cell", started_at: str, outcome: Evaluation | BaseException,
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
        task_version=_version("task", cell.task.name), task_dataset=cell.task.dataset.name, ratio=cell.ratio,
        seed=cell.seed, pretrain_epoch=cell.pretrain_epoch, n_pool=len(ctx.pool),
        n_selected=0 if cell.reference else None, metric=task_cls.metric,
        higher_is_better=bool(task_cls.higher_is_better), started_at=started_at, finished_at=_now(), env=ctx.env)
    if facts is not None:
        subset, meta, pre = facts.subset, facts.meta, facts.pretrain
        row.n_selected, row.subset_sha256 = subset.size, subset.sha256
        row.ids_sha256, row.pool_ids_sha256 = subset.ids_sha256, subset.pool_ids_sha256
        row.selection = {"diagnostics": meta.get("diagnostics", {}), "composition": meta.get("composition")}
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


def _finish(ctx: RunContext, row: ResultRow) -> ResultRow:
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


# --- the run ------------------------------------------------------------------------------
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
              "created_at": _now(), "env": ctx.env, "protocol_config": protocol.to_dict()}
    if config_text is not None:
        atomic_write_text(work_dir / "config.py", config_text)
    atomic_write_json(header_path, header)


def run_protocol(protocol: Protocol, work_dir: str | Path, *, resume: bool = False,
                 config_text: str | None = None, progress: bool = True,
                 observers: list[Callable[[dict[str, Any]], None]] | None = None) -> list[ResultRow]:
    """Run every cell of ``protocol`` into ``work_dir``; returns the rows written this time.

    ``observers`` are called with each row's JSON record as it is written, like the
    ``delbench_cell_finished`` hook. The work dir's lock is held throughout: a second run
    into it raises :class:`~delbench.errors.LockError` naming the holder.
    """
    work_dir = Path(work_dir)
    if world_from_env().distributed:  # every rank would select, write rows and evaluate on its own
        raise DelbenchError("delbench run does not run under torchrun (every process would write the same rows); "
                            "run it as one process, or spread cells with --launcher local/slurm; torchrun serves "
                            "a backbone's pretrain and 'delbench embed'")
    check_values(protocol)  # load_protocol did too; a Protocol built in code is checked here
    check_plugins(protocol)
    with lock_work_dir(work_dir):
        return _run_locked(protocol, work_dir, resume, config_text, progress, observers)


def _run_locked(protocol: Protocol, work_dir: Path, resume: bool, config_text: str | None, progress: bool,
                observers: list[Callable[[dict[str, Any]], None]] | None) -> list[ResultRow]:
    from tqdm.auto import tqdm

    ctx = start_run(protocol, work_dir, resume, config_text, progress, observers)
    done = {row.key for row in read_rows(work_dir) if row.ok}
    seed_everything(min(protocol.seeds))
    written: list[ResultRow] = []
    bar = tqdm(plan_groups(protocol), desc="cells", disable=not progress, unit="subset")
    for cells in bar:
        bar.set_postfix_str(f"{cells[0].label} r={cells[0].ratio:g} s={cells[0].seed}")
        written += run_selection(ctx, cells, done)
    written += run_references(ctx, done)
    return written


def plan_groups(protocol: Protocol) -> list[list[Cell]]:
    """The cells grouped by what they share, a selection (selector, ratio, seed), in plan
    order: the unit of work of the sweep and of a launched job."""
    groups: dict[tuple[str, float, int], list[Cell]] = {}
    for cell in plan_cells(protocol):
        groups.setdefault((cell.label, cell.ratio, cell.seed), []).append(cell)
    return list(groups.values())


def start_run(protocol: Protocol, work_dir: Path, resume: bool, config_text: str | None, progress: bool,
              observers: list[Callable[[dict[str, Any]], None]] | None = None, *,
              prepare: bool = True) -> RunContext:
    """Open a run: clear killed runs' temporaries, open every dataset, write (or check) the
    header. With ``prepare=False`` (a launched job: the launcher holds the lock and prepared
    the work dir) only the datasets are opened and the header is checked against the protocol."""
    cache_dir = Path(protocol.runtime.get("cache_dir") or work_dir / "cache")
    if prepare:
        _remove_orphans(work_dir, cache_dir)
    if protocol.execution.checkpoint_every and not resumable(discovery.get("backbone", protocol.backbone.name)):
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


#: what fails one cell (recorded with its error) rather than the run: any error of a plugin,
#: a stage past its timeout, a plugin calling sys.exit. A KeyboardInterrupt stops the run,
#: and a result file that cannot be written (WriteError, raised by _finish) stops it too:
#: nothing could be recorded after it.
CELL_FAULTS = (Exception, StageTimeout, SystemExit)


def group_cells(protocol: Protocol, cells: list[Cell]) -> list[Cell]:
    """A selection group's rows in the order they are written: each task at the end of
    pre-training and at each ``checkpoint_epochs`` entry."""
    epochs = [None, *protocol.pretrain.checkpoint_epochs]
    return [Cell(cell.selector, cell.ratio, cell.seed, cell.task, e) for cell in cells for e in epochs]


def reference_cells(protocol: Protocol) -> list[Cell]:
    """The reference encoders' cells, in the order they are run."""
    return [Cell(None, None, seed, task, reference=reference) for reference in protocol.references
            for seed in protocol.seeds for task in protocol.tasks]


def run_selection(ctx: RunContext, cells: list[Cell], done: set[str]) -> list[ResultRow]:
    """One (selector, ratio, seed): select, pre-train, then every task (and checkpoint epoch).

    A failure while selecting or pre-training fails every cell of the group; a failure in
    one task fails that cell only.
    """
    protocol = ctx.protocol
    selector, ratio, seed = cells[0].selector, cells[0].ratio, cells[0].seed
    todo = [c for c in group_cells(protocol, cells) if c.key not in done]
    if not todo:
        return []
    started_at = _now()
    stage = "select"
    try:
        subset, meta = select_subset(ctx, selector, ratio, seed)
        stage = "pretrain"
        seed_everything(seed)
        checkpoints, pre = pretrain_checkpoints(ctx, subset, seed)
    except CELL_FAULTS as exc:
        return [_finish(ctx, _row(ctx, c, started_at, exc, stage=stage)) for c in todo]
    facts = SelectionFacts(subset, meta, pre)
    written = []
    for cell in todo:
        if cell.pretrain_epoch not in checkpoints:
            logger.info("%s: epoch %g lies beyond this subset's %d-step schedule; no row", cell.key,
                        cell.pretrain_epoch, pre["steps"])
            continue
        cell_started = _now()
        try:
            seed_everything(seed)
            outcome = evaluate_task(ctx, cell.task, checkpoints[cell.pretrain_epoch], seed,
                                    cross_tasks=_cross_tasks(protocol, cell), ratio=cell.ratio)
        except CELL_FAULTS as exc:
            outcome = exc
        row = _finish(ctx, _row(ctx, cell, cell_started, outcome, facts, stage="evaluate"))
        written.append(row)
        if row.ok:
            logger.info("%s: %s = %.4f, NormDEL = %.4f", cell.key, row.metric, row.score, row.normdel)
    return written


def run_references(ctx: RunContext, done: set[str]) -> list[ResultRow]:
    """Evaluate each reference encoder (e.g. ImageNet weights) on every task, per seed.

    These rows use no pool data: ``ratio`` and ``normdel`` are null and the report shows them
    apart from the selector table.
    """
    written = []
    for cell in reference_cells(ctx.protocol):
        if cell.key in done:
            continue
        started_at = _now()
        try:
            seed_everything(cell.seed)
            checkpoint = Path(cell.reference.checkpoint) if cell.reference.checkpoint else None
            outcome = evaluate_task(ctx, cell.task, checkpoint, cell.seed)
        except CELL_FAULTS as exc:
            outcome = exc
        written.append(_finish(ctx, _row(ctx, cell, started_at, outcome, stage="evaluate")))
    return written


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators, as the runner does before every
    stage whose result must not depend on what ran before it."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
