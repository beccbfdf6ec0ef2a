"""Endoscopy segmentation datasets on small fixtures built in each published layout."""
from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest

import delbench
from delbench.errors import ConfigError, DatasetError
from delbench.datacheck import check_dataset
from delbench.store import write_split_file
from delbench_plugins.datasets.endoscopy_segmentation import (
    CVC300,
    CVCClinicDB,
    CVCColonDB,
    EDD2020,
    ETISLarib,
    KvasirInstrument,
    KvasirSEG,
    KvasirSessile,
    PolypGen2021,
)
from delbench_plugins.lib.discovery import root_env_var
from delbench_plugins.lib.splits import seeded_test_ids, split_digest
from fixtures_layouts import (EDD2020_CLASSES, STEMS, edd2020_stem, make_edd2020, make_pairs, make_polypgen,
                              write_image, write_mask)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DELBENCH_CACHE_DIR", str(tmp_path / "cache"))
    for cls in (KvasirSEG, KvasirInstrument, KvasirSessile, CVCClinicDB, CVCColonDB, CVC300, ETISLarib,
                PolypGen2021, EDD2020):
        monkeypatch.delenv(root_env_var(cls.name), raising=False)


SIMPLE = [  # class, image folder, mask folder, image ext, mask ext, mask name rule
    (KvasirSEG, "images", "masks", ".jpg", ".jpg", lambda s: s),
    (KvasirSessile, "images", "masks", ".jpg", ".jpg", lambda s: s),
    (CVCColonDB, "images", "masks", ".png", ".png", lambda s: s),
    (CVC300, "images", "masks", ".png", ".png", lambda s: s),
    (CVCClinicDB, "Original", "Ground Truth", ".tif", ".tif", lambda s: s),
    (ETISLarib, "ETIS-LaribPolypDB", "GroundTruth", ".tif", ".tif", lambda s: f"p{s}"),
]


@pytest.mark.parametrize("cls,images,masks,iext,mext,rule", SIMPLE, ids=[c[0].name for c in SIMPLE])
def test_published_layout_loads_and_splits(tmp_path, cls, images, masks, iext, mext, rule):
    root = make_pairs(tmp_path / cls.name, images, masks, STEMS, image_ext=iext, mask_ext=mext, mask_name=rule)
    every = cls(root=root, split="all", image_size=16)
    train, test = cls(root=root, split="train", image_size=16), cls(root=root, split="test", image_size=16)
    assert len(every) == 10 and len(train) == 8 and len(test) == 2  # round(0.2 × 10)
    ids = [every.item_id(i) for i in range(len(every))]
    assert ids == sorted(f"{images}/{s}{iext}" for s in STEMS)
    assert set(train.item_id(i) for i in range(8)) | set(test.item_id(i) for i in range(2)) == set(ids)
    item = train[0]
    assert item["image"].shape == (16, 16, 3) and item["image"].dtype == np.uint8
    assert item["mask"].shape == (16, 16) and set(np.unique(item["mask"])) == {0, 1}
    assert cls.num_classes == 2 and len(cls.class_names) == 2
    assert delbench.get_dataset(cls.name) is cls
    assert train.split_sha256 == test.split_sha256 == every.split_sha256


def test_original_size_and_mask_alignment(tmp_path):
    root = make_pairs(tmp_path, "images", "masks", STEMS[:3])
    item = KvasirSEG(root=root, split="all")[1]
    assert item["image"].shape == (20, 24, 3)
    expected = np.zeros((20, 24), np.uint8)
    expected[2:9, 1:11] = 1  # box (1, 2, 11, 9) written for index 1
    np.testing.assert_array_equal(item["mask"], expected)


def test_seeded_split_is_deterministic_documented_and_recorded(tmp_path):
    root = make_pairs(tmp_path, "images", "masks", STEMS)
    a = KvasirSEG(root=root, split="train", split_seed=3)
    b = KvasirSEG(root=root, split="test", split_seed=3)
    other = KvasirSEG(root=root, split="train", split_seed=4)
    assert a.split_sha256 == b.split_sha256 != other.split_sha256
    # the documented rule, recomputed by hand: rank ids by sha256(f"{seed}\0{id}"), first 2 are test
    ids = sorted(f"images/{s}.jpg" for s in STEMS)
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"3\x00{i}".encode()).hexdigest())
    assert {b.item_id(i) for i in range(len(b))} == set(ranked[:2])
    train_ids = sorted(ranked[2:])
    payload = json.dumps({"train": train_ids, "test": sorted(ranked[:2])}, separators=(",", ":"))
    assert a.split_sha256 == hashlib.sha256(payload.encode()).hexdigest()
    split_file = write_split_file(a.split_record())
    record = json.loads(split_file.read_text())
    assert split_file.parent == tmp_path / "cache" / "splits"
    assert split_file.stat().st_mode & 0o777 == 0o644  # like every result file
    assert record["dataset"] == "kvasir_seg" and record["seed"] == 3 and record["fraction"] == 0.2
    assert record["train"] == train_ids and record["test"] == sorted(ranked[:2])
    assert record["sha256"] == a.split_sha256 and record["method"] == "seeded"


