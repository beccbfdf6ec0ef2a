"""What each kind of training set does to the embedded benchmark's score.

Pre-trains the protocol's backbone on hand-picked training sets of the synthetic pool (no
selector involved) for the protocol's compute-matched steps and scores each encoder with every
task of the protocol, the same code the runner uses. Two kinds of training set:

* ``--sets``: ``--set-size`` (default 200, the 5 % subset) frames of one kind each —
  ``valid`` (any non-invalid frame), ``core``, an invalid type (``motion_blur``, ``dark``,
  ``overexposed``, ``bubbles``, ``out_of_body``), ``spread`` or ``packed`` (the valid frames
  the coverage references ``spread_valid`` and ``packed_valid`` keep: one per scene over every
  centre first, or the fewest scenes of the biggest centre), ``clean`` (every valid frame of
  the pool, whatever the set size: the whole clean pool) or ``init`` (no pre-training: the
  randomly initialised encoder). The frames are drawn once (seed 123), the same for every run
  seed.
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
``pretrain.optimizer.lr=1e-4``; ``pretrain.reference_epochs=2.4`` for 4× the steps). One JSON
line per (training set, seed): ``score``, the mean of the tasks' scores in % (the score the
benchmark ranks by), ``scores`` per task label, and the seconds it took.

    python benchmarks/diagnostics/training_sets.py --protocol benchmarks/validity.py --seeds 0,1,2 \
        --sets clean,init,spread,packed
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


#: training sets that are a reference selector's subset of ``--set-size`` frames
COVERAGE_SETS = {"spread": "spread_valid", "packed": "packed_valid"}


def one_kind(metadata: dict[str, np.ndarray], name: str, size: int, pool: Any = None) -> np.ndarray:
    """``size`` frames of one kind (fewer if the pool has fewer), drawn once (the same for
    every run seed); ``spread`` and ``packed`` are the coverage references' subsets of
    ``pool``, ``clean`` every valid frame."""
    kind, invalid_type = metadata["kind"].astype(str), metadata["invalid_type"].astype(str)
    if name == "clean":
        return np.flatnonzero(kind != "invalid")
    if name in COVERAGE_SETS:
        from delbench import get_selector
        from delbench.run.select import run_selector

        return run_selector(get_selector(COVERAGE_SETS[name])(), pool, size / len(pool), seed=0).indices
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
          start: Path | None = None) -> dict[str, float]:
    """Pre-train on ``indices`` (None: no pre-training) for the protocol's steps for a subset
    of its size (compute-matched: the same for every set) and return every task's
    metric in %, by task label. ``init_seed`` seeds the initial weights (unless ``start``, a
    checkpoint, replaces them), ``training_seed`` the masks, flips and order."""
    seed_everything(init_seed)
    backbone = plugins.create("backbone", protocol.backbone.name, protocol.backbone.params)
    if start is not None:
        backbone.load(start)
    if indices is not None:
        steps = protocol.pretrain.steps(len(pool), indices.size)
        backbone.pretrain(pool, indices, steps=steps, batch_size=protocol.pretrain.batch_size,
                          seed=training_seed, optimizer=protocol.pretrain.optimizer)
    scores = {}
    for spec in protocol.tasks:
        datasets = {split: plugins.create("dataset", spec.dataset.name, spec.dataset.params,
                                          **protocol.dataset_arguments(spec.dataset, split))
                    for split in (spec.train_split, spec.test_split)}
        task = plugins.create("task", spec.name, spec.params)
        task.fit(backbone, datasets[spec.train_split], seed=training_seed)
        scores[spec.label] = 100.0 * float(task.evaluate(backbone, datasets[spec.test_split])[task.metric])
    return scores


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
        plans.append(({"set": name}, None if name == "init" else one_kind(metadata, name, args.set_size, pool)))
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
                values = score(protocol, pool, indices, init_seed=init_seed, training_seed=training_seed, start=start)
                line = {**label, "pool_seed": args.pool_seed, "seed": seed, "vary": args.vary, "start": args.start,
                        "score": round(float(np.mean(list(values.values()))), 2),
                        "scores": {k: round(v, 2) for k, v in values.items()},
                        "seconds": round(time.perf_counter() - started, 1)}
                print(json.dumps(line), flush=True)
                lines.append(line)
    return lines

if __name__ == "__main__":
    main()
