"""Verification by recomputation (``delbench verify``) of a run directory or a submission: every
hash recomputed (:func:`delbench.store.verify_run`, the manifest, the id lists), each row
against its subset (size, hash, ids, selector, ratio, seed), NormDEL recomputed from the
metric, ratio and α, the rows exactly the protocol's planned cells (none missing, extra or
repeated), subset files sorted unique int64, every non-selector setting equal to the protocol
the run claims, and, optionally, sampled cells re-run and compared within a stated tolerance.
"""
from __future__ import annotations

import json
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from delbench.errors import ConfigError, DelbenchError, one_line
from delbench.protocol import UNHASHED_FIELDS, GeneralizationSpec, load_protocol, protocol_from_json
from delbench.run import planned_cells, run_protocol
from delbench.sdk.files import file_sha256
from delbench.sdk.metrics import normdel
from delbench.sdk.subsets import ids_sha256, subset_size
from delbench.store import (HEADER_FILE, ROWS_FILE, SUBSETS_FILE, ResultRow, iter_result_rows, read_header, read_rows,
                            verify_run)
from delbench.submissions.extract import open_submission
from delbench.submissions.format import (CONFIG_FILE, IDS_SUFFIX, MANIFEST_FILE, POOL_IDS_FILE, SUBMISSION_FORMAT,
                                         read_ids)

#: the difference from a recomputed NormDEL tolerated as float rounding (it is computed by the
#: same formula from the same numbers)
NORMDEL_ROUNDING = 1e-9
#: the default tolerance of re-run cells and of ``compare`` (absolute, on metric fractions)
DEFAULT_TOLERANCE = 0.0
#: where a protocol is looked up by the name a run records: ``benchmarks/<name>.py`` here, and
#: in the delbench checkout itself
_PROTOCOL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass
class Verification:
    """What :func:`verify` found: ``problems`` (each one line naming the file, row key or
    setting; none means verified), ``notes`` (checks that could not run here, and why) and
    what was checked."""

    target: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    protocol: str | None = None
    protocol_version: str | None = None
    config_sha256: str | None = None
    rows: list[ResultRow] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)
    n_subsets: int = 0
    submission: bool = False
    #: a submission's identity: the sha256 of its manifest, which lists every file's sha256
    manifest_sha256: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def find_protocol_file(name: str) -> Path | None:
    """``benchmarks/<name>.py`` in the current folder or in the delbench checkout, for a
    protocol named in a run or submission (a name with a path in it is never looked up)."""
    if not isinstance(name, str) or not _PROTOCOL_NAME.match(name):
        return None
    import delbench

    for folder in (Path.cwd() / "benchmarks", Path(delbench.__file__).resolve().parent.parent / "benchmarks"):
        candidate = folder / f"{name}.py"
        if candidate.is_file():
            return candidate
    return None


