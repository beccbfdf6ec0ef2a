"""The ``delbench`` command line: list, select, run, report, verify, submit, leaderboard,
compare, data check.

Only argument parsing and printing live here; each command calls one library function.
Errors are one line on stderr and exit status 1 (2 for usage errors); ``--debug`` shows the
traceback. Heavy modules are imported inside the commands so ``delbench --help`` stays light.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

KIND_CHOICES = ("datasets", "selectors", "backbones", "tasks")


def _parse_value(text: str) -> Any:
    """Option values: JSON, else a Python literal (``[{'a': 1}]``, ``(1, 2)``), else the string."""
    import ast

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _key_values(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    from delbench.errors import ConfigError

    out = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ConfigError(f"{flag} expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


def cmd_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from delbench import discovery

    registries = discovery.registries()
    kind = args.kind[:-1]
    entries = [registries[kind].describe(name) for name in registries[kind].names(args.pattern)]
    if args.format == "json":
        print(json.dumps(entries, indent=2))
    else:
        print(tabulate([[e["name"], e["version"], e["plugin"], e["description"]] for e in entries],
                       headers=["name", "version", "plugin", "description"], tablefmt="simple"))
    for failure in registries.failures:
        print(f"warning: plugin {failure.name!r} ({failure.target}) failed to load: {failure.error}",
              file=sys.stderr)
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from delbench import discovery
    from delbench.errors import ConfigError
    from delbench.sdk.params import check_plugin_params
    from delbench.sdk.files import atomic_save_npy
    from delbench.embed import load_embeddings
    from delbench.protocol import SelectorSpec
    from delbench.run.select import select
    from delbench.sdk.subsets import ids_sha256

    dataset_params = _key_values(args.dataset_param, "--dataset-param")
    if args.root:
        dataset_params["root"] = args.root
    cls = discovery.get_selector(args.selector)
    # an index subset is one file (refused before any work, not after the selection ran); a
    # derived one is a folder of images with its manifest
    if Path(args.out).is_dir() and not getattr(cls, "produces_derived", False):
        raise ConfigError(f"--out {args.out} is a directory; give a file name such as {Path(args.out) / 'subset.npy'}")
    params = _key_values(args.set, "--set")
    check_plugin_params("selector", cls, params, f"--set ({args.selector})")  # before the pool is built
    backbone_spec = None
    if getattr(cls, "requires_backbone", False):
        from delbench.protocol import PluginSpec

        backbone_spec = PluginSpec(args.backbone, _key_values(args.backbone_param, "--backbone-param"))
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
                    get_embeddings=lambda: load_embeddings(args.embeddings, len(pool), pool_ids_sha256),
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


def _shard_world(args: argparse.Namespace):
    """Which shards this process takes: its rank under torchrun, or ``--shard-rank`` of
    ``--shard-count`` for one task of a job array (embed and select --work alike)."""
    from delbench.sdk.distributed import World, world_from_env
    from delbench.errors import ConfigError

    world = world_from_env()
    if args.shard_count is not None or args.shard_rank is not None:
        if world.distributed:
            raise ConfigError("--shard-rank/--shard-count are for job arrays; under torchrun the rank is RANK")
        count, rank = args.shard_count or 1, args.shard_rank or 0
        if count < 1 or not 0 <= rank < count:
            raise ConfigError(f"--shard-rank must be in [0, --shard-count), got {rank} of {count}")
        world = World(rank, count, 0)
    return world


def _selection_work(args: argparse.Namespace, pool_ids_sha256: str):
    """The ``SelectionWork`` of ``select --work``: this process's rank under torchrun (or
    ``--shard-rank``/``--shard-count`` for one task of a job array), and the inputs a work
    directory's stages are keyed by (the pool's ids hash, the embeddings' manifest or file)."""
    from delbench.embed import MANIFEST
    from delbench.errors import ConfigError
    from delbench.sdk.shards import SelectionWork

    world = _shard_world(args)
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


