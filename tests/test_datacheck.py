"""``check_dataset``: every problem is reported with its file path; counts per split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import delbench
from delbench.datacheck import DataCheckReport, check_dataset, mask_value_problem
from delbench.errors import DatasetError
from delbench.sdk.contracts import Dataset
from delbench_plugins.datasets.endoscopy_segmentation import CVC300, KvasirInstrument, KvasirSEG


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DELBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DELBENCH_KVASIR_SEG_ROOT", raising=False)


def write_image(path: Path, size=(24, 20), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def write_mask(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def binary(size=(24, 20), values=(0, 255)) -> np.ndarray:
    mask = np.full((size[1], size[0]), values[0], np.uint8)
    mask[4:12, 5:15] = values[1]
    return mask


def clean(root: Path, n: int, image_ext=".jpg", mask_ext=".jpg") -> Path:
    for i in range(n):
        write_image(root / "images" / f"im{i:02d}{image_ext}", seed=i)
        write_mask(root / "masks" / f"im{i:02d}{mask_ext}", binary())
    return root


def test_clean_dataset_passes_with_counts(tmp_path):
    root = clean(tmp_path, 10)
    report = check_dataset(KvasirSEG, root=root)
    assert report.ok and report.problems == []
    assert report.counts == {"train": 8, "test": 2, "all": 10}
    assert report.files_checked == 20
    text = report.format()
    assert "problems: none" in text and "train 8" in text and report.details["split"].startswith("seeded")
    assert report.details["split sha256"] == KvasirSEG(root=root, split="all").split_sha256


def test_every_kind_of_problem_is_reported_by_path(tmp_path):
    root = clean(tmp_path, 6)
    truncated = root / "images" / "im01.jpg"
    truncated.write_bytes(truncated.read_bytes()[:80])
    (root / "masks" / "im02.jpg").unlink()  # image without mask
    orphan = write_mask(root / "masks" / "orphan.jpg", binary())  # mask without image
    wrong_size = write_mask(root / "masks" / "im03.jpg", binary(size=(30, 20)))
    noisy = root / "masks" / "im04.jpg"
    write_mask(noisy, np.random.default_rng(0).integers(60, 200, (20, 24), dtype=np.uint8))
    corrupt_mask = root / "masks" / "im05.jpg"
    corrupt_mask.write_bytes(b"\xff\xd8 not really a jpeg")
    report = check_dataset(KvasirSEG, root=root)
    assert not report.ok
    by_path = {}
    for path, message in report.problems:
        by_path.setdefault(path, []).append(message)
    assert "cannot decode image" in by_path[str(truncated)][0]
    assert "no mask" in by_path[str(root / "images" / "im02.jpg")][0]
    assert "has no image" in by_path[str(orphan)][0]
    assert "30×20" in by_path[str(wrong_size)][0] and "24×20" in by_path[str(wrong_size)][0]
    assert "not a binary mask" in by_path[str(noisy)][0]
    assert "cannot decode mask" in by_path[str(corrupt_mask)][0]
    assert len(report.problems) == 6
    assert report.counts["all"] == 5  # im02 has no mask, so it is not an item
    text = report.format()
    for path in by_path:
        assert path in text
    assert "problems: 6" in text


def test_lossless_mask_values(tmp_path):
    root = clean(tmp_path, 4, image_ext=".png", mask_ext=".png")
    grey = write_mask(root / "masks" / "im00.png", binary(values=(0, 128)))
    zero_one = write_mask(root / "masks" / "im01.png", binary(values=(0, 1)))
    colour = np.zeros((20, 24, 3), np.uint8)
    colour[4:12, 5:15] = (255, 0, 0)
    coloured = write_mask(root / "masks" / "im02.png", colour)
    report = check_dataset(CVC300, root=root)
    messages = dict(report.problems)
    assert set(messages) == {str(grey), str(zero_one), str(coloured)}
    assert "not binary" in messages[str(grey)] and "0, 128" in messages[str(grey)]
    assert "mask_threshold=1" in messages[str(zero_one)]
    assert "colour" in messages[str(coloured)]
    relaxed = check_dataset(CVC300, root=root, mask_threshold=1)
    assert str(zero_one) not in dict(relaxed.problems)


def test_jpeg_mask_noise_within_tolerance_passes():
    mask = binary()
    mask[4, 5:15] = 140  # a ring of compression noise on the edge: 10 / 480 pixels
    assert mask_value_problem(mask, lossy=True, threshold=128, jpeg_tolerance=0.05) is None
    assert mask_value_problem(mask, lossy=False, threshold=128, jpeg_tolerance=0.05) is not None
    assert mask_value_problem(mask, lossy=True, threshold=128, jpeg_tolerance=0.01) is not None


def test_published_split_problems_and_counts(tmp_path):
    root = clean(tmp_path, 5, mask_ext=".png")
    (root / "train.txt").write_text("im00\nim01\nim02\nghost\n")
    (root / "test.txt").write_text("im03\n")
    report = check_dataset(KvasirInstrument, root=root)
    messages = dict(report.problems)
    assert report.counts == {"train": 3, "test": 1, "all": 5}
    assert "ghost" in messages[str(root / "train.txt")]
    assert "not listed" in messages[str(root / "images" / "im04.jpg")]


def test_missing_root_is_an_error_not_a_report(tmp_path):
    with pytest.raises(DatasetError, match="DELBENCH_KVASIR_SEG_ROOT"):
        check_dataset(KvasirSEG, root=None)
    with pytest.raises(DatasetError, match="images/<stem>"):
        check_dataset(KvasirSEG, root=tmp_path)


def test_generic_datasets_are_checked_through_their_interface():
    report = check_dataset(delbench.get_dataset("synthetic_polyp_seg"), num_train=6, num_test=3, image_size=16)
    assert report.ok and report.counts == {"train": 6, "test": 3} and report.files_checked == 9


class _Flaky(Dataset):
    name = "flaky"
    roles = ("segmentation",)
    splits = ("all",)

    def __init__(self, *, split="all"):
        pass

    def __len__(self):
        return 3

    def __getitem__(self, index):
        if index == 1:
            raise DatasetError("cannot read image /data/x/1.png: broken")
        mask = np.zeros((4, 4), np.uint8)
        mask[0, 0] = 2 if index == 2 else 1
        return {"image": np.zeros((4, 4, 3), np.uint8), "mask": mask, "id": f"x/{index}.png"}


def test_generic_problems_carry_item_ids():
    report = check_dataset(_Flaky)
    assert report.problems == [("all[1]", "cannot read image /data/x/1.png: broken"),
                               ("x/2.png", "mask values are not in {0, 1}")]
    assert isinstance(report, DataCheckReport) and report.counts == {"all": 3}


def test_split_that_cannot_be_made_is_a_problem_not_a_crash(tmp_path):
    from delbench_plugins.datasets.endoscopy_pools import KvasirCapsule

    for frame in range(3):
        write_image(tmp_path / "labelled_images" / "Erosion" / f"0123456789abcdef_{frame}.jpg", size=(8, 8))
    report = check_dataset(KvasirCapsule, root=tmp_path)
    assert report.counts == {"all": 3} and report.files_checked == 3
    assert report.problems == [(str(tmp_path), "cannot make the train/test split: a split by group needs at "
                                               "least two groups, found 1")]
