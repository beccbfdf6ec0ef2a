"""Time every registered selector at growing pool sizes: seconds, peak RSS, growth exponent.

    python benchmarks/perf/selection.py --sizes 10000,100000 --out results.json
    python benchmarks/perf/selection.py --sizes 1000000 --selectors meddel,semdedup,random

For each size the script writes clustered synthetic embeddings (float16, d = --dim) to a
memory-mapped ``.npy`` in the work directory, chunk by chunk, following the layout of the
``synthetic_endoscopy`` pool of the same size (one direction per scene, near-duplicate frames
around it, invalid frames around one direction per invalid type). Each selector then runs in
its own subprocess, so its peak RSS (``ru_maxrss``) is its own; note that pages of the
memory-mapped file a process has touched count towards its RSS. ``peak_anon_mib`` is the
peak of the process's anonymous memory (``RssAnon``, sampled every 50 ms): its own memory,
without the file's pages, which are page cache.

``--cluster-size C`` gives the clustering selectors (and their references) ``n_clusters`` =
n / C at every size, so pools of different sizes compare at the same average cluster size
(the default is about sqrt(n) clusters, whose clusters grow with n):

    python benchmarks/perf/selection.py --sizes 1000000,10000000 --selectors meddel,semdedup \
        --cluster-size 1000 --no-reference

``--kmeans flat|hierarchical`` fixes the clustering selectors' k-means method (default theirs,
'auto': two levels from 4,096 clusters on); ``--compare-kmeans`` runs each of them with both
on the same embeddings, and flat again under the next seed (the yardstick: how far the
subset moves with the clustering seed alone), and prints for each its time, its overlap with
flat's subset (Jaccard, share of flat's items it keeps too), the share of the pool's planted
core frames it keeps and the share of invalid frames in it:

    python benchmarks/perf/selection.py --sizes 1000000 --selectors meddel,semdedup \
        --cluster-size 1000 --compare-kmeans --work-dir /data/perf

For ``meddel`` and ``semdedup`` it also runs a straightforward reference in the same way:
the whole file loaded as float32, the same k-means (same seed, so the same clusters), then per
cluster the full c × c similarity matrix in plain numpy. It prints our time / reference time
and the overlap of the two subsets (they should agree up to float rounding at the threshold).

``--compare-exact`` runs each coreset selector (``kcenter_greedy``, ``herding``,
``facility_location``) on the same embeddings with ``exact=True`` and with ``exact=False`` (its
documented approximation, and one more run per parameter set ``--approx-params`` lists), and
prints for each its time, peak memory and objective on the L2-normalised rows in the full dimension —
covering radius (largest distance from a pool item to its nearest pick; lower is better),
facility-location value (sum over the pool of the largest clipped cosine similarity to a pick;
higher is better), MMD (distance between the mean of the picks and the pool mean, linear
kernel; lower is better) — and the approximation's objective over the exact one's.
``--sizes bound`` takes, per selector, the largest pool at which ``exact='auto'`` still runs
the exact algorithm at this dimension and ratio; ``--blobs 60,1.0`` replaces the synthetic
pool's embeddings by 60 noisy clusters; ``--approx-params`` adds approximations to compare
(e.g. version 1's defaults):

    python benchmarks/perf/selection.py --compare-exact --sizes bound --ratio 0.05 --dim 768 \
        --approx-params '{"kcenter_greedy": [{}, {"partition_size": 10000}]}'

Selectors that need a backbone get ``delbench.testing.FakeBackbone`` (so their time is the
harness' share only); image-based selectors render the synthetic frames, which dominates.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from delbench_plugins.selectors.meddel import MEDDEL_EPS

#: selectors that take ``n_clusters`` (``--cluster-size``)
CLUSTERING = ("meddel", "semdedup")
#: selectors with a plain-numpy reference, and the outlier threshold that reference applies
REFERENCE_OUTLIER_EPS = {"meddel": MEDDEL_EPS, "semdedup": math.inf}
GENERATION_CHUNK = 65_536
NOISE = 0.35           # per-frame noise around its scene's direction (relative to a unit direction)
INVALID_NOISE = 0.9    # invalid frames scatter widely around their type's direction


# --- data ---------------------------------------------------------------------------------
def _pool(n: int, image_size: int):
    from delbench_plugins.datasets.synthetic import SyntheticEndoscopy

    return SyntheticEndoscopy(num_frames=n, image_size=image_size, invalid_fraction=0.3, seed=0)


def write_embeddings(path: Path, n: int, dim: int, image_size: int, seed: int = 0) -> Path:
    """Clustered float16 embeddings following the synthetic pool's layout, streamed to disk."""
    if path.exists():
        return path
    from delbench_plugins.datasets.synthetic import INVALID_TYPES

    metadata = _pool(n, image_size).metadata()
    scene = np.asarray(metadata["scene_id"], np.int64)
    invalid = np.asarray(metadata["kind"] == "invalid")
    invalid_type = np.searchsorted(np.asarray(sorted(INVALID_TYPES)), metadata["invalid_type"][invalid].astype(str))
    type_code = np.zeros(n, np.int64)
    type_code[invalid] = invalid_type
    partial = path.with_suffix(".partial.npy")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=(n, dim))
    type_directions = np.random.default_rng([seed, 1]).normal(size=(len(INVALID_TYPES), dim))
    for start in range(0, n, GENERATION_CHUNK):
        stop = min(n, start + GENERATION_CHUNK)
        rng = np.random.default_rng([seed, 2, start])
        # scene directions are drawn per scene id so every chunk agrees on them
        scenes = np.unique(scene[start:stop])
        directions = np.stack([np.random.default_rng([seed, 3, int(s)]).normal(size=dim) for s in scenes])
        block = directions[np.searchsorted(scenes, scene[start:stop])]
        block = block + NOISE * rng.normal(size=block.shape)
        bad = invalid[start:stop]
        block[bad] = type_directions[type_code[start:stop][bad]] + INVALID_NOISE * rng.normal(size=(int(bad.sum()), dim))
        out[start:stop] = (block / math.sqrt(dim)).astype(np.float16)
    out.flush()
    del out
    os.replace(partial, path)
    return path


