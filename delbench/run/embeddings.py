"""Stage 1, what selectors may read besides the pool: the backbone they score with (a
checkpoint, or a short MAE warm-up on the pool) and the pool's embeddings, each computed once
per cache key and memory-mapped."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from delbench import discovery
from delbench.protocol import EmbeddingSpec, PluginSpec, Protocol, content_hash
from delbench.run.context import RunContext, seed_everything
from delbench.sdk.files import atomic_path, atomic_write_json
from delbench.sdk.metrics import scene_nn_agreement
from delbench.sdk.subsets import check_embeddings

logger = logging.getLogger(__name__)


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
