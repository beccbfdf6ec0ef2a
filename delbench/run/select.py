"""Stage 2, selection: the one function that runs a selector (``delbench run``, ``delbench
select`` and the contract checker alike), and a run's selections saved, indexed and reloaded.

:func:`run_selector` runs a selector instance: its inputs passed as its class declares, its
output checked against the contract and identified (:mod:`delbench.sdk.subsets`; a generative
selector's images finalised, :mod:`delbench.sdk.derived`). :func:`select` runs one by name,
asking for the embeddings or backbone it reads; :func:`select_subset` is a run's selection
of one (selector, ratio, seed), saved under ``subsets/`` (``derived/`` for images) and
reloaded on ``--resume``.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from delbench import discovery
from delbench.errors import DelbenchError, SelectionError
from delbench.protocol import SelectorSpec, content_hash
from delbench.run.context import RunContext
from delbench.run.embeddings import embedding_backbone, pool_embeddings
from delbench.run.timeouts import stage_deadline
from delbench.sdk.derived import DerivedSubset, checked_derived, finalise_derived, load_derived
from delbench.sdk.files import atomic_save_npy, atomic_write_json
from delbench.sdk.subsets import (Subset, checked_indices, ids_sha256, selected_ids_sha256, subset_sha256,
                                  subset_size)
from delbench.store import DERIVED_DIR, SUBSETS_FILE

logger = logging.getLogger(__name__)


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

    ``selector`` is an instance (a :class:`delbench.sdk.Selector` or any object with
    its ``select`` and class attributes), called by :func:`call_selector`. The result is
    checked against the contract (:func:`checked_indices`) and identified (module
    docstring); ``pool_ids`` (the pool's ``item_ids()``, listed when not given) spare a
    caller that runs many selections on one pool the listing.

    A selector that ``produces_derived`` needs ``output_dir``: it writes into a fresh staging
    directory inside it, and its checked result lands in ``<output_dir>/<manifest sha256>``
    (an existing directory of that name, holding the same images, is kept); the return value
    is then a :class:`DerivedSubset`.

    ``work`` (a :class:`delbench.sdk.SelectionWork`) lets a ``resumable_work`` selector
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


def select(spec: SelectorSpec, pool: Any, ratio: float, *, seed: int, get_embeddings: Callable[[], Any] | None = None,
           get_backbone: Callable[[], Any] | None = None, pool_ids: Sequence[str] | None = None,
           output_dir: str | Path | None = None, work: Any = None, timeout: float | None = None) -> Subset:
    """The one way a selection runs, for ``delbench run`` (:func:`select_subset`) and ``delbench
    select`` alike: the selector built by its registry name; what its class declares it reads
    asked for, ``get_embeddings()`` when it ``requires_embeddings`` and ``get_backbone()`` when
    it ``requires_backbone`` (made before its clock starts: they may serve many selections);
    then :func:`run_selector` with ``spec``'s parameters, under the ``select`` timeout."""
    cls = discovery.get("selector", spec.name)
    inputs = {}
    for flag, key, get in (("requires_embeddings", "embeddings", get_embeddings),
                           ("requires_backbone", "backbone", get_backbone)):
        if getattr(cls, flag, False):
            if get is None:
                raise SelectionError(f"selector {spec.name!r} reads {key}, and none were given")
            inputs[key] = get()
    with stage_deadline("select", timeout):
        return run_selector(cls(), pool, ratio, seed=seed, params=spec.params, pool_ids=pool_ids,
                            output_dir=output_dir, work=work, **inputs)


def _composition(pool: Any, indices: np.ndarray) -> dict[str, dict[str, int]] | None:
    """Per planted kind: how many frames the pool has and how many the subset kept (for a
    derived subset: how many were a source of at least one of its images)."""
    kinds = pool.metadata().get("kind") if hasattr(pool, "metadata") else None
    if kinds is None:
        return None
    kinds = np.asarray(kinds).astype(str)
    kept = np.zeros(kinds.size, bool)
    kept[indices] = True
    return {str(k): {"pool": int((kinds == k).sum()), "kept": int((kept & (kinds == k)).sum())}
            for k in np.unique(kinds)}


#: ground-truth columns whose distinct values a selection's valid frames cover (``coverage``)
COVERAGE_COLUMNS = {"scene_id": "scenes", "centre_id": "centres"}


def _coverage(pool: Any, indices: np.ndarray) -> dict[str, dict[str, int]] | None:
    """Per planted grouping (scenes, centres): how many groups hold a valid frame of the pool
    and how many a valid frame the subset kept (for a derived subset: cut from). None for a
    pool without these columns."""
    metadata = pool.metadata() if hasattr(pool, "metadata") else {}
    columns = {name: np.asarray(metadata[column]) for column, name in COVERAGE_COLUMNS.items() if column in metadata}
    if not columns:
        return None
    kind = metadata.get("kind")
    valid = np.ones(len(pool), bool) if kind is None else np.asarray(kind).astype(str) != "invalid"
    kept = np.zeros(len(pool), bool)
    kept[indices] = True
    return {name: {"pool": int(np.unique(values[valid]).size), "kept": int(np.unique(values[valid & kept]).size)}
            for name, values in columns.items()}