def test_building_a_dataset_writes_nothing(tmp_path):
    root = make_pairs(tmp_path / "data", "images", "masks", STEMS)
    before = sorted(p for p in tmp_path.rglob("*"))
    train = KvasirSEG(root=root, split="train")
    KvasirSEG(root=root, split="test")
    assert sorted(p for p in tmp_path.rglob("*")) == before  # no split file, no cache folder
    assert train.split_record()["sha256"] == train.split_sha256
    assert KvasirSEG(root=root, split="all").split_record() is None


def test_split_does_not_depend_on_file_creation_order(tmp_path):
    first = make_pairs(tmp_path / "a", "images", "masks", STEMS)
    second = make_pairs(tmp_path / "b", "images", "masks", list(reversed(STEMS)))
    assert KvasirSEG(root=first, split="all").split_sha256 == KvasirSEG(root=second, split="all").split_sha256


def test_kvasir_instrument_honours_published_split_files(tmp_path):
    root = make_pairs(tmp_path, "images", "masks", STEMS, mask_ext=".png")
    (root / "train.txt").write_text("\n".join(STEMS[3:]) + "\n")
    (root / "test.txt").write_text("\n".join(STEMS[:3]) + "\n\n")
    test = KvasirInstrument(root=root, split="test")
    assert [test.item_id(i) for i in range(len(test))] == [f"images/{s}.jpg" for s in STEMS[:3]]
    train = KvasirInstrument(root=root, split="train")
    assert len(train) == 7 and train.plan.method == "published"
    assert json.loads(write_split_file(train.split_record()).read_text())["method"] == "published"
    assert train.split_sha256 == split_digest([f"images/{s}.jpg" for s in STEMS[3:]],
                                              [f"images/{s}.jpg" for s in STEMS[:3]])


def test_kvasir_instrument_without_its_split_files_says_which(tmp_path):
    root = make_pairs(tmp_path, "images", "masks", STEMS, mask_ext=".png")
    (root / "train.txt").write_text("\n".join(STEMS) + "\n")
    with pytest.raises(DatasetError, match=r"test\.txt"):
        KvasirInstrument(root=root, split="train")


def test_split_list_naming_a_missing_image_is_a_problem(tmp_path):
    root = make_pairs(tmp_path, "images", "masks", STEMS, mask_ext=".png")
    (root / "train.txt").write_text("\n".join(STEMS[2:] + ["ghost"]) + "\n")
    (root / "test.txt").write_text("\n".join(STEMS[:2]) + "\n")
    with pytest.raises(DatasetError, match="ghost"):
        KvasirInstrument(root=root, split="train")


def test_root_from_environment_variable(tmp_path, monkeypatch):
    root = make_pairs(tmp_path, "images", "masks", STEMS[:4])
    monkeypatch.setenv("DELBENCH_KVASIR_SEG_ROOT", str(root))
    assert len(KvasirSEG(split="all")) == 4


def test_missing_root_names_parameter_variable_and_layout():
    with pytest.raises(DatasetError) as info:
        KvasirSEG(split="all")
    message = str(info.value)
    assert "params.root" in message and "--root" in message and "DELBENCH_KVASIR_SEG_ROOT" in message
    assert "images/<stem>" in message and "masks/<stem>" in message


def test_root_without_the_layout_says_what_is_expected(tmp_path):
    with pytest.raises(DatasetError, match=r"Original/<stem>.*Ground Truth"):
        CVCClinicDB(root=tmp_path, split="all")
    with pytest.raises(DatasetError, match="not a directory"):
        KvasirSEG(root=tmp_path / "nope", split="all")


