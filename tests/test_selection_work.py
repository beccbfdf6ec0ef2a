"""Clustering selectors with a work directory: same subset as without, per-cluster scores
sharded over processes (ranks, array tasks), finished shards skipped after a real kill."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import delbench
from delbench.cli import main
from delbench.errors import SelectionError
from delbench.run.select import run_selector
from delbench.sdk.distributed import World
from delbench.sdk.shards import SelectionWork, ShardFiles, run_shards
from delbench.testing import InMemoryDataset, clustered_embeddings
from delbench_plugins.lib import cluster_duplicates

HERE = Path(__file__).parent
N, CLUSTERS, PER_SHARD = 600, 24, 4  # 6 score shards
SHARDS = -(-CLUSTERS // PER_SHARD)
DATASET = ["--dataset", "synthetic_endoscopy", "--dataset-param", f"num_frames={N}", "image_size=16"]


@pytest.fixture(scope="module")
def embeddings():
    scene = np.arange(N) // 10
    invalid = np.zeros(N, bool)
    invalid[::7] = True
    return clustered_embeddings(scene, invalid, dim=16, seed=3)


@pytest.fixture(scope="module")
def embeddings_file(embeddings, tmp_path_factory):
    path = tmp_path_factory.mktemp("emb") / "embeddings.npy"
    np.save(path, embeddings)
    return path


def _pool(n=N):
    return InMemoryDataset(np.zeros((n, 2, 2, 3), np.uint8), [str(i) for i in range(n)])


def _select(name, embeddings, work=None, **params):
    params.setdefault("n_clusters", CLUSTERS)
    return run_selector(delbench.get_selector(name)(), _pool(len(embeddings)), 0.3, seed=0, embeddings=embeddings,
                        params=params, work=work)


def _work(root, **kw):
    return SelectionWork(Path(root), **{"clusters_per_shard": PER_SHARD, "n_jobs": 1, **kw})


@pytest.fixture
def scored(monkeypatch):
    """Counts the clusters scored in this process."""
    calls = []
    original = cluster_duplicates.max_similarity_to_priors

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)
    monkeypatch.setattr(cluster_duplicates, "max_similarity_to_priors", counting)
    return calls


@pytest.mark.parametrize("name, params", [("meddel", {}), ("meddel", {"center": True, "eps": 0.5}),
                                          ("semdedup", {}), ("d4", {"dedup_ratio": 0.6}), ("prototypes", {}),
                                          ("meddel", {"kmeans": "hierarchical"})])
def test_work_gives_the_same_subset_as_without_and_a_rerun_recomputes_nothing(
        name, params, embeddings, tmp_path, scored, monkeypatch):
    plain = _select(name, embeddings, **params)
    with_work = _select(name, embeddings, _work(tmp_path), **params)
    assert with_work.sha256 == plain.sha256
    assert with_work.diagnostics.keys() == plain.diagnostics.keys()
    assert {k: v for k, v in with_work.diagnostics.items() if k != "time_s"} == \
        {k: v for k, v in plain.diagnostics.items() if k != "time_s"}
    scored.clear()

    def no_clustering(*args, **kwargs):
        raise AssertionError("the clustering was computed again")
    monkeypatch.setattr(cluster_duplicates, "cluster", no_clustering)
    again = _select(name, embeddings, _work(tmp_path), **params)
    assert again.sha256 == plain.sha256 and scored == []


def test_other_settings_get_their_own_stage_directories(embeddings, tmp_path):
    _select("semdedup", embeddings, _work(tmp_path))
    _select("semdedup", embeddings, _work(tmp_path), keep="easy")  # same clustering, other scores
    _select("semdedup", embeddings, _work(tmp_path), n_clusters=12)
    assert len(list(tmp_path.glob("kmeans-*"))) == 2
    assert len(list(tmp_path.glob("scores-*"))) == 3


def test_ranks_share_the_shards_and_every_rank_returns_the_subset(embeddings, tmp_path):
    """Two ranks running at once (threads here; processes below): each takes its own shards
    first, then whatever is left; both end with every shard finished and the same subset."""
    from concurrent.futures import ThreadPoolExecutor

    plain = _select("semdedup", embeddings)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda r: _select("semdedup", embeddings, _work(tmp_path, world=World(r, 2))),
                                [0, 1]))
    assert [r.sha256 for r in results] == [plain.sha256] * 2
    files = ShardFiles(next(tmp_path.glob("scores-*")), prefix="scores")
    assert all(files.finished(i) for i in range(SHARDS))


def test_run_shards_claims_other_shards_only_when_claiming(tmp_path):
    files = ShardFiles(tmp_path, prefix="s")
    done = run_shards(files, 5, lambda i: np.full(3, i), world=World(1, 2))
    assert done == {"computed": [1, 3], "skipped": []}
    assert not files.finished(0)
    done = run_shards(files, 5, lambda i: np.full(3, i), world=World(1, 2), claim=True)
    assert done == {"computed": [0, 2, 4], "skipped": [1, 3]}
    files.path(2).write_bytes(b"damaged")
    assert run_shards(files, 5, lambda i: np.full(3, i), claim=True)["computed"] == [2]
    assert files.read(2).tolist() == [2, 2, 2]


def _cli(embeddings_file, out, *extra, env=None):
    command = [sys.executable, "-m", "delbench", "select", *DATASET, "--selector", "meddel", "--ratio", "0.3",
               "--embeddings", str(embeddings_file), "--set", f"n_clusters={CLUSTERS}", "--out", str(out), *extra]
    return subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def test_cli_processes_under_torchrun_ranks_and_as_array_tasks_give_one_process_subset(embeddings_file, tmp_path):
    assert main(["select", *DATASET, "--selector", "meddel", "--ratio", "0.3", "--embeddings",
                 str(embeddings_file), "--set", f"n_clusters={CLUSTERS}", "--out", str(tmp_path / "one.npy")]) == 0
    expected = np.load(tmp_path / "one.npy")
    shard = ["--clusters-per-shard", str(PER_SHARD)]
    # two processes with torchrun's environment, at once; rank 0 writes the subset
    ranks = [_cli(embeddings_file, tmp_path / "ranks.npy", "--work", str(tmp_path / "w1"), *shard,
                  env={"RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r), "LOCAL_WORLD_SIZE": "2"})
             for r in (0, 1)]
    for process in ranks:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    assert np.array_equal(np.load(tmp_path / "ranks.npy"), expected)
    # array tasks one at a time: task 2 alone finishes every shard itself (rank 0 alone writes
    # the subset), then task 0 finds them all finished and writes the same subset
    for rank in (2, 0):
        task = _cli(embeddings_file, tmp_path / "task.npy", "--work", str(tmp_path / "w2"), *shard,
                    "--shard-rank", str(rank), "--shard-count", "3")
        _, err = task.communicate(timeout=120)
        assert task.returncode == 0, err
        assert (tmp_path / "task.npy").exists() == (rank == 0)
        files = ShardFiles(next((tmp_path / "w2").glob("scores-*")), prefix="scores")
        assert all(files.finished(i) for i in range(SHARDS))
    assert np.array_equal(np.load(tmp_path / "task.npy"), expected)


def test_select_under_a_real_torchrun_gives_the_one_process_subset(embeddings_file, tmp_path):
    import shutil

    assert main(["select", *DATASET, "--selector", "semdedup", "--ratio", "0.3", "--embeddings",
                 str(embeddings_file), "--set", f"n_clusters={CLUSTERS}", "--out", str(tmp_path / "one.npy")]) == 0
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "delbench", "select", *DATASET,
                           "--selector", "semdedup", "--ratio", "0.3", "--embeddings", str(embeddings_file),
                           "--set", f"n_clusters={CLUSTERS}", "--work", str(tmp_path / "work"),
                           "--clusters-per-shard", str(PER_SHARD), "--out", str(tmp_path / "ddp.npy")],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert np.array_equal(np.load(tmp_path / "ddp.npy"), np.load(tmp_path / "one.npy"))
    files = ShardFiles(next((tmp_path / "work").glob("scores-*")), prefix="scores")
    assert all(files.finished(i) for i in range(SHARDS))


def test_cli_refuses_work_for_a_selector_without_work_files(embeddings_file, tmp_path, capsys):
    assert main(["select", *DATASET, "--selector", "random", "--ratio", "0.3", "--work", str(tmp_path),
                 "--out", str(tmp_path / "s.npy")]) != 0
    assert "keeps no work files" in capsys.readouterr().err
    assert main(["select", *DATASET, "--selector", "meddel", "--ratio", "0.3", "--embeddings", str(embeddings_file),
                 "--shard-count", "2", "--out", str(tmp_path / "s.npy")]) != 0
    assert "give --work" in capsys.readouterr().err
    with pytest.raises(SelectionError, match="keeps no work files"):
        run_selector(delbench.get_selector("random")(), _pool(), 0.3, seed=0, work=_work(tmp_path))


def test_a_killed_process_resumes_with_the_unfinished_shards_only(embeddings, embeddings_file, tmp_path, scored):
    expected = _select("semdedup", embeddings)
    scored.clear()
    _select("semdedup", embeddings)
    total = len(scored)  # clusters scored by one uninterrupted run
    work = tmp_path / "work"
    # a real process, slowed to 0.15 s per cluster, killed with SIGKILL once two shards are finished
    process = subprocess.Popen([sys.executable, str(HERE / "select_with_work.py"), str(embeddings_file), str(work),
                                str(tmp_path / "killed.npy"), "semdedup", "0.15"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(work.glob("scores-*/scores-*.sha256"))) < 2:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no score shard was finished in time"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL and not (tmp_path / "killed.npy").exists()
    files = ShardFiles(next(work.glob("scores-*")), prefix="scores")
    finished = [i for i in range(SHARDS) if files.finished(i)]
    assert 2 <= len(finished) < SHARDS
    stamps = {i: files.path(i).stat().st_mtime_ns for i in finished}
    with np.load(next(work.glob("kmeans-*")) / "result.npz") as clustering:
        sizes = np.bincount(clustering["labels"], minlength=CLUSTERS)
    left = sum(int(np.count_nonzero(sizes[i * PER_SHARD:(i + 1) * PER_SHARD])) for i in range(SHARDS)
               if i not in finished)

    scored.clear()
    from select_with_work import CLUSTERS as HELPER_CLUSTERS, CLUSTERS_PER_SHARD as HELPER_PER_SHARD
    assert (HELPER_CLUSTERS, HELPER_PER_SHARD) == (CLUSTERS, PER_SHARD)
    resumed = _select("semdedup", embeddings, _work(work))
    assert len(scored) == left < total  # only the clusters of the unfinished shards were scored
    assert {i: files.path(i).stat().st_mtime_ns for i in finished} == stamps
    assert resumed.sha256 == expected.sha256
