"""The ``segmentation`` task: a head on the encoder's patch tokens, upsampled to the mask.

Three heads (``head``):

- ``'mlp'`` (default; the MedDEL protocol fine-tunes "a simple MLP head" and reports mIoU):
  Linear → GELU → Linear on every patch token; the token grid of logits is bilinearly
  upsampled to the mask size and trained with cross-entropy. ``freeze_encoder`` (default true)
  trains the head only; set it false to fine-tune the encoder too (``encoder_lr``).
- ``'knn'``: a frozen-encoder dense k-nearest-neighbour probe with nothing trained. Every
  training patch token is labelled with the class shares of the mask pixels under it; a test
  token takes the mean label of its ``k`` nearest training tokens (cosine similarity after
  per-channel standardisation with the training tokens' mean and std, as MAE's linear probe
  normalises features); the grid of class shares is bilinearly upsampled and the argmax is the
  prediction. It measures what pre-training put into the tokens rather than what a trained
  head or fine-tuning can recover, and it is deterministic. On the embedded CPU protocols it
  is the probe that separated the best subsets from random ones; it does not separate random
  from the worst (docs/findings.md).
- ``'linear'``: the frozen-encoder linear probe of self-supervised learning (MAE, DINO and
  their successors report one), per patch token. Every training token is labelled with the
  class that holds most of the mask pixels under it; a multinomial logistic regression on the
  tokens standardised with the training tokens' mean and std, each class weighted to half
  (``1 / (classes · share)``, as scikit-learn's ``class_weight='balanced'``; polyps cover a
  small share of the pixels) with an L2 penalty ``1 / (2 · c · n_tokens)`` on the weights, is
  fitted by full-batch L-BFGS from zero weights (``iters`` iterations, strong-Wolfe line
  search): deterministic, and a few seconds on a CPU. The grid of class probabilities is
  bilinearly upsampled and the argmax is the prediction. It reads what is linearly
  decodable from the tokens, which a random encoder's mostly colour-coded tokens lack and
  pre-training adds (docs/findings.md).

Scores: mIoU (mean over classes including background, accumulated over the test set) and
foreground Dice; see :mod:`delbench.sdk.metrics`.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from delbench.sdk import (Backbone, ConfigError, Dataset, DatasetError, Task, check_bool, check_choice, check_int,
                          check_number, confusion_matrix, dice, hookimpl, mean_iou)


class Segmentation(Task):
    """Semantic segmentation on patch tokens (MLP head, frozen linear or kNN probe); metric mIoU (also Dice)."""

    name = "segmentation"
    # 2: the 'linear' head (the other heads score as in version 1)
    version = "2"
    description = ("MLP head (or frozen linear or dense kNN probe) on ViT patch tokens, upsampled to the mask; "
                   "mIoU (with background) and Dice")
    heads = ("mlp", "knn", "linear")
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
        check_choice(params, "head", cls.heads)
        check_int(params, "k", 1)
        check_int(params, "max_bank_tokens", 1)
        check_number(params, "c", 0.0, None, low_open=True)
        check_int(params, "iters", 1)
        if params.get("head") in ("knn", "linear") and params.get("freeze_encoder") is False:
            raise ConfigError(f"freeze_encoder: the {params['head']!r} head reads a frozen encoder; "
                              "remove freeze_encoder=False or use head='mlp'")

    def __init__(self, *, epochs: int = 10, batch_size: int = 32, lr: float = 1e-3,
                 encoder_lr: float = 1e-5, weight_decay: float = 1e-4, hidden_dim: int = 256,
                 freeze_encoder: bool = True, num_classes: int | None = None, progress: bool = False,
                 head: str = "mlp", k: int = 20, max_bank_tokens: int = 262_144, c: float = 1.0,
                 iters: int = 100) -> None:
        self.epochs, self.batch_size, self.lr, self.encoder_lr = int(epochs), int(batch_size), float(lr), float(encoder_lr)
        self.weight_decay, self.hidden_dim = float(weight_decay), int(hidden_dim)
        self.freeze_encoder, self.num_classes, self.progress = bool(freeze_encoder), num_classes, progress
        self.head_kind, self.k, self.max_bank_tokens = head, int(k), int(max_bank_tokens)
        self.c, self.iters = float(c), int(iters)
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
        if len(train) == 0:
            raise DatasetError("segmentation: the training split is empty")
        if self.head_kind in _PROBES:
            self.head = _PROBES[self.head_kind].fit(self, backbone, train, seed=seed)
            return self.head.statistics
        return self._fit_mlp(backbone, train, seed=seed)

    def _fit_mlp(self, backbone: Backbone, train: Dataset, *, seed: int) -> dict[str, Any]:
        import torch
        from torch import nn
        from tqdm.auto import tqdm

        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        classes = self.num_classes or train.num_classes or 2  # binary unless the dataset names more
        head = nn.Sequential(nn.Linear(backbone.embed_dim, self.hidden_dim), nn.GELU(),
                             nn.Linear(self.hidden_dim, classes))
        n = len(train)
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
        # per-pixel class scores (B, classes, H, W) of any head; the argmax is the prediction
        if isinstance(self.head, _FrozenProbe):
            classes, class_scores = self.head.classes, self.head.class_shares
        else:
            self.head.eval()
            classes, class_scores = self.head[-1].out_features, self._logits
        confusion = np.zeros((classes, classes), dtype=np.int64)
        with torch.inference_mode():
            for start in range(0, len(test), self.batch_size):
                images, masks = self._load(test, np.arange(start, min(len(test), start + self.batch_size)))
                scores = class_scores(backbone, images, masks.shape[1:])
                confusion += confusion_matrix(scores.argmax(1).cpu().numpy(), masks, classes)
        return {"mIoU": mean_iou(confusion), "Dice": dice(confusion)}


class _FrozenProbe:
    """What the heads that read a frozen encoder share: the training split's tokens with the
    class shares of the mask pixels under each, and per-pixel class scores for test images."""

    classes: int
    statistics: dict[str, Any]

    @staticmethod
    def training_tokens(task: Segmentation, backbone: Backbone, train: Dataset):
        """``(tokens, shares, classes)``: every training patch token (float, n × d) and the
        share of each class among the mask pixels under it (n × classes)."""
        import torch

        classes = task.num_classes or train.num_classes or 2
        tokens, labels = [], []
        with torch.inference_mode():
            for start in range(0, len(train), task.batch_size):
                images, masks = task._load(train, np.arange(start, min(len(train), start + task.batch_size)))
                batch = backbone.patch_tokens(backbone.preprocess(images)).float()
                tokens.append(batch.reshape(-1, batch.shape[-1]))
                labels.append(_token_class_shares(masks, classes, backbone.grid_size, batch.device))
        return torch.cat(tokens), torch.cat(labels), classes

    def token_scores(self, tokens):
        """Class scores (n × classes) of ``tokens`` (n × d)."""
        raise NotImplementedError

    def class_shares(self, backbone: Backbone, images: np.ndarray, mask_shape: tuple[int, int]):
        """Class scores per pixel (B, classes, H, W): each token's, upsampled."""
        import torch.nn.functional as F

        tokens = backbone.patch_tokens(backbone.preprocess(images)).float()
        scores = self.token_scores(tokens.reshape(-1, tokens.shape[-1]))
        gh, gw = backbone.grid_size
        scores = scores.reshape(len(images), gh, gw, self.classes).permute(0, 3, 1, 2)
        return F.interpolate(scores, size=mask_shape, mode="bilinear", align_corners=False)