def cmd_embed(args: argparse.Namespace) -> int:
    from delbench.embed import embed_pool

    dataset_params = _key_values(args.dataset_param, "--dataset-param")
    if args.root:
        dataset_params["root"] = args.root
    result = embed_pool(dataset=args.dataset, dataset_params=dataset_params, split=args.split,
                        backbone=args.backbone, backbone_params=_key_values(args.backbone_param, "--backbone-param"),
                        checkpoint=args.checkpoint, out_dir=args.out, shard_size=args.shard_size,
                        batch_size=args.batch_size, dtype=args.dtype, seed=args.seed, world=_shard_world(args),
                        progress=not args.no_progress and sys.stderr.isatty())
    state = "complete" if result["complete"] else "incomplete (other processes' shards are not finished yet)"
    print(f"{len(result['computed'])} shard(s) computed, {len(result['skipped'])} already finished, of "
          f"{result['shards']}; {result['out_dir']} is {state}")
    return 0


def _scoring_backbone(args: argparse.Namespace, pool: Any, spec: Any, dataset_params: dict[str, Any]) -> Any:
    """The model a backbone-reading selector scores with: ``--scoring-checkpoint``, else
    ``--warmup-steps`` MAE steps on the pool (cached under the machine-wide cache, as
    ``delbench run`` caches its warm-up under the run's)."""
    import hashlib

    from delbench.sdk.files import cache_base
    from delbench.run.embeddings import warmed_backbone

    key = json.dumps({"dataset": args.dataset, "params": dataset_params, "split": args.split, "backbone": spec.name,
                      "backbone_params": spec.params, "warmup_steps": args.warmup_steps}, sort_keys=True, default=str)
    directory = cache_base() / "scoring" / hashlib.sha256(key.encode()).hexdigest()[:16]
    backbone, seconds = warmed_backbone(pool, spec, checkpoint=args.scoring_checkpoint,
                                        warmup_steps=0 if args.scoring_checkpoint else args.warmup_steps,
                                        batch_size=16, optimizer={}, directory=directory)
    if seconds:
        print(f"scoring model: {args.warmup_steps} MAE warm-up steps took {seconds:.1f} s", file=sys.stderr)
    return backbone


def cmd_run(args: argparse.Namespace) -> int:
    from delbench.protocol import load_protocol
    from delbench.reports import write_report
    from delbench.store import lock_work_dir
    from delbench.run import run_protocol

    options = _key_values(args.cfg_options, "--cfg-options")
    protocol, cfg = load_protocol(args.config, options)
    work_dir = Path(args.work_dir or Path("work_dirs") / protocol.name)
    with lock_work_dir(work_dir):  # the run and its report, as one holder
        if args.launcher == "inprocess":
            rows = run_protocol(protocol, work_dir, resume=args.resume, config_text=cfg.pretty_text,
                                progress=not args.no_progress and sys.stderr.isatty())
        else:
            from delbench.run.launch import SlurmOptions, launch

            slurm = SlurmOptions(partition=args.slurm_partition, array_parallelism=args.array_parallelism,
                                 timeout_min=args.timeout_min, gpus_per_node=args.gpus_per_node,
                                 cpus_per_task=args.cpus_per_task)
            rows = launch(protocol, args.config, options, work_dir, launcher=args.launcher, resume=args.resume,
                          config_text=cfg.pretty_text, max_parallel=args.max_parallel, slurm=slurm)
        report = write_report(work_dir)
    failed = sum(not row.ok for row in rows)
    print(f"{len(rows)} cell(s) run, {failed} failed; report: "
          + ", ".join(str(path) for path in report.files.values()))
    if not args.quiet and "md" in report.files:
        print(report.files["md"].read_text())
    valid = _print_validity(report.summary)
    if failed:
        return 1
    return 2 if args.require_valid and not valid else 0


def cmd_report(args: argparse.Namespace) -> int:
    from delbench.reports import parse_formats, write_report

    report = write_report(args.run_dir, parse_formats(args.format))
    if "md" in report.files:
        print(report.files["md"].read_text())
    print("written: " + ", ".join(str(path) for path in report.files.values()), file=sys.stderr)
    valid = _print_validity(report.summary)
    return 2 if args.require_valid and not valid else 0


def _print_validity(summary: dict[str, Any]) -> bool:
    """Print the bracket check's verdict (when the pool has planted ground truth); True when
    it passed."""
    from delbench.reports import validity_verdict

    verdict = validity_verdict(summary)
    if verdict:
        print(verdict)
    return bool((summary.get("validity") or {}).get("bracket_passed"))


