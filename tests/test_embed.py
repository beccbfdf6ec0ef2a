"""Sharded pool embeddings: resumable after a kill, per-rank, read back by 'delbench select'."""
import json

import numpy as np
import pytest

from delbench import get_dataset
from delbench.cli import main
from delbench.embed import embed_shards, load_embeddings, plan_shards, shard_ranges
from delbench.errors import DelbenchError, SelectionError
from delbench.sdk.distributed import World
from delbench.sdk.subsets import ids_sha256

N, SHARD = 40, 16


@pytest.fixture(scope="module")
def pool():
    return get_dataset("synthetic_endoscopy")(num_frames=N, image_size=16)


def features(images):
    """A cheap deterministic 'backbone': per-image channel means and spreads."""
    x = images.astype(np.float32) / 255.0
    return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)


class Killed(RuntimeError):
    pass


def counting(limit=None):
    calls = []

    def embed(images):
        if limit is not None and len(calls) == limit:
            raise Killed("killed mid-run")
        calls.append(len(images))
        return features(images)
    return embed, calls


def plan(pool, out, **kw):
    return plan_shards(out, pool_name="synthetic_endoscopy", pool_params={"num_frames": N}, pool_ids=pool.item_ids(),
                       backbone_name="means", backbone_params={}, checkpoint=None,
                       **{"dtype": "float32", "shard_size": SHARD, **kw})


def test_shard_ranges_are_fixed():
    assert shard_ranges(40, 16) == [(0, 16), (16, 32), (32, 40)]
    with pytest.raises(DelbenchError):
        shard_ranges(40, 0)


def test_a_killed_run_resumes_with_the_missing_shards_only(pool, tmp_path):
    straight = plan(pool, tmp_path / "straight")
    assert embed_shards(straight, pool, features, batch_size=8)["complete"]
    expected = load_embeddings(tmp_path / "straight", N, ids_sha256(pool.item_ids()))
    assert np.allclose(expected, features(pool.load_images(np.arange(N))))

    killed = plan(pool, tmp_path / "killed")
    embed, _ = counting(limit=3)  # batches of 8: dies in the second shard
    with pytest.raises(Killed):
        embed_shards(killed, pool, embed, batch_size=8)
    assert [killed.finished(i) for i in range(3)] == [True, False, False]
    with pytest.raises(SelectionError, match="incomplete"):
        load_embeddings(tmp_path / "killed", N)
    embed, calls = counting()
    result = embed_shards(plan(pool, tmp_path / "killed"), pool, embed, batch_size=8)
    assert result == {"computed": [1, 2], "skipped": [0], "complete": True}
    assert sum(calls) == N - SHARD  # shard 0 was not computed again
    assert np.array_equal(load_embeddings(tmp_path / "killed", N), expected)
    assert isinstance(expected, np.memmap)  # several shards: one consolidated file, memory-mapped
    manifest = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    assert manifest == json.loads((tmp_path / "straight" / "manifest.json").read_text())
    assert [s["start"] for s in manifest["shards"]] == [0, 16, 32] and all(len(s["sha256"]) == 64 for s in manifest["shards"])


def test_ranks_take_every_world_size_th_shard_and_the_last_one_completes(pool, tmp_path):
    first = embed_shards(plan(pool, tmp_path), pool, features, world=World(0, 2))
    assert first == {"computed": [0, 2], "skipped": [], "complete": False}
    second = embed_shards(plan(pool, tmp_path), pool, features, world=World(1, 2))
    assert second == {"computed": [1], "skipped": [], "complete": True}
    assert np.allclose(load_embeddings(tmp_path, N), features(pool.load_images(np.arange(N))))


def test_a_damaged_shard_is_recomputed_and_a_directory_of_other_settings_is_refused(pool, tmp_path):
    embed_shards(plan(pool, tmp_path), pool, features)
    (tmp_path / "shard-00001.npy").write_bytes(b"damaged")
    with pytest.raises(SelectionError, match="shard-00001"):
        load_embeddings(tmp_path, N)
    assert embed_shards(plan(pool, tmp_path), pool, features)["computed"] == [1]
    with pytest.raises(DelbenchError, match="shard_size"):
        plan(pool, tmp_path, shard_size=8)
    with pytest.raises(SelectionError, match="another pool"):
        load_embeddings(tmp_path, N, "0" * 64)