def write_blobs(path: Path, n: int, dim: int, spec: str, seed: int = 0) -> Path:
    """``CLUSTERS,NOISE``: n rows, each a random unit cluster centre plus Gaussian noise of
    norm about NOISE (float16), cluster of each row drawn uniformly."""
    if path.exists():
        return path
    clusters, noise = int(spec.split(",")[0]), float(spec.split(",")[1])
    rng = np.random.default_rng([seed, 4])
    centres = rng.standard_normal((clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim)) / math.sqrt(dim)
    np.save(path, rows.astype(np.float16))
    return path


# --- the two kinds of worker run ------------------------------------------------------------
def _rss_mib() -> float:
    """Peak RSS of this process (VmHWM). Not ru_maxrss: Linux carries that over exec from
    the parent, so a child would report the driver's peak."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # no /proc: best effort


class AnonPeak:
    """The peak of this process's anonymous memory (RssAnon) while the block runs, sampled
    every ``interval`` seconds by a daemon thread (Linux has no peak counter for it)."""

    def __init__(self, interval: float = 0.05) -> None:
        import threading

        self.interval, self.peak_mib = interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def current_mib() -> float:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, self.current_mib())
            self._stop.wait(self.interval)

    def __enter__(self) -> "AnonPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mib = max(self.peak_mib, self.current_mib())


def _n_clusters(name: str, n: int, cluster_size: int | None) -> dict[str, int]:
    return {"n_clusters": max(1, n // cluster_size)} if cluster_size and name in CLUSTERING else {}


def _params(name: str, n: int, cluster_size: int | None, kmeans: str | None,
            given: dict[str, Any] | None = None) -> dict[str, Any]:
    """The selector parameters of a measured run: ``n_clusters`` (``--cluster-size``) and
    ``kmeans`` (``--kmeans``) for the clustering selectors, then ``given`` ones."""
    extra = {"kmeans": kmeans} if kmeans and name in CLUSTERING else {}
    return {**_n_clusters(name, n, cluster_size), **extra, **(given or {})}


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_selector(name: str, embeddings_path: str, ratio: float, seed: int, image_size: int,
                 cluster_size: int | None = None, kmeans: str | None = None,
                 given: dict[str, Any] | None = None) -> dict[str, Any]:
    import delbench
    from delbench.run.select import run_selector as run
    from delbench.testing import FakeBackbone

    cls = delbench.get_selector(name)
    embeddings = np.load(embeddings_path, mmap_mode="r")
    pool = _pool(embeddings.shape[0], image_size)
    pool_ids = pool.item_ids()  # listed before the clock starts: the selection is what is timed
    ratio = float(getattr(cls, "fixed_ratio", None) or ratio)
    before = _current_rss_mib()
    with AnonPeak() as anon:
        subset = run(cls(), pool, ratio, seed=seed, embeddings=embeddings, backbone=FakeBackbone(), pool_ids=pool_ids,
                     params=_params(name, embeddings.shape[0], cluster_size, kmeans, given))
    seconds = subset.time_s
    diagnostics = {k: v for k, v in subset.diagnostics.items() if isinstance(v, (int, float, str, type(None)))}
    return {"seconds": seconds, "peak_rss_mib": _rss_mib(), "peak_anon_mib": round(anon.peak_mib, 1),
            "rss_before_mib": before, "ratio": ratio,
            "n_selected": subset.size, "diagnostics": diagnostics, "indices_sha256": subset.sha256,
            "_indices": subset.indices}


def reference_scores(unit: np.ndarray, labels: np.ndarray, n_clusters: int, priority: np.ndarray,
                     eligible: np.ndarray) -> np.ndarray:
    """Plain per-cluster max similarity to any higher-priority item: full c × c per cluster."""
    scores = np.full(unit.shape[0], np.nan, np.float32)
    for cluster in range(n_clusters):
        members = np.flatnonzero((labels == cluster) & eligible)
        if members.size == 0:
            continue
        members = members[np.lexsort((members, -priority[members]))]
        similarity = unit[members] @ unit[members].T
        similarity[np.triu_indices(members.size)] = -np.inf
        scores[members] = similarity.max(axis=1)
    return scores


def run_reference(name: str, embeddings_path: str, ratio: float, seed: int, image_size: int,
                  cluster_size: int | None = None, kmeans: str | None = None) -> dict[str, Any]:
    if kmeans not in (None, "flat"):
        raise SystemExit("the plain-numpy reference clusters with flat k-means only (use --no-reference)")
    from delbench.sdk.subsets import subset_sha256, subset_size
    from delbench_plugins.lib.clustering import default_n_clusters, kmeans
    started = time.perf_counter()
    raw = np.load(embeddings_path).astype(np.float32)  # the whole pool in memory
    n = raw.shape[0]
    k = subset_size(n, ratio)
    n_clusters = _n_clusters(name, n, cluster_size).get("n_clusters", default_n_clusters(n))
    clustering = kmeans(raw, n_clusters, seed=seed)  # same clusters as the selector
    clustered = time.perf_counter()
    raw /= np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-30)
    distances = clustering.distances
    eligible = distances <= REFERENCE_OUTLIER_EPS[name]
    scores = reference_scores(raw, clustering.labels, clustering.n_clusters, distances, eligible)
    candidates = np.flatnonzero(eligible)
    ranked = candidates[np.lexsort((candidates, -distances[candidates], scores[candidates]))]
    kept = ranked[:k]
    if kept.size < k:
        outliers = np.flatnonzero(~eligible)
        kept = np.concatenate([kept, outliers[np.lexsort((outliers, distances[outliers]))][: k - kept.size]])
    kept = np.sort(kept).astype(np.int64)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "kmeans_seconds": clustered - started, "peak_rss_mib": _rss_mib(),
            "n_selected": int(kept.size), "indices_sha256": subset_sha256(kept), "_indices": kept}


def worker_main(args: argparse.Namespace) -> None:
    if args.reference:
        outcome = run_reference(args.worker, args.embeddings, args.ratio, args.seed, args.image_size,
                                args.cluster_size, args.kmeans)
    else:
        outcome = run_selector(args.worker, args.embeddings, args.ratio, args.seed, args.image_size,
                               args.cluster_size, args.kmeans, json.loads(args.selector_params or "{}"))
    indices = outcome.pop("_indices", None)
    if indices is not None and args.save_indices:
        np.save(args.save_indices, indices)
    print("RESULT " + json.dumps(outcome))


# --- driver ---------------------------------------------------------------------------------
def _spawn(args: argparse.Namespace, name: str, path: Path, *, reference: bool,
           save_indices: Path | None = None, kmeans: str | None = None, seed: int | None = None,
           params: dict[str, Any] | None = None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", name, "--embeddings", str(path), "--ratio",
               str(args.ratio), "--seed", str(args.seed if seed is None else seed),
               "--image-size", str(args.image_size)]
    if args.cluster_size:
        command += ["--cluster-size", str(args.cluster_size)]
    if kmeans or args.kmeans:
        command += ["--kmeans", kmeans or args.kmeans]
    if reference:
        command.append("--reference")
    if save_indices is not None:
        command += ["--save-indices", str(save_indices)]
    if params:
        command += ["--selector-params", json.dumps(params)]
    load_before = os.getloadavg()[0]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout} s"}
    # other processes on a shared machine skew the timings: record how busy it was
    load = {"load_avg_1min_before": round(load_before, 2), "load_avg_1min_after": round(os.getloadavg()[0], 2)}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {done.returncode}: {' | '.join(tail)}", **load}
    return {**json.loads(lines[-1][len("RESULT "):]), **load}


def compare_kmeans(args: argparse.Namespace, name: str, n: int, path: Path, work: Path) -> dict[str, Any]:
    """``name`` with flat and with two-level k-means on the same embeddings and settings, and
    with flat k-means under the next seed (how much the subset moves with the clustering's
    seed alone, the yardstick for the first comparison): the runs, the overlap of each subset
    with the flat one and the share of the pool's planted core frames each keeps."""
    runs, kept = {}, {}
    for label, method, seed in (("flat", "flat", args.seed), ("hierarchical", "hierarchical", args.seed),
                                ("flat_next_seed", "flat", args.seed + 1)):
        saved = work / f"kmeans_{label}_{name}_{n}.npy"
        runs[label] = _spawn(args, name, path, reference=False, save_indices=saved, kmeans=method, seed=seed)
        if "seconds" in runs[label]:
            kept[label] = np.load(saved)
    row: dict[str, Any] = {"selector": name, "n": n, "dim": args.dim, "compare": "kmeans", **runs}
    if "flat" in kept:
        kind = np.asarray(_pool(n, args.image_size).metadata()["kind"]).astype(str)
        core, invalid = np.flatnonzero(kind == "core"), np.flatnonzero(kind == "invalid")
        flat = kept["flat"]
        for label, other in kept.items():
            common = np.intersect1d(flat, other).size
            row[label].update(jaccard_with_flat=round(common / max(1, np.union1d(flat, other).size), 6),
                              share_of_flat_kept=round(common / max(1, flat.size), 6),
                              core_kept=round(np.intersect1d(other, core).size / max(1, core.size), 6),
                              invalid_share_of_subset=round(np.isin(other, invalid).mean(), 6))
        if "hierarchical" in kept:
            row["hierarchical_over_flat_seconds"] = round(runs["hierarchical"]["seconds"] / runs["flat"]["seconds"], 3)
    return row