def _reference_protocol(args: argparse.Namespace):
    """The protocol a run or submission is checked against: ``--protocol FILE`` (with
    ``--cfg-options``), else None (looked up by the name the run records)."""
    from delbench.protocol import load_protocol
    from delbench.errors import ConfigError

    if args.protocol:
        return load_protocol(args.protocol, _key_values(args.cfg_options, "--cfg-options"))[0]
    if args.cfg_options:
        raise ConfigError("--cfg-options needs --protocol FILE (the options apply to that protocol)")
    return None


def cmd_verify(args: argparse.Namespace) -> int:
    from delbench.submissions import verify

    result = verify(args.target, reference=_reference_protocol(args), check_pool=not args.no_pool, rerun=args.rerun,
                    rerun_seed=args.rerun_seed, tolerance=args.tolerance)
    if _print_findings(result):
        print(f"{len(result.problems)} problem(s)")
        return 1
    rerun = f"; {args.rerun} re-run cell(s) within ±{args.tolerance:g}" if args.rerun else ""
    print(f"ok: every hash matches; {len(result.rows)} rows are the planned cells of protocol {result.protocol} "
          f"v{result.protocol_version}, each matching its subset and its recomputed NormDEL; "
          f"{result.n_subsets} subset file(s) sorted unique int64{rerun}")
    return 0


def _print_findings(result: Any) -> bool:
    """Print a verification's problems (one ``FAIL`` line each) and notes; whether it found any problem."""
    for problem in result.problems:
        print(f"FAIL {problem}")
    for note in result.notes:
        print(f"note: {note}")
    return bool(result.problems)


