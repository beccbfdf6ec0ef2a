"""Reports of a run directory: a JSON summary, a Markdown document (tabulate), one
self-contained HTML page, and figures (:mod:`delbench.plots`).

Layout follows Table 3 of the MedDEL paper: for each downstream dataset/task a table with
one row per selector and, per ratio, the score and NormDEL (both in %, mean ± std over
seeds and the seeded percentile-bootstrap interval, :mod:`delbench.stats`); selectors are
ranked best first in the direction of the task's metric (``higher_is_better``, recorded in
every row). Every selector is compared with ``random`` at the same ratio by the exact
sign-flip test over seeds (and, pooled, over datasets); a cell whose difference from random
is not significant is marked. The aggregate per selector is NormDEL averaged over datasets
and ratios, and the normalised area under its score-vs-ratio curve, each with its interval.
Two levels are stated in every output and never mixed up: NormDEL's α (the weight of the
retained ratio, ``normdel.alpha``) and the significance level of the tests
(``statistics.significance``, intervals at 1 − significance). For pools with planted
ground truth (a ``kind`` column, as ``synthetic_endoscopy`` has) a further table shows what
each selection removed.

Every report has a Validity section (JSON key ``validity``, built by :func:`validity`): whether
the bracket ``oracle`` > ``random`` > ``anti_oracle`` separates beyond seed noise, the rank
correlation between the core frames a selection kept and its score, and the informational
held-out reconstruction loss and embedding quality; :func:`validity_verdict` is its one line.

The HTML page is the Markdown document rendered by :func:`markdown_to_html` (so the two never
disagree), with inline CSS and every figure inlined as a base64 PNG: no script, no request.
"""
from __future__ import annotations

import base64
import html
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from delbench.protocol import DEFAULT_SIGNIFICANCE
from delbench.store import HTML_FILE, REPORT_FILE, ResultRow, SCHEMA_VERSION, SUMMARY_FILE, read_header, read_rows
from delbench.sdk.files import atomic_write_json, atomic_write_text
from delbench.stats import (BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, EXACT_PERMUTATION_MAX_N, EXACT_SIGN_FLIP_MAX_N,
                            MONTE_CARLO_PERMUTATIONS, bootstrap_interval, bootstrap_means, curve_area, mean_interval,
                            mean_std, paired_gap, percentile_interval, sign_flip_test, spearman)

#: the report's formats: ``md`` (report.md), ``json`` (summary.json), ``html`` (report.html)
FORMATS = ("md", "json", "html")
#: the label of the baseline every selector is tested against
BASELINE_SELECTOR = "random"


def _pct(mean: float, std: float, n: int, interval: Iterable[float | None] | None = None) -> str:
    """``mean`` (one seed), ``mean ± std`` or ``mean ± std [low, high]``, in %."""
    if n == 0 or _nan(mean):
        return "—"
    if n == 1:
        return f"{100 * mean:.2f}"
    low, high = interval if interval is not None else (None, None)
    bounds = "" if _nan(low) or _nan(high) else f" [{100 * low:.2f}, {100 * high:.2f}]"
    return f"{100 * mean:.2f} ± {100 * std:.2f}{bounds}"


def statistics_note(summary: dict[str, Any]) -> str:
    """The one sentence every output states: NormDEL's α and the significance level."""
    stats = summary.get("statistics") or {}
    return (f"NormDEL α = {stats.get('normdel_alpha', summary.get('alpha'))} (weight of the retained ratio); "
            f"significance level {stats.get('significance', DEFAULT_SIGNIFICANCE):g} "
            f"({100 * stats.get('confidence', 1 - DEFAULT_SIGNIFICANCE):g} % intervals: percentile bootstrap over "
            f"seeds, B = {stats.get('bootstrap_resamples', BOOTSTRAP_RESAMPLES):,}, seed "
            f"{stats.get('bootstrap_seed', BOOTSTRAP_SEED)}; tests: exact sign-flip permutation test of paired "
            f"differences against {BASELINE_SELECTOR})")


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
    (:func:`delbench.stats.curve_area` per task, averaged over tasks; NaN with one ratio),
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
                                    {"n_selected": row.n_selected, "composition": composition})
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


#: stages of ``row.time_s`` that are not part of the selection
_NOT_SELECTION = ("select", "pretrain", "task")


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


def ranked_selectors(cells: list[dict[str, Any]]) -> list[str]:
    """The selectors of one task's cells, best first: ``full`` (the reference) first, then
    by their score at the smallest ratio they were run at (the tightest budget, where the
    table compares them), higher first when the task's metric is ``higher_is_better``;
    ties by name."""
    best_first = -1.0 if cells[0]["higher_is_better"] else 1.0
    at_smallest: dict[str, dict[str, Any]] = {}
    for cell in sorted(cells, key=lambda c: c["ratio"]):
        at_smallest.setdefault(cell["selector"], cell)
    return sorted(at_smallest, key=lambda s: (s != "full", at_smallest[s]["ratio"],
                                              best_first * at_smallest[s]["score_mean"], s))