def _differences(mine: Any, theirs: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """Every leaf where two JSON values differ, as ``(path, mine, theirs)``."""
    missing = "(not set)"
    if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
        for key in sorted(set(mine) | set(theirs)):
            yield from _differences(mine.get(key, missing), theirs.get(key, missing), f"{path}.{key}" if path else key)
    elif isinstance(mine, list) and isinstance(theirs, list) and len(mine) == len(theirs):
        for i, (a, b) in enumerate(zip(mine, theirs)):
            yield from _differences(a, b, f"{path}[{i}]")
    elif mine != theirs or isinstance(mine, bool) != isinstance(theirs, bool):  # True == 1 in Python, not here
        yield path, mine, theirs


def check_settings(submitted: Any, reference: Any) -> list[str]:
    """Every setting of ``submitted`` (a :class:`~delbench.protocol.Protocol`) that differs from
    the ``reference`` protocol's, one line each: all of the protocol but its selectors and
    the execution settings (runtime, execution); and per selector, its ratios and seeds, which
    must be the reference's for the same selector label, else the protocol's ``ratios`` and
    ``seeds``: a protocol pins everything but the selector."""
    where = f"protocol {reference.name} v{reference.version}"
    mine, theirs = submitted.to_dict(), reference.to_dict()
    skip = {"selectors", *UNHASHED_FIELDS}
    # the protocol's name and version first: "another protocol" says more than its first differing key
    problems = [f"setting {path}: {json.dumps(a, default=str)} in the run, {json.dumps(b, default=str)} in {where}"
                for key in sorted((set(mine) | set(theirs)) - skip, key=lambda k: (k not in ("name", "version"), k))
                for path, a, b in _differences(mine.get(key, "(not set)"), theirs.get(key, "(not set)"), key)]
    labels = {spec.label: spec for spec in reference.selectors}
    for i, spec in enumerate(submitted.selectors):
        label = spec.label
        own = labels.get(label)
        expected = {"ratios": reference.selector_ratios(own) if own else reference.ratios,
                    "seeds": reference.selector_seeds(own) if own else reference.seeds}
        actual = {"ratios": submitted.selector_ratios(spec), "seeds": submitted.selector_seeds(spec)}
        for key in ("ratios", "seeds"):
            if list(actual[key]) != list(expected[key]):
                source = f"its entry in {where}" if own else f"the {key} of {where}"
                problems.append(f"setting selectors[{i}] ({label}).{key}: {list(actual[key])} in the run, "
                                f"{list(expected[key])} in {source}")
    return problems


def _check_manifest(directory: Path, header: dict[str, Any]) -> list[str]:
    manifest_path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        listed = manifest["files"]
        assert isinstance(listed, dict)
    except (ValueError, KeyError, AssertionError, OSError) as exc:
        return [f"{MANIFEST_FILE}: unreadable ({one_line(str(exc))})"]
    problems = []
    if manifest.get("format") != SUBMISSION_FORMAT:
        problems.append(f"{MANIFEST_FILE}: format {manifest.get('format')!r}, expected {SUBMISSION_FORMAT!r}")
    for key, recorded in (("protocol", header.get("protocol")), ("protocol_version", header.get("protocol_version")),
                          ("config_sha256", header.get("config_sha256"))):
        if manifest.get(key) != recorded:
            problems.append(f"{MANIFEST_FILE}: {key} {manifest.get(key)!r} != {recorded!r} in {HEADER_FILE}")
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()} - {MANIFEST_FILE}
    for name in sorted(set(listed) - present):
        problems.append(f"{name}: listed in {MANIFEST_FILE} but missing")
    for name in sorted(present - set(listed)):
        problems.append(f"{name}: not listed in {MANIFEST_FILE}")
    for name in sorted(present & set(listed)):
        actual = file_sha256(directory / name)
        if not isinstance(listed[name], dict) or actual != listed[name].get("sha256"):
            problems.append(f"{name}: sha256 {actual} != {MANIFEST_FILE}'s {(listed[name] or {}).get('sha256')}")
    return problems


