from pathlib import Path

import pytest

from delbench.errors import ConfigError, DelbenchError
from delbench.protocol import load_protocol, protocol_from_dict

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "benchmarks" / "smoke.py"


def test_smoke_protocol_loads_with_inheritance():
    protocol, _ = load_protocol(SMOKE)
    assert protocol.name == "smoke"
    assert protocol.pretrain.budget == "compute_matched"  # from _base_
    assert {s.name for s in protocol.selectors} >= {"full", "random", "meddel"}
    assert set(protocol.ratios) >= {0.05, 1.0}


def test_cfg_options_override_and_change_the_hash():
    base, _ = load_protocol(SMOKE)
    changed, _ = load_protocol(SMOKE, {"pretrain.reference_epochs": 3, "seeds": [0, 1]})
    assert changed.pretrain.reference_epochs == 3 and changed.seeds == (0, 1)
    assert changed.sha256 != base.sha256
    assert load_protocol(SMOKE)[0].sha256 == base.sha256  # stable


def test_runtime_options_do_not_change_the_hash():
    base, _ = load_protocol(SMOKE)
    assert load_protocol(SMOKE, {"runtime.cache_dir": "/elsewhere"})[0].sha256 == base.sha256


def test_compute_matched_gives_equal_steps_epoch_matched_equal_epochs():
    protocol, _ = load_protocol(SMOKE)
    n = 4000
    steps = {r: protocol.pretrain.steps(n, round(r * n)) for r in (0.05, 0.2, 1.0)}
    assert len(set(steps.values())) == 1
    assert protocol.pretrain.epochs(n, 200) == pytest.approx(20 * protocol.pretrain.epochs(n, 4000))
    epoch_matched, _ = load_protocol(SMOKE, {"pretrain.budget": "epoch_matched", "pretrain.reference_epochs": 4,
                                             "pretrain.batch_size": 16})
    assert epoch_matched.pretrain.steps(n, 200) == 50 and epoch_matched.pretrain.steps(n, 4000) == 1000
    assert epoch_matched.pretrain.epochs(n, 200) == epoch_matched.pretrain.epochs(n, 4000) == 4.0


def test_paper_compute_matched_epochs():
    # MedDEL: 200 epochs at 100 % → 4,000 epochs at 5 % with the same number of steps
    raw = load_protocol(SMOKE)[1].to_dict()
    raw["pretrain"].update(reference_epochs=200, batch_size=16)
    protocol = protocol_from_dict(raw)
    n = 88282
    assert protocol.pretrain.epochs(n, round(0.05 * n)) == pytest.approx(4000, rel=1e-3)
    assert protocol.pretrain.epochs(n, round(0.5 * n)) == pytest.approx(400, rel=1e-3)


@pytest.mark.parametrize("override, message", [
    ({"pretrain.budget": "wallclock"}, "pretrain.budget"),
    ({"ratios": [0.0, 0.5]}, "ratios must be in"),
    ({"normdel.alpha": -1}, "alpha"),
    ({"unknown_key": 1}, "unknown top-level"),
    ({"pretrain.epochs": 4}, "unknown key"),
    ({"seeds": []}, "seeds"),
    ({"selectors": [{"name": "random", "ratios": []}]}, "selectors\\[0\\].ratios"),
])
def test_invalid_settings_fail_early(override, message):
    with pytest.raises(ConfigError, match=message):
        load_protocol(SMOKE, override)


@pytest.mark.parametrize("override, message", [
    ({"tasks": [{"name": "segmentation", "dataset": {"name": "hyperkvasir"}}]},
     r"tasks\[0\].dataset \(hyperkvasir\): the dataset has roles \['pool', 'classification'\], "
     r"but task 'segmentation' needs the role 'segmentation'"),
    ({"pool": {"name": "synthetic_polyp_seg"}},
     r"pool \(synthetic_polyp_seg\): the dataset has roles \['segmentation'\], but the pool needs the role 'pool'"),
])
def test_a_dataset_without_the_role_is_refused_when_the_protocol_loads(override, message):
    with pytest.raises(ConfigError, match=message):
        load_protocol(SMOKE, override)


def test_checkpoint_epoch_steps_round_up_like_the_schedule():
    protocol, _ = load_protocol(SMOKE, {"pretrain.budget": "epoch_matched", "pretrain.reference_epochs": 1,
                                        "pretrain.batch_size": 4})
    # 10 items, batch 4: one epoch ends at step 3, as the epoch-matched schedule of 1 epoch does
    assert protocol.pretrain.steps_at_epoch(1, 10) == protocol.pretrain.steps(100, 10) == 3
    assert protocol.pretrain.steps_at_epoch(0.1, 10) == protocol.pretrain.steps_at_epoch(0.2, 10) == 1


