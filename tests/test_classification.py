"""The ``classification`` task with a tiny fake backbone and, once, the real timm_mae backbone."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import delbench
from delbench.errors import ConfigError, DelbenchError
from delbench_plugins.tasks.classification import Classification, macro_f1, stratified_subsample
from delbench_plugins.datasets.image_folder import ImageFolder

torch = pytest.importorskip("torch")

COLOURS = {"blue": (40, 60, 200), "green": (50, 190, 60), "red": (210, 50, 40)}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DELBENCH_CACHE_DIR", str(tmp_path / "cache"))


def make_colour_classes(root: Path, per_class: int = 10, size: int = 16) -> Path:
    """Three classes told apart by colour, with noise: a probe on any sane encoder separates them."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour)[None, None] + rng.normal(0, 25, (size, size, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i:02d}.png")
    return root


class FakeBackbone:
    """Implements what the task uses: preprocess, patch_tokens, embed_dim, encoder."""

    def __init__(self, dim: int = 16, patch: int = 4, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.encoder = torch.nn.Sequential(torch.nn.Conv2d(3, dim, patch, stride=patch), torch.nn.GELU(),
                                           torch.nn.Conv2d(dim, dim, 1))
        self.embed_dim = dim

    def preprocess(self, images: np.ndarray):
        return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0 - 0.5

    def patch_tokens(self, x):
        return self.encoder(x).flatten(2).transpose(1, 2)


@pytest.fixture()
def colours(tmp_path):
    root = make_colour_classes(tmp_path / "colours")
    return (ImageFolder(root=root, classes=True, split="train"),
            ImageFolder(root=root, classes=True, split="test"))


def test_linear_probe_separates_colour_classes(colours):
    train, test = colours
    task = delbench.get_task("classification")(mode="linear_probe", epochs=30, batch_size=8)
    stats = task.fit(FakeBackbone(), train, seed=0)
    assert stats["n_train"] == 24 and stats["n_labelled"] == 24 and stats["num_classes"] == 3
    assert stats["loss"][-1] < stats["loss"][0]
    metrics = task.evaluate(FakeBackbone(), test)
    assert set(metrics) == {"accuracy", "macro_f1"}
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0
    assert Classification.metric == "accuracy" and Classification.dataset_role == "classification"


def test_linear_probe_is_deterministic(colours):
    train, test = colours
    runs = []
    for _ in range(2):
        task = Classification(epochs=3, batch_size=8, label_fraction=0.5)
        runs.append((task.fit(FakeBackbone(), train, seed=5)["loss"], task.predict(FakeBackbone(), test).tolist()))
    assert runs[0] == runs[1]


def test_fine_tune_trains_a_copy_and_leaves_the_backbone_alone(colours):
    train, test = colours
    backbone = FakeBackbone()
    before = [p.detach().clone() for p in backbone.encoder.parameters()]
    task = Classification(mode="fine_tune", epochs=8, batch_size=8, lr=3e-3)
    stats = task.fit(backbone, train, seed=0)
    assert stats["mode"] == "fine_tune" and stats["loss"][-1] < stats["loss"][0]
    for old, new in zip(before, backbone.encoder.parameters()):
        assert torch.equal(old, new)
    assert any(not torch.equal(a, b) for a, b in zip(before, task._model.encoder.parameters()))
    metrics = task.evaluate(backbone, test)
    assert metrics["accuracy"] >= 2 / 3 and 0.0 <= metrics["macro_f1"] <= 1.0


class DeviceBackbone(FakeBackbone):
    """FakeBackbone on ``device`` whose tokens come in ``dtype`` (a backbone run in float64 or on a GPU)."""

    def __init__(self, device: str = "cpu", dtype=torch.float32) -> None:
        super().__init__()
        self.device, self.dtype = torch.device(device), dtype
        self.encoder = self.encoder.to(self.device, dtype)

    def preprocess(self, images: np.ndarray):
        return super().preprocess(images).to(self.device, self.dtype)


def test_features_come_back_as_cpu_float32(colours):
    train, test = colours
    features = Classification()._extract(DeviceBackbone(dtype=torch.float64), train, np.arange(5))
    assert features.device == torch.device("cpu") and features.dtype == torch.float32 and features.shape == (5, 16)
    task = Classification(epochs=3, batch_size=8)
    task.fit(DeviceBackbone(dtype=torch.float64), train, seed=0)
    assert task.evaluate(DeviceBackbone(dtype=torch.float64), test)["accuracy"] >= 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["linear_probe", "fine_tune"])