# --- exact against approximate coreset selectors -------------------------------------------
#: coreset selector → (objective, True when lower is better)
EXACT_OBJECTIVES = {"kcenter_greedy": ("radius", True), "herding": ("mmd", True),
                    "facility_location": ("facility_location_value", False)}
OBJECTIVE_BLOCK = 4096


def _unit_rows(path: Path) -> np.ndarray:
    rows = np.load(path).astype(np.float32)
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-30)
    return rows


def covering_radius(unit: np.ndarray, picked: np.ndarray) -> float:
    """Largest Euclidean distance from a row to its nearest picked row (k-center's objective)."""
    centres = unit[picked]
    squared_centres = np.einsum("ij,ij->i", centres, centres)
    worst = 0.0
    for start in range(0, unit.shape[0], OBJECTIVE_BLOCK):
        block = unit[start:start + OBJECTIVE_BLOCK]
        distance = np.einsum("ij,ij->i", block, block)[:, None] - 2.0 * (block @ centres.T) + squared_centres
        worst = max(worst, float(distance.min(axis=1).max()))
    return math.sqrt(max(worst, 0.0))


def facility_location_value(unit: np.ndarray, picked: np.ndarray) -> float:
    """Σ over rows of the largest cosine similarity (clipped to [0, 1]) to a picked row."""
    centres = unit[picked]
    total = 0.0
    for start in range(0, unit.shape[0], OBJECTIVE_BLOCK):
        total += float(np.clip(unit[start:start + OBJECTIVE_BLOCK] @ centres.T, 0.0, 1.0).max(axis=1).sum())
    return total


