"""Opening a submission archive safely: it never executes anything from it and never writes
outside its target folder, nor more than it may. Every member is checked before anything is
written (regular files and folders only; no absolute name, no ``..``, no link or device, no
name twice; each file's declared size the one ``MANIFEST.json`` records; the sizes' sum under a
total cap and a cap on its ratio to the archive's size); files are then copied one by one
under the target in bounded chunks, none past its declared size. ``verify``, ``leaderboard``
and ``compare`` all open archives through :func:`open_submission`.
"""
from __future__ import annotations

import contextlib
import json
import re
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from delbench.errors import SubmissionError, one_line
from delbench.submissions.format import MANIFEST_FILE

#: what extracting one submission may write at most: a derived subset's images at the paper's
#: scale (tens of thousands of PNGs) fit; a bomb does not
MAX_EXTRACTED_BYTES = 8 << 30

#: and at most this many times the archive's size (text and indices gzip about 3-20 fold;
#: images barely). Below :data:`RATIO_ALLOWANCE` bytes in all the ratio is not applied: a small
#: archive of JSON may well gzip 100 fold.
MAX_COMPRESSION_RATIO = 100.0

RATIO_ALLOWANCE = 64 << 20

#: the most a MANIFEST.json may have (it is read into memory before anything is written)
MAX_MANIFEST_BYTES = 64 << 20

#: the chunk an extracted file is copied in
COPY_CHUNK = 1 << 20


def _member_problem(member: tarfile.TarInfo) -> str | None:
    """Why a tar member may not be extracted, or None."""
    name = member.name
    if not (member.isreg() or member.isdir()):
        kind = "a symbolic link" if member.issym() else "a hard link" if member.islnk() else "not a regular file"
        return f"member {name!r} is {kind}"
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return f"member {name!r} has an absolute path"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        return f"member {name!r} leads out of its folder ('..')"
    if "\x00" in name:
        return f"member {name!r} has a NUL in its name"
    return None


def _size_limit(archive: Path, max_bytes: int, max_ratio: float) -> tuple[int, str]:
    """The most bytes an archive of this file size may extract, and which cap that is:
    ``max_bytes``, and no more than ``max_ratio`` times the archive's size (but always
    :data:`RATIO_ALLOWANCE`)."""
    size = archive.stat().st_size
    by_ratio = max(int(max_ratio * size), RATIO_ALLOWANCE)
    if by_ratio < max_bytes:
        return by_ratio, f"{max_ratio:g} × the archive's {size} bytes"
    return max_bytes, f"the cap of {max_bytes} bytes"


def _checked_members(tar: tarfile.TarFile, archive: Path, limit: tuple[int, str]) -> list[tarfile.TarInfo]:
    """Every member's header, each checked (:func:`_member_problem`, no name twice) and their
    declared sizes summed, refused as soon as the sum passes ``limit``: a header is read
    before its data, so a bomb is refused before it is decompressed."""
    members: list[tarfile.TarInfo] = []
    seen: set[str] = set()
    declared = 0
    while True:
        try:
            member = tar.next()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise SubmissionError(f"{archive}: damaged archive ({one_line(str(exc))})") from None
        if member is None:
            return members
        problem = _member_problem(member)
        normal = PurePosixPath(member.name).as_posix()
        if problem is None and member.isreg() and normal in seen:
            problem = f"member {member.name!r} appears twice"
        declared += member.size if member.isreg() else 0
        if problem is None and declared > limit[0]:
            problem = (f"member {member.name!r} ({member.size} bytes) takes the archive to {declared} bytes, "
                       f"over {limit[1]}")
        if problem:
            raise SubmissionError(f"{archive}: refused: {problem}; nothing was extracted")
        seen.add(normal)
        members.append(member)


def _manifest_sizes(tar: tarfile.TarFile, members: list[tarfile.TarInfo], archive: Path) -> dict[str, Any]:
    """The ``files`` entries of the archive's manifest, read into memory (at most
    :data:`MAX_MANIFEST_BYTES`)."""
    member = next((m for m in members if m.isreg() and PurePosixPath(m.name).as_posix() == MANIFEST_FILE), None)
    if member is None:
        raise SubmissionError(f"{archive}: refused: no {MANIFEST_FILE} (a submission lists each file's size and "
                              f"sha256); nothing was extracted")
    if member.size > MAX_MANIFEST_BYTES:
        raise SubmissionError(f"{archive}: refused: member {MANIFEST_FILE!r} declares {member.size} bytes, over "
                              f"the {MAX_MANIFEST_BYTES} a manifest may have; nothing was extracted")
    try:
        listed = json.loads(tar.extractfile(member).read(MAX_MANIFEST_BYTES + 1))["files"]
        assert isinstance(listed, dict) and all(isinstance(entry, dict) for entry in listed.values())
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SubmissionError(f"{archive}: damaged archive ({one_line(str(exc))})") from None
    except (ValueError, KeyError, TypeError, AssertionError):
        raise SubmissionError(f"{archive}: refused: member {MANIFEST_FILE!r} is not a manifest (JSON with a "
                              f"'files' object of sizes and hashes); nothing was extracted") from None
    return listed


