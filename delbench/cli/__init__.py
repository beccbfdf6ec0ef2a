"""The ``delbench`` command line: one module per subcommand on a small shared base.

Each subcommand module (:mod:`~delbench.cli.ls`, :mod:`~delbench.cli.select`,
:mod:`~delbench.cli.embed`, :mod:`~delbench.cli.run`, :mod:`~delbench.cli.report`,
:mod:`~delbench.cli.verify`, :mod:`~delbench.cli.submit`, :mod:`~delbench.cli.leaderboard`,
:mod:`~delbench.cli.compare`, :mod:`~delbench.cli.data`) adds its parser (``add_parser``) and
runs it (``run``): it parses its arguments and calls the library, nothing more. Errors are
one line on stderr and exit status 1 (2 for usage errors); ``--debug`` shows the traceback.
Heavy modules are imported inside the commands so ``delbench --help`` stays light.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from delbench.cli import compare, data, embed, leaderboard, ls, report, run, select, submit, verify

#: the subcommands, in the order ``delbench --help`` lists them
SUBCOMMANDS = (ls, select, embed, run, report, verify, submit, leaderboard, compare, data)


def build_parser() -> argparse.ArgumentParser:
    from delbench import __version__

    parser = argparse.ArgumentParser(prog="delbench", description=(
        "Benchmark harness for data-effective pre-training: select a subset of a pool, pre-train "
        "under a fixed protocol, evaluate downstream, report NormDEL."))
    parser.add_argument("--version", action="version", version=f"delbench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in SUBCOMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt as exc:
        if args.debug:
            raise
        print(f"delbench: interrupted: {exc}" if str(exc) else "delbench: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        from delbench.errors import DelbenchError, one_line

        kind = "error" if isinstance(exc, DelbenchError) else f"error ({type(exc).__name__})"
        print(f"delbench: {kind}: {one_line(str(exc))}", file=sys.stderr)
        return 1
