"""The summary of a run: its rows aggregated over seeds into plain JSON (``summary.json``),
from which every report format is rendered.

Per cell (task, selector, ratio, checkpoint epoch): the score and NormDEL, mean ± std over
seeds with the seeded percentile-bootstrap interval (:mod:`delbench.reports.stats`). Every
selector is compared with ``random`` at the same ratio by the exact sign-flip test over seeds
(and, pooled, over datasets). The aggregate per selector is NormDEL averaged over datasets and
ratios, and the normalised area under its score-vs-ratio curve, each with its interval. Two
levels are recorded and never mixed up: NormDEL's α (the weight of the retained ratio,
``normdel.alpha``) and the significance level of the tests (``statistics.significance``,
intervals at 1 − significance). Also: what each selection removed of a pool's planted ground
truth, what derived images were cut from, the costs per stage, the references, the
cross-dataset matrix, the failed cells, the validity section
(:func:`~delbench.reports.validity.summarize_validity`) and each ok cell's record for
``delbench compare``.
"""
from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

import numpy as np

from delbench.protocol import DEFAULT_SIGNIFICANCE
from delbench.reports.stats import (BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, EXACT_SIGN_FLIP_MAX_N,
                                    MONTE_CARLO_PERMUTATIONS, bootstrap_interval, bootstrap_means, curve_area,
                                    mean_std, percentile_interval, sign_flip_test)
from delbench.reports.text import BASELINE_SELECTOR
from delbench.reports.validity import summarize_validity
from delbench.store import SCHEMA_VERSION, ResultRow


def _signed(row: ResultRow) -> float:
    """The row's score with the sign that makes larger better (its metric's direction)."""
    return row.score if row.higher_is_better else -row.score


def compare_with_baseline(rows: list[ResultRow], significance: float) -> list[dict[str, Any]]:
    """Every selector against ``random`` at the same ratio, by the exact sign-flip test.

    Pairs are (dataset, seed) where both have an ok final row; differences are in the
    direction of the metric (positive: better than random). One entry per task (``scope``
    the task's ``dataset/task``) and, when the protocol has several tasks, one pooled over
    all of them (``scope`` ``"all tasks"``), each with the test's n, mean difference, p,
    smallest attainable p and whether it is significant at ``significance``.
    """
    final = [r for r in rows if r.ok and r.ratio is not None and r.pretrain_epoch is None]
    scores: dict[tuple, dict[tuple, float]] = defaultdict(dict)
    metrics: dict[tuple, str] = {}
    for row in final:
        scores[(row.selector, row.ratio)].setdefault((row.task_dataset, row.task, row.seed), _signed(row))
        metrics[(row.task_dataset, row.task)] = row.metric
    out = []
    for (selector, ratio), mine in sorted(scores.items()):
        baseline = scores.get((BASELINE_SELECTOR, ratio))
        if selector == BASELINE_SELECTOR or not baseline:
            continue
        common = sorted(mine.keys() & baseline.keys())
        tasks = sorted({(d, t) for d, t, _ in common})
        scopes = [(f"{d}/{t}", metrics[(d, t)], [k for k in common if k[:2] == (d, t)]) for d, t in tasks]
        if len(tasks) > 1:
            scopes.append(("all tasks", "score", common))
        for scope, metric, keys in scopes:
            test = sign_flip_test([mine[k] - baseline[k] for k in keys])
            out.append({"scope": scope, "metric": metric, "selector": selector, "ratio": ratio,
                        "pairs": [list(k) for k in keys], **test.to_json(),
                        "significant": test.significant(significance)})
    return out


