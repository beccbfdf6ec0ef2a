"""OptiDEL: both proposer paths (classical, a tiny random SAM), hardness scoring, mosaic
geometry, the exact budget, determinism, provenance and tampering (derived subsets)."""
from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import delbench
from delbench.cli import main
from delbench.errors import ConfigError, SelectionError
from delbench.run.select import run_selector
from delbench.sdk.derived import DerivedImages, load_derived, pixel_sha256, read_png, verify_derived
from delbench.sdk.subsets import subset_size
from delbench.store import read_rows, verify_run
from delbench.testing import FakeBackbone, InMemoryDataset
from delbench_plugins.lib import region_proposals
from delbench_plugins.lib.region_proposals import ClassicalProposer, finalise_boxes, grow_box, sam_model_type
from delbench_plugins.selectors.optidel import (OptiDEL, assign_mosaics, mosaic_cells, near_duplicate_clusters,
                                                resize)

TINY = str(Path(__file__).parent / "configs" / "tiny.py")


def _disc_image(size=32, centre=(10, 20), radius=5, colour=(230, 220, 40), seed=0):
    """A mucosa-red noisy frame with one saturated yellow disc (the salient region)."""
    rng = np.random.default_rng(seed)
    image = np.clip(np.array([180, 80, 70]) + rng.normal(0, 3, (size, size, 3)), 0, 255)
    yy, xx = np.mgrid[:size, :size]
    image[(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2] = colour
    return image.astype(np.uint8)


def _pool(n=24, size=32):
    images = np.stack([_disc_image(size, centre=(8 + (i * 5) % 16, 8 + (i * 7) % 16), seed=i) for i in range(n)])
    return InMemoryDataset(images, [f"frame{i:03d}" for i in range(n)])


class BrightnessLoss:
    """A scoring model whose 'reconstruction loss' is the mean brightness plus the seed (by
    hand: hardness = mean over maskings j of brightness + seed + j)."""

    def __init__(self):
        self.seeds = []

    def reconstruction_loss(self, images, *, seed):
        self.seeds.append(seed)
        return np.asarray(images, np.float64).mean(axis=(1, 2, 3)) / 255.0 + seed


# --- proposers --------------------------------------------------------------------------------
def test_classical_proposer_finds_the_salient_disc_and_skips_dark_or_flat_frames():
    image = _disc_image(64, centre=(20, 40), radius=8)
    boxes, scores = ClassicalProposer(keep=3).propose(image[None])[0]
    assert boxes.shape[1] == 4 and 1 <= len(boxes) <= 3 and np.all(np.diff(scores) <= 0)
    x0, y0, x1, y1 = boxes[0]
    assert x0 <= 40 - 8 and x1 >= 40 + 8 and y0 <= 20 - 8 and y1 >= 20 + 8  # holds the whole disc
    assert (x1 - x0) == (y1 - y0) and (x1 - x0) * (y1 - y0) <= 0.8 * 64 * 64  # square image: square box, not whole
    dark = np.zeros((1, 64, 64, 3), np.uint8)
    flat = np.full((1, 64, 64, 3), 120, np.uint8)
    assert len(ClassicalProposer().propose(dark)[0][0]) == 0
    assert len(ClassicalProposer().propose(flat)[0][0]) == 0
    again = ClassicalProposer(keep=3).propose(image[None])[0]
    assert np.array_equal(again[0], boxes) and np.array_equal(again[1], scores)


def test_box_post_processing_grows_to_the_aspect_drops_whole_image_and_overlaps():
    assert grow_box(np.array([10, 10, 20, 14]), 64, 64).tolist() == [10, 7, 20, 17]  # square, same centre
    assert grow_box(np.array([0, 0, 2, 2]), 64, 64).tolist() == [0, 0, 8, 8]  # at least 1/8 of the side, inside
    # aspect 2 (8 × 4), then the 1/8 minimum (16 × 8) around the centre (62, 62), shifted up into the image
    assert grow_box(np.array([60, 60, 64, 64]), 64, 128).tolist() == [54, 56, 70, 64]
    boxes = np.array([[0, 0, 60, 60], [10, 10, 30, 30], [11, 11, 31, 31], [40, 40, 50, 50]])
    kept, scores = finalise_boxes(boxes, np.array([0.9, 0.5, 0.6, 0.1]), 64, 64, keep=3, max_area=0.8)
    assert kept.tolist() == [[11, 11, 31, 31], [40, 40, 50, 50]] and scores.tolist() == pytest.approx([0.6, 0.1])


def tiny_sam(size=32, seed=0):
    """A randomly initialised SAM built from the package's own model classes (no download)."""
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    dim = 32
    encoder = ImageEncoderViT(img_size=size, patch_size=8, embed_dim=dim, depth=1, num_heads=2, mlp_ratio=2,
                              out_chans=dim, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                              use_rel_pos=True, window_size=0, global_attn_indexes=())
    prompt = PromptEncoder(embed_dim=dim, image_embedding_size=(size // 8, size // 8), input_image_size=(size, size),
                           mask_in_chans=4)
    decoder = MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(depth=1, embedding_dim=dim,
                                                                                 mlp_dim=64, num_heads=2),
                          transformer_dim=dim, iou_head_depth=1, iou_head_hidden_dim=16)
    return Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder,
               pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()


#: thresholds a random SAM can pass (its predicted IoUs and masks are noise)
OPEN_SAM = dict(sam_points_per_side=4, sam_pred_iou_thresh=0.0, sam_stability_score_thresh=0.0, min_area=0.001,
                max_area=1.0)


def test_sam_proposer_batches_the_encoder_and_runs_the_package_mask_generator():
    pytest.importorskip("segment_anything")
    import torch
    from segment_anything import SamPredictor

    sam = tiny_sam()
    images = _pool(5).load_images(np.arange(5))
    proposer = region_proposals.SamProposer(sam, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                            min_area=0.001, max_area=1.0, batch_size=3)
    out = proposer.propose(images)
    assert len(out) == 5 and all(1 <= len(boxes) <= 3 for boxes, _ in out)
    for boxes, scores in out:
        assert boxes.dtype == np.int32 and np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= 32)
        assert np.all(boxes[:, 2:] > boxes[:, :2]) and np.all(np.diff(scores) <= 0)
    # the batched encoder gives each image the embedding SamPredictor computes for it alone
    predictor = SamPredictor(sam)
    predictor.set_image(images[4])
    with torch.inference_mode():  # (the images are at the encoder's size: no resizing)
        batch = torch.cat([sam.preprocess(torch.as_tensor(im).permute(2, 0, 1)[None]) for im in images[3:5]])
        assert torch.allclose(sam.image_encoder(batch)[1], predictor.features[0], atol=1e-5)
    again = proposer.propose(images)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(again, out))