def mmd(unit: np.ndarray, picked: np.ndarray) -> float:
    """Distance between the mean of the picked rows and the pool mean (linear-kernel MMD)."""
    return float(np.linalg.norm(unit[picked].mean(axis=0, dtype=np.float64) - unit.mean(axis=0, dtype=np.float64)))


OBJECTIVE_FUNCTIONS = {"radius": covering_radius, "facility_location_value": facility_location_value, "mmd": mmd}


def exact_bound(name: str, dim: int, ratio: float) -> int:
    """The largest pool size at which ``exact='auto'`` runs ``name``'s exact algorithm."""
    import delbench
    from delbench.subset import subset_size

    cls = delbench.get_selector(name)
    low, high = 1, 1
    while cls.exact_cost(high, dim, subset_size(high, ratio)).within_bounds():
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if cls.exact_cost(middle, dim, subset_size(middle, ratio)).within_bounds():
            low = middle
        else:
            high = middle
    return low


def compare_exact(args: argparse.Namespace, name: str, n: int, path: Path, work: Path) -> list[dict[str, Any]]:
    """``name`` with ``exact=True`` and with ``exact=False`` (its defaults, then each further
    parameter set of ``--approx-params``) on the same embeddings: one row per approximation
    with time, memory and objective (full dimension) of both, and approximate over exact."""
    objective, lower_is_better = EXACT_OBJECTIVES[name]
    given = json.loads(args.approx_params or "{}").get(name, [{}])
    variants = [{"exact": False, **params} for params in (given if isinstance(given, list) else [given])]
    unit = None
    runs, kept = [], []
    for label, params in [("exact", {"exact": True})] + [(f"approximate{i}", v) for i, v in enumerate(variants)]:
        saved = work / f"{label}_{name}_{n}.npy"
        runs.append(_spawn(args, name, path, reference=False, save_indices=saved, params=params))
        kept.append(np.load(saved) if "seconds" in runs[-1] else None)
        if kept[-1] is not None:
            unit = _unit_rows(path) if unit is None else unit
            runs[-1][objective] = OBJECTIVE_FUNCTIONS[objective](unit, kept[-1])
    rows = []
    for params, run, picked in zip(variants, runs[1:], kept[1:]):
        row: dict[str, Any] = {"selector": name, "n": n, "dim": args.dim, "embeddings": args.blobs or "synthetic pool",
                               "compare": "exact", "objective": objective, "lower_is_better": lower_is_better,
                               "approx_params": params, "exact": runs[0], "approximate": run}
        if picked is not None and kept[0] is not None:
            exact = runs[0][objective]
            row["approx_over_exact"] = round(run[objective] / exact, 5) if exact else None
            row["approx_over_exact_seconds"] = round(run["seconds"] / runs[0]["seconds"], 3)
            row["jaccard"] = round(np.intersect1d(kept[0], picked).size
                                   / max(1, np.union1d(kept[0], picked).size), 4)
        rows.append(row)
    return rows


