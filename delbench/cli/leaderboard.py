"""``delbench leaderboard``: verified submissions of one protocol ranked."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from delbench.cli.base import add_protocol_options, reference_protocol


def add_parser(sub: Any) -> None:
    p = sub.add_parser("leaderboard", help="rank verified submissions of one protocol (Markdown and HTML)")
    p.add_argument("submissions", nargs="+", metavar="SUB")
    p.add_argument("--out", required=True, metavar="DIR")
    add_protocol_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from delbench.submissions import leaderboard

    files = leaderboard(args.submissions, args.out, reference=reference_protocol(args), check_pool=not args.no_pool)
    print(files["md"].read_text())
    for repeat in json.loads(files["json"].read_text()).get("repeated", []):
        print(f"note: {repeat['submission']} is the same submission as {repeat['same_as']}: ranked once",
              file=sys.stderr)
    print("written: " + ", ".join(str(path) for path in files.values()), file=sys.stderr)
    return 0