def test_sam_model_type_is_read_from_the_checkpoint():
    class Shape:
        def __init__(self, *shape):
            self.shape = shape

    assert sam_model_type({"image_encoder.patch_embed.proj.weight": Shape(768, 3, 16, 16)}) == "vit_b"
    assert sam_model_type({"image_encoder.patch_embed.proj.weight": Shape(1280, 3, 16, 16)}) == "vit_h"
    with pytest.raises(ConfigError, match="sam_model_type"):
        sam_model_type({"image_encoder.patch_embed.proj.weight": Shape(32, 3, 8, 8)})


def test_optidel_with_a_sam_checkpoint_uses_sam_end_to_end(tmp_path, monkeypatch):
    pytest.importorskip("segment_anything")
    import torch

    monkeypatch.setitem(region_proposals.SAM_BUILDERS, "tiny", tiny_sam)
    checkpoint = tmp_path / "tiny_sam.pth"
    torch.save(tiny_sam(seed=1).state_dict(), checkpoint)
    pool = _pool(12)
    subset = run_selector(OptiDEL(), pool, 0.25, seed=0, backbone=FakeBackbone(), output_dir=tmp_path / "out",
                          params=dict(sam_checkpoint=str(checkpoint), sam_model_type="tiny", cache=False, **OPEN_SAM))
    method = subset.manifest["method"]
    assert method["proposer"]["proposer"] == "sam" and method["proposer"]["model_type"] == "tiny"
    assert not method["whole_frame_patches"] and subset.diagnostics["proposer"] == "sam"
    assert subset.size == 3 and len(subset.manifest["images"][0]["sources"]) == 4
    with pytest.raises(ConfigError, match="not found"):
        run_selector(OptiDEL(), pool, 0.25, seed=0, backbone=FakeBackbone(), output_dir=tmp_path / "out",
                     params=dict(sam_checkpoint=str(tmp_path / "missing.pth")))