def test_cli_embed_then_select_with_the_directory(tmp_path, capsys):
    out = tmp_path / "emb"
    dataset = ["--dataset", "synthetic_endoscopy", "--dataset-param", f"num_frames={N}", "image_size=32"]
    backbone = ["--backbone", "timm_mae", "--backbone-param", "image_size=32", "patch_size=8", "decoder_dim=32",
                "decoder_depth=1", "decoder_heads=2", "model_kwargs={'depth':1}"]
    assert main(["embed", *dataset, *backbone, "--out", str(out), "--shard-size", str(SHARD), "--no-progress"]) == 0
    assert "3 shard(s) computed, 0 already finished, of 3" in capsys.readouterr().out
    assert main(["embed", *dataset, *backbone, "--out", str(out), "--shard-size", str(SHARD), "--no-progress"]) == 0
    assert "0 shard(s) computed, 3 already finished" in capsys.readouterr().out
    assert load_embeddings(out, N).dtype == np.float16
    code = main(["select", *dataset, "--selector", "meddel", "--ratio", "0.5", "--embeddings", str(out),
                 "--set", "n_clusters=4", "--out", str(tmp_path / "m.npy")])
    assert code == 0 and np.load(tmp_path / "m.npy").size == N // 2
    # the same directory for a pool of other ids (another frame layout) is refused
    assert main(["select", "--dataset", "synthetic_endoscopy", "--dataset-param", f"num_frames={N}", "image_size=32",
                 "frames_per_sequence=10", "--selector", "meddel", "--ratio", "0.5", "--embeddings", str(out),
                 "--set", "n_clusters=4", "--out", str(tmp_path / "m2.npy")]) == 1


def test_delbench_embed_under_torchrun_equals_one_process(tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    args = ["embed", "--dataset", "synthetic_endoscopy", "--dataset-param", f"num_frames={N}", "image_size=32",
            "--backbone", "timm_mae", "--backbone-param", "image_size=32", "patch_size=8", "decoder_dim=32",
            "decoder_depth=1", "decoder_heads=2", "model_kwargs={'depth':1}", "--shard-size", str(SHARD),
            "--dtype", "float32", "--no-progress"]
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "delbench", *args,
                           "--out", str(tmp_path / "ddp")], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "is complete" in done.stdout  # the rank that finished last wrote the manifest
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert np.allclose(load_embeddings(tmp_path / "ddp", N), load_embeddings(tmp_path / "one", N), atol=1e-6)


def embed_args(n, shard):
    return ["embed", "--dataset", "synthetic_endoscopy", "--dataset-param", f"num_frames={n}", "image_size=32",
            "--backbone", "timm_mae", "--backbone-param", "image_size=32", "patch_size=8", "decoder_dim=32",
            "decoder_depth=1", "decoder_heads=2", "model_kwargs={'depth':1}", "--dtype", "float32", "--no-progress",
            "--shard-size", str(shard)]


def test_job_array_tasks_each_take_their_shards_and_together_equal_one_process(tmp_path, capsys):
    args = embed_args(N, SHARD)
    assert main([*args, "--out", str(tmp_path / "array"), "--shard-rank", "1", "--shard-count", "2"]) == 0
    assert "1 shard(s) computed, 0 already finished, of 3" in capsys.readouterr().out  # shard 1 only
    assert main([*args, "--out", str(tmp_path / "array"), "--shard-rank", "0", "--shard-count", "2"]) == 0
    assert "2 shard(s) computed" in capsys.readouterr().out  # shards 0 and 2; the directory is complete
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert np.array_equal(load_embeddings(tmp_path / "array", N), load_embeddings(tmp_path / "one", N))
    assert main([*args, "--out", str(tmp_path / "bad"), "--shard-rank", "2", "--shard-count", "2"]) == 1
    assert "--shard-rank must be in [0, --shard-count), got 2 of 2" in capsys.readouterr().err


@pytest.mark.slow
def test_a_sigkilled_delbench_embed_resumes_with_the_unfinished_shards_only(tmp_path, capsys):
    import os
    import signal
    import subprocess
    import sys
    import time

    n, shard = 3000, 150  # 20 shards of rendered 32 px frames: a few seconds of work to kill into
    args = embed_args(n, shard)
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "delbench", *args, "--out", str(out)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while len(list(out.glob("shard-*.sha256"))) < 2:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no shard was finished in time"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    finished = sorted(out.glob("shard-*.sha256"))
    assert 2 <= len(finished) < n // shard
    stamps = {path.name: path.with_suffix(".npy").stat().st_mtime_ns for path in finished}
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 0
    assert (f"{n // shard - len(finished)} shard(s) computed, {len(finished)} already finished"
            in capsys.readouterr().out)
    assert {name: (out / name).with_suffix(".npy").stat().st_mtime_ns for name in stamps} == stamps
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    assert np.array_equal(load_embeddings(out, n), load_embeddings(tmp_path / "whole", n))