def _check_subsets(directory: Path, header: dict[str, Any], submission: bool) -> tuple[list[str], dict[tuple, dict]]:
    """Subset files: sorted unique int64 in the pool's range, their records consistent, their
    id lists hashing to ids_sha256 and naming the images their indices name in pool_ids.txt.
    Returns the problems and each selection's record (file, sha256, size) by (label, ratio,
    seed): two cells may select the same subset (a selector deterministic in its seed, two
    methods that agree), so a hash alone does not say whose selection a file is."""
    problems: list[str] = []
    subsets = directory / "subsets"
    index_path = subsets / SUBSETS_FILE
    try:
        index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    except ValueError as exc:
        return [f"subsets/{SUBSETS_FILE}: not JSON ({one_line(str(exc))})"], {}
    n_pool = header.get("n_pool")
    pool_ids = None
    if (directory / POOL_IDS_FILE).is_file():
        pool_ids = read_ids(directory / POOL_IDS_FILE)
        actual = file_sha256(directory / POOL_IDS_FILE)
        if actual != header.get("pool_ids_sha256"):
            problems.append(f"{POOL_IDS_FILE}: sha256 {actual} != the run's pool_ids_sha256 {header.get('pool_ids_sha256')}")
        if len(pool_ids) != n_pool:
            problems.append(f"{POOL_IDS_FILE}: {len(pool_ids)} ids, the run's pool has {n_pool}")
    elif submission:
        problems.append(f"{POOL_IDS_FILE}: missing (a submission lists its pool's ids)")
    records: dict[tuple, dict] = {}
    for name, entry in sorted(index.items()):
        if entry.get("kind") == "derived":
            # new images, not indices: verify_run checks the manifest and every image; here the
            # selection is only recorded under its cell, for the rows to be matched against it
            try:
                label = json.loads((subsets / f"{name}.json").read_text()).get("label")
            except (OSError, ValueError):
                label = None
                problems.append(f"subsets/{name}.json: missing or not JSON (the selection's record: label, ratio, seed)")
            records[(label or entry.get("selector"), entry.get("ratio"), entry.get("seed"))] = {
                "name": name, "sha256": entry.get("sha256"), "n_selected": entry.get("n_selected")}
            continue
        file_name = str(entry.get("file"))
        if Path(file_name).name != file_name or not file_name.endswith(".npy"):
            continue  # verify_run names a bad file name
        meta_path = subsets / f"{name}.json"
        try:
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        except ValueError:
            meta = {}
            problems.append(f"subsets/{name}.json: not JSON")
        if not meta:
            problems.append(f"subsets/{name}.json: missing (the selection's record: label, ratio, seed)")
        for key, meta_key in (("sha256", "sha256"), ("ids_sha256", "ids_sha256"), ("ratio", "ratio"), ("seed", "seed"),
                              ("n_selected", "n_selected"), ("pool_ids_sha256", "pool_ids_sha256")):
            if meta and entry.get(key) != meta.get(meta_key):
                problems.append(f"subsets/{name}.json: {meta_key} {meta.get(meta_key)!r} != {entry.get(key)!r} in "
                                f"subsets/{SUBSETS_FILE}")
        records[(meta.get("label", entry.get("selector")), entry.get("ratio"), entry.get("seed"))] = {
            "name": name, "sha256": entry.get("sha256"), "n_selected": entry.get("n_selected")}
        path = subsets / file_name
        if not path.is_file():
            continue  # verify_run reports it missing
        try:
            indices = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            continue  # verify_run reports it unreadable
        if indices.dtype != np.dtype("<i8") or indices.ndim != 1:
            problems.append(f"subsets/{file_name}: dtype {indices.dtype}, shape {indices.shape}; a subset file holds "
                            f"one 1-D array of little-endian int64 indices")
            continue
        if indices.size > 1 and not (np.diff(indices) > 0).all():
            problems.append(f"subsets/{file_name}: indices are not sorted and unique")
        if indices.size and (indices.min() < 0 or (n_pool is not None and indices.max() >= n_pool)):
            problems.append(f"subsets/{file_name}: indices outside the pool's range [0, {n_pool})")
            continue
        ids_path = subsets / f"{name}{IDS_SUFFIX}"
        if ids_path.is_file():
            ids = read_ids(ids_path)
            if ids_sha256(ids) != entry.get("ids_sha256"):
                problems.append(f"subsets/{name}{IDS_SUFFIX}: sha256 {ids_sha256(ids)} != the subset's ids_sha256 "
                                f"{entry.get('ids_sha256')}")
            if len(ids) != indices.size:
                problems.append(f"subsets/{name}{IDS_SUFFIX}: {len(ids)} ids for {indices.size} indices")
            elif pool_ids is not None and len(pool_ids) == n_pool and \
                    ids != sorted(pool_ids[int(i)] for i in indices):
                problems.append(f"subsets/{name}{IDS_SUFFIX}: not the ids its indices name in {POOL_IDS_FILE}")
        elif submission:
            problems.append(f"subsets/{name}{IDS_SUFFIX}: missing (a submission lists every subset's ids)")
    return problems, records


