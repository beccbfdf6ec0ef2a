"""``delbench data check``: every item of a dataset copy validated, problems named by file."""
from __future__ import annotations

import argparse
from typing import Any

from delbench.cli.base import key_values


def add_parser(sub: Any) -> None:
    p = sub.add_parser("data", help="dataset utilities")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    q = data_sub.add_parser("check", help="validate every item of a dataset copy; non-zero exit on problems")
    q.add_argument("name")
    q.add_argument("--root", help="dataset root (else the dataset's environment variable)")
    q.add_argument("--dataset-param", nargs="*", default=[], metavar="KEY=VALUE",
                   help="the dataset's parameters; split=NAME checks one split (default: every split)")
    q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from delbench import discovery
    from delbench.datacheck import check_dataset
    from delbench.sdk.params import check_plugin_params

    params = key_values(args.dataset_param, "--dataset-param")
    dataset_cls = discovery.get_dataset(args.name)
    # the split is the harness's argument (as in run and select), checked with the others: every split by
    # default, which is "all" for a dataset that reads files (and the only split of a plain image folder)
    split = {"split": params.pop("split")} if "split" in params else {}
    check_plugin_params("dataset", dataset_cls, {**params, **({"root": args.root} if args.root else {})},
                        f"--dataset-param ({args.name})", harness=split or {"split": "all"})
    report = check_dataset(dataset_cls, root=args.root, **params, **split)
    print(report.format())
    return 1 if report.problems else 0
