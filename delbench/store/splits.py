"""Split files: a dataset's train/test split kept as a JSON record in the machine-wide cache,
the explicit step that records a split (building a dataset writes nothing)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from delbench.errors import WriteError
from delbench.sdk.files import CACHE_ENV, atomic_write_json, cache_base

logger = logging.getLogger(__name__)


def split_files_dir() -> Path:
    """Where split files go: ``$DELBENCH_CACHE_DIR/splits``, else ``~/.cache/delbench/splits``."""
    return cache_base() / "splits"


def write_split_file(record: Any, directory: str | Path | None = None) -> Path | None:
    """Keep a dataset's train/test split (``Dataset.split_record()``) as a JSON split file.

    The explicit step that records a split: ``delbench run`` calls it for every dataset it
    opens and ``delbench data check`` for the dataset it checks; building a dataset writes
    nothing. The file is ``<dataset>-<sha256[:16]>.json`` in ``directory`` (default
    :func:`split_files_dir`), written atomically and readable (0644) like every result file; a
    file of that name already holds the same split and is kept. ``record`` None (a dataset
    without a train/test split) writes nothing. A split file that cannot be written does not
    stop a run (the split itself is determined by the ids): it is logged and None returned.
    """
    if record is None:
        return None
    directory = split_files_dir() if directory is None else Path(directory)
    path = directory / f"{record['dataset']}-{record['sha256'][:16]}.json"
    if path.is_file():
        return path
    try:
        atomic_write_json(path, record)
    except WriteError as exc:
        logger.warning("%s: cannot write split file to %s (%s); set %s to a writable folder",
                       record["dataset"], directory, exc, CACHE_ENV)
        return None
    return path
