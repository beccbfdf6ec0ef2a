"""Data-parallel pre-training across processes: what a backbone needs from ``torchrun``.

delbench launches no processes for this: ``torchrun`` (or SLURM's ``srun`` through it) does,
and sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (plus ``MASTER_ADDR``/``MASTER_PORT``,
which ``torch.distributed`` reads itself). Those three are the only variables read here.

One global batch (the protocol's ``batch_size``) is split into equal, contiguous slices, one
per rank; DDP averages the gradients, so with equal slices the update equals the
single-process update on the whole global batch. Every random draw that depends on a sample
(its MAE mask, its flip) is derived from (seed, global sample position) by
:func:`sample_generator`, never from a generator's running state, so sharding cannot change it.

Shutdown is explicit (:func:`process_group`): barrier, then the caller drops its DDP model
and optimizer, then ``destroy_process_group``. Leaving the group to interpreter exit hangs
gloo at exit now and then (the DDP reducer's and the group's destructors race).

torch is imported inside the functions so ``import delbench`` stays light.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from delbench.errors import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes (rank 0 of 1: a plain run)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, states and results."""
        return self.rank == 0

    def batch_slice(self, global_batch: int) -> slice:
        """This rank's contiguous slice of a global batch of ``global_batch`` samples."""
        if global_batch % self.size:
            raise ConfigError(f"the global batch size {global_batch} is not divisible by the {self.size} "
                              f"processes (WORLD_SIZE); choose a batch size or a process count that divides it")
        per_rank = global_batch // self.size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)


def world_from_env(environ: dict[str, str] | None = None) -> World:
    """The :class:`World` ``torchrun`` describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
    a plain process (none set) is rank 0 of 1."""
    env = os.environ if environ is None else environ
    try:
        size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers, got RANK={env.get('RANK')!r} "
                          f"WORLD_SIZE={env.get('WORLD_SIZE')!r} LOCAL_RANK={env.get('LOCAL_RANK')!r}") from None
    if size < 1 or not 0 <= rank < size or local_rank < 0:
        raise ConfigError(f"inconsistent torchrun environment: RANK={rank} WORLD_SIZE={size} LOCAL_RANK={local_rank}")
    return World(rank, size, local_rank)


def device_for(world: World, device: str):
    """The torch device this rank trains on: ``cuda`` means ``cuda:LOCAL_RANK`` under torchrun."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and world.distributed and dev.index is None:
        return torch.device("cuda", world.local_rank)
    return dev


@contextlib.contextmanager
def process_group(world: World, device) -> Iterator[bool]:
    """Join the process group for the block (gloo on CPU, nccl on CUDA) and leave it cleanly.

    Yields whether this block owns the group (False when the caller had initialised one, which
    is then left alone). On leaving: a barrier so no rank tears down while another still
    talks to it, then ``destroy_process_group``. The caller must drop its DDP wrapper and
    optimizer inside the block (``del``) so their collectives are gone before the group is.
    """
    import torch.distributed as dist

    if not world.distributed:
        yield False
        return
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, rank=world.rank, world_size=world.size, **kwargs)
    try:
        yield owns
    finally:
        if owns:
            try:
                dist.barrier()
            finally:
                dist.destroy_process_group()


def sample_generator(seed: int, position: int) -> np.random.Generator:
    """The random stream of one sample draw: global position ``position`` (step × global batch
    + place in the sorted global batch) of the run seeded ``seed``. A pure function of the two,
    so the same draw gets the same mask and flip on any number of processes and after a resume."""
    return np.random.default_rng([int(seed) % 2 ** 63, int(position)])


def sample_noise(seed: int, positions: np.ndarray, n_patches: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample MAE mask noise (len(positions), n_patches) float32 and flip decisions (bool)."""
    noise = np.empty((len(positions), n_patches), np.float32)
    flips = np.empty(len(positions), bool)
    for row, position in enumerate(positions):
        stream = sample_generator(seed, position)
        flips[row] = stream.random() < 0.5
        noise[row] = stream.random(n_patches, dtype=np.float32)
    return noise, flips
