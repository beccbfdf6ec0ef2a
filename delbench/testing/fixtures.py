"""What the contract checks feed a plugin: small in-memory datasets, embeddings and backbones.

Everything here is built from numpy (and torch, imported inside :class:`TinyBackbone` only),
so a third-party suite can use it without any built-in plugin; only
:func:`make_contract_pool` renders frames with the built-in ``synthetic_endoscopy`` generator,
imported when it is called.
"""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from delbench.sdk.contracts import Backbone, Dataset


class InMemoryDataset(Dataset):
    """A tiny dataset held in memory: uint8 images (n, H, W, 3), ids, and optional masks
    (n, H, W) in {0, 1}, labels (n,) and metadata columns."""

    name = "in_memory"
    description = "in-memory dataset used by delbench.testing"
    roles = ("pool", "segmentation", "classification")
    splits = ("all", "train", "test")

    def __init__(self, images: np.ndarray, ids: Sequence[str] | None = None, *,
                 metadata: Mapping[str, np.ndarray] | None = None, masks: np.ndarray | None = None,
                 labels: np.ndarray | None = None, class_names: Sequence[str] = ()) -> None:
        self.images = images
        self.ids = list(ids) if ids is not None else [f"item{i:05d}" for i in range(len(images))]
        self._metadata = dict(metadata or {})
        self.masks, self._labels = masks, labels
        self.class_names = tuple(class_names)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= int(index) < len(self):
            raise IndexError(f"{self.name}: index {index} out of range [0, {len(self)})")
        item = {"image": self.images[int(index)], "id": self.ids[int(index)]}
        if self.masks is not None:
            item["mask"] = self.masks[int(index)]
        if self._labels is not None:
            item["label"] = int(self._labels[int(index)])
        return item

    def item_id(self, index: int) -> str:
        return self.ids[int(index)]

    def item_ids(self) -> list[str]:
        return list(self.ids)

    def labels(self) -> np.ndarray:
        if self._labels is None:
            return np.full(len(self), -1, np.int64)
        return np.asarray(self._labels, dtype=np.int64)

    def metadata(self) -> dict[str, np.ndarray]:
        return dict(self._metadata)

    def load_images(self, indices: np.ndarray) -> np.ndarray:
        return self.images[np.asarray(indices, dtype=np.int64)]


class PoolView(Dataset):
    """Items ``indices`` of another pool (repeats allowed), metadata sliced to match."""

    name = "contract_pool_view"

    def __init__(self, pool: Any, indices: np.ndarray) -> None:
        self.pool = pool
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= int(index) < len(self):
            raise IndexError(f"{self.name}: index {index} out of range [0, {len(self)})")
        item = dict(self.pool[int(self.indices[int(index)])])
        item["id"] = f"{item.get('id', '')}#{index}"  # repeats stay distinguishable
        return item

    def metadata(self) -> dict[str, np.ndarray]:
        return {key: np.asarray(column)[self.indices] for key, column in self.pool.metadata().items()}

    def load_images(self, indices: np.ndarray) -> np.ndarray:
        return self.pool.load_images(self.indices[np.asarray(indices, dtype=np.int64)])


def clustered_embeddings(scene: np.ndarray, invalid: np.ndarray, *, dim: int = 16,
                         seed: int = 0) -> np.ndarray:
    """float32 embeddings with one tight cluster per scene and scattered invalid items."""
    rng = np.random.default_rng(seed)
    scene = np.asarray(scene)
    _, scene_code = np.unique(scene, return_inverse=True)
    centres = rng.normal(size=(int(scene_code.max(initial=-1)) + 1, dim))
    embeddings = centres[scene_code.reshape(-1)] + 0.15 * rng.normal(size=(scene.size, dim))
    embeddings[invalid] = 1.5 * rng.normal(size=(int(np.count_nonzero(invalid)), dim))
    return embeddings.astype(np.float32)


@functools.lru_cache(maxsize=4)
def make_contract_pool(num_frames: int = 120, image_size: int = 16, seed: int = 0) -> tuple[InMemoryDataset, np.ndarray]:
    """The default pool and embeddings of the selector checks (cached; treat them as read-only)."""
    from delbench_plugins.datasets.synthetic import SyntheticEndoscopy  # the built-in generator

    source = SyntheticEndoscopy(num_frames=num_frames, image_size=image_size, frames_per_sequence=30,
                                scene_length=6, invalid_fraction=0.3, seed=seed)
    metadata = source.metadata()
    images = np.stack([source[i]["image"] for i in range(num_frames)]) if num_frames else \
        np.zeros((0, image_size, image_size, 3), np.uint8)
    pool = InMemoryDataset(images, source.item_ids(), metadata=metadata)
    embeddings = clustered_embeddings(metadata["scene_id"], metadata["kind"] == "invalid", seed=seed)
    # read-only like the runner's memory-mapped cache: a selector must not write into its input
    images.flags.writeable = False
    embeddings.flags.writeable = False
    return pool, embeddings