def test_missing_mask_stops_the_run_unless_skipping_is_asked_for(tmp_path, caplog):
    root = make_pairs(tmp_path, "images", "masks", STEMS)
    (root / "masks" / "case04.jpg").unlink()
    write_mask(root / "masks" / "orphan.jpg")
    with pytest.raises(DatasetError, match=r"case04\.jpg.*no mask"):
        KvasirSEG(root=root, split="all")
    with caplog.at_level(logging.WARNING):
        ds = KvasirSEG(root=root, split="all", skip_unreadable=True)
    assert len(ds) == 9
    skipped = dict(ds.skipped)
    assert "no mask" in skipped[str(root / "images" / "case04.jpg")]
    assert "has no image" in skipped[str(root / "masks" / "orphan.jpg")]
    assert "case04.jpg" in caplog.text and "skipped 2 file(s)" in caplog.text


def test_corrupt_image_raises_with_path_or_is_skipped_and_recorded(tmp_path, caplog):
    root = make_pairs(tmp_path, "images", "masks", STEMS)
    bad = root / "images" / "case07.jpg"
    bad.write_bytes(bad.read_bytes()[:60])
    ds = KvasirSEG(root=root, split="all")  # lazy: nothing read yet
    index = [ds.item_id(i) for i in range(len(ds))].index("images/case07.jpg")
    with pytest.raises(DatasetError, match=r"case07\.jpg"):
        ds[index]
    with caplog.at_level(logging.WARNING):
        skipping = KvasirSEG(root=root, split="all", skip_unreadable=True)
    assert len(skipping) == 9 and [p for p, _ in skipping.skipped] == [str(bad)]
    assert "images/case07.jpg" not in [skipping.item_id(i) for i in range(len(skipping))]
    assert str(bad) in caplog.text


def test_zero_one_masks_need_mask_threshold_one(tmp_path):
    root = tmp_path
    write_image(root / "images" / "a.png")
    write_mask(root / "masks" / "a.png", values=(0, 1))
    assert KvasirSessile(root=root, split="all")[0]["mask"].sum() == 0
    assert KvasirSessile(root=root, split="all", mask_threshold=1)[0]["mask"].sum() == 8 * 6


def test_images_of_different_sizes_need_image_size_to_stack(tmp_path):
    write_image(tmp_path / "images" / "a.jpg", size=(24, 20))
    write_mask(tmp_path / "masks" / "a.jpg", size=(24, 20))
    write_image(tmp_path / "images" / "b.jpg", size=(30, 20))
    write_mask(tmp_path / "masks" / "b.jpg", size=(30, 20))
    with pytest.raises(DatasetError, match="image_size"):
        KvasirSEG(root=tmp_path, split="all").load_images(np.array([0, 1]))
    assert KvasirSEG(root=tmp_path, split="all", image_size=8).load_images(np.array([0, 1])).shape == (2, 8, 8, 3)


def test_bad_parameters_are_config_errors(tmp_path):
    root = make_pairs(tmp_path, "images", "masks", STEMS[:3])
    for bad in ({"split": "val"}, {"test_fraction": 1.0}, {"image_size": 0}, {"mask_threshold": 0}):
        with pytest.raises(ConfigError):
            KvasirSEG(root=root, **{"split": "all", **bad})


def test_cvc_clinicdb_variants(tmp_path):
    png = make_pairs(tmp_path / "c", "PNG/Original", "PNG/Ground Truth", STEMS[:4], image_ext=".png",
                     mask_ext=".png")
    ds = CVCClinicDB(root=png, split="all")
    assert ds.item_id(0) == "PNG/Original/case00.png" and len(ds) == 4
    with pytest.raises(DatasetError, match="variant 'tif'"):
        CVCClinicDB(root=png, split="all", variant="tif")
    with pytest.raises(ConfigError):
        CVCClinicDB(root=png, split="all", variant="jpeg")


def test_polypgen_centres_metadata_and_cross_centre_split(tmp_path):
    root = make_polypgen(tmp_path)
    every = PolypGen2021(root=root, split="all")
    assert len(every) == 19
    centres = every.metadata()["centre"]
    assert sorted(np.unique(centres).tolist()) == [1, 2, 3, 4, 5, 6] and (centres == 3).sum() == 4
    assert "data_C3/images_C3/C3_EndoCV2021_00489_.jpg" in [every.item_id(i) for i in range(19)]
    test = PolypGen2021(root=root, split="test", test_centres=(6,))
    train = PolypGen2021(root=root, split="train", test_centres=(6,))
    assert len(test) == 3 and set(test.metadata()["centre"]) == {6}
    assert len(train) == 16 and 6 not in set(train.metadata()["centre"])
    assert train.plan.method == "centres"
    subset = PolypGen2021(root=root, split="all", centres=(1, 2))
    assert len(subset) == 6
    with pytest.raises(ConfigError):
        PolypGen2021(root=root, split="train", centres=(1, 2), test_centres=(1, 2))
    with pytest.raises(ConfigError):
        PolypGen2021(root=root, split="train", test_centres=(7,))


