"""Data-parallel pre-training under torchrun equals one process with the same global batch."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from delbench.errors import ConfigError
from delbench.sdk.distributed import World, sample_noise, world_from_env

HERE = Path(__file__).parent


def test_world_reads_only_the_torchrun_variables():
    assert world_from_env({}) == World(0, 1, 0)
    assert world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == World(3, 4, 1)
    with pytest.raises(ConfigError, match="inconsistent"):
        world_from_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ConfigError, match="integers"):
        world_from_env({"RANK": "x"})


def test_batch_slices_cover_the_global_batch_and_refuse_a_remainder():
    slices = [World(r, 4).batch_slice(8) for r in range(4)]
    assert [(s.start, s.stop) for s in slices] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    with pytest.raises(ConfigError, match="not divisible"):
        World(0, 3).batch_slice(8)


def test_sample_noise_depends_on_seed_and_position_only():
    whole, flips = sample_noise(1, np.arange(10, 18), 16)
    part, part_flips = sample_noise(1, np.arange(14, 18), 16)
    assert np.array_equal(whole[4:], part) and np.array_equal(flips[4:], part_flips)
    assert not np.array_equal(sample_noise(2, np.arange(10, 18), 16)[0], whole)


def test_bf16_needs_cuda():
    from delbench import get_backbone, get_dataset

    import ddp_case

    pool = get_dataset("synthetic_endoscopy")(num_frames=8, frames_per_sequence=8, scene_length=4, image_size=32)
    backbone = get_backbone("timm_mae")(**ddp_case.TINY)
    with pytest.raises(ConfigError, match="CUDA"):
        backbone.pretrain(pool, np.arange(8), steps=1, batch_size=4, seed=0, optimizer={}, precision="bf16")


def run_torchrun(out: Path, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(HERE / "ddp_pretrain.py"),
                           str(out), *extra], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def test_torchrun_two_processes_equal_one_process(tmp_path):
    from safetensors.torch import load_file

    import ddp_case

    done = run_torchrun(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = load_file(str(tmp_path / "ddp.safetensors"))
    single = ddp_case.run()
    grads = [k for k in single if k.startswith("grad.")]
    weights = [k for k in single if k.startswith("weight.")]
    assert grads and set(grads) == {k for k in ddp if k.startswith("grad.")}
    grad_diff = max(float((single[k] - ddp[k]).abs().max()) for k in grads)
    weight_diff = max(float((single[k].float() - ddp[k].float()).abs().max()) for k in weights)
    print(f"max |grad diff| {grad_diff:.3g}, max |weight diff| {weight_diff:.3g}")
    assert grad_diff <= 1e-6
    assert weight_diff <= 1e-4
    assert np.allclose(single["loss"].numpy(), ddp["loss"].numpy(), atol=1e-5)


def test_pretrain_precision_is_validated_with_the_protocol():
    from delbench.protocol import load_protocol

    base = HERE / "configs" / "tiny.py"
    with pytest.raises(ConfigError, match="precision"):
        load_protocol(base, cfg_options={"pretrain.precision": "fp16"})
    with pytest.raises(ConfigError, match="CUDA"):
        load_protocol(base, cfg_options={"pretrain.precision": "bf16"})
    assert load_protocol(base)[0].pretrain.precision == "fp32"


def test_delbench_run_refuses_to_run_in_every_torchrun_process(tmp_path, monkeypatch, capsys):
    from delbench.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["run", str(HERE / "configs" / "tiny.py"), "--work-dir", str(tmp_path), "--no-progress"]) == 1
    assert "does not run under torchrun" in capsys.readouterr().err