def _score_tables(summary: dict[str, Any]) -> list[str]:
    from tabulate import tabulate

    out = []
    final = [c for c in summary["cells"] if c["pretrain_epoch"] is None]
    by_task: dict[tuple, list[dict]] = defaultdict(list)
    for cell in final:
        by_task[(cell["task_dataset"], cell["task"], cell["metric"])].append(cell)
    for (task_dataset, task, metric), cells in sorted(by_task.items()):
        ratios = sorted({c["ratio"] for c in cells})
        selectors = ranked_selectors(cells)
        lookup = {(c["selector"], c["ratio"]): c for c in cells}
        headers = ["selector"] + [f"{metric} @ {r:g}" for r in ratios] + [f"NormDEL @ {r:g}" for r in ratios]
        table = []
        for selector in selectors:
            line = [selector]
            for field in ("score", "normdel"):
                for ratio in ratios:
                    c = lookup.get((selector, ratio))
                    text = _pct(c[f"{field}_mean"], c[f"{field}_std"], c["n_seeds"], c[f"{field}_ci"]) if c else ""
                    versus = c and c.get("vs_random")
                    marked = field == "score" and versus and not versus["significant"]
                    line.append(f"{text} †" if marked else text)
            table.append(line)
        seeds = max(c["n_seeds"] for c in cells)
        stats = summary.get("statistics") or {}
        level = f"{100 * stats.get('confidence', CONFIDENCE):g} %"
        out += [f"### {task_dataset} / {task}", "",
                f"{metric} and NormDEL in %, mean ± std [{level} bootstrap interval] over up to {seeds} seed(s) "
                f"(one seed: its value); NormDEL uses α = {summary.get('alpha')} and the nominal ratio. † marks a "
                f"score not significantly different from `{BASELINE_SELECTOR}` at the same ratio (exact sign-flip "
                f"test over seeds, significance {stats.get('significance', DEFAULT_SIGNIFICANCE):g}). Selectors are "
                f"ranked by {metric} ({'higher' if cells[0]['higher_is_better'] else 'lower'} is better) at their "
                f"smallest ratio.", "",
                tabulate(table, headers=headers, tablefmt="github", disable_numparse=True), ""]
    epochs = [c for c in summary["cells"] if c["pretrain_epoch"] is not None]
    if epochs:
        table = [[c["task_dataset"], c["selector"], f"{c['ratio']:g}", f"{c['pretrain_epoch']:g}",
                  _pct(c["score_mean"], c["score_std"], c["n_seeds"])] for c in epochs]
        out += ["### Intermediate pre-training checkpoints", "",
                tabulate(table, headers=["dataset", "selector", "ratio", "epoch", "score %"],
                         tablefmt="github", disable_numparse=True), ""]
    return out


def _p_text(p_value: Any) -> str:
    return "—" if _nan(p_value) else f"{p_value:.3g}"


def _comparison_section(summary: dict[str, Any]) -> list[str]:
    """Every selector against ``random`` at the same ratio: paired difference, p, verdict."""
    from tabulate import tabulate

    comparisons = summary.get("comparisons") or []
    if not comparisons:
        return []
    stats = summary.get("statistics") or {}
    significance = stats.get("significance", DEFAULT_SIGNIFICANCE)
    table = []
    for c in comparisons:
        if c["n"] == 0:
            verdict = "no common seed"
        elif c["significant"]:
            verdict = "better" if c["mean"] > 0 else "worse"
        else:
            verdict = "not significant" + (f" (smallest attainable p {c['min_p']:.3g})"
                                           if c["min_p"] > significance else "")
        table.append([c["scope"], c["selector"], f"{c['ratio']:g}", str(c["n"]),
                      _value(c["mean"], percent=True, signed=True), _p_text(c["p_value"]), verdict])
    return [f"## Selectors against {BASELINE_SELECTOR}", "",
            f"Each selector's paired difference from `{BASELINE_SELECTOR}` at the same ratio, in percentage points "
            f"of the task's metric (positive: better in the metric's direction; pairs are seeds, and datasets × "
            f"seeds in the pooled rows), by the two-sided exact sign-flip permutation test; significant when "
            f"p ≤ {significance:g}. With n pairs the smallest attainable p is 2 / 2^n, so fewer than "
            f"{math.ceil(math.log2(2 / significance))} pairs can never be significant at this level.", "",
            tabulate(table, headers=["task", "selector", "ratio", "pairs", "difference", "p", "verdict"],
                     tablefmt="github", disable_numparse=True), ""]


