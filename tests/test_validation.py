"""Every protocol key and plugin parameter is checked when the protocol loads: a bad one fails
in under a second, with one line naming the key, before anything is written to the work dir."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from delbench.cli import main
from delbench.protocol import load_protocol

TINY = str(Path(__file__).parent / "configs" / "tiny.py")
TASK = ("[{{'name': 'segmentation', 'dataset': {{'name': 'synthetic_polyp_seg', 'params': {dataset}}}, "
        "'params': {params}}}]")


@pytest.fixture(scope="module", autouse=True)
def _warm():
    """Load the protocol once first: what is timed is the checking, not importing mmengine
    and the plugins, which every command pays once."""
    load_protocol(TINY)


BAD_RUN_OPTIONS = [
    # (--cfg-options, words the single line must hold)
    ("selectors=[{'name':'meddel','ratios':[0.1],'params':{'bogus':1}}]",
     ["selectors[0] (meddel)", "unknown parameter 'bogus'", "valid:", "eps", "n_clusters"]),
    ("selectors=[{'name':'meddel','ratios':[0.1],'params':{'epss':0.5}}]",
     ["selectors[0] (meddel)", "'epss'", "did you mean 'eps'"]),
    ("selectors=[{'name':'meddel','ratios':[0.1],'params':{'eps':5}}]", ["selectors[0] (meddel)", "eps", "got 5"]),
    ("selectors=[{'name':'full','ratios':[0.5]}]", ["selectors[0] (full)", "ratio 1.0"]),
    (f"tasks={TASK.format(dataset={}, params={'epochs': -1})}", ["tasks[0] (segmentation)", "epochs", "-1"]),
    (f"tasks={TASK.format(dataset={'num_trian': 4}, params={})}",
     ["tasks[0].dataset (synthetic_polyp_seg)", "'num_trian'", "did you mean 'num_train'"]),
    ("embedding.warmup_steps=-5", ["embedding.warmup_steps", "-5"]),
    ("seeds=[0.7]", ["seeds", "0.7"]),
    ("seeds=['a']", ["seeds", "'a'"]),
    ("runtime.cach_dir=/tmp/x", ["runtime", "unknown key 'cach_dir'", "did you mean 'cache_dir'", "valid: cache_dir"]),
    ("backbone.params.decoder_dimm=32", ["backbone (timm_mae)", "'decoder_dimm'", "did you mean 'decoder_dim'"]),
    ("backbone.params.mask_ratio=1.5", ["backbone (timm_mae)", "mask_ratio", "1.5"]),
    ("pretrain.optimizer.learning_rate=0.1", ["pretrain.optimizer (timm_mae)", "'learning_rate'", "valid:", "lr"]),
    ("pool.params.num_frame=10", ["pool (synthetic_endoscopy)", "'num_frame'", "did you mean 'num_frames'"]),
    ("pool.params.invalid_fraction=1.0", ["pool (synthetic_endoscopy)", "invalid_fraction"]),
    ("ratios=['a']", ["ratios", "'a'"]),
]


@pytest.mark.parametrize("option, words", BAD_RUN_OPTIONS, ids=[o.split("=")[0] + str(i) for i, (o, _) in
                                                                enumerate(BAD_RUN_OPTIONS)])
def test_bad_setting_fails_fast_in_one_line_before_the_work_dir_exists(option, words, tmp_path, capsys):
    work = tmp_path / "run"
    started = time.perf_counter()
    code = main(["run", TINY, "--work-dir", str(work), "--no-progress", "--quiet", "--cfg-options", option])
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert elapsed < 1.0, f"took {elapsed:.2f} s"
    assert not work.exists()


@pytest.mark.parametrize("argv, words", [
    (["--selector", "meddel", "--set", "bogus=1"], ["--set (meddel)", "unknown parameter 'bogus'", "valid:"]),
    (["--selector", "random", "--set", "by=x"], ["--set (random)", "'by'", "valid: none"]),
    (["--selector", "stratified", "--dataset-param", "num_frame=10"],
     ["--dataset-param (synthetic_endoscopy)", "did you mean 'num_frames'"]),
])
def test_select_checks_its_parameters_before_building_the_pool(argv, words, tmp_path, capsys):
    out = tmp_path / "subset.npy"
    started = time.perf_counter()
    code = main(["select", "--dataset", "synthetic_endoscopy", "--ratio", "0.1", "--out", str(out), *argv])
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert all(word in err for word in words), err
    assert elapsed < 1.0 and not out.exists()


def test_data_check_checks_its_parameters(capsys):
    assert main(["data", "check", "kvasir_seg", "--root", ".", "--dataset-param", "mask_treshold=1"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean 'mask_threshold'" in err and "--dataset-param (kvasir_seg)" in err
