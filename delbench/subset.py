"""Subsets: the size rule, validation of selector output, how a subset is identified, the one
function that runs a selector, and the small helpers selectors share.

A subset is identified three ways, all recorded with it (DataComp identifies a submission by
its ids in the same spirit):

``subset_sha256``
    sha256 of the selected indices as little-endian int64 bytes: what was selected, *given*
    the pool's order.
``ids_sha256``
    sha256 of the selected items' ids, sorted (Python string order, i.e. by code point),
    each followed by ``"\n"``, encoded as UTF-8: which images were selected, whatever the
    pool's order.
``pool_ids_sha256``
    the same digest of every pool id in pool order (not sorted): the pool the indices refer
    to. ``delbench verify`` recomputes it from the pool to detect a changed or reordered pool.

Ids hold no newline (the separator); :func:`ids_sha256` refuses one.

**Derived subsets.** A generative selector (``produces_derived = True``, e.g. OptiDEL) returns
new images instead of indices (:class:`DerivedSelection`). Each image is content-addressed: its
``sha256`` is :func:`pixel_sha256` of its decoded pixels and it is stored as ``<sha256>.png``;
each has provenance (the pool items it was built from: index, id and box). The harness
(:func:`run_selector`) gives the selector an empty staging directory to write into
(:func:`write_derived_image`), checks the result and writes ``manifest.json`` (canonical JSON,
:data:`DERIVED_FORMAT`), then renames the directory to ``<output_dir>/<manifest sha256>``. For
a derived subset the three identities are: ``subset_sha256`` = sha256 of ``manifest.json``'s
bytes; ``ids_sha256`` = :func:`ids_sha256` of the images' sha256s, sorted; ``pool_ids_sha256``
as above. The budget counts images trained on: exactly ``subset_size(n, ratio)`` images.
:func:`load_derived` re-opens and checks one, :func:`verify_derived` lists what no longer
matches, and :class:`DerivedImages` is the dataset pre-training reads.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from delbench.errors import DatasetError, SelectionError, one_line


@dataclass
class Selection:
    """What a selector may return instead of a bare index array."""

    indices: np.ndarray
    diagnostics: dict[str, Any] = field(default_factory=dict)


def subset_size(n: int, ratio: float) -> int:
    """Number of items a selector must return: ``round(ratio * n)`` rounding halves up.

    At least one item for a non-empty pool and ``ratio > 0`` (a zero-item subset cannot be
    trained on); ``ratio`` must lie in (0, 1].
    """
    if not (isinstance(ratio, (int, float)) and 0.0 < float(ratio) <= 1.0):
        raise SelectionError(f"ratio must be a number in (0, 1], got {ratio!r}")
    if n <= 0:
        return 0
    return min(n, max(1, math.floor(float(ratio) * n + 0.5)))


def subset_sha256(indices: np.ndarray) -> str:
    """sha256 of the indices as little-endian int64 bytes (the submission hash)."""
    return hashlib.sha256(np.ascontiguousarray(indices, dtype="<i8").tobytes()).hexdigest()


def largest_remainder(total: int, weights: Any, *, tie_break: Any = None) -> np.ndarray:
    """Split ``total`` into int64 parts proportional to ``weights`` (Hamilton's method).

    Each part gets the floor of its quota ``total · w_i / Σw``; the ``total − Σ floors``
    units left over go, one each, to the parts with the largest fractional quotas. Equal
    fractions are ordered by ``tie_break`` ascending (e.g. a seeded random key per part, so
    no part is favoured by its position), else by position (lower first).

    Integer weights (counts) are split in exact integer arithmetic, so equal fractions are
    really equal; floating-point weights use float quotas, where fractions equal on paper may
    differ in their last bit. With counts and ``total ≤ Σw`` no part exceeds its weight.

    Parameters: ``total`` — units to split (≥ 0); ``weights`` — 1-D, non-negative, positive
    sum unless ``total`` is 0; ``tie_break`` — optional 1-D keys, one per weight.
    """
    weights = np.asarray(weights)
    if total == 0 or weights.size == 0:
        return np.zeros(weights.size, np.int64)
    if np.issubdtype(weights.dtype, np.integer):
        wanted = int(total) * weights.astype(np.int64)
        whole = int(weights.sum())
        parts, fraction = wanted // whole, wanted % whole  # fraction in units of 1 / whole
    else:
        quota = total * weights.astype(np.float64) / weights.astype(np.float64).sum()
        parts = np.floor(quota).astype(np.int64)
        fraction = quota - parts
    leftover = int(total) - int(parts.sum())
    secondary = np.arange(weights.size) if tie_break is None else np.asarray(tie_break)
    parts[np.lexsort((secondary, -fraction))[:leftover]] += 1
    return parts


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """A selector parameter that must be an integer ≥ ``minimum`` (booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise SelectionError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def check_embeddings(embeddings: Any, n: int) -> np.ndarray:
    """Validate an embedding matrix for a pool of ``n`` items; return it as a 2-D float array.

    Selectors call this first so bad input fails with one clear message.
    """
    if embeddings is None:
        raise SelectionError("this selector needs embeddings (an n × d float array), got None")
    array = np.asarray(embeddings) if not isinstance(embeddings, np.ndarray) else embeddings
    if array.ndim != 2:
        raise SelectionError(f"embeddings must be 2-D (n × d), got shape {array.shape}")
    if array.shape[0] != n:
        raise SelectionError(f"embeddings have {array.shape[0]} rows but the pool has {n} items")
    if not np.issubdtype(array.dtype, np.floating):
        raise SelectionError(f"embeddings must be floating point, got dtype {array.dtype}")
    chunk = 65536  # streamed, so a memory-mapped float16 file is never copied whole
    for start in range(0, array.shape[0], chunk):
        block = np.asarray(array[start:start + chunk])
        if not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise SelectionError(f"embeddings contain NaN or inf (first at row {bad})")
    return array


def read_embeddings(path: str | Path, n: int) -> np.ndarray:
    """An embeddings file (``.npy``, n × d float, row i = pool item i) memory-mapped and
    checked for a pool of ``n`` items (:func:`check_embeddings`); every problem is one
    :class:`~delbench.errors.SelectionError` naming the file. Never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise SelectionError(f"embeddings file {path}: not found" if not path.exists() else
                             f"embeddings file {path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise SelectionError(f"embeddings file {path} is empty; write the n × d array with numpy.save")
    from numpy.lib import format as npy

    with open(path, "rb") as handle:
        magic = handle.read(6)
        if magic != b"\x93NUMPY":
            kind = "a .npz archive" if magic.startswith(b"PK") else "not a .npy file (no numpy header)"
            raise SelectionError(f"embeddings file {path} is {kind}; write one n × d float array with numpy.save")
        handle.seek(0)
        try:
            version = npy.read_magic(handle)
            read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _, dtype = read_header(handle)
        except (ValueError, OSError, EOFError) as exc:
            raise SelectionError(f"embeddings file {path} has a damaged numpy header ({one_line(str(exc))})") from None
        data_start = handle.tell()
    if dtype.hasobject:  # reading it would mean unpickling, which delbench never does
        raise SelectionError(f"embeddings file {path} holds Python objects, not numbers; write a float array")
    expected = data_start + math.prod(shape) * dtype.itemsize
    if size < expected:
        raise SelectionError(f"embeddings file {path} is truncated: its header promises a {dtype} array of shape "
                             f"{tuple(shape)} ({expected} bytes) but the file has {size} bytes")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SelectionError(f"embeddings file {path} cannot be read: {one_line(str(exc))}") from None
    try:
        return check_embeddings(array, n)
    except SelectionError as exc:
        raise SelectionError(f"embeddings file {path}: {exc}") from None


def ids_sha256(ids: Iterable[str]) -> str:
    """sha256 of ``ids`` in the given order, each followed by ``"\\n"``, as UTF-8 (module docstring)."""
    digest = hashlib.sha256()
    for item_id in ids:
        if "\n" in item_id:
            raise DatasetError(f"item id {item_id!r} holds a newline; ids must be single-line strings")
        digest.update(item_id.encode("utf-8") + b"\n")
    return digest.hexdigest()


def selected_ids_sha256(pool_ids: Sequence[str], indices: np.ndarray) -> str:
    """The ``ids_sha256`` of a subset: the ids at ``indices``, sorted."""
    return ids_sha256(sorted(pool_ids[int(i)] for i in indices))


@dataclass(frozen=True)
class Subset:
    """A validated selection: sorted unique int64 indices, how they are identified (module
    docstring), the selector's diagnostics and the seconds the selection took."""

    indices: np.ndarray
    sha256: str
    ids_sha256: str
    pool_ids_sha256: str
    diagnostics: dict[str, Any] = field(default_factory=dict)
    time_s: float = 0.0

    #: "indices" (items of the pool) or "derived" (:class:`DerivedSubset`: new images)
    kind = "indices"

    @property
    def size(self) -> int:
        """Items (images) pre-training uses: the budget R = size / n_pool."""
        return int(self.indices.size)

    def training_set(self, pool: Any) -> tuple[Any, np.ndarray]:
        """What pre-training reads: ``(dataset, indices into it)``; here the pool and the indices."""
        return pool, self.indices


def checked_indices(result: Any, n: int, k: int, *, selector: str = "selector") -> tuple[np.ndarray, dict[str, Any]]:
    """A selector's return value (an int64 array or a :class:`Selection`) checked against the
    contract — 1-D int64, sorted, unique, in [0, n), exactly ``k`` — as (indices, diagnostics)."""
    diagnostics: dict[str, Any] = {}
    if not isinstance(result, np.ndarray) and hasattr(result, "indices"):
        diagnostics = dict(getattr(result, "diagnostics", {}) or {})
        result = result.indices
    if not isinstance(result, np.ndarray):
        raise SelectionError(f"{selector}: returned {type(result).__name__}, expected a numpy array or a Selection")
    if result.ndim != 1:
        raise SelectionError(f"{selector}: indices must be 1-D, got shape {result.shape}")
    if result.dtype != np.int64:
        raise SelectionError(f"{selector}: indices have dtype {result.dtype}, expected int64")
    if result.size and (result.min() < 0 or result.max() >= n):
        raise SelectionError(f"{selector}: indices out of range [0, {n})")
    if result.size > 1 and not (np.diff(result) > 0).all():
        raise SelectionError(f"{selector}: indices must be sorted and unique")
    if result.size != k:
        raise SelectionError(f"{selector}: returned {result.size} indices, expected round(ratio × {n}) = {k}")
    return result, diagnostics


def call_selector(selector: Any, pool: Any, ratio: float, *, seed: int, embeddings: Any = None,
                  backbone: Any = None, params: dict[str, Any] | None = None,
                  output_dir: str | Path | None = None, work: Any = None) -> Any:
    """``selector.select`` called as the contract says: ``embeddings`` only when it
    ``requires_embeddings``, ``backbone`` only when it ``requires_backbone``, ``output_dir``
    only when it ``produces_derived``, ``work`` only when given (refused for a selector
    that is not ``resumable_work``), ``params`` as keywords. Returns what ``select``
    returned, unchecked (:func:`run_selector` checks it)."""
    kwargs = dict(params or {})
    if work is not None:
        if not getattr(selector, "resumable_work", False):
            raise SelectionError(f"{getattr(selector, 'name', type(selector).__name__)} keeps no work files: "
                                 f"it takes no work directory (drop --work)")
        kwargs["work"] = work
    if getattr(selector, "requires_embeddings", False):
        kwargs["embeddings"] = embeddings
    if getattr(selector, "requires_backbone", False):
        kwargs["backbone"] = backbone
    if getattr(selector, "produces_derived", False):
        kwargs["output_dir"] = output_dir
    return selector.select(pool, ratio, seed=seed, **kwargs)


def run_selector(selector: Any, pool: Any, ratio: float, *, seed: int, embeddings: Any = None,
                 backbone: Any = None, params: dict[str, Any] | None = None,
                 pool_ids: Sequence[str] | None = None, output_dir: str | Path | None = None,
                 work: Any = None) -> Subset:
    """Run one selection the one way every caller does: the runner, ``delbench select`` and
    the contract checker.

    ``selector`` is an instance (a :class:`delbench.interfaces.Selector` or any object with
    its ``select`` and class attributes), called by :func:`call_selector`. The result is
    checked against the contract (:func:`checked_indices`) and identified (module
    docstring); ``pool_ids`` (the pool's ``item_ids()``, listed when not given) spare a
    caller that runs many selections on one pool the listing.

    A selector that ``produces_derived`` needs ``output_dir``: it writes into a fresh staging
    directory inside it, and its checked result lands in ``<output_dir>/<manifest sha256>``
    (an existing directory of that name, holding the same images, is kept); the return value
    is then a :class:`DerivedSubset`.

    ``work`` (a :class:`delbench.shards.SelectionWork`) lets a ``resumable_work`` selector
    keep its intermediate results in files and share them with other processes; the subset
    is the same as without it.
    """
    name = str(getattr(selector, "name", type(selector).__name__))
    pool_ids = list(pool.item_ids()) if pool_ids is None else pool_ids
    k = subset_size(len(pool_ids), ratio)
    if not getattr(selector, "produces_derived", False):
        started = time.perf_counter()
        result = call_selector(selector, pool, ratio, seed=seed, embeddings=embeddings, backbone=backbone,
                               params=params, work=work)
        seconds = time.perf_counter() - started
        indices, diagnostics = checked_indices(result, len(pool_ids), k, selector=name)
        return Subset(indices, subset_sha256(indices), selected_ids_sha256(pool_ids, indices), ids_sha256(pool_ids),
                      diagnostics, seconds)
    if output_dir is None:
        raise SelectionError(f"{name} writes new images: the harness must give it an output_dir")
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=output_dir))
    try:
        started = time.perf_counter()
        result = call_selector(selector, pool, ratio, seed=seed, embeddings=embeddings, backbone=backbone,
                               params=params, output_dir=staging, work=work)
        seconds = time.perf_counter() - started
        selection = checked_derived(result, pool_ids, k, staging, selector=name)
        method = {"selector": name, "selector_version": str(getattr(selector, "version", "0")), **selection.method}
        return finalise_derived(staging, Path(output_dir), selection, method=method, pool_ids=pool_ids,
                                time_s=seconds)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- derived subsets ------------------------------------------------------------------------
