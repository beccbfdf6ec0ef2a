"""Every registered dataset, backbone and task meets its contract (``delbench.testing``), the
way timm tests every model of ``list_models()``; selectors are in test_selector_contract.py."""
from __future__ import annotations

from pathlib import Path

import pytest

import delbench
from delbench import discovery
from delbench.testing import (TinyBackbone, backbone_checks, check_backbone, dataset_checks, task_checks)
from fixtures_layouts import POOL_LAYOUTS, SEGMENTATION_LAYOUTS, STEMS, make_pairs

TINY_VIT = {"model": "vit_tiny_patch16_224", "image_size": 32, "patch_size": 8, "decoder_dim": 32,
            "decoder_depth": 1, "decoder_heads": 2, "model_kwargs": {"depth": 2}}
BACKBONE_PARAMS = {"timm_mae": TINY_VIT}
TASK_PARAMS = {"segmentation": {"epochs": 1, "batch_size": 8, "hidden_dim": 16},
               "classification": {"epochs": 1, "batch_size": 8}}


def _dataset_params(name: str, folder: Path) -> dict | None:
    """Small parameters for each built-in dataset; the real-data ones on fixture copies of
    their published layouts (tests/fixtures_layouts.py)."""
    if name == "synthetic_endoscopy":
        return {"num_frames": 60, "frames_per_sequence": 20, "scene_length": 5, "image_size": 16}
    if name == "synthetic_polyp_seg":
        return {"num_train": 8, "num_test": 4, "image_size": 16}
    if name in SEGMENTATION_LAYOUTS:
        return {"root": SEGMENTATION_LAYOUTS[name](folder, STEMS, (24, 20))}
    if name in POOL_LAYOUTS:
        return {"root": POOL_LAYOUTS[name](folder, 12)}
    if name == "datadel":
        for source, build in POOL_LAYOUTS.items():
            build(folder / source, 12)
        return {"root": folder}
    if name == "image_folder":  # the segmentation shape: train/test/all and masks
        return {"root": make_pairs(folder, "images", "masks", STEMS), "images": "images", "masks": "masks"}
    return None


def _builtin(kind: str) -> list[str]:
    registry = discovery.registries()[kind]
    return [name for name in registry.names() if registry.source(name).startswith("delbench_plugins.")]


def _cases(kind: str, checks) -> list[tuple[str, str]]:
    return [(name, check_name) for name in discovery.names(kind) for check_name, _ in checks(discovery.get(kind, name))]


@pytest.fixture(scope="module")
def dataset_params(tmp_path_factory):
    cache: dict[str, dict | None] = {}

    def params(name: str) -> dict | None:
        if name not in cache:
            cache[name] = _dataset_params(name, tmp_path_factory.mktemp(name))
        return cache[name]
    return params


def test_every_builtin_dataset_has_test_parameters(tmp_path):
    missing = [name for name in _builtin("dataset") if _dataset_params(name, tmp_path / name) is None]
    assert not missing, f"add contract-test parameters for {missing} to _dataset_params"


@pytest.mark.parametrize("dataset_name, check_name", _cases("dataset", dataset_checks))
def test_registered_dataset_meets_contract(dataset_name, check_name, dataset_params):
    params = dataset_params(dataset_name)
    if params is None:
        pytest.skip(f"no contract-test parameters for third-party dataset {dataset_name!r}")
    dict(dataset_checks(delbench.get_dataset(dataset_name), params=params))[check_name]()


@pytest.mark.parametrize("backbone_name, check_name", _cases("backbone", backbone_checks))
def test_registered_backbone_meets_contract(backbone_name, check_name):
    checks = dict(backbone_checks(delbench.get_backbone(backbone_name), params=BACKBONE_PARAMS.get(backbone_name)))
    checks[check_name]()


@pytest.mark.parametrize("task_name, check_name", _cases("task", task_checks))
def test_registered_task_meets_contract(task_name, check_name):
    dict(task_checks(delbench.get_task(task_name), params=TASK_PARAMS.get(task_name)))[check_name]()


def test_the_checkers_own_backbone_meets_the_contract():
    check_backbone(TinyBackbone)


def test_a_backbone_with_an_unusable_grid_size_fails_the_checker():
    class Incomplete(TinyBackbone):
        name = "incomplete"
        grid_size = None  # a backbone the segmentation head could not shape its logits for

    with pytest.raises(AssertionError, match="check_attributes failed for backbone 'incomplete'.*grid_size"):
        dict(backbone_checks(Incomplete))["check_attributes"]()


def test_a_dataset_that_writes_when_built_fails_the_checker(tmp_path):
    from delbench.testing import InMemoryDataset, check_dataset
    import numpy as np

    class Writer(InMemoryDataset):
        name = "writer"
        splits = ("all",)

        def __init__(self, *, split: str, root: str) -> None:
            (Path(root) / "side_effect.json").write_text("{}")
            super().__init__(np.zeros((2, 4, 4, 3), np.uint8))

    with pytest.raises(AssertionError, match="check_no_side_effects failed for dataset 'writer'.*side_effect"):
        check_dataset(Writer, params={"root": str(tmp_path)})
