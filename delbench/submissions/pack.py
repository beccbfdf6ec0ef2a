"""Packing a run as a submission (``delbench submit``): reproducible bytes, every file listed
with its sha256 and size in ``MANIFEST.json``."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from delbench.errors import DelbenchError, SubmissionError
from delbench.sdk.files import atomic_path, dumps
from delbench.sdk.subsets import ids_sha256
from delbench.store import HEADER_FILE, ROWS_FILE, SUBSETS_FILE, read_header, read_rows, reopen_pool_ids
from delbench.submissions.format import (CONFIG_FILE, ENVIRONMENT_FILE, IDS_SUFFIX, MANIFEST_FILE, POOL_IDS_FILE,
                                         SUBMISSION_FORMAT, id_lines)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _environment(header: dict[str, Any]) -> dict[str, Any]:
    """What the run ran on and with: the header's environment, delbench and plugin versions."""
    env = dict(header.get("env") or {})
    return {"python": env.get("python"), "platform": env.get("platform"), "torch": env.get("torch"),
            "timm": env.get("timm"), "numpy": env.get("numpy"), "delbench": header.get("delbench_version"),
            "plugins": header.get("plugin_versions") or {}, "cpu": env.get("cpu"), "cpu_count": env.get("cpu_count"),
            "gpus": env.get("gpus"), "torch_threads": env.get("torch_threads")}


def _pool_ids(header: dict[str, Any]) -> list[str]:
    """The run's pool ids (:func:`delbench.store.reopen_pool_ids`); refused when they are not
    the run's."""
    try:
        ids = reopen_pool_ids(header)
    except DelbenchError as exc:
        raise SubmissionError(f"cannot list the pool's ids for the submission: {exc}") from None
    if ids_sha256(ids) != header.get("pool_ids_sha256"):
        name = ((header.get("protocol_config") or {}).get("pool") or {}).get("name")
        raise SubmissionError(f"pool {name!r} changed or was reordered since the run (pool_ids_sha256 "
                              f"{ids_sha256(ids)} != {header.get('pool_ids_sha256')}); a submission names the images "
                              f"the run selected")
    return ids


def submission_files(run_dir: str | Path) -> dict[str, bytes]:
    """Every file of the submission of ``run_dir`` but the manifest, by archive name."""
    run_dir = Path(run_dir)
    header = read_header(run_dir)
    pool_ids = _pool_ids(header)
    files = {HEADER_FILE: (run_dir / HEADER_FILE).read_bytes(),
             CONFIG_FILE: (dumps(header.get("protocol_config") or {}, indent=2, sort_keys=True) + "\n").encode(),
             ENVIRONMENT_FILE: (dumps(_environment(header), indent=2, sort_keys=True) + "\n").encode(),
             ROWS_FILE: "".join(dumps(row.to_json(), sort_keys=True) + "\n" for row in read_rows(run_dir)).encode(),
             POOL_IDS_FILE: id_lines(pool_ids)}
    subsets = run_dir / "subsets"
    index = json.loads((subsets / SUBSETS_FILE).read_text()) if (subsets / SUBSETS_FILE).is_file() else {}
    for path in sorted(subsets.rglob("*")) if subsets.is_dir() else []:
        # every regular file of the run's subsets (a derived subset's manifest too), never a
        # temporary of a writer
        if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
            files[f"subsets/{path.relative_to(subsets).as_posix()}"] = path.read_bytes()
    for name, entry in sorted(index.items()):
        if entry.get("kind") == "derived":  # its manifest and images, content-addressed
            manifest = Path(str(entry.get("manifest")))
            if manifest.is_absolute() or ".." in manifest.parts:
                continue  # never packs files from outside the run; verify_run reports the path
            folder = (run_dir / manifest).parent
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
                    files[path.relative_to(run_dir).as_posix()] = path.read_bytes()
            continue
        file = subsets / str(entry.get("file"))
        if file.suffix == ".npy" and file.is_file():
            indices = np.load(file, allow_pickle=False)
            files[f"subsets/{name}{IDS_SUFFIX}"] = id_lines(sorted(pool_ids[int(i)] for i in indices))
    return files


def write_submission(run_dir: str | Path, out: str | Path) -> Path:
    """Pack ``run_dir`` as a submission (module docstring) into the gzip tarball ``out``.

    The archive is reproducible: members sorted by name, owner 0, mode 0644, time 0, and a
    gzip header without a time or name, so the same run gives the same bytes.
    """
    run_dir, out = Path(run_dir), Path(out)
    header = read_header(run_dir)
    files = submission_files(run_dir)
    manifest = {"format": SUBMISSION_FORMAT, "protocol": header.get("protocol"),
                "protocol_version": header.get("protocol_version"), "config_sha256": header.get("config_sha256"),
                "delbench_version": header.get("delbench_version"),
                "files": {name: {"sha256": _sha256(data), "bytes": len(data)} for name, data in sorted(files.items())}}
    files[MANIFEST_FILE] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    with atomic_path(out) as tmp:
        with open(tmp, "xb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as zipped, \
                tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(files):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
                tar.addfile(info, io.BytesIO(files[name]))
    return out
