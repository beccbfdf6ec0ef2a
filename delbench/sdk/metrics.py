"""Metrics: segmentation scores, DEL / NormDEL and the embedding quality measure (numpy only).

Statistics over seeds live in :mod:`delbench.reports.stats`.

Definitions (hand-checked in tests/test_metrics.py):

- Segmentation scores are accumulated over the whole test set (one confusion matrix), not
  averaged per image. ``mIoU`` is the mean over classes *including background* of
  TP / (TP + FP + FN); ``Dice`` is 2·TP / (2·TP + FP + FN) of the foreground class(es).
  A class absent from both prediction and target has no IoU and is left out of the mean.
- ``DEL = score · exp(−α·R)`` and ``NormDEL = 1 / (1 + exp(−DEL))`` (MedDEL, arXiv
  2401.17542) with ``score`` a fraction in [0, 1] and ``R`` the retained fraction in (0, 1].
  Both return fractions; reports multiply by 100.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from delbench.errors import ConfigError


def _check_fraction(name: str, value: np.ndarray, low_open: bool = False) -> None:
    bad = ~np.isfinite(value) | (value > 1.0) | ((value <= 0.0) if low_open else (value < 0.0))
    if np.any(bad):
        bound = "(0, 1]" if low_open else "[0, 1]"
        raise ConfigError(f"{name} must be a fraction in {bound} (a percentage? divide by 100); "
                          f"got {np.asarray(value)[bad].ravel()[:3].tolist()}")


def del_score(score, ratio, alpha: float = 1.0):
    """DEL = score · exp(−alpha · ratio); vectorised over numpy arrays."""
    score_a, ratio_a = np.asarray(score, dtype=float), np.asarray(ratio, dtype=float)
    _check_fraction("score", score_a)
    _check_fraction("ratio", ratio_a, low_open=True)
    if not alpha > 0:
        raise ConfigError(f"alpha must be > 0, got {alpha}")
    value = score_a * np.exp(-alpha * ratio_a)
    return float(value) if value.ndim == 0 else value


def normdel(score, ratio, alpha: float = 1.0):
    """NormDEL = sigmoid(DEL): a fraction in (0.5, 0.7311] for scores in [0, 1]."""
    value = 1.0 / (1.0 + np.exp(-np.asarray(del_score(score, ratio, alpha), dtype=float)))
    return float(value) if value.ndim == 0 else value


def confusion_matrix(prediction: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """num_classes × num_classes counts, rows = target class, columns = predicted class."""
    prediction, target = np.asarray(prediction).ravel(), np.asarray(target).ravel()
    if prediction.shape != target.shape:
        raise ValueError(f"prediction and target sizes differ: {prediction.shape} vs {target.shape}")
    flat = target.astype(np.int64) * num_classes + prediction.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    tp = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over classes present in prediction or target, background included."""
    iou = iou_per_class(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0


def dice(confusion: np.ndarray, foreground: Sequence[int] | None = None) -> float:
    """Dice of the foreground classes (all but 0 by default), micro-averaged over the set."""
    classes = list(range(1, confusion.shape[0])) if foreground is None else list(foreground)
    tp = sum(confusion[c, c] for c in classes)
    fp = sum(confusion[:, c].sum() - confusion[c, c] for c in classes)
    fn = sum(confusion[c, :].sum() - confusion[c, c] for c in classes)
    denominator = 2 * tp + fp + fn
    return float(2 * tp / denominator) if denominator else 1.0


def scene_nn_agreement(embeddings: np.ndarray, groups: np.ndarray, *, queries: int = 2000, seed: int = 0,
                       chunk: int = 65536) -> float:
    """How often an item's nearest neighbour (cosine, itself excluded) has its group.

    The quality of the embeddings a selector sees, on a pool with planted scenes: 1.0 means
    every frame's closest frame shows the same scene, the chance level is about the share of
    the largest scene. Computed for ``queries`` items drawn with ``seed`` (all items if fewer)
    against the whole pool, in chunks of ``chunk`` pool items so memory stays bounded.
    """
    groups = np.asarray(groups)
    n = len(groups)
    if n < 2:
        return float("nan")
    picked = np.arange(n) if n <= queries else np.sort(np.random.default_rng(seed).choice(n, queries, replace=False))

    def unit(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float32)
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)

    q = unit(embeddings[picked])
    best = np.full(len(picked), -np.inf, np.float32)
    nearest = np.zeros(len(picked), np.int64)
    for start in range(0, n, chunk):
        similarity = q @ unit(embeddings[start:start + chunk]).T
        own = (picked >= start) & (picked < start + chunk)
        similarity[np.flatnonzero(own), picked[own] - start] = -np.inf
        column = similarity.argmax(1)
        value = similarity[np.arange(len(picked)), column]
        better = value > best
        best[better], nearest[better] = value[better], column[better] + start
    return float(np.mean(groups[nearest] == groups[picked]))