def test_polypgen_missing_centre_folder(tmp_path):
    root = make_polypgen(tmp_path)
    import shutil
    shutil.rmtree(root / "data_C5")
    with pytest.raises(DatasetError, match="centre 5"):
        PolypGen2021(root=root, split="all")


def test_seeded_group_and_stratified_rules():
    ids = [f"v{g}_{i}" for g in range(5) for i in range(4)]
    groups = [i.split("_")[0] for i in ids]
    test = seeded_test_ids(ids, test_fraction=0.2, seed=0, groups=groups)
    assert len(test) == 4 and len({i.split("_")[0] for i in test}) == 1  # one whole video
    labels = [0] * 10 + [1] * 5 + [2] * 1 + [0] * 4
    test = seeded_test_ids(ids, test_fraction=0.2, seed=0, strata=labels)
    per_class = [sum(1 for i, l in zip(ids, labels) if i in test and l == c) for c in (0, 1, 2)]
    assert per_class == [3, 1, 0]  # round(0.2 × 14), round(0.2 × 5); a single item stays in train
    with pytest.raises(ConfigError):
        seeded_test_ids(ids, test_fraction=0.0, seed=0)


def test_mis_sized_mask_is_skipped_with_its_reason(tmp_path, caplog):
    root = make_pairs(tmp_path, "images", "masks", STEMS[:4])
    wrong = write_mask(root / "masks" / "case02.jpg", size=(30, 20))  # image is 24 × 20
    ds = KvasirSEG(root=root, split="all", image_size=16)  # lazy: the resize hides the mismatch
    assert len(ds) == 4
    with caplog.at_level(logging.WARNING):
        skipping = KvasirSEG(root=root, split="all", skip_unreadable=True, image_size=16)
    assert len(skipping) == 3 and "images/case02.jpg" not in [skipping.item_id(i) for i in range(3)]
    assert [p for p, _ in skipping.skipped] == [str(wrong)]
    assert "30×20" in skipping.skipped[0][1] and "24×20" in skipping.skipped[0][1]
    assert str(wrong) in caplog.text


def test_split_all_does_not_make_or_need_the_split_plan(tmp_path):
    root = make_pairs(tmp_path, "images", "masks", STEMS[:5], mask_ext=".png")
    (root / "train.txt").write_text("\n".join(STEMS[1:5] + ["ghost"]) + "\n")
    (root / "test.txt").write_text(STEMS[0] + "\n")
    every = KvasirInstrument(root=root, split="all")  # the split list's problem is not this split's
    assert len(every) == 5 and every.problems == [] and "plan" not in vars(every)
    assert every.metadata()["split"].tolist() == ["test"] + ["train"] * 4  # the plan, made on demand
    with pytest.raises(DatasetError, match="ghost"):
        KvasirInstrument(root=root, split="train")


# --- EDD2020: one mask file per class, read as a label map ---------------------------------
def _edd_box(mask_shape, box):
    x0, y0, x1, y1 = box
    region = np.zeros(mask_shape, bool)
    region[y0:y1, x0:x1] = True
    return region


def test_edd2020_published_layout_loads_as_a_label_map(tmp_path):
    root = make_edd2020(tmp_path / "edd", STEMS)
    every = EDD2020(root=root, split="all")
    assert delbench.get_dataset("edd2020") is EDD2020
    assert len(every) == 10 and every.item_ids() == sorted(f"originalImages/{edd2020_stem(s)}.jpg" for s in STEMS)
    assert every.class_names == ("background", *EDD2020_CLASSES) and every.num_classes == 6
    assert every.metadata()["classes"].tolist()[:4] == ["BE+suspicious", "suspicious", "HGD", "cancer+polyp"]
    for i in range(10):
        item = every[i]
        first = _edd_box(item["mask"].shape, (1 + i % 5, 2, 10 + i % 5, 9))
        expected = np.zeros(item["mask"].shape, np.uint8)
        expected[first] = i % 5 + 1
        if i % 3 == 0:  # the second class is later in the class list (or polyp→BE for i = 9)
            second = _edd_box(item["mask"].shape, (6, 4, 14, 12))
            later = (i + 1) % 5
            expected[second & ~first if later < i % 5 else second] = later + 1
        np.testing.assert_array_equal(item["mask"], expected)
    train, test = EDD2020(root=root, split="train"), EDD2020(root=root, split="test")
    assert len(train) == 8 and len(test) == 2 and train.plan.method == "seeded"


