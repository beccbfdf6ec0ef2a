"""``delbench compare``: a run against a stored baseline; exit 1 on a regression."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("compare", help="compare a run with a baseline (summary.json or submission); exit 1 on "
                                       "a regression")
    p.add_argument("run_dir")
    p.add_argument("baseline")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="metrics may differ by this much (absolute, fractions: 0.01 = 1 point); default 0")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
