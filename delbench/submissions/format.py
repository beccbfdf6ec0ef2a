"""What a submission is (DataComp style): a run packed as data. A gzip tarball written by
``delbench submit RUN_DIR --out SUB.tar.gz``, laid out as a run directory (so everything that
reads a run reads it) plus what a verifier needs to recompute without the submitter's
machine::

    MANIFEST.json           format, protocol name and version, config_sha256, and the sha256
                            and size of every other file
    config.json             the validated protocol (``Protocol.to_dict()``): JSON, never code
    run.json                the run's header (schema, protocol, config_sha256, versions, env)
    environment.json        python, torch, timm, numpy, delbench and plugin versions, CPU/GPU
    results.jsonl           the run's rows, the last one per cell key
    pool_ids.txt            the pool's ids in pool order, each followed by "\\n": its sha256 is
                            the rows' pool_ids_sha256
    subsets/subsets.json    the index of the selections, as in a run directory
    subsets/<name>.npy      the selected indices: sorted unique little-endian int64
    subsets/<name>.json     the selection's record (label, ratio, seed, hashes, diagnostics)
    subsets/<name>.ids.txt  the selected ids, sorted, each followed by "\\n": its sha256 is
                            the selection's ids_sha256
    derived/<sha256>/       a generative selector's images and manifest, as in a run
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

#: the layout version of a submission archive
SUBMISSION_FORMAT = "delbench-submission/1"

MANIFEST_FILE, CONFIG_FILE, ENVIRONMENT_FILE, POOL_IDS_FILE = (
    "MANIFEST.json", "config.json", "environment.json", "pool_ids.txt")

IDS_SUFFIX = ".ids.txt"


def id_lines(ids: Sequence[str]) -> bytes:
    """Ids as :func:`delbench.sdk.ids_sha256` hashes them: each followed by a newline."""
    return "".join(f"{item}\n" for item in ids).encode("utf-8")


def read_ids(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return text.split("\n")[:-1] if text else []
