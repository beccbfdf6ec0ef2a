"""``delbench report``: a run directory's report (summary.json, report.md, report.html)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from delbench.cli.base import print_validity


def add_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="write the report of a run directory (summary.json, report.md, report.html); "
                                      "exit 1 when rows of results.jsonl had to be left out (each is named)")
    p.add_argument("run_dir")
    p.add_argument("--format", default="md,json,html", metavar="md,json,html",
                   help="comma-separated formats to write (default: all three)")
    p.add_argument("--require-valid", action="store_true",
                   help="exit 2 unless the validity check passed: the quality bracket (oracle > random > "
                        "anti_oracle) and the coverage bracket (spread_valid > packed_valid), where present")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from delbench.reports import parse_formats, write_report

    report = write_report(args.run_dir, parse_formats(args.format))
    if "md" in report.files:
        print(report.files["md"].read_text())
    print("written: " + ", ".join(str(path) for path in report.files.values()), file=sys.stderr)
    valid = print_validity(report.summary)
    if report.problems:  # the report stands, but its rows are not all there: say so and fail
        for problem in report.problems:
            print(f"delbench: warning: {problem}", file=sys.stderr)
        return 1
    return 2 if args.require_valid and not valid else 0
