"""The ``classification`` task: linear probe or fine-tuning on a backbone's patch tokens.

Image features are the mean of the encoder's patch tokens,
``backbone.patch_tokens(backbone.preprocess(images)).mean(1)``, as in the MAE paper's
evaluation of ViT encoders (He et al., CVPR 2022). Two modes:

``linear_probe``
    The backbone is frozen; features are computed once, standardised with the training
    features' mean and standard deviation (the role of MAE's affine-free BatchNorm before the
    linear classifier), and a linear layer is trained with AdamW and cross-entropy.
``fine_tune``
    A copy of the backbone is trained end to end with a linear head (AdamW, cross-entropy);
    the caller's backbone is never modified. Needs ``backbone.encoder`` (a torch module).

``label_fraction`` (e.g. 0.01, 0.1, 1.0) trains on a seeded, class-stratified subsample of
the training split with at least one image per class — the label-efficiency curves of the
data-effective-learning literature. Metrics, as fractions: ``accuracy`` and ``macro_f1``
(the mean of per-class F1 over the classes present in the labels or the predictions, which
is scikit-learn's ``f1_score(average="macro")``).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import numpy as np

from delbench.sdk import (Backbone, ConfigError, Dataset, DatasetError, DelbenchError, Task, check_bool, check_choice,
                          check_int, check_number, hookimpl)

MODES = ("linear_probe", "fine_tune")
#: defaults by mode when lr / weight_decay are not given (our protocol choices)
DEFAULT_LR = {"linear_probe": 1e-3, "fine_tune": 1e-4}
DEFAULT_WEIGHT_DECAY = {"linear_probe": 0.0, "fine_tune": 0.05}


def stratified_subsample(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded per-class subsample: ``max(1, round(fraction × n_c))`` of class c."""
    labels = np.asarray(labels)
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"label_fraction must be in (0, 1], got {fraction!r}")
    if fraction == 1.0:
        return np.arange(labels.size, dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        k = max(1, int(math.floor(fraction * members.size + 0.5)))
        chosen.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean F1 over the classes present in ``y_true`` or ``y_pred`` (0 where a class has no hit)."""
    classes = np.union1d(y_true, y_pred)
    scores = []
    for cls in classes:
        tp = int(np.sum((y_pred == cls) & (y_true == cls)))
        fp = int(np.sum((y_pred == cls) & (y_true != cls)))
        fn = int(np.sum((y_pred != cls) & (y_true == cls)))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def _set_train(backbone: Backbone, training: bool) -> bool | None:
    """Switch ``backbone.encoder`` (when it is a torch module) to train/eval; return the old mode."""
    encoder = getattr(backbone, "encoder", None)
    if encoder is None or not hasattr(encoder, "train"):
        return None
    previous = bool(encoder.training)
    encoder.train(training)
    return previous


def pooled_features(backbone: Backbone, images: np.ndarray):
    """Mean-pooled patch tokens (B, D) of uint8 images (B, H, W, 3), with autograd as the caller sets."""
    tokens = backbone.patch_tokens(backbone.preprocess(images))
    if tokens.ndim != 3:
        raise DelbenchError(f"backbone.patch_tokens must return (B, N, D), got shape {tuple(tokens.shape)}")
    return tokens.mean(dim=1)


class Classification(Task):
    """Image classification head on mean-pooled patch tokens; linear probe or fine-tune.

    Parameters: ``mode`` ("linear_probe" or "fine_tune"), ``label_fraction`` (share of the
    training labels used, stratified, ≥ 1 per class), ``epochs``, ``lr`` (default 1e-3 for
    the probe, 1e-4 for fine-tuning), ``weight_decay`` (default 0 / 0.05), ``batch_size``
    (training and feature extraction), ``progress`` (tqdm bars).
    """

    name = "classification"
    version = "1"
    description = "Image classification (linear probe or fine-tune) on mean-pooled patch tokens; accuracy, macro-F1"
    metric = "accuracy"
    higher_is_better = True
    dataset_role = "classification"
    metrics = ("accuracy", "macro_f1")

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        check_choice(params, "mode", MODES)
        check_number(params, "label_fraction", 0.0, 1.0, low_open=True)
        check_int(params, "epochs", 1)
        check_int(params, "batch_size", 1)
        check_number(params, "lr", 0.0, None, low_open=True, allow_none=True)
        check_number(params, "weight_decay", 0.0, allow_none=True)
        check_bool(params, "progress")

    def __init__(self, *, mode: str = "linear_probe", label_fraction: float = 1.0, epochs: int = 10,
                 lr: float | None = None, weight_decay: float | None = None, batch_size: int = 32,
                 progress: bool = False) -> None:
        self.mode = mode
        self.label_fraction = float(label_fraction)
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.lr = float(DEFAULT_LR[mode] if lr is None else lr)
        self.weight_decay = float(DEFAULT_WEIGHT_DECAY[mode] if weight_decay is None else weight_decay)
        self.progress = bool(progress)
        self._head = None
        self._model: Backbone | None = None  # the fine-tuned copy
        self._feature_stats = None
        self._class_names: tuple[str, ...] = ()
        self._num_classes = 0

    # --- features ------------------------------------------------------------------------
    def _extract(self, backbone: Backbone, dataset: Dataset, indices: np.ndarray):
        import torch
        from tqdm.auto import tqdm

        previous = _set_train(backbone, False)
        chunks = []
        try:
            with torch.no_grad():
                starts = range(0, len(indices), self.batch_size)
                for start in tqdm(starts, desc="features", disable=not self.progress, leave=False):
                    images = dataset.load_images(indices[start:start + self.batch_size])
                    # CPU float32 whatever the backbone's device: the probe head and the feature
                    # statistics live on the CPU, and GPU memory is not held for the whole split
                    chunks.append(pooled_features(backbone, images).float().cpu())
        finally:
            if previous is not None:
                _set_train(backbone, previous)
        return torch.cat(chunks) if chunks else torch.zeros(0, 0)

    # --- the Task contract -----------------------------------------------------------------
    def fit(self, backbone: Backbone, train: Dataset, *, seed: int) -> dict[str, Any]:
        import torch

        labels = np.asarray(train.labels(), dtype=np.int64)
        if labels.size == 0:
            raise DatasetError("classification: the training split is empty")
        if (labels < 0).any():
            raise DatasetError("classification: the training split has unlabelled items (label −1)")
        names = tuple(train.class_names)
        self._class_names = names
        self._num_classes = len(names) if names else int(labels.max()) + 1
        chosen = stratified_subsample(labels, self.label_fraction, seed)
        targets = torch.as_tensor(labels[chosen])
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        history = (self._fit_probe if self.mode == "linear_probe" else self._fit_finetune)(
            backbone, train, chosen, targets, rng)
        return {"mode": self.mode, "n_train": int(labels.size), "n_labelled": int(chosen.size),
                "label_fraction": self.label_fraction, "num_classes": self._num_classes,
                "epochs": self.epochs, "loss": history}

    def _batches(self, n: int, rng: np.random.Generator):
        order = rng.permutation(n)
        return [order[s:s + self.batch_size] for s in range(0, n, self.batch_size)]

    def _fit_probe(self, backbone, train, chosen, targets, rng) -> list[float]:
        import torch
        from torch import nn

        features = self._extract(backbone, train, chosen)
        mean, std = features.mean(0), features.std(0, unbiased=False) + 1e-6
        self._feature_stats = (mean, std)
        features = (features - mean) / std
        head = nn.Linear(features.shape[1], self._num_classes)
        opt = torch.optim.AdamW(head.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        targets = targets.to(features.device)
        history = []
        for _ in range(self.epochs):
            losses = []
            for batch in self._batches(len(features), rng):
                loss = nn.functional.cross_entropy(head(features[batch]), targets[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            history.append(float(np.mean(losses)))
        self._head = head.eval()
        return history

    def _fit_finetune(self, backbone, train, chosen, targets, rng) -> list[float]:
        import torch
        from torch import nn
        from tqdm.auto import tqdm

        encoder = getattr(backbone, "encoder", None)
        if encoder is None or not hasattr(encoder, "parameters"):
            raise ConfigError("classification: mode 'fine_tune' needs a backbone with an 'encoder' torch module")
        model = copy.deepcopy(backbone)  # the caller's backbone stays as it was
        params = list(model.encoder.parameters())
        device = params[0].device if params else torch.device("cpu")
        head = nn.Linear(int(model.embed_dim), self._num_classes).to(device)
        opt = torch.optim.AdamW(params + list(head.parameters()), lr=self.lr, weight_decay=self.weight_decay)
        targets = targets.to(device)
        history = []
        model.encoder.train(True)
        for epoch in tqdm(range(self.epochs), desc="fine-tune", disable=not self.progress, leave=False):
            losses = []
            for batch in self._batches(len(chosen), rng):
                batch = np.sort(batch)
                images = train.load_images(chosen[batch])
                logits = head(pooled_features(model, images))
                loss = nn.functional.cross_entropy(logits, targets[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            history.append(float(np.mean(losses)))
        model.encoder.train(False)
        self._model, self._head = model, head.eval()
        return history

    def predict(self, backbone: Backbone, dataset: Dataset) -> np.ndarray:
        """Predicted class index per item of ``dataset`` (after :meth:`fit`)."""
        import torch

        if self._head is None:
            raise DelbenchError("classification: call fit() before evaluate()/predict()")
        model = self._model if self.mode == "fine_tune" else backbone
        features = self._extract(model, dataset, np.arange(len(dataset), dtype=np.int64))
        if self._feature_stats is not None:
            mean, std = self._feature_stats
            features = (features - mean) / std
        with torch.no_grad():
            logits = self._head(features.to(next(self._head.parameters()).device))
        return logits.argmax(dim=1).cpu().numpy().astype(np.int64)

    def evaluate(self, backbone: Backbone, test: Dataset) -> dict[str, float]:
        labels = np.asarray(test.labels(), dtype=np.int64)
        names = tuple(test.class_names)
        if names and self._class_names and names != self._class_names:
            raise DatasetError(f"classification: test classes {names} differ from training classes "
                               f"{self._class_names}")
        if (labels < 0).any():
            raise DatasetError("classification: the test split has unlabelled items (label −1)")
        if labels.size == 0:
            raise DatasetError("classification: the test split is empty")
        predicted = self.predict(backbone, test)
        return {"accuracy": float(np.mean(predicted == labels)), "macro_f1": macro_f1(labels, predicted)}


@hookimpl
def delbench_register_tasks() -> list[type]:
    return [Classification]