def _patch_sources(pool: Any, subset: DerivedSubset) -> dict[str, int] | None:
    """Per planted kind: how many of a derived subset's patches were cut from frames of it."""
    kinds = pool.metadata().get("kind") if hasattr(pool, "metadata") else None
    if kinds is None:
        return None
    cut_from = [str(kinds[int(s["index"])]) for image in subset.manifest["images"] for s in image["sources"]]
    return {str(k): cut_from.count(str(k)) for k in np.unique(np.asarray(kinds).astype(str))}


def select_subset(ctx: RunContext, selector: SelectorSpec, ratio: float, seed: int) -> tuple[Subset, dict[str, Any]]:
    """Run (or reload) one selection; returns the subset and selection facts for the rows.

    An index subset is saved as ``subsets/<name>.npy``; a derived one (a generative
    selector's images) under ``derived/<manifest sha256>/``. Either way ``subsets/<name>.json``
    holds its facts and ``subsets/subsets.json`` indexes it for ``verify``."""
    label = selector.label
    # readable, plus a hash of the exact label: sanitising alone could map two labels to one file
    name = (re.sub(r"[^A-Za-z0-9._-]+", "_", f"{label}_ratio{ratio:g}_seed{seed}")
            + f"_{content_hash([label, ratio, seed], 8)}")
    directory = ctx.work_dir / "subsets"
    index_path = directory / f"{name}.npy"
    meta_path = directory / f"{name}.json"
    if meta_path.is_file():  # resume: selections are deterministic
        meta = json.loads(meta_path.read_text())
        reloaded = _reload_subset(ctx, meta, index_path)
        if reloaded is not None:
            return reloaded, meta
        logger.warning("subset %s does not match its hash or the pool; selecting again", meta_path)
    cls = discovery.get("selector", selector.name)
    requires_embeddings = getattr(cls, "requires_embeddings", False)
    requires_backbone = getattr(cls, "requires_backbone", False)
    subset = select(selector, ctx.pool, ratio, seed=seed, get_embeddings=lambda: pool_embeddings(ctx),
                    get_backbone=lambda: embedding_backbone(ctx), pool_ids=ctx.pool_ids,
                    output_dir=ctx.work_dir / DERIVED_DIR, timeout=ctx.protocol.execution.timeout("select"))
    meta = {"selector": selector.name, "label": label, "selector_version": str(getattr(cls, "version", "0")),
            "params": selector.params, "ratio": ratio, "seed": seed, "n_pool": len(ctx.pool), "kind": subset.kind,
            "n_selected": subset.size, "sha256": subset.sha256, "ids_sha256": subset.ids_sha256,
            "pool_ids_sha256": subset.pool_ids_sha256, "select_seconds": subset.time_s,
            # the scoring model's warm-up is part of what a backbone-reading selection costs
            "warmup_seconds": ctx.warmup_seconds if requires_backbone else None,
            "diagnostics": subset.diagnostics, "composition": _composition(ctx.pool, subset.indices),
            "coverage": _coverage(ctx.pool, subset.indices),
            "embedding_quality": ctx.embedding_quality if requires_embeddings else None}
    if isinstance(subset, DerivedSubset):
        meta["manifest"] = subset.manifest_path.relative_to(ctx.work_dir).as_posix()
        meta["patch_sources"] = _patch_sources(ctx.pool, subset)
    else:
        meta["file"] = index_path.name
        atomic_save_npy(index_path, subset.indices)
    atomic_write_json(meta_path, meta)
    _record_subset(directory, name, meta)
    return subset, meta


def rebuild_subset_index(work_dir: Path) -> None:
    """Record every subset file of ``work_dir`` in its index again: jobs running side by side
    (:mod:`delbench.run.launch`) may each have rewritten the index without the others' entries."""
    directory = work_dir / "subsets"
    for meta_path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
        if meta_path.name != SUBSETS_FILE:
            _record_subset(directory, meta_path.stem, json.loads(meta_path.read_text()))


def _reload_subset(ctx: RunContext, meta: dict[str, Any], index_path: Path) -> Subset | None:
    """A saved selection, if it still matches its hashes and this pool; else None."""
    if meta.get("pool_ids_sha256") != ctx.pool_ids_sha256:
        return None
    if meta.get("kind") == "derived":
        try:
            return load_derived((ctx.work_dir / meta["manifest"]).parent, meta["sha256"],
                                diagnostics=meta.get("diagnostics", {}), time_s=meta["select_seconds"])
        except DelbenchError:
            return None
    if not index_path.is_file():
        return None
    indices = np.load(index_path, allow_pickle=False)
    if subset_sha256(indices) != meta["sha256"]:
        return None
    return Subset(indices, meta["sha256"], meta["ids_sha256"], meta["pool_ids_sha256"],
                  meta.get("diagnostics", {}), meta["select_seconds"])


def _record_subset(directory: Path, name: str, meta: dict[str, Any]) -> None:
    index = directory / SUBSETS_FILE
    entries = json.loads(index.read_text()) if index.is_file() else {}
    entries[name] = {k: meta[k] for k in ("kind", "file", "manifest", "sha256", "ids_sha256", "pool_ids_sha256",
                                          "n_selected", "selector", "ratio", "seed") if k in meta}
    atomic_write_json(index, entries)