# --- hardness, selection, mosaics ---------------------------------------------------------------
def test_hardness_is_the_mean_over_fixed_seed_maskings_and_the_hardest_are_kept(tmp_path):
    pool = _pool(24)
    scorer = BrightnessLoss()
    subset = run_selector(OptiDEL(), pool, 0.125, seed=0, backbone=scorer, output_dir=tmp_path,
                          params=dict(maskings=3, hardness_seed=5, duplicate_bits=0, cache=False))
    assert set(scorer.seeds) == {5, 6, 7}  # one call per masking, each from its fixed seed
    # by hand: every patch's hardness is its mean brightness + (5 + 6 + 7) / 3; the kept ones are the brightest
    candidates = []
    for index in range(24):
        image = pool[index]["image"]
        for box in ClassicalProposer(keep=3).propose(image[None])[0][0].tolist():
            x0, y0, x1, y1 = box
            candidates.append((resize(image[y0:y1, x0:x1], 32, 32).mean() / 255 + 6.0, index, box))
    expected = sorted(candidates, key=lambda c: -c[0])[:4 * subset.size]
    kept = sorted((s["index"], s["box"]) for image in subset.manifest["images"] for s in image["sources"])
    assert kept == sorted((i, b) for _, i, b in expected)
    assert subset.diagnostics["mean_hardness_kept"] == pytest.approx(np.mean([c[0] for c in expected]))


def test_timm_mae_scores_with_its_own_seeded_maskings(tmp_path):
    backbone = delbench.get_backbone("timm_mae")(image_size=32, patch_size=8, decoder_dim=32, decoder_depth=1,
                                                 decoder_heads=2, model_kwargs={"depth": 1})
    pool = _pool(8)
    first = run_selector(OptiDEL(), pool, 0.25, seed=0, backbone=backbone, output_dir=tmp_path, params={"cache": False})
    again = run_selector(OptiDEL(), pool, 0.25, seed=0, backbone=backbone, output_dir=tmp_path, params={"cache": False})
    assert first.sha256 == again.sha256 and first.size == 2
    assert first.manifest["method"]["hardness"]["model"] == backbone.fingerprint()


def test_mosaic_cells_tile_the_image():
    for height, width, grid in ((64, 64, 2), (63, 65, 2), (32, 48, 3)):
        cells = mosaic_cells(height, width, grid)
        cover = np.zeros((height, width), int)
        for x0, y0, x1, y1 in cells:
            cover[y0:y1, x0:x1] += 1
        assert len(cells) == grid * grid and np.all(cover == 1)
    assert mosaic_cells(64, 64, 2) == [(0, 0, 32, 32), (32, 0, 64, 32), (0, 32, 32, 64), (32, 32, 64, 64)]


def test_each_mosaic_is_its_sources_boxes_resized_into_their_cells(tmp_path):
    pool = _pool(24)
    subset = run_selector(OptiDEL(), pool, 0.25, seed=3, backbone=FakeBackbone(), output_dir=tmp_path,
                          params=dict(mosaic_size=4, cache=False))
    assert subset.size == subset_size(24, 0.25) == 6
    for entry in subset.manifest["images"]:
        pixels = read_png(subset.directory / entry["file"])
        assert pixels.shape == (32, 32, 3) and pixel_sha256(pixels) == entry["sha256"]
        assert [s["cell"] for s in entry["sources"]] == [list(c) for c in mosaic_cells(32, 32, 2)]
        for source in entry["sources"]:
            assert pool.item_id(source["index"]) == source["id"]
            x0, y0, x1, y1 = source["box"]
            cx0, cy0, cx1, cy1 = source["cell"]
            patch = resize(pool[source["index"]]["image"][y0:y1, x0:x1], cy1 - cy0, cx1 - cx0)
            assert np.array_equal(pixels[cy0:cy1, cx0:cx1], patch)
    nine = run_selector(OptiDEL(), pool, 0.25, seed=3, backbone=FakeBackbone(), output_dir=tmp_path,
                        params=dict(mosaic_size=9, cache=False))
    assert nine.size == 6 and all(len(i["sources"]) == 9 for i in nine.manifest["images"])
    with pytest.raises(ConfigError, match="square"):
        OptiDEL.check_params({"mosaic_size": 3})