def _interval_text(mean: Any, interval: Any) -> str:
    if _nan(mean):
        return "—"
    low, high = interval or (None, None)
    return _value(mean, percent=True) + ("" if _nan(low) or _nan(high) else
                                         f" [{_value(low, percent=True)}, {_value(high, percent=True)}]")


def _aggregate_section(summary: dict[str, Any]) -> list[str]:
    """Per selector: NormDEL over datasets and ratios and the score-vs-ratio curve's area."""
    from tabulate import tabulate

    aggregate = summary.get("aggregate") or []
    if not aggregate:
        return []
    level = f"{100 * (summary.get('statistics') or {}).get('confidence', CONFIDENCE):g} %"
    table = [[str(a["rank"]), a["selector"], ", ".join(f"{r:g}" for r in a["ratios"]), str(len(a["tasks"])),
              "–".join(str(n) for n in sorted(set(a["n_seeds"]))), _interval_text(a["normdel_mean"], a["normdel_ci"]),
              _interval_text(a["score_auc"], a["score_auc_ci"])] for a in aggregate]
    return ["## Aggregate per selector", "",
            f"NormDEL in % averaged over every dataset and ratio a selector ran at (the mean of its cells' means over "
            f"seeds; α = {summary.get('alpha')}), and the area under its score-vs-ratio curve in % (trapezoidal over "
            f"its ratios, divided by their span: the curve's mean height, averaged over datasets; it needs two "
            f"ratios), each with its {level} interval from the stratified percentile bootstrap (seeds resampled "
            f"within each cell; a one-seed cell adds no spread). Ranked by NormDEL; compare selectors run at the "
            f"same ratios.", "",
            tabulate(table, headers=["rank", "selector", "ratios", "datasets", "seeds", "NormDEL %",
                                     "score AUC %"], tablefmt="github", disable_numparse=True), ""]


def _reference_and_cross_tables(summary: dict[str, Any]) -> list[str]:
    from tabulate import tabulate

    out = []
    if summary.get("references"):
        table = [[c["task_dataset"], c["task"], c["reference"], _pct(c["score_mean"], c["score_std"], c["n_seeds"])]
                 for c in summary["references"]]
        out += ["### Reference encoders (no pool pre-training)", "",
                tabulate(table, headers=["dataset", "task", "reference", "score %"], tablefmt="github",
                         disable_numparse=True), ""]
    by_selection: dict[tuple, list[dict]] = defaultdict(list)
    for c in summary.get("cross_dataset", []):
        by_selection[(c["task"], c["metric"], c["selector"], c["ratio"])].append(c)
    for (task, metric, selector, ratio), cells in sorted(by_selection.items()):
        trains = sorted({c["train_dataset"] for c in cells})
        tests = sorted({c["test_dataset"] for c in cells} | set(trains))
        lookup = {(c["train_dataset"], c["test_dataset"]): c for c in cells}
        own = {(c["task_dataset"], c["task_dataset"]): c for c in summary["cells"]
               if c["selector"] == selector and c["ratio"] == ratio and c["task"] == task
               and c["pretrain_epoch"] is None}
        table = []
        for train in trains:
            line = [train]
            for test in tests:
                c = lookup.get((train, test)) or own.get((train, test))
                line.append(_pct(c["score_mean"], c["score_std"], c["n_seeds"]) if c else "")
            table.append(line)
        out += [f"### Cross-dataset {metric} (%): {selector} @ {ratio:g} (rows: fine-tuned on; columns: tested on)", "",
                tabulate(table, headers=["train \\ test", *tests], tablefmt="github", disable_numparse=True), ""]
    return out


def _truth_table(summary: dict[str, Any]) -> list[str]:
    from tabulate import tabulate

    rows = summary["ground_truth"]
    if not rows:
        return []
    kinds = sorted({k[:-5] for r in rows for k in r if k.endswith("_kept")})
    headers = ["selector", "ratio", "selected"]
    for kind in kinds:
        headers.append(f"{kind} kept %" if kind == "core" else f"{kind} removed %")
    table = []
    for r in rows:
        line = [r["selector"], f"{r['ratio']:g}", str(r["n_selected"])]
        for kind in kinds:
            kept = r.get(f"{kind}_kept", math.nan)
            line.append(f"{100 * kept:.1f}" if kind == "core" else f"{100 * (1 - kept):.1f}")
        table.append(line)
    return ["## What the selections removed (planted ground truth)", "",
            "Share of the pool's frames of each planted kind: core frames kept, near-duplicate and "
            "invalid frames removed (higher is better in every column).", "",
            tabulate(table, headers=headers, tablefmt="github", disable_numparse=True), ""]


