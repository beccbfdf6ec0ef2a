"""The backbone contract checker (:class:`delbench.sdk.Backbone`).

::

    from delbench.testing import check_backbone
    check_backbone(MyBackbone, params={"image_size": 32})

The class is built as ``cls(**params)``; images are uint8 ``image_size`` × ``image_size``
(default ``params["image_size"]``, else 32), as the harness loads datasets for it. The
checks: ``check_attributes`` (``name``; ``embed_dim`` a positive int; ``grid_size`` two
positive ints; ``encoder`` a ``torch.nn.Module``); ``check_preprocess`` (a float tensor
B×3×H×W); ``check_patch_tokens`` (B × rows·columns × ``embed_dim``, differentiable);
``check_embed`` (finite float32 B×D, the same on a second call); ``check_reconstruction_loss``
(finite float32 (B,), the same for the same seed); ``check_pretrain`` (3 steps on a small
pool: ``on_step`` called with steps 1, 2, 3, stats with 3 finite ``loss`` values);
``check_save_load`` (a second instance that loads what the first saved embeds like it);
``check_resume``, for a backbone whose ``pretrain`` takes ``resume_dir`` (resumable
pre-training): 6 steps straight, and 6 steps stopped by an exception at step 5 (states every
2 steps) then resumed, end with bitwise equal encoder weights and losses (torch's
deterministic algorithms on, for the check).
"""
from __future__ import annotations

import functools
import inspect
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from delbench.testing.checks import named_check
from delbench.testing.fixtures import InMemoryDataset

BATCH = 4


class _BackboneHarness:
    def __init__(self, backbone_cls: Any, params: Mapping[str, Any] | None, image_size: int | None) -> None:
        self.cls = backbone_cls
        self.name = getattr(backbone_cls, "name", getattr(backbone_cls, "__name__", repr(backbone_cls)))
        self.params = dict(params or {})
        self.image_size = int(image_size or self.params.get("image_size") or 32)

    def build(self) -> Any:
        return self.cls(**self.params)

    @functools.cached_property
    def backbone(self) -> Any:
        return self.build()

    @functools.cached_property
    def images(self) -> np.ndarray:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (BATCH, self.image_size, self.image_size, 3), dtype=np.uint8)


def check_attributes(h: _BackboneHarness) -> None:
    import torch

    assert isinstance(h.name, str) and h.name, "the class needs a non-empty string attribute 'name'"
    backbone = h.backbone
    dim = backbone.embed_dim
    assert isinstance(dim, (int, np.integer)) and dim > 0, f"embed_dim must be a positive int, got {dim!r}"
    grid = backbone.grid_size
    assert isinstance(grid, (tuple, list)) and len(grid) == 2 and all(
        isinstance(g, (int, np.integer)) and g > 0 for g in grid), (
        f"grid_size must be (rows, columns) of positive ints, got {backbone.grid_size!r}")
    assert isinstance(backbone.encoder, torch.nn.Module), (
        f"encoder must be a torch.nn.Module, got {type(backbone.encoder).__name__}")


def check_preprocess(h: _BackboneHarness) -> None:
    import torch

    x = h.backbone.preprocess(h.images)
    assert isinstance(x, torch.Tensor) and x.is_floating_point(), f"preprocess must return a float tensor, got {type(x)}"
    assert tuple(x.shape) == (BATCH, 3, h.image_size, h.image_size), f"preprocess gave shape {tuple(x.shape)}"


def check_patch_tokens(h: _BackboneHarness) -> None:
    backbone = h.backbone
    tokens = backbone.patch_tokens(backbone.preprocess(h.images))
    rows, columns = backbone.grid_size
    expected = (BATCH, rows * columns, backbone.embed_dim)
    assert tuple(tokens.shape) == expected, f"patch_tokens gave shape {tuple(tokens.shape)}, expected {expected}"
    assert tokens.requires_grad, "patch_tokens must be differentiable (the tasks train through them)"


def check_embed(h: _BackboneHarness) -> None:
    features = np.asarray(h.backbone.embed(h.images))
    assert features.dtype == np.float32 and features.ndim == 2 and features.shape[0] == BATCH, (
        f"embed must return float32 (B, D), got {features.dtype} {features.shape}")
    assert np.isfinite(features).all(), "embed returned NaN or inf"
    assert np.array_equal(features, np.asarray(h.backbone.embed(h.images))), "embed differs between two calls"


