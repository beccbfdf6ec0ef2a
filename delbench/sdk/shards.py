"""Fixed shards of work, one file per shard plus its sha256: resumable, split over processes.

One mechanism for every job that is cut into independent pieces: the pool embeddings of
``delbench embed`` (:mod:`delbench.embed`, shards of consecutive items) and the per-cluster
scoring of the clustering selectors (shards of consecutive cluster numbers, through
:class:`SelectionWork`). A shard counts as finished when its ``.npy`` and its ``.sha256``
both exist and agree, so a killed or re-run job computes only what is missing or damaged.

Who computes which shard (:func:`run_shards`):

* ``claim=False`` (embed): process ``r`` of ``w`` computes the shards ``i ≡ r mod w`` and
  no other; a shard of a process that never ran stays missing until that process runs.
* ``claim=True`` (selection): process ``r`` starts with its own shards, then takes any other
  unfinished one. Each shard is computed under an exclusive ``flock`` on its ``.lock`` file
  (released by the kernel when the holder exits in any way, ``kill -9`` included), so two
  processes never compute the same shard at once; a process finding a shard held moves on and
  comes back to it at the end, waiting on the lock, and computes it itself if the holder died
  without finishing it. Every process therefore returns only when all shards are finished, and
  a lone process (a re-run, one task of an array that runs tasks one at a time) finishes
  everything. This replaces a barrier: no process group is needed.

The shards' contents are deterministic, so who computed a shard does not change it: one
process and N processes give the same files.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from delbench.errors import DelbenchError
from delbench.sdk.distributed import World
from delbench.sdk.files import (atomic_path, atomic_save_npy, atomic_write_json, atomic_write_text, file_lock,
                             file_sha256)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardFiles:
    """The files of shards ``0, 1, …`` in ``out_dir``: ``<prefix>-00000.npy``, its
    ``.sha256`` and (for claimed shards) its ``.lock``."""

    out_dir: Path
    prefix: str = "shard"

    def path(self, i: int) -> Path:
        return self.out_dir / f"{self.prefix}-{i:05d}.npy"

    def hash_path(self, i: int) -> Path:
        return self.out_dir / f"{self.prefix}-{i:05d}.sha256"

    def lock_path(self, i: int) -> Path:
        return self.out_dir / f"{self.prefix}-{i:05d}.lock"

    def finished(self, i: int) -> bool:
        """Shard ``i`` is on disk whole: its file and its recorded hash agree."""
        path, recorded = self.path(i), self.hash_path(i)
        if not (path.is_file() and recorded.is_file()):
            return False
        if file_sha256(path) == recorded.read_text().strip():
            return True
        logger.warning("shard %s does not match its recorded sha256; computing it again", path)
        return False

    def write(self, i: int, array: np.ndarray) -> None:
        """The shard's array, then its hash (the hash last: it marks the shard finished)."""
        atomic_save_npy(self.path(i), array)
        atomic_write_text(self.hash_path(i), file_sha256(self.path(i)) + "\n")

    def read(self, i: int) -> np.ndarray:
        return np.load(self.path(i), allow_pickle=False)

    def recorded_hashes(self, count: int) -> list[str] | None:
        """The recorded hash of every one of ``count`` shards, or None while one is missing."""
        hashes = []
        for i in range(count):
            if not (self.path(i).is_file() and self.hash_path(i).is_file()):
                return None
            hashes.append(self.hash_path(i).read_text().strip())
        return hashes


def run_shards(files: ShardFiles, count: int, compute: Callable[[int], np.ndarray], *, world: World = World(),
               claim: bool = False, progress: Callable[[Any], Any] | None = None) -> dict[str, list[int]]:
    """Compute the unfinished shards among ``count`` this process is responsible for (module
    docstring) with ``compute(i) -> array``; returns ``{"computed": [...], "skipped": [...]}``
    (skipped: found finished)."""
    files.out_dir.mkdir(parents=True, exist_ok=True)
    mine = [i for i in range(count) if i % world.size == world.rank]
    order = mine + ([i for i in range(count) if i % world.size != world.rank] if claim else [])
    computed: list[int] = []
    skipped: list[int] = []

    def settle(i: int) -> None:
        """Skip shard ``i`` if it is finished, else compute and write it."""
        if files.finished(i):
            skipped.append(i)
        else:
            files.write(i, compute(i))
            computed.append(i)

    def attempt(i: int, blocking: bool) -> bool:
        """Whether shard ``i`` is dealt with (finished by now, by us or by another process)."""
        if not claim:
            settle(i)
            return True
        with file_lock(files.lock_path(i), blocking=blocking) as held:
            if held:  # checked under the lock: another process may just have finished it
                settle(i)
            return held

    shards = progress(order) if progress else order
    deferred = [i for i in shards if not attempt(i, blocking=False)]
    for i in deferred:  # held by others when we came by: wait for them, take over if they died
        attempt(i, blocking=True)
    return {"computed": computed, "skipped": sorted(skipped)}


