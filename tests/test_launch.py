"""Launchers: cells as submitit jobs (debug and local executors) equal the in-process run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from delbench.cli import main
from delbench.run.launch import SlurmOptions, cell_path, make_executor
from delbench.store import read_rows

submitit = pytest.importorskip("submitit")

TINY = str(Path(__file__).parent / "configs" / "tiny.py")


@pytest.fixture(scope="module")
def inprocess(tmp_path_factory):
    work = tmp_path_factory.mktemp("inprocess")
    assert main(["run", TINY, "--work-dir", str(work), "--no-progress", "--quiet"]) == 0
    return {row.key: row for row in read_rows(work)}


def same_results(rows, reference):
    assert [r.key for r in rows] == list(reference)  # plan order
    for row in rows:
        ref = reference[row.key]
        assert row.ok and row.subset_sha256 == ref.subset_sha256 and row.ids_sha256 == ref.ids_sha256
        assert row.metrics == ref.metrics and row.normdel == ref.normdel
        assert row.pretrain["loss_last"] == ref.pretrain["loss_last"]


def test_debug_executor_runs_every_group_and_merges_in_plan_order(tmp_path, inprocess):
    work = tmp_path / "debug"
    assert main(["run", TINY, "--work-dir", str(work), "--no-progress", "--quiet", "--launcher", "debug"]) == 0
    rows = read_rows(work)
    same_results(rows, inprocess)
    assert all(cell_path(work, row.key).is_file() for row in rows)
    subsets = json.loads((work / "subsets" / "subsets.json").read_text())
    assert len(subsets) == 3
    # a re-run skips every finished cell and appends nothing twice
    assert main(["run", TINY, "--work-dir", str(work), "--no-progress", "--quiet", "--launcher", "debug",
                 "--resume"]) == 0
    assert [r.key for r in read_rows(work)] == [r.key for r in rows]


@pytest.mark.slow
def test_local_executor_bounded_with_stdin_closed_and_resubmission_skips_finished_cells(tmp_path, inprocess):
    work = tmp_path / "local"
    command = [sys.executable, "-m", "delbench", "run", TINY, "--work-dir", str(work), "--no-progress", "--quiet",
               "--launcher", "local", "--max-parallel", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    same_results(read_rows(work), inprocess)
    # a cell lost from results.jsonl but kept in its cell file is merged again without a job
    rows_file = work / "results.jsonl"
    lines = rows_file.read_text().splitlines(keepends=True)
    rows_file.write_text("".join(lines[:-1]))
    done = subprocess.run(command + ["--resume"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 job(s) to run" in done.stderr
    same_results(read_rows(work), inprocess)


def test_slurm_options_become_autoexecutor_parameters(tmp_path):
    options = SlurmOptions(partition="gpu", array_parallelism=8, timeout_min=90, gpus_per_node=1, cpus_per_task=4)
    params = options.parameters()
    assert params["slurm_partition"] == "gpu" and params["slurm_array_parallelism"] == 8
    assert params["timeout_min"] == 90 and params["gpus_per_node"] == 1
    # submitit itself accepts them (checked by its AutoExecutor; no SLURM here)
    submitit.AutoExecutor(tmp_path, cluster="debug").update_parameters(**params)


def test_unknown_launcher_and_bad_parallelism_are_clear_errors(tmp_path):
    from delbench.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown launcher"):
        make_executor("kubernetes", tmp_path)
    assert main(["run", TINY, "--work-dir", str(tmp_path / "w"), "--launcher", "local", "--max-parallel", "0",
                 "--no-progress", "--quiet"]) == 1
