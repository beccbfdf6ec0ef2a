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


# --- the frozen kNN probe -------------------------------------------------------------------
class MeanColourBackbone(FakeBackbone):
    """Tokens are each patch's mean colour: a fixed encoder whose features we can reason about."""

    def patch_tokens(self, x):
        pooled = torch.nn.functional.avg_pool2d(x, 4)
        return pooled.flatten(2).transpose(1, 2)


class TwoColourSet(delbench.sdk.Dataset):
    """16 × 16 images: a red square (class 1) on a blue background (class 0), placed on the
    4-pixel grid, so every patch token is pure red or pure blue."""

    name, roles, splits, num_classes = "two_colour", ("segmentation",), ("train", "test"), 2

    def __init__(self, n: int = 6, offset: int = 0) -> None:
        self.n, self.offset = n, offset

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        cell = (index + self.offset) % 9
        y, x = 4 * (cell // 3), 4 * (cell % 3)
        mask = np.zeros((16, 16), np.uint8)
        mask[y:y + 8, x:x + 8] = 1
        image = np.zeros((16, 16, 3), np.uint8)
        image[..., 2] = 200
        image[mask == 1] = (220, 30, 30)
        return {"image": image, "mask": mask, "id": f"two_colour/{index}"}


def test_knn_probe_transfers_labels_by_feature_similarity():
    import torch.nn.functional as F
    from delbench_plugins.tasks.segmentation import _token_class_shares
    task = Segmentation(head="knn", k=3, batch_size=4)
    backbone = MeanColourBackbone()
    stats = task.fit(backbone, TwoColourSet(6), seed=0)
    assert stats == {"head": "knn", "k": 3, "bank_tokens": 6 * 16, "train_tokens": 6 * 16}
    test = TwoColourSet(5, offset=3)
    images = np.stack([test[i]["image"] for i in range(5)])
    masks = np.stack([test[i]["mask"] for i in range(5)])
    # every red token's 3 nearest training tokens are red (and blue's blue), so the vote is the
    # true share of each token, bilinearly upsampled
    truth = _token_class_shares(masks, 2, (4, 4), "cpu").reshape(5, 4, 4, 2).permute(0, 3, 1, 2)
    expected = F.interpolate(truth, size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.equal(task.head.class_shares(backbone, images, (16, 16)), expected)
    metrics = task.evaluate(backbone, test)
    assert metrics["mIoU"] > 0.95  # only the squares' corner pixels are lost to the upsampling


def test_knn_probe_labels_tokens_with_the_class_shares_under_them():
    from delbench_plugins.tasks.segmentation import _token_class_shares
    mask = np.zeros((1, 4, 4), np.uint8)
    mask[0, :2, :1] = 1   # top-left 2×2 patch: 2 of 4 pixels foreground
    mask[0, 2:, 2:] = 1   # bottom-right patch: all foreground
    shares = _token_class_shares(mask, 2, (2, 2), "cpu")
    assert shares.tolist() == [[0.5, 0.5], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]


def test_knn_probe_is_deterministic_and_samples_a_bounded_bank(polyps):
    train, test = polyps
    results = []
    for seed in (0, 0, 1):
        task = Segmentation(head="knn", k=5, max_bank_tokens=100)
        stats = task.fit(FakeBackbone(), train, seed=seed)
        results.append(task.evaluate(FakeBackbone(), test))
        assert stats["bank_tokens"] == 100 and stats["train_tokens"] == 8 * 16
    assert results[0] == results[1]
    full = Segmentation(head="knn", k=5)
    full.fit(FakeBackbone(), train, seed=0)
    assert full.fit(FakeBackbone(), train, seed=1) == {"head": "knn", "k": 5, "bank_tokens": 128, "train_tokens": 128}


@pytest.mark.parametrize("params, key", [(dict(head="svm"), "head"), (dict(head="knn", k=0), "k"),
                                         (dict(head="knn", freeze_encoder=False), "freeze_encoder"),
                                         (dict(head="linear", freeze_encoder=False), "freeze_encoder"),
                                         (dict(head="linear", c=0), "c"), (dict(head="linear", iters=0), "iters")])
def test_knn_probe_parameters_are_checked(params, key):
    with pytest.raises(delbench.errors.ConfigError, match=key):
        Segmentation(**params)


def test_linear_probe_reads_a_linearly_coded_class():
    task = Segmentation(head="linear", batch_size=4)
    backbone = MeanColourBackbone()
    stats = task.fit(backbone, TwoColourSet(6), seed=0)
    assert stats["head"] == "linear" and stats["train_tokens"] == 6 * 16 and stats["train_loss"] < 0.05
    test = TwoColourSet(5, offset=3)
    images = np.stack([test[i]["image"] for i in range(5)])
    scores = task.head.class_shares(backbone, images, (16, 16))
    assert scores.shape == (5, 2, 16, 16) and torch.allclose(scores.sum(1), torch.ones(5, 16, 16))
    assert task.evaluate(backbone, test)["mIoU"] > 0.95  # only the squares' corner pixels are lost


def test_linear_probe_is_deterministic_and_balances_the_classes(polyps):
    train, test = polyps
    first, again = (Segmentation(head="linear", batch_size=4) for _ in range(2))
    assert first.fit(FakeBackbone(), train, seed=0) == again.fit(FakeBackbone(), train, seed=1)
    assert torch.equal(first.head.linear.weight, again.head.linear.weight)
    assert first.evaluate(FakeBackbone(), test) == again.evaluate(FakeBackbone(), test)
    # a small foreground is not drowned by the background: some test pixels are called polyp
    images = np.stack([test[i]["image"] for i in range(len(test))])
    assert (first.head.class_shares(FakeBackbone(), images, (16, 16)).argmax(1) == 1).any()
