import numpy as np
import pytest

from delbench import get_backbone, get_dataset
from delbench.errors import DelbenchError

TINY = dict(model="vit_tiny_patch16_224", image_size=32, patch_size=8, decoder_dim=32, decoder_depth=1,
            decoder_heads=2, model_kwargs=dict(depth=2))


@pytest.fixture(scope="module")
def pool():
    return get_dataset("synthetic_endoscopy")(num_frames=200, frames_per_sequence=50, scene_length=10,
                                              image_size=32)


def test_mae_loss_decreases_on_the_synthetic_pool(pool):
    backbone = get_backbone("timm_mae")(**TINY)
    stats = backbone.pretrain(pool, np.arange(200), steps=60, batch_size=16, seed=0,
                              optimizer={"lr": 2e-3, "warmup_steps": 5})
    losses = stats["loss"]
    assert len(losses) == 60
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:5])


def test_pretraining_is_reproducible(pool):
    import torch

    runs = []
    for _ in range(2):
        torch.manual_seed(0)  # weight initialisation draws from torch's global generator
        backbone = get_backbone("timm_mae")(**TINY)
        runs.append(backbone.pretrain(pool, np.arange(50), steps=3, batch_size=8, seed=4,
                                      optimizer={"lr": 1e-3})["loss"])
    assert runs[0] == runs[1]


class CountingPool:
    """A pool that counts how often each frame is loaded."""

    def __init__(self, pool):
        self.pool, self.loads = pool, np.zeros(len(pool), dtype=np.int64)

    def __len__(self):
        return len(self.pool)

    def load_images(self, indices):
        np.add.at(self.loads, np.asarray(indices, dtype=np.int64), 1)
        return self.pool.load_images(indices)


def test_the_frame_cache_loads_each_frame_once_within_its_budget(pool):
    from delbench_plugins.backbones.timm_mae import FrameCache

    counting = CountingPool(pool)
    frame_bytes = pool.load_images(np.arange(1)).nbytes
    cache = FrameCache(counting, max_bytes=3 * frame_bytes)
    first = cache.load_images(np.array([0, 1, 2, 3, 4]))
    first[:] = 0  # a batch is the caller's to modify (flips are applied in place)
    again = cache.load_images(np.array([0, 1, 2, 3, 4]))
    assert np.array_equal(again, pool.load_images(np.arange(5)))
    assert counting.loads[:5].tolist() == [1, 1, 1, 2, 2]  # 3 frames fit the budget, the rest reload
    assert cache.bytes == 3 * frame_bytes


def test_pretraining_with_and_without_the_frame_cache_is_identical(pool):
    import torch

    runs = []
    for budget in (0, 1 << 30):
        torch.manual_seed(0)
        backbone = get_backbone("timm_mae")(**TINY)
        backbone.frame_cache_bytes = budget
        counting = CountingPool(pool)
        runs.append(backbone.pretrain(counting, np.arange(20), steps=6, batch_size=8, seed=2,
                                      optimizer={"lr": 1e-3})["loss"])
        assert counting.loads[:20].max() == (3 if budget == 0 else 1)  # 48 draws of 20 frames
    assert runs[0] == runs[1]


def test_embed_shapes_and_checkpoint_round_trip(pool, tmp_path):
    backbone = get_backbone("timm_mae")(**TINY)
    images = pool.load_images(np.arange(6))
    features = backbone.embed(images)
    assert features.shape == (6, 192) and features.dtype == np.float32
    backbone.save(tmp_path / "mae.safetensors")
    reloaded = get_backbone("timm_mae")(**TINY, checkpoint=str(tmp_path / "mae.safetensors"))
    assert np.allclose(reloaded.embed(images), features, atol=1e-5)
    losses = backbone.reconstruction_loss(images, seed=1)
    assert losses.shape == (6,) and np.array_equal(losses, backbone.reconstruction_loss(images, seed=1))


def test_encoder_only_torch_checkpoint_with_other_resolution(pool, tmp_path):
    import torch

    source = get_backbone("timm_mae")(**{**TINY, "image_size": 64})
    torch.save({"model": source.encoder.state_dict()}, tmp_path / "encoder.pth")
    target = get_backbone("timm_mae")(**TINY, checkpoint=str(tmp_path / "encoder.pth"))
    assert torch.equal(target.encoder.blocks[0].attn.qkv.weight, source.encoder.blocks[0].attn.qkv.weight)
    assert target.encoder.pos_embed.shape[1] == 1 + 16  # resampled from 8×8 to 4×4 patches


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(DelbenchError, match="not found"):
        get_backbone("timm_mae")(**TINY, checkpoint=str(tmp_path / "missing.pth"))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(DelbenchError, match="corrupt.pth"):
        get_backbone("timm_mae")(**TINY, checkpoint=str(corrupt))


def test_wrong_image_size_is_a_clear_error(pool):
    backbone = get_backbone("timm_mae")(**TINY)
    with pytest.raises(DelbenchError, match="image_size"):
        backbone.embed(np.zeros((1, 64, 64, 3), np.uint8))


def test_pooling_uses_the_class_token_or_the_patch_tokens(pool):
    import torch

    from delbench.errors import ConfigError

    images = pool.load_images(np.arange(3))
    with pytest.raises(ConfigError, match="class token"):
        get_backbone("timm_mae")(**{**TINY, "model_kwargs": dict(depth=2, class_token=False, global_pool="avg")},
                                 pool="cls")
    no_cls = get_backbone("timm_mae")(**{**TINY, "model_kwargs": dict(depth=2, class_token=False,
                                                                       global_pool="avg")})
    with_cls = get_backbone("timm_mae")(**TINY, pool="cls")
    with torch.inference_mode():
        x = with_cls.preprocess(images)
        cls_token = with_cls.encoder.forward_features(x)[:, 0]
        patch_mean = with_cls.patch_tokens(x).mean(1)
        assert np.allclose(with_cls.embed(images), cls_token.numpy(), atol=1e-6)
        assert not np.allclose(cls_token.numpy(), patch_mean.numpy(), atol=1e-3)
        y = no_cls.preprocess(images)
        assert np.allclose(no_cls.embed(images), no_cls.patch_tokens(y).mean(1).numpy(), atol=1e-6)
