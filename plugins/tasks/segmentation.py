"""The ``segmentation`` task: an MLP head on the encoder's patch tokens, upsampled to the mask.

The MedDEL protocol fine-tunes "a simple MLP head" on the pre-trained encoder and reports mIoU.
Here the head is Linear → GELU → Linear applied to every patch token; the token grid of logits
is bilinearly upsampled to the mask size and trained with cross-entropy. ``freeze_encoder``
(default true) trains the head only, which keeps the score sensitive to what pre-training
learned; set it false to fine-tune the encoder too (``encoder_lr``). Scores: mIoU (mean over
classes including background, accumulated over the test set) and foreground Dice; see
:mod:`delbench.metrics`.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from delbench.errors import ConfigError, DatasetError
from delbench.hookspecs import hookimpl
from delbench.interfaces import Backbone, Dataset, Task
from delbench.metrics import confusion_matrix, dice, mean_iou
from delbench.params import check_bool, check_int, check_number


class Segmentation(Task):
    """MLP-head semantic segmentation on patch tokens; metric mIoU (also Dice)."""

    name = "segmentation"
    version = "1"
    description = "MLP head on ViT patch tokens, upsampled to the mask; mIoU (with background) and Dice"
    metric = "mIoU"
    higher_is_better = True
    dataset_role = "segmentation"

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        check_int(params, "epochs", 1)
        check_int(params, "batch_size", 1)
        check_number(params, "lr", 0.0, None, low_open=True)
        check_number(params, "encoder_lr", 0.0)
        check_number(params, "weight_decay", 0.0)
        check_int(params, "hidden_dim", 1)
        check_bool(params, "freeze_encoder")
        check_int(params, "num_classes", 2, allow_none=True)
        check_bool(params, "progress")

    def __init__(self, *, epochs: int = 10, batch_size: int = 32, lr: float = 1e-3,
                 encoder_lr: float = 1e-5, weight_decay: float = 1e-4, hidden_dim: int = 256,
                 freeze_encoder: bool = True, num_classes: int | None = None, progress: bool = False) -> None:
        self.epochs, self.batch_size, self.lr, self.encoder_lr = int(epochs), int(batch_size), float(lr), float(encoder_lr)
        self.weight_decay, self.hidden_dim = float(weight_decay), int(hidden_dim)
        self.freeze_encoder, self.num_classes, self.progress = bool(freeze_encoder), num_classes, progress
        self.head = None

    @staticmethod
    def _load(dataset: Dataset, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        items = [dataset[int(i)] for i in indices]
        if any("mask" not in item for item in items):
            raise DatasetError(f"dataset {getattr(dataset, 'name', dataset)!r} has no masks: "
                               f"segmentation needs a dataset with the 'segmentation' role")
        return np.stack([it["image"] for it in items]), np.stack([it["mask"] for it in items])

    def _logits(self, backbone: Backbone, images: np.ndarray, mask_shape: tuple[int, int]):
        import torch.nn.functional as F

        tokens = backbone.patch_tokens(backbone.preprocess(images))
        gh, gw = backbone.grid_size
        logits = self.head(tokens).transpose(1, 2).reshape(len(images), -1, gh, gw)
        return F.interpolate(logits, size=mask_shape, mode="bilinear", align_corners=False)

    def fit(self, backbone: Backbone, train: Dataset, *, seed: int) -> dict[str, Any]:
        import torch
        from torch import nn
        from tqdm.auto import tqdm

        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        classes = self.num_classes or train.num_classes or 2  # binary unless the dataset names more
        head = nn.Sequential(nn.Linear(backbone.embed_dim, self.hidden_dim), nn.GELU(),
                             nn.Linear(self.hidden_dim, classes))
        n = len(train)
        if n == 0:
            raise DatasetError("segmentation: the training split is empty")
        images_all, masks_all = self._load(train, np.arange(n))  # small downstream sets fit in memory
        encoder = backbone.encoder
        previous_grad = {name: p.requires_grad for name, p in encoder.named_parameters()}
        try:
            encoder.requires_grad_(not self.freeze_encoder)
            # the head lives with the encoder's weights (CPU or GPU), where its tokens come out
            self.head = head.to(next(encoder.parameters()).device)
            groups = [{"params": self.head.parameters(), "lr": self.lr}]
            if not self.freeze_encoder:
                groups.append({"params": encoder.parameters(), "lr": self.encoder_lr})
            optimizer = torch.optim.AdamW(groups, weight_decay=self.weight_decay)
            encoder.train(not self.freeze_encoder)
            losses = []
            steps = self.epochs * -(-n // self.batch_size)
            bar = tqdm(total=steps, desc="segmentation", disable=not self.progress, leave=False)
            for _ in range(self.epochs):
                order = rng.permutation(n)
                for start in range(0, n, self.batch_size):
                    batch = order[start:start + self.batch_size]
                    images, masks = images_all[batch], masks_all[batch]
                    flip = rng.random(len(batch)) < 0.5
                    images[flip], masks[flip] = images[flip, :, ::-1], masks[flip, :, ::-1]
                    logits = self._logits(backbone, images, masks.shape[1:])
                    targets = torch.from_numpy(masks.astype(np.int64)).to(logits.device)
                    loss = nn.functional.cross_entropy(logits, targets)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    losses.append(float(loss.detach()))
                    bar.update(1)
            bar.close()
        finally:
            for name, param in encoder.named_parameters():
                param.requires_grad_(previous_grad[name])
            encoder.eval()
        return {"train_loss_first": losses[0], "train_loss_last": losses[-1], "steps": steps}

    def evaluate(self, backbone: Backbone, test: Dataset) -> dict[str, float]:
        import torch

        if self.head is None:
            raise ConfigError("segmentation: call fit() before evaluate()")
        classes = self.head[-1].out_features
        confusion = np.zeros((classes, classes), dtype=np.int64)
        self.head.eval()
        with torch.inference_mode():
            for start in range(0, len(test), self.batch_size):
                images, masks = self._load(test, np.arange(start, min(len(test), start + self.batch_size)))
                prediction = self._logits(backbone, images, masks.shape[1:]).argmax(1).cpu().numpy()
                confusion += confusion_matrix(prediction, masks, classes)
        return {"mIoU": mean_iou(confusion), "Dice": dice(confusion)}


@hookimpl
def delbench_register_tasks() -> list[type]:
    return [Segmentation]