VALIDITY = ROOT / "benchmarks" / "validity.py"


def test_selectors_may_run_more_seeds_than_the_protocol():
    from delbench.run import plan_cells
    protocol, _ = load_protocol(ROOT / "benchmarks" / "smoke.py")
    seeds = {s.name: protocol.selector_seeds(s) for s in protocol.selectors}
    assert seeds["oracle"] == seeds["packed_valid"] == (0, 1)
    assert seeds["meddel"] == seeds["optidel"] == protocol.seeds == (0,)
    cells = plan_cells(protocol)
    assert len(cells) == (1 + 5 * 2 + 13) * 2  # full, five references with 2 seeds, 13 selectors, on two sets
    assert len({c.key for c in cells}) == len(cells)
    assert "seeds" not in protocol.to_dict()["selectors"][0]  # unset: the hash of older protocols holds
    assert protocol.to_dict()["selectors"][1]["seeds"] == [0, 1]


@pytest.mark.parametrize("seeds", [[0.5], [], "0", [1, 1]])
def test_selector_seeds_are_validated_naming_the_selector(seeds):
    with pytest.raises(ConfigError, match=r"selectors\[1\]\.seeds"):
        load_protocol(VALIDITY, {"selectors": [dict(name="oracle"), dict(name="random", seeds=seeds)]})


def test_significance_is_a_protocol_setting_apart_from_normdel_alpha():
    base, _ = load_protocol(SMOKE)
    assert base.significance == 0.05 and base.alpha == 1.0
    assert "significance" not in base.to_dict()  # the default leaves every existing config_sha256 unchanged
    strict, _ = load_protocol(SMOKE, {"statistics.significance": 0.01})
    assert strict.significance == 0.01 and strict.to_dict()["significance"] == 0.01
    assert strict.sha256 != base.sha256 and strict.alpha == base.alpha
    with pytest.raises(ConfigError, match=r"statistics\.significance"):
        load_protocol(SMOKE, {"statistics.significance": 0.7})
    with pytest.raises(ConfigError, match="did you mean 'significance'"):
        load_protocol(SMOKE, {"statistics.signifcance": 0.01})


def test_init_seed_is_hashed_when_set_and_validated():
    base, _ = load_protocol(SMOKE, {"pretrain.init_seed": None})
    assert base.pretrain.init_seed is None and "init_seed" not in base.to_dict()["pretrain"]
    pinned, _ = load_protocol(SMOKE, {"pretrain.init_seed": 0})
    assert pinned.pretrain.init_seed == 0 and pinned.to_dict()["pretrain"]["init_seed"] == 0
    assert pinned.sha256 != base.sha256
    for bad in (-1, 0.5, "0"):
        with pytest.raises(ConfigError, match=r"pretrain\.init_seed"):
            load_protocol(SMOKE, {"pretrain.init_seed": bad})


@pytest.mark.parametrize("path", [SMOKE, ROOT / "benchmarks" / "validity.py", ROOT / "benchmarks" / "regression.py",
                                  ROOT / "tests" / "configs" / "tiny.py"])
def test_protocol_json_reads_back_to_the_same_protocol(path):
    """run.json and a submission's config.json hold Protocol.to_dict(): reading it back gives the same protocol,
    validated again, with or without the plugins (a verifier may lack a submitter's selector)."""
    import json

    from delbench.protocol import protocol_from_json

    protocol, _ = load_protocol(path, {"timeouts.select": 60, "pretrain.checkpoint_every": 7, "pretrain.init_seed": 2})
    record = json.loads(json.dumps(protocol.to_dict()))
    assert protocol_from_json(record) == protocol
    assert protocol_from_json(record, plugins=False).sha256 == protocol.sha256
    unknown = dict(record, selectors=[{"name": "not_installed", "params": {"x": 1}, "ratios": None}])
    assert protocol_from_json(unknown, plugins=False).selectors[0].name == "not_installed"
    with pytest.raises(DelbenchError, match="unknown selector 'not_installed'"):
        protocol_from_json(unknown)
    with pytest.raises(ConfigError, match="unknown"):
        protocol_from_json(dict(record, code="__import__('os')"), plugins=False)
