"""The ``segmentation`` task with a tiny fake backbone: devices follow the backbone, encoder state is restored."""
from __future__ import annotations

import numpy as np
import pytest

import delbench
from delbench_plugins.tasks.segmentation import Segmentation

torch = pytest.importorskip("torch")


class FakeBackbone:
    """What the task uses: preprocess, patch_tokens, embed_dim, grid_size, encoder — on ``device``."""

    def __init__(self, device: str = "cpu", dim: int = 8, patch: int = 4, image_size: int = 16) -> None:
        torch.manual_seed(0)
        self.device = torch.device(device)
        self.encoder = torch.nn.Conv2d(3, dim, patch, stride=patch).to(self.device)
        self.embed_dim, self.grid_size = dim, (image_size // patch, image_size // patch)
        self.token_devices: list[torch.device] = []

    def preprocess(self, images: np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float() / 255.0

    def patch_tokens(self, x):
        tokens = self.encoder(x).flatten(2).transpose(1, 2)
        self.token_devices.append(tokens.device)
        return tokens


@pytest.fixture(scope="module")
def polyps():
    cls = delbench.get_dataset("synthetic_polyp_seg")
    return cls(split="train", num_train=8, num_test=4, image_size=16), cls(split="test", num_train=8, num_test=4,
                                                                           image_size=16)


def run(device: str, polyps, **task_params):
    train, test = polyps
    backbone = FakeBackbone(device)
    task = Segmentation(epochs=2, batch_size=4, hidden_dim=8, **task_params)
    stats = task.fit(backbone, train, seed=0)
    return backbone, task, stats, task.evaluate(backbone, test)


def test_head_lives_on_the_tokens_device(polyps):
    backbone, task, stats, metrics = run("cpu", polyps)
    assert {p.device for p in task.head.parameters()} == set(backbone.token_devices) == {torch.device("cpu")}
    assert stats["steps"] == 4 and 0.0 <= metrics["mIoU"] <= 1.0 and 0.0 <= metrics["Dice"] <= 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_and_evaluate_on_cuda(polyps):
    backbone, task, stats, metrics = run("cuda", polyps)
    assert all(p.device.type == "cuda" for p in task.head.parameters())
    assert np.isfinite(stats["train_loss_last"]) and 0.0 <= metrics["mIoU"] <= 1.0


@pytest.mark.parametrize("freeze", [True, False])
def test_encoder_requires_grad_is_restored(polyps, freeze):
    train, _ = polyps
    backbone = FakeBackbone()
    backbone.encoder.bias.requires_grad_(False)  # a caller's own choice, e.g. a partly frozen encoder
    Segmentation(epochs=1, batch_size=4, hidden_dim=8, freeze_encoder=freeze).fit(backbone, train, seed=0)
    assert backbone.encoder.weight.requires_grad and not backbone.encoder.bias.requires_grad


def test_encoder_requires_grad_is_restored_when_training_fails(polyps):
    train, _ = polyps
    backbone = FakeBackbone()
    calls = []

    def failing_tokens(x):
        calls.append(1)
        if len(calls) > 1:  # the first call places the head; the first training step fails
            raise RuntimeError("out of memory")
        return FakeBackbone.patch_tokens(backbone, x)

    backbone.patch_tokens = failing_tokens
    with pytest.raises(RuntimeError, match="out of memory"):
        Segmentation(epochs=1, batch_size=4, hidden_dim=8).fit(backbone, train, seed=0)
    assert all(p.requires_grad for p in backbone.encoder.parameters())
