"""Run under ``torchrun --standalone --nproc_per_node N``: a tiny MAE pre-training, data-parallel.

Rank 0 writes the step-1 gradients (after the first all-reduce) and the final weights to
``OUT/ddp.safetensors`` for ``test_distributed.py`` to compare with one process. Not collected
by pytest (no ``test_`` prefix). ``--naive-shutdown`` leaves the process group and the DDP model
to interpreter exit (the behaviour before the clean shutdown), to count hangs.
"""
import argparse
import contextlib
from pathlib import Path

import numpy as np

import ddp_case


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--naive-shutdown", action="store_true")
    args = parser.parse_args()
    if args.naive_shutdown:
        import torch.distributed as dist

        import delbench_plugins.backbones.timm_mae as timm_mae

        @contextlib.contextmanager
        def naive(world, device):
            if world.distributed and not dist.is_initialized():
                dist.init_process_group("gloo")
            yield False

        timm_mae.process_group = naive
        # and the DDP model stays referenced until interpreter exit, as in a script without the fix
        kept = []
        wrap = timm_mae.TimmMAE._data_parallel

        def keep_alive(self, world):
            kept.append(wrap(self, world))
            return kept[-1]

        timm_mae.TimmMAE._data_parallel = keep_alive
    tensors = ddp_case.run()
    from delbench.sdk.distributed import world_from_env

    if world_from_env().is_main:
        from safetensors.torch import save_file

        args.out.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(args.out / "ddp.safetensors"))


if __name__ == "__main__":
    main()