# -- validity: does the benchmark separate selectors? -------------------------------------

#: the bracket: oracle (keeps every planted core frame first) above random above anti_oracle
#: (keeps invalid frames, then near-duplicates of few scenes, first)
BRACKET = ("oracle", "random", "anti_oracle")
BRACKET_GAPS = (("oracle", "random"), ("random", "anti_oracle"))
CONFIDENCE = 1 - DEFAULT_SIGNIFICANCE  # the protocol's statistics.significance overrides it
#: MAE loss on held-out clean frames, in ``row.pretrain`` (informational; lower is better)
HELDOUT_LOSS = "heldout_recon_loss"


def _bracket(scores: dict[str, dict[Any, float]], higher_is_better: bool,
             confidence: float = CONFIDENCE) -> dict[str, Any]:
    """The bracket at one ratio from ``scores[selector][seed]``: each present selector's mean
    and t interval, the bracket selectors missing, and, when none is, both paired gaps (sign
    flipped for a lower-is-better value, so a positive gap means "better") and ``passed``."""
    selectors = {}
    for name in BRACKET:
        if name in scores:
            mean, low, high, half = mean_interval(scores[name].values(), confidence)
            seeds = sorted(s for s, v in scores[name].items() if v is not None and math.isfinite(v))
            selectors[name] = {"mean": mean, "low": low, "high": high, "half_width": half,
                               "n_seeds": len(seeds), "seeds": seeds}
    missing = [name for name in BRACKET if name not in scores]
    gaps: dict[str, Any] = {}
    if not missing:
        sign = 1.0 if higher_is_better else -1.0
        for upper, lower in BRACKET_GAPS:
            gaps[f"{upper}-{lower}"] = paired_gap({s: sign * v for s, v in scores[upper].items()},
                                                  {s: sign * v for s, v in scores[lower].items()}, confidence).to_json()
    return {"selectors": selectors, "missing": missing, "gaps": gaps,
            "passed": all(g["holds"] for g in gaps.values()) if gaps else None}


def _bracket_scores(rows: list[ResultRow], value) -> dict[str, dict[Any, float]]:
    """``value(row)`` per bracket selector and seed; only the selectors run without parameters
    (label equal to registry name) are the bracket."""
    scores: dict[str, dict[Any, float]] = defaultdict(dict)
    for row in rows:
        if row.selector in BRACKET and row.selector == row.selector_name:
            found = value(row)
            if found is not None:
                scores[row.selector].setdefault(row.seed, found)
    return scores


def _bracket_passed(entries: list[dict[str, Any]]) -> bool | None:
    """Every ratio that had the three bracket selectors passed; None when none had them (a
    protocol without the bracket selectors is not checked rather than failed)."""
    checked = [entry["passed"] for entry in entries if entry["passed"] is not None]
    return all(checked) if checked else None


def _core_kept(row: ResultRow) -> float | None:
    core = ((row.selection or {}).get("composition") or {}).get("core")
    return core["kept"] / core["pool"] if core and core["pool"] else None