def check_reconstruction_loss(h: _BackboneHarness) -> None:
    loss = np.asarray(h.backbone.reconstruction_loss(h.images, seed=3))
    assert loss.dtype == np.float32 and loss.shape == (BATCH,), (
        f"reconstruction_loss must return float32 (B,), got {loss.dtype} {loss.shape}")
    assert np.isfinite(loss).all(), "reconstruction_loss returned NaN or inf"
    assert np.array_equal(loss, np.asarray(h.backbone.reconstruction_loss(h.images, seed=3))), (
        "reconstruction_loss differs between two calls with the same seed")


def check_pretrain(h: _BackboneHarness) -> None:
    pool = InMemoryDataset(np.concatenate([h.images, h.images[::-1]]))
    steps: list[int] = []
    stats = h.build().pretrain(pool, np.arange(len(pool)), steps=3, batch_size=BATCH, seed=0,
                               optimizer={"lr": 1e-3}, on_step=lambda step, loss: steps.append(step))
    assert steps == [1, 2, 3], f"on_step must be called after every step with steps 1, 2, 3; got {steps}"
    losses = stats.get("loss") if isinstance(stats, dict) else None
    assert losses is not None and len(losses) == 3 and np.isfinite(losses).all(), (
        f"pretrain must return stats with 3 finite 'loss' values, got {stats!r}")


def check_save_load(h: _BackboneHarness) -> None:
    trained = h.build()
    pool = InMemoryDataset(np.asarray(h.images))
    trained.pretrain(pool, np.arange(len(pool)), steps=1, batch_size=BATCH, seed=1, optimizer={"lr": 1e-2})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "weights.safetensors"
        trained.save(str(path))
        assert path.is_file(), "save(path) wrote no file at path"
        restored = h.build()
        restored.load(str(path))
    assert np.allclose(trained.embed(h.images), restored.embed(h.images), atol=1e-6), (
        "an instance that loaded the saved weights embeds differently")


class _Stopped(Exception):
    """Stands for a pre-training killed at a step."""


def check_resume(h: _BackboneHarness) -> None:
    if "resume_dir" not in inspect.signature(h.cls.pretrain).parameters:
        return  # resumable pre-training is optional
    import torch

    pool = InMemoryDataset(np.concatenate([h.images, h.images[::-1], np.ascontiguousarray(h.images[:, ::-1])]))

    def train(resume_dir: str | None, stop_at: int | None = None) -> tuple[Any, dict]:
        torch.manual_seed(0)  # the same initial weights, as the runner seeds before building
        backbone = h.build()

        def on_step(step: int, loss: float) -> None:
            if step == stop_at:
                raise _Stopped

        stats = backbone.pretrain(pool, np.arange(len(pool)), steps=6, batch_size=BATCH, seed=0,
                                  optimizer={"lr": 1e-3}, on_step=on_step, resume_dir=resume_dir,
                                  checkpoint_every=2)
        return backbone, stats

    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        straight, straight_stats = train(None)
        with tempfile.TemporaryDirectory() as folder:
            try:
                train(folder, stop_at=5)
            except _Stopped:
                pass
            resumed, resumed_stats = train(folder)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    a, b = straight.encoder.state_dict(), resumed.encoder.state_dict()
    differ = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
    assert not differ, (f"pre-training stopped at step 5 and resumed (states every 2 steps) ends with other "
                        f"encoder weights than 6 steps straight: {differ[:3]}")
    assert list(straight_stats.get("loss", [])) == list(resumed_stats.get("loss", [])), (
        "a resumed pre-training reports other per-step losses than an uninterrupted one")


CHECKS: tuple[Callable[[_BackboneHarness], None], ...] = (
    check_attributes, check_preprocess, check_patch_tokens, check_embed, check_reconstruction_loss,
    check_pretrain, check_save_load, check_resume,
)


def backbone_checks(backbone_cls: Any, *, params: Mapping[str, Any] | None = None,
                    image_size: int | None = None) -> Iterator[tuple[str, Callable[[], None]]]:
    """Yield ``(check_name, check)`` pairs; the backbone is built on first use."""
    harness = _BackboneHarness(backbone_cls, params, image_size)
    for check in CHECKS:
        yield check.__name__, named_check(check, harness, f"backbone {harness.name!r}")


def check_backbone(backbone_cls: Any, *, params: Mapping[str, Any] | None = None,
                   image_size: int | None = None) -> None:
    """Run every backbone check; raise AssertionError naming the first that fails."""
    for _, check in backbone_checks(backbone_cls, params=params, image_size=image_size):
        check()
