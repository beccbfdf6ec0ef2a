"""A selection with a work directory, run as its own process by tests/test_selection_work.py.

    python tests/select_with_work.py EMBEDDINGS.npy WORK_DIR OUT.npy SELECTOR [SECONDS_PER_CLUSTER]

With SECONDS_PER_CLUSTER, scoring each cluster sleeps that long first, so the test can kill
the process (SIGKILL) while it is between shards and check what a re-run skips.
"""
import sys
import time
from pathlib import Path

import numpy as np

import delbench
from delbench.run.select import run_selector
from delbench.sdk.shards import SelectionWork
from delbench.testing import InMemoryDataset
from delbench_plugins.lib import cluster_duplicates

CLUSTERS, CLUSTERS_PER_SHARD = 24, 4


def main(embeddings_path, work_dir, out, selector, delay=None):
    embeddings = np.load(embeddings_path, mmap_mode="r")
    if delay is not None:
        original = cluster_duplicates.max_similarity_to_priors

        def slow(*args, **kwargs):
            time.sleep(float(delay))
            return original(*args, **kwargs)
        cluster_duplicates.max_similarity_to_priors = slow
    pool = InMemoryDataset(np.zeros((embeddings.shape[0], 2, 2, 3), np.uint8),
                           [str(i) for i in range(embeddings.shape[0])])
    subset = run_selector(delbench.get_selector(selector)(), pool, 0.3, seed=0, embeddings=embeddings,
                          params={"n_clusters": CLUSTERS},
                          work=SelectionWork(Path(work_dir), clusters_per_shard=CLUSTERS_PER_SHARD, n_jobs=1))
    np.save(out, subset.indices)


if __name__ == "__main__":
    main(*sys.argv[1:])