def summarize_validity(rows: list[ResultRow], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """The validity section of the summary, from the ok rows at the end of pre-training.

    Bracket and rank correlation need planted ground truth (rows with a ``composition``) and
    are computed per task and per ratio below 1 (at ratio 1 every selection is the whole
    pool). ``bracket_passed`` is None when there is nothing to check (no ground truth, no
    ratio below 1, or no ratio with all three bracket selectors), else whether every ratio
    with all three passed. Informational: the held-out loss bracket (at the ratios where all three
    bracket selectors report it) and the embedding quality per seed.
    """
    final = [r for r in rows if r.ok and r.ratio is not None and r.pretrain_epoch is None]
    ground_truth = any((r.selection or {}).get("composition") for r in rows if r.ok)
    by_cell: dict[tuple, list[ResultRow]] = defaultdict(list)
    for row in final:
        if row.ratio < 1:
            by_cell[(row.task_dataset, row.task, row.metric, row.ratio)].append(row)
    bracket, correlations = [], []
    for (task_dataset, task, metric, ratio), members in sorted(by_cell.items()) if ground_truth else []:
        higher = members[0].higher_is_better
        where = {"task_dataset": task_dataset, "task": task, "metric": metric, "higher_is_better": higher,
                 "ratio": ratio}
        bracket.append({**where, **_bracket(_bracket_scores(members, lambda r: r.score), higher, confidence)})
        labelled: dict[str, list[ResultRow]] = defaultdict(list)
        for row in members:
            if _core_kept(row) is not None:
                labelled[row.selector].append(row)
        points = [{"selector": label, "core_kept": mean_std(_core_kept(r) for r in mine)[0],
                   "score_mean": mean_std(r.score for r in mine)[0]} for label, mine in sorted(labelled.items())]
        points = [p for p in points if math.isfinite(p["core_kept"]) and math.isfinite(p["score_mean"])]
        sign = 1.0 if higher else -1.0
        rho, p_value = spearman([p["core_kept"] for p in points], [sign * p["score_mean"] for p in points])
        correlations.append({**where, "n_selectors": len(points), "rho": rho, "p_value": p_value, "points": points})
    by_ratio: dict[float, list[ResultRow]] = defaultdict(list)
    for row in final:
        if row.ratio < 1:
            by_ratio[row.ratio].append(row)
    heldout = []
    for ratio, members in sorted(by_ratio.items()):
        losses = _bracket_scores(members, lambda r: (r.pretrain or {}).get(HELDOUT_LOSS))
        if all(name in losses for name in BRACKET):
            heldout.append({"metric": HELDOUT_LOSS, "higher_is_better": False, "ratio": ratio,
                            **_bracket(losses, False, confidence)})
    quality: dict[Any, list[dict]] = defaultdict(list)
    for row in rows:
        if row.ok and row.seed is not None and (row.selection or {}).get("embedding_quality"):
            quality[row.seed].append(row.selection["embedding_quality"])
    embedding_quality = [{"seed": seed, "n_rows": len(values),
                          "values": {k: mean_std(v.get(k) for v in values)[0]
                                     for k in sorted({k for v in values for k in v})}}
                         for seed, values in sorted(quality.items())]
    return {"confidence": confidence, "ground_truth": ground_truth, "bracket": bracket,
            "bracket_passed": _bracket_passed(bracket) if bracket else None,
            "rank_correlation": correlations, HELDOUT_LOSS: heldout, "embedding_quality": embedding_quality}


def _nan(x: Any) -> bool:
    """None (NaN read back from summary.json) or NaN."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def _value(x: Any, percent: bool, signed: bool = False) -> str:
    if _nan(x):
        return "—"
    sign = "+" if signed else ""
    return f"{100 * x:{sign}.2f}".replace("-", "−") if percent else f"{x:{sign}.4g}".replace("-", "−")


def _selector_text(selector: dict[str, Any] | None, percent: bool) -> str:
    if selector is None:
        return "missing"
    if _nan(selector["half_width"]):
        return f"{_value(selector['mean'], percent)}, n={selector['n_seeds']}"
    return (f"{_value(selector['mean'], percent)} [{_value(selector['low'], percent)}, "
            f"{_value(selector['high'], percent)}], n={selector['n_seeds']}")


def _gap_text(gap: dict[str, Any] | None, percent: bool) -> str:
    if gap is None:
        return "—"
    if not gap["gaps"]:
        return "no common seed"
    if len(gap["gaps"]) < 2:
        return f"{_value(gap['mean'], percent, signed=True)} (1 seed)"
    return (f"{_value(gap['mean'], percent, signed=True)} ± {_value(gap['half_width'], percent)} "
            f"(min {_value(min(gap['gaps']), percent, signed=True)})")


def _bracket_problem(entry: dict[str, Any], percent: bool) -> str:
    """Why one ratio's bracket did not pass, in a few words."""
    if entry["missing"]:
        return f"{', '.join(entry['missing'])} missing"
    if any(len(gap["gaps"]) < 2 for gap in entry["gaps"].values()):
        return "needs at least 2 seeds"
    return "; ".join(f"{name.replace('-', '−')} gap {_gap_text(gap, percent)}"
                     for name, gap in entry["gaps"].items() if not gap["holds"])


def _bracket_table(entries: list[dict[str, Any]], percent: bool) -> str:
    from tabulate import tabulate

    table = []
    for entry in entries:
        if entry["passed"] is None:
            status = f"not run: {_bracket_problem(entry, percent)}"
        else:
            status = "PASS" if entry["passed"] else f"FAIL: {_bracket_problem(entry, percent)}"
        table.append([f"{entry['ratio']:g}", *(_selector_text(entry["selectors"].get(n), percent) for n in BRACKET),
                      *(_gap_text(entry["gaps"].get(f"{u}-{l}"), percent) for u, l in BRACKET_GAPS), status])
    headers = ["ratio", *BRACKET, *(f"{u}−{l} gap" for u, l in BRACKET_GAPS), "bracket"]
    return tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)


