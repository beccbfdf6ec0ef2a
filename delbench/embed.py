"""Pool embeddings in fixed index shards: one ``.npy`` per shard plus ``manifest.json``.

A pool of millions of images is embedded as shards of ``shard_size`` consecutive items
(shard ``i`` holds rows ``[i·shard_size, min(n, (i+1)·shard_size))``). The same function,
:func:`embed_shards`, runs in one process, in every process of ``torchrun`` (process ``r`` of
``w`` takes the shards ``i ≡ r mod w``) or in each task of a job array (pass ``world``):
shards are independent, so no process waits for another.

Files in the output directory:

``shard-00000.npy``
    rows of shard 0 (n_i × d, ``dtype``), written atomically;
``shard-00000.sha256``
    the sha256 of that ``.npy`` file, written after it: a shard counts as finished when both
    exist and the hash matches, so a re-run (after a kill, or a resubmitted array) computes
    only the shards that are missing or damaged (:mod:`delbench.sdk.shards`, the machinery every
    sharded job shares);
``manifest.json``
    what the embeddings are of (pool name, version, parameters, ids sha256, n; backbone, parameters,
    checkpoint and its sha256; dtype, shard size and ranges) and, once every shard is
    finished, each shard's sha256 with ``"complete": true``. Whichever process finds every
    shard finished writes the complete manifest (the same content, atomically, so two
    writers do not conflict). A directory holding embeddings of another pool, backbone or
    shard size is refused rather than mixed.

:func:`load_embeddings` reads such a directory (or one ``.npy``) for a selector: the manifest
must be complete, its ids hash, pool version and pool parameters must be the pool's, every
shard's hash must match. One shard
is returned memory-mapped as it is; several are copied once, in order, into
``embeddings.npy`` beside them (a memory-mapped file, rebuilt when the shards it was made
from change, named in ``embeddings.sources``), so a selector memory-maps one n × d file and
the process never holds the whole array in memory (at the cost of the disk space twice).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from delbench.errors import DelbenchError, SelectionError, one_line
from delbench.sdk.distributed import World
from delbench.sdk.files import atomic_path, atomic_write_json, atomic_write_text, file_sha256
from delbench.sdk.shards import ShardFiles, run_shards
from delbench.sdk.subsets import check_embeddings, ids_sha256

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1
#: the manifest entries that say what the embeddings are of; a re-run must agree on all of them
IDENTITY_KEYS = ("format", "pool", "pool_params", "pool_version", "n", "ids_sha256", "backbone", "backbone_params",
                 "checkpoint_sha256", "dtype", "shard_size")
#: pool parameters that say where the data is, not what it is (the ids hash checks the data)
LOCATION_PARAMS = ("root",)


def shard_ranges(n: int, shard_size: int) -> list[tuple[int, int]]:
    """The fixed ``[start, stop)`` index ranges of the shards of ``n`` items."""
    if shard_size < 1:
        raise DelbenchError(f"shard size must be at least 1, got {shard_size}")
    return [(start, min(n, start + shard_size)) for start in range(0, n, shard_size)]


@dataclass(frozen=True)
class ShardPlan:
    """What to embed and where: the identity written into the manifest, and the shard ranges
    (their files: :class:`delbench.sdk.ShardFiles`, as every sharded job's)."""

    out_dir: Path
    identity: dict[str, Any]
    ranges: list[tuple[int, int]]

    @property
    def files(self) -> ShardFiles:
        return ShardFiles(self.out_dir)

    def shard_path(self, i: int) -> Path:
        return self.files.path(i)

    def hash_path(self, i: int) -> Path:
        return self.files.hash_path(i)

    def finished(self, i: int) -> bool:
        """Shard ``i`` is on disk whole: its file and its recorded hash agree."""
        return self.files.finished(i)


def plan_shards(out_dir: str | Path, *, pool_name: str, pool_params: Mapping[str, Any], pool_ids: list[str],
                backbone_name: str, backbone_params: Mapping[str, Any], checkpoint: str | None,
                dtype: str = "float16", shard_size: int = 65536, pool_version: str | None = None) -> ShardPlan:
    """The plan for ``out_dir``; refuses a directory that holds embeddings of something else."""
    out_dir = Path(out_dir)
    identity = {"format": FORMAT, "pool": pool_name, "pool_params": dict(pool_params), "pool_version": pool_version,
                "n": len(pool_ids),
                "ids_sha256": ids_sha256(pool_ids), "backbone": backbone_name,
                "backbone_params": dict(backbone_params),
                "checkpoint": str(checkpoint) if checkpoint else None,
                "checkpoint_sha256": file_sha256(checkpoint) if checkpoint else None,
                "dtype": str(np.dtype(dtype)), "shard_size": int(shard_size)}
    identity = json.loads(json.dumps(identity, sort_keys=True, default=str))  # as it reads back
    existing = out_dir / MANIFEST
    if existing.is_file():
        old = json.loads(existing.read_text())
        differ = [k for k in IDENTITY_KEYS if old.get(k) != identity[k]]
        if differ:
            raise DelbenchError(f"{out_dir} holds embeddings of another setting ({', '.join(differ)} differ); "
                                f"choose another --out")
    return ShardPlan(out_dir, identity, shard_ranges(len(pool_ids), shard_size))


def embed_shards(plan: ShardPlan, pool: Any, embed: Callable[[np.ndarray], np.ndarray], *,
                 world: World = World(), batch_size: int = 256, progress: bool = False) -> dict[str, Any]:
    """Compute this process's unfinished shards (``i ≡ world.rank mod world.size``) with
    ``embed(images) -> (b, d) float array``; write the complete manifest if every shard is
    then finished. Returns ``{"computed": [...], "skipped": [...], "complete": bool}``."""
    from tqdm.auto import tqdm

    plan.out_dir.mkdir(parents=True, exist_ok=True)
    manifest = plan.out_dir / MANIFEST
    if not manifest.is_file():  # the identity first, so a later run with other settings is refused
        atomic_write_json(manifest, {**plan.identity, "complete": False,
                                     "shards": [{"file": plan.shard_path(i).name, "start": a, "stop": b}
                                                for i, (a, b) in enumerate(plan.ranges)]})

    def compute(i: int) -> np.ndarray:
        start, stop = plan.ranges[i]
        rows = [np.asarray(embed(pool.load_images(np.arange(a, min(stop, a + batch_size)))))
                for a in range(start, stop, batch_size)]
        return check_embeddings(np.concatenate(rows).astype(plan.identity["dtype"]), stop - start, distinct=False)

    done = run_shards(plan.files, len(plan.ranges), compute, world=world,
                      progress=lambda shards: tqdm(shards, desc="embed shards", disable=not progress, unit="shard"))
    return {**done, "complete": finalize(plan)}


def finalize(plan: ShardPlan) -> bool:
    """Write the complete manifest when every shard is finished; whether it is complete."""
    hashes = plan.files.recorded_hashes(len(plan.ranges))
    if hashes is None:
        return False
    atomic_write_json(plan.out_dir / MANIFEST, {
        **plan.identity, "complete": True,
        "shards": [{"file": plan.shard_path(i).name, "start": a, "stop": b, "sha256": h}
                   for i, ((a, b), h) in enumerate(zip(plan.ranges, hashes))]})
    return True


def read_embeddings(path: str | Path, n: int, *, distinct: bool = True) -> np.ndarray:
    """An embeddings file (``.npy``, n × d float, row i = pool item i) memory-mapped and
    checked for a pool of ``n`` items (:func:`check_embeddings`; ``distinct=False`` for one
    shard of a pool); every problem is one :class:`~delbench.errors.SelectionError` naming
    the file. Never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise SelectionError(f"embeddings file {path}: not found" if not path.exists() else
                             f"embeddings file {path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise SelectionError(f"embeddings file {path} is empty; write the n × d array with numpy.save")
    from numpy.lib import format as npy

    with open(path, "rb") as handle:
        magic = handle.read(6)
        if magic != b"\x93NUMPY":
            kind = "a .npz archive" if magic.startswith(b"PK") else "not a .npy file (no numpy header)"
            raise SelectionError(f"embeddings file {path} is {kind}; write one n × d float array with numpy.save")
        handle.seek(0)
        try:
            version = npy.read_magic(handle)
            read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _, dtype = read_header(handle)
        except (ValueError, OSError, EOFError) as exc:
            raise SelectionError(f"embeddings file {path} has a damaged numpy header ({one_line(str(exc))})") from None
        data_start = handle.tell()
    if dtype.hasobject:  # reading it would mean unpickling, which delbench never does
        raise SelectionError(f"embeddings file {path} holds Python objects, not numbers; write a float array")
    expected = data_start + math.prod(shape) * dtype.itemsize
    if size < expected:
        raise SelectionError(f"embeddings file {path} is truncated: its header promises a {dtype} array of shape "
                             f"{tuple(shape)} ({expected} bytes) but the file has {size} bytes")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SelectionError(f"embeddings file {path} cannot be read: {one_line(str(exc))}") from None
    try:
        return check_embeddings(array, n, distinct=distinct)
    except SelectionError as exc:
        raise SelectionError(f"embeddings file {path}: {exc}") from None


def load_embeddings(path: str | Path, n: int, pool_ids_sha256: str | None = None, *, pool_name: str | None = None,
                    pool_params: Mapping[str, Any] | None = None) -> np.ndarray:
    """Embeddings for a pool of ``n`` items from one ``.npy`` file or a shard directory written
    by :func:`embed_shards`, whose ids hash must equal ``pool_ids_sha256`` and whose pool,
    its version and its parameters (defaults filled in, ``split`` included, the data root
    left out) must be ``pool_name``'s and ``pool_params`` when given (:func:`check_pool`):
    the same ids of a pool built with other parameters are other images."""
    path = Path(path)
    if not path.is_dir():
        return read_embeddings(path, n)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise SelectionError(f"embeddings directory {path} has no {MANIFEST}; write it with 'delbench embed'")
    manifest = json.loads(manifest_path.read_text())
    if not manifest.get("complete"):
        raise SelectionError(f"embeddings in {path} are incomplete (some shards are missing); run "
                             f"'delbench embed' with the same arguments again to finish them")
    if pool_ids_sha256 is not None and manifest["ids_sha256"] != pool_ids_sha256:
        raise SelectionError(f"embeddings in {path} are of another pool (ids sha256 {manifest['ids_sha256'][:12]} "
                             f"≠ {pool_ids_sha256[:12]}): another dataset, its parameters or its order")
    if manifest["n"] != n:
        raise SelectionError(f"embeddings in {path} have {manifest['n']} rows but the pool has {n} items")
    if pool_name is not None:
        check_pool(path, manifest, pool_name, pool_params or {})
    blocks = []
    for shard in manifest["shards"]:
        file = path / shard["file"]
        if not file.is_file() or file_sha256(file) != shard["sha256"]:
            raise SelectionError(f"embedding shard {file} is missing or does not match the manifest's sha256")
        blocks.append(read_embeddings(file, shard["stop"] - shard["start"], distinct=len(manifest["shards"]) == 1))
    if len(blocks) == 1:
        return blocks[0]
    return read_embeddings(_consolidated(path, manifest, blocks), n)


def check_pool(path: Path, manifest: Mapping[str, Any], pool_name: str, pool_params: Mapping[str, Any]) -> None:
    """The manifest's pool is ``pool_name`` at the installed version with ``pool_params``: each
    side's parameters with the dataset's defaults filled in, compared key by key (the data
    root aside); a difference is a SelectionError naming the key and both values."""
    from delbench import discovery
    from delbench.sdk.params import parameter_space

    if manifest.get("pool") != pool_name:
        raise SelectionError(f"embeddings in {path} are of pool {manifest.get('pool')!r}, not {pool_name!r}")
    cls = discovery.get("dataset", pool_name)
    recorded = manifest.get("pool_version")
    if recorded is not None and recorded != cls.version:
        raise SelectionError(f"embeddings in {path} are of {pool_name} version {recorded}, the installed one is "
                             f"version {cls.version}: embed the pool again")
    defaults = parameter_space("dataset", cls).defaults

    def resolved(params: Mapping[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps({**defaults, **params}, sort_keys=True, default=str))

    theirs, mine = resolved(manifest.get("pool_params") or {}), resolved(pool_params)
    differ = sorted(k for k in theirs.keys() | mine.keys() if k not in LOCATION_PARAMS and theirs.get(k) != mine.get(k))
    if differ:
        raise SelectionError(f"embeddings in {path} are of {pool_name} with other parameters ("
                             + "; ".join(f"{k}: {theirs.get(k)!r} there, {mine.get(k)!r} here" for k in differ)
                             + "): the same ids name other images; embed this pool, or give the same --dataset-param")


def _consolidated(path: Path, manifest: dict[str, Any], blocks: list[np.ndarray]) -> Path:
    """``embeddings.npy``: the checked shards in order in one file, written once (atomically)."""
    from numpy.lib.format import open_memmap

    target, sources = path / "embeddings.npy", path / "embeddings.sources"
    expected = "\n".join(shard["sha256"] for shard in manifest["shards"]) + "\n"
    if target.is_file() and sources.is_file() and sources.read_text() == expected:
        return target
    with atomic_path(target) as tmp:
        out = open_memmap(tmp, mode="w+", dtype=blocks[0].dtype, shape=(manifest["n"], blocks[0].shape[1]))
        for shard, block in zip(manifest["shards"], blocks):
            out[shard["start"]:shard["stop"]] = block
        out.flush()
        del out
    atomic_write_text(sources, expected)
    return target


def embed_pool(*, dataset: str, dataset_params: Mapping[str, Any], split: str, backbone: str,
               backbone_params: Mapping[str, Any], checkpoint: str | None, out_dir: str | Path,
               shard_size: int, batch_size: int = 256, dtype: str = "float16", seed: int = 0,
               world: World | None = None, progress: bool = False) -> dict[str, Any]:
    """``delbench embed``: build the pool and the backbone, then :func:`embed_shards` for this
    process: ``world`` (one task of a job array), else its rank under ``torchrun``. Without
    ``checkpoint`` the backbone keeps its initial weights, drawn from ``seed`` (recorded in
    the manifest)."""
    import torch

    from delbench import discovery
    from delbench.sdk.distributed import world_from_env

    pool = discovery.create("dataset", dataset, dataset_params, where=f"--dataset-param ({dataset})", split=split)
    torch.manual_seed(seed)
    model = discovery.create("backbone", backbone, backbone_params, where=f"--backbone-param ({backbone})")
    if checkpoint:
        model.load(checkpoint)
    else:
        logger.warning("no --checkpoint: embedding with %s's initial weights (seed %d)", backbone, seed)
    plan = plan_shards(out_dir, pool_name=dataset, pool_params={**dataset_params, "split": split},
                       pool_version=type(pool).version, pool_ids=list(pool.item_ids()), backbone_name=backbone,
                       backbone_params={**backbone_params, "init_seed": None if checkpoint else seed},
                       checkpoint=checkpoint, dtype=dtype, shard_size=shard_size)
    result = embed_shards(plan, pool, model.embed, world=world or world_from_env(), batch_size=batch_size,
                          progress=progress)
    return {**result, "shards": len(plan.ranges), "out_dir": str(plan.out_dir)}
