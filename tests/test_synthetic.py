import numpy as np
import pytest

from delbench import get_dataset
from delbench.errors import ConfigError


@pytest.fixture(scope="module")
def pool():
    return get_dataset("synthetic_endoscopy")(num_frames=400, frames_per_sequence=100, scene_length=20,
                                              invalid_fraction=0.5, image_size=32, seed=7)


def test_frames_are_deterministic_and_lazy(pool):
    again = get_dataset("synthetic_endoscopy")(num_frames=400, frames_per_sequence=100, scene_length=20,
                                               invalid_fraction=0.5, image_size=32, seed=7)
    for i in (0, 57, 399):
        assert np.array_equal(pool[i]["image"], again[i]["image"])
        assert pool[i]["id"] == again.item_id(i)
    huge = get_dataset("synthetic_endoscopy")(num_frames=5_000_000, image_size=32)
    assert len(huge) == 5_000_000 and huge[4_999_999]["image"].shape == (32, 32, 3)


def test_ground_truth_columns(pool):
    meta = pool.metadata()
    kinds = meta["kind"].astype(str)
    assert set(kinds) == {"core", "near_duplicate", "invalid"}
    assert abs((kinds == "invalid").mean() - 0.5) < 0.1
    # one core frame per scene that has a valid frame
    valid_scenes = np.unique(meta["scene_id"][kinds != "invalid"])
    assert (kinds == "core").sum() == valid_scenes.size
    assert set(meta["invalid_type"][kinds == "invalid"]) <= {"motion_blur", "dark", "overexposed", "bubbles",
                                                             "out_of_body"}
    assert np.array_equal(meta["sequence_id"], np.arange(400) // 100)


def test_near_duplicates_are_closer_than_other_scenes(pool):
    meta = pool.metadata()
    kinds, scenes = meta["kind"].astype(str), meta["scene_id"]
    valid = np.flatnonzero(kinds != "invalid")
    images = pool.load_images(valid).reshape(len(valid), -1).astype(float)
    same, other = [], []
    for a in range(0, len(valid) - 1, 7):
        for b in range(a + 1, min(len(valid), a + 30)):
            distance = np.abs(images[a] - images[b]).mean()
            (same if scenes[valid[a]] == scenes[valid[b]] else other).append(distance)
    assert np.mean(same) < 0.6 * np.mean(other)


def test_invalid_frames_look_invalid(pool):
    meta = pool.metadata()
    types = meta["invalid_type"]
    dark = np.flatnonzero(types == "dark")[:5]
    valid = np.flatnonzero(meta["kind"].astype(str) != "invalid")[:5]
    assert pool.load_images(dark).mean() < 0.3 * pool.load_images(valid).mean()
    assert all(pool[int(i)]["mask"].sum() == 0 for i in np.flatnonzero(types != "")[:10])


def test_downstream_set_has_masks_and_shifted_test():
    seg = get_dataset("synthetic_polyp_seg")
    train, test = seg(split="train", num_train=20, image_size=32), seg(split="test", num_test=20, image_size=32)
    assert len(train) == 20 and train[0]["mask"].max() == 1 and train[0]["mask"].shape == (32, 32)
    assert train[0]["id"] != test[0]["id"]
    # domain shift: the test centre's light is bluer than the training centre's
    blue = lambda d: np.mean([d[i]["image"][..., 2].mean() / d[i]["image"][..., 0].mean() for i in range(20)])
    assert blue(test) > blue(train)


def test_bad_parameters_are_clear():
    with pytest.raises(ConfigError, match="invalid_fraction"):
        get_dataset("synthetic_endoscopy")(invalid_fraction=1.5)
    with pytest.raises(ConfigError, match="splits"):
        get_dataset("synthetic_polyp_seg")(split="val")


@pytest.mark.parametrize("name, params", [("synthetic_endoscopy", {"num_frames": 60, "frames_per_sequence": 30,
                                                                  "scene_length": 10, "image_size": 32, "seed": 1}),
                                          ("synthetic_polyp_seg", {"num_train": 6, "image_size": 32})])
def test_polyp_contrast_changes_only_the_polyps(name, params):
    default, same = get_dataset(name)(**params), get_dataset(name)(**params, polyp_contrast=1.0)
    flat = get_dataset(name)(**params, polyp_contrast=0.0)
    indices = [i for i in range(len(default)) if default[i]["mask"].any()][:3]
    assert indices  # frames that show a polyp
    for i in indices:
        image, mask = default[i]["image"], default[i]["mask"].astype(bool)
        assert np.array_equal(same[i]["image"], image)  # 1.0 is the default, bit for bit
        low = flat[i]["image"].astype(int)
        assert np.array_equal(flat[i]["mask"], default[i]["mask"])
        # outside the polyps every pixel is unchanged
        assert np.abs(low[~mask] - image[~mask].astype(int)).max() <= 0
        # inside, the polyp moves towards the mucosa: its colour differs less from the rest
        contrast = lambda im: np.abs(im[mask].mean(0) - im[~mask].mean(0)).sum()
        assert contrast(low) < contrast(image.astype(int))
    with pytest.raises(ConfigError, match="polyp_contrast"):
        get_dataset(name)(**params, polyp_contrast=1.5)