def test_edd2020_overlap_takes_the_later_class_of_the_list(tmp_path):
    root = make_edd2020(tmp_path, STEMS[:1])  # BE in (1, 2, 10, 9), suspicious in (6, 4, 14, 12)
    mask = EDD2020(root=root, split="all")[0]["mask"]
    assert mask[3, 2] == 1 and mask[5, 7] == 2 and mask[10, 12] == 2 and mask[0, 0] == 0


def test_edd2020_chosen_classes_and_binary(tmp_path):
    root = make_edd2020(tmp_path, STEMS)
    polyp = EDD2020(root=root, split="all", classes=("polyp",))
    assert polyp.class_names == ("background", "polyp") and polyp.num_classes == 2
    has_polyp = ["polyp" in c.split("+") for c in polyp.metadata()["classes"]]
    for i in range(10):
        assert polyp[i]["mask"].any() == has_polyp[i]
        assert set(np.unique(polyp[i]["mask"])) <= {0, 1}
    # a class not chosen never erases a chosen one where they overlap: item 6 is suspicious
    # in (2, 2, 11, 9) and HGD, later in the list, in (6, 4, 14, 12)
    suspicious = EDD2020(root=root, split="all", classes=("suspicious",))[6]["mask"]
    assert suspicious.sum() == 9 * 7
    # order is the class list's, whatever order they are given in
    assert EDD2020(root=root, split="all", classes=("polyp", "BE")).class_names == ("background", "BE", "polyp")
    merged = EDD2020(root=root, split="all", binary=True)
    assert merged.class_names == ("background", "lesion")
    for i in range(10):
        np.testing.assert_array_equal(merged[i]["mask"], (EDD2020(root=root, split="all")[i]["mask"] > 0))
    with pytest.raises(ConfigError, match="classes"):
        EDD2020(root=root, split="all", classes=("Polyp",))


def test_edd2020_missing_folder_names_the_layout(tmp_path):
    root = make_edd2020(tmp_path, STEMS[:2])
    import shutil
    shutil.rmtree(root / "masks")
    with pytest.raises(DatasetError, match=r"originalImages/<stem>\.jpg with masks/<stem>_<class>\.tif"):
        EDD2020(root=root, split="all")


def test_edd2020_naming_problems_are_reported_by_path(tmp_path):
    root = make_edd2020(tmp_path, STEMS[:4])
    composite = write_mask(root / "masks" / f"{edd2020_stem('case00')}_mask.tif")  # not a class
    orphan = write_mask(root / "masks" / "EDD2020_ghost_polyp.tif")
    (root / "masks" / f"{edd2020_stem('case01')}_suspicious.tif").unlink()  # case01's only mask
    report = check_dataset(EDD2020, root=root)
    problems = dict(report.problems)
    assert "does not follow" in problems[str(composite)]
    assert "has no image" in problems[str(orphan)]
    assert "no mask" in problems[str(root / "originalImages" / f"{edd2020_stem('case01')}.jpg")]
    assert len(report.problems) == 3 and report.counts["all"] == 3
    with pytest.raises(DatasetError, match="3 problem"):
        EDD2020(root=root, split="all")
    assert len(EDD2020(root=root, split="all", skip_unreadable=True)) == 3


def test_edd2020_data_check_and_corrupt_files(tmp_path):
    root = make_edd2020(tmp_path, STEMS)
    report = check_dataset(EDD2020, root=root)
    assert report.ok and report.counts == {"train": 8, "test": 2, "all": 10}
    assert report.files_checked == 10 + 14  # ten images, fourteen class masks
    bad = root / "originalImages" / f"{edd2020_stem('case05')}.jpg"
    bad.write_bytes(bad.read_bytes()[:60])
    wrong = write_mask(root / "masks" / f"{edd2020_stem('case06')}_HGD.tif", size=(30, 20))
    report = check_dataset(EDD2020, root=root)
    problems = dict(report.problems)
    assert set(problems) == {str(bad), str(wrong)} and "30×20" in problems[str(wrong)]
    ds = EDD2020(root=root, split="all")  # lazy: nothing is read yet
    with pytest.raises(DatasetError, match=edd2020_stem("case05")):
        ds[ds.item_ids().index(f"originalImages/{edd2020_stem('case05')}.jpg")]
