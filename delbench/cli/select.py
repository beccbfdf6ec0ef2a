"""``delbench select``: one selector on a pool, the subset written as ``.npy`` (or a derived
subset's folder)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from delbench.cli.base import key_values, non_negative_int, shard_world


def add_parser(sub: Any) -> None:
    p = sub.add_parser("select", help="run one selector on a pool and write the indices (.npy)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--selector", required=True)
    p.add_argument("--ratio", required=True, type=float)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--split", default="all")
    p.add_argument("--root", help="dataset root folder (real datasets)")
    p.add_argument("--embeddings", help="n × d .npy (row i = pool item i) or a 'delbench embed' directory")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="selector parameters")
    p.add_argument("--dataset-param", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--backbone", default="timm_mae",
                   help="scoring model of selectors that read one (mae_loss, optidel); default timm_mae")
    p.add_argument("--backbone-param", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--scoring-checkpoint", help="weights of the scoring model (else --warmup-steps on the pool)")
    p.add_argument("--warmup-steps", type=non_negative_int, default=100,
                   help="MAE warm-up steps (batch 16) of the scoring model when no checkpoint is given")
    p.add_argument("--out", required=True,
                   help="output .npy (sorted int64 indices); for a selector that writes images (optidel), a "
                        "directory: the images and manifest.json go to DIR/<manifest sha256>/")
    p.add_argument("--work", metavar="DIR",
                   help="keep the clustering and per-cluster scores here (meddel, semdedup, prototypes, d4): a "
                        "re-run skips finished shards; every rank of torchrun (or task of an array) shares them")
    p.add_argument("--clusters-per-shard", type=int, default=64, help="clusters per score shard (with --work)")
    p.add_argument("--shard-rank", type=int, help="this task's number in a job array (with --work)")
    p.add_argument("--shard-count", type=int, help="the array's number of tasks (with --work)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from delbench import discovery
    from delbench.embed import load_embeddings
    from delbench.errors import ConfigError
    from delbench.protocol import SelectorSpec
    from delbench.run.select import select
    from delbench.sdk.files import atomic_save_npy
    from delbench.sdk.params import check_plugin_params
    from delbench.sdk.subsets import ids_sha256

    dataset_params = key_values(args.dataset_param, "--dataset-param")
    if args.root:
        dataset_params["root"] = args.root
    cls = discovery.get_selector(args.selector)
    # an index subset is one file (refused before any work, not after the selection ran); a
    # derived one is a folder of images with its manifest
    if Path(args.out).is_dir() and not getattr(cls, "produces_derived", False):
        raise ConfigError(f"--out {args.out} is a directory; give a file name such as {Path(args.out) / 'subset.npy'}")
    params = key_values(args.set, "--set")
    check_plugin_params("selector", cls, params, f"--set ({args.selector})")  # before the pool is built
    backbone_spec = None
    if getattr(cls, "requires_backbone", False):
        from delbench.protocol import PluginSpec

        backbone_spec = PluginSpec(args.backbone, key_values(args.backbone_param, "--backbone-param"))
        check_plugin_params("backbone", discovery.get("backbone", args.backbone), backbone_spec.params,
                            f"--backbone-param ({args.backbone})")
        if "image_size" in backbone_spec.params and "image_size" not in dataset_params:
            dataset_params["image_size"] = backbone_spec.params["image_size"]  # datasets load at the model's size
    pool = discovery.create("dataset", args.dataset, dataset_params, where=f"--dataset-param ({args.dataset})",
                          split=args.split)
    if getattr(cls, "requires_embeddings", False) and not args.embeddings:
        raise ConfigError(f"selector '{args.selector}' needs --embeddings FILE.npy (n × d, row i = item i) or a "
                          f"directory written by 'delbench embed --dataset {args.dataset} --backbone NAME --out DIR'; "
                          f"'delbench run' computes and caches them for you")
    if args.embeddings and not getattr(cls, "requires_embeddings", False):
        raise ConfigError(f"selector '{args.selector}' does not use embeddings; drop --embeddings {args.embeddings}")
    if not args.work and (args.shard_rank is not None or args.shard_count is not None):
        raise ConfigError("--shard-rank/--shard-count split the work of --work DIR; give --work")
    if args.work and not getattr(cls, "resumable_work", False):
        raise ConfigError(f"selector '{args.selector}' keeps no work files; drop --work {args.work}")
    pool_ids = pool.item_ids()
    pool_ids_sha256 = ids_sha256(pool_ids)
    derived = getattr(cls, "produces_derived", False)
    work = _selection_work(args, pool_ids_sha256) if args.work else None
    subset = select(SelectorSpec(args.selector, params), pool, args.ratio, seed=args.seed, pool_ids=pool_ids,
                    get_embeddings=lambda: load_embeddings(args.embeddings, len(pool), pool_ids_sha256,
                                                           pool_name=args.dataset,
                                                           pool_params={**dataset_params, "split": args.split}),
                    get_backbone=lambda: _scoring_backbone(args, pool, backbone_spec, dataset_params),
                    output_dir=args.out if derived else None, work=work)
    if work is not None and not work.world.is_main:
        return 0  # every process found the same subset; rank 0 writes it
    if derived:
        proposer = (subset.manifest.get("method", {}).get("proposer") or {})
        proposer = proposer.get("proposer") if isinstance(proposer, dict) else proposer
        print(f"{subset.sha256}  {subset.manifest_path}  ({subset.size} images from {subset.indices.size} of "
              f"{len(pool)} pool items{f'; proposer: {proposer}' if proposer else ''})")
    else:
        atomic_save_npy(args.out, subset.indices)
        print(f"{subset.sha256}  {args.out}  ({subset.size} of {len(pool)} items)")
    print(f"ids_sha256 {subset.ids_sha256}  pool_ids_sha256 {subset.pool_ids_sha256}")
    if subset.diagnostics:
        print(json.dumps(subset.diagnostics, default=str, sort_keys=True), file=sys.stderr)
    return 0


def _selection_work(args: argparse.Namespace, pool_ids_sha256: str):
    """The ``SelectionWork`` of ``select --work``: this process's rank under torchrun (or
    ``--shard-rank``/``--shard-count`` for one task of a job array), and the inputs a work
    directory's stages are keyed by (the pool's ids hash, the embeddings' manifest or file)."""
    from delbench.embed import MANIFEST
    from delbench.errors import ConfigError
    from delbench.sdk.shards import SelectionWork

    world = shard_world(args)
    if args.clusters_per_shard < 1:
        raise ConfigError(f"--clusters-per-shard must be at least 1, got {args.clusters_per_shard}")
    source = Path(args.embeddings) if args.embeddings else None
    if source is not None and source.is_dir():  # the manifest lists every shard's sha256
        embeddings_id = json.loads((source / MANIFEST).read_text()).get("shards")
    elif source is not None:  # a plain .npy: its size and time stand for it (plus the selector's row sample)
        stat = source.stat()
        embeddings_id = {"file": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    else:
        embeddings_id = None
    return SelectionWork(Path(args.work), world, inputs={"pool_ids_sha256": pool_ids_sha256,
                                                         "embeddings": embeddings_id},
                         clusters_per_shard=args.clusters_per_shard)


def _scoring_backbone(args: argparse.Namespace, pool: Any, spec: Any, dataset_params: dict[str, Any]) -> Any:
    """The model a backbone-reading selector scores with: ``--scoring-checkpoint``, else
    ``--warmup-steps`` MAE steps on the pool (cached under the machine-wide cache, as
    ``delbench run`` caches its warm-up under the run's)."""
    import hashlib

    from delbench.run.embeddings import warmed_backbone
    from delbench.sdk.files import cache_base

    key = json.dumps({"dataset": args.dataset, "params": dataset_params, "split": args.split, "backbone": spec.name,
                      "backbone_params": spec.params, "warmup_steps": args.warmup_steps}, sort_keys=True, default=str)
    directory = cache_base() / "scoring" / hashlib.sha256(key.encode()).hexdigest()[:16]
    backbone, seconds = warmed_backbone(pool, spec, checkpoint=args.scoring_checkpoint,
                                        warmup_steps=0 if args.scoring_checkpoint else args.warmup_steps,
                                        batch_size=16, optimizer={}, directory=directory)
    if seconds:
        print(f"scoring model: {args.warmup_steps} MAE warm-up steps took {seconds:.1f} s", file=sys.stderr)
    return backbone
