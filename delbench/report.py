"""Reports of a run directory: a JSON summary and a Markdown document (tabulate).

Layout follows Table 3 of the MedDEL paper: for each downstream dataset/task a table with
one row per selector and, per ratio, the score and NormDEL (both in %, mean ± std over
seeds); selectors are ranked best first in the direction of the task's metric
(``higher_is_better``, recorded in every row). For pools with planted ground truth (a ``kind`` column, as ``synthetic_endoscopy``
has) a second table shows what each selection removed.

Every report has a Validity section (JSON key ``validity``, built by :func:`validity`): whether
the bracket ``oracle`` > ``random`` > ``anti_oracle`` separates beyond seed noise, the rank
correlation between the core frames a selection kept and its score, and the informational
held-out reconstruction loss and embedding quality; :func:`validity_verdict` is its one line.
"""
from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from delbench.results import (PLOT_FILE, REPORT_FILE, SCHEMA_VERSION, SUMMARY_FILE, ResultRow, atomic_path,
                              atomic_write_json, atomic_write_text, read_header, read_rows)
from delbench.stats import (EXACT_PERMUTATION_MAX_N, MONTE_CARLO_PERMUTATIONS, mean_interval, mean_std, paired_gap,
                            spearman)


def _pct(mean: float, std: float, n: int) -> str:
    if n == 0 or math.isnan(mean):
        return "—"
    return f"{100 * mean:.2f}" if n == 1 else f"{100 * mean:.2f} ± {100 * std:.2f}"


def summarize(header: dict[str, Any], rows: list[ResultRow]) -> dict[str, Any]:
    """Aggregate rows over seeds into the summary structure (plain JSON)."""
    groups: dict[tuple, list[ResultRow]] = defaultdict(list)
    for row in rows:
        if row.ok and row.ratio is not None:
            groups[(row.task_dataset, row.task, row.metric, row.selector, row.ratio, row.pretrain_epoch)].append(row)
    cells = []
    for (task_dataset, task, metric, selector, ratio, epoch), members in groups.items():
        scores = [r.score for r in members]
        score_mean, score_std, n = mean_std(scores)
        norm_mean, norm_std, _ = mean_std(r.normdel for r in members)
        _, low, high, _ = mean_interval(scores)
        cells.append({"task_dataset": task_dataset, "task": task, "metric": metric,
                      "higher_is_better": members[0].higher_is_better, "selector": selector,
                      "ratio": ratio, "pretrain_epoch": epoch, "n_seeds": n,
                      "seeds": sorted(r.seed for r in members),
                      "score_mean": score_mean, "score_std": score_std, "score_ci95": [low, high],
                      "normdel_mean": norm_mean, "normdel_std": norm_std,
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
    return {"schema_version": SCHEMA_VERSION, "protocol": header.get("protocol"),
            "costs": summarize_costs(rows), "derived": summarize_derived(rows),
            "protocol_version": header.get("protocol_version"), "config_sha256": header.get("config_sha256"),
            "delbench_version": header.get("delbench_version"),
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "alpha": header.get("protocol_config", {}).get("alpha"),
            "cells": cells, "references": reference_cells, "cross_dataset": cross_cells,
            "ground_truth": truth_rows, "validity": summarize_validity(rows), "failed": failed}


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
                    line.append(_pct(c[f"{field}_mean"], c[f"{field}_std"], c["n_seeds"]) if c else "")
            table.append(line)
        seeds = max(c["n_seeds"] for c in cells)
        out += [f"### {task_dataset} / {task}", "",
                f"{metric} and NormDEL in %, mean ± std over {seeds} seed(s); NormDEL uses "
                f"α = {summary.get('alpha')} and the nominal ratio. Selectors are ranked by {metric} "
                f"({'higher' if cells[0]['higher_is_better'] else 'lower'} is better) at their smallest ratio.", "",
                tabulate(table, headers=headers, tablefmt="github", disable_numparse=True), ""]
    epochs = [c for c in summary["cells"] if c["pretrain_epoch"] is not None]
    if epochs:
        table = [[c["task_dataset"], c["selector"], f"{c['ratio']:g}", f"{c['pretrain_epoch']:g}",
                  _pct(c["score_mean"], c["score_std"], c["n_seeds"])] for c in epochs]
        out += ["### Intermediate pre-training checkpoints", "",
                tabulate(table, headers=["dataset", "selector", "ratio", "epoch", "score %"],
                         tablefmt="github", disable_numparse=True), ""]
    return out


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
CONFIDENCE = 0.95
#: MAE loss on held-out clean frames, in ``row.pretrain`` (informational; lower is better)
HELDOUT_LOSS = "heldout_recon_loss"


def _bracket(scores: dict[str, dict[Any, float]], higher_is_better: bool) -> dict[str, Any]:
    """The bracket at one ratio from ``scores[selector][seed]``: each present selector's mean
    and t interval, the bracket selectors missing, and, when none is, both paired gaps (sign
    flipped for a lower-is-better value, so a positive gap means "better") and ``passed``."""
    selectors = {}
    for name in BRACKET:
        if name in scores:
            mean, low, high, half = mean_interval(scores[name].values(), CONFIDENCE)
            seeds = sorted(s for s, v in scores[name].items() if v is not None and math.isfinite(v))
            selectors[name] = {"mean": mean, "low": low, "high": high, "half_width": half,
                               "n_seeds": len(seeds), "seeds": seeds}
    missing = [name for name in BRACKET if name not in scores]
    gaps: dict[str, Any] = {}
    if not missing:
        sign = 1.0 if higher_is_better else -1.0
        for upper, lower in BRACKET_GAPS:
            gaps[f"{upper}-{lower}"] = paired_gap({s: sign * v for s, v in scores[upper].items()},
                                                  {s: sign * v for s, v in scores[lower].items()}, CONFIDENCE).to_json()
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


def summarize_validity(rows: list[ResultRow]) -> dict[str, Any]:
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
        bracket.append({**where, **_bracket(_bracket_scores(members, lambda r: r.score), higher)})
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
                            **_bracket(losses, higher_is_better=False)})
    quality: dict[Any, list[dict]] = defaultdict(list)
    for row in rows:
        if row.ok and row.seed is not None and (row.selection or {}).get("embedding_quality"):
            quality[row.seed].append(row.selection["embedding_quality"])
    embedding_quality = [{"seed": seed, "n_rows": len(values),
                          "values": {k: mean_std(v.get(k) for v in values)[0]
                                     for k in sorted({k for v in values for k in v})}}
                         for seed, values in sorted(quality.items())]
    return {"confidence": CONFIDENCE, "ground_truth": ground_truth, "bracket": bracket,
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
                f"every seed and its mean exceeds the half-width of its {level} Student-t interval (α = "
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


def render_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# delbench report: {summary['protocol']} (protocol v{summary['protocol_version']})", "",
             f"- config sha256: `{summary['config_sha256']}`",
             f"- delbench {summary['delbench_version']}, summary schema {summary['schema_version']}", ""]
    lines += ["## Downstream scores", ""] + _score_tables(summary) + _reference_and_cross_tables(summary)
    lines += _validity_section(summary) + _truth_table(summary) + _derived_table(summary) + _cost_table(summary)
    if summary["failed"]:
        lines += ["## Failed cells", ""] + [
            f"- `{f['key']}`" + (f" ({f['stage']})" if f.get("stage") else "") + f": {f['error']}"
            for f in summary["failed"]] + [""]
    return "\n".join(lines).rstrip() + "\n"


