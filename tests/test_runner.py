from pathlib import Path

from delbench.config import SelectorSpec, load_protocol
from delbench.runner import plan_cells, selector_label

SMOKE = Path(__file__).resolve().parent.parent / "benchmarks" / "smoke.py"


def test_selector_labels_are_readable_and_distinct():
    assert selector_label(SelectorSpec("meddel")) == "meddel"
    assert selector_label(SelectorSpec("meddel", {"center": True, "eps": 0.9})) == "meddel[center=true,eps=0.9]"
    long = selector_label(SelectorSpec("meddel", {"n_clusters": list(range(30))}))
    assert long.startswith("meddel@") and len(long) == len("meddel@") + 8


def test_smoke_plan_has_one_cell_per_selection_and_unique_keys():
    protocol, _ = load_protocol(SMOKE)
    cells = plan_cells(protocol)
    expected = sum(len(protocol.selector_ratios(s)) * len(protocol.selector_seeds(s))
                   for s in protocol.selectors) * len(protocol.tasks)
    assert len(cells) == expected
    assert len({c.key for c in cells}) == len(cells)
    assert {"full|ratio=1|seed=0|synthetic_polyp_seg/segmentation",
            "meddel[center=true]|ratio=0.05|seed=0|synthetic_polyp_seg/segmentation",
            "anti_oracle|ratio=0.05|seed=4|synthetic_polyp_seg/segmentation"} <= {c.key for c in cells}