def make_segmentation_set(n: int = 16, image_size: int = 32, seed: int = 0) -> InMemoryDataset:
    """Noisy images with one bright disc each; the mask is the disc (2 classes)."""
    rng = np.random.default_rng([seed, 0x5E6])
    yy, xx = np.mgrid[:image_size, :image_size]
    images = rng.integers(40, 120, (n, image_size, image_size, 3)).astype(np.uint8)
    masks = np.zeros((n, image_size, image_size), np.uint8)
    for i in range(n):
        cy, cx = rng.integers(image_size // 4, 3 * image_size // 4, size=2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (image_size // 5) ** 2
        masks[i][disc] = 1
        images[i][disc] = 220
    return InMemoryDataset(images, [f"seg{seed}/{i:04d}" for i in range(n)], masks=masks,
                           class_names=("background", "foreground"))


def make_classification_set(n: int = 18, image_size: int = 32, seed: int = 0) -> InMemoryDataset:
    """Three classes of noisy uniform colour (red, green, blue), labels 0, 1, 2 in turn."""
    rng = np.random.default_rng([seed, 0xC1A])
    labels = np.arange(n) % 3
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]])
    images = np.clip(colours[labels][:, None, None, :] + rng.normal(0, 12, (n, image_size, image_size, 3)),
                     0, 255).astype(np.uint8)
    return InMemoryDataset(images, [f"cls{seed}/{i:04d}" for i in range(n)], labels=labels,
                           class_names=("red", "green", "blue"))


class FakeBackbone:
    """What a ``requires_backbone`` selector receives in the checks instead of a trained model.

    ``reconstruction_loss(images, *, seed)`` returns one float32 per image: its pixel
    standard deviation scaled to [0, 1] plus a small seeded perturbation (so it varies with
    the image and, slightly, with the seed, like a masked-autoencoder loss).
    ``embed(images)`` returns a float32 (B, 12) colour/brightness summary.
    """

    name = "fake_backbone"

    def reconstruction_loss(self, images: np.ndarray, *, seed: int) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        spread = images.reshape(images.shape[0], -1).std(axis=1) / 128.0
        noise = np.random.default_rng(seed).uniform(0.0, 1e-3, size=images.shape[0])
        return (spread + noise).astype(np.float32)

    def embed(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32) / 255.0
        means = images.mean(axis=(1, 2))
        stds = images.std(axis=(1, 2))
        quarter = images[:, : images.shape[1] // 2, : images.shape[2] // 2].mean(axis=(1, 2))
        return np.concatenate([means, stds, quarter, means ** 2], axis=1).astype(np.float32)


class TinyBackbone(Backbone):
    """A backbone small enough to train in a test: a strided convolution cuts the image into
    ``patch_size`` patches (tokens of width ``embed_dim``), a linear decoder predicts each
    masked patch's pixels from its token. What :func:`delbench.testing.check_task` trains
    heads on; it implements every member of :class:`delbench.sdk.Backbone`.
    """

    name = "tiny_backbone"
    description = "two-layer patch encoder for contract checks"

    def __init__(self, *, image_size: int = 32, patch_size: int = 8, embed_dim: int = 16, seed: int = 0) -> None:
        import torch
        from torch import nn

        self.image_size, self.patch_size = int(image_size), int(patch_size)
        with torch.random.fork_rng(devices=[]):  # same seed, same weights, caller's stream untouched
            torch.manual_seed(seed)
            self._encoder = nn.Sequential(nn.Conv2d(3, embed_dim, patch_size, stride=patch_size), nn.GELU(),
                                          nn.Conv2d(embed_dim, embed_dim, 1))
            self._decoder = nn.Linear(embed_dim, 3 * patch_size * patch_size)
        self._dim = int(embed_dim)

    @property
    def embed_dim(self) -> int:
        return self._dim

    @property
    def grid_size(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return side, side

    @property
    def encoder(self):
        return self._encoder

    def preprocess(self, images: np.ndarray):
        import torch

        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(f"expected uint8 (B, {self.image_size}, {self.image_size}, 3), got {images.shape}")
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0

    def patch_tokens(self, images):
        return self._encoder(images).flatten(2).transpose(1, 2)

    def embed(self, images: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.patch_tokens(self.preprocess(images)).mean(1).numpy().astype(np.float32)

    def _patches(self, x):
        p = self.patch_size
        return x.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2)

    def _loss(self, images: np.ndarray, generator):
        import torch

        x = self.preprocess(images)
        error = ((self._decoder(self.patch_tokens(x)) - self._patches(x)) ** 2).mean(-1)
        masked = (torch.rand(error.shape, generator=generator) < 0.75).float()
        return (error * masked).sum(1) / masked.sum(1).clamp(min=1.0)

    def reconstruction_loss(self, images: np.ndarray, *, seed: int) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self._loss(images, torch.Generator().manual_seed(int(seed))).numpy().astype(np.float32)

    def pretrain(self, pool: Dataset, indices: np.ndarray, *, steps: int, batch_size: int, seed: int,
                 optimizer: Mapping[str, Any], progress: bool = False,
                 on_step: Callable[[int, float], None] | None = None) -> dict[str, Any]:
        import torch

        generator = torch.Generator().manual_seed(int(seed))
        rng = np.random.default_rng(seed)
        parameters = list(self._encoder.parameters()) + list(self._decoder.parameters())
        opt = torch.optim.AdamW(parameters, lr=float(optimizer.get("lr", 1e-3)))
        losses = []
        for step in range(1, steps + 1):
            batch = np.sort(rng.choice(np.asarray(indices), size=min(batch_size, len(indices)), replace=False))
            loss = self._loss(pool.load_images(batch), generator).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(step, losses[-1])
        return {"loss": losses}

    def _state(self) -> dict:
        return {**{f"encoder.{k}": v for k, v in self._encoder.state_dict().items()},
                **{f"decoder.{k}": v for k, v in self._decoder.state_dict().items()}}

    def save(self, path: str) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        save_file({k: v.detach().contiguous() for k, v in self._state().items()}, tmp)
        os.replace(tmp, path)

    def load(self, path: str) -> None:
        from safetensors.torch import load_file

        state = load_file(str(path))
        self._encoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
        self._decoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("decoder.")})