class _LinearHead(_FrozenProbe):
    """The ``'linear'`` head: class-balanced multinomial logistic regression on standardised
    tokens, fitted by full-batch L-BFGS from zero weights (see the module docstring)."""

    def __init__(self, linear, mean, std, classes: int, statistics: dict[str, Any]) -> None:
        self.linear, self.mean, self.std, self.classes, self.statistics = linear, mean, std, classes, statistics

    @classmethod
    def fit(cls, task: Segmentation, backbone: Backbone, train: Dataset, *, seed: int) -> "_LinearHead":
        import torch

        tokens, shares, classes = cls.training_tokens(task, backbone, train)
        mean, std = tokens.mean(0), tokens.std(0) + 1e-6
        features = (tokens - mean) / std
        target = shares.argmax(1)  # the class holding most of the token's pixels
        counts = torch.bincount(target, minlength=classes).float()
        # scikit-learn's 'balanced': n / (classes · count) per sample of a class; absent classes weigh 0
        weights = torch.where(counts > 0, len(target) / (classes * counts.clamp(min=1)), torch.zeros_like(counts))
        sample_weight = weights[target]
        linear = torch.nn.Linear(features.shape[1], classes).to(features.device)
        torch.nn.init.zeros_(linear.weight)
        torch.nn.init.zeros_(linear.bias)
        penalty = 0.5 / (task.c * len(features))
        optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=task.iters, history_size=20,
                                      line_search_fn="strong_wolfe")

        def objective():
            loss = (torch.nn.functional.cross_entropy(linear(features), target, reduction="none") * sample_weight).mean()
            return loss + penalty * (linear.weight ** 2).sum()

        def closure():
            optimizer.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        linear.requires_grad_(False)
        with torch.no_grad():
            loss = float(objective())
        return cls(linear, mean, std, classes, {"head": "linear", "c": task.c, "iters": task.iters,
                                                "train_tokens": len(features), "train_loss": loss})

    def token_scores(self, tokens):
        import torch

        return torch.softmax(self.linear((tokens - self.mean) / self.std), dim=1)


