"""OptiDEL: the V-information selector that synthesises harder, more diverse images.

"A Self-Supervised Paradigm for Data-Efficient Medical Foundation Model Pre-training:
V-information Optimization Framework" (arXiv 2408.07107). Maximising V-information
I_V(X→Y) = H_V(Y|∅) − H_V(Y|X) means keeping content that is hard for the current model (low
H_V(Y|X)) and diverse (high H_V(Y|∅)). As published: SAM proposes key regions of every pool
image, each region is cropped as a patch, the patches are scored by a foundation model's MAE
reconstruction error, the top N hardest are kept, and every M of them are combined into one
new image (2×2 mosaics in the paper's figure); the N/M new images are the pre-training set.
``shared/OPTIDEL.md`` lists what the paper states and which choices are ours; each choice
is a parameter below, with its default.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from delbench.sdk import (ConfigError, Dataset, DerivedSelection, DerivedSource, SelectionError, Selector, cache_base,
                          check_bool, check_int, check_number, check_path, hookimpl, write_derived_image)
from delbench_plugins.lib.region_proposals import (SAM_BUILDERS, ClassicalProposer, ProposalCache, SamProposer,
                                                   propose_pool, require_segment_anything, settings_key)
from delbench_plugins.selectors.image_filters import candidate_pairs, greedy_leaders, perceptual_hashes


def cache_root() -> Path:
    """Where OptiDEL caches proposals and hardness scores: ``$DELBENCH_CACHE_DIR/optidel``
    (default ``~/.cache/delbench/optidel``), shared by every run on the machine."""
    return cache_base() / "optidel"


def near_duplicate_clusters(hashes: np.ndarray, max_bits: int) -> np.ndarray:
    """A cluster label per frame (int64, the cluster's first frame): frames whose 64-bit
    pHashes differ in at most ``max_bits`` bits are near-duplicates. Equal hashes collapse
    first; then the clusters are those of ``phash_dedup``'s greedy pass in pool order — each
    kept frame (a leader) with the frames it removes — so a cluster never chains along a
    slowly drifting video; each frame joins its first linked leader. Candidate pairs:
    consecutive frames and Charikar's sorted bit-permutation search (fixed seed), as in
    ``phash_dedup``."""
    n = hashes.size
    if n == 0:
        return np.zeros(0, np.int64)
    distinct, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    by_position = np.argsort(first, kind="stable")  # distinct hashes in pool order of first sight
    rank = np.empty(distinct.size, np.int64)
    rank[by_position] = np.arange(distinct.size)
    hashes, m = distinct[by_position], distinct.size
    frame_rank = rank[inverse.reshape(-1)]
    change = np.flatnonzero(np.diff(frame_rank))  # consecutive frames with different hashes
    a, b, distance = candidate_pairs(hashes, rounds=8, window=4, seed=0,
                                     extra=(frame_rank[change], frame_rank[change + 1]))
    close = distance <= max_bits
    a, b = a[close], b[close]
    leader = greedy_leaders(m, a, b, np.arange(m))  # distinct hashes are in pool order already
    label = np.where(leader, np.arange(m), m)
    for one, other in ((a, b), (b, a)):  # each non-leader joins the first leader linked to it
        link = leader[one] & ~leader[other]
        np.minimum.at(label, other[link], one[link])
    return first[by_position][label][frame_rank].astype(np.int64)


def mosaic_cells(height: int, width: int, grid: int) -> list[tuple[int, int, int, int]]:
    """The ``grid`` × ``grid`` cells (x0, y0, x1, y1) of an image, in raster order; edges
    rounded so the cells tile the image exactly."""
    ys = [round(i * height / grid) for i in range(grid + 1)]
    xs = [round(i * width / grid) for i in range(grid + 1)]
    return [(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(grid) for c in range(grid)]


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (h, w, 3) → (height, width, 3), bilinear (PIL)."""
    from PIL import Image

    if image.shape[:2] == (height, width):
        return np.ascontiguousarray(image)
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.BILINEAR))