def aggregate_selectors(rows: list[ResultRow], confidence: float) -> list[dict[str, Any]]:
    """Per selector, over its final ok cells: NormDEL averaged over datasets and ratios (the
    mean of the cells' means over seeds) and the area under its score-vs-ratio curve
    (:func:`delbench.reports.stats.curve_area` per task, averaged over tasks; NaN with one ratio),
    each with the percentile interval of the stratified bootstrap (every cell's seeds
    resampled within the cell). Ranked by NormDEL, best first."""
    final = [r for r in rows if r.ok and r.ratio is not None and r.pretrain_epoch is None]
    by_selector: dict[str, dict[tuple, list[ResultRow]]] = defaultdict(lambda: defaultdict(list))
    for row in final:
        by_selector[row.selector][(row.task_dataset, row.task, row.ratio)].append(row)
    out, nan2 = [], [math.nan, math.nan]
    for selector, cells in by_selector.items():
        keys = sorted(cells)
        normdel = bootstrap_means([[r.normdel for r in cells[k]] for k in keys])
        score = bootstrap_means([[r.score for r in cells[k]] for k in keys])
        normdel_means = [mean_std(r.normdel for r in cells[k])[0] for k in keys]
        score_means = np.array([mean_std(r.score for r in cells[k])[0] for k in keys])
        tasks = sorted({k[:2] for k in keys})
        areas, area_samples = [], []
        for task in tasks:
            columns = [i for i, k in enumerate(keys) if k[:2] == task]
            ratios = [keys[i][2] for i in columns]
            areas.append(curve_area(ratios, score_means[columns]))
            area_samples.append(curve_area(ratios, score[:, columns]))
        n_seeds = [len(cells[k]) for k in keys]
        spread = max(n_seeds) >= 2  # else every resample is the point estimate: no interval, not a point
        out.append({"selector": selector, "ratios": sorted({k[2] for k in keys}), "tasks": [f"{d}/{t}" for d, t in tasks],
                    "n_cells": len(keys), "n_seeds": [min(n_seeds), max(n_seeds)],
                    "normdel_mean": float(np.mean(normdel_means)),
                    "normdel_ci": list(percentile_interval(normdel.mean(axis=1), confidence)) if spread else nan2,
                    "score_mean": float(np.mean(score_means)),
                    "score_auc": float(np.mean(areas)),
                    "score_auc_ci": list(percentile_interval(np.mean(area_samples, axis=0), confidence))
                    if spread else nan2})
    out.sort(key=lambda e: (-e["normdel_mean"], e["selector"]))
    for rank, entry in enumerate(out, 1):
        entry["rank"] = rank
    return out


