"""Resumable pre-training: train-to-N equals train-to-k, kill, resume-to-N, bitwise on CPU."""
import functools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from delbench.cli import main
from delbench.store import LOCK_FILE, read_rows
from delbench.testing import make_contract_pool

TINY = str(Path(__file__).parent / "configs" / "tiny.py")
TINY_MAE = dict(model="vit_tiny_patch16_224", image_size=16, patch_size=8, decoder_dim=16, decoder_depth=1,
                decoder_heads=2, drop_path_rate=0.1, model_kwargs={"depth": 2})
N_STEPS, EVERY, KILLED_AT = 12, 4, 10  # the kill at step 10 loses steps 9-10: resume from the state of step 8


class Killed(Exception):
    """Stands for the process dying at a step."""


@pytest.fixture
def deterministic():
    import torch

    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


def _pretrain(pool, resume_dir=None, kill_at=None):
    import torch

    from delbench import get_backbone

    torch.manual_seed(0)  # the same initial weights, as the runner seeds before it builds one
    backbone = get_backbone("timm_mae")(**TINY_MAE)

    def on_step(step, loss):
        if step == kill_at:
            raise Killed(step)

    stats = backbone.pretrain(pool, np.arange(0, len(pool), 2), steps=N_STEPS, batch_size=8, seed=3,
                              optimizer={"lr": 1e-3, "warmup_steps": 2}, on_step=on_step,
                              resume_dir=resume_dir, checkpoint_every=EVERY)
    return backbone, stats


def test_train_to_n_equals_train_to_k_kill_resume_to_n_bitwise(tmp_path, deterministic):
    pool, _ = make_contract_pool(num_frames=40, image_size=16)
    straight, straight_stats = _pretrain(pool)
    with pytest.raises(Killed):
        _pretrain(pool, resume_dir=tmp_path, kill_at=KILLED_AT)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["step"] == 8 and state["tensors"] == "state-step8.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state-step8.safetensors", "state.json"]
    resumed, resumed_stats = _pretrain(pool, resume_dir=tmp_path)
    assert resumed_stats["resumed_from_step"] == 8 and straight_stats["resumed_from_step"] == 0
    assert resumed_stats["loss"] == straight_stats["loss"]  # the history up to step 8 came from the state
    a, b = straight.mae.state_dict(), resumed.mae.state_dict()
    assert a.keys() == b.keys()
    different = [k for k in a if not (a[k].dtype == b[k].dtype and bool((a[k] == b[k]).all()))]
    assert not different, f"not bitwise equal after resume: {different[:5]}"


def test_a_state_of_another_pretraining_is_ignored(tmp_path, caplog):
    pool, _ = make_contract_pool(num_frames=40, image_size=16)
    with pytest.raises(Killed):
        _pretrain(pool, resume_dir=tmp_path, kill_at=6)
    from delbench import get_backbone

    backbone = get_backbone("timm_mae")(**TINY_MAE)
    stats = backbone.pretrain(pool, np.arange(0, len(pool), 2), steps=N_STEPS, batch_size=8, seed=4,  # another seed
                              optimizer={"lr": 1e-3, "warmup_steps": 2}, resume_dir=tmp_path, checkpoint_every=EVERY)
    assert stats["resumed_from_step"] == 0 and "belongs to another pre-training" in caplog.text


def test_a_damaged_state_is_ignored_with_a_warning(tmp_path, caplog):
    pool, _ = make_contract_pool(num_frames=40, image_size=16)
    with pytest.raises(Killed):
        _pretrain(pool, resume_dir=tmp_path, kill_at=6)
    (tmp_path / "state-step4.safetensors").write_bytes(b"truncated")
    _, stats = _pretrain(pool, resume_dir=tmp_path)
    assert stats["resumed_from_step"] == 0 and "cannot be resumed from" in caplog.text


def _final_checkpoints(cache):
    return {p.parent.name: p.read_bytes() for p in Path(cache).glob("checkpoints/*/final.safetensors")}