@pytest.mark.parametrize("ratio", [1 / 24, 0.1, 0.25, 0.5, 1.0])
def test_exact_budget_in_images(tmp_path, ratio):
    subset = run_selector(OptiDEL(), _pool(24), ratio, seed=0, backbone=FakeBackbone(), output_dir=tmp_path,
                          params={"cache": False})
    assert subset.size == len(subset.manifest["images"]) == subset_size(24, ratio)
    assert sum(len(i["sources"]) for i in subset.manifest["images"]) == 4 * subset.size


def test_the_diversity_guard_never_puts_one_cluster_twice_in_a_mosaic():
    rng = np.random.default_rng(0)
    for _ in range(200):
        k = int(rng.integers(1, 12))
        counts = rng.integers(0, k + 1, size=40)  # no cluster has more than k patches
        counts[0] += 4 * k - counts.sum() if counts.sum() < 4 * k else 0
        labels = np.repeat(np.arange(40), counts)[: 4 * k]
        if labels.size < 4 * k or np.bincount(labels).max() > k:
            continue
        layout = assign_mosaics(labels, k, seed=int(rng.integers(100)))
        assert sorted(layout.ravel().tolist()) == list(range(4 * k))
        assert all(len(set(labels[row].tolist())) == 4 for row in layout)


def test_near_duplicate_clusters_follow_hamming_distance():
    base = np.uint64(0x0123456789ABCDEF)
    hashes = np.array([base, base ^ np.uint64(0b111), ~base, base ^ np.uint64(1)], dtype=np.uint64)
    assert near_duplicate_clusters(hashes, 3).tolist() == [0, 0, 2, 0]
    assert near_duplicate_clusters(hashes, 0).tolist() == [0, 1, 2, 3]