class _KnnHead(_FrozenProbe):
    """The ``'knn'`` head: a bank of standardised, L2-normalised training tokens with their
    class shares (see the module docstring). Nothing is trained, so it is deterministic; the
    bank is a seeded sample of ``max_bank_tokens`` tokens when the training split has more."""

    def __init__(self, bank, labels, mean, std, k: int, classes: int, statistics: dict[str, Any]) -> None:
        self.bank, self.labels, self.mean, self.std = bank, labels, mean, std
        self.k, self.classes, self.statistics = k, classes, statistics

    @classmethod
    def fit(cls, task: Segmentation, backbone: Backbone, train: Dataset, *, seed: int) -> "_KnnHead":
        import torch
        import torch.nn.functional as F

        tokens, labels, classes = cls.training_tokens(task, backbone, train)
        n_tokens = len(tokens)
        if n_tokens > task.max_bank_tokens:
            keep = np.sort(np.random.default_rng(seed).choice(n_tokens, task.max_bank_tokens, replace=False))
            keep = torch.from_numpy(keep).to(tokens.device)
            tokens, labels = tokens[keep], labels[keep]
        mean, std = tokens.mean(0), tokens.std(0) + 1e-6
        bank = F.normalize((tokens - mean) / std, dim=1)
        k = min(task.k, len(bank))
        return cls(bank, labels, mean, std, k, classes,
                   {"head": "knn", "k": k, "bank_tokens": len(bank), "train_tokens": n_tokens})

    def token_scores(self, tokens):
        """The kNN vote per token: the mean class shares of its ``k`` nearest training tokens."""
        import torch
        import torch.nn.functional as F

        queries = F.normalize((tokens - self.mean) / self.std, dim=1)
        votes = []
        for start in range(0, len(queries), 4096):  # bounds the similarity matrix's memory
            nearest = (queries[start:start + 4096] @ self.bank.T).topk(self.k, dim=1).indices
            votes.append(self.labels[nearest].mean(1))
        return torch.cat(votes)


#: the heads that read a frozen encoder, by ``head`` name
_PROBES = {"knn": _KnnHead, "linear": _LinearHead}


def _token_class_shares(masks: np.ndarray, classes: int, grid: tuple[int, int], device):
    """The share of each class among the mask pixels under each patch token: (B·gh·gw, classes)."""
    import torch
    import torch.nn.functional as F

    one_hot = F.one_hot(torch.from_numpy(masks.astype(np.int64)), classes).permute(0, 3, 1, 2).float()
    shares = F.adaptive_avg_pool2d(one_hot, grid)  # exact area shares when the mask divides evenly
    return shares.permute(0, 2, 3, 1).reshape(-1, classes).to(device)


@hookimpl
def delbench_register_tasks() -> list[type]:
    return [Segmentation]
