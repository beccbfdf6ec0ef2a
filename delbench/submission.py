"""Submissions (DataComp style): a run packed as data, verified by recomputation, ranked on a
leaderboard, and compared with a baseline for regression suites.

A submission is a gzip tarball written by ``delbench submit RUN_DIR --out SUB.tar.gz``. It is
laid out as a run directory (so everything that reads a run reads it) plus what a verifier
needs to recompute without the submitter's machine::

    MANIFEST.json           format, protocol name and version, config_sha256, and the sha256
                            and size of every other file
    config.json             the validated protocol (``Protocol.to_dict()``): JSON, never code
    run.json                the run's header (schema, protocol, config_sha256, versions, env)
    environment.json        python, torch, timm, numpy, delbench and plugin versions, CPU/GPU
    results.jsonl           the run's rows, the last one per cell key
    pool_ids.txt            the pool's ids in pool order, each followed by "\\n": its sha256 is
                            the rows' pool_ids_sha256
    subsets/subsets.json    the index of the selections, as in a run directory
    subsets/<name>.npy      the selected indices: sorted unique little-endian int64
    subsets/<name>.json     the selection's record (label, ratio, seed, hashes, diagnostics)
    subsets/<name>.ids.txt  the selected ids, sorted, each followed by "\\n": its sha256 is
                            the selection's ids_sha256

Opening one (:func:`open_submission`) never executes anything from it and never writes
outside its target folder, nor more than it may: every member is checked before anything is
written (regular files and folders only; no absolute name, no ``..``, no link or device, no
name twice; each file's declared size the one ``MANIFEST.json`` records; the sizes' sum under a
total cap and a cap on its ratio to the archive's size), files are copied one by one under the
target in bounded chunks, none past its declared size, and only JSON, text and ``.npy``
(``allow_pickle=False``) are read back.

:func:`verify` checks a run directory or a submission: every hash recomputed
(:func:`delbench.store.verify_run`, the manifest, the id lists), each row against its subset
(size, hash, ids, selector, ratio, seed), NormDEL recomputed from the metric, ratio and α, the
rows exactly the protocol's planned cells (none missing, extra or repeated), subset files
sorted unique int64, every non-selector setting equal to the protocol the run claims, and,
optionally, sampled cells re-run and compared within a stated tolerance.
:func:`leaderboard` ranks verified submissions of one protocol; :func:`compare` checks a run
against a stored baseline.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import math
import re
import tarfile
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from delbench.errors import ConfigError, DelbenchError, SubmissionError, one_line
from delbench.store import (HEADER_FILE, ROWS_FILE, ResultRow, SUBSETS_FILE, iter_rows, read_header, read_rows,
                            verify_run)
from delbench.sdk.files import atomic_path, atomic_write_json, atomic_write_text, dumps, file_sha256

#: the layout version of a submission archive
SUBMISSION_FORMAT = "delbench-submission/1"
MANIFEST_FILE, CONFIG_FILE, ENVIRONMENT_FILE, POOL_IDS_FILE = (
    "MANIFEST.json", "config.json", "environment.json", "pool_ids.txt")
IDS_SUFFIX = ".ids.txt"
#: the difference from a recomputed NormDEL tolerated as float rounding (it is computed by the
#: same formula from the same numbers)
NORMDEL_ROUNDING = 1e-9
#: the default tolerance of re-run cells and of ``compare`` (absolute, on metric fractions)
DEFAULT_TOLERANCE = 0.0
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
#: where a protocol is looked up by the name a run records: ``benchmarks/<name>.py`` here, and
#: in the delbench checkout itself
_PROTOCOL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _id_lines(ids: Sequence[str]) -> bytes:
    """Ids as :func:`delbench.sdk.ids_sha256` hashes them: each followed by a newline."""
    return "".join(f"{item}\n" for item in ids).encode("utf-8")


def _read_ids(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return text.split("\n")[:-1] if text else []


# -- writing --------------------------------------------------------------------------------
def _environment(header: dict[str, Any]) -> dict[str, Any]:
    """What the run ran on and with: the header's environment, delbench and plugin versions."""
    env = dict(header.get("env") or {})
    return {"python": env.get("python"), "platform": env.get("platform"), "torch": env.get("torch"),
            "timm": env.get("timm"), "numpy": env.get("numpy"), "delbench": header.get("delbench_version"),
            "plugins": header.get("plugin_versions") or {}, "cpu": env.get("cpu"), "cpu_count": env.get("cpu_count"),
            "gpus": env.get("gpus"), "torch_threads": env.get("torch_threads")}


