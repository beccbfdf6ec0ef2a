"""Reports of a run directory: a JSON summary and a Markdown document (tabulate).

Layout follows Table 3 of the MedDEL paper: for each downstream dataset/task a table with
one row per selector and, per ratio, the score and NormDEL (both in %, mean ± std over
seeds); selectors are ranked best first in the direction of the task's metric
(``higher_is_better``, recorded in every row). For pools with planted ground truth (a ``kind`` column, as ``synthetic_endoscopy``
has) a second table shows what each selection removed.
"""
from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from delbench.metrics import confidence_interval, mean_std
from delbench.results import (PLOT_FILE, REPORT_FILE, SCHEMA_VERSION, SUMMARY_FILE, ResultRow, atomic_write_json,
                              atomic_write_text, read_header, read_rows)


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
        low, high = confidence_interval(scores)
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
    failed = [{"key": r.key, "error": r.error or ""} for r in rows if not r.ok]
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
            "protocol_version": header.get("protocol_version"), "config_sha256": header.get("config_sha256"),
            "delbench_version": header.get("delbench_version"),
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "alpha": header.get("protocol_config", {}).get("alpha"),
            "cells": cells, "references": reference_cells, "cross_dataset": cross_cells,
            "ground_truth": truth_rows, "failed": failed}


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


def render_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# delbench report: {summary['protocol']} (protocol v{summary['protocol_version']})", "",
             f"- config sha256: `{summary['config_sha256']}`",
             f"- delbench {summary['delbench_version']}, summary schema {summary['schema_version']}", ""]
    lines += ["## Downstream scores", ""] + _score_tables(summary) + _reference_and_cross_tables(summary)
    lines += _truth_table(summary)
    if summary["failed"]:
        lines += ["## Failed cells", ""] + [f"- `{f['key']}`: {f['error']}" for f in summary["failed"]] + [""]
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
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(path)
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
