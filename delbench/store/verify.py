"""Run verification: recompute what a run directory's files let one recompute (the protocol
hash, every subset file and derived subset, each row against its subset, and, with the pool
here, the pool's ids), and the one way a run's pool is re-opened from its header."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from delbench import discovery
from delbench.errors import DelbenchError, one_line
from delbench.protocol import protocol_sha256
from delbench.sdk.derived import verify_derived
from delbench.sdk.subsets import ids_sha256, selected_ids_sha256, subset_sha256
from delbench.store.rows import read_rows
from delbench.store.schema import HEADER_FILE, SUBSETS_FILE, read_header


def reopen_pool_ids(header: dict[str, Any]) -> list[str]:
    """The ids of a run's pool in pool order, the pool re-opened here from the protocol its
    header records (its data root must exist on this machine); ``verify`` checks them against
    the run and ``submit`` packs them. A pool that cannot be opened is one
    :class:`~delbench.errors.DelbenchError` naming it."""
    spec = header.get("protocol_config", {}).get("pool") or {}
    try:
        pool = discovery.create("dataset", spec["name"], spec.get("params", {}), where="pool", split="all")
        return list(pool.item_ids())
    except (DelbenchError, KeyError) as exc:
        raise DelbenchError(f"pool {spec.get('name')!r} could not be re-opened here ({one_line(str(exc))})") from None


def _verify_derived_entry(run_dir: Path, entry: dict[str, Any], pool_ids: list[str] | None) -> list[str]:
    """A derived subset of a run against its record: the manifest's sha256, every image's
    pixels (``delbench.sdk.derived.verify_derived``), the image count, the ids digest and, with
    ``pool_ids``, its sources in the pool."""
    manifest = run_dir / entry["manifest"]
    problems = verify_derived(manifest.parent, entry["sha256"], pool_ids=pool_ids)
    if problems or not manifest.is_file():
        return [f"{entry['manifest']}: {p.replace(str(manifest.parent) + '/', '')}" for p in problems]
    images = json.loads(manifest.read_bytes())["images"]
    if len(images) != entry.get("n_selected"):
        problems.append(f"{entry['manifest']}: {len(images)} images, recorded {entry.get('n_selected')}")
    if ids_sha256(sorted(image["sha256"] for image in images)) != entry.get("ids_sha256"):
        problems.append(f"{entry['manifest']}: its images' ids_sha256 differs from the recorded one")
    return problems


def verify_run(run_dir: str | Path, *, check_pool: bool = True) -> list[str]:
    """Recompute what a run's files let one recompute; return the problems (empty: all match).

    ``run.json``'s config_sha256 against its recorded protocol; every subset file's sha256
    and size against ``subsets/subsets.json``; every ok row against the subset it names
    (``subset_sha256``, ``ids_sha256``, ``pool_ids_sha256``); every derived subset's manifest
    and images (an altered, missing or replaced image is reported). With ``check_pool`` the
    pool is re-opened from the recorded protocol: its ``pool_ids_sha256`` must still be the
    run's (otherwise the pool changed or was reordered since), and each subset's indices (a
    derived subset's sources) must still name the images it selected (``ids_sha256``).
    """
    run_dir = Path(run_dir)
    header = read_header(run_dir)
    problems: list[str] = []
    recomputed = protocol_sha256(header.get("protocol_config", {}))
    if recomputed != header.get("config_sha256"):
        problems.append(f"{HEADER_FILE}: config_sha256 {header.get('config_sha256')} does not match the "
                        f"recorded protocol ({recomputed})")
    pool_ids = None
    if check_pool:
        try:
            pool_ids = reopen_pool_ids(header)
        except DelbenchError as exc:
            problems.append(f"{exc}; pass --no-pool to check the hashes alone")
        if pool_ids is not None and ids_sha256(pool_ids) != header.get("pool_ids_sha256"):
            problems.append(f"the pool changed or was reordered since the run: its pool_ids_sha256 is now "
                            f"{ids_sha256(pool_ids)}, the run recorded {header.get('pool_ids_sha256')} "
                            f"({len(pool_ids)} items now, {header.get('n_pool')} then)")
    subsets_path = run_dir / "subsets" / SUBSETS_FILE
    recorded = json.loads(subsets_path.read_text()) if subsets_path.is_file() else {}
    for entry in sorted(recorded.values(), key=lambda e: str(e.get("file") or e.get("manifest") or "")):
        if entry.get("kind") == "derived":
            manifest = entry.get("manifest")
            if not isinstance(manifest, str) or Path(manifest).is_absolute() or ".." in Path(manifest).parts:
                # a path from the file, never one that leads outside the run
                problems.append(f"subsets/{SUBSETS_FILE}: manifest path {manifest!r} is not inside the run")
            else:
                problems += _verify_derived_entry(run_dir, entry, pool_ids)
            continue
        if not isinstance(entry.get("file"), str) or Path(entry["file"]).name != entry["file"] \
                or entry["file"].startswith("."):  # a name from the file, never a path to read elsewhere
            problems.append(f"subsets/{SUBSETS_FILE}: file name {entry.get('file')!r} is not a plain file name")
            continue
        file = run_dir / "subsets" / entry["file"]
        if not file.is_file():
            problems.append(f"subsets/{entry['file']}: missing")
            continue
        try:
            indices = np.load(file, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:  # object arrays (pickles) are refused, never loaded
            problems.append(f"subsets/{entry['file']}: not a readable numeric .npy ({one_line(str(exc))})")
            continue
        actual = subset_sha256(indices)
        if actual != entry["sha256"]:
            problems.append(f"subsets/{entry['file']}: sha256 {actual} != recorded {entry['sha256']}")
        if indices.size != entry.get("n_selected", indices.size):
            problems.append(f"subsets/{entry['file']}: {indices.size} indices, recorded {entry['n_selected']}")
        if pool_ids is not None:
            if indices.size and (indices.min() < 0 or indices.max() >= len(pool_ids)):
                problems.append(f"subsets/{entry['file']}: indices beyond the pool's {len(pool_ids)} items")
            elif selected_ids_sha256(pool_ids, indices) != entry.get("ids_sha256"):
                problems.append(f"subsets/{entry['file']}: its indices name other images in the pool now "
                                f"(ids_sha256 {selected_ids_sha256(pool_ids, indices)} != recorded "
                                f"{entry.get('ids_sha256')})")
    by_hash = {entry["sha256"]: entry for entry in recorded.values()}
    for row in read_rows(run_dir, []):  # reference rows use no subset; rows left out are the rows check's
        if not row.ok or row.subset_sha256 is None:
            continue
        entry = by_hash.get(row.subset_sha256)
        if entry is None:
            problems.append(f"row {row.key}: subset_sha256 {row.subset_sha256} has no subset file")
        elif (row.ids_sha256, row.pool_ids_sha256) != (entry.get("ids_sha256"), entry.get("pool_ids_sha256")):
            problems.append(f"row {row.key}: ids_sha256/pool_ids_sha256 differ from its subset's")
    return problems
