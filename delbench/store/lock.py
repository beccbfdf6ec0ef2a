"""The work-dir lock: one run per work directory, released by the kernel when its holder dies."""
from __future__ import annotations

import contextlib
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from delbench.errors import LockError
from delbench.sdk.files import write_error

logger = logging.getLogger(__name__)

LOCK_FILE = ".delbench.lock"


class WorkDirLock:
    """Exclusive use of a work directory by one process, for the whole run.

    The exclusion is ``fcntl.flock`` on ``<work_dir>/.delbench.lock``: the kernel releases
    it when the holder exits in any way (a crash or ``kill -9`` included), so a lock can
    never outlive its process. The file's content (JSON: pid, host, start time) only serves
    the messages: a second run is refused naming the holder, and a run that finds content
    but gets the lock knows its previous holder died without releasing it (a stale lock)
    and says so. Releasing empties the file and keeps it: removing it would let a process
    that opened it just before lock an unlinked file while a third locks a new one.

    Re-entrant within a process (the CLI holds it around the run and its report, and the
    runner takes it too).
    """

    _held: dict[str, "WorkDirLock"] = {}

    def __init__(self, work_dir: str | Path) -> None:
        self.work_dir = Path(work_dir)
        self.path = self.work_dir / LOCK_FILE
        self._fd: int | None = None
        self._depth = 0

    @classmethod
    def of(cls, work_dir: str | Path) -> "WorkDirLock":
        key = os.path.realpath(work_dir)
        return cls._held.get(key) or cls(work_dir)

    def _holder(self, fd: int) -> dict[str, Any]:
        data = os.pread(fd, 4096, 0)
        try:
            return json.loads(data) if data.strip() else {}
        except ValueError:
            return {"pid": "?", "note": "unreadable lock file"}

    def acquire(self) -> None:
        import fcntl
        import socket

        if self._depth:
            self._depth += 1
            return
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_error(self.path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise LockError(f"{self.work_dir} is in use by another delbench run (pid {holder.get('pid', '?')} on "
                            f"{holder.get('host', '?')}, started {holder.get('started_at', '?')}); wait for it "
                            f"to finish or choose another --work-dir") from None
        previous = self._holder(fd)
        if previous:
            logger.warning("%s: taking over a stale lock: pid %s on %s (started %s) ended without releasing "
                           "it", self.work_dir, previous.get("pid", "?"), previous.get("host", "?"),
                           previous.get("started_at", "?"))
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode() + b"\n", 0)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise write_error(self.path, exc) from None
        self._fd, self._depth = fd, 1
        WorkDirLock._held[os.path.realpath(self.work_dir)] = self

    def release(self) -> None:
        import fcntl

        if not self._depth:
            return
        self._depth -= 1
        if self._depth:
            return
        WorkDirLock._held.pop(os.path.realpath(self.work_dir), None)
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(OSError):  # an empty file reads as "not held" (see above)
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "WorkDirLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock_work_dir(work_dir: str | Path) -> WorkDirLock:
    """The lock of ``work_dir`` (a context manager; re-entrant within this process)."""
    return WorkDirLock.of(work_dir)