def test_probe_and_fine_tune_on_cuda(colours, mode):
    train, test = colours
    task = Classification(mode=mode, epochs=2, batch_size=8)
    task.fit(DeviceBackbone("cuda"), train, seed=0)
    assert 0.0 <= task.evaluate(DeviceBackbone("cuda"), test)["accuracy"] <= 1.0
    features = task._extract(DeviceBackbone("cuda"), test, np.arange(3))
    assert features.device == torch.device("cpu")


def test_fine_tune_needs_an_encoder(colours):
    class NoEncoder(FakeBackbone):
        def __init__(self):
            super().__init__()
            self._enc = self.__dict__.pop("encoder")

        def patch_tokens(self, x):
            return self._enc(x).flatten(2).transpose(1, 2)

    with pytest.raises(ConfigError, match="encoder"):
        Classification(mode="fine_tune", epochs=1).fit(NoEncoder(), colours[0], seed=0)


def test_label_fraction_is_stratified_seeded_and_keeps_every_class():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 2)
    picked = stratified_subsample(labels, 0.1, seed=1)
    assert [int((labels[picked] == c).sum()) for c in (0, 1, 2)] == [5, 3, 1]
    assert np.array_equal(picked, stratified_subsample(labels, 0.1, seed=1))
    assert not np.array_equal(picked, stratified_subsample(labels, 0.1, seed=2))
    assert np.array_equal(stratified_subsample(labels, 1.0, seed=0), np.arange(82))
    assert [int((labels[stratified_subsample(labels, 0.01, seed=0)] == c).sum()) for c in (0, 1, 2)] == [1, 1, 1]


def test_label_fraction_applies_in_fit(colours):
    stats = Classification(label_fraction=0.1, epochs=1).fit(FakeBackbone(), colours[0], seed=0)
    assert stats["n_labelled"] == 3  # one per class


def test_macro_f1_matches_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        y_true, y_pred = rng.integers(0, 5, 40), rng.integers(0, 4, 40)
        assert macro_f1(y_true, y_pred) == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert macro_f1(np.array([0, 1, 1]), np.array([0, 1, 0])) == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_misuse_is_reported():
    with pytest.raises(ConfigError):
        Classification(mode="knn")
    with pytest.raises(ConfigError):
        Classification(label_fraction=0.0)
    with pytest.raises(DelbenchError, match="fit"):
        Classification().evaluate(FakeBackbone(), _OneItem())


class _OneItem:
    class_names = ("a",)

    def labels(self):
        return np.array([0])

    def __len__(self):
        return 1

    def load_images(self, indices):
        return np.zeros((len(indices), 16, 16, 3), np.uint8)


@pytest.mark.slow  # imports timm and builds a ViT: ~10–20 s on a busy 2-core machine
def test_with_the_real_timm_mae_backbone(tmp_path):
    root = make_colour_classes(tmp_path / "c32", per_class=4, size=32)
    train = ImageFolder(root=root, classes=True, split="train", image_size=32)
    test = ImageFolder(root=root, classes=True, split="test", image_size=32)
    backbone = delbench.get_backbone("timm_mae")(model="vit_tiny_patch16_224", image_size=32)
    probe = Classification(epochs=5, batch_size=4)
    stats = probe.fit(backbone, train, seed=0)
    metrics = probe.evaluate(backbone, test)
    assert stats["n_train"] == 9 and 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["macro_f1"] <= 1.0
    tuned = Classification(mode="fine_tune", epochs=1, batch_size=4)
    tuned.fit(backbone, train, seed=0)
    assert set(tuned.evaluate(backbone, test)) == {"accuracy", "macro_f1"}
