"""The work-dir lock: one run per work directory, released by the kernel when its holder dies."""
from __future__ import annotations

import contextlib
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from delbench.errors import LockError, WriteError
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
    and says so. Releasing empties the file and keeps it, except in a work directory this
    lock created and the run left empty (a run refused before it wrote anything): there the
    file and the folders are removed, the file while still locked, and a holder checks after
    locking that its file is still the one at the path (else it locks again), so no two
    processes ever hold locks on two files of one name.

    Re-entrant within a process (the CLI holds it around the run and its report, and the
    runner takes it too).
    """

    _held: dict[str, "WorkDirLock"] = {}

    def __init__(self, work_dir: str | Path) -> None:
        self.work_dir = Path(work_dir)
        self.path = self.work_dir / LOCK_FILE
        self._fd: int | None = None
        self._depth = 0
        #: the topmost folder acquire created for the work dir (None: it existed)
        self._created: Path | None = None

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
        import socket

        if self._depth:
            self._depth += 1
            return
        fd = self._open_and_lock()
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

    def _open_and_lock(self) -> int:
        """Create the work dir (noting the folders made) and lock its lock file; the fd."""
        import fcntl

        missing = [folder for folder in (self.work_dir, *self.work_dir.parents) if not folder.exists()]
        blocker = next((folder for folder in (self.work_dir, *self.work_dir.parents) if folder.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise WriteError(f"work dir {self.work_dir}: {blocker} is a file, not a directory; choose another "
                             f"--work-dir")
        while True:
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
                raise LockError(f"{self.work_dir} is in use by another delbench run (pid {holder.get('pid', '?')} "
                                f"on {holder.get('host', '?')}, started {holder.get('started_at', '?')}); wait for "
                                f"it to finish or choose another --work-dir") from None
            if self._still_at_path(fd):
                self._created = missing[-1] if missing else None
                return fd
            os.close(fd)  # its holder removed it (an empty run) between our open and our lock: again

    def _still_at_path(self, fd: int) -> bool:
        try:
            here = os.stat(self.path)
        except OSError:
            return False
        mine = os.fstat(fd)
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def _remove_if_unused(self) -> None:
        """A work dir this lock created that holds nothing but the lock file (the run was
        refused before writing): the file (still locked) and the folders made go."""
        if self._created is None:
            return
        with contextlib.suppress(OSError):
            if [p.name for p in self.work_dir.iterdir()] != [LOCK_FILE]:
                return
            self.path.unlink()
            folder = self.work_dir
            while True:
                folder.rmdir()
                if folder == self._created:
                    break
                folder = folder.parent

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
            self._remove_if_unused()
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