def growth_exponents(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, float]]:
    """log(t2 / t1) / log(n2 / n1) between consecutive sizes, per selector."""
    exponents: dict[str, dict[str, float]] = {}
    by_name: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        if isinstance(row.get(key), (int, float)):
            by_name.setdefault(row["selector"], []).append((row["n"], row[key]))
    for name, points in by_name.items():
        points.sort()
        for (n1, t1), (n2, t2) in zip(points, points[1:]):
            if t1 > 0 and t2 > 0:
                exponents.setdefault(name, {})[f"{n1}->{n2}"] = round(math.log(t2 / t1) / math.log(n2 / n1), 3)
    return exponents


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="comma-separated pool sizes; with --compare-exact also 'bound' (see above)")
    parser.add_argument("--selectors", default=None, help="comma-separated names (default: all registered)")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--ratio", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=32, help="frames for image-based selectors")
    parser.add_argument("--work-dir", default=None, help="where the embedding files go (default: a temp dir)")
    parser.add_argument("--no-reference", action="store_true", help="skip the plain-numpy references")
    parser.add_argument("--cluster-size", type=int, default=None,
                        help="n_clusters = n / this for meddel and semdedup (default: about sqrt(n) clusters)")
    parser.add_argument("--kmeans", choices=("auto", "flat", "hierarchical"), default=None,
                        help="k-means method of meddel and semdedup (default: theirs, 'auto')")
    parser.add_argument("--compare-kmeans", action="store_true",
                        help="run meddel/semdedup with flat and with two-level k-means and compare the subsets")
    parser.add_argument("--compare-exact", action="store_true",
                        help="run the coreset selectors with exact=True and exact=False and compare objectives")
    parser.add_argument("--approx-params", default=None,
                        help="with --compare-exact: JSON {selector: [{param: value}, ...]}, one approximate run "
                             "per parameter set (default [{}]: its defaults)")
    parser.add_argument("--blobs", default=None, metavar="CLUSTERS,NOISE",
                        help="with --compare-exact: embeddings of CLUSTERS noisy clusters, not the synthetic pool's")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    # internal: one measured run in a fresh process
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--embeddings", help=argparse.SUPPRESS)
    parser.add_argument("--save-indices", help=argparse.SUPPRESS)
    parser.add_argument("--selector-params", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args)
        return

    import delbench

    names = args.selectors.split(",") if args.selectors else delbench.list_selectors()
    for name in names:
        delbench.get_selector(name)  # unknown names fail here, with close matches
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="delbench-perf-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.compare_exact:
        main_compare_exact(args, [name for name in names if name in EXACT_OBJECTIVES], work)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[dict[str, Any]] = []
    for n in sizes:
        started = time.perf_counter()
        path = write_embeddings(work / f"embeddings_n{n}_d{args.dim}.npy", n, args.dim, args.image_size)
        print(f"n={n}: embeddings {path} ready in {time.perf_counter() - started:.1f} s", flush=True)
        if args.compare_kmeans:
            for name in (name for name in names if name in CLUSTERING):
                rows.append(compare_kmeans(args, name, n, path, work))
                print(json.dumps(rows[-1]), flush=True)
            continue
        for name in names:
            with_reference = name in REFERENCE_OUTLIER_EPS and not args.no_reference
            ours_path, reference_path = work / f"ours_{name}_{n}.npy", work / f"reference_{name}_{n}.npy"
            row: dict[str, Any] = {"selector": name, "n": n, "dim": args.dim, **_spawn(
                args, name, path, reference=False, save_indices=ours_path if with_reference else None)}
            if with_reference:
                reference = _spawn(args, name, path, reference=True, save_indices=reference_path)
                row["reference"] = reference
                if "seconds" in row and "seconds" in reference:
                    row["ours_over_reference"] = round(row["seconds"] / reference["seconds"], 3)
                    row["same_subset_as_reference"] = row.get("indices_sha256") == reference.get("indices_sha256")
                    ours, theirs = np.load(ours_path), np.load(reference_path)
                    row["jaccard_with_reference"] = round(
                        np.intersect1d(ours, theirs).size / max(1, np.union1d(ours, theirs).size), 6)
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {"sizes": sizes, "dim": args.dim, "ratio": args.ratio, "cpu_count": os.cpu_count(),
               "rows": rows, "growth_exponent_seconds": growth_exponents(rows, "seconds"),
               "growth_exponent_peak_rss": growth_exponents(rows, "peak_rss_mib")}
    try:
        from tabulate import tabulate

        table = [[r["selector"], r["n"], r.get("seconds", r.get("error")),
                  r.get("peak_rss_mib"), r.get("peak_anon_mib"), (r.get("reference") or {}).get("seconds"),
                  (r.get("reference") or {}).get("peak_rss_mib"), r.get("ours_over_reference")] for r in rows]
        print(tabulate(table, headers=["selector", "n", "seconds", "peak RSS MiB", "peak anon MiB", "ref seconds",
                                       "ref peak RSS MiB", "ours/ref"], floatfmt=".2f"))
    except ImportError:
        pass
    print("growth exponents (seconds):", json.dumps(summary["growth_exponent_seconds"]))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))