def cmd_submit(args: argparse.Namespace) -> int:
    from delbench.submissions import verify, write_submission

    out = write_submission(args.run_dir, args.out)
    print(f"written: {out}")
    result = verify(out, reference=_reference_protocol(args), check_pool=False, require_reference=False)
    if _print_findings(result):
        print(f"{len(result.problems)} problem(s): `delbench verify {out}` will reject this submission")
        return 1
    print(f"ok: {out} verifies ({len(result.rows)} rows, {result.n_subsets} subsets)")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from delbench.submissions import leaderboard

    files = leaderboard(args.submissions, args.out, reference=_reference_protocol(args), check_pool=not args.no_pool)
    print(files["md"].read_text())
    print("written: " + ", ".join(str(path) for path in files.values()), file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from delbench.submissions import compare

    result = compare(args.run_dir, args.baseline, tolerance=args.tolerance)
    for difference in result.differences:
        print(f"FAIL {difference}")
    if result.differences:
        print(f"{len(result.differences)} difference(s) from the baseline {args.baseline}")
        return 1
    print(f"ok: {result.cells} cell(s) match the baseline {args.baseline} (subset hashes exact, metrics and NormDEL "
          f"within ±{result.tolerance:g})")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from delbench import discovery
    from delbench.datacheck import check_dataset
    from delbench.sdk.params import check_plugin_params

    params = _key_values(args.dataset_param, "--dataset-param")
    dataset_cls = discovery.get_dataset(args.name)
    check_plugin_params("dataset", dataset_cls, {**params, **({"root": args.root} if args.root else {})},
                        f"--dataset-param ({args.name})")
    report = check_dataset(dataset_cls, root=args.root, **params)
    print(report.format())
    return 1 if report.problems else 0


def build_parser() -> argparse.ArgumentParser:
    from delbench import __version__

    parser = argparse.ArgumentParser(prog="delbench", description=(
        "Benchmark harness for data-effective pre-training: select a subset of a pool, pre-train "
        "under a fixed protocol, evaluate downstream, report NormDEL."))
    parser.add_argument("--version", action="version", version=f"delbench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list registered plugins of one kind")
    p.add_argument("kind", choices=KIND_CHOICES)
    p.add_argument("pattern", nargs="?", help="glob on names, e.g. 'kvasir*'")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("select", help="run one selector on a pool and write the indices (.npy)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--selector", required=True)
    p.add_argument("--ratio", required=True, type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="all")
    p.add_argument("--root", help="dataset root folder (real datasets)")
    p.add_argument("--embeddings", help="n × d .npy (row i = pool item i) or a 'delbench embed' directory")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="selector parameters")
    p.add_argument("--dataset-param", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--backbone", default="timm_mae",
                   help="scoring model of selectors that read one (mae_loss, optidel); default timm_mae")
    p.add_argument("--backbone-param", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--scoring-checkpoint", help="weights of the scoring model (else --warmup-steps on the pool)")
    p.add_argument("--warmup-steps", type=int, default=100,
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
    p.set_defaults(func=cmd_select)

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
    p.add_argument("--seed", type=int, default=0, help="initial weights when there is no --checkpoint")
    p.add_argument("--split", default="all")
    p.add_argument("--root", help="dataset root folder (real datasets)")
    p.add_argument("--dataset-param", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--backbone-param", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("run", help="run a protocol config (cells are appended; --resume continues)")
    p.add_argument("config")
    p.add_argument("--work-dir", help="default: work_dirs/<protocol name>")
    p.add_argument("--cfg-options", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config keys, e.g. pretrain.reference_epochs=1 seeds=[0,1]")
    p.add_argument("--resume", action="store_true", help="continue a run; finished cells are skipped")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--quiet", action="store_true", help="do not print the report at the end")
    p.add_argument("--require-valid", action="store_true",
                   help="exit 2 unless the report's bracket check (oracle > random > anti_oracle) passed")
    p.add_argument("--launcher", choices=("inprocess", "local", "debug", "slurm"), default="inprocess",
                   help="inprocess (default); or one submitit job per selection group: local processes, "
                        "debug (in this process), a slurm job array (needs delbench[launch])")
    p.add_argument("--max-parallel", type=int, default=1, help="local launcher: jobs running at once")
    p.add_argument("--slurm-partition")
    p.add_argument("--array-parallelism", type=int, default=16, help="slurm: array tasks running at once")
    p.add_argument("--timeout-min", type=int, default=24 * 60, help="slurm: minutes per job")
    p.add_argument("--gpus-per-node", type=int, default=0, help="slurm: GPUs per job")
    p.add_argument("--cpus-per-task", type=int, default=8, help="slurm: CPUs per job")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="write the report of a run directory (summary.json, report.md, report.html)")
    p.add_argument("run_dir")
    p.add_argument("--format", default="md,json,html", metavar="md,json,html",
                   help="comma-separated formats to write (default: all three)")
    p.add_argument("--require-valid", action="store_true",
                   help="exit 2 unless the bracket check (oracle > random > anti_oracle) passed")
    p.set_defaults(func=cmd_report)

    def protocol_options(p: argparse.ArgumentParser, pool: bool = True) -> None:
        p.add_argument("--protocol", metavar="FILE",
                       help="the protocol to check settings against (default: benchmarks/<protocol name>.py)")
        p.add_argument("--cfg-options", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for --protocol")
        if pool:
            p.add_argument("--no-pool", action="store_true",
                           help="do not re-open the pool here (its data may be elsewhere); hashes are still checked")

    p = sub.add_parser("verify", help="recompute and check everything a run directory or submission records")
    p.add_argument("target", metavar="RUN_DIR|SUB.tar.gz")
    protocol_options(p)
    p.add_argument("--rerun", type=int, default=0, metavar="N", help="also re-run N sampled cells here and compare")
    p.add_argument("--rerun-seed", type=int, default=0, metavar="S", help="seed of the sample of re-run cells")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="re-run metrics may differ by this much (absolute, fractions: 0.01 = 1 point); default 0")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("submit", help="pack a run directory as a verifiable submission archive")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, metavar="SUB.tar.gz")
    protocol_options(p, pool=False)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("leaderboard", help="rank verified submissions of one protocol (Markdown and HTML)")
    p.add_argument("submissions", nargs="+", metavar="SUB")
    p.add_argument("--out", required=True, metavar="DIR")
    protocol_options(p)
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("compare", help="compare a run with a baseline (summary.json or submission); exit 1 on "
                                       "a regression")
    p.add_argument("run_dir")
    p.add_argument("baseline")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="metrics may differ by this much (absolute, fractions: 0.01 = 1 point); default 0")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("data", help="dataset utilities")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    q = data_sub.add_parser("check", help="validate every item of a dataset copy; non-zero exit on problems")
    q.add_argument("name")
    q.add_argument("--root", help="dataset root (else the dataset's environment variable)")
    q.add_argument("--dataset-param", nargs="*", default=[], metavar="KEY=VALUE")
    q.set_defaults(func=cmd_data_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        from delbench.errors import DelbenchError, one_line

        kind = "error" if isinstance(exc, DelbenchError) else f"error ({type(exc).__name__})"
        print(f"delbench: {kind}: {one_line(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