# --- resumable selection work -----------------------------------------------------------------
def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def array_digest(array: np.ndarray | None) -> str | None:
    """sha256 of an array's dtype, shape and bytes (None for None): identifies inputs such as a
    row subset or a centring offset in a stage's identity."""
    if array is None:
        return None
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def embeddings_fingerprint(embeddings: Any, rows: int = 1024) -> str:
    """A cheap identity of an n × d embedding array: shape, dtype and the bytes of up to
    ``rows`` evenly spaced rows (reading a 15 GB file whole for a hash would take minutes).
    It guards a work directory against other embeddings; the caller's ``inputs`` (e.g. the
    embedding manifest's hashes) make it exact."""
    n = int(embeddings.shape[0])
    picked = np.unique(np.linspace(0, max(n - 1, 0), num=min(rows, n)).astype(np.int64)) if n else np.zeros(0, int)
    return array_digest(np.asarray(embeddings[picked])) or ""


@dataclass(frozen=True)
class SelectionWork:
    """Where a selector that supports it (``resumable_work = True``; the clustering selectors)
    keeps its intermediate results as files, and this process's place among the processes
    that share them.

    ``root`` holds one directory per stage, named by the sha256 of everything the stage's
    result depends on (:meth:`stage`), so a re-run with the same inputs finds its files and
    other settings never mix with them; ``world`` is this process's rank and count (under
    ``torchrun``: :func:`delbench.sdk.world_from_env`; in a job array: the task's
    number and the array's size); ``inputs`` names the inputs the selector cannot hash
    cheaply itself (the CLI passes the embeddings' and the pool ids' hashes); ``n_jobs`` the
    threads of this process (None: its CPUs divided among the processes on its node,
    ``LOCAL_WORLD_SIZE`` under torchrun); ``clusters_per_shard`` the size of a scoring shard.
    """

    root: Path
    world: World = World()
    inputs: Mapping[str, Any] = field(default_factory=dict)
    n_jobs: int | None = None
    clusters_per_shard: int = 64

    def __post_init__(self) -> None:
        if int(self.clusters_per_shard) < 1:
            raise DelbenchError(f"clusters per shard must be at least 1, got {self.clusters_per_shard}")

    def threads(self) -> int:
        if self.n_jobs is not None:
            return max(1, int(self.n_jobs))
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1) if self.world.distributed else 1
        return max(1, cpus // max(1, local))

    def stage(self, name: str, identity: Mapping[str, Any]) -> Path:
        """The directory of stage ``name`` with this ``identity`` (plus ``inputs``), created
        with an ``identity.json`` that says what it holds."""
        full = {"stage": name, **identity, "inputs": dict(self.inputs)}
        directory = Path(self.root) / f"{name}-{_digest(full)[:16]}"
        directory.mkdir(parents=True, exist_ok=True)
        if not (directory / "identity.json").is_file():
            atomic_write_json(directory / "identity.json", json.loads(json.dumps(full, default=str)))
        return directory

    def cached(self, directory: Path, compute: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]]
               ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``compute() -> (arrays, meta)`` once per stage directory: the first process computes
        and writes ``result.npz`` (+ ``result.json``, then ``result.sha256``) under the stage's
        lock; the others wait on the lock and read the files."""
        data, meta_path, hash_path = directory / "result.npz", directory / "result.json", directory / "result.sha256"

        def finished() -> bool:
            return (data.is_file() and meta_path.is_file() and hash_path.is_file()
                    and file_sha256(data) == hash_path.read_text().strip())

        with file_lock(directory / "result.lock"):
            if not finished():
                arrays, meta = compute()
                with atomic_path(data) as tmp:
                    with open(tmp, "wb") as handle:
                        np.savez(handle, **arrays)
                atomic_write_json(meta_path, meta)
                atomic_write_text(hash_path, file_sha256(data) + "\n")
                return arrays, meta
        with np.load(data, allow_pickle=False) as loaded:
            arrays = {key: loaded[key] for key in loaded.files}
        return arrays, json.loads(meta_path.read_text())
