"""``delbench run``: a protocol run into a work directory, then its report."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from delbench.cli.base import key_values, print_validity


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run a protocol config (cells are appended; --resume continues)")
    p.add_argument("config")
    p.add_argument("--work-dir", help="default: work_dirs/<protocol name>")
    p.add_argument("--cfg-options", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config keys, e.g. pretrain.reference_epochs=1 seeds=[0,1]")
    p.add_argument("--resume", action="store_true", help="continue a run; finished cells are skipped")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--quiet", action="store_true", help="do not print the report at the end")
    p.add_argument("--require-valid", action="store_true",
                   help="exit 2 unless the report's validity check passed: the quality bracket (oracle > "
                        "random > anti_oracle) and the coverage bracket (spread_valid > packed_valid), where present")
    p.add_argument("--launcher", choices=("inprocess", "local", "debug", "slurm"), default="inprocess",
                   help="inprocess (default); or one submitit job per selection group: local processes, "
                        "debug (in this process), a slurm job array (needs delbench[launch])")
    p.add_argument("--max-parallel", type=int, default=1, help="local launcher: jobs running at once")
    p.add_argument("--slurm-partition")
    p.add_argument("--array-parallelism", type=int, default=16, help="slurm: array tasks running at once")
    p.add_argument("--timeout-min", type=int, default=24 * 60, help="slurm: minutes per job")
    p.add_argument("--gpus-per-node", type=int, default=0, help="slurm: GPUs per job")
    p.add_argument("--cpus-per-task", type=int, default=8, help="slurm: CPUs per job")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from delbench.protocol import load_protocol
    from delbench.reports import write_report
    from delbench.run import run_protocol
    from delbench.store import lock_work_dir

    options = key_values(args.cfg_options, "--cfg-options")
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
    valid = print_validity(report.summary)
    if failed:
        return 1
    return 2 if args.require_valid and not valid else 0
