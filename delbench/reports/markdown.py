"""The Markdown report of a summary (tabulate tables), section by section.

Layout follows Table 3 of the MedDEL paper: for each downstream dataset/task a table with one
row per selector and, per ratio, the score and NormDEL (both in %, mean ± std over seeds and
the seeded percentile-bootstrap interval); selectors are ranked best first in the direction
of the task's metric. Then the references and cross-dataset matrices, every selector against
``random``, the aggregate per selector, the validity section
(:mod:`delbench.reports.validity`), what the selections removed of the planted ground truth,
what derived images were cut from, the costs, the failed cells and the figures.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

from delbench.protocol import DEFAULT_SIGNIFICANCE
from delbench.reports.text import (BASELINE_SELECTOR, CONFIDENCE, interval_text, missing, p_text, pct_text,
                                   statistics_note, value_text)
from delbench.reports.validity import validity_section


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
                    text = pct_text(c[f"{field}_mean"], c[f"{field}_std"], c["n_seeds"], c[f"{field}_ci"]) if c else ""
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
                  pct_text(c["score_mean"], c["score_std"], c["n_seeds"])] for c in epochs]
        out += ["### Intermediate pre-training checkpoints", "",
                tabulate(table, headers=["dataset", "selector", "ratio", "epoch", "score %"],
                         tablefmt="github", disable_numparse=True), ""]
    return out


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
                      value_text(c["mean"], percent=True, signed=True), p_text(c["p_value"]), verdict])
    return [f"## Selectors against {BASELINE_SELECTOR}", "",
            f"Each selector's paired difference from `{BASELINE_SELECTOR}` at the same ratio, in percentage points "
            f"of the task's metric (positive: better in the metric's direction; pairs are seeds, and datasets × "
            f"seeds in the pooled rows), by the two-sided exact sign-flip permutation test; significant when "
            f"p ≤ {significance:g}. With n pairs the smallest attainable p is 2 / 2^n, so fewer than "
            f"{math.ceil(math.log2(2 / significance))} pairs can never be significant at this level.", "",
            tabulate(table, headers=["task", "selector", "ratio", "pairs", "difference", "p", "verdict"],
                     tablefmt="github", disable_numparse=True), ""]


def _aggregate_section(summary: dict[str, Any]) -> list[str]:
    """Per selector: NormDEL over datasets and ratios and the score-vs-ratio curve's area."""
    from tabulate import tabulate

    aggregate = summary.get("aggregate") or []
    if not aggregate:
        return []
    level = f"{100 * (summary.get('statistics') or {}).get('confidence', CONFIDENCE):g} %"
    table = [[str(a["rank"]), a["selector"], ", ".join(f"{r:g}" for r in a["ratios"]), str(len(a["tasks"])),
              "–".join(str(n) for n in sorted(set(a["n_seeds"]))), interval_text(a["normdel_mean"], a["normdel_ci"]),
              interval_text(a["score_auc"], a["score_auc_ci"])] for a in aggregate]
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
        table = [[c["task_dataset"], c["task"], c["reference"], pct_text(c["score_mean"], c["score_std"], c["n_seeds"])]
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
                line.append(pct_text(c["score_mean"], c["score_std"], c["n_seeds"]) if c else "")
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
    groups = sorted({k[:-8] for r in rows for k in r if k.endswith("_covered")})
    headers = ["selector", "ratio", "selected"]
    for kind in kinds:
        headers.append(f"{kind} kept %" if kind == "core" else f"{kind} removed %")
    in_pool = {g: next(r[f"{g}_in_pool"] for r in rows if f"{g}_in_pool" in r) for g in groups}
    headers += [f"{group} covered (of {in_pool[group]})" for group in groups]
    table = []
    for r in rows:
        line = [r["selector"], f"{r['ratio']:g}", str(r["n_selected"])]
        for kind in kinds:
            kept = r.get(f"{kind}_kept", math.nan)
            line.append(f"{100 * kept:.1f}" if kind == "core" else f"{100 * (1 - kept):.1f}")
        line += [f"{r[f'{g}_covered']:.4g}" if f"{g}_covered" in r else "—" for g in groups]
        table.append(line)
    coverage = (" The last columns count the planted groups (scenes, centres) that the kept valid frames "
                "cover, out of those of the pool with a valid frame (more is more diverse)." if groups else "")
    return ["## What the selections removed (planted ground truth)", "",
            "Share of the pool's frames of each planted kind: core frames kept, near-duplicate and "
            f"invalid frames removed (higher is better in every column).{coverage}", "",
            tabulate(table, headers=headers, tablefmt="github", disable_numparse=True), ""]


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
        return "" if missing(value) else f"{value:.1f}"

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
    lines += validity_section(summary) + _truth_table(summary) + _derived_table(summary) + _cost_table(summary)
    if summary["failed"]:
        lines += ["## Failed cells", ""] + [
            f"- `{f['key']}`" + (f" ({f['stage']})" if f.get("stage") else "") + f": {f['error']}"
            for f in summary["failed"]] + [""]
    if summary.get("row_problems"):
        lines += ["## Rows left out", "", "The report leaves these out of every table and statistic:", ""]
        lines += [f"- {problem}" for problem in summary["row_problems"]] + [""]
    figures = list(figures)
    if figures:
        lines += ["## Figures", ""]
        for file, caption in figures:
            lines += [f"![{caption}]({file})", ""]
    return "\n".join(lines).rstrip() + "\n"