def _pool_ids(header: dict[str, Any]) -> list[str]:
    """The run's pool ids (:func:`delbench.store.reopen_pool_ids`); refused when they are not
    the run's."""
    from delbench.sdk.subsets import ids_sha256
    from delbench.store import reopen_pool_ids

    try:
        ids = reopen_pool_ids(header)
    except DelbenchError as exc:
        raise SubmissionError(f"cannot list the pool's ids for the submission: {exc}") from None
    if ids_sha256(ids) != header.get("pool_ids_sha256"):
        name = ((header.get("protocol_config") or {}).get("pool") or {}).get("name")
        raise SubmissionError(f"pool {name!r} changed or was reordered since the run (pool_ids_sha256 "
                              f"{ids_sha256(ids)} != {header.get('pool_ids_sha256')}); a submission names the images "
                              f"the run selected")
    return ids


def submission_files(run_dir: str | Path) -> dict[str, bytes]:
    """Every file of the submission of ``run_dir`` but the manifest, by archive name."""
    run_dir = Path(run_dir)
    header = read_header(run_dir)
    pool_ids = _pool_ids(header)
    files = {HEADER_FILE: (run_dir / HEADER_FILE).read_bytes(),
             CONFIG_FILE: (dumps(header.get("protocol_config") or {}, indent=2, sort_keys=True) + "\n").encode(),
             ENVIRONMENT_FILE: (dumps(_environment(header), indent=2, sort_keys=True) + "\n").encode(),
             ROWS_FILE: "".join(dumps(row.to_json(), sort_keys=True) + "\n" for row in read_rows(run_dir)).encode(),
             POOL_IDS_FILE: _id_lines(pool_ids)}
    subsets = run_dir / "subsets"
    index = json.loads((subsets / SUBSETS_FILE).read_text()) if (subsets / SUBSETS_FILE).is_file() else {}
    for path in sorted(subsets.rglob("*")) if subsets.is_dir() else []:
        # every regular file of the run's subsets (a derived subset's manifest too), never a
        # temporary of a writer
        if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
            files[f"subsets/{path.relative_to(subsets).as_posix()}"] = path.read_bytes()
    for name, entry in sorted(index.items()):
        if entry.get("kind") == "derived":  # its manifest and images, content-addressed
            manifest = Path(str(entry.get("manifest")))
            if manifest.is_absolute() or ".." in manifest.parts:
                continue  # never packs files from outside the run; verify_run reports the path
            folder = (run_dir / manifest).parent
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
                    files[path.relative_to(run_dir).as_posix()] = path.read_bytes()
            continue
        file = subsets / str(entry.get("file"))
        if file.suffix == ".npy" and file.is_file():
            indices = np.load(file, allow_pickle=False)
            files[f"subsets/{name}{IDS_SUFFIX}"] = _id_lines(sorted(pool_ids[int(i)] for i in indices))
    return files


def write_submission(run_dir: str | Path, out: str | Path) -> Path:
    """Pack ``run_dir`` as a submission (module docstring) into the gzip tarball ``out``.

    The archive is reproducible: members sorted by name, owner 0, mode 0644, time 0, and a
    gzip header without a time or name, so the same run gives the same bytes.
    """
    run_dir, out = Path(run_dir), Path(out)
    header = read_header(run_dir)
    files = submission_files(run_dir)
    manifest = {"format": SUBMISSION_FORMAT, "protocol": header.get("protocol"),
                "protocol_version": header.get("protocol_version"), "config_sha256": header.get("config_sha256"),
                "delbench_version": header.get("delbench_version"),
                "files": {name: {"sha256": _sha256(data), "bytes": len(data)} for name, data in sorted(files.items())}}
    files[MANIFEST_FILE] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    with atomic_path(out) as tmp:
        with open(tmp, "xb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as zipped, \
                tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(files):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
                tar.addfile(info, io.BytesIO(files[name]))
    return out


# -- opening, safely --------------------------------------------------------------------------
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


# -- verification -------------------------------------------------------------------------------
@dataclass
class Verification:
    """What :func:`verify` found: ``problems`` (each one line naming the file, row key or
    setting; none means verified), ``notes`` (checks that could not run here, and why) and
    what was checked."""

    target: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    protocol: str | None = None
    protocol_version: str | None = None
    config_sha256: str | None = None
    rows: list[ResultRow] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)
    n_subsets: int = 0
    submission: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def find_protocol_file(name: str) -> Path | None:
    """``benchmarks/<name>.py`` in the current folder or in the delbench checkout, for a
    protocol named in a run or submission (a name with a path in it is never looked up)."""
    if not isinstance(name, str) or not _PROTOCOL_NAME.match(name):
        return None
    import delbench

    for folder in (Path.cwd() / "benchmarks", Path(delbench.__file__).resolve().parent.parent / "benchmarks"):
        candidate = folder / f"{name}.py"
        if candidate.is_file():
            return candidate
    return None


def _differences(mine: Any, theirs: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """Every leaf where two JSON values differ, as ``(path, mine, theirs)``."""
    missing = "(not set)"
    if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
        for key in sorted(set(mine) | set(theirs)):
            yield from _differences(mine.get(key, missing), theirs.get(key, missing), f"{path}.{key}" if path else key)
    elif isinstance(mine, list) and isinstance(theirs, list) and len(mine) == len(theirs):
        for i, (a, b) in enumerate(zip(mine, theirs)):
            yield from _differences(a, b, f"{path}[{i}]")
    elif mine != theirs or isinstance(mine, bool) != isinstance(theirs, bool):  # True == 1 in Python, not here
        yield path, mine, theirs


def check_settings(submitted: Any, reference: Any) -> list[str]:
    """Every setting of ``submitted`` (a :class:`~delbench.protocol.Protocol`) that differs from
    the ``reference`` protocol's, one line each: all of the protocol but its selectors and
    the execution settings (runtime, execution); and per selector, its ratios and seeds, which
    must be the reference's for the same selector label, else the protocol's ``ratios`` and
    ``seeds``: a protocol pins everything but the selector."""
    from delbench.protocol import UNHASHED_FIELDS

    where = f"protocol {reference.name} v{reference.version}"
    mine, theirs = submitted.to_dict(), reference.to_dict()
    skip = {"selectors", *UNHASHED_FIELDS}
    # the protocol's name and version first: "another protocol" says more than its first differing key
    problems = [f"setting {path}: {json.dumps(a, default=str)} in the run, {json.dumps(b, default=str)} in {where}"
                for key in sorted((set(mine) | set(theirs)) - skip, key=lambda k: (k not in ("name", "version"), k))
                for path, a, b in _differences(mine.get(key, "(not set)"), theirs.get(key, "(not set)"), key)]
    labels = {spec.label: spec for spec in reference.selectors}
    for i, spec in enumerate(submitted.selectors):
        label = spec.label
        own = labels.get(label)
        expected = {"ratios": reference.selector_ratios(own) if own else reference.ratios,
                    "seeds": reference.selector_seeds(own) if own else reference.seeds}
        actual = {"ratios": submitted.selector_ratios(spec), "seeds": submitted.selector_seeds(spec)}
        for key in ("ratios", "seeds"):
            if list(actual[key]) != list(expected[key]):
                source = f"its entry in {where}" if own else f"the {key} of {where}"
                problems.append(f"setting selectors[{i}] ({label}).{key}: {list(actual[key])} in the run, "
                                f"{list(expected[key])} in {source}")
    return problems


def _check_manifest(directory: Path, header: dict[str, Any]) -> list[str]:
    manifest_path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        listed = manifest["files"]
        assert isinstance(listed, dict)
    except (ValueError, KeyError, AssertionError, OSError) as exc:
        return [f"{MANIFEST_FILE}: unreadable ({one_line(str(exc))})"]
    problems = []
    if manifest.get("format") != SUBMISSION_FORMAT:
        problems.append(f"{MANIFEST_FILE}: format {manifest.get('format')!r}, expected {SUBMISSION_FORMAT!r}")
    for key, recorded in (("protocol", header.get("protocol")), ("protocol_version", header.get("protocol_version")),
                          ("config_sha256", header.get("config_sha256"))):
        if manifest.get(key) != recorded:
            problems.append(f"{MANIFEST_FILE}: {key} {manifest.get(key)!r} != {recorded!r} in {HEADER_FILE}")
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()} - {MANIFEST_FILE}
    for name in sorted(set(listed) - present):
        problems.append(f"{name}: listed in {MANIFEST_FILE} but missing")
    for name in sorted(present - set(listed)):
        problems.append(f"{name}: not listed in {MANIFEST_FILE}")
    for name in sorted(present & set(listed)):
        actual = file_sha256(directory / name)
        if not isinstance(listed[name], dict) or actual != listed[name].get("sha256"):
            problems.append(f"{name}: sha256 {actual} != {MANIFEST_FILE}'s {(listed[name] or {}).get('sha256')}")
    return problems


def _check_subsets(directory: Path, header: dict[str, Any], submission: bool) -> tuple[list[str], dict[tuple, dict]]:
    """Subset files: sorted unique int64 in the pool's range, their records consistent, their
    id lists hashing to ids_sha256 and naming the images their indices name in pool_ids.txt.
    Returns the problems and each selection's record (file, sha256, size) by (label, ratio,
    seed): two cells may select the same subset (a selector deterministic in its seed, two
    methods that agree), so a hash alone does not say whose selection a file is."""
    from delbench.sdk.subsets import ids_sha256

    problems: list[str] = []
    subsets = directory / "subsets"
    index_path = subsets / SUBSETS_FILE
    try:
        index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    except ValueError as exc:
        return [f"subsets/{SUBSETS_FILE}: not JSON ({one_line(str(exc))})"], {}
    n_pool = header.get("n_pool")
    pool_ids = None
    if (directory / POOL_IDS_FILE).is_file():
        pool_ids = _read_ids(directory / POOL_IDS_FILE)
        actual = file_sha256(directory / POOL_IDS_FILE)
        if actual != header.get("pool_ids_sha256"):
            problems.append(f"{POOL_IDS_FILE}: sha256 {actual} != the run's pool_ids_sha256 {header.get('pool_ids_sha256')}")
        if len(pool_ids) != n_pool:
            problems.append(f"{POOL_IDS_FILE}: {len(pool_ids)} ids, the run's pool has {n_pool}")
    elif submission:
        problems.append(f"{POOL_IDS_FILE}: missing (a submission lists its pool's ids)")
    records: dict[tuple, dict] = {}
    for name, entry in sorted(index.items()):
        if entry.get("kind") == "derived":
            # new images, not indices: verify_run checks the manifest and every image; here the
            # selection is only recorded under its cell, for the rows to be matched against it
            try:
                label = json.loads((subsets / f"{name}.json").read_text()).get("label")
            except (OSError, ValueError):
                label = None
                problems.append(f"subsets/{name}.json: missing or not JSON (the selection's record: label, ratio, seed)")
            records[(label or entry.get("selector"), entry.get("ratio"), entry.get("seed"))] = {
                "name": name, "sha256": entry.get("sha256"), "n_selected": entry.get("n_selected")}
            continue
        file_name = str(entry.get("file"))
        if Path(file_name).name != file_name or not file_name.endswith(".npy"):
            continue  # verify_run names a bad file name
        meta_path = subsets / f"{name}.json"
        try:
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        except ValueError:
            meta = {}
            problems.append(f"subsets/{name}.json: not JSON")
        if not meta:
            problems.append(f"subsets/{name}.json: missing (the selection's record: label, ratio, seed)")
        for key, meta_key in (("sha256", "sha256"), ("ids_sha256", "ids_sha256"), ("ratio", "ratio"), ("seed", "seed"),
                              ("n_selected", "n_selected"), ("pool_ids_sha256", "pool_ids_sha256")):
            if meta and entry.get(key) != meta.get(meta_key):
                problems.append(f"subsets/{name}.json: {meta_key} {meta.get(meta_key)!r} != {entry.get(key)!r} in "
                                f"subsets/{SUBSETS_FILE}")
        records[(meta.get("label", entry.get("selector")), entry.get("ratio"), entry.get("seed"))] = {
            "name": name, "sha256": entry.get("sha256"), "n_selected": entry.get("n_selected")}
        path = subsets / file_name
        if not path.is_file():
            continue  # verify_run reports it missing
        try:
            indices = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            continue  # verify_run reports it unreadable
        if indices.dtype != np.dtype("<i8") or indices.ndim != 1:
            problems.append(f"subsets/{file_name}: dtype {indices.dtype}, shape {indices.shape}; a subset file holds "
                            f"one 1-D array of little-endian int64 indices")
            continue
        if indices.size > 1 and not (np.diff(indices) > 0).all():
            problems.append(f"subsets/{file_name}: indices are not sorted and unique")
        if indices.size and (indices.min() < 0 or (n_pool is not None and indices.max() >= n_pool)):
            problems.append(f"subsets/{file_name}: indices outside the pool's range [0, {n_pool})")
            continue
        ids_path = subsets / f"{name}{IDS_SUFFIX}"
        if ids_path.is_file():
            ids = _read_ids(ids_path)
            if ids_sha256(ids) != entry.get("ids_sha256"):
                problems.append(f"subsets/{name}{IDS_SUFFIX}: sha256 {ids_sha256(ids)} != the subset's ids_sha256 "
                                f"{entry.get('ids_sha256')}")
            if len(ids) != indices.size:
                problems.append(f"subsets/{name}{IDS_SUFFIX}: {len(ids)} ids for {indices.size} indices")
            elif pool_ids is not None and len(pool_ids) == n_pool and \
                    ids != sorted(pool_ids[int(i)] for i in indices):
                problems.append(f"subsets/{name}{IDS_SUFFIX}: not the ids its indices name in {POOL_IDS_FILE}")
        elif submission:
            problems.append(f"subsets/{name}{IDS_SUFFIX}: missing (a submission lists every subset's ids)")
    return problems, records


def _check_rows(directory: Path, header: dict[str, Any], protocol: Any, records: dict[tuple, dict]) -> list[str]:
    """The rows against the protocol's planned cells and against their subsets."""
    from delbench.sdk.metrics import normdel
    from delbench.run import planned_cells
    from delbench.sdk.subsets import subset_size

    problems: list[str] = []
    by_key: dict[str, list[ResultRow]] = defaultdict(list)
    try:
        for data in iter_rows(directory / ROWS_FILE):
            by_key[data.get("key")].append(ResultRow.from_json(data))
    except (DelbenchError, TypeError) as exc:
        return [f"{ROWS_FILE}: {one_line(str(exc))}"]
    for key, rows in by_key.items():
        if any(row.ok for row in rows[:-1]):  # --resume appends a retried failed cell; an ok one is never re-run
            problems.append(f"row {key}: recorded {len(rows)} times (duplicated)")
    latest = {key: rows[-1] for key, rows in by_key.items()}
    n_pool = header.get("n_pool")
    planned = {cell.key: cell for cell in planned_cells(protocol, int(n_pool or 0))}
    where = f"protocol {protocol.name} v{protocol.version}"
    for key in planned.keys() - latest.keys():
        problems.append(f"row {key}: missing (a planned cell of {where} has no row)")
    for key in sorted(latest.keys() - planned.keys(), key=str):
        problems.append(f"row {key}: not a planned cell of {where} (extra)")
    metrics_by_task: dict[tuple, set[str]] = defaultdict(set)
    for key in sorted(planned.keys() & latest.keys()):
        row, cell = latest[key], planned[key]
        if not row.ok:
            problems.append(f"row {key}: failed" + (f" in {row.stage}" if row.stage else "") + f": {row.error}")
            continue
        expected = {"selector": cell.label, "ratio": cell.ratio, "seed": cell.seed, "task": cell.task.name,
                    "task_dataset": cell.task.dataset.name, "pretrain_epoch": cell.pretrain_epoch,
                    "kind": "reference" if cell.reference else "selection"}
        for name, value in expected.items():
            if getattr(row, name) != value:
                problems.append(f"row {key}: {name} {getattr(row, name)!r} does not match its key ({value!r})")
        metrics_by_task[(row.task_dataset, row.task)].add(str(row.metric))
        score = row.metrics.get(row.metric) if isinstance(row.metrics, dict) else None
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not 0 <= score <= 1:
            problems.append(f"row {key}: its metric {row.metric!r} is {score!r}, not a fraction in [0, 1]")
            continue
        if cell.reference:
            if row.normdel is not None or row.subset_sha256 is not None:
                problems.append(f"row {key}: a reference row has no subset and no NormDEL")
            continue
        if row.n_pool != n_pool:
            problems.append(f"row {key}: n_pool {row.n_pool} != the run's {n_pool}")
        if row.pool_ids_sha256 != header.get("pool_ids_sha256"):
            problems.append(f"row {key}: pool_ids_sha256 {row.pool_ids_sha256} != the run's {header.get('pool_ids_sha256')}")
        size = subset_size(int(n_pool or 0), cell.ratio)
        if row.n_selected != size:
            problems.append(f"row {key}: n_selected {row.n_selected} != round({cell.ratio:g} × {n_pool}) = {size}")
        record = records.get((cell.label, cell.ratio, cell.seed))
        if record is None:
            problems.append(f"row {key}: no subset file records the selection of {cell.label} at ratio "
                            f"{cell.ratio:g}, seed {cell.seed}")
        elif record["sha256"] != row.subset_sha256:
            problems.append(f"row {key}: subset_sha256 {row.subset_sha256} is not this cell's selection: "
                            f"subsets/{record['name']}.npy has {record['sha256']}")
        elif record["n_selected"] != row.n_selected:
            problems.append(f"row {key}: n_selected {row.n_selected} != {record['n_selected']} indices in "
                            f"subsets/{record['name']}.npy")
        try:
            recomputed = normdel(float(score), cell.ratio, protocol.alpha)
        except ConfigError as exc:
            problems.append(f"row {key}: NormDEL cannot be recomputed: {exc}")
            continue
        if not isinstance(row.normdel, (int, float)) or abs(row.normdel - recomputed) > NORMDEL_ROUNDING:
            problems.append(f"row {key}: normdel {row.normdel!r} != {recomputed!r} recomputed from {row.metric} "
                            f"{score!r}, ratio {cell.ratio:g} and α {protocol.alpha:g}")
    for (dataset, task), metrics in sorted(metrics_by_task.items()):
        if len(metrics) > 1:
            problems.append(f"rows of {dataset}/{task}: several metrics {sorted(metrics)} for one task")
    return problems


def _rerun(directory: Path, header: dict[str, Any], protocol: Any, rows: list[ResultRow], count: int, seed: int,
           tolerance: float) -> list[str]:
    """Re-run ``count`` sampled selection cells here (fresh work and cache folders) and
    compare: the subset hash exactly, every recorded metric within ``tolerance``."""
    from delbench.protocol import GeneralizationSpec
    from delbench.run import run_protocol

    candidates = sorted((r for r in rows if r.ok and r.kind == "selection" and r.pretrain_epoch is None),
                        key=lambda r: r.key)
    if not candidates:
        return []
    picked = np.random.default_rng(seed).choice(len(candidates), size=min(count, len(candidates)), replace=False)
    problems = []
    for row in (candidates[i] for i in sorted(picked)):
        spec = next(s for s in protocol.selectors if s.label == row.selector)
        task = next(t for t in protocol.tasks if (t.name, t.dataset.name) == (row.task, row.task_dataset))
        with tempfile.TemporaryDirectory(prefix="delbench-rerun-") as tmp:
            one = replace(protocol, selectors=(replace(spec, ratios=(row.ratio,), seeds=(row.seed,)),), tasks=(task,),
                          references=(), generalization=GeneralizationSpec(), runtime={"cache_dir": f"{tmp}/cache"},
                          pretrain=replace(protocol.pretrain, checkpoint_epochs=()))
            try:
                [again] = [r for r in run_protocol(one, Path(tmp) / "run", progress=False) if r.key == row.key]
            except Exception as exc:  # a missing plugin or dataset here: said, never hidden
                problems.append(f"re-run of {row.key}: could not run here: {type(exc).__name__}: {one_line(str(exc))}")
                continue
        if not again.ok:
            problems.append(f"re-run of {row.key}: failed here in {again.stage}: {again.error}")
            continue
        if again.subset_sha256 != row.subset_sha256:
            problems.append(f"re-run of {row.key}: subset_sha256 {again.subset_sha256} != recorded {row.subset_sha256}")
        for name, value in sorted(row.metrics.items()):
            now = again.metrics.get(name)
            if now is None or abs(now - value) > tolerance:
                problems.append(f"re-run of {row.key}: {name} {now!r} != recorded {value!r} "
                                f"(tolerance ±{tolerance:g})")
    return problems


