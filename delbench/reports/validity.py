"""Validity: does the benchmark separate selectors? Its maths, from a run's rows, and its
section of the report.

On a pool with planted ground truth (a ``kind`` column, as ``synthetic_endoscopy`` has):
whether the bracket ``oracle`` > ``random`` > ``anti_oracle`` separates beyond seed noise at
every ratio below 1, the rank correlation between the core frames a selection kept and its
score, and, informational, the held-out reconstruction loss and the embedding quality.
:func:`summarize_validity` computes the summary's ``validity`` key, :func:`validity_section`
renders it, :func:`validity_verdict` is its one line for the command line.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from delbench.reports.stats import (EXACT_PERMUTATION_MAX_N, MONTE_CARLO_PERMUTATIONS, mean_interval, mean_std,
                                    paired_gap, spearman)
from delbench.reports.text import CONFIDENCE, missing, value_text
from delbench.store import ResultRow

#: the bracket: oracle (keeps every planted core frame first) above random above anti_oracle
#: (keeps invalid frames, then near-duplicates of few scenes, first)
BRACKET = ("oracle", "random", "anti_oracle")

BRACKET_GAPS = (("oracle", "random"), ("random", "anti_oracle"))

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


def _selector_text(selector: dict[str, Any] | None, percent: bool) -> str:
    if selector is None:
        return "missing"
    if missing(selector["half_width"]):
        return f"{value_text(selector['mean'], percent)}, n={selector['n_seeds']}"
    return (f"{value_text(selector['mean'], percent)} [{value_text(selector['low'], percent)}, "
            f"{value_text(selector['high'], percent)}], n={selector['n_seeds']}")


def _gap_text(gap: dict[str, Any] | None, percent: bool) -> str:
    if gap is None:
        return "—"
    if not gap["gaps"]:
        return "no common seed"
    if len(gap["gaps"]) < 2:
        return f"{value_text(gap['mean'], percent, signed=True)} (1 seed)"
    return (f"{value_text(gap['mean'], percent, signed=True)} ± {value_text(gap['half_width'], percent)} "
            f"(min {value_text(min(gap['gaps']), percent, signed=True)})")


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


def validity_section(summary: dict[str, Any]) -> list[str]:
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
                               "—" if missing(c["rho"]) else f"{c['rho']:+.3f}".replace("-", "−"),
                               "—" if missing(c["p_value"]) else f"{c['p_value']:.3g}"]
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
        table = [[str(q["seed"]), str(q["n_rows"]), *(value_text(q["values"].get(k), percent=False) for k in names)]
                 for q in validity["embedding_quality"]]
        out += ["### Embedding quality (informational)", "",
                "Quality of the embeddings the selectors saw, per seed (mean over that seed's rows).", "",
                tabulate(table, headers=["seed", "rows", *names], tablefmt="github", disable_numparse=True), ""]
    return out
