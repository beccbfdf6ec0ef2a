"""Files written safely: atomic writes (a temporary named after its process, fsynced and renamed
into place), strict JSON, file locks, the removal of killed writers' temporaries, and the
machine-wide cache folder. Plugins write their checkpoints and caches with these, as the
harness writes a run's files.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from delbench.errors import WriteError

#: split files go to $DELBENCH_CACHE_DIR/splits (default ~/.cache/delbench/splits)
CACHE_ENV = "DELBENCH_CACHE_DIR"

def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")



def _finite(value: Any) -> Any:
    """NaN/inf → None, recursively (numpy values included): result files are strict JSON."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value



def dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(_finite(value), default=_json_default, allow_nan=False, **kwargs)



#: temporary files delbench writes: ``.<target name>.<pid>-<8 hex>.tmp`` beside the target, so
#: a temporary names the process that owns it (orphans of a dead process are removed on the
#: next start, see :func:`remove_orphan_temporaries`) and two writers never share one
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")

#: temporaries of delbench versions before the pid was in the name: ``.x.npy.tmp.npy``,
#: ``.scores.png.tmp.png``, ``.x.json.<mkstemp>.tmp``, ``final.safetensors.tmp``
_LEGACY_TEMP_NAMES = (re.compile(r"^\..+\.tmp\.(npy|png)$"), re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$"),
                      re.compile(r"^[^.].*\.safetensors\.tmp$"))

def temp_path(path: str | Path) -> Path:
    """A fresh temporary name beside ``path`` that names this process (see ``_TEMP_NAME``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")



def write_error(path: str | Path, exc: OSError) -> WriteError:
    """One line naming the file that could not be written and why (``[Errno 28] No space …``)."""
    reason = f"[Errno {exc.errno}] {exc.strerror}" if exc.errno and exc.strerror else str(exc)
    return WriteError(f"cannot write {path}: {reason}")



def _write_failure(path: Path, exc: BaseException) -> WriteError | None:
    """The :class:`WriteError` naming ``path`` for a writer's I/O failure: an ``OSError``, or
    safetensors' own error wrapping one (``I/O error: No space left on device (os error 28)
    at path "<its temporary>"``), which names no file of ours; None for any other error."""
    if isinstance(exc, OSError):
        return write_error(path, exc)
    text = str(exc)
    if type(exc).__module__.startswith("safetensors") and "I/O error: " in text:
        return WriteError(f"cannot write {path}: {text.split('I/O error: ', 1)[1].split(' at path ', 1)[0]}")
    return None


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in blocks (shards and images may not fit in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()



def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)



@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; on success it is fsynced and
    renamed over ``path`` (never a half file), on any error it is removed.

    An ``OSError`` (disk full, no permission, a directory in the way) becomes a
    :class:`~delbench.errors.WriteError` naming ``path``. Writers that need a file name
    (``np.save``, ``savefig``, safetensors) write to the yielded path.
    """
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"cannot write {path}: it is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path, exc) from None
    tmp = temp_path(path)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # results are meant to be shared and read
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        failure = _write_failure(path, exc)
        if failure is not None:
            raise failure from None
        raise



def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temporary file in the same directory and rename: never a half file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")



def atomic_write_json(path: str | Path, value: Any) -> None:
    atomic_write_text(path, dumps(value, indent=2, sort_keys=True) + "\n")



def cache_base() -> Path:
    """The machine-wide cache: ``$DELBENCH_CACHE_DIR``, else ``~/.cache/delbench`` (split
    files, OptiDEL's proposals and scores, ``delbench select``'s scoring warm-ups)."""
    base = os.environ.get(CACHE_ENV)
    return Path(base).expanduser() if base else Path("~/.cache/delbench").expanduser()



def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` through :func:`atomic_path` (no pickles)."""
    with atomic_path(path) as tmp:
        with open(tmp, "xb") as handle:  # a file object: np.save would append ".npy" to a name
            np.save(handle, array, allow_pickle=False)



def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True



def remove_orphan_temporaries(directory: str | Path, *, legacy: bool = False) -> list[Path]:
    """Remove the temporaries under ``directory`` (recursively) whose writer is gone.

    A temporary names its process (``_TEMP_NAME``); it is an orphan when that process no
    longer runs here (killed mid-write). With ``legacy`` (the caller holds the work-dir
    lock, so nothing else writes there) the pid-less names of older delbench versions are
    removed too. Returns what was removed.
    """
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for folder, _, names in os.walk(directory):
        for name in names:
            match = _TEMP_NAME.match(name)
            if match:
                pid = int(match["pid"])
                orphan = pid != os.getpid() and not _pid_alive(pid)
            else:
                orphan = legacy and any(pattern.match(name) for pattern in _LEGACY_TEMP_NAMES)
            if orphan:
                path = Path(folder) / name
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed



@contextlib.contextmanager
def file_lock(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """An exclusive ``flock`` on ``path`` (created if missing) for the block; yields whether it
    was taken (always True when ``blocking``). The kernel drops it when the process exits in
    any way, as :class:`WorkDirLock`'s; unlike that one it guards one piece of shared work
    (a cached pre-training, a shard), so a second process waits or moves on instead of being
    refused. Not re-entrant: each call opens its own descriptor."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock
