"""What the subcommands share: ``KEY=VALUE`` options, the protocol options of verify, submit
and leaderboard, the shard options of select and embed, and printing verifications and the
validity verdict. Heavy modules are imported inside the functions, so ``delbench --help``
stays light."""
from __future__ import annotations

import argparse
import json
from typing import Any, Sequence


#: names a value may use besides literals, as in a config file
_NAMED_VALUES = {"nan": float("nan"), "inf": float("inf")}


def _literal(node: Any) -> Any:
    """The value of a parsed expression made of literals, ``dict(key=...)`` calls (as config
    files write dicts), ``nan`` and ``inf``; anything else is a ValueError naming it."""
    import ast

    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" \
            and not node.args and all(k.arg for k in node.keywords):
        return {k.arg: _literal(k.value) for k in node.keywords}
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [_literal(element) for element in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Name) and node.id in _NAMED_VALUES:
        return _NAMED_VALUES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"{ast.unparse(node)!r} is not a literal") from None


def parse_value(text: str, where: str = "value") -> Any:
    """Option values: JSON, else a Python literal as a config file writes it (``[dict(name=
    'random')]``, ``{'a': 1}``, ``(1, 2)``, ``nan``, ``inf``), else the string. Text that
    opens a list, tuple or dict but is none of these is a ConfigError naming ``where``: kept
    as a string it would be read letter by letter (``unknown selector '['``)."""
    import ast

    from delbench.errors import ConfigError

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return _literal(ast.parse(text.strip(), mode="eval").body)
    except (ValueError, SyntaxError) as exc:
        if text.strip()[:1] in ("[", "(", "{"):
            reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
            raise ConfigError(f"{where}: {text!r} is not a value ({reason}); write literals (numbers, 'strings', "
                              f"True/False/None, nan, inf) in lists, tuples, {{'key': ...}} or dict(key=...)") from None
        return text


def non_negative_int(text: str) -> int:
    """An argparse ``type`` for seeds and counts: an integer ≥ 0, else argparse's usage error
    naming the option (``argument --seed: must be an integer ≥ 0, got '-1'``)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 0, got {text!r}")
    return value


def key_values(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    from delbench.errors import ConfigError

    out = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ConfigError(f"{flag} expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = parse_value(value, f"{flag} {key.strip()}")
    return out


def shard_world(args: argparse.Namespace):
    """Which shards this process takes: its rank under torchrun, or ``--shard-rank`` of
    ``--shard-count`` for one task of a job array (embed and select --work alike)."""
    from delbench.errors import ConfigError
    from delbench.sdk.distributed import World, world_from_env

    world = world_from_env()
    if args.shard_count is not None or args.shard_rank is not None:
        if world.distributed:
            raise ConfigError("--shard-rank/--shard-count are for job arrays; under torchrun the rank is RANK")
        count, rank = args.shard_count or 1, args.shard_rank or 0
        if count < 1 or not 0 <= rank < count:
            raise ConfigError(f"--shard-rank must be in [0, --shard-count), got {rank} of {count}")
        world = World(rank, count, 0)
    return world


def print_validity(summary: dict[str, Any]) -> bool:
    """Print the bracket check's verdict (when the pool has planted ground truth); True when
    it passed."""
    from delbench.reports import validity_verdict

    verdict = validity_verdict(summary)
    if verdict:
        print(verdict)
    return bool((summary.get("validity") or {}).get("bracket_passed"))


def reference_protocol(args: argparse.Namespace):
    """The protocol a run or submission is checked against: ``--protocol FILE`` (with
    ``--cfg-options``), else None (looked up by the name the run records)."""
    from delbench.errors import ConfigError
    from delbench.protocol import load_protocol

    if args.protocol:
        return load_protocol(args.protocol, key_values(args.cfg_options, "--cfg-options"))[0]
    if args.cfg_options:
        raise ConfigError("--cfg-options needs --protocol FILE (the options apply to that protocol)")
    return None


def print_findings(result: Any) -> bool:
    """Print a verification's problems (one ``FAIL`` line each) and notes; whether it found any problem."""
    for problem in result.problems:
        print(f"FAIL {problem}")
    for note in result.notes:
        print(f"note: {note}")
    return bool(result.problems)


def add_protocol_options(p: argparse.ArgumentParser, pool: bool = True) -> None:
    p.add_argument("--protocol", metavar="FILE",
                   help="the protocol to check settings against (default: benchmarks/<protocol name>.py)")
    p.add_argument("--cfg-options", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for --protocol")
    if pool:
        p.add_argument("--no-pool", action="store_true",
                       help="do not re-open the pool here (its data may be elsewhere); hashes are still checked")