def verify(target: str | Path, *, reference: Any = None, check_pool: bool = True, rerun: int = 0, rerun_seed: int = 0,
           tolerance: float = DEFAULT_TOLERANCE, require_reference: bool | None = None) -> Verification:
    """Verify a run directory or a submission (archive or extracted folder); module docstring.

    ``reference``: the :class:`~delbench.protocol.Protocol` the run must follow, else the
    protocol file named after the run's protocol (:func:`find_protocol_file`); without one a
    submission fails (its settings cannot be checked) and a run directory gets a note
    (``require_reference`` decides instead when given: ``submit`` checks its own archive).
    ``check_pool``: re-open the pool here and check its ids (:func:`verify_run`).
    ``rerun``: re-run that many sampled cells (seeded by ``rerun_seed``) and compare their
    metrics within ``tolerance``.
    """
    from delbench.protocol import load_protocol, protocol_from_json

    result = Verification(str(target))
    with open_submission(target) as directory:
        result.submission = (directory / MANIFEST_FILE).is_file() or not Path(target).is_dir()
        try:
            header = read_header(directory)
        except (DelbenchError, ValueError) as exc:
            result.problems.append(f"{HEADER_FILE}: {one_line(str(exc))}")
            return result
        result.header = header
        result.protocol, result.protocol_version = header.get("protocol"), header.get("protocol_version")
        result.config_sha256 = header.get("config_sha256")
        problems = result.problems
        if result.submission:
            problems += _check_manifest(directory, header)
            try:
                config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                problems.append(f"{CONFIG_FILE}: unreadable ({one_line(str(exc))})")
            else:
                for path, mine, theirs in _differences(config, header.get("protocol_config"), ""):
                    problems.append(f"{CONFIG_FILE}: {path} {mine!r} != {theirs!r} in {HEADER_FILE}'s protocol_config")
        problems += verify_run(directory, check_pool=check_pool)
        subset_problems, records = _check_subsets(directory, header, result.submission)
        problems += subset_problems
        result.n_subsets = len(records)
        try:
            protocol = protocol_from_json(header.get("protocol_config") or {}, plugins=False)
        except ConfigError as exc:
            problems.append(f"{HEADER_FILE}: protocol_config is not a valid protocol: {exc}")
            return result
        problems += _check_rows(directory, header, protocol, records)
        result.rows = read_rows(directory)
        if reference is None:
            found = find_protocol_file(protocol.name)
            if found is not None:
                try:
                    reference = load_protocol(found)[0]
                except DelbenchError as exc:
                    result.notes.append(f"protocol file {found} could not be loaded to compare settings: {exc}")
            if reference is None:
                message = (f"protocol {protocol.name!r}: no protocol file benchmarks/{protocol.name}.py to compare its "
                           f"settings with; pass --protocol FILE")
                required = result.submission if require_reference is None else require_reference
                (problems if required else result.notes).append(message)
        if reference is not None:
            problems += check_settings(protocol, reference)
        if rerun and not problems:
            problems += _rerun(directory, header, protocol, result.rows, rerun, rerun_seed, tolerance)
    return result