def _copy_member(source: Any, destination: Path, member: tarfile.TarInfo, archive: Path) -> None:
    """Copy one member in chunks of :data:`COPY_CHUNK` bytes, stopping at the first byte past
    its declared size (a short member is a damaged archive)."""
    written = 0
    try:
        with open(destination, "xb") as handle:  # "x": never through an existing file or link
            while block := source.read(COPY_CHUNK):
                written += len(block)
                if written > member.size:
                    raise SubmissionError(f"{archive}: refused: member {member.name!r} holds more than the "
                                          f"{member.size} bytes it declares")
                handle.write(block)
    except (tarfile.TarError, OSError, EOFError) as exc:
        destination.unlink(missing_ok=True)
        raise SubmissionError(f"{archive}: damaged archive at member {member.name!r} ({one_line(str(exc))})") from None
    except SubmissionError:
        destination.unlink(missing_ok=True)
        raise
    if written != member.size:
        destination.unlink(missing_ok=True)
        raise SubmissionError(f"{archive}: damaged archive: member {member.name!r} holds {written} of the "
                              f"{member.size} bytes it declares")


def extract_submission(archive: str | Path, target: str | Path, *, max_bytes: int | None = None,
                       max_ratio: float | None = None) -> Path:
    """Extract a submission archive into ``target`` after checking every member.

    Nothing is written unless every member passes: its kind and name
    (:func:`_member_problem`, no name twice), its declared size against the size
    ``MANIFEST.json`` records for it (every file is listed there), and the declared sizes'
    sum against ``max_bytes`` (default :data:`MAX_EXTRACTED_BYTES`) and against ``max_ratio``
    (default :data:`MAX_COMPRESSION_RATIO`) times the archive's size. An archive refused is
    refused whole, with a :class:`~delbench.errors.SubmissionError` naming the member. Files
    are then copied one by one in bounded chunks, each stopped at its declared size, each
    path resolved and checked to lie under ``target`` (links are refused, so nothing already
    extracted can redirect a later one).
    """
    archive, target = Path(archive), Path(target)
    max_bytes = MAX_EXTRACTED_BYTES if max_bytes is None else max_bytes
    max_ratio = MAX_COMPRESSION_RATIO if max_ratio is None else max_ratio
    try:
        limit = _size_limit(archive, max_bytes, max_ratio)
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise SubmissionError(f"{archive}: not a readable tar archive ({one_line(str(exc))})") from None
    with tar:
        members = _checked_members(tar, archive, limit)
        listed = _manifest_sizes(tar, members, archive)
        for member in members:
            name = PurePosixPath(member.name).as_posix()
            if not member.isreg() or name == MANIFEST_FILE:
                continue
            if name not in listed:
                problem = f"member {member.name!r} is not listed in {MANIFEST_FILE}"
            elif listed[name].get("bytes") != member.size:
                problem = (f"member {member.name!r} declares {member.size} bytes, {MANIFEST_FILE} records "
                           f"{listed[name].get('bytes')!r}")
            else:
                continue
            raise SubmissionError(f"{archive}: refused: {problem}; nothing was extracted")
        root = target.resolve()
        root.mkdir(parents=True, exist_ok=True)
        for member in members:
            destination = (root / member.name).resolve()
            if destination != root and root not in destination.parents:
                raise SubmissionError(f"{archive}: refused: member {member.name!r} resolves outside {target}")
            if member.isdir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            _copy_member(tar.extractfile(member), destination, member, archive)
    return target


@contextlib.contextmanager
def open_submission(path: str | Path) -> Iterator[Path]:
    """A run directory, an extracted submission folder or a submission archive, as a folder
    to read: an archive is extracted (:func:`extract_submission`) into a temporary folder
    removed afterwards."""
    path = Path(path)
    if path.is_dir():
        yield path
        return
    if not path.is_file():
        raise SubmissionError(f"{path}: no such run directory or submission archive")
    with tempfile.TemporaryDirectory(prefix="delbench-submission-") as tmp:
        yield extract_submission(path, Path(tmp) / "submission")
