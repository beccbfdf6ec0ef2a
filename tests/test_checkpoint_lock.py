"""Two runs that reach the same content-keyed pre-training at once train it once."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from delbench.store import read_rows

HERE = Path(__file__).parent
FULL_ONLY = "selectors=[{'name':'full','ratios':[1.0]}]"


@pytest.mark.slow
def test_concurrent_runs_share_one_pretraining(tmp_path):
    """As two launcher jobs of `full` and `random` at ratio 1.0 do: the same subset, seed and
    protocol in one cache directory, so the same checkpoint key. The second waits on the checkpoint's lock and reads
    the first's checkpoint; without the lock both trained (and could fail each other)."""
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen([sys.executable, str(HERE / "run_marking_pretrain.py"), str(markers), "4", "--",
                              "run", str(HERE / "configs" / "tiny.py"), "--work-dir", str(tmp_path / f"run{i}"),
                              "--no-progress", "--quiet", "--cfg-options", FULL_ONLY,
                              f"runtime.cache_dir={tmp_path / 'cache'}"],  # one cache, as a launcher's jobs
                             env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for i in range(2)]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]
    assert len(list(markers.iterdir())) == 1  # one pre-training for both runs
    rows = [read_rows(tmp_path / f"run{i}") for i in range(2)]
    assert all(row.ok for run_rows in rows for row in run_rows)
    assert rows[0][0].pretrain == rows[1][0].pretrain  # the same cached pre-training, seconds and all