@pytest.mark.slow
def test_a_run_killed_mid_pretraining_resumes_to_the_same_weights_and_metrics(tmp_path):
    """A real kill (SIGKILL from inside pre-training, at step 5 of 6; states every 2 steps):
    no lock, row or temporary is left in the way, and --resume continues the pre-training
    from step 4 to the weights and metrics of an uninterrupted run."""
    options = ["pretrain.checkpoint_every=2", "selectors=[{'name':'random','ratios':[0.1]}]"]
    straight = tmp_path / "straight"
    assert main(["run", TINY, "--work-dir", str(straight), "--no-progress", "--quiet", "--cfg-options", *options]) == 0
    killed = tmp_path / "killed"
    script = f"""
import functools, os, signal
from delbench_plugins.backbones import timm_mae
from delbench.cli import main
original = timm_mae.TimmMAE.pretrain
@functools.wraps(original)  # keeps the signature the runner reads (resume_dir)
def pretrain(self, *args, on_step=None, **kwargs):
    def step(n, loss):
        on_step(n, loss)
        if n == 5:
            os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *args, on_step=step, **kwargs)
timm_mae.TimmMAE.pretrain = pretrain
main(["run", {TINY!r}, "--work-dir", {str(killed)!r}, "--no-progress", "--quiet", "--cfg-options", *{options!r}])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    holder = json.loads((killed / LOCK_FILE).read_text())  # the dead run's lock record is still there
    assert holder["pid"] != os.getpid()
    (state,) = (killed / "cache" / "checkpoints").glob("*/resume/state.json")
    assert json.loads(state.read_text())["step"] == 4
    assert not read_rows(killed)
    resumed = subprocess.run([sys.executable, "-m", "delbench", "run", TINY, "--work-dir", str(killed), "--resume",
                              "--no-progress", "--quiet", "--cfg-options", *options],
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "taking over a stale lock" in resumed.stderr and f"pid {holder['pid']}" in resumed.stderr
    assert "resuming pre-training from step 4 of 6" in resumed.stderr
    assert _final_checkpoints(killed / "cache") == _final_checkpoints(straight / "cache")
    (a,), (b,) = read_rows(straight), read_rows(killed)
    assert a.key == b.key and a.metrics == b.metrics and a.pretrain["loss_last"] == b.pretrain["loss_last"]
    assert not list((killed / "cache" / "checkpoints").glob("*/resume"))  # the states are gone once final
    assert (killed / LOCK_FILE).read_text() == ""  # released


def test_an_interrupted_run_leaves_a_resumable_state(tmp_path, monkeypatch):
    """Ctrl-C during pre-training: exit 130, the state stays for --resume."""
    from delbench_plugins.backbones import timm_mae

    original = timm_mae.TimmMAE.pretrain

    @functools.wraps(original)
    def interrupted(self, *args, on_step=None, **kwargs):
        def step(n, loss):
            on_step(n, loss)
            if n == 3:
                raise KeyboardInterrupt
        return original(self, *args, on_step=step, **kwargs)

    monkeypatch.setattr(timm_mae.TimmMAE, "pretrain", interrupted)
    work = tmp_path / "run"
    assert main(["run", TINY, "--work-dir", str(work), "--no-progress", "--quiet", "--cfg-options",
                 "pretrain.checkpoint_every=2", "selectors=[{'name':'random','ratios':[0.1]}]"]) == 130
    (state,) = (work / "cache" / "checkpoints").glob("*/resume/state.json")
    assert json.loads(state.read_text())["step"] == 2
    assert (work / LOCK_FILE).read_text() == ""  # released on the way out


def test_the_contract_checker_catches_a_resume_that_is_not_exact():
    from delbench import get_backbone
    from delbench.testing import backbone_checks

    class Forgetful(get_backbone("timm_mae")):
        """Resumes the weights but forgets the data order and masks (a new seed)."""

        def pretrain(self, pool, indices, *, seed, resume_dir=None, **kwargs):
            resuming = resume_dir is not None and (Path(resume_dir) / "state.json").is_file()
            return super().pretrain(pool, indices, seed=seed + 1 if resuming else seed, resume_dir=None if resuming
                                    else resume_dir, **kwargs)

    params = {k: v for k, v in TINY_MAE.items() if k != "drop_path_rate"}
    check = dict(backbone_checks(Forgetful, params=params))["check_resume"]
    with pytest.raises(AssertionError, match="check_resume.*other encoder weights"):
        check()
