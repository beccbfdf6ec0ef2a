"""Embedding and pre-training throughput at 1 and N processes on this machine, side by side.

    python benchmarks/perf/throughput.py [--processes 1,2] [--repeats 2] [--images 1024]
        [--steps 20] [--batch-size 16] [--out result.json]

Embedding goes through the sharded embed path (:func:`delbench.embed.embed_shards`, process
``r`` of ``N`` taking shards ``i ≡ r mod N``, as ``torchrun -m delbench embed`` does);
pre-training through ``TimmMAE.pretrain`` with one global batch split over the processes
(DDP, gloo on CPU). One process runs plainly, N > 1 under ``torchrun --standalone
--nproc_per_node N``. Each process uses one torch thread (so N processes use N cores) and
times only the work, not interpreter start-up or model construction: images/s is the images
done divided by the span from the first process's start to the last one's end. Runs with 1
and N processes alternate (``--repeats`` rounds), so a change in the machine's load hits both;
the load average before and after is recorded. The model is the embedded protocols' 4-block
ViT-Tiny MAE on 64-pixel synthetic endoscopy frames (benchmarks/_base_/synthetic_cpu.py).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: the embedded protocols' setting, whose backbone every measured process builds
EMBEDDED_SETTING = Path(__file__).resolve().parents[1] / "_base_" / "synthetic_cpu.py"


def _backbone_params() -> dict:
    from delbench.protocol import load_config

    return load_config(EMBEDDED_SETTING).to_dict()["backbone"]["params"]


# --- one measured process (plain, or one rank of torchrun) -----------------------------------
def worker(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from delbench import get_backbone, get_dataset
    from delbench.sdk.distributed import world_from_env

    torch.set_num_threads(1)
    world = world_from_env()
    params = _backbone_params()
    pool = get_dataset("synthetic_endoscopy")(num_frames=args.images, image_size=params["image_size"])
    torch.manual_seed(0)
    backbone = get_backbone("timm_mae")(**params)
    if args.worker == "embed":
        from delbench.embed import embed_shards, plan_shards

        plan = plan_shards(Path(args.scratch) / "embeddings", pool_name="synthetic_endoscopy",
                           pool_params={"num_frames": args.images}, pool_ids=list(pool.item_ids()),
                           backbone_name="timm_mae", backbone_params=params, checkpoint=None,
                           shard_size=args.shard_size)
        started = time.time()
        done = embed_shards(plan, pool, backbone.embed, world=world, batch_size=args.batch_size * 4)
        images = sum(plan.ranges[i][1] - plan.ranges[i][0] for i in done["computed"])
    else:
        started = time.time()
        backbone.pretrain(pool, np.arange(len(pool)), steps=args.steps, batch_size=args.batch_size, seed=0,
                          optimizer={"lr": 1.5e-4, "warmup_steps": 2})
        images = args.steps * args.batch_size // world.size  # this rank's slice of every global batch
    ended = time.time()
    record = {"rank": world.rank, "start": started, "end": ended, "images": images}
    Path(args.scratch, f"rank{world.rank}.json").write_text(json.dumps(record))


# --- driver -----------------------------------------------------------------------------------
def measure(args: argparse.Namespace, kind: str, processes: int) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix=f"throughput-{kind}-{processes}-", dir=args.work_dir))
    script = [str(Path(__file__).resolve()), "--worker", kind, "--scratch", str(scratch), "--images",
              str(args.images), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
              "--shard-size", str(args.shard_size)]
    if processes == 1:
        command = [sys.executable, *script]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                   str(processes), *script]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"{kind} with {processes} process(es) failed:\n{done.stderr[-2000:]}")
    records = [json.loads(path.read_text()) for path in sorted(scratch.glob("rank*.json"))]
    shutil.rmtree(scratch, ignore_errors=True)
    if len(records) != processes:
        raise SystemExit(f"{kind}: {len(records)} of {processes} processes reported")
    span = max(r["end"] for r in records) - min(r["start"] for r in records)
    images = sum(r["images"] for r in records)
    return {"seconds": round(span, 3), "images": images, "images_per_s": round(images / span, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts (first: the baseline)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int, default=1024, help="pool size embedded")
    parser.add_argument("--shard-size", type=int, default=128, help="embedding shard size")
    parser.add_argument("--steps", type=int, default=20, help="pre-training steps")
    parser.add_argument("--batch-size", type=int, default=16, help="global pre-training batch")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--out")
    # internal: one measured process
    parser.add_argument("--worker", choices=("embed", "pretrain"), help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    counts = [int(c) for c in args.processes.split(",")]
    load_before = os.getloadavg()
    runs: dict[str, dict[int, list[dict]]] = {kind: {c: [] for c in counts} for kind in ("embed", "pretrain")}
    for _ in range(args.repeats):
        for kind in runs:
            for count in counts:  # alternating, so a change in load hits every count
                runs[kind][count].append(measure(args, kind, count))
                print(kind, count, runs[kind][count][-1], flush=True)
    load_after = os.getloadavg()
    summary: dict = {"config": {k: v for k, v in vars(args).items() if k not in ("worker", "scratch")},
                     "cpu_count": os.cpu_count(), "load_avg_before": load_before, "load_avg_after": load_after,
                     "results": {}}
    baseline = counts[0]
    print(f"{'what':<10} {'processes':>9} {'images/s (median)':>18} {'vs ' + str(baseline):>8}")
    for kind, by_count in runs.items():
        medians = {c: statistics.median(r["images_per_s"] for r in by_count[c]) for c in counts}
        for count in counts:
            ratio = medians[count] / medians[baseline]
            summary["results"].setdefault(kind, {})[count] = {"runs": by_count[count], "images_per_s": medians[count],
                                                              f"ratio_vs_{baseline}": round(ratio, 3)}
            print(f"{kind:<10} {count:>9} {medians[count]:>18.1f} {ratio:>8.2f}")
    print(f"load average (1/5/15 min) before {load_before}, after {load_after}")
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
