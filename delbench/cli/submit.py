"""``delbench submit``: a run directory packed as a verifiable submission archive."""
from __future__ import annotations

import argparse
from typing import Any

from delbench.cli.base import add_protocol_options, print_findings, reference_protocol


def add_parser(sub: Any) -> None:
    p = sub.add_parser("submit", help="pack a run directory as a verifiable submission archive")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, metavar="SUB.tar.gz")
    add_protocol_options(p, pool=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from delbench.submissions import verify, write_submission

    out = write_submission(args.run_dir, args.out)
    print(f"written: {out}")
    result = verify(out, reference=reference_protocol(args), check_pool=False, require_reference=False)
    if print_findings(result):
        print(f"{len(result.problems)} problem(s): `delbench verify {out}` will reject this submission")
        return 1
    print(f"ok: {out} verifies ({len(result.rows)} rows, {result.n_subsets} subsets)")
    return 0
