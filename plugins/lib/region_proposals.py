"""Region proposers for key-patch selection (OptiDEL), and a disk cache of their proposals.

Not a plugin: it registers nothing. A proposer turns a batch of uint8 images (B, H, W, 3) into,
per image, up to ``keep`` boxes (int32 (m, 4): x0, y0, x1, y1 in pixels, end exclusive) with a
score each (float32 (m,), higher first). Two proposers share one post-processing step
(:func:`finalise_boxes`):

``SamProposer``
    the Segment Anything Model (Kirillov et al., ICCV 2023) through the ``segment-anything``
    package: its ``SamAutomaticMaskGenerator`` (a grid of point prompts, predicted-IoU and
    stability filters, box NMS) with the image encoder run once per *batch* of images
    (:class:`_PresetFeatures` hands each image's precomputed embedding to the generator).
    Built from a user checkpoint (:meth:`SamProposer.from_checkpoint`; the model type is read
    from the file or given) or from any ``Sam`` model object (tests build a tiny random one).
``ClassicalProposer``
    what stands in without a SAM checkpoint: frequency-tuned colour-contrast saliency
    (Achanta et al., CVPR 2009), thresholded at several levels, connected components as
    regions (docstring of the class).

Both keep only regions that are neither tiny nor near-whole-image, then the highest-scoring
``keep`` after :func:`finalise_boxes`. Proposals are cached per image by the sha256 of its
pixels and the proposer's settings (:class:`ProposalCache`).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from delbench.sdk import ConfigError, pixel_sha256
from delbench.sdk import file_sha256 as sha256_of_file

#: boxes are grown to at least this fraction of the image side (a few-pixel region upscaled
#: into a mosaic cell would be all interpolation) — *ours*
MIN_SIDE_FRACTION = 1 / 8
#: proposals overlapping a better one by more than this IoU are dropped (SAM's own default)
NMS_IOU = 0.7


# --- shared post-processing -------------------------------------------------------------------
def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box with each of (m, 4) boxes (x0, y0, x1, y1, end exclusive)."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def grow_box(box: np.ndarray, height: int, width: int, min_side_fraction: float = MIN_SIDE_FRACTION) -> np.ndarray:
    """The box grown around its centre to the image's aspect ratio (so a patch resizes into
    a mosaic cell without distortion) and to at least ``min_side_fraction`` of the image
    side, shifted (not cut) to lie inside the image; int (4,)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    aspect = width / height
    if w / h < aspect:
        w = h * aspect
    else:
        h = w / aspect
    scale = max(1.0, min_side_fraction * height / h)
    w, h = min(w * scale, float(width)), min(h * scale, float(height))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w_int, h_int = max(1, int(round(w))), max(1, int(round(h)))
    left = int(np.clip(round(cx - w_int / 2), 0, width - w_int))
    top = int(np.clip(round(cy - h_int / 2), 0, height - h_int))
    return np.array([left, top, left + w_int, top + h_int], np.int64)


