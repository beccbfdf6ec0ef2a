"""``delbench list``: the registered plugins of one kind, with their versions."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

KIND_CHOICES = ("datasets", "selectors", "backbones", "tasks")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("list", help="list registered plugins of one kind")
    p.add_argument("kind", choices=KIND_CHOICES)
    p.add_argument("pattern", nargs="?", help="glob on names, e.g. 'kvasir*'")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
