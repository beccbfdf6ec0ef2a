"""``delbench run`` in its own process, marking each pre-training it starts (for
tests/test_checkpoint_lock.py). Not collected by pytest.

    python tests/run_marking_pretrain.py MARKER_DIR SECONDS -- <delbench run arguments>

Every call of ``TimmMAE.pretrain`` writes a file into MARKER_DIR, then sleeps SECONDS before
training, so two such processes started together overlap in their pre-training.
"""
import functools
import os
import sys
import time
from pathlib import Path

from delbench.cli import main
from delbench_plugins.backbones.timm_mae import TimmMAE

marker_dir, seconds, separator, *arguments = sys.argv[1:]
assert separator == "--"
original = TimmMAE.pretrain


@functools.wraps(original)  # keeps pretrain's signature: the runner reads resume_dir from it
def marking(self, *args, **kwargs):
    Path(marker_dir, f"pretrain-{os.getpid()}-{time.monotonic_ns()}").touch()
    time.sleep(float(seconds))
    return original(self, *args, **kwargs)


TimmMAE.pretrain = marking
sys.exit(main(arguments))
