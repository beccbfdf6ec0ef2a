"""The rows file of a run: appended one fsynced line per finished cell, read back keeping the
last row per cell key; a line cut by a killed writer is repaired or skipped, never glued to."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from delbench.errors import DelbenchError
from delbench.sdk.files import dumps, write_error
from delbench.store.schema import ROWS_FILE, ResultRow

logger = logging.getLogger(__name__)


def append_row(path: str | Path, row: ResultRow) -> None:
    """Append one JSON line and fsync, so a killed run loses at most the cell in progress.

    A write that fails part-way (disk full) is cut back to the previous end of the file, so
    no half line is left for the next row to be glued to, and raises a
    :class:`~delbench.errors.WriteError` naming the file.
    """
    line = (dumps(row.to_json(), sort_keys=True) + "\n").encode("utf-8")
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        end = os.fstat(fd).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)
            raise write_error(path, exc) from None
    finally:
        os.close(fd)


def repair_rows_file(path: str | Path) -> bool:
    """Cut an unterminated last line (a writer killed mid-row) off a results.jsonl.

    The fragment is kept beside it as ``results.jsonl.partial`` so nothing disappears
    silently; returns whether a repair was needed.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return False
    cut = data.rfind(b"\n") + 1
    with open(path.with_name(path.name + ".partial"), "ab") as handle:
        handle.write(data[cut:] + b"\n")
    with open(path, "r+b") as handle:
        handle.truncate(cut)
    return True


def _say(problems: list[str] | None, message: str) -> None:
    """A row left out: appended to ``problems`` when the caller collects them, else logged."""
    if problems is None:
        logger.warning("%s", message)
    else:
        problems.append(message)


def _numbered_rows(path: Path, problems: list[str] | None) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, row dict)`` per line of a results.jsonl; see :func:`iter_rows`."""
    if not path.exists():
        return
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if number == len(lines):  # no newline after it: the interrupted final write
                _say(problems, f"{path}:{number}: the last line is cut off (a run killed while writing it?) and was "
                               f"left out with its cell; 'delbench run --resume' moves it aside and re-runs the cell")
                continue
            reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else f"not JSON ({exc.msg})"
            raise DelbenchError(f"{path}:{number}: {reason}") from None
        if not isinstance(data, dict):
            raise DelbenchError(f"{path}:{number}: not a JSON object (a result row), got {type(data).__name__}")
        yield number, data


def iter_rows(path: str | Path, problems: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a results.jsonl as dicts, in file order.

    The last line without its newline that is not whole JSON (a writer killed mid-row) is
    left out and said, naming its line: appended to ``problems`` when given, else logged as a
    warning (``delbench run --resume`` moves it aside and re-runs its cell). Any other line
    that is not a UTF-8 JSON object is a :class:`~delbench.errors.DelbenchError` naming the
    file and line.
    """
    for _, data in _numbered_rows(Path(path), problems):
        yield data


def iter_result_rows(path: str | Path, problems: list[str] | None = None) -> Iterator[ResultRow]:
    """The typed rows of a results.jsonl, in file order (:func:`iter_rows`). A line that is not
    a row of the schema is a :class:`~delbench.errors.DelbenchError` naming file and line; an ok
    row whose metric is not a finite number (which the runner never writes: it fails such a
    cell) is kept and said like a cut-off line, since every mean over seeds leaves it out."""
    path = Path(path)
    for number, data in _numbered_rows(path, problems):
        try:
            row = ResultRow.from_json(data)
        except DelbenchError as exc:
            raise DelbenchError(f"{path}:{number}: {exc}") from None
        if row.ok and not _finite_number(row.metrics.get(row.metric)):
            _say(problems, f"{path}:{number}: cell {row.key} is ok but its metric {row.metric} is "
                           f"{row.metrics.get(row.metric)!r}, not a finite number: every mean over seeds leaves it out")
        yield row


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def latest_rows(rows: Iterable[ResultRow]) -> list[ResultRow]:
    """Last row per cell key, in first-seen order."""
    latest: dict[str, ResultRow] = {}
    for row in rows:
        latest[row.key] = row
    return list(latest.values())


def read_rows(run_dir: str | Path, problems: list[str] | None = None) -> list[ResultRow]:
    """The last row per cell key of a run (:func:`iter_result_rows`); rows left out or
    unusable are appended to ``problems`` when given, else logged as warnings."""
    return latest_rows(iter_result_rows(Path(run_dir) / ROWS_FILE, problems))
