"""What each kind of pool frame does to the embedded benchmark's score (issue 8's diagnostic).

Pre-trains the protocol's backbone on hand-picked training sets of the synthetic pool (no
selector involved) for the protocol's compute-matched steps and scores each encoder with the
protocol's first task, the same code the runner uses. Two kinds of training set:

* ``--sets``: ``--set-size`` (default 200, the 5 % subset) frames of one kind each —
  ``valid`` (any non-invalid frame), ``core``, an invalid type (``motion_blur``, ``dark``,
  ``overexposed``, ``bubbles``, ``out_of_body``), or ``init`` (no pre-training: the randomly
  initialised encoder). The frames are drawn once (seed 123), the same for every run seed.
* ``--mix``: for each valid fraction f, round(f · set size) valid frames and the rest invalid
  frames of ``--invalid-types`` (default: all), drawn per run seed ([seed, 99]) as a random
  subset would be.

    python benchmarks/diagnostics/training_sets.py --pool-seed 1 --seeds 0,1,2 \\
        --sets valid,motion_blur,bubbles,dark,overexposed,out_of_body,init
    python benchmarks/diagnostics/training_sets.py --pool-seed 1 --seeds 0,1,2,3 --mix 0,0.5,1
    python benchmarks/diagnostics/training_sets.py --pool-seed 1 --seeds 0,1,2,3 --mix 0,0.5 \\
        --invalid-types dark,overexposed,bubbles,out_of_body
    python benchmarks/diagnostics/training_sets.py --pool-seed 1 --seeds 0,1,2,3,4,5 --mix 0.5 --vary init

``--vary init`` (or ``training``) changes only the initial weights (or only the masks, flips,
order and mixture draw) with the run seed: which part of the seed-to-seed spread each makes.
Where the protocol pins ``pretrain.init_seed`` (the embedded ones do), every training starts
from those weights, as in a run, except under ``--vary init``.
``--start warmup`` starts every training from the protocol's embedding warm-up (MAE on the
whole pool, seeded by itself) instead of fresh weights; ``--start FILE`` from a checkpoint.
``--cfg-options`` overrides the protocol as ``delbench run`` does (e.g.
``pretrain.optimizer.lr=1e-4``). One JSON line per (training set, seed): the score in % and
the seconds it took, about 20 s with one torch thread on this 2-core CPU.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from delbench import discovery as plugins
from delbench.cli.base import key_values as _key_values  # the CLI's own KEY=VALUE parsing
from delbench.protocol import load_protocol
from delbench.run.context import seed_everything

HERE = Path(__file__).resolve().parent
DEFAULT_PROTOCOL = HERE.parent / "validity.py"
DEFAULT_SET_SIZE = 200  # the 5 % subset of the 4,000-frame pool


def one_kind(metadata: dict[str, np.ndarray], name: str, size: int) -> np.ndarray:
    """``size`` frames of one kind (fewer if the pool has fewer), drawn once (the same for
    every run seed)."""
    kind, invalid_type = metadata["kind"].astype(str), metadata["invalid_type"].astype(str)
    members = {"valid": kind != "invalid", "core": kind == "core"}.get(name, invalid_type == name)
    candidates = np.flatnonzero(members)
    if candidates.size == 0:
        raise SystemExit(f"no frame of kind {name!r} in the pool")
    return np.sort(np.random.default_rng(123).choice(candidates, min(size, candidates.size), replace=False))


def mixture(metadata: dict[str, np.ndarray], valid_fraction: float, invalid_types: list[str] | None,
            seed: int, size: int) -> np.ndarray:
    """round(f · size) valid frames plus ``size`` minus that invalid ones, drawn per run seed."""
    kind, invalid_type = metadata["kind"].astype(str), metadata["invalid_type"].astype(str)
    valid = np.flatnonzero(kind != "invalid")
    invalid = np.flatnonzero(kind == "invalid" if invalid_types is None else np.isin(invalid_type, invalid_types))
    rng = np.random.default_rng([seed, 99])
    n_valid = int(round(valid_fraction * size))
    if n_valid > valid.size or size - n_valid > invalid.size:
        raise SystemExit(f"the pool has {valid.size} valid and {invalid.size} such invalid frames: "
                         f"too few for {n_valid} + {size - n_valid}; lower --set-size")
    return np.sort(np.concatenate([rng.choice(valid, n_valid, replace=False),
                                   rng.choice(invalid, size - n_valid, replace=False)]))


def score(protocol: Any, pool: Any, indices: np.ndarray | None, *, init_seed: int, training_seed: int,
          start: Path | None = None) -> float:
    """Pre-train on ``indices`` (None: no pre-training) and return the first task's metric in %.
    ``init_seed`` seeds the initial weights (unless ``start``, a checkpoint, replaces them),
    ``training_seed`` the masks, flips and order."""
    seed_everything(init_seed)
    backbone = plugins.create("backbone", protocol.backbone.name, protocol.backbone.params)
    if start is not None:
        backbone.load(start)
    if indices is not None:
        steps = protocol.pretrain.steps(len(pool), indices.size)
        backbone.pretrain(pool, indices, steps=steps, batch_size=protocol.pretrain.batch_size,
                          seed=training_seed, optimizer=protocol.pretrain.optimizer)
    spec = protocol.tasks[0]
    datasets = {split: plugins.create("dataset", spec.dataset.name, spec.dataset.params,
                                      **protocol.dataset_arguments(spec.dataset, split))
                for split in (spec.train_split, spec.test_split)}
    task = plugins.create("task", spec.name, spec.params)
    task.fit(backbone, datasets[spec.train_split], seed=training_seed)
    return 100.0 * float(task.evaluate(backbone, datasets[spec.test_split])[task.metric])


def initial_seed(protocol: Any, seed: int) -> int:
    """The seed of the initial weights: the protocol's ``pretrain.init_seed`` where it pins one
    (as a run does), else ``seed``."""
    return seed if protocol.pretrain.init_seed is None else protocol.pretrain.init_seed


def _start_checkpoint(start: str, protocol: Any, pool: Any, scratch: Path) -> Path | None:
    """The weights every training starts from: None (fresh, from the seed), the protocol's
    embedding warm-up (computed into ``scratch``) or a checkpoint file."""
    if start == "init":
        return None
    if start != "warmup":
        return Path(start)
    from delbench.run.embeddings import warmed_backbone

    warmed_backbone(pool, protocol.backbone, checkpoint=None, warmup_steps=protocol.embedding.warmup_steps,
                    batch_size=protocol.pretrain.batch_size, optimizer=protocol.pretrain.optimizer,
                    directory=scratch)
    return scratch / "warmup.safetensors"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", default=str(DEFAULT_PROTOCOL))
    parser.add_argument("--pool-seed", type=int, default=0)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sets", default="", help="comma-separated kinds (see the module docstring)")
    parser.add_argument("--mix", default="", help="comma-separated valid fractions in [0, 1]")
    parser.add_argument("--invalid-types", default="", help="invalid types a mixture draws from (default all)")
    parser.add_argument("--set-size", type=int, default=DEFAULT_SET_SIZE, help="frames per training set")
    parser.add_argument("--vary", choices=("all", "init", "training"), default="all",
                        help="what a run seed changes: everything (as in a run), only the initial weights, "
                             "or only the training (masks, flips, order, the mixture's draw); the rest "
                             "takes the first seed")
    parser.add_argument("--start", default="init",
                        help="'init' (fresh weights from the seed), 'warmup' (the protocol's embedding "
                             "warm-up on the whole pool, the same for every seed) or a checkpoint file")
    parser.add_argument("--cfg-options", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    overrides = {"pool.params.seed": args.pool_seed, **_key_values(args.cfg_options, "--cfg-options")}
    protocol, _ = load_protocol(args.protocol, overrides)
    pool = plugins.create("dataset", protocol.pool.name, protocol.pool.params,
                          **protocol.dataset_arguments(protocol.pool, "all"))
    metadata = pool.metadata()
    seeds = [int(s) for s in args.seeds.split(",")]
    invalid_types = args.invalid_types.split(",") if args.invalid_types else None
    plans: list[tuple[dict[str, Any], Any]] = []
    for name in filter(None, args.sets.split(",")):
        plans.append(({"set": name}, None if name == "init" else one_kind(metadata, name, args.set_size)))
    for fraction in filter(None, args.mix.split(",")):
        plans.append(({"mix_valid": float(fraction), "invalid_types": args.invalid_types or "all"}, float(fraction)))
    lines = []
    with tempfile.TemporaryDirectory(prefix="delbench-diagnostics-") as scratch:
        start = _start_checkpoint(args.start, protocol, pool, Path(scratch))
        for label, plan in plans:
            for seed in seeds:
                started = time.perf_counter()
                if args.vary == "init":
                    init_seed = seed
                else:
                    init_seed = initial_seed(protocol, seeds[0] if args.vary == "training" else seed)
                training_seed = seeds[0] if args.vary == "init" else seed
                indices = (mixture(metadata, plan, invalid_types, training_seed, args.set_size)
                           if isinstance(plan, float) else plan)
                value = score(protocol, pool, indices, init_seed=init_seed, training_seed=training_seed, start=start)
                line = {**label, "pool_seed": args.pool_seed, "seed": seed, "vary": args.vary, "start": args.start,
                        "score": round(value, 2), "seconds": round(time.perf_counter() - started, 1)}
                print(json.dumps(line), flush=True)
                lines.append(line)
    return lines

if __name__ == "__main__":
    main()
