"""The four plugin contracts: Dataset, Selector, Backbone, Task (plus ``Selection``).

These classes hold no logic beyond trivial defaults. A third-party plugin may subclass them
or just provide the same attributes and methods (the registries check ``name``; the contract
checker in :mod:`delbench.testing` checks behaviour).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

import numpy as np

if TYPE_CHECKING:  # torch is never imported at module level
    import torch


class Dataset(abc.ABC):
    """A pool or downstream dataset that loads items lazily, one index at a time.

    Constructed by the harness as ``cls(split=..., image_size=..., **params)`` (real datasets
    also take ``root``). ``__getitem__`` returns a dict with ``image`` (uint8, H×W×3, resized
    to ``image_size`` when that is set), ``id`` (a stable string such as the relative file
    path), and ``mask`` (uint8 H×W, values {0, 1}) and/or ``label`` (int) where the dataset
    has them. ``metadata()`` returns per-item columns (e.g. ``sequence_id``, ``source``,
    and on the synthetic pool the planted ``kind``).
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    #: what the dataset can feed: "pool" (pre-training), "segmentation", "classification"
    roles: ClassVar[tuple[str, ...]] = ("pool",)
    splits: ClassVar[tuple[str, ...]] = ("all",)

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    def item_id(self, index: int) -> str:
        return str(self[index]["id"])

    def metadata(self) -> Mapping[str, np.ndarray]:
        """Per-item columns, each an array of length ``len(self)``; empty when unknown."""
        return {}

    def load_images(self, indices: np.ndarray) -> np.ndarray:
        """Stack the images of ``indices`` into one uint8 array (B, H, W, 3)."""
        return np.stack([self[int(i)]["image"] for i in indices])

    def split_record(self) -> Mapping[str, Any] | None:
        """The train/test split this dataset was built with, as a JSON-able record, or None.

        Building a dataset writes nothing; the harness keeps this record as a split file
        (``delbench.results.write_split_file``: keys ``dataset`` and ``sha256`` name the file).
        None for datasets whose splits are fixed by their parameters (the synthetic ones).
        """
        return None


@dataclass
class Selection:
    """What a selector may return instead of a bare index array."""

    indices: np.ndarray
    diagnostics: dict[str, Any] = field(default_factory=dict)


class Selector(abc.ABC):
    """Chooses which items of a pool to pre-train on.

    ``select`` returns sorted, unique, in-range int64 indices, exactly
    ``delbench.subset.subset_size(len(pool), ratio)`` of them, deterministic for a given
    seed, as a bare array or a :class:`Selection` with diagnostics (e.g. the threshold used).
    It must not train anything. ``embeddings`` (n × d float, row i for pool item i) are
    passed when ``requires_embeddings`` is true; a ``backbone`` keyword when
    ``requires_backbone`` is true.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    requires_embeddings: ClassVar[bool] = False
    requires_backbone: ClassVar[bool] = False
    #: set when the method only makes sense at one ratio (``full`` → 1.0)
    fixed_ratio: ClassVar[float | None] = None
    #: set when the output does not depend on the seed (``full``, ``oracle``, pure filters);
    #: the contract checker then skips its seed-sensitivity check
    deterministic_in_seed: ClassVar[bool] = False

    @abc.abstractmethod
    def select(self, pool: Dataset, ratio: float, *, seed: int,
               embeddings: np.ndarray | None = None, **params: Any) -> np.ndarray | Selection: ...


class Backbone(abc.ABC):
    """A timm encoder with a self-supervised pre-training objective.

    Constructed as ``cls(model=..., image_size=..., checkpoint=None, **params)``.
    Images cross this interface as uint8 arrays (B, H, W, 3); the backbone normalises them.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""

    @abc.abstractmethod
    def pretrain(self, pool: Dataset, indices: np.ndarray, *, steps: int, batch_size: int,
                 seed: int, optimizer: Mapping[str, Any], progress: bool = False,
                 on_step: Callable[[int, float], None] | None = None) -> dict[str, Any]:
        """Run ``steps`` optimizer steps on ``pool[indices]``; return stats (loss history).

        ``on_step(step, loss)`` is called after every optimizer step (1-based); the runner
        saves intermediate checkpoints from it.
        """

    @abc.abstractmethod
    def embed(self, images: np.ndarray) -> np.ndarray:
        """Return one float32 feature vector per image, shape (B, D)."""

    @abc.abstractmethod
    def reconstruction_loss(self, images: np.ndarray, *, seed: int) -> np.ndarray:
        """Per-image self-supervised loss (B,), used as a difficulty score."""

    @abc.abstractmethod
    def patch_tokens(self, images: "torch.Tensor") -> "torch.Tensor":
        """Encoder patch tokens (B, N, D) of preprocessed images; differentiable."""

    @abc.abstractmethod
    def preprocess(self, images: np.ndarray) -> "torch.Tensor":
        """uint8 (B, H, W, 3) → normalised float tensor (B, 3, H, W)."""

    @abc.abstractmethod
    def save(self, path: str) -> None: ...

    @abc.abstractmethod
    def load(self, path: str) -> None: ...


class Task(abc.ABC):
    """A downstream task: fits a head (and optionally the encoder), then evaluates.

    Metrics are fractions in [0, 1]; ``metric`` names the one NormDEL is computed from.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    metric: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    #: the dataset role this task consumes ("segmentation" or "classification")
    dataset_role: ClassVar[str] = "segmentation"

    @abc.abstractmethod
    def fit(self, backbone: Backbone, train: Dataset, *, seed: int) -> dict[str, Any]: ...

    @abc.abstractmethod
    def evaluate(self, backbone: Backbone, test: Dataset) -> dict[str, float]: ...
