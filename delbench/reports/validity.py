"""Validity: does the benchmark separate selectors? Its maths, from a run's rows, and its
section of the report.

On a pool with planted ground truth (a ``kind`` column, as ``synthetic_endoscopy`` has), two
brackets, each checked at every ratio below 1 (:data:`BRACKETS`):

- **quality**: ``oracle`` > ``random`` > ``anti_oracle`` — keeping clean frames must score
  better than keeping what a selector should drop;
- **coverage**: ``spread_valid`` > ``packed_valid`` by at least one point — the same number of
  valid frames spread over every centre and scene must score better than packed into the
  fewest scenes of the biggest centre.

Each gap is paired over seeds and must hold on every seed and beyond the half-width of its
t interval. Where a protocol scores several downstream sets with one task and metric (two
centres' polyp sets), the brackets are checked on their mean (``all sets``), the score the
benchmark ranks by, and shown per set too. Then the rank correlation between the score and
each ground-truth column (core frames kept, valid share, scenes and centres covered) and,
informational, the held-out reconstruction loss and the embedding quality.
:func:`summarize_validity` computes the summary's ``validity`` key, :func:`validity_section`
renders it, :func:`validity_verdict` is its one line for the command line.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

from delbench.reports.stats import (EXACT_PERMUTATION_MAX_N, MONTE_CARLO_PERMUTATIONS, mean_interval, mean_std,
                                    paired_gap, spearman)
from delbench.reports.text import CONFIDENCE, missing, value_text
from delbench.store import ResultRow


@dataclass(frozen=True)
class Bracket:
    """Reference selectors that must score in ``chain`` order (best first), every adjacent
    gap at least ``margin`` (in the metric's units; 0: above zero) on every paired seed."""

    name: str
    chain: tuple[str, ...]
    margin: float
    #: what the report says the chain is
    meaning: str
    #: how the report names the chain's selectors
    members: str

    @property
    def gaps(self) -> tuple[tuple[str, str], ...]:
        return tuple(zip(self.chain, self.chain[1:]))


QUALITY = Bracket("quality", ("oracle", "random", "anti_oracle"), 0.0,
                  "`oracle` (keeps every planted core frame first) > `random` > `anti_oracle` (keeps invalid frames "
                  "and near-duplicates first)", "three bracket selectors")
COVERAGE = Bracket("coverage", ("spread_valid", "packed_valid"), 0.01,
                   "`spread_valid` (valid frames, one per scene first, over every centre) > `packed_valid` (as many "
                   "valid frames from the fewest scenes of the biggest centre) by at least 1 point",
                   "both coverage selectors")
BRACKETS = (QUALITY, COVERAGE)
#: what the score is called where it is the mean over a task's downstream sets
ALL_SETS = "all sets"

#: MAE loss on held-out clean frames, in ``row.pretrain`` (informational; lower is better)
HELDOUT_LOSS = "heldout_recon_loss"


def _bracket(bracket: Bracket, scores: dict[str, dict[Any, float]], higher_is_better: bool,
             confidence: float = CONFIDENCE) -> dict[str, Any]:
    """One bracket at one ratio from ``scores[selector][seed]``: each present selector's mean
    and t interval, the selectors missing, and, when none is, the paired gaps (sign flipped for
    a lower-is-better value, so a positive gap means "better"), whether each holds (every
    seed's gap above the margin, at least 2 seeds, the mean above its half-width) and
    ``passed``."""
    selectors = {}
    for name in bracket.chain:
        if name in scores:
            mean, low, high, half = mean_interval(scores[name].values(), confidence)
            seeds = sorted(s for s, v in scores[name].items() if v is not None and math.isfinite(v))
            selectors[name] = {"mean": mean, "low": low, "high": high, "half_width": half,
                               "n_seeds": len(seeds), "seeds": seeds}
    absent = [name for name in bracket.chain if name not in scores]
    gaps: dict[str, Any] = {}
    if not absent:
        sign = 1.0 if higher_is_better else -1.0
        for upper, lower in bracket.gaps:
            gap = paired_gap({s: sign * v for s, v in scores[upper].items()},
                             {s: sign * v for s, v in scores[lower].items()}, confidence).to_json()
            if bracket.margin > 0:
                gap["holds"] = bool(gap["holds"] and min(gap["gaps"]) >= bracket.margin)
            gaps[f"{upper}-{lower}"] = gap
    return {"selectors": selectors, "missing": absent, "gaps": gaps, "margin": bracket.margin,
            "passed": all(g["holds"] for g in gaps.values()) if gaps else None}


def _passed(entries: list[dict[str, Any]]) -> bool | None:
    """Every deciding entry that had its selectors passed; None when none had them (a protocol
    without a bracket's selectors is not checked rather than failed)."""
    checked = [entry["passed"] for entry in entries if entry["decides"] and entry["passed"] is not None]
    return all(checked) if checked else None


def _share(part: str) -> Callable[[ResultRow], float | None]:
    """The share of the pool's ``part`` frames a row's selection kept."""
    def share(row: ResultRow) -> float | None:
        counts = ((row.selection or {}).get("composition") or {}).get(part)
        return counts["kept"] / counts["pool"] if counts and counts["pool"] else None
    return share


def _valid_share(row: ResultRow) -> float | None:
    """The share of a row's selection that is not planted invalid."""
    composition = (row.selection or {}).get("composition") or {}
    total = sum(c["kept"] for c in composition.values())
    return 1 - composition.get("invalid", {"kept": 0})["kept"] / total if total else None


def _covered(group: str) -> Callable[[ResultRow], float | None]:
    """How many planted groups (scenes, centres) a row's valid frames cover."""
    def covered(row: ResultRow) -> float | None:
        counts = ((row.selection or {}).get("coverage") or {}).get(group)
        return float(counts["kept"]) if counts else None
    return covered


#: ground-truth columns the score is rank-correlated with: name → value of a row
TRUTH_COLUMNS: dict[str, Callable[[ResultRow], float | None]] = {
    "core_kept": _share("core"), "valid_share": _valid_share,
    "scenes_covered": _covered("scenes"), "centres_covered": _covered("centres")}


def _places(final: list[ResultRow]) -> dict[tuple, dict[str, Any]]:
    """Where the brackets are checked: per (downstream set, task, metric, ratio), and, where a
    task scores several sets with one metric, their mean (:data:`ALL_SETS`) over the seeds
    every set has. Each place: ``higher_is_better``, ``rows`` (one list per selector label:
    the rows of one set, or of every set) and ``scores[selector][seed]``."""
    places: dict[tuple, dict[str, Any]] = {}
    for row in final:
        place = places.setdefault((row.task_dataset, row.task, row.metric, row.ratio),
                                  {"higher_is_better": row.higher_is_better, "rows": defaultdict(list),
                                   "scores": defaultdict(dict)})
        place["rows"][row.selector].append(row)
        place["scores"][row.selector].setdefault(row.seed, row.score)
    by_task: dict[tuple, list[tuple]] = defaultdict(list)
    for key in places:
        by_task[(key[1], key[2], key[3])].append(key)
    for (task, metric, ratio), keys in list(by_task.items()):
        if len(keys) < 2:
            continue
        merged = {"higher_is_better": places[keys[0]]["higher_is_better"], "rows": defaultdict(list),
                  "scores": defaultdict(dict)}
        for label in set.intersection(*(set(places[k]["scores"]) for k in keys)):
            seeds = set.intersection(*(set(places[k]["scores"][label]) for k in keys))
            for seed in seeds:
                values = [places[k]["scores"][label][seed] for k in keys]
                merged["scores"][label][seed] = sum(values) / len(values)
            merged["rows"][label] = [r for k in keys for r in places[k]["rows"][label]]
        places[(ALL_SETS, task, metric, ratio)] = merged
    return places


def _bracket_scores(scores: dict[str, dict[Any, float]], rows: dict[str, list[ResultRow]],
                    bracket: Bracket) -> dict[str, dict[Any, float]]:
    """The bracket's selectors' scores; only the selectors run without parameters (label equal
    to registry name) are bracket members."""
    return {name: {s: v for s, v in scores[name].items() if v is not None}
            for name in bracket.chain if name in scores and rows[name][0].selector_name == name}


def summarize_validity(rows: list[ResultRow], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """The validity section of the summary, from the ok rows at the end of pre-training.

    Brackets and rank correlations need planted ground truth (rows with a ``composition``) and
    are computed per place (:func:`_places`: each downstream set and, with several, their
    mean) at every ratio below 1 (at ratio 1 every selection is the whole pool). An entry
    ``decides`` where it is the mean over a task's sets, or the only set. Per bracket,
    ``passed`` is None when there is nothing to check (no ground truth, no ratio below 1, or
    none with all its selectors), else whether every deciding entry with all of them passed;
    ``bracket_passed`` is the same over both brackets. Informational: the held-out loss
    bracket (quality, at the ratios where all three report it) and the embedding quality.
    """
    final = [r for r in rows if r.ok and r.ratio is not None and r.pretrain_epoch is None and r.ratio < 1]
    ground_truth = any((r.selection or {}).get("composition") for r in rows if r.ok)
    places = _places(final) if ground_truth else {}
    several = {(t, m, r) for (d, t, m, r) in places if d == ALL_SETS}
    brackets: dict[str, dict[str, Any]] = {b.name: {"margin": b.margin, "chain": list(b.chain), "entries": []}
                                           for b in BRACKETS}
    correlations = []
    for (task_dataset, task, metric, ratio), place in sorted(places.items(), key=lambda kv: (kv[0][1:], kv[0][0])):
        higher = place["higher_is_better"]
        where = {"task_dataset": task_dataset, "task": task, "metric": metric, "higher_is_better": higher,
                 "ratio": ratio, "decides": task_dataset == ALL_SETS or (task, metric, ratio) not in several}
        for bracket in BRACKETS:
            brackets[bracket.name]["entries"].append(
                {**where, **_bracket(bracket, _bracket_scores(place["scores"], place["rows"], bracket), higher,
                                     confidence)})
        sign = 1.0 if higher else -1.0
        columns = {}
        for column, value in TRUTH_COLUMNS.items():
            points = []
            for label, members in sorted(place["rows"].items()):
                truth = [value(r) for r in members]
                if any(t is None for t in truth):
                    continue
                points.append({"selector": label, "truth": mean_std(truth)[0],
                               "score_mean": mean_std(place["scores"][label].values())[0]})
            points = [p for p in points if math.isfinite(p["truth"]) and math.isfinite(p["score_mean"])]
            if points:
                rho, p_value = spearman([p["truth"] for p in points], [sign * p["score_mean"] for p in points])
                columns[column] = {"n_selectors": len(points), "rho": rho, "p_value": p_value, "points": points}
        correlations.append({**where, "columns": columns})
    for entries in brackets.values():
        entries["passed"] = _passed(entries["entries"])
    heldout = []
    by_ratio: dict[float, list[ResultRow]] = defaultdict(list)
    for row in final:
        by_ratio[row.ratio].append(row)
    for ratio, members in sorted(by_ratio.items()):
        losses: dict[str, dict[Any, float]] = defaultdict(dict)
        for row in members:
            loss = (row.pretrain or {}).get(HELDOUT_LOSS)
            if row.selector in QUALITY.chain and row.selector == row.selector_name and loss is not None:
                losses[row.selector].setdefault(row.seed, loss)
        if all(name in losses for name in QUALITY.chain):
            heldout.append({"metric": HELDOUT_LOSS, "higher_is_better": False, "ratio": ratio, "decides": True,
                            **_bracket(QUALITY, losses, False, confidence)})
    quality: dict[Any, list[dict]] = defaultdict(list)
    for row in rows:
        if row.ok and row.seed is not None and (row.selection or {}).get("embedding_quality"):
            quality[row.seed].append(row.selection["embedding_quality"])
    embedding_quality = [{"seed": seed, "n_rows": len(values),
                          "values": {k: mean_std(v.get(k) for v in values)[0]
                                     for k in sorted({k for v in values for k in v})}}
                         for seed, values in sorted(quality.items())]
    verdicts = [b["passed"] for b in brackets.values() if b["passed"] is not None]
    return {"confidence": confidence, "ground_truth": ground_truth, "brackets": brackets,
            "bracket_passed": all(verdicts) if verdicts else None,
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
    """Why one entry of a bracket did not pass, in a few words."""
    if entry["missing"]:
        return f"{', '.join(entry['missing'])} missing"
    if any(len(gap["gaps"]) < 2 for gap in entry["gaps"].values()):
        return "needs at least 2 seeds"
    return "; ".join(f"{name.replace('-', '−')} gap {_gap_text(gap, percent)}"
                     for name, gap in entry["gaps"].items() if not gap["holds"])


def _status(entry: dict[str, Any], percent: bool) -> str:
    if entry["passed"] is None:
        return f"not run: {_bracket_problem(entry, percent)}"
    return "PASS" if entry["passed"] else f"FAIL: {_bracket_problem(entry, percent)}"


def _bracket_table(bracket: Bracket, entries: list[dict[str, Any]], percent: bool) -> str:
    from tabulate import tabulate

    table = [[f"{entry['ratio']:g}", *(_selector_text(entry["selectors"].get(n), percent) for n in bracket.chain),
              *(_gap_text(entry["gaps"].get(f"{u}-{l}"), percent) for u, l in bracket.gaps), _status(entry, percent)]
             for entry in entries]
    headers = ["ratio", *bracket.chain, *(f"{u}−{l} gap" for u, l in bracket.gaps), bracket.name]
    return tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)


def _bracket_outcome(entries: list[dict[str, Any]], passed: bool | None, what: str) -> str:
    """``PASSED at ...`` or ``FAILED at ...: why`` over the deciding entries, then those where
    it could not run; an entry is named with its set and task when they span several."""
    entries = [e for e in entries if e["decides"]]
    several = len({(e["task_dataset"], e["task"]) for e in entries}) > 1

    def place(e: dict[str, Any]) -> str:
        return f"{e['task_dataset']}/{e['task']} @ {e['ratio']:g}" if several else f"{e['ratio']:g}"

    checked = [e for e in entries if e["passed"] is not None]
    not_run = "; ".join(f"{place(e)}: {_bracket_problem(e, True)}" for e in entries if e["passed"] is None)
    if not checked:
        return f"not run: no ratio has all {what} ({not_run})"
    if passed:
        word = "" if several else "ratio " if len(checked) == 1 else "ratios "
        text = f"PASSED at {word}{', '.join(place(e) for e in checked)}"
    else:
        text = "FAILED at " + "; ".join(f"{place(e)}: {_bracket_problem(e, True)}" for e in checked if not e["passed"])
    return f"{text}; not run at {not_run}" if not_run else text


def _selectors_run(entries: list[dict[str, Any]]) -> bool:
    """Whether a run had any of a bracket's selectors (a bracket none of whose selectors ran
    is not part of the protocol and is left out of the verdict)."""
    return any(entry["selectors"] for entry in entries)


def validity_verdict(summary: dict[str, Any]) -> str | None:
    """One line on the brackets for the command line to print after a run, e.g. ``bracket check
    PASSED at ratios 0.05, 0.2; coverage check PASSED at ratios 0.05, 0.2``; None when it does
    not apply (no planted ground truth, or no ratio below 1). The coverage check is named only
    where the run had its selectors."""
    brackets = (summary.get("validity") or {}).get("brackets") or {}
    quality, coverage = brackets.get(QUALITY.name), brackets.get(COVERAGE.name)
    if not quality or not quality["entries"]:
        return None
    line = f"bracket check {_bracket_outcome(quality['entries'], quality['passed'], QUALITY.members)}"
    if coverage and _selectors_run(coverage["entries"]):
        line += f"; coverage check {_bracket_outcome(coverage['entries'], coverage['passed'], COVERAGE.members)}"
    return line


def _by_place(entries: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    grouped: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        grouped[(entry["task_dataset"], entry["task"], entry["metric"], entry["higher_is_better"])].append(entry)
    return grouped


def validity_section(summary: dict[str, Any]) -> list[str]:
    from tabulate import tabulate

    validity = summary.get("validity") or {}
    brackets = validity.get("brackets") or {}
    level = f"{100 * validity.get('confidence', CONFIDENCE):g} %"
    out = ["## Validity", ""]
    if not validity.get("ground_truth"):
        out += ["This pool has no planted ground truth, so the brackets (quality: oracle > random > anti_oracle; "
                "coverage: spread_valid > packed_valid) and the rank correlations with ground truth cannot be "
                "computed; a pool with one, such as `synthetic_endoscopy`, measures how well the benchmark separates "
                "selectors.", ""]
    elif not (brackets.get(QUALITY.name) or {}).get("entries"):
        out += ["No selection below ratio 1, so there is no bracket to check.", ""]
    else:
        shown = [b for b in BRACKETS if b is QUALITY or _selectors_run(brackets[b.name]["entries"])]
        out += ["The benchmark must separate selectors beyond seed noise at every ratio below 1:", ""]
        out += [f"- **{b.name}**: {b.meaning};" for b in shown]
        out += ["", f"each paired gap (on common seeds; positive means better in the metric's direction) holds on every "
                f"seed (above zero, or above the bracket's margin) and its mean exceeds the half-width of its {level} "
                f"Student-t interval (significance level {1 - validity.get('confidence', CONFIDENCE):.2g}), which "
                f"needs at least 2 seeds. Where a task scores several downstream sets, the brackets decide on their "
                f"mean (`{ALL_SETS}`), the score the benchmark ranks by; each set is shown too. Scores are mean "
                f"[{level} CI], n seeds, in %; gaps are in percentage points, mean ± half-width (smallest per-seed "
                f"gap).", ""]
        correlations = defaultdict(list)
        for entry in validity["rank_correlation"]:
            correlations[(entry["task_dataset"], entry["task"])].append(entry)
        places = {b.name: _by_place(brackets[b.name]["entries"]) for b in shown}
        for key in places[QUALITY.name]:
            task_dataset, task, metric, higher = key
            out += [f"### {task_dataset} / {task} ({metric}, {'higher' if higher else 'lower'} is better)", ""]
            for bracket in shown:
                entries = places[bracket.name].get(key, [])
                out += [_bracket_table(bracket, entries, percent=True), ""]
                if entries and entries[0]["decides"]:
                    out += [f"{bracket.name.capitalize()} check: "
                            f"{_bracket_outcome(entries, _passed(entries), bracket.members)}.", ""]
            columns = sorted({c for e in correlations[(task_dataset, task)] for c in e["columns"]})
            table = [[f"{e['ratio']:g}", *(_rho_text(e["columns"].get(c)) for c in columns)]
                     for e in correlations[(task_dataset, task)]]
            out += ["Spearman rank correlation across selectors between each ground-truth column and "
                    f"{metric} (both means over seeds; rho > 0: more of it scores better), per ratio only since the "
                    "ratio drives both; in brackets the two-sided permutation p (exact up to "
                    f"{EXACT_PERMUTATION_MAX_N} selectors, else {MONTE_CARLO_PERMUTATIONS:,} seeded permutations) and "
                    "the number of selectors; undefined below 3 selectors. `core_kept`: share of the planted core "
                    "frames kept; `valid_share`: share of the subset not planted invalid; `scenes_covered`, "
                    "`centres_covered`: planted groups its valid frames cover.", "",
                    tabulate(table, headers=["ratio", *columns], tablefmt="github", disable_numparse=True), ""]
    if validity.get(HELDOUT_LOSS):
        out += ["### Held-out reconstruction loss (informational, not used for NormDEL)", "",
                "MAE reconstruction loss on held-out clean frames at the end of pre-training (lower is better), "
                f"bracketed the same way; gaps are positive when the upper selector has the lower loss, raw loss "
                f"units, {level} intervals.", "",
                _bracket_table(QUALITY, validity[HELDOUT_LOSS], percent=False), ""]
    if validity.get("embedding_quality"):
        names = sorted({k for q in validity["embedding_quality"] for k in q["values"]})
        table = [[str(q["seed"]), str(q["n_rows"]), *(value_text(q["values"].get(k), percent=False) for k in names)]
                 for q in validity["embedding_quality"]]
        out += ["### Embedding quality (informational)", "",
                "Quality of the embeddings the selectors saw, per seed (mean over that seed's rows).", "",
                tabulate(table, headers=["seed", "rows", *names], tablefmt="github", disable_numparse=True), ""]
    return out


def _rho_text(column: dict[str, Any] | None) -> str:
    if not column or missing(column["rho"]):
        return "—"
    p = "—" if missing(column["p_value"]) else f"{column['p_value']:.3g}"
    return f"{column['rho']:+.3f} (p {p}, n {column['n_selectors']})".replace("-", "−")