def finalise_boxes(boxes: np.ndarray, scores: np.ndarray, height: int, width: int, keep: int,
                   max_area: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Rank regions by score (ties: by box coordinates), grow each (:func:`grow_box`), drop
    those that then cover more than ``max_area`` of the image (near-whole-image) and any
    overlapping a better one by IoU > :data:`NMS_IOU`, keep the first ``keep``.
    Returns int32 (m, 4) boxes and float32 (m,) scores, best first."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    order = np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], -scores))
    kept_boxes: list[np.ndarray] = []
    kept_scores: list[float] = []
    for i in order.tolist():
        grown = grow_box(boxes[i], height, width)
        if (grown[2] - grown[0]) * (grown[3] - grown[1]) > max_area * height * width:
            continue
        if kept_boxes and box_iou(grown, np.stack(kept_boxes)).max() > NMS_IOU:
            continue
        kept_boxes.append(grown)
        kept_scores.append(float(scores[i]))
        if len(kept_boxes) == keep:
            break
    if not kept_boxes:
        return np.zeros((0, 4), np.int32), np.zeros(0, np.float32)
    return np.stack(kept_boxes).astype(np.int32), np.asarray(kept_scores, np.float32)


# --- the classical proposer -------------------------------------------------------------------
def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB (..., 3) → CIE L*a*b* (D65), float32."""
    c = np.asarray(rgb, np.float32) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]],
                            np.float32)
    xyz = xyz / np.array([0.95047, 1.0, 1.08883], np.float32)
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
                    axis=-1).astype(np.float32)


class ClassicalProposer:
    """Salient colour regions without a model (what stands in for SAM without a checkpoint).

    Per image: (1) pixels darker than ``dark_level`` (grey, 0–255) are the endoscope's black
    field-of-view border, not content, and are ignored throughout; (2) frequency-tuned
    saliency (Achanta, Hemami, Estrada & Süsstrunk, CVPR 2009): the L*a*b* distance of the
    Gaussian-blurred image (sigma ``max(1, min(H, W) / 64)``) from the mean colour of the
    content; (3) the saliency map is thresholded at each of ``levels`` × its mean (Achanta's
    adaptive threshold is 2×; several levels give nested regions at several scales); (4) each
    8-connected component is a region, scored by its share of the image's total saliency;
    regions covering less than ``min_area`` of the image (tiny) or whose box, as found or
    once grown to the image's aspect (:func:`grow_box`), covers more than ``max_area``
    (near-whole-image) are dropped; (5) :func:`finalise_boxes` keeps the best ``keep``. Deterministic; numpy and scipy only.
    """

    name = "classical"
    version = "1"

    def __init__(self, *, keep: int = 3, min_area: float = 0.01, max_area: float = 0.8,
                 dark_level: float = 20.0, levels: tuple[float, ...] = (1.0, 2.0, 3.0)) -> None:
        self.keep, self.min_area, self.max_area = int(keep), float(min_area), float(max_area)
        self.dark_level, self.levels = float(dark_level), tuple(float(v) for v in levels)

    def settings(self) -> dict[str, Any]:
        """Everything the proposals depend on (the cache key and the manifest record it)."""
        return {"proposer": self.name, "version": self.version, "keep": self.keep, "min_area": self.min_area,
                "max_area": self.max_area, "dark_level": self.dark_level, "levels": list(self.levels)}

    def propose(self, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self._one(image) for image in images]

    def _one(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from scipy import ndimage

        height, width = image.shape[:2]
        grey = np.asarray(image, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        content = grey >= self.dark_level
        if content.sum() < self.min_area * height * width:
            return np.zeros((0, 4), np.int32), np.zeros(0, np.float32)
        lab = srgb_to_lab(image)
        sigma = max(1.0, min(height, width) / 64)
        blurred = ndimage.gaussian_filter(lab, sigma=(sigma, sigma, 0), mode="nearest")
        saliency = np.linalg.norm(blurred - lab[content].mean(axis=0), axis=-1)
        saliency[~content] = 0.0
        total = float(saliency.sum())
        if total <= 0:
            return np.zeros((0, 4), np.int32), np.zeros(0, np.float32)
        mean = total / content.sum()
        boxes, scores = [], []
        for level in self.levels:
            labels, count = ndimage.label(saliency >= level * mean, structure=np.ones((3, 3), bool))
            if not count:
                continue
            areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
            mass = np.bincount(labels.ravel(), weights=saliency.ravel(), minlength=count + 1)[1:]
            for number, found in enumerate(ndimage.find_objects(labels)):
                ys, xs = found
                box_area = (ys.stop - ys.start) * (xs.stop - xs.start)
                if areas[number] < self.min_area * height * width or box_area > self.max_area * height * width:
                    continue
                boxes.append((xs.start, ys.start, xs.stop, ys.stop))
                scores.append(mass[number] / total)
        return finalise_boxes(np.asarray(boxes).reshape(-1, 4), np.asarray(scores), height, width, self.keep,
                              self.max_area)


# --- SAM ----------------------------------------------------------------------------------------
def _package_builder(model_type: str) -> Callable[[], Any]:
    def build() -> Any:
        from segment_anything import sam_model_registry
        return sam_model_registry[model_type]()  # random weights; the checkpoint is loaded by us
    return build


#: SAM model types → a builder of that architecture (random weights). Tests add a tiny one.
SAM_BUILDERS: dict[str, Callable[[], Any]] = {name: _package_builder(name) for name in ("vit_b", "vit_l", "vit_h")}
#: encoder width → model type, to read the type from a checkpoint
SAM_TYPE_BY_WIDTH = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}


def require_segment_anything() -> None:
    try:
        import segment_anything  # noqa: F401 (only whether it is installed)
    except ImportError:
        raise ConfigError("a SAM checkpoint was given but the 'segment-anything' package is not installed: "
                          "pip install -e '.[sam]'") from None


def sam_model_type(state: Mapping[str, Any]) -> str:
    """The SAM model type of a checkpoint's state dict, read from its encoder width."""
    weight = state.get("image_encoder.patch_embed.proj.weight")
    width = int(weight.shape[0]) if weight is not None else None
    if width not in SAM_TYPE_BY_WIDTH:
        raise ConfigError(f"cannot tell the SAM model type from the checkpoint (encoder width {width}); "
                          f"give sam_model_type, one of {sorted(SAM_BUILDERS)}")
    return SAM_TYPE_BY_WIDTH[width]


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of_file(path)  # size and mtime only key the memo


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (memoised per path, size and modification time)."""
    stat = Path(path).stat()
    return _file_sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def _preset_predictor(sam: Any, features: Any, original_size: tuple[int, int], input_size: tuple[int, int]) -> Any:
    """A ``SamPredictor`` that already holds one image's embedding: its ``set_image`` (which
    the automatic mask generator calls) records the sizes and keeps the given features
    instead of running the encoder again."""
    from segment_anything import SamPredictor

    class _PresetFeatures(SamPredictor):
        def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
            self.reset_image()
            self.original_size, self.input_size = original_size, input_size
            self.features = features
            self.is_image_set = True

    return _PresetFeatures(sam)


class SamProposer:
    """Key regions from the Segment Anything Model (module docstring).

    Per image: ``SamAutomaticMaskGenerator`` with ``points_per_side`` prompts per side, its
    ``pred_iou_thresh``, ``stability_score_thresh`` and box NMS (the package's defaults: 32,
    0.88, 0.95, 0.7); masks covering less than ``min_area`` or more than ``max_area`` of the
    image are dropped (tiny / near-whole-image); each remaining mask's box is scored by its
    predicted IoU and :func:`finalise_boxes` keeps the best ``keep``. The image encoder runs
    on ``batch_size`` images at a time.
    """

    name = "sam"
    version = "1"

    def __init__(self, sam: Any, *, keep: int = 3, min_area: float = 0.01, max_area: float = 0.8,
                 points_per_side: int = 32, pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                 batch_size: int = 8, model_type: str = "custom", checkpoint_sha256: str | None = None) -> None:
        require_segment_anything()
        self.sam = sam.eval()
        self.keep, self.min_area, self.max_area = int(keep), float(min_area), float(max_area)
        self.points_per_side, self.batch_size = int(points_per_side), int(batch_size)
        self.pred_iou_thresh, self.stability_score_thresh = float(pred_iou_thresh), float(stability_score_thresh)
        self.model_type, self.checkpoint_sha256 = model_type, checkpoint_sha256

    @classmethod
    def from_checkpoint(cls, path: str | Path, model_type: str | None = None, *, device: str = "cpu",
                        **settings: Any) -> "SamProposer":
        """Build the architecture of ``model_type`` (read from the file when None) and load the
        checkpoint's weights (torch files with ``weights_only=True``, or safetensors)."""
        from delbench_plugins.backbones.timm_mae import read_state_dict

        require_segment_anything()
        state = read_state_dict(path)
        model_type = model_type or sam_model_type(state)
        if model_type not in SAM_BUILDERS:
            raise ConfigError(f"unknown SAM model type {model_type!r}; one of {sorted(SAM_BUILDERS)}")
        sam = SAM_BUILDERS[model_type]()
        try:
            sam.load_state_dict(state)
        except RuntimeError as exc:
            raise ConfigError(f"SAM checkpoint {path} does not fit model type {model_type!r}: "
                              f"{str(exc).splitlines()[0]}") from None
        return cls(sam.to(device), model_type=model_type, checkpoint_sha256=file_sha256(path), **settings)

    def settings(self) -> dict[str, Any]:
        return {"proposer": self.name, "version": self.version, "model_type": self.model_type,
                "checkpoint_sha256": self.checkpoint_sha256, "keep": self.keep, "min_area": self.min_area,
                "max_area": self.max_area, "points_per_side": self.points_per_side,
                "pred_iou_thresh": self.pred_iou_thresh, "stability_score_thresh": self.stability_score_thresh}

    def propose(self, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch
        from segment_anything import SamAutomaticMaskGenerator
        from segment_anything.utils.transforms import ResizeLongestSide

        sam, out = self.sam, []
        device = next(sam.parameters()).device
        transform = ResizeLongestSide(sam.image_encoder.img_size)
        generator = SamAutomaticMaskGenerator(sam, points_per_side=self.points_per_side,
                                              pred_iou_thresh=self.pred_iou_thresh,
                                              stability_score_thresh=self.stability_score_thresh,
                                              box_nms_thresh=NMS_IOU, output_mode="uncompressed_rle")
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size]
            resized = [transform.apply_image(np.ascontiguousarray(image)) for image in batch]
            with torch.inference_mode():
                inputs = torch.cat([sam.preprocess(torch.as_tensor(r, device=device).permute(2, 0, 1)[None])
                                    for r in resized])
                features = sam.image_encoder(inputs)
            for number, image in enumerate(batch):
                height, width = image.shape[:2]
                generator.predictor = _preset_predictor(sam, features[number:number + 1], (height, width),
                                                        tuple(resized[number].shape[:2]))
                records = generator.generate(np.ascontiguousarray(image))
                boxes, scores = [], []
                for record in records:
                    x, y, w, h = record["bbox"]
                    if not self.min_area * height * width <= record["area"] <= self.max_area * height * width:
                        continue
                    boxes.append((x, y, x + max(w, 1), y + max(h, 1)))
                    scores.append(record["predicted_iou"])
                out.append(finalise_boxes(np.asarray(boxes).reshape(-1, 4), np.asarray(scores), height, width,
                                          self.keep, self.max_area))
        return out


