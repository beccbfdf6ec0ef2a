"""The store: what a run leaves in its work directory, written safely and read back.

- :mod:`~delbench.store.schema`: the run directory's files, the schema version and the one
  typed row (:class:`ResultRow`);
- :mod:`~delbench.store.rows`: appending rows (fsynced, one line each) and reading them back;
- :mod:`~delbench.store.lock`: one run per work directory;
- :mod:`~delbench.store.splits`: datasets' train/test splits kept as split files;
- :mod:`~delbench.store.verify`: recomputing a run's hashes (``delbench verify``).

Files are written through the SDK's atomic writes (:mod:`delbench.sdk.files`), which plugins
use for their checkpoints and caches too. ``docs/results.md`` describes the layout.
"""
from delbench.store.lock import LOCK_FILE, WorkDirLock, lock_work_dir
from delbench.store.rows import append_row, iter_result_rows, iter_rows, latest_rows, read_rows, repair_rows_file
from delbench.store.schema import (DERIVED_DIR, HEADER_FILE, HTML_FILE, PLOT_FILE, REPORT_FILE, ROWS_FILE,
                                   SCHEMA_VERSION, SUBSETS_FILE, SUMMARY_FILE, ResultRow, read_header)
from delbench.store.splits import split_files_dir, write_split_file
from delbench.store.verify import reopen_pool_ids, verify_run

__all__ = [
    "DERIVED_DIR", "HEADER_FILE", "HTML_FILE", "LOCK_FILE", "PLOT_FILE", "REPORT_FILE", "ROWS_FILE", "SCHEMA_VERSION",
    "SUBSETS_FILE", "SUMMARY_FILE", "ResultRow", "WorkDirLock", "append_row", "iter_result_rows", "iter_rows",
    "latest_rows", "lock_work_dir", "read_header", "read_rows", "reopen_pool_ids", "repair_rows_file",
    "split_files_dir", "verify_run", "write_split_file",
]