# -- leaderboard ----------------------------------------------------------------------------------
def leaderboard(paths: Sequence[str | Path], out_dir: str | Path, *, reference: Any = None,
                check_pool: bool = True) -> dict[str, Path]:
    """Rank the verified submissions of one protocol by aggregate NormDEL (with intervals)
    into ``out_dir``: leaderboard.md, leaderboard.html and leaderboard.json. Each entry is a
    selector of a submission; a submission that fails verification, or is of another
    protocol than the leaderboard's (``reference``, else the first verified one's), is
    listed apart with the reason."""
    from delbench.protocol import DEFAULT_SIGNIFICANCE, load_protocol
    from delbench.reports import aggregate_selectors

    verified, apart = [], []
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
            verified.append(check)
    if reference is None and verified:
        raise DelbenchError("no protocol to rank against; pass --protocol FILE")
    significance = reference.significance if reference is not None else DEFAULT_SIGNIFICANCE
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
    board = {"protocol": reference.name if reference else None,
             "protocol_version": reference.version if reference else None,
             "statistics": {"normdel_alpha": reference.alpha if reference else None, "significance": significance,
                            "confidence": 1 - significance},
             "entries": entries, "unverified": apart}
    out_dir = Path(out_dir)
    markdown = render_leaderboard(board)
    from delbench.reports import markdown_to_html

    atomic_write_json(out_dir / "leaderboard.json", board)
    atomic_write_text(out_dir / "leaderboard.md", markdown)
    atomic_write_text(out_dir / "leaderboard.html", markdown_to_html(
        markdown, lambda src: src, f"delbench leaderboard: {board['protocol']} v{board['protocol_version']}"))
    return {"md": out_dir / "leaderboard.md", "html": out_dir / "leaderboard.html", "json": out_dir / "leaderboard.json"}


def render_leaderboard(board: dict[str, Any]) -> str:
    from tabulate import tabulate

    from delbench.reports import interval_text, statistics_note

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
    if board["unverified"]:
        lines += ["## Not verified (not ranked)", "",
                  tabulate([[u["submission"], u["reason"]] for u in board["unverified"]],
                           headers=["submission", "reason"], tablefmt="github", disable_numparse=True), ""]
    return "\n".join(lines).rstrip() + "\n"


# -- regression: a run against a baseline ------------------------------------------------------------
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