def _check_rows(directory: Path, header: dict[str, Any], protocol: Any, records: dict[tuple, dict]) -> list[str]:
    """The rows against the protocol's planned cells and against their subsets."""
    problems: list[str] = []
    by_key: dict[str, list[ResultRow]] = defaultdict(list)
    try:  # a cut-off last line or an ok row without a finite metric is a problem too
        for row in iter_result_rows(directory / ROWS_FILE, problems):
            by_key[row.key].append(row)
    except DelbenchError as exc:
        return problems + [f"{ROWS_FILE}: {one_line(str(exc))}"]
    for key, rows in by_key.items():
        if any(row.ok for row in rows[:-1]):  # --resume appends a retried failed cell; an ok one is never re-run
            problems.append(f"row {key}: recorded {len(rows)} times (duplicated)")
    latest = {key: rows[-1] for key, rows in by_key.items()}
    n_pool = header.get("n_pool")
    planned = {cell.key: cell for cell in planned_cells(protocol, int(n_pool or 0))}
    where = f"protocol {protocol.name} v{protocol.version}"
    for key in planned.keys() - latest.keys():
        problems.append(f"row {key}: missing (a planned cell of {where} has no row)")
    for key in sorted(latest.keys() - planned.keys(), key=str):
        problems.append(f"row {key}: not a planned cell of {where} (extra)")
    metrics_by_task: dict[tuple, set[str]] = defaultdict(set)
    for key in sorted(planned.keys() & latest.keys()):
        row, cell = latest[key], planned[key]
        if not row.ok:
            problems.append(f"row {key}: failed" + (f" in {row.stage}" if row.stage else "") + f": {row.error}")
            continue
        expected = {"selector": cell.label, "ratio": cell.ratio, "seed": cell.seed, "task": cell.task.name,
                    "task_dataset": cell.task.dataset_key, "pretrain_epoch": cell.pretrain_epoch,
                    "kind": "reference" if cell.reference else "selection"}
        for name, value in expected.items():
            if getattr(row, name) != value:
                problems.append(f"row {key}: {name} {getattr(row, name)!r} does not match its key ({value!r})")
        metrics_by_task[(row.task_dataset, row.task)].add(str(row.metric))
        score = row.metrics.get(row.metric) if isinstance(row.metrics, dict) else None
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not 0 <= score <= 1:
            problems.append(f"row {key}: its metric {row.metric!r} is {score!r}, not a fraction in [0, 1]")
            continue
        if cell.reference:
            if row.normdel is not None or row.subset_sha256 is not None:
                problems.append(f"row {key}: a reference row has no subset and no NormDEL")
            continue
        if row.n_pool != n_pool:
            problems.append(f"row {key}: n_pool {row.n_pool} != the run's {n_pool}")
        if row.pool_ids_sha256 != header.get("pool_ids_sha256"):
            problems.append(f"row {key}: pool_ids_sha256 {row.pool_ids_sha256} != the run's {header.get('pool_ids_sha256')}")
        size = subset_size(int(n_pool or 0), cell.ratio)
        if row.n_selected != size:
            problems.append(f"row {key}: n_selected {row.n_selected} != round({cell.ratio:g} × {n_pool}) = {size}")
        record = records.get((cell.label, cell.ratio, cell.seed))
        if record is None:
            problems.append(f"row {key}: no subset file records the selection of {cell.label} at ratio "
                            f"{cell.ratio:g}, seed {cell.seed}")
        elif record["sha256"] != row.subset_sha256:
            problems.append(f"row {key}: subset_sha256 {row.subset_sha256} is not this cell's selection: "
                            f"subsets/{record['name']}.npy has {record['sha256']}")
        elif record["n_selected"] != row.n_selected:
            problems.append(f"row {key}: n_selected {row.n_selected} != {record['n_selected']} indices in "
                            f"subsets/{record['name']}.npy")
        try:
            recomputed = normdel(float(score), cell.ratio, protocol.alpha)
        except ConfigError as exc:
            problems.append(f"row {key}: NormDEL cannot be recomputed: {exc}")
            continue
        if not isinstance(row.normdel, (int, float)) or abs(row.normdel - recomputed) > NORMDEL_ROUNDING:
            problems.append(f"row {key}: normdel {row.normdel!r} != {recomputed!r} recomputed from {row.metric} "
                            f"{score!r}, ratio {cell.ratio:g} and α {protocol.alpha:g}")
    for (dataset, task), metrics in sorted(metrics_by_task.items()):
        if len(metrics) > 1:
            problems.append(f"rows of {dataset}/{task}: several metrics {sorted(metrics)} for one task")
    return problems


