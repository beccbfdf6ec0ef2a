"""Stage 3, pre-training: one pre-training per (subset, backbone, pre-training spec, seed),
cached by content as checkpoints (so selections that coincide train once), resumable, with
the held-out reconstruction loss recorded beside it."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from delbench import discovery
from delbench.protocol import Protocol, content_hash
from delbench.run.context import RunContext, open_dataset
from delbench.run.timeouts import stage_deadline
from delbench.sdk.contracts import pretrain_takes
from delbench.sdk.files import atomic_write_json, file_lock
from delbench.sdk.subsets import Subset


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
