"""``delbench embed``: a pool's embeddings in fixed index shards, resumable, split over processes."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from delbench.cli.base import key_values, non_negative_int, shard_world


def add_parser(sub: Any) -> None:
    p = sub.add_parser("embed", help="embed a pool in fixed index shards (.npy each + manifest.json); "
                                     "resumable, one process or every rank of torchrun")
    p.add_argument("--dataset", required=True)
    p.add_argument("--backbone", required=True)
    p.add_argument("--checkpoint", help="backbone weights (.safetensors/.pth); default: its initial weights")
    p.add_argument("--out", required=True, help="output directory (re-run: only missing shards are computed)")
    p.add_argument("--shard-size", type=int, default=65536, help="items per shard (fixed for a directory)")
    p.add_argument("--shard-rank", type=int, help="this task's number in a job array: it takes shards i ≡ rank mod count")
    p.add_argument("--shard-count", type=int, help="the array's number of tasks")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    p.add_argument("--seed", type=non_negative_int, default=0, help="initial weights when there is no --checkpoint")
    p.add_argument("--split", default="all")
    p.add_argument("--root", help="dataset root folder (real datasets)")
    p.add_argument("--dataset-param", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--backbone-param", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from delbench.embed import embed_pool

    dataset_params = key_values(args.dataset_param, "--dataset-param")
    if args.root:
        dataset_params["root"] = args.root
    result = embed_pool(dataset=args.dataset, dataset_params=dataset_params, split=args.split,
                        backbone=args.backbone, backbone_params=key_values(args.backbone_param, "--backbone-param"),
                        checkpoint=args.checkpoint, out_dir=args.out, shard_size=args.shard_size,
                        batch_size=args.batch_size, dtype=args.dtype, seed=args.seed, world=shard_world(args),
                        progress=not args.no_progress and sys.stderr.isatty())
    state = "complete" if result["complete"] else "incomplete (other processes' shards are not finished yet)"
    print(f"{len(result['computed'])} shard(s) computed, {len(result['skipped'])} already finished, of "
          f"{result['shards']}; {result['out_dir']} is {state}")
    return 0
