import hashlib

import numpy as np
import pytest

from delbench import get_dataset
from delbench.errors import ConfigError
from delbench_plugins.datasets.synthetic import CENTRE_SHARES, centre_look

V3 = dict(num_frames=400, frames_per_sequence=100, scene_length=20, invalid_fraction=0.5, image_size=32, seed=7)


@pytest.fixture(scope="module")
def pool():
    """A version 4 pool: four centres, heavy-tailed scenes (the defaults)."""
    return get_dataset("synthetic_endoscopy")(num_frames=2000, invalid_fraction=0.5, image_size=32, seed=7)


@pytest.fixture(scope="module")
def v3_pool():
    return get_dataset("synthetic_endoscopy")(**V3, centre_shares=[1])


def test_frames_are_deterministic_and_lazy(pool):
    again = get_dataset("synthetic_endoscopy")(num_frames=2000, invalid_fraction=0.5, image_size=32, seed=7)
    for i in (0, 57, 1999):
        assert np.array_equal(pool[i]["image"], again[i]["image"])
        assert pool[i]["id"] == again.item_id(i)
    assert pool.item_ids() == again.item_ids() and len(set(pool.item_ids())) == 2000
    huge = get_dataset("synthetic_endoscopy")(num_frames=5_000_000, image_size=32)
    assert len(huge) == 5_000_000 and huge[4_999_999]["image"].shape == (32, 32, 3)


def _digest(pool):
    """sha256 over every 7th frame (image, mask, id), the ground truth and every id."""
    h = hashlib.sha256()
    for i in range(0, len(pool), 7):
        item = pool[i]
        h.update(item["image"].tobytes()), h.update(item["mask"].tobytes()), h.update(item["id"].encode())
    metadata = pool.metadata()
    for column in ("kind", "invalid_type", "scene_id", "sequence_id"):
        h.update(np.asarray(metadata[column]).astype(str).tobytes())
    h.update("\n".join(pool.item_ids()).encode())
    return h.hexdigest()


def test_one_centre_with_fixed_scenes_is_version_3_frame_for_frame(v3_pool):
    # the digest of version 3 of this dataset on these parameters (computed with that version's code)
    assert _digest(v3_pool) == "5a56c05ae22a8565bbc7c7df8045dbc9aa89da1926f02adadfc495e58da88d5a"
    meta = v3_pool.metadata()
    assert np.array_equal(meta["sequence_id"], np.arange(400) // 100)
    assert np.array_equal(meta["scene_id"], np.arange(400) // 20) and set(meta["centre_id"]) == {0}


def test_ground_truth_columns(pool, v3_pool):
    for p in (pool, v3_pool):
        meta = p.metadata()
        kinds = meta["kind"].astype(str)
        assert set(kinds) == {"core", "near_duplicate", "invalid"}
        assert abs((kinds == "invalid").mean() - 0.5) < 0.1
        # one core frame per scene that has a valid frame, and it is the scene's first valid frame
        valid_scenes = np.unique(meta["scene_id"][kinds != "invalid"])
        assert (kinds == "core").sum() == valid_scenes.size
        core = np.flatnonzero(kinds == "core")
        first_valid = [np.flatnonzero((meta["scene_id"] == s) & (kinds != "invalid"))[0] for s in valid_scenes]
        assert np.array_equal(core, np.sort(first_valid))
        assert set(meta["invalid_type"][kinds == "invalid"]) <= {"motion_blur", "dark", "overexposed", "bubbles",
                                                                 "out_of_body"}
        assert set(meta) == {"centre_id", "sequence_id", "scene_id", "kind", "invalid_type"}


def test_centres_take_their_shares_and_scenes_are_heavy_tailed(pool):
    meta = pool.metadata()
    sizes = np.bincount(meta["centre_id"])
    # DataDEL's pre-training pool: 110,079 + 47,238 + 4,000 + 4,000 of 165,317 frames
    assert sizes.tolist() == [1332, 572, 48, 48]  # 1331.7, 571.5, 48.4, 48.4 by largest remainder
    assert np.allclose(sizes / 2000, CENTRE_SHARES, atol=1e-3)
    # frames of one centre, one scene and one video are contiguous, and a scene never spans two
    for column in ("centre_id", "scene_id", "sequence_id"):
        values = meta[column]
        assert np.all(np.diff(values) >= 0)
    scene_centre = {int(s): set(meta["centre_id"][meta["scene_id"] == s]) for s in np.unique(meta["scene_id"])}
    assert all(len(c) == 1 for c in scene_centre.values())
    scene_video = {int(s): set(meta["sequence_id"][meta["scene_id"] == s]) for s in np.unique(meta["scene_id"])}
    assert all(len(v) == 1 for v in scene_video.values())
    lengths = np.sort(np.bincount(meta["scene_id"]))[::-1]
    # most scenes are short, a few long ones hold much of the pool
    assert np.median(lengths) <= 8 and lengths[0] >= 60
    assert lengths[:max(1, lengths.size // 20)].sum() > 0.25 * 2000


def test_scene_lengths_follow_their_parameters():
    short = get_dataset("synthetic_endoscopy")(num_frames=20_000, scene_length_median=3, scene_length_sigma=0.0,
                                               image_size=32)
    meta = short.metadata()
    lengths = np.bincount(meta["scene_id"])
    last = [meta["scene_id"][meta["centre_id"] == c].max() for c in range(4)]  # cut where the centre ends
    assert set(np.delete(lengths, last).tolist()) == {3}  # σ = 0: every scene 3 frames
    capped = get_dataset("synthetic_endoscopy")(num_frames=20_000, scene_length_max=50, image_size=32)
    assert np.bincount(capped.metadata()["scene_id"]).max() <= 50


def test_a_centre_looks_the_same_in_the_pool_and_its_downstream_set(pool):
    meta = pool.metadata()
    kinds = meta["kind"].astype(str)

    def colour(images):  # mean colour of the bright middle of the frames, normalised
        centre = images[:, 10:22, 10:22].reshape(-1, 3).astype(float).mean(0)
        return centre / centre.sum()

    pool_colour, seg_colour = {}, {}
    for c in range(4):
        valid = np.flatnonzero((meta["centre_id"] == c) & (kinds != "invalid"))[:20]
        pool_colour[c] = colour(pool.load_images(valid))
        seg = get_dataset("synthetic_polyp_seg")(split="test", num_test=20, centre=c, image_size=32)
        seg_colour[c] = colour(np.stack([seg[i]["image"] for i in range(20)]))
        assert seg[0]["id"].startswith(f"synthetic_polyp_seg/c{c}/test/")
    for c in range(4):
        distances = {d: np.abs(pool_colour[c] - seg_colour[d]).sum() for d in range(4)}
        assert min(distances, key=distances.get) == c, distances
    assert centre_look(7) == centre_look(7) and centre_look(7) != centre_look(8)  # beyond the table: drawn


def test_near_duplicates_are_closer_than_other_scenes(v3_pool):
    pool = v3_pool
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


def test_invalid_frames_look_invalid(v3_pool):
    pool = v3_pool
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
    with pytest.raises(ConfigError, match="centre_shares"):
        get_dataset("synthetic_endoscopy")(centre_shares=[0.5, -1])
    with pytest.raises(ConfigError, match="scene_length"):
        get_dataset("synthetic_endoscopy")(scene_length=0)
    with pytest.raises(ConfigError, match="centre"):
        get_dataset("synthetic_polyp_seg")(centre=-1)
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