def _rerun(directory: Path, header: dict[str, Any], protocol: Any, rows: list[ResultRow], count: int, seed: int,
           tolerance: float) -> list[str]:
    """Re-run ``count`` sampled selection cells here (fresh work and cache folders) and
    compare: the subset hash exactly, every recorded metric within ``tolerance``."""
    candidates = sorted((r for r in rows if r.ok and r.kind == "selection" and r.pretrain_epoch is None),
                        key=lambda r: r.key)
    if not candidates:
        return []
    picked = np.random.default_rng(seed).choice(len(candidates), size=min(count, len(candidates)), replace=False)
    problems = []
    for row in (candidates[i] for i in sorted(picked)):
        spec = next(s for s in protocol.selectors if s.label == row.selector)
        task = next(t for t in protocol.tasks if (t.name, t.dataset_key) == (row.task, row.task_dataset))
        with tempfile.TemporaryDirectory(prefix="delbench-rerun-") as tmp:
            one = replace(protocol, selectors=(replace(spec, ratios=(row.ratio,), seeds=(row.seed,)),), tasks=(task,),
                          references=(), generalization=GeneralizationSpec(), runtime={"cache_dir": f"{tmp}/cache"},
                          pretrain=replace(protocol.pretrain, checkpoint_epochs=()))
            try:
                [again] = [r for r in run_protocol(one, Path(tmp) / "run", progress=False) if r.key == row.key]
            except Exception as exc:  # a missing plugin or dataset here: said, never hidden
                problems.append(f"re-run of {row.key}: could not run here: {type(exc).__name__}: {one_line(str(exc))}")
                continue
        if not again.ok:
            problems.append(f"re-run of {row.key}: failed here in {again.stage}: {again.error}")
            continue
        if again.subset_sha256 != row.subset_sha256:
            problems.append(f"re-run of {row.key}: subset_sha256 {again.subset_sha256} != recorded {row.subset_sha256}")
        for name, value in sorted(row.metrics.items()):
            now = again.metrics.get(name)
            if now is None or abs(now - value) > tolerance:
                problems.append(f"re-run of {row.key}: {name} {now!r} != recorded {value!r} "
                                f"(tolerance ±{tolerance:g})")
    return problems


def verify(target: str | Path, *, reference: Any = None, check_pool: bool = True, rerun: int = 0, rerun_seed: int = 0,
           tolerance: float = DEFAULT_TOLERANCE, require_reference: bool | None = None) -> Verification:
    """Verify a run directory or a submission (archive or extracted folder); module docstring.

    ``reference``: the :class:`~delbench.protocol.Protocol` the run must follow, else the
    protocol file named after the run's protocol (:func:`find_protocol_file`); without one a
    submission fails (its settings cannot be checked) and a run directory gets a note
    (``require_reference`` decides instead when given: ``submit`` checks its own archive).
    ``check_pool``: re-open the pool here and check its ids (:func:`verify_run`).
    ``rerun``: re-run that many sampled cells (seeded by ``rerun_seed``) and compare their
    metrics within ``tolerance``.
    """
    result = Verification(str(target))
    with open_submission(target) as directory:
        result.submission = (directory / MANIFEST_FILE).is_file() or not Path(target).is_dir()
        try:
            header = read_header(directory)
        except (DelbenchError, ValueError) as exc:
            result.problems.append(f"{HEADER_FILE}: {one_line(str(exc))}")
            return result
        result.header = header
        result.protocol, result.protocol_version = header.get("protocol"), header.get("protocol_version")
        result.config_sha256 = header.get("config_sha256")
        problems = result.problems
        if result.submission:
            if (directory / MANIFEST_FILE).is_file():
                result.manifest_sha256 = file_sha256(directory / MANIFEST_FILE)
            problems += _check_manifest(directory, header)
            try:
                config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                problems.append(f"{CONFIG_FILE}: unreadable ({one_line(str(exc))})")
            else:
                for path, mine, theirs in _differences(config, header.get("protocol_config"), ""):
                    problems.append(f"{CONFIG_FILE}: {path} {mine!r} != {theirs!r} in {HEADER_FILE}'s protocol_config")
        problems += verify_run(directory, check_pool=check_pool)
        subset_problems, records = _check_subsets(directory, header, result.submission)
        problems += subset_problems
        result.n_subsets = len(records)
        try:
            protocol = protocol_from_json(header.get("protocol_config") or {}, plugins=False)
        except ConfigError as exc:
            problems.append(f"{HEADER_FILE}: protocol_config is not a valid protocol: {exc}")
            return result
        problems += _check_rows(directory, header, protocol, records)
        try:
            result.rows = read_rows(directory, [])  # what it leaves out, _check_rows reported
        except DelbenchError:
            return result  # a line that is no row: _check_rows named it
        if reference is None:
            found = find_protocol_file(protocol.name)
            if found is not None:
                try:
                    reference = load_protocol(found)[0]
                except DelbenchError as exc:
                    result.notes.append(f"protocol file {found} could not be loaded to compare settings: {exc}")
            if reference is None:
                message = (f"protocol {protocol.name!r}: no protocol file benchmarks/{protocol.name}.py to compare its "
                           f"settings with; pass --protocol FILE")
                required = result.submission if require_reference is None else require_reference
                (problems if required else result.notes).append(message)
        if reference is not None:
            problems += check_settings(protocol, reference)
        if rerun and not problems:
            problems += _rerun(directory, header, protocol, result.rows, rerun, rerun_seed, tolerance)
    return result