def test_at_most_k_patches_per_cluster_so_mosaics_stay_diverse(tmp_path):
    # 6 copies each of 4 frames: with near-duplicates merged, 4 clusters for 2 mosaics of 4
    pool = _pool(4)
    copies = InMemoryDataset(np.repeat(pool.images, 6, axis=0), [f"f{i:02d}" for i in range(24)])
    subset = run_selector(OptiDEL(), copies, 2 / 24, seed=0, backbone=FakeBackbone(), output_dir=tmp_path,
                          params={"cache": False})
    d = subset.diagnostics
    assert d["near_duplicate_clusters"] == 4 and d["guard_violations"] == 0 and d["guard_relaxed"] == 0
    for entry in subset.manifest["images"]:
        frames = {s["index"] // 6 for s in entry["sources"]}
        assert len(frames) == 4


# --- determinism, caching, provenance ------------------------------------------------------------
def test_deterministic_per_seed_and_cached_proposals_give_the_same_images(tmp_path, monkeypatch):
    monkeypatch.setenv("DELBENCH_CACHE_DIR", str(tmp_path / "cache"))
    pool = _pool(24)
    first = run_selector(OptiDEL(), pool, 0.25, seed=0, backbone=FakeBackbone(), output_dir=tmp_path / "a")
    assert first.diagnostics["cache"]["proposal_images_cached"] == 0
    cached = run_selector(OptiDEL(), pool, 0.25, seed=0, backbone=FakeBackbone(), output_dir=tmp_path / "b")
    assert cached.diagnostics["cache"]["proposal_images_cached"] == 24
    assert cached.sha256 == first.sha256 and cached.ids_sha256 == first.ids_sha256
    assert cached.diagnostics["stage_cost_seconds"]["proposal"] == pytest.approx(
        first.diagnostics["stage_cost_seconds"]["proposal"])
    other = run_selector(OptiDEL(), pool, 0.25, seed=1, backbone=FakeBackbone(), output_dir=tmp_path / "a")
    assert other.sha256 != first.sha256
    # the same patches, dealt into other mosaics
    def patches(subset):
        return sorted((s["index"], s["box"]) for i in subset.manifest["images"] for s in i["sources"])
    assert patches(other) == patches(first)


def test_scores_are_cached_per_model_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("DELBENCH_CACHE_DIR", str(tmp_path / "cache"))

    class Fingerprinted(BrightnessLoss):
        def fingerprint(self):
            return "model-a"

    pool = _pool(12)
    first = run_selector(OptiDEL(), pool, 0.25, seed=0, backbone=Fingerprinted(), output_dir=tmp_path)
    scorer = Fingerprinted()
    second = run_selector(OptiDEL(), pool, 0.25, seed=0, backbone=scorer, output_dir=tmp_path)
    assert not first.diagnostics["cache"]["scores_cached"] and second.diagnostics["cache"]["scores_cached"]
    assert scorer.seeds == [] and second.sha256 == first.sha256


def test_provenance_round_trip_and_tampered_or_missing_images(tmp_path):
    pool = _pool(24)
    subset = run_selector(OptiDEL(), pool, 0.25, seed=0, backbone=FakeBackbone(), output_dir=tmp_path,
                          params={"cache": False})
    assert subset.directory == tmp_path / subset.sha256 and not list(tmp_path.glob(".staging-*"))
    assert verify_derived(subset.directory, subset.sha256, pool_ids=pool.item_ids()) == []
    reloaded = load_derived(subset.directory, subset.sha256)
    assert reloaded.manifest == subset.manifest and reloaded.ids_sha256 == subset.ids_sha256
    assert np.array_equal(reloaded.indices, subset.indices)
    data, indices = subset.training_set(pool)
    assert isinstance(data, DerivedImages) and indices.tolist() == list(range(6))
    assert data.load_images(np.array([0, 5])).shape == (2, 32, 32, 3)
    # a changed pixel, a missing file, a reordered pool
    entry = subset.manifest["images"][0]
    path = subset.directory / entry["file"]
    pixels = read_png(path)
    pixels[0, 0, 0] ^= 1
    from PIL import Image
    Image.fromarray(pixels).save(path)
    problems = verify_derived(subset.directory, subset.sha256)
    assert len(problems) == 1 and entry["sha256"] in problems[0] and "pixels hash" in problems[0]
    with pytest.raises(SelectionError, match="does not match"):
        load_derived(subset.directory, subset.sha256)
    path.unlink()
    assert "missing" in verify_derived(subset.directory, subset.sha256)[0]
    assert verify_derived(subset.directory, "0" * 64)[0].endswith(f"!= recorded {'0' * 64}")
    assert "another pool" in verify_derived(subset.directory, pool_ids=pool.item_ids()[::-1])[-1]


def test_selector_output_is_checked_by_the_harness(tmp_path):
    class WrongCount(OptiDEL):
        name = "wrong_count"

        def choose(self, pool, k, *, seed, backbone, output_dir, **params):
            result = super().choose(pool, k, seed=seed, backbone=backbone, output_dir=output_dir, cache=False)
            result.images = result.images[:-1]
            return result

    with pytest.raises(SelectionError, match="DerivedSelection of 6 images"):
        run_selector(WrongCount(), _pool(24), 0.25, seed=0, backbone=FakeBackbone(), output_dir=tmp_path)
    with pytest.raises(SelectionError, match="output_dir"):
        run_selector(OptiDEL(), _pool(24), 0.25, seed=0, backbone=FakeBackbone())


# --- the harness: run, verify, report, select ------------------------------------------------------
@pytest.fixture(scope="module")
def optidel_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("optidel") / "run"
    code = main(["run", TINY, "--work-dir", str(work), "--no-progress", "--quiet", "--cfg-options",
                 "selectors=[{'name':'optidel','ratios':[0.1]},{'name':'random','ratios':[0.1]}]",
                 "runtime.cache_dir=" + str(work.parent / "cache")])
    assert code == 0
    return work


def test_run_pretrains_on_the_derived_images_and_records_them(optidel_run):
    rows = {r.selector: r for r in read_rows(optidel_run)}
    row = rows["optidel"]
    assert row.ok and row.n_selected == 12 and row.n_pool == 120
    derived = row.selection["derived"]
    manifest_path = optidel_run / derived["manifest"]
    assert manifest_path.parent.name == row.subset_sha256
    import hashlib
    assert hashlib.sha256(manifest_path.read_bytes()).hexdigest() == row.subset_sha256
    assert sum(derived["patch_sources"].values()) == 48
    composition = row.selection["composition"]
    assert sum(v["kept"] for v in composition.values()) == len(np.unique(
        [s["index"] for i in json.loads(manifest_path.read_text())["images"] for s in i["sources"]]))
    assert row.pretrain["steps"] == rows["random"].pretrain["steps"]  # compute-matched like any subset
    assert {"select", "pretrain", "task", "select_warmup", "select_proposal", "select_scoring",
            "select_synthesis"} <= set(row.time_s)
    report = (optidel_run / "report.md").read_text()
    assert "What the derived images were cut from" in report and "## Cost" in report
    summary = json.loads((optidel_run / "summary.json").read_text())
    assert summary["derived"][0]["proposer"] == "classical" and summary["derived"][0]["n_patches"] == 48
    assert main(["run", TINY, "--work-dir", str(optidel_run), "--resume", "--no-progress", "--quiet",
                 "--cfg-options", "selectors=[{'name':'optidel','ratios':[0.1]},{'name':'random','ratios':[0.1]}]",
                 "runtime.cache_dir=" + str(optidel_run.parent / "cache")]) == 0
    assert len(read_rows(optidel_run)) == 2


def test_verify_detects_an_altered_or_missing_derived_image(optidel_run, tmp_path, capsys):
    assert verify_run(optidel_run) == []
    copy = tmp_path / "copy"
    shutil.copytree(optidel_run, copy)
    image = sorted((copy / "derived").glob("*/*.png"))[0]
    from PIL import Image
    pixels = read_png(image)
    Image.fromarray(255 - pixels).save(image)
    capsys.readouterr()
    assert main(["verify", str(copy)]) == 1
    out = capsys.readouterr().out
    assert image.name in out and "pixels hash" in out
    image.unlink()
    assert any("missing" in p for p in verify_run(copy))


def test_a_submission_carries_the_derived_images_and_verify_checks_them(optidel_run, tmp_path, capsys):
    """``submit`` packs each derived selection's manifest and images; the archive verifies, and
    one altered image in a submitted copy is named."""
    selectors = "selectors=[{'name':'optidel','ratios':[0.1]},{'name':'random','ratios':[0.1]}]"
    reference = ["--protocol", TINY, "--cfg-options", selectors]
    archive = tmp_path / "sub.tar.gz"
    assert main(["submit", str(optidel_run), "--out", str(archive), *reference]) == 0
    import tarfile

    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert any(n.startswith("derived/") and n.endswith("/manifest.json") for n in names)
    assert sum(n.startswith("derived/") and n.endswith(".png") for n in names) == 12
    capsys.readouterr()
    assert main(["verify", str(archive), *reference]) == 0
    copy = tmp_path / "copy"
    shutil.copytree(optidel_run, copy)
    image = sorted((copy / "derived").glob("*/*.png"))[0]
    from PIL import Image
    Image.fromarray(255 - read_png(image)).save(image)
    altered = tmp_path / "altered.tar.gz"
    main(["submit", str(copy), "--out", str(altered), *reference])
    capsys.readouterr()
    assert main(["verify", str(altered), *reference]) == 1
    assert image.name in capsys.readouterr().out


def test_select_writes_the_images_and_prints_the_manifest_hash_twice_alike(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DELBENCH_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["select", "--dataset", "synthetic_endoscopy", "--selector", "optidel", "--ratio", "0.05",
            "--dataset-param", "num_frames=80", "image_size=32", "--backbone-param", "image_size=32", "patch_size=8",
            "decoder_dim=32", "decoder_depth=1", "decoder_heads=2", "model_kwargs={'depth': 1}",
            "--warmup-steps", "2", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    first = capsys.readouterr().out.split()[0]
    manifest = tmp_path / "out" / first / "manifest.json"
    import hashlib
    assert hashlib.sha256(manifest.read_bytes()).hexdigest() == first
    assert len(json.loads(manifest.read_text())["images"]) == 4 == len(list(manifest.parent.glob("*.png")))
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.split()[0] == first and "proposer: classical" in out
