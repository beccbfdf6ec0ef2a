"""Derived subsets: the new images a generative selector writes, and their manifest.

A generative selector (``produces_derived = True``, e.g. OptiDEL) returns new images instead
of indices (:class:`DerivedSelection`). Each image is content-addressed: its ``sha256`` is
:func:`pixel_sha256` of its decoded pixels and it is stored as ``<sha256>.png``; each has
provenance (the pool items it was built from: index, id and box). The harness
(``delbench.run.select.run_selector``) gives the selector an empty staging directory to write
into (:func:`write_derived_image`), checks the result (:func:`checked_derived`) and writes
``manifest.json`` (canonical JSON, :data:`DERIVED_FORMAT`; :func:`finalise_derived`), then
renames the directory to ``<output_dir>/<manifest sha256>``. For a derived subset the three
identities (:mod:`delbench.sdk.subsets`) are: ``subset_sha256`` = sha256 of
``manifest.json``'s bytes; ``ids_sha256`` = :func:`~delbench.sdk.subsets.ids_sha256` of the
images' sha256s, sorted; ``pool_ids_sha256`` as for any subset. The budget counts images
trained on: exactly ``subset_size(n, ratio)`` images. :func:`load_derived` re-opens and
checks one, :func:`verify_derived` lists what no longer matches, and :class:`DerivedImages`
is the dataset pre-training reads.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from delbench.errors import SelectionError
from delbench.sdk.subsets import Subset, ids_sha256

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