def plot_scores(summary: dict[str, Any], path: str | Path) -> Path | None:
    """Score and NormDEL against the retained ratio, one line per selector and task (PNG).

    Returns None when the run has no finished selector cells.
    """
    cells = [c for c in summary["cells"] if c["pretrain_epoch"] is None]
    if not cells:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    tasks = sorted({(c["task_dataset"], c["task"], c["metric"]) for c in cells})
    selectors = sorted({c["selector"] for c in cells})
    colours = plt.get_cmap("tab20").colors  # one colour and marker per selector, same in every panel
    style = {name: (colours[i % len(colours)], "os^Dv<>PX*"[i % 10]) for i, name in enumerate(selectors)}
    figure, axes = plt.subplots(len(tasks), 2, figsize=(10, 3.6 * len(tasks)), squeeze=False)
    for row, (task_dataset, task, metric) in enumerate(tasks):
        mine = [c for c in cells if (c["task_dataset"], c["task"]) == (task_dataset, task)]
        for selector in sorted({c["selector"] for c in mine}):
            points = sorted(((c["ratio"], c) for c in mine if c["selector"] == selector), key=lambda p: p[0])
            ratios = [r for r, _ in points]
            colour, marker = style[selector]
            for column, field in enumerate(("score", "normdel")):
                means = [100 * c[f"{field}_mean"] for _, c in points]
                stds = [100 * c[f"{field}_std"] for _, c in points]
                axes[row][column].errorbar(ratios, means, yerr=stds, marker=marker, color=colour, capsize=3,
                                           label=selector)
        for column, label in enumerate((f"{metric} %", "NormDEL %")):
            axis = axes[row][column]
            axis.set_xscale("log")
            axis.set_xlabel("retained ratio R")
            axis.set_ylabel(label)
            axis.set_title(f"{task_dataset} / {task}")
            axis.grid(alpha=0.3)
        axes[row][1].legend(fontsize=7, ncol=2)
    figure.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:  # a temporary of its own: a report run beside a run never collides
            figure.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(figure)
    return path


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write summary.json, report.md and scores.png into ``run_dir``; return the first two."""
    run_dir = Path(run_dir)
    summary = summarize(read_header(run_dir), read_rows(run_dir))
    atomic_write_json(run_dir / SUMMARY_FILE, summary)
    plot = plot_scores(summary, run_dir / PLOT_FILE)
    markdown = render_markdown(summary)
    if plot is not None:
        markdown += f"\n![scores against ratio]({PLOT_FILE})\n"
    atomic_write_text(run_dir / REPORT_FILE, markdown)
    return run_dir / SUMMARY_FILE, run_dir / REPORT_FILE
