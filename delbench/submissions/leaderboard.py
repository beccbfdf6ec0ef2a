"""The leaderboard (``delbench leaderboard``): verified submissions of one protocol ranked by
aggregate NormDEL with its interval, as Markdown, HTML and JSON; the others listed apart with
the reason."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from tabulate import tabulate

from delbench.errors import DelbenchError, one_line
from delbench.protocol import load_protocol
from delbench.reports import aggregate_selectors, interval_text, markdown_to_html, statistics_note
from delbench.sdk.files import atomic_write_json, atomic_write_text
from delbench.submissions.verify import find_protocol_file, verify


def leaderboard(paths: Sequence[str | Path], out_dir: str | Path, *, reference: Any = None,
                check_pool: bool = True) -> dict[str, Path]:
    """Rank the verified submissions of one protocol by aggregate NormDEL (with intervals)
    into ``out_dir``: leaderboard.md, leaderboard.html and leaderboard.json. Each entry is a
    selector of a submission; a submission that fails verification, or is of another
    protocol than the leaderboard's (``reference``, else the first verified one's), is
    listed apart with the reason; one given again (the same manifest sha256, or the same
    run directory) is ranked once and listed as repeated. No verified submission is a
    :class:`~delbench.errors.DelbenchError` giving each one's reason, and writes nothing."""
    verified, apart, repeated, seen = [], [], [], {}
    for path in paths:
        try:
            check = verify(path, reference=reference, check_pool=check_pool)
        except DelbenchError as exc:  # an archive refused whole (a member leading outside, not a tar)
            apart.append({"submission": str(path), "reason": one_line(str(exc))})
            continue
        if reference is None and check.ok:  # the first verified submission's protocol is the leaderboard's
            found = find_protocol_file(check.protocol)
            reference = load_protocol(found)[0] if found else None
        if not check.ok:
            more = f" (and {len(check.problems) - 1} more)" if len(check.problems) > 1 else ""
            apart.append({"submission": str(path), "reason": check.problems[0] + more})
        else:
            identity = check.manifest_sha256 or str(Path(path).resolve())
            if identity in seen:
                repeated.append({"submission": str(path), "same_as": seen[identity],
                                 "manifest_sha256": check.manifest_sha256})
                continue
            seen[identity] = str(path)
            verified.append(check)
    if not verified:
        raise DelbenchError("no submission verified, so there is nothing to rank: " + "; ".join(
            f"{u['submission']}: {u['reason']}" for u in apart))
    if reference is None:
        raise DelbenchError("no protocol to rank against; pass --protocol FILE")
    significance = reference.significance
    entries = []
    for check in verified:
        if (check.protocol, check.protocol_version) != (reference.name, reference.version):
            apart.append({"submission": check.target, "reason": f"protocol {check.protocol} v{check.protocol_version}, "
                                                                f"not {reference.name} v{reference.version}"})
            continue
        for entry in aggregate_selectors(check.rows, 1 - significance):
            entries.append({"submission": Path(check.target).name, "config_sha256": check.config_sha256, **entry})
    entries.sort(key=lambda e: (-e["normdel_mean"], e["submission"], e["selector"]))
    for rank, entry in enumerate(entries, 1):
        entry["rank"] = rank
    board = {"protocol": reference.name, "protocol_version": reference.version,
             "statistics": {"normdel_alpha": reference.alpha, "significance": significance,
                            "confidence": 1 - significance},
             "entries": entries, "unverified": apart, "repeated": repeated}
    out_dir = Path(out_dir)
    markdown = render_leaderboard(board)
    atomic_write_json(out_dir / "leaderboard.json", board)
    atomic_write_text(out_dir / "leaderboard.md", markdown)
    atomic_write_text(out_dir / "leaderboard.html", markdown_to_html(
        markdown, lambda src: src, f"delbench leaderboard: {board['protocol']} v{board['protocol_version']}"))
    return {"md": out_dir / "leaderboard.md", "html": out_dir / "leaderboard.html", "json": out_dir / "leaderboard.json"}


def render_leaderboard(board: dict[str, Any]) -> str:
    stats = board["statistics"]
    level = f"{100 * stats['confidence']:g} %"
    lines = [f"# delbench leaderboard: {board['protocol']} (protocol v{board['protocol_version']})", "",
             f"- {statistics_note({'statistics': {**stats}, 'alpha': stats['normdel_alpha']})}",
             f"- {len(board['entries'])} ranked selector(s) from verified submissions; "
             f"{len(board['unverified'])} submission(s) listed apart", "", "## Ranking", "",
             f"Ranked by aggregate NormDEL in % (mean over datasets and ratios of the cells' means over seeds), with "
             f"its {level} interval (stratified percentile bootstrap over seeds); score AUC is the normalised area "
             f"under the score-vs-ratio curve. Every submission passed `delbench verify` against the protocol.", ""]
    table = [[str(e["rank"]), e["selector"], e["submission"], ", ".join(f"{r:g}" for r in e["ratios"]),
              "–".join(str(n) for n in sorted(set(e["n_seeds"]))), interval_text(e["normdel_mean"], e["normdel_ci"]),
              interval_text(e["score_auc"], e["score_auc_ci"])] for e in board["entries"]]
    lines += [tabulate(table, headers=["rank", "selector", "submission", "ratios", "seeds", "NormDEL %",
                                       "score AUC %"], tablefmt="github", disable_numparse=True), ""]
    if board.get("repeated"):
        lines += ["## Given more than once (ranked once)", "",
                  tabulate([[r["submission"], r["same_as"]] for r in board["repeated"]],
                           headers=["submission", "the same submission as"], tablefmt="github",
                           disable_numparse=True), ""]
    if board["unverified"]:
        lines += ["## Not verified (not ranked)", "",
                  tabulate([[u["submission"], u["reason"]] for u in board["unverified"]],
                           headers=["submission", "reason"], tablefmt="github", disable_numparse=True), ""]
    return "\n".join(lines).rstrip() + "\n"
