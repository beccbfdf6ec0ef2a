"""Pre-training pools (HyperKvasir, Kvasir-Capsule, GastroVision, DataDEL) and image_folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import delbench
from delbench.errors import ConfigError, DatasetError
from delbench_plugins.lib.discovery import root_env_var
from delbench_plugins.datasets.image_folder import ImageFolder
from delbench_plugins.datasets.endoscopy_pools import DataDEL, GastroVision, HyperKvasir, KvasirCapsule
from fixtures_layouts import VIDEOS, make_capsule, make_gastrovision, make_hyperkvasir, write_image


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DELBENCH_CACHE_DIR", str(tmp_path / "cache"))
    for cls in (HyperKvasir, KvasirCapsule, GastroVision, DataDEL, ImageFolder):
        monkeypatch.delenv(root_env_var(cls.name), raising=False)


def test_hyperkvasir_pool_and_classification_splits(tmp_path):
    root = make_hyperkvasir(tmp_path / "hk")
    pool = HyperKvasir(root=root, split="all", image_size=8)
    assert len(pool) == 15 + 7 and delbench.get_dataset("hyperkvasir") is HyperKvasir
    assert pool.class_names == ("cecum", "polyps", "pylorus") and pool.num_classes == 3
    meta = pool.metadata()
    assert (meta["part"] == "unlabeled").sum() == 7
    assert set(meta["tract"][meta["part"] == "labeled"]) == {"lower-gi-tract", "upper-gi-tract"}
    assert sorted(pool.labels().tolist()) == [-1] * 7 + [0] * 5 + [1] * 6 + [2] * 4
    train, test = HyperKvasir(root=root, split="train"), HyperKvasir(root=root, split="test")
    assert len(train) + len(test) == 15  # only labelled images are split
    test_labels = sorted(test.labels().tolist())
    assert test_labels == [0, 1, 2]  # round(0.2 × 5) = 1, round(0.2 × 6) = 1, round(0.2 × 4) = 1
    item = test[0]
    assert "label" in item and item["image"].shape == (12, 12, 3)
    assert HyperKvasir(root=root, split="train", parts=("labeled",)).split_sha256 == train.split_sha256


def test_hyperkvasir_parts_and_official_split(tmp_path):
    root = make_hyperkvasir(tmp_path / "hk")
    assert len(HyperKvasir(root=root, split="all", parts=("unlabeled",))) == 7
    with pytest.raises(ConfigError, match="labelled"):
        HyperKvasir(root=root, split="train", parts=("unlabeled",))
    names = sorted(p.name for p in (root / "labeled-images").rglob("*.jpg"))
    csv = tmp_path / "2_fold_split.csv"
    csv.write_text("file-name;class-name;split-index\n"
                   + "".join(f"{n};x;{i % 2}\n" for i, n in enumerate(names)))
    test = HyperKvasir(root=root, split="test", official_split_csv=csv)
    assert sorted(Path(test.item_id(i)).name for i in range(len(test))) == names[1::2]
    assert test.plan.method == "official"


def test_hyperkvasir_missing_part_names_layout(tmp_path):
    root = make_hyperkvasir(tmp_path / "hk")
    import shutil
    shutil.rmtree(root / "unlabeled-images")
    with pytest.raises(DatasetError, match="unlabeled-images"):
        HyperKvasir(root=root, split="all")


def test_kvasir_capsule_video_ids_and_video_wise_split(tmp_path):
    root = make_capsule(tmp_path / "kc")
    pool = KvasirCapsule(root=root, split="all")
    assert len(pool) == 20 and pool.class_names == ("Erosion", "Normal clean mucosa")
    assert set(pool.metadata()["sequence_id"]) == set(VIDEOS)
    train, test = KvasirCapsule(root=root, split="train"), KvasirCapsule(root=root, split="test")
    train_videos, test_videos = set(train.metadata()["sequence_id"]), set(test.metadata()["sequence_id"])
    assert len(test) == 4 and len(test_videos) == 1 and not train_videos & test_videos
    assert train.plan.details["grouped_by"] == "sequence_id"
    framewise = KvasirCapsule(root=root, split="test", split_by_video=False)
    assert framewise.split_sha256 != test.split_sha256


def test_kvasir_capsule_official_split(tmp_path):
    root = make_capsule(tmp_path / "kc")
    names = sorted(p.name for p in (root / "labelled_images").rglob("*.jpg"))
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "split_0.csv").write_text("filename,label\n" + "".join(f"{n},x\n" for n in names[:12]))
    (tmp_path / "splits" / "split_1.csv").write_text("filename,label\n" + "".join(f"{n},x\n" for n in names[12:]))
    test = KvasirCapsule(root=root, split="test", official_split_dir=tmp_path / "splits")
    assert len(test) == 8 and test.plan.method == "official"
    swapped = KvasirCapsule(root=root, split="test", official_split_dir=tmp_path / "splits", test_fold=0)
    assert len(swapped) == 12


def test_gastrovision_class_folders_with_repeated_file_names(tmp_path):
    root = make_gastrovision(tmp_path / "gv")
    pool = GastroVision(root=root, split="all")
    ids = [pool.item_id(i) for i in range(len(pool))]
    assert len(ids) == len(set(ids)) == 15 and ids[0] == "Colon polyps/100H0000.jpg"
    assert pool.class_names == ("Colon polyps", "Esophagitis", "Normal stomach")
    assert sorted(GastroVision(root=root, split="test").labels().tolist()) == [0, 1, 2]


def test_image_outside_class_folder_is_a_problem(tmp_path):
    root = make_gastrovision(tmp_path / "gv")
    write_image(root / "stray.jpg")
    with pytest.raises(DatasetError, match=r"stray\.jpg.*class folder"):
        GastroVision(root=root, split="all")
    assert len(GastroVision(root=root, split="all", skip_unreadable=True)) == 15


def test_datadel_is_the_union_with_source_metadata(tmp_path, monkeypatch):
    base = tmp_path / "datadel"
    make_hyperkvasir(base / "hyperkvasir")
    make_capsule(base / "kvasir_capsule")
    make_gastrovision(base / "gastrovision")
    pool = DataDEL(root=base, image_size=8)
    assert len(pool) == 22 + 20 + 15 and pool.roles == ("pool",)
    meta = pool.metadata()
    assert {s: int((meta["source"] == s).sum()) for s in ("hyperkvasir", "kvasir_capsule", "gastrovision")} == \
        {"hyperkvasir": 22, "kvasir_capsule": 20, "gastrovision": 15}
    assert pool.item_id(0).startswith("gastrovision/")
    assert set(meta["sequence_id"][meta["source"] == "kvasir_capsule"]) == set(VIDEOS)
    assert "polyps" in set(meta["class_name"]) and pool[0]["image"].shape == (8, 8, 3)
    only = DataDEL(roots={"gastrovision": str(base / "gastrovision")}, sources=("gastrovision",))
    assert len(only) == 15
    monkeypatch.setenv("DELBENCH_GASTROVISION_ROOT", str(base / "gastrovision"))
    assert len(DataDEL(sources=("gastrovision",))) == 15
    with pytest.raises(DatasetError, match="DELBENCH_KVASIR_CAPSULE_ROOT"):
        DataDEL(sources=("kvasir_capsule",))
    with pytest.raises(ConfigError):
        DataDEL(root=base, sources=("imagenet",))


def test_image_folder_three_shapes(tmp_path):
    for i in range(4):
        write_image(tmp_path / "plain" / "sub" / f"{i}.png", seed=i)
    write_image(tmp_path / "plain" / "top.png")
    assert len(ImageFolder(root=tmp_path / "plain", split="all")) == 1
    assert len(ImageFolder(root=tmp_path / "plain", split="all", recursive=True)) == 5
    with pytest.raises(ConfigError):
        ImageFolder(root=tmp_path / "plain", split="train")

    seg = tmp_path / "seg"
    for i in range(5):
        write_image(seg / "img" / f"s{i}.jpg", size=12, seed=i)  # the size of the 12 × 12 masks
        mask = np.zeros((12, 12), np.uint8)
        mask[:6] = 1
        (seg / "lbl").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(seg / "lbl" / f"s{i}_mask.png")
    ds = ImageFolder(root=seg, images="img", masks="lbl", mask_suffix="_mask", split="all", mask_threshold=1)
    assert len(ds) == 5 and ds[0]["mask"].sum() == 72 and ds.class_names == ("background", "foreground")

    cls_root = tmp_path / "cls"
    for c in ("a", "b"):
        for i in range(5):
            write_image(cls_root / c / f"{i}.jpg", seed=i)
    train = ImageFolder(root=cls_root, classes=True, split="train")
    assert train.class_names == ("a", "b") and len(train) == 8 and sorted(set(train.labels())) == [0, 1]
    with pytest.raises(ConfigError):
        ImageFolder(root=cls_root, classes=True, masks="x")


def test_image_folder_env_root(tmp_path, monkeypatch):
    write_image(tmp_path / "x.png")
    monkeypatch.setenv("DELBENCH_IMAGE_FOLDER_ROOT", str(tmp_path))
    assert len(ImageFolder(split="all")) == 1


def test_kvasir_capsule_with_one_video_loads_as_a_pool(tmp_path):
    root = tmp_path / "kc"
    for cls in ("Erosion", "Normal clean mucosa"):
        for frame in range(3):
            write_image(root / "labelled_images" / cls / f"{VIDEOS[0]}_{frame + 10 * (cls == 'Erosion')}.jpg", size=8)
    pool = KvasirCapsule(root=root, split="all")
    assert len(pool) == 6 and set(pool.metadata()["sequence_id"]) == {VIDEOS[0]}
    assert "split" not in pool.metadata()  # no train/test split exists with one video
    with pytest.raises(ConfigError, match="two groups"):
        KvasirCapsule(root=root, split="train")
    assert len(KvasirCapsule(root=root, split="train", split_by_video=False)) == 4  # 3 - round(0.6) per class
    assert len(DataDEL(roots={"kvasir_capsule": str(root)}, sources=("kvasir_capsule",))) == 6


def test_grouped_split_record_does_not_claim_stratification(tmp_path):
    grouped = KvasirCapsule(root=make_capsule(tmp_path / "kc"), split="train")
    record = grouped.plan.record(grouped.name, grouped.version)
    assert record["grouped_by"] == "sequence_id" and "stratified_by" not in record
    framewise = KvasirCapsule(root=tmp_path / "kc", split="train", split_by_video=False)
    assert framewise.plan.details["stratified_by"] == "label" and "grouped_by" not in framewise.plan.details


def test_test_fold_is_checked_for_every_official_split(tmp_path):
    root = make_hyperkvasir(tmp_path / "hk")
    for bad in (2, -1, "x", True):
        with pytest.raises(ConfigError, match="test_fold"):
            HyperKvasir(root=root, split="all", test_fold=bad)
        with pytest.raises(ConfigError, match="test_fold"):
            KvasirCapsule(root=make_capsule(tmp_path / f"kc{bad}"), split="all", test_fold=bad)
    with pytest.raises(ConfigError, match="no official fold split"):
        GastroVision(root=make_gastrovision(tmp_path / "gv"), split="all", test_fold=0)
    assert HyperKvasir(root=root, split="all", test_fold=0).test_fold == 0


def test_plain_image_folder_has_only_split_all(tmp_path):
    from delbench.datacheck import check_dataset

    for i in range(5):
        write_image(tmp_path / "plain" / f"{i}.png", seed=i)
    pool = ImageFolder(root=tmp_path / "plain", split="all")
    assert pool.splits == ("all",) and ImageFolder.splits == ("train", "test", "all")
    assert pool.plan is None and pool.split_sha256 is None and "split" not in pool.metadata()
    report = check_dataset(ImageFolder, root=tmp_path / "plain")
    assert report.ok and report.counts == {"all": 5} and "split" not in report.details
