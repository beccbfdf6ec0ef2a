"""The rows file of a run: appended one fsynced line per finished cell, read back keeping the
last row per cell key; a line cut by a killed writer is repaired or skipped, never glued to."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from delbench.errors import DelbenchError
from delbench.sdk.files import dumps, write_error
from delbench.store.schema import ROWS_FILE, ResultRow


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


def iter_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a results.jsonl; a truncated last line (a killed writer) is skipped."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        lines = handle.readlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not line.endswith("\n"):
                continue  # the interrupted final write
            raise DelbenchError(f"{path}:{number}: not a JSON line") from None


def latest_rows(rows: Iterable[ResultRow]) -> list[ResultRow]:
    """Last row per cell key, in first-seen order."""
    latest: dict[str, ResultRow] = {}
    for row in rows:
        latest[row.key] = row
    return list(latest.values())


def read_rows(run_dir: str | Path) -> list[ResultRow]:
    return latest_rows(ResultRow.from_json(data) for data in iter_rows(Path(run_dir) / ROWS_FILE))