def summarize(header: dict[str, Any], rows: list[ResultRow]) -> dict[str, Any]:
    """Aggregate rows over seeds into the summary structure (plain JSON)."""
    protocol = header.get("protocol_config", {})
    significance = float(protocol.get("significance", DEFAULT_SIGNIFICANCE))
    confidence = 1 - significance
    comparisons = compare_with_baseline(rows, significance)
    per_task = {(c["scope"], c["selector"], c["ratio"]): c for c in comparisons}
    groups: dict[tuple, list[ResultRow]] = defaultdict(list)
    for row in rows:
        if row.ok and row.ratio is not None:
            groups[(row.task_dataset, row.task, row.metric, row.selector, row.ratio, row.pretrain_epoch)].append(row)
    cells = []
    for (task_dataset, task, metric, selector, ratio, epoch), members in groups.items():
        scores = [r.score for r in members]
        score_mean, score_std, n = mean_std(scores)
        norm_mean, norm_std, _ = mean_std(r.normdel for r in members)
        versus = per_task.get((f"{task_dataset}/{task}", selector, ratio)) if epoch is None else None
        cells.append({"task_dataset": task_dataset, "task": task, "metric": metric,
                      "higher_is_better": members[0].higher_is_better, "selector": selector,
                      "ratio": ratio, "pretrain_epoch": epoch, "n_seeds": n,
                      "seeds": sorted(r.seed for r in members),
                      "score_mean": score_mean, "score_std": score_std,
                      "score_ci": list(bootstrap_interval(scores, confidence)),
                      "normdel_mean": norm_mean, "normdel_std": norm_std,
                      "normdel_ci": list(bootstrap_interval([r.normdel for r in members], confidence)),
                      "vs_random": None if versus is None else {
                          k: versus[k] for k in ("n", "mean", "p_value", "min_p", "significant")},
                      "pretrain_epochs": mean_std((r.pretrain or {}).get("epochs") for r in members)[0],
                      "time_s": {stage: mean_std(r.time_s.get(stage) for r in members)[0]
                                 for stage in sorted({s for r in members for s in r.time_s})},
                      "other_metrics": {m: mean_std(r.metrics[m] for r in members)[0]
                                        for m in members[0].metrics if m != metric}})
    cells.sort(key=lambda c: (c["task_dataset"], c["task"], c["selector"], c["ratio"], c["pretrain_epoch"] or -1))
    ground_truth = {}
    for row in rows:
        composition = (row.selection or {}).get("composition")
        if row.ok and composition:
            ground_truth.setdefault((row.selector, row.ratio, row.seed),
                                    {"n_selected": row.n_selected, "composition": composition,
                                     "coverage": (row.selection or {}).get("coverage") or {}})
    truth_rows = []
    by_selection: dict[tuple, list[dict]] = defaultdict(list)
    for (selector, ratio, _), value in ground_truth.items():
        by_selection[(selector, ratio)].append(value)
    for (selector, ratio), values in sorted(by_selection.items()):
        entry = {"selector": selector, "ratio": ratio, "n_seeds": len(values),
                 "n_selected": values[0]["n_selected"]}
        for kind in sorted(values[0]["composition"]):
            shares = [v["composition"][kind]["kept"] / max(1, v["composition"][kind]["pool"]) for v in values]
            entry[f"{kind}_kept"] = mean_std(shares)[0]
        for group in sorted(values[0]["coverage"]):  # distinct scenes, centres the valid frames cover
            entry[f"{group}_covered"] = mean_std(v["coverage"][group]["kept"] for v in values)[0]
            entry[f"{group}_in_pool"] = values[0]["coverage"][group]["pool"]
        truth_rows.append(entry)
    failed = [{"key": r.key, "stage": r.stage, "error": r.error or ""} for r in rows if not r.ok]
    references: dict[tuple, list[ResultRow]] = defaultdict(list)
    cross: dict[tuple, list[float]] = defaultdict(list)
    for row in rows:
        if not row.ok:
            continue
        if row.ratio is None:
            references[(row.task_dataset, row.task, row.metric, row.selector)].append(row)
        if row.pretrain_epoch is not None:
            continue  # the cross-dataset matrix is of final checkpoints, like its diagonal
        for test_dataset, metrics in row.cross_dataset.items():
            cross[(row.task, row.metric, row.selector, row.ratio, row.task_dataset, test_dataset)].append(
                metrics[row.metric])
    reference_cells = [{"task_dataset": d, "task": t, "metric": m, "reference": s,
                        **dict(zip(("score_mean", "score_std", "n_seeds"), mean_std(r.score for r in members)))}
                       for (d, t, m, s), members in sorted(references.items())]
    cross_cells = [{"task": t, "metric": m, "selector": s, "ratio": r, "train_dataset": a, "test_dataset": b,
                    **dict(zip(("score_mean", "score_std", "n_seeds"), mean_std(values)))}
                   for (t, m, s, r, a, b), values in sorted(cross.items())]
    # what `delbench compare` checks a later run against: each ok cell's subset and metrics
    recorded = [{"key": r.key, "selector": r.selector, "ratio": r.ratio, "seed": r.seed,
                 "task_dataset": r.task_dataset, "task": r.task, "pretrain_epoch": r.pretrain_epoch,
                 "subset_sha256": r.subset_sha256, "ids_sha256": r.ids_sha256, "metric": r.metric,
                 "metrics": r.metrics, "normdel": r.normdel} for r in rows if r.ok]
    return {"schema_version": SCHEMA_VERSION, "protocol": header.get("protocol"),
            "costs": summarize_costs(rows), "derived": summarize_derived(rows),
            "protocol_version": header.get("protocol_version"), "config_sha256": header.get("config_sha256"),
            "delbench_version": header.get("delbench_version"),
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "alpha": protocol.get("alpha"),
            "statistics": {"normdel_alpha": protocol.get("alpha"), "significance": significance,
                           "confidence": confidence, "interval": "percentile bootstrap of the mean over seeds",
                           "bootstrap_resamples": BOOTSTRAP_RESAMPLES, "bootstrap_seed": BOOTSTRAP_SEED,
                           "test": f"two-sided exact sign-flip permutation test of the mean paired difference "
                                   f"against {BASELINE_SELECTOR} at the same ratio (all 2^n sign patterns up "
                                   f"to n = {EXACT_SIGN_FLIP_MAX_N} pairs, else {MONTE_CARLO_PERMUTATIONS:,} "
                                   f"seeded draws); significant when p <= significance"},
            "cells": cells, "comparisons": comparisons, "aggregate": aggregate_selectors(rows, confidence),
            "references": reference_cells, "cross_dataset": cross_cells,
            "ground_truth": truth_rows, "validity": summarize_validity(rows, confidence), "failed": failed,
            "rows": recorded}


