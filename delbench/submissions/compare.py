"""Regression suites (``delbench compare``): a run against a stored baseline (a summary.json, a
run directory or a submission) — the same cells, every subset exactly, every metric and
NormDEL within a tolerance."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from delbench.errors import ConfigError, DelbenchError, one_line
from delbench.store import read_header, read_rows
from delbench.submissions.extract import open_submission
from delbench.submissions.verify import DEFAULT_TOLERANCE


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` found: the differences (empty: the run matches its baseline)."""

    differences: list[str]
    cells: int
    tolerance: float


def _baseline(path: Path) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """A baseline's config_sha256 and its ok rows by key: a summary JSON (``rows``), a run
    directory or a submission."""
    if path.is_file() and path.suffix == ".json":
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DelbenchError(f"baseline {path}: not JSON ({one_line(str(exc))})") from None
        if not isinstance(summary, dict) or not isinstance(summary.get("rows"), list):
            raise DelbenchError(f"baseline {path}: a summary.json without per-row records; write it with this "
                                f"delbench's `delbench report`")
        return summary.get("config_sha256"), {row["key"]: row for row in summary["rows"]}
    with open_submission(path) as directory:
        header = read_header(directory)
        return header.get("config_sha256"), {row.key: row.to_json() for row in read_rows(directory) if row.ok}


def compare(run_dir: str | Path, baseline: str | Path, *, tolerance: float = DEFAULT_TOLERANCE) -> Comparison:
    """Compare a run with a stored baseline: the same config_sha256, the same cells, every
    subset (``subset_sha256``, ``ids_sha256``) exactly, every metric and NormDEL within
    ``tolerance`` (absolute, on fractions: 0.01 is one percentage point). Each difference is
    one line naming the cell."""
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ConfigError(f"--tolerance must be a number ≥ 0, got {tolerance!r}")
    run_dir = Path(run_dir)
    header = read_header(run_dir)
    base_sha, base = _baseline(Path(baseline))
    rows = {row.key: row for row in read_rows(run_dir)}
    differences = []
    if header.get("config_sha256") != base_sha:
        differences.append(f"config_sha256 {header.get('config_sha256')} != the baseline's {base_sha} (the protocol "
                           f"changed: the cells are not comparable)")
    for key in sorted(base):
        row, recorded = rows.get(key), base[key]
        if row is None:
            differences.append(f"row {key}: in the baseline, missing from the run")
            continue
        if not row.ok:
            differences.append(f"row {key}: failed in the run ({row.stage}): {row.error}")
            continue
        for name in ("subset_sha256", "ids_sha256"):
            if getattr(row, name) != recorded.get(name):
                differences.append(f"row {key}: {name} {getattr(row, name)} != the baseline's {recorded.get(name)}")
        values = {**(recorded.get("metrics") or {}), "normdel": recorded.get("normdel")}
        mine = {**row.metrics, "normdel": row.normdel}
        for name, value in sorted(values.items()):
            now = mine.get(name)
            if value is None and now is None:
                continue
            if value is None or now is None or abs(now - value) > tolerance:
                delta = "" if value is None or now is None else f", |Δ| {abs(now - value):.3g}"
                differences.append(f"row {key}: {name} {now!r} vs the baseline's {value!r}{delta} "
                                   f"(tolerance ±{tolerance:g})")
    for key in sorted(k for k, row in rows.items() if row.ok and k not in base):
        differences.append(f"row {key}: not in the baseline")
    return Comparison(differences, len(base), tolerance)