def _bracket_outcome(entries: list[dict[str, Any]], passed: bool) -> str:
    """``PASSED at ...`` or ``FAILED at ...: why``, then the ratios where it could not run; a
    ratio is named with its task when the entries span several tasks."""
    several = len({(e["task_dataset"], e["task"]) for e in entries}) > 1

    def place(e: dict[str, Any]) -> str:
        return f"{e['task_dataset']}/{e['task']} @ {e['ratio']:g}" if several else f"{e['ratio']:g}"

    checked = [e for e in entries if e["passed"] is not None]
    not_run = "; ".join(f"{place(e)}: {_bracket_problem(e, True)}" for e in entries if e["passed"] is None)
    if not checked:
        return f"not run: no ratio has all three bracket selectors ({not_run})"
    if passed:
        word = "" if several else "ratio " if len(checked) == 1 else "ratios "
        text = f"PASSED at {word}{', '.join(place(e) for e in checked)}"
    else:
        text = "FAILED at " + "; ".join(f"{place(e)}: {_bracket_problem(e, True)}" for e in checked if not e["passed"])
    return f"{text}; not run at {not_run}" if not_run else text


def validity_verdict(summary: dict[str, Any]) -> str | None:
    """One line on the bracket check for the CLI to print after a run, e.g. ``bracket check
    PASSED at ratios 0.05, 0.2``; None when it does not apply (no planted ground truth, or no
    ratio below 1)."""
    validity = summary.get("validity") or {}
    if not validity.get("bracket"):
        return None
    return f"bracket check {_bracket_outcome(validity['bracket'], validity['bracket_passed'])}"


def _validity_section(summary: dict[str, Any]) -> list[str]:
    from tabulate import tabulate

    validity = summary.get("validity") or {}
    level = f"{100 * validity.get('confidence', CONFIDENCE):g} %"
    out = ["## Validity", ""]
    if not validity.get("ground_truth"):
        out += ["This pool has no planted ground truth, so the bracket check (oracle > random > anti_oracle) and "
                "the rank correlation with ground truth cannot be computed; a pool with one, such as "
                "`synthetic_endoscopy`, measures how well the benchmark separates selectors.", ""]
    elif not validity["bracket"]:
        out += ["No selection below ratio 1, so there is no bracket to check.", ""]
    else:
        out += [f"The bracket `oracle` (keeps every planted core frame first) > `random` > `anti_oracle` (keeps "
                f"invalid frames and near-duplicates first) must separate beyond seed noise at every ratio below 1: "
                f"each paired gap (on common seeds; positive means better in the metric's direction) is positive on "
                f"every seed and its mean exceeds the half-width of its {level} Student-t interval (significance level "
                f"{1 - validity.get('confidence', CONFIDENCE):.2g}), which needs at least 2 seeds. Scores are "
                f"mean [{level} CI], n seeds, in %; gaps are in percentage points, mean ± half-width "
                f"(smallest per-seed gap).", ""]
        by_task: dict[tuple, list[dict]] = defaultdict(list)
        for entry in validity["bracket"]:
            by_task[(entry["task_dataset"], entry["task"], entry["metric"], entry["higher_is_better"])].append(entry)
        correlations: dict[tuple, list[dict]] = defaultdict(list)
        for entry in validity["rank_correlation"]:
            correlations[(entry["task_dataset"], entry["task"])].append(entry)
        for (task_dataset, task, metric, higher), entries in by_task.items():
            spearman_table = [[f"{c['ratio']:g}", str(c["n_selectors"]),
                               "—" if _nan(c["rho"]) else f"{c['rho']:+.3f}".replace("-", "−"),
                               "—" if _nan(c["p_value"]) else f"{c['p_value']:.3g}"]
                              for c in correlations[(task_dataset, task)]]
            out += [f"### {task_dataset} / {task} ({metric}, {'higher' if higher else 'lower'} is better)", "",
                    _bracket_table(entries, percent=True), "",
                    f"Bracket check: {_bracket_outcome(entries, _bracket_passed(entries))}.", "",
                    "Spearman rank correlation across selectors between the share of core frames kept and "
                    f"{metric} (both means over seeds; rho > 0: keeping more core frames scores better), per ratio "
                    "only since the ratio drives both; two-sided permutation p (exact up to "
                    f"{EXACT_PERMUTATION_MAX_N} selectors, else {MONTE_CARLO_PERMUTATIONS:,} seeded permutations), "
                    "undefined below 3 selectors.", "",
                    tabulate(spearman_table, headers=["ratio", "selectors", "rho", "p"], tablefmt="github",
                             disable_numparse=True), ""]
    if validity.get(HELDOUT_LOSS):
        out += ["### Held-out reconstruction loss (informational, not used for NormDEL)", "",
                "MAE reconstruction loss on held-out clean frames at the end of pre-training (lower is better), "
                f"bracketed the same way; gaps are positive when the upper selector has the lower loss, raw loss "
                f"units, {level} intervals.", "",
                _bracket_table(validity[HELDOUT_LOSS], percent=False), ""]
    if validity.get("embedding_quality"):
        names = sorted({k for q in validity["embedding_quality"] for k in q["values"]})
        table = [[str(q["seed"]), str(q["n_rows"]), *(_value(q["values"].get(k), percent=False) for k in names)]
                 for q in validity["embedding_quality"]]
        out += ["### Embedding quality (informational)", "",
                "Quality of the embeddings the selectors saw, per seed (mean over that seed's rows).", "",
                tabulate(table, headers=["seed", "rows", *names], tablefmt="github", disable_numparse=True), ""]
    return out


