"""The one function that runs a selector (``delbench run``, ``delbench select`` and the contract
checker alike): its inputs passed as its class declares, its output checked and identified."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from delbench.errors import SelectionError
from delbench.sdk.derived import checked_derived, finalise_derived
from delbench.sdk.subsets import (Subset, checked_indices, ids_sha256, selected_ids_sha256, subset_sha256,
                                  subset_size)


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