def selection_seconds(time_s: dict[str, float]) -> float | None:
    """What a selection cost: the scoring model's warm-up (``select_warmup``) plus the
    selector's reported stages (``select_<stage>``, compute seconds even where a stage came
    from a cache), or its wall time (``select``) when it reports none."""
    stages = {k: v for k, v in time_s.items() if k.startswith("select_") and k != "select_warmup" and v is not None}
    own = sum(stages.values()) if stages else time_s.get("select")
    if own is None:
        return None
    return float(own) + float(time_s.get("select_warmup") or 0.0)


def summarize_costs(rows: list[ResultRow]) -> list[dict[str, Any]]:
    """Seconds per (selector, ratio), means over the seeds' final-checkpoint rows of the first
    task (the selection and pre-training are shared by a selection's task rows):
    ``selection`` (:func:`selection_seconds`), each reported ``select_*`` stage, ``pretrain``
    and ``task``."""
    first_task: dict[tuple, str] = {}
    groups: dict[tuple, list[ResultRow]] = defaultdict(list)
    for row in rows:
        if not row.ok or row.ratio is None or row.pretrain_epoch is not None or not row.time_s:
            continue
        task = first_task.setdefault((row.selector, row.ratio), f"{row.task_dataset}/{row.task}")
        if task == f"{row.task_dataset}/{row.task}":
            groups[(row.selector, row.ratio)].append(row)
    out = []
    for (selector, ratio), members in sorted(groups.items()):
        stages = sorted({k for r in members for k in r.time_s if k.startswith("select_")})
        entry = {"selector": selector, "ratio": ratio, "n_seeds": len(members),
                 "selection": mean_std(selection_seconds(r.time_s) for r in members)[0]}
        entry.update({stage: mean_std(r.time_s.get(stage) for r in members)[0] for stage in stages})
        for stage in ("pretrain", "task"):
            entry[stage] = mean_std(r.time_s.get(stage) for r in members)[0]
        out.append(entry)
    return out


def summarize_derived(rows: list[ResultRow]) -> list[dict[str, Any]]:
    """For derived subsets on a pool with planted kinds: per (selector, ratio) the share of
    the patches cut from frames of each kind (mean over seeds) and the proposer."""
    groups: dict[tuple, list[ResultRow]] = defaultdict(list)
    seen = set()
    for row in rows:
        derived = (row.selection or {}).get("derived") or {}
        if row.ok and derived.get("patch_sources") and (row.selector, row.ratio, row.seed) not in seen:
            seen.add((row.selector, row.ratio, row.seed))
            groups[(row.selector, row.ratio)].append(row)
    out = []
    for (selector, ratio), members in sorted(groups.items()):
        kinds = sorted({k for r in members for k in r.selection["derived"]["patch_sources"]})
        shares = {kind: mean_std(r.selection["derived"]["patch_sources"].get(kind, 0)
                                 / max(1, sum(r.selection["derived"]["patch_sources"].values())) for r in members)[0]
                  for kind in kinds}
        proposers = sorted({str((r.selection.get("diagnostics") or {}).get("proposer", "?")) for r in members})
        out.append({"selector": selector, "ratio": ratio, "n_seeds": len(members), "n_images": members[0].n_selected,
                    "n_patches": sum(members[0].selection["derived"]["patch_sources"].values()),
                    "proposer": ", ".join(proposers), "patch_share": shares})
    return out


# -- validity: does the benchmark separate selectors? -------------------------------------


# -- HTML: the Markdown document as one self-contained page ---------------------------------