def assign_mosaics(clusters: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Deal ``k·M`` patches (their cluster labels) into ``k`` mosaics of ``M``: (k, M)
    positions into ``clusters``. Patches are grouped by cluster (clusters and the patches
    inside each in a seeded random order) and dealt round-robin, so a cluster with at most
    ``k`` patches never lands twice in one mosaic (the diversity guard)."""
    rng = np.random.default_rng([int(seed), 0x0D7E1])
    labels = np.unique(clusters)
    cluster_rank = np.empty(labels.size, np.int64)
    cluster_rank[rng.permutation(labels.size)] = np.arange(labels.size)
    rank_of = cluster_rank[np.searchsorted(labels, clusters)]
    dealt = np.lexsort((rng.permutation(clusters.size), rank_of))
    return dealt.reshape(-1, k).T.copy()


class OptiDEL(Selector):
    """OptiDEL (arXiv 2408.07107): key patches → hardest N by MAE loss → mosaics of M.

    1. **Key patches.** Every pool image gets up to ``masks_per_image`` (3) region boxes:
       from SAM when ``sam_checkpoint`` is given (``segment-anything``; ``sam_model_type``
       'vit_b'/'vit_l'/'vit_h' read from the file when None; the automatic mask generator
       with ``sam_points_per_side``, ``sam_pred_iou_thresh``, ``sam_stability_score_thresh``,
       ranked by predicted IoU; encoder batched by ``sam_batch_size`` on ``sam_device``),
       else from the classical salient-region proposer
       (:class:`delbench_plugins.lib.region_proposals.ClassicalProposer`) — every output says
       which (``proposer``). Regions smaller than ``min_area`` or larger than ``max_area`` of
       the image are excluded; boxes are grown to the image's aspect (so patches resize
       without distortion). Proposals are cached on disk per image (pixel sha256 + settings).
    2. **Hardness.** Each patch, resized to the pool's image size, is scored by the current
       backbone's MAE reconstruction loss (``backbone.reconstruction_loss``: a user
       checkpoint, or the runner's short warm-up, whose time the runner adds to the
       selection time), averaged over ``maskings`` (4) random maskings from the fixed
       ``hardness_seed`` (0), in batches of ``score_batch_size`` in pool order (the masks
       depend on the batch, so the batching is fixed). Scores are cached per pool, proposals,
       model (``backbone.fingerprint()``) and settings when the backbone has a fingerprint.
    3. **Top N hardest**, N = M · round(ratio · n), hardest first, ties by source index then
       proposal rank, at most round(ratio · n) patches per near-duplicate cluster (pHash
       within ``duplicate_bits`` bits, :func:`near_duplicate_clusters`).
    4. **Mosaics.** Every M = ``mosaic_size`` (4: 2×2; any square) patches become one image
       at the pool's image size, each patch resized into its cell; patches are dealt to
       mosaics so that no mosaic holds two patches of one near-duplicate cluster
       (:func:`assign_mosaics`). The seed only decides which patches share a mosaic and where.

    The guard cannot hold when the pool has too few clusters or patches: the cap is then
    relaxed (``guard_relaxed`` patches) and, with fewer patches than N in the whole pool,
    the hardest are reused (``patches_reused``); ``guard_violations`` counts mosaics holding
    a cluster twice. A pool in which the proposer finds no region at all (e.g. one dark frame)
    uses whole frames as its patches, and says so (``whole_frame_patches`` in the manifest and
    diagnostics). Diagnostics also give the
    proposer, counts, hardness of the kept and cut patches, and ``stage_seconds`` /
    ``stage_cost_seconds`` (proposal, scoring, synthesis: wall time now, and compute time
    including what cached stages once cost). ``cache=False`` recomputes everything.
    """

    name = "optidel"
    version = "1"
    description = ("OptiDEL (arXiv 2408.07107): SAM/classical key patches, hardest by MAE loss, 2×2 mosaics "
                   "with a near-duplicate guard (derived images)")
    requires_backbone = True
    produces_derived = True

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        check_int(params, "mosaic_size", 1)
        if "mosaic_size" in params and math.isqrt(params["mosaic_size"]) ** 2 != params["mosaic_size"]:
            raise ConfigError(f"mosaic_size must be a square number of patches (1, 4, 9, …), got {params['mosaic_size']}")
        check_int(params, "masks_per_image", 1)
        check_number(params, "min_area", 0.0, 1.0, high_open=True)
        check_number(params, "max_area", 0.0, 1.0, low_open=True)
        if params.get("min_area", 0.01) >= params.get("max_area", 0.8):
            raise ConfigError(f"min_area must be below max_area, got {params.get('min_area', 0.01)} and "
                              f"{params.get('max_area', 0.8)}")
        check_path(params, "sam_checkpoint")
        if params.get("sam_checkpoint"):  # before any work: a missing file or package is one line now
            if not Path(params["sam_checkpoint"]).is_file():
                raise ConfigError(f"sam_checkpoint: file not found: {params['sam_checkpoint']}")
            require_segment_anything()
        if params.get("sam_model_type") is not None and params["sam_model_type"] not in SAM_BUILDERS:
            raise ConfigError(f"sam_model_type must be one of {sorted(SAM_BUILDERS)} or None (read from the "
                              f"checkpoint), got {params['sam_model_type']!r}")
        check_int(params, "sam_points_per_side", 1)
        check_number(params, "sam_pred_iou_thresh", 0.0, 1.0)
        check_number(params, "sam_stability_score_thresh", 0.0, 1.0)
        check_int(params, "sam_batch_size", 1)
        if "sam_device" in params and not isinstance(params["sam_device"], str):
            raise ConfigError(f"sam_device must be a torch device name, got {params['sam_device']!r}")
        check_int(params, "maskings", 1)
        check_int(params, "hardness_seed", 0)
        check_int(params, "score_batch_size", 1)
        check_int(params, "duplicate_bits", 0, 64)
        check_int(params, "batch_size", 1)
        check_bool(params, "cache")

    def choose(self, pool: Dataset, k: int, *, seed: int, backbone: Any, output_dir: Any, mosaic_size: int = 4,
               masks_per_image: int = 3, min_area: float = 0.01, max_area: float = 0.8,
               sam_checkpoint: str | None = None, sam_model_type: str | None = None, sam_points_per_side: int = 32,
               sam_pred_iou_thresh: float = 0.88, sam_stability_score_thresh: float = 0.95,
               sam_batch_size: int = 8, sam_device: str = "cpu", maskings: int = 4, hardness_seed: int = 0,
               score_batch_size: int = 64, duplicate_bits: int = 10, batch_size: int = 64,
               cache: bool = True) -> DerivedSelection:
        if not callable(getattr(backbone, "reconstruction_loss", None)):
            raise SelectionError(f"optidel needs a backbone with reconstruction_loss, got {type(backbone).__name__}")
        n, root = len(pool), cache_root() if cache else None
        if sam_checkpoint:
            proposer: Any = SamProposer.from_checkpoint(
                sam_checkpoint, sam_model_type, device=sam_device, keep=masks_per_image, min_area=min_area,
                max_area=max_area, points_per_side=sam_points_per_side, pred_iou_thresh=sam_pred_iou_thresh,
                stability_score_thresh=sam_stability_score_thresh, batch_size=sam_batch_size)
        else:
            proposer = ClassicalProposer(keep=masks_per_image, min_area=min_area, max_area=max_area)
        settings = proposer.settings()

        # 1. key patches (and each frame's perceptual hash, from the same pixels)
        hashes = np.zeros(n, np.uint64)

        def keep_hashes(start: int, images: np.ndarray) -> None:
            hashes[start:start + len(images)] = perceptual_hashes(images)

        proposals, shas, proposal_stats = propose_pool(
            proposer, lambda a, b: pool.load_images(np.arange(a, b, dtype=np.int64)), n, batch_size=batch_size,
            cache=ProposalCache(None if root is None else root / "proposals", settings), on_batch=keep_hashes)
        height, width = pool.load_images(np.zeros(1, np.int64)).shape[1:3]
        whole_frames = not any(len(b) for b, _ in proposals)
        if whole_frames:  # recorded in the manifest and diagnostics: the method's premise failed here
            proposals = [(np.array([[0, 0, width, height]], np.int32), np.zeros(1, np.float32))] * n
        source = np.concatenate([np.full(len(b), i, np.int64) for i, (b, _) in enumerate(proposals)])
        rank = np.concatenate([np.arange(len(b), dtype=np.int64) for b, _ in proposals])
        boxes = np.concatenate([b for b, _ in proposals]).astype(np.int64).reshape(-1, 4)

        # 2. hardness of every patch
        started = time.perf_counter()
        fingerprint = getattr(backbone, "fingerprint", lambda: None)()
        score_key = {"version": 1, "pool": settings_key({"shas": shas}), "proposals": settings_key(settings),
                     "model": fingerprint, "maskings": maskings, "hardness_seed": hardness_seed,
                     "score_batch_size": score_batch_size, "size": [int(height), int(width)]}
        hardness, scoring_cost, scores_cached = self._hardness(
            pool, source, boxes, backbone, (int(height), int(width)), maskings=maskings, seed=hardness_seed,
            batch_size=score_batch_size, image_batch=batch_size,
            cache=None if root is None or fingerprint is None else root / "scores" / settings_key(score_key))
        scoring_seconds = time.perf_counter() - started

        # 3. top N hardest under the per-cluster cap, 4. mosaics
        started = time.perf_counter()
        grid = math.isqrt(mosaic_size)
        clusters = near_duplicate_clusters(hashes, duplicate_bits)
        chosen, facts = self._top_patches(hardness, source, rank, clusters[source], k, mosaic_size)
        layout = chosen[assign_mosaics(clusters[source[chosen]], k, seed)]  # (k, M) candidate numbers
        images = self._write_mosaics(pool, layout, source, boxes, (int(height), int(width)), grid, output_dir)
        synthesis_seconds = time.perf_counter() - started

        per_mosaic = clusters[source[layout]]
        violations = sum(len(set(row.tolist())) < row.size for row in per_mosaic)
        kept_hardness = hardness[chosen]
        unique_chosen = np.unique(chosen)
        cut = np.setdiff1d(np.arange(source.size), unique_chosen)
        diagnostics = {
            "proposer": settings["proposer"],
            "whole_frame_patches": whole_frames,
            "proposer_settings": settings,
            "n_candidates": int(source.size),
            "images_with_proposals": int(np.unique(source).size),
            "near_duplicate_clusters": int(np.unique(clusters).size),
            "n_patches": int(layout.size),
            "distinct_source_images": int(np.unique(source[chosen]).size),
            "hardness_cut": float(kept_hardness.min()),
            "mean_hardness_kept": float(kept_hardness.mean()),
            "mean_hardness_cut": float(hardness[cut].mean()) if cut.size else None,
            "guard_violations": int(violations),
            **facts,
            "cache": {"proposal_images_cached": proposal_stats["cached_images"], "scores_cached": scores_cached},
            "stage_seconds": {"proposal": round(proposal_stats["seconds"], 4), "scoring": round(scoring_seconds, 4),
                              "synthesis": round(synthesis_seconds, 4)},
            "stage_cost_seconds": {"proposal": round(proposal_stats["cost_seconds"], 4),
                                   "scoring": round(scoring_cost, 4), "synthesis": round(synthesis_seconds, 4)},
        }
        method = {"proposer": settings, "whole_frame_patches": whole_frames, "mosaic_size": int(mosaic_size),
                  "seed": int(seed),
                  "duplicate_bits": int(duplicate_bits),
                  "hardness": {"model": fingerprint or type(backbone).__name__, "maskings": int(maskings),
                               "seed": int(hardness_seed), "score_batch_size": int(score_batch_size)}}
        return DerivedSelection(images, method, diagnostics)

    # --- steps -------------------------------------------------------------------------------
    @staticmethod
    def _hardness(pool: Dataset, source: np.ndarray, boxes: np.ndarray, backbone: Any, size: tuple[int, int], *,
                  maskings: int, seed: int, batch_size: int, image_batch: int,
                  cache: Path | None) -> tuple[np.ndarray, float, bool]:
        """Mean MAE loss per patch (float64), its compute seconds, and whether it was cached.

        Patches are cut from the pool image by image (``image_batch`` images read at a time),
        resized to ``size`` and scored ``batch_size`` at a time in candidate order."""
        scores_file, record_file = (None, None) if cache is None else (cache.with_suffix(".npy"),
                                                                       cache.with_suffix(".json"))
        if scores_file is not None and scores_file.is_file() and record_file.is_file():
            scores = np.load(scores_file, allow_pickle=False)
            if scores.shape == (source.size,):
                return scores, float(json.loads(record_file.read_text())["seconds"]), True
        started = time.perf_counter()
        takes_repeats = "repeats" in inspect.signature(backbone.reconstruction_loss).parameters

        def score(batch: np.ndarray) -> np.ndarray:
            if takes_repeats:  # the backbone averages its own seeded maskings (timm_mae)
                losses = backbone.reconstruction_loss(batch, seed=seed, repeats=maskings)
            else:  # one call per masking, each from its own fixed seed
                losses = np.mean([backbone.reconstruction_loss(batch, seed=seed + j) for j in range(maskings)], axis=0)
            losses = np.asarray(losses, np.float64)
            if losses.shape != (len(batch),) or not np.isfinite(losses).all():
                raise SelectionError(f"optidel: backbone.reconstruction_loss must return {len(batch)} finite values, "
                                     f"got shape {losses.shape}")
            return losses

        scores = np.empty(source.size, np.float64)
        pending: list[np.ndarray] = []
        done = 0
        sources = np.unique(source)
        for start in range(0, sources.size, image_batch):
            chunk = sources[start:start + image_batch]
            images = pool.load_images(chunk)
            for image, index in zip(images, chunk.tolist()):
                for x0, y0, x1, y1 in boxes[source == index].tolist():
                    pending.append(resize(image[y0:y1, x0:x1], *size))
            while len(pending) >= batch_size:
                scores[done:done + batch_size] = score(np.stack(pending[:batch_size]))
                done += batch_size
                del pending[:batch_size]
        if pending:
            scores[done:] = score(np.stack(pending))
        seconds = time.perf_counter() - started
        if scores_file is not None:
            scores_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = scores_file.with_name(f".{scores_file.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, scores)
            os.replace(tmp, scores_file)
            record_file.write_text(json.dumps({"seconds": seconds, "n": int(source.size)}))
        return scores, seconds, False

    @staticmethod
    def _top_patches(hardness: np.ndarray, source: np.ndarray, rank: np.ndarray, cluster: np.ndarray, k: int,
                     mosaic_size: int) -> tuple[np.ndarray, dict[str, int]]:
        """The N = k · M patches to keep (candidate numbers, hardest first): at most ``k`` per
        cluster; then, if too few, the hardest left out by the cap; then, if the pool has
        fewer than N patches, the kept ones again in hardness order."""
        wanted = k * mosaic_size
        order = np.lexsort((rank, source, -hardness))
        clusters = cluster[order]
        # occurrence number of each patch within its cluster, in hardness order
        by_cluster = np.lexsort((np.arange(order.size), clusters))
        starts = np.r_[0, np.flatnonzero(np.diff(clusters[by_cluster])) + 1]
        occurrence = np.empty(order.size, np.int64)
        occurrence[by_cluster] = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
        capped = order[occurrence < k][:wanted]
        relaxed = order[occurrence >= k][:wanted - capped.size]
        chosen = np.concatenate([capped, relaxed])
        reused = wanted - chosen.size
        if reused:
            chosen = np.resize(chosen, wanted)
        return chosen, {"guard_relaxed": int(relaxed.size), "patches_reused": int(reused)}

    @staticmethod
    def _write_mosaics(pool: Dataset, layout: np.ndarray, source: np.ndarray, boxes: np.ndarray,
                       size: tuple[int, int], grid: int, output_dir: Any) -> list:
        """Paste each patch into its cell and write every mosaic (``write_derived_image``)."""
        height, width = size
        cells = mosaic_cells(height, width, grid)
        canvases = np.zeros((layout.shape[0], height, width, 3), np.uint8)
        slot_of = np.tile(np.arange(layout.shape[1]), layout.shape[0])
        mosaic_of = np.repeat(np.arange(layout.shape[0]), layout.shape[1])
        placed = layout.ravel()
        ids = {}
        needed = np.unique(source[placed])
        for start in range(0, needed.size, 64):
            chunk = needed[start:start + 64]
            for image, index in zip(pool.load_images(chunk), chunk.tolist()):
                ids[index] = pool.item_id(index)
                for position in np.flatnonzero(source[placed] == index).tolist():
                    x0, y0, x1, y1 = boxes[placed[position]].tolist()
                    cx0, cy0, cx1, cy1 = cells[slot_of[position]]
                    canvases[mosaic_of[position], cy0:cy1, cx0:cx1] = resize(image[y0:y1, x0:x1], cy1 - cy0, cx1 - cx0)
        images = []
        for number, canvas in enumerate(canvases):
            sources = [DerivedSource(int(source[c]), ids[int(source[c])], tuple(int(v) for v in boxes[c]),
                                     cells[slot]) for slot, c in enumerate(layout[number].tolist())]
            images.append(write_derived_image(output_dir, canvas, sources))
        return images


@hookimpl
def delbench_register_selectors() -> list[type]:
    return [OptiDEL]
