from pathlib import Path

from delbench.protocol import SelectorSpec, load_protocol
from delbench.run import plan_cells

SMOKE = Path(__file__).resolve().parent.parent / "benchmarks" / "smoke.py"
TINY = Path(__file__).resolve().parent / "configs" / "tiny.py"


def test_selector_labels_are_readable_and_distinct():
    assert SelectorSpec("meddel").label == "meddel"
    assert SelectorSpec("meddel", {"center": True, "eps": 0.9}).label == "meddel[center=true,eps=0.9]"
    long = SelectorSpec("meddel", {"n_clusters": list(range(30))}).label
    assert long.startswith("meddel@") and len(long) == len("meddel@") + 8


def test_smoke_plan_has_one_cell_per_selection_and_unique_keys():
    protocol, _ = load_protocol(SMOKE)
    cells = plan_cells(protocol)
    expected = sum(len(protocol.selector_ratios(s)) * len(protocol.selector_seeds(s))
                   for s in protocol.selectors) * len(protocol.tasks)
    assert len(cells) == expected
    assert len({c.key for c in cells}) == len(cells)
    assert {"full|ratio=1|seed=0|polyp_centre0/segmentation",
            "meddel[center=true]|ratio=0.05|seed=0|polyp_centre3/segmentation",
            "anti_oracle|ratio=0.05|seed=1|polyp_centre0/segmentation"} <= {c.key for c in cells}


def test_a_pinned_init_seed_gives_every_cell_the_same_initial_encoder():
    import torch

    from delbench.run.context import seed_everything
    from delbench.run.pretrain import initial_backbone

    pinned, _ = load_protocol(TINY, {"pretrain.init_seed": 3})
    free, _ = load_protocol(TINY)
    weights = []
    for cell_seed in (0, 1):
        seed_everything(cell_seed)
        before = torch.get_rng_state()
        weights.append(initial_backbone(pinned).encoder.blocks[0].attn.qkv.weight.detach().clone())
        assert torch.equal(torch.get_rng_state(), before)  # the cell's own draws are untouched
        seed_everything(cell_seed)
        weights.append(initial_backbone(free).encoder.blocks[0].attn.qkv.weight.detach().clone())
    pinned_0, free_0, pinned_1, free_1 = weights
    assert torch.equal(pinned_0, pinned_1)
    assert not torch.equal(free_0, free_1) and not torch.equal(pinned_0, free_0)