#: the manifest format written by :func:`finalise_derived`
DERIVED_FORMAT = "delbench.derived/1"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class DerivedSource:
    """Where part of a derived image came from: pool item ``index`` (its ``id``), the
    ``box`` cut from it (x0, y0, x1, y1 in pixels of the pool image, end exclusive) and the
    ``cell`` of the new image it was pasted into (same convention)."""

    index: int
    id: str
    box: tuple[int, int, int, int]
    cell: tuple[int, int, int, int]

    def to_json(self) -> dict[str, Any]:
        return {"index": int(self.index), "id": self.id, "box": [int(v) for v in self.box],
                "cell": [int(v) for v in self.cell]}


@dataclass(frozen=True)
class DerivedImage:
    """One image a generative selector wrote (:func:`write_derived_image`): its content hash,
    its file name (``<sha256>.png``) and its provenance."""

    sha256: str
    file: str
    sources: tuple[DerivedSource, ...]

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "file": self.file, "sources": [s.to_json() for s in self.sources]}


@dataclass
class DerivedSelection:
    """What a ``produces_derived`` selector returns: the images it wrote into the harness's
    ``output_dir`` (in order; one may repeat), ``method`` (deterministic JSON-able facts that
    go into the manifest, e.g. ``{"proposer": "classical"}``: no timings, no paths of this
    machine) and ``diagnostics`` (free-form, recorded with the row, never hashed)."""

    images: list[DerivedImage]
    method: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)