def main_compare_exact(args: argparse.Namespace, names: list[str], work: Path) -> None:
    """The ``--compare-exact`` driver: rows, a table and (``--out``) the JSON."""
    if not names:
        raise SystemExit(f"--compare-exact compares {', '.join(EXACT_OBJECTIVES)}; none of them was selected")
    rows: list[dict[str, Any]] = []
    for name in names:
        bound = exact_bound(name, args.dim, args.ratio)
        sizes = [bound] if args.sizes == "bound" else [int(s) for s in args.sizes.split(",")]
        for n in sizes:
            started = time.perf_counter()
            if args.blobs:
                path = write_blobs(work / f"blobs_{args.blobs.replace(',', '_')}_n{n}_d{args.dim}.npy", n, args.dim,
                                   args.blobs)
            else:
                path = write_embeddings(work / f"embeddings_n{n}_d{args.dim}.npy", n, args.dim, args.image_size)
            print(f"n={n}: embeddings {path} ready in {time.perf_counter() - started:.1f} s", flush=True)
            for row in compare_exact(args, name, n, path, work):
                rows.append({**row, "exact_bound_n": bound})
                print(json.dumps(rows[-1]), flush=True)
    try:
        from tabulate import tabulate

        table = [[r["selector"], json.dumps({k: v for k, v in r["approx_params"].items() if k != "exact"}),
                  r["n"], r["exact_bound_n"], r["objective"],
                  (r.get("exact") or {}).get(r["objective"]), (r.get("approximate") or {}).get(r["objective"]),
                  r.get("approx_over_exact"),
                  (r.get("exact") or {}).get("seconds", (r.get("exact") or {}).get("error")),
                  (r.get("approximate") or {}).get("seconds"), (r.get("exact") or {}).get("peak_anon_mib"),
                  (r.get("approximate") or {}).get("peak_anon_mib"), r.get("jaccard")] for r in rows]
        print(tabulate(table, headers=["selector", "approx params", "n", "exact bound n", "objective", "exact",
                                       "approximate",
                                       "approx/exact", "exact s", "approx s", "exact anon MiB", "approx anon MiB",
                                       "Jaccard"], floatfmt=".5g"))
    except ImportError:
        pass
    if args.out:
        Path(args.out).write_text(json.dumps({"dim": args.dim, "ratio": args.ratio, "seed": args.seed,
                                              "embeddings": args.blobs or "synthetic pool",
                                              "cpu_count": os.cpu_count(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