def _derived_table(summary: dict[str, Any]) -> list[str]:
    from tabulate import tabulate

    rows = summary.get("derived") or []
    if not rows:
        return []
    kinds = sorted({k for r in rows for k in r["patch_share"]})
    table = [[r["selector"], f"{r['ratio']:g}", r["proposer"], str(r["n_images"]), str(r["n_patches"]),
              *(f"{100 * r['patch_share'].get(k, 0.0):.1f}" for k in kinds)] for r in rows]
    return ["## What the derived images were cut from (planted ground truth)", "",
            "Generative selectors (e.g. `optidel`) train on new images built from patches of pool frames; share "
            "of those patches cut from frames of each planted kind, in % (mean over seeds). The table above "
            "counts their distinct source frames.", "",
            tabulate(table, headers=["selector", "ratio", "proposer", "images", "patches",
                                     *(f"from {k} %" for k in kinds)], tablefmt="github", disable_numparse=True), ""]


def _cost_table(summary: dict[str, Any]) -> list[str]:
    from tabulate import tabulate

    rows = summary.get("costs") or []
    if not rows:
        return []
    stages = sorted({k for r in rows for k in r if k.startswith("select_")})

    def seconds(value: Any) -> str:
        return "" if _nan(value) else f"{value:.1f}"

    table = [[r["selector"], f"{r['ratio']:g}", str(r["n_seeds"]), seconds(r["selection"]),
              *(seconds(r.get(stage)) for stage in stages), seconds(r["pretrain"]), seconds(r["task"])] for r in rows]
    return ["## Cost (seconds, mean over seeds)", "",
            "`selection` is what choosing the subset cost: the scoring model's warm-up (`select_warmup`, for "
            "selectors that read the backbone) plus the selector's own stages where it reports them (compute "
            "time, also when a stage was read from a cache), else its wall time. Pre-training and the (first) "
            "task are apart.", "",
            tabulate(table, headers=["selector", "ratio", "seeds", "selection", *stages, "pretrain", "task"],
                     tablefmt="github", disable_numparse=True), ""]


def render_markdown(summary: dict[str, Any], figures: Iterable[tuple[str, str]] = ()) -> str:
    """The Markdown report of a summary; ``figures`` are ``(file, caption)`` pairs of images
    beside it, shown in a last section."""
    lines = [f"# delbench report: {summary['protocol']} (protocol v{summary['protocol_version']})", "",
             f"- config sha256: `{summary['config_sha256']}`",
             f"- delbench {summary['delbench_version']}, summary schema {summary['schema_version']}",
             f"- {statistics_note(summary)}", ""]
    lines += ["## Downstream scores", ""] + _score_tables(summary) + _reference_and_cross_tables(summary)
    lines += _comparison_section(summary) + _aggregate_section(summary)
    lines += _validity_section(summary) + _truth_table(summary) + _derived_table(summary) + _cost_table(summary)
    if summary["failed"]:
        lines += ["## Failed cells", ""] + [
            f"- `{f['key']}`" + (f" ({f['stage']})" if f.get("stage") else "") + f": {f['error']}"
            for f in summary["failed"]] + [""]
    figures = list(figures)
    if figures:
        lines += ["## Figures", ""]
        for file, caption in figures:
            lines += [f"![{caption}]({file})", ""]
    return "\n".join(lines).rstrip() + "\n"