# --- the cache --------------------------------------------------------------------------------
def settings_key(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


class ProposalCache:
    """Proposals per image on disk: ``<root>/<settings key>/<sha[:2]>/<sha>.npz`` holding
    ``boxes``, ``scores`` and the ``seconds`` computing them took (so a cached selection still
    reports what proposing cost). ``root`` None disables it."""

    def __init__(self, root: str | Path | None, settings: Mapping[str, Any]) -> None:
        self.directory = None if root is None else Path(root) / settings_key(settings)

    def _path(self, sha: str) -> Path:
        return self.directory / sha[:2] / f"{sha}.npz"

    def get(self, sha: str) -> tuple[np.ndarray, np.ndarray, float] | None:
        if self.directory is None or not self._path(sha).is_file():
            return None
        try:
            with np.load(self._path(sha), allow_pickle=False) as data:
                return data["boxes"].astype(np.int32), data["scores"].astype(np.float32), float(data["seconds"])
        except (OSError, ValueError, KeyError):  # a damaged entry is recomputed, never trusted
            return None

    def put(self, sha: str, boxes: np.ndarray, scores: np.ndarray, seconds: float) -> None:
        if self.directory is None:
            return
        path = self._path(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, boxes=boxes, scores=scores, seconds=np.float64(seconds))
        os.replace(tmp, path)


def propose_pool(proposer: Any, images_of: Callable[[int, int], np.ndarray], n: int, *, batch_size: int,
                 cache: ProposalCache, on_batch: Callable[[int, np.ndarray], None] | None = None
                 ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[str], dict[str, Any]]:
    """Proposals for pool items 0…n−1, read ``batch_size`` at a time through
    ``images_of(start, stop)``: cached ones from ``cache``, the rest batched through
    ``proposer``. ``on_batch(start, images)`` sees every batch (for other per-image work on
    the same pixels). Returns the proposals, each image's pixel sha256 and
    ``{"seconds", "cost_seconds", "cached_images"}`` (cost: the compute time of every image's
    proposals, cached or not)."""
    started = time.perf_counter()
    proposals: list[tuple[np.ndarray, np.ndarray]] = []
    shas: list[str] = []
    cost, cached = 0.0, 0
    for start in range(0, n, batch_size):
        images = np.asarray(images_of(start, min(n, start + batch_size)))
        if on_batch is not None:
            on_batch(start, images)
        batch_shas = [pixel_sha256(image) for image in images]
        found = [cache.get(sha) for sha in batch_shas]
        missing = [i for i, entry in enumerate(found) if entry is None]
        if missing:
            tick = time.perf_counter()
            fresh = proposer.propose(images[missing])
            each = (time.perf_counter() - tick) / len(missing)
            for i, (boxes, scores) in zip(missing, fresh):
                found[i] = (boxes, scores, each)
                cache.put(batch_shas[i], boxes, scores, each)
        cached += len(images) - len(missing)
        for boxes, scores, seconds in found:
            proposals.append((boxes, scores))
            cost += seconds
        shas += batch_shas
    return proposals, shas, {"seconds": time.perf_counter() - started, "cost_seconds": cost, "cached_images": cached}