def pixel_sha256(image: np.ndarray) -> str:
    """Content hash of a derived image: sha256 of its uint8 RGB pixels, row-major (H, W, 3)
    bytes. Independent of the PNG encoder, so the same pixels hash alike on every machine."""
    array = np.ascontiguousarray(image, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise SelectionError(f"a derived image must be uint8 (H, W, 3), got shape {array.shape}")
    return hashlib.sha256(array.tobytes()).hexdigest()


def read_png(path: str | Path) -> np.ndarray:
    """A derived image's pixels, uint8 (H, W, 3)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy


def write_derived_image(output_dir: str | Path, image: np.ndarray,
                        sources: Sequence[DerivedSource]) -> DerivedImage:
    """Write ``image`` (uint8 H×W×3) as ``<pixel sha256>.png`` in ``output_dir`` (atomically;
    an existing file of that name holds the same pixels and is kept) and return its record."""
    from PIL import Image

    sha = pixel_sha256(image)
    path = Path(output_dir) / f"{sha}.png"
    if not path.is_file():
        tmp = path.with_name(f".{path.name}.tmp")
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="RGB").save(tmp, format="PNG")
        os.replace(tmp, path)
    return DerivedImage(sha, path.name, tuple(sources))


def checked_derived(result: Any, pool_ids: Sequence[str], k: int, directory: Path, *,
                    selector: str = "selector") -> DerivedSelection:
    """A generative selector's return value checked against the contract: a
    :class:`DerivedSelection` of exactly ``k`` images, each file present in ``directory``
    with the pixels its ``sha256`` names, all of one size, every source a valid pool index
    with that item's id."""
    if not isinstance(result, DerivedSelection):
        raise SelectionError(f"{selector}: returned {type(result).__name__}, expected a DerivedSelection")
    if len(result.images) != k:
        raise SelectionError(f"{selector}: returned {len(result.images)} images, expected round(ratio × "
                             f"{len(pool_ids)}) = {k}")
    shapes = set()
    for number, image in enumerate(result.images):
        if not isinstance(image, DerivedImage) or image.file != f"{image.sha256}.png":
            raise SelectionError(f"{selector}: image {number} is not a DerivedImage named <sha256>.png")
        path = directory / image.file
        if not path.is_file():
            raise SelectionError(f"{selector}: image {number} ({image.file}) was not written to the output_dir")
        pixels = read_png(path)
        if pixel_sha256(pixels) != image.sha256:
            raise SelectionError(f"{selector}: {image.file} does not hold the pixels its name says")
        shapes.add(pixels.shape)
        if not image.sources:
            raise SelectionError(f"{selector}: image {number} has no provenance (sources)")
        for source in image.sources:
            if not 0 <= int(source.index) < len(pool_ids) or pool_ids[int(source.index)] != source.id:
                raise SelectionError(f"{selector}: image {number} names source {source.index} ({source.id!r}), "
                                     f"which is not that pool item")
    if len(shapes) > 1:
        raise SelectionError(f"{selector}: derived images differ in size: {sorted(shapes)}")
    return result


def _canonical(value: Any) -> bytes:
    """The manifest's bytes: sorted keys, no spaces, UTF-8, one final newline (its sha256 is the
    subset hash, so it must not depend on dict order or formatting)."""
    return (json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")


@dataclass(frozen=True)
class DerivedSubset(Subset):
    """A validated derived selection (module docstring): ``indices`` are the pool items the
    images were cut from (sorted, unique: what ground-truth tables count), ``directory`` holds
    ``manifest.json`` and the images, ``manifest`` is its parsed content."""

    directory: Path = Path()
    manifest: Mapping[str, Any] = field(default_factory=dict)

    kind = "derived"

    @property
    def size(self) -> int:
        return len(self.manifest.get("images", ()))

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST_FILE

    def training_set(self, pool: Any) -> tuple[Any, np.ndarray]:
        """The derived images, not the pool: ``(DerivedImages, arange(size))``."""
        return DerivedImages(self.directory, self.manifest), np.arange(self.size, dtype=np.int64)


def _derived_subset(directory: Path, manifest: Mapping[str, Any], sha: str, diagnostics: dict[str, Any],
                    time_s: float) -> DerivedSubset:
    images = manifest["images"]
    sources = sorted({int(s["index"]) for image in images for s in image["sources"]})
    return DerivedSubset(np.asarray(sources, dtype=np.int64), sha, ids_sha256(sorted(i["sha256"] for i in images)),
                         manifest["pool_ids_sha256"], diagnostics, time_s, directory=directory, manifest=manifest)


def finalise_derived(staging: Path, output_dir: Path, selection: DerivedSelection, *, method: dict[str, Any],
                     pool_ids: Sequence[str], time_s: float = 0.0) -> DerivedSubset:
    """Write the manifest of a checked selection into ``staging`` and move it to
    ``output_dir/<manifest sha256>``; files the manifest does not name are left out."""
    images = selection.images
    size = list(read_png(staging / images[0].file).shape[:2]) if images else None
    manifest = {"format": DERIVED_FORMAT, "method": method, "n_pool": len(pool_ids),
                "pool_ids_sha256": ids_sha256(pool_ids), "image_size": size,
                "images": [image.to_json() for image in images]}
    data = _canonical(manifest)
    sha = hashlib.sha256(data).hexdigest()
    target = output_dir / sha
    if not target.is_dir() or verify_derived(target, sha):
        shutil.rmtree(target, ignore_errors=True)
        final = Path(tempfile.mkdtemp(prefix=f".{sha[:16]}-", dir=output_dir))
        for name in sorted({image.file for image in images}):
            os.replace(staging / name, final / name)
        (final / MANIFEST_FILE).write_bytes(data)
        os.replace(final, target)
    return _derived_subset(target, json.loads(data), sha, dict(selection.diagnostics), time_s)


def verify_derived(directory: str | Path, sha256: str | None = None, *,
                   pool_ids: Sequence[str] | None = None) -> list[str]:
    """What no longer matches in a derived subset's directory (empty: all of it does): the
    manifest's sha256 (against ``sha256`` when given), every image file (present, decodable,
    of the recorded size, holding the pixels its sha256 names) and, with ``pool_ids``, the
    pool (its ``pool_ids_sha256``, and every source index still naming its recorded id)."""
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    if not path.is_file():
        return [f"{path}: missing"]
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    problems = []
    if sha256 is not None and actual != sha256:
        problems.append(f"{path}: sha256 {actual} != recorded {sha256}")
    try:
        manifest = json.loads(data)
        images = manifest["images"]
    except (ValueError, KeyError, TypeError) as exc:
        return problems + [f"{path}: not a derived-subset manifest ({exc})"]
    size = tuple(manifest.get("image_size") or ())
    for number, image in enumerate(images):
        file = directory / image["file"]
        if not file.is_file():
            problems.append(f"{file}: missing (image {number})")
            continue
        try:
            pixels = read_png(file)
        except Exception as exc:  # a truncated or replaced file: report it, check the rest
            problems.append(f"{file}: cannot be read ({type(exc).__name__}: {exc})")
            continue
        if size and pixels.shape[:2] != size:
            problems.append(f"{file}: {pixels.shape[0]}×{pixels.shape[1]} pixels, the manifest says {size[0]}×{size[1]}")
        elif pixel_sha256(pixels) != image["sha256"]:
            problems.append(f"{file}: its pixels hash to {pixel_sha256(pixels)}, the manifest records {image['sha256']}")
    if pool_ids is not None:
        if ids_sha256(pool_ids) != manifest.get("pool_ids_sha256"):
            problems.append(f"{path}: made from another pool (pool_ids_sha256 {manifest.get('pool_ids_sha256')} "
                            f"!= this pool's {ids_sha256(pool_ids)})")
        else:
            for number, image in enumerate(images):
                for source in image["sources"]:
                    index = int(source["index"])
                    if not 0 <= index < len(pool_ids) or pool_ids[index] != source["id"]:
                        problems.append(f"{path}: image {number} source {index} is not {source['id']!r} in the pool")
    return problems


def load_derived(directory: str | Path, sha256: str, *, diagnostics: dict[str, Any] | None = None,
                 time_s: float = 0.0) -> DerivedSubset:
    """Re-open a derived subset written by :func:`finalise_derived`; ``SelectionError`` when
    anything in it no longer matches (:func:`verify_derived`)."""
    directory = Path(directory)
    problems = verify_derived(directory, sha256)
    if problems:
        raise SelectionError(f"derived subset {directory} does not match its manifest: {problems[0]}"
                             + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    manifest = json.loads((directory / MANIFEST_FILE).read_bytes())
    return _derived_subset(directory, manifest, sha256, dict(diagnostics or {}), time_s)


class DerivedImages:
    """The images of a derived subset as a dataset pre-training reads (``__len__``,
    ``__getitem__``, ``item_id``/``item_ids``, ``load_images``, ``metadata``), decoded from
    their PNG files on demand. Item ``i`` is the manifest's image ``i``; its id is
    ``derived/<position>/<sha256>`` (an image may repeat, so the position keeps ids unique)."""

    name = "derived"
    roles = ("pool",)
    #: decoded images kept in memory (bytes): pre-training reads each image many times, and
    #: PNG decoding would otherwise make a derived subset slower to train on than the pool
    cache_bytes = 512 * 2 ** 20

    def __init__(self, directory: str | Path, manifest: Mapping[str, Any]) -> None:
        self.directory = Path(directory)
        self.images = list(manifest["images"])
        self._decoded: dict[str, np.ndarray] = {}
        self._held = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"derived images: index {index} out of range [0, {len(self)})")
        file = self.images[index]["file"]
        image = self._decoded.get(file)
        if image is None:
            image = read_png(self.directory / file)
            if self._held + image.nbytes <= self.cache_bytes:
                image.flags.writeable = False  # shared by every read: callers copy (load_images stacks)
                self._decoded[file] = image
                self._held += image.nbytes
        return {"image": image, "id": self.item_id(index)}

    def item_id(self, index: int) -> str:
        return f"derived/{int(index):06d}/{self.images[int(index)]['sha256']}"

    def item_ids(self) -> list[str]:
        return [self.item_id(index) for index in range(len(self))]

    def metadata(self) -> dict[str, np.ndarray]:
        return {}

    def load_images(self, indices: np.ndarray) -> np.ndarray:
        return np.stack([self[int(i)]["image"] for i in indices])


def lowest_first(primary: Any, candidates: Any = None, *, secondary: Any = None) -> np.ndarray:
    """``candidates`` (default: every position of ``primary``) ordered by ``primary``
    ascending, then by ``secondary`` ascending when given, then by index: the deterministic
    ranking selectors use to keep "the lowest key first, ties by index".

    ``primary`` and ``secondary`` are 1-D keys indexed by item (not by candidate); negate a
    key to rank highest first. NaN keys sort last.
    """
    primary = np.asarray(primary)
    if candidates is None:
        candidates = np.arange(primary.size)
    candidates = np.asarray(candidates)
    keys = (candidates, primary[candidates]) if secondary is None else \
        (candidates, np.asarray(secondary)[candidates], primary[candidates])
    return candidates[np.lexsort(keys)]