# -- HTML: the Markdown document as one self-contained page ---------------------------------

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1b1f24; background: #fff; }
main { max-width: 1200px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #d0d7de; padding-bottom: .4rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
h3 { font-size: 1.05rem; margin-top: 1.6rem; }
p, li { line-height: 1.5; max-width: 95ch; }
code { font-family: ui-monospace, monospace; font-size: .9em; background: #f3f4f6; padding: .1em .3em; border-radius: 3px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: .86rem; margin: .6rem 0 1rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .55rem; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; }
th:first-child, td:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
figure { margin: 1.2rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #e5e7eb; }
figcaption { font-size: .9rem; color: #57606a; margin-top: .3rem; max-width: 95ch; }
nav { font-size: .9rem; margin: .4rem 0 1rem; }
nav a { margin-right: .9rem; }
"""
_IMAGE_LINE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)$")


def _inline(text: str) -> str:
    """Escape a line of Markdown text for HTML and turn `code` spans into <code>."""
    parts = text.split("`")
    return "".join(f"<code>{html.escape(part)}</code>" if i % 2 else html.escape(part) for i, part in enumerate(parts))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _table_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def markdown_to_html(markdown: str, image: Callable[[str], str], title: str) -> str:
    """The report's Markdown as one HTML page (only what :func:`render_markdown` writes:
    headings, paragraphs, bullet lists, GitHub tables, `code` and image lines).

    ``image(src)`` returns the ``src`` to use for an image line, e.g. a ``data:`` URI, so the
    page needs nothing beside it. The CSS is inline and there is no script.
    """
    body: list[str] = []
    sections: list[tuple[str, str]] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            text = line[level:].strip()
            anchor = _slug(text)
            if level == 2:
                sections.append((anchor, text))
            body.append(f'<h{level} id="{anchor}">{_inline(text)}</h{level}>')
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            head, rows = _table_cells(block[0]), [_table_cells(b) for b in block[2:]]
            body.append('<div class="table-wrap"><table><thead><tr>' + "".join(f"<th>{_inline(c)}</th>" for c in head)
                        + "</tr></thead><tbody>" + "".join(
                            "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
                        + "</tbody></table></div>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
        elif _IMAGE_LINE.match(line):
            match = _IMAGE_LINE.match(line)
            alt = match["alt"]
            body.append(f'<figure><img src="{html.escape(image(match["src"]), quote=True)}" alt="{html.escape(alt)}">'
                        f"<figcaption>{_inline(alt)}</figcaption></figure>")
            i += 1
        else:
            paragraph = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "- ", "![")):
                paragraph.append(lines[i])
                i += 1
            body.append(f"<p>{_inline(' '.join(paragraph))}</p>")
    nav = "<nav>" + "".join(f'<a href="#{a}">{_inline(t)}</a>' for a, t in sections) + "</nav>"
    if body and body[0].startswith("<h1"):
        body.insert(1, nav)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{html.escape(title)}</title>\n"
            f"<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n" + "\n".join(body) + "\n</main>\n</body>\n</html>\n")


def render_html(summary: dict[str, Any], figures: Iterable[tuple[str, str]], directory: str | Path) -> str:
    """The report as one self-contained HTML page: the Markdown document, with each figure
    (a PNG in ``directory``) inlined as base64."""
    directory = Path(directory)

    def inline(src: str) -> str:
        return "data:image/png;base64," + base64.b64encode((directory / src).read_bytes()).decode("ascii")

    return markdown_to_html(render_markdown(summary, figures), inline,
                            f"delbench report: {summary['protocol']} (protocol v{summary['protocol_version']})")


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote: the summary it computed and the file of each format."""

    summary: dict[str, Any]
    files: dict[str, Path]


def parse_formats(text: str) -> tuple[str, ...]:
    """``"md,json,html"`` → ``("md", "json", "html")``; an unknown format is one line naming it."""
    from delbench.errors import ConfigError

    formats = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"--format: unknown format {unknown[0]!r}" if unknown else "--format: no format given"
                          f"; choose from {', '.join(FORMATS)} (comma-separated)")
    return formats


def write_report(run_dir: str | Path, formats: Iterable[str] = FORMATS) -> ReportFiles:
    """Write the report of ``run_dir`` in ``formats`` (:data:`FORMATS`): ``summary.json``,
    ``report.md`` and ``report.html``, and for the last two the figures of
    :mod:`delbench.plots`; every file atomically."""
    from delbench.plots import draw_figures

    run_dir = Path(run_dir)
    formats = tuple(formats)
    summary = summarize(read_header(run_dir), read_rows(run_dir))
    files: dict[str, Path] = {}
    if "json" in formats:
        atomic_write_json(run_dir / SUMMARY_FILE, summary)
        files["json"] = run_dir / SUMMARY_FILE
    if "md" in formats or "html" in formats:
        figures = [(path.name, caption) for path, caption in draw_figures(summary, run_dir)]
        if "md" in formats:
            atomic_write_text(run_dir / REPORT_FILE, render_markdown(summary, figures))
            files["md"] = run_dir / REPORT_FILE
        if "html" in formats:
            atomic_write_text(run_dir / HTML_FILE, render_html(summary, figures, run_dir))
            files["html"] = run_dir / HTML_FILE
    return ReportFiles(summary, files)
