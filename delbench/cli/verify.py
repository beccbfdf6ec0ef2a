"""``delbench verify``: recompute and check everything a run directory or a submission records."""
from __future__ import annotations

import argparse
from typing import Any

from delbench.cli.base import add_protocol_options, non_negative_int, print_findings, reference_protocol


def add_parser(sub: Any) -> None:
    p = sub.add_parser("verify", help="recompute and check everything a run directory or submission records")
    p.add_argument("target", metavar="RUN_DIR|SUB.tar.gz")
    add_protocol_options(p)
    p.add_argument("--rerun", type=non_negative_int, default=0, metavar="N", help="also re-run N sampled cells here and compare")
    p.add_argument("--rerun-seed", type=non_negative_int, default=0, metavar="S", help="seed of the sample of re-run cells")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="re-run metrics may differ by this much (absolute, fractions: 0.01 = 1 point); default 0")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from delbench.submissions import verify

    result = verify(args.target, reference=reference_protocol(args), check_pool=not args.no_pool, rerun=args.rerun,
                    rerun_seed=args.rerun_seed, tolerance=args.tolerance)
    if print_findings(result):
        print(f"{len(result.problems)} problem(s)")
        return 1
    rerun = f"; {args.rerun} re-run cell(s) within ±{args.tolerance:g}" if args.rerun else ""
    print(f"ok: every hash matches; {len(result.rows)} rows are the planned cells of protocol {result.protocol} "
          f"v{result.protocol_version}, each matching its subset and its recomputed NormDEL; "
          f"{result.n_subsets} subset file(s) sorted unique int64{rerun}")
    return 0
