"""benchmarks/diagnostics/training_sets.py on the regression protocol's tiny pool: the training
sets are what they say, and the scores are those of the protocol's own code (deterministic)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def diagnostic_module():
    spec = importlib.util.spec_from_file_location("training_sets", ROOT / "benchmarks/diagnostics/training_sets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def diagnostic():
    return diagnostic_module()


@pytest.fixture(scope="module")
def metadata():
    from delbench_plugins.datasets.synthetic import SyntheticEndoscopy

    return SyntheticEndoscopy(num_frames=400, frames_per_sequence=40, scene_length=10, image_size=16, seed=1).metadata()


def test_one_kind_draws_frames_of_that_kind_once(diagnostic, metadata):
    blur = diagnostic.one_kind(metadata, "motion_blur", 5)
    assert blur.size == 5 and (metadata["invalid_type"][blur] == "motion_blur").all()
    assert np.array_equal(blur, diagnostic.one_kind(metadata, "motion_blur", 5))
    every = diagnostic.one_kind(metadata, "motion_blur", 10_000)  # fewer in the pool: all of them
    assert np.array_equal(every, np.flatnonzero(metadata["invalid_type"] == "motion_blur"))
    valid = diagnostic.one_kind(metadata, "valid", 30)
    assert (metadata["kind"][valid] != "invalid").all()
    with pytest.raises(SystemExit, match="no frame of kind 'sharp'"):
        diagnostic.one_kind(metadata, "sharp", 5)
    clean = diagnostic.one_kind(metadata, "clean", 5)
    assert np.array_equal(clean, np.flatnonzero(metadata["kind"] != "invalid"))


def test_coverage_sets_are_the_coverage_references():
    from delbench_plugins.datasets.synthetic import SyntheticEndoscopy

    pool = SyntheticEndoscopy(num_frames=2000, image_size=16, seed=1)
    metadata = pool.metadata()
    spread, packed = (diagnostic_module().one_kind(metadata, name, 100, pool) for name in ("spread", "packed"))
    assert spread.size == packed.size == 100 and (metadata["kind"][spread] != "invalid").all()
    assert np.unique(metadata["scene_id"][spread]).size > 5 * np.unique(metadata["scene_id"][packed]).size


def test_mixture_holds_the_valid_fraction_and_only_the_asked_invalid_types(diagnostic, metadata):
    mix = diagnostic.mixture(metadata, 0.25, ["dark", "bubbles"], seed=3, size=40)
    kind = metadata["kind"][mix]
    assert mix.size == 40 and (kind != "invalid").sum() == 10
    assert set(metadata["invalid_type"][mix][kind == "invalid"]) <= {"dark", "bubbles"}
    assert not np.array_equal(mix, diagnostic.mixture(metadata, 0.25, ["dark", "bubbles"], seed=4, size=40))
    with pytest.raises(SystemExit, match="lower --set-size"):
        diagnostic.mixture(metadata, 1.0, None, seed=0, size=10_000)


def test_cli_scores_training_sets_with_the_protocol(diagnostic, capsys):
    argv = ["--protocol", str(ROOT / "benchmarks/regression.py"), "--seeds", "0", "--set-size", "6",
            "--sets", "valid,init", "--mix", "0.5"]
    lines = diagnostic.main(argv)
    assert [line.get("set", line.get("mix_valid")) for line in lines] == ["valid", "init", 0.5]
    assert all(0.0 <= line["score"] <= 100.0 for line in lines)
    assert all(line["scores"] == {"synthetic_polyp_seg/segmentation": line["score"]} for line in lines)
    again = diagnostic.main(argv[:-4] + ["--sets", "valid"])
    assert again[0]["score"] == lines[0]["score"]  # same seed, same training set: same score
    assert capsys.readouterr().out.count("\n") == 4


def test_cli_starts_from_the_protocols_warm_up(diagnostic):
    argv = ["--protocol", str(ROOT / "benchmarks/regression.py"), "--seeds", "0,1", "--set-size", "6",
            "--sets", "init", "--start", "warmup"]
    fresh, warm = diagnostic.main(argv[:-2]), diagnostic.main(argv)
    assert [line["start"] for line in warm] == ["warmup", "warmup"]
    # the warm-up is seeded by itself: with nothing trained after it, every seed scores alike
    assert warm[0]["score"] == warm[1]["score"]
    assert fresh[0]["score"] != fresh[1]["score"]  # fresh weights follow the seed (measured 46.04, 46.66)
    assert warm[0]["score"] not in (fresh[0]["score"], fresh[1]["score"])  # and are not the warm-up (47.8)


def test_a_protocol_that_pins_the_initial_weights_starts_every_seed_from_them(diagnostic):
    argv = ["--protocol", str(ROOT / "benchmarks/regression.py"), "--seeds", "0,1", "--set-size", "6",
            "--sets", "init", "--cfg-options", "pretrain.init_seed=1"]
    pinned = diagnostic.main(argv)
    assert pinned[0]["score"] == pinned[1]["score"]  # nothing trained: both seeds score the one encoder
    fresh = diagnostic.main(argv[:-2])
    assert pinned[0]["score"] == fresh[1]["score"]  # ... which seed 1 draws when nothing is pinned
    varied = diagnostic.main(argv[:-2] + ["--vary", "init", "--cfg-options", "pretrain.init_seed=1"])
    assert [line["score"] for line in varied] == [line["score"] for line in fresh]  # --vary init overrides the pin
