"""The report's figures: matplotlib on the Agg backend (files only, never a window), PNG,
each written atomically.

Every figure function takes the summary (:func:`delbench.reports.summarize`) and draws one
figure, or returns None when the run has nothing to show for it (no intermediate
checkpoints, no cross-dataset cells, no planted ground truth, no recorded times).
:data:`FIGURES` lists them in report order with their file names and captions, and
:func:`draw_figures` writes each one beside the run's report. Scores are in %, intervals are
the summary's (percentile bootstrap over seeds, :mod:`delbench.reports.stats`); nothing here
computes a statistic of its own.

matplotlib is imported when a figure is drawn, never with this module's import.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from delbench.sdk.files import atomic_path
from delbench.store import PLOT_FILE


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _styles(names: list[str]) -> dict[str, tuple[Any, str]]:
    """One colour and marker per selector, the same in every panel and figure."""
    colours = _pyplot().get_cmap("tab20").colors
    return {name: (colours[i % len(colours)], "os^Dv<>PX*"[i % 10]) for i, name in enumerate(sorted(names))}


def _final(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in summary["cells"] if c["pretrain_epoch"] is None]


def _line_with_band(axis: Any, xs: list[float], cells: list[dict[str, Any]], field: str, colour: Any, marker: str,
                    label: str) -> None:
    """Means in % joined by a line, the interval of each point as a band (and a bar, so a
    one-point series shows its interval too)."""
    means = [100 * c[f"{field}_mean"] for c in cells]
    lows = [100 * c[f"{field}_ci"][0] if _finite(c[f"{field}_ci"][0]) else math.nan for c in cells]
    highs = [100 * c[f"{field}_ci"][1] if _finite(c[f"{field}_ci"][1]) else math.nan for c in cells]
    axis.plot(xs, means, marker=marker, color=colour, label=label, linewidth=1.4, markersize=5)
    if len(xs) > 1:
        axis.fill_between(xs, lows, highs, color=colour, alpha=0.15, linewidth=0)
    for x, mean, low, high in zip(xs, means, lows, highs):
        if math.isfinite(low) and math.isfinite(high):
            axis.errorbar([x], [mean], yerr=[[mean - low], [high - mean]], color=colour, capsize=3, linewidth=1)


def _scale(axis: Any, which: str, values: list[float], ticks: list[float] | None = None) -> None:
    """A log scale with plain tick labels (0.05, not 5×10⁻²) where ``values`` span a decade or
    more, else a linear one (a log axis over a narrow range shows no readable labels);
    ``ticks`` puts the labels at those values (e.g. the protocol's ratios)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    positive = [v for v in values if v > 0]
    spread = max(positive) / min(positive) if positive else 1.0
    part = axis.xaxis if which == "x" else axis.yaxis
    if spread < 10 and ticks is None:
        return
    (axis.set_xscale if which == "x" else axis.set_yscale)("log")
    part.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    part.set_minor_formatter(NullFormatter())
    if ticks is not None:
        (axis.set_xticks if which == "x" else axis.set_yticks)(sorted(set(ticks)))


def _save(figure: Any, path: Path) -> Path:
    plt = _pyplot()
    try:
        with atomic_path(path) as tmp:  # a temporary of its own: a report run beside a run never collides
            figure.savefig(tmp, dpi=100, format="png", bbox_inches="tight")
    finally:
        plt.close(figure)
    return path


def plot_scores(summary: dict[str, Any], path: Path) -> Path | None:
    """Score and NormDEL against the retained ratio, one line per selector and a band for
    its interval; one row of panels per task."""
    cells = _final(summary)
    if not cells:
        return None
    plt = _pyplot()
    tasks = sorted({(c["task_dataset"], c["task"], c["metric"]) for c in cells})
    style = _styles(list({c["selector"] for c in cells}))
    figure, axes = plt.subplots(len(tasks), 2, figsize=(12, 3.9 * len(tasks)), squeeze=False)
    for row, (task_dataset, task, metric) in enumerate(tasks):
        mine = [c for c in cells if (c["task_dataset"], c["task"]) == (task_dataset, task)]
        for selector in sorted({c["selector"] for c in mine}):
            points = sorted((c for c in mine if c["selector"] == selector), key=lambda c: c["ratio"])
            colour, marker = style[selector]
            for column, field in enumerate(("score", "normdel")):
                _line_with_band(axes[row][column], [c["ratio"] for c in points], points, field, colour, marker,
                                selector)
        for column, label in enumerate((f"{metric} %", "NormDEL %")):
            axis = axes[row][column]
            _scale(axis, "x", [c["ratio"] for c in mine], ticks=[c["ratio"] for c in mine])
            axis.set_xlabel("retained ratio R (log scale)")
            axis.set_ylabel(label)
            axis.set_title(f"{task_dataset} / {task}: {label.split()[0]}")
            axis.grid(alpha=0.3)
    axes[0][1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    figure.tight_layout()
    return _save(figure, path)


def plot_normdel(summary: dict[str, Any], path: Path) -> Path | None:
    """Aggregate NormDEL per selector (mean over datasets and ratios) as bars from 50 % (the
    NormDEL of a zero score), best at the top, with the interval as an error bar."""
    aggregate = summary.get("aggregate") or []
    if not aggregate:
        return None
    plt = _pyplot()
    entries = list(reversed(aggregate))  # barh draws bottom-up: the best ends on top
    figure, axis = plt.subplots(figsize=(8, 0.9 + 0.32 * len(entries)))
    means = [100 * e["normdel_mean"] for e in entries]
    # no interval (every cell one seed): NaN draws no error bar, where 0 would draw a misleading cap
    lows = [100 * e["normdel_ci"][0] if _finite(e["normdel_ci"][0]) else math.nan for e in entries]
    highs = [100 * e["normdel_ci"][1] if _finite(e["normdel_ci"][1]) else math.nan for e in entries]
    style = _styles([e["selector"] for e in entries])
    axis.barh(range(len(entries)), [m - 50 for m in means], left=50, color=[style[e["selector"]][0] for e in entries],
              xerr=[[m - lo for m, lo in zip(means, lows)], [hi - m for m, hi in zip(means, highs)]], capsize=3)
    highs = [m if math.isnan(h) else h for m, h in zip(means, highs)]
    axis.set_yticks(range(len(entries)))
    axis.set_yticklabels([f"{e['selector']} ({', '.join(f'{r:g}' for r in e['ratios'])})" for e in entries],
                         fontsize=8)
    axis.set_xlim(50, max(highs) + 0.15 * (max(highs) - 50) + 0.1)
    axis.set_xlabel(f"aggregate NormDEL % (α = {summary.get('alpha')}; mean over datasets and ratios)")
    axis.set_title("NormDEL per selector (ratios in brackets)")
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return _save(figure, path)


def plot_epochs(summary: dict[str, Any], path: Path) -> Path | None:
    """Score against the pre-training epoch, for the selections evaluated at intermediate
    checkpoints (``pretrain.checkpoint_epochs``), the end of pre-training included."""
    intermediate = [c for c in summary["cells"] if c["pretrain_epoch"] is not None]
    if not intermediate:
        return None
    plt = _pyplot()
    series: dict[tuple, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
    for cell in intermediate:
        series[(cell["task_dataset"], cell["task"], cell["metric"], cell["selector"], cell["ratio"])].append(
            (cell["pretrain_epoch"], cell))
    for cell in _final(summary):
        key = (cell["task_dataset"], cell["task"], cell["metric"], cell["selector"], cell["ratio"])
        if key in series and _finite(cell.get("pretrain_epochs")):
            series[key].append((cell["pretrain_epochs"], cell))
    tasks = sorted({key[:3] for key in series})
    style = _styles([f"{k[3]} @ {k[4]:g}" for k in series])
    figure, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4.2), squeeze=False)
    for column, (task_dataset, task, metric) in enumerate(tasks):
        axis = axes[0][column]
        for key, points in sorted(series.items()):
            if key[:3] != (task_dataset, task, metric):
                continue
            points.sort(key=lambda p: p[0])
            label = f"{key[3]} @ {key[4]:g}"
            colour, marker = style[label]
            _line_with_band(axis, [p[0] for p in points], [p[1] for p in points], "score", colour, marker, label)
        axis.set_xlabel("pre-training epoch (of the cell's own subset)")
        axis.set_ylabel(f"{metric} %")
        axis.set_title(f"{task_dataset} / {task}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    return _save(figure, path)


def plot_cross_dataset(summary: dict[str, Any], path: Path) -> Path | None:
    """The cross-dataset heat map: fine-tuned on the row's dataset, tested on the column's,
    one panel per (selector, ratio)."""
    cross = summary.get("cross_dataset") or []
    if not cross:
        return None
    plt = _pyplot()
    import numpy as np

    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for cell in cross:
        groups[(cell["task"], cell["metric"], cell["selector"], cell["ratio"])].append(cell)
    columns = min(3, len(groups))
    rows = math.ceil(len(groups) / columns)
    # one colour scale for every panel, so selections compare by colour (random against MedDEL in the paper)
    every = [100 * c["score_mean"] for c in cross] + [100 * c["score_mean"] for c in _final(summary)
                                                      if any(c["task"] == x["task"] for x in cross)]
    low, high = min(every), max(every)
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.4 * rows), squeeze=False)
    for index, ((task, metric, selector, ratio), cells) in enumerate(sorted(groups.items())):
        axis = axes[index // columns][index % columns]
        trains = sorted({c["train_dataset"] for c in cells})
        tests = sorted({c["test_dataset"] for c in cells} | set(trains))
        own = {c["task_dataset"]: c["score_mean"] for c in _final(summary)
               if c["selector"] == selector and c["ratio"] == ratio and c["task"] == task}
        values = {(c["train_dataset"], c["test_dataset"]): c["score_mean"] for c in cells}
        matrix = np.array([[values.get((a, b), own.get(a) if a == b else None) for b in tests] for a in trains],
                          dtype=float) * 100
        image = axis.imshow(matrix, cmap="viridis", vmin=low, vmax=high, aspect="auto")
        for (i, j), value in np.ndenumerate(matrix):
            if math.isfinite(value):  # dark text on the bright end of viridis, light on the dark end
                bright = high > low and (value - low) / (high - low) > 0.6
                axis.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=9,
                          color="black" if bright else "white")
        axis.set_xticks(range(len(tests)), tests, rotation=30, ha="right", fontsize=7)
        axis.set_yticks(range(len(trains)), trains, fontsize=7)
        axis.set_xlabel("tested on")
        axis.set_ylabel("fine-tuned on")
        axis.set_title(f"{selector} @ {ratio:g}: {metric} %", fontsize=9)
        figure.colorbar(image, ax=axis, shrink=0.8)
    for index in range(len(groups), rows * columns):
        axes[index // columns][index % columns].axis("off")
    figure.tight_layout()
    return _save(figure, path)


def plot_timing(summary: dict[str, Any], path: Path) -> Path | None:
    """Selection time against pre-training time per selection (means over seeds; log axes
    where the times span a decade): what a selector costs next to what it saves."""
    cells = [c for c in _final(summary)
             if _finite((c.get("time_s") or {}).get("select")) and _finite((c.get("time_s") or {}).get("pretrain"))]
    if not cells:
        return None
    plt = _pyplot()
    style = _styles(list({c["selector"] for c in cells}))
    figure, axis = plt.subplots(figsize=(8.5, 5))
    floor = 1e-4  # a selection faster than this is drawn at it (log axis)
    for selector in sorted({c["selector"] for c in cells}):
        mine = sorted((c for c in cells if c["selector"] == selector), key=lambda c: c["ratio"])
        colour, marker = style[selector]
        xs = [max(floor, c["time_s"]["select"]) for c in mine]
        ys = [max(floor, c["time_s"]["pretrain"]) for c in mine]
        axis.scatter(xs, ys, color=colour, marker=marker, label=selector, s=36)
        for x, y, c in zip(xs, ys, mine):
            axis.annotate(f"{c['ratio']:g}", (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    selection = [max(floor, c["time_s"]["select"]) for c in cells]
    pretraining = [max(floor, c["time_s"]["pretrain"]) for c in cells]
    _scale(axis, "x", selection)
    _scale(axis, "y", pretraining)
    axis.set_xlabel("selection time, s" + (" (log scale)" if axis.get_xscale() == "log" else ""))
    axis.set_ylabel("pre-training time, s" + (" (log scale)" if axis.get_yscale() == "log" else ""))
    axis.set_title("Selection time vs pre-training time (labels: ratio)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    figure.tight_layout()
    return _save(figure, path)


def plot_ground_truth(summary: dict[str, Any], path: Path) -> Path | None:
    """On a pool with planted ground truth: per selection, the share of core frames kept and
    of each other planted kind (invalid, near-duplicate) removed."""
    truth = summary.get("ground_truth") or []
    if not truth:
        return None
    plt = _pyplot()
    import numpy as np

    kinds = sorted({k[:-5] for t in truth for k in t if k.endswith("_kept")}, key=lambda k: (k != "core", k))
    entries = sorted(truth, key=lambda t: (-t["ratio"], t.get("core_kept", 0)))  # barh: bottom-up
    figure, axis = plt.subplots(figsize=(9, 1.0 + 0.36 * len(entries) * max(1, len(kinds)) / 2))
    height = 0.8 / max(1, len(kinds))
    colours = plt.get_cmap("Set2").colors
    positions = np.arange(len(entries))
    for k, kind in enumerate(kinds):
        kept = np.array([t.get(f"{kind}_kept", np.nan) for t in entries], dtype=float)
        values = 100 * (kept if kind == "core" else 1 - kept)
        label = f"{kind} kept %" if kind == "core" else f"{kind} removed %"
        axis.barh(positions + (k - (len(kinds) - 1) / 2) * height, values, height=height, label=label,
                  color=colours[k % len(colours)])
    axis.set_yticks(positions, [f"{t['selector']} @ {t['ratio']:g}" for t in entries], fontsize=8)
    axis.set_xlim(0, 100)
    axis.set_xlabel("% of the pool's frames of that kind (higher is better)")
    axis.set_title("Planted ground truth: what each selection kept and removed")
    axis.grid(axis="x", alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return _save(figure, path)


@dataclass(frozen=True)
class Figure:
    """One figure of the report: its file name, the function drawing it, its caption."""

    file: str
    draw: Callable[[dict[str, Any], Path], Path | None]
    caption: str


FIGURES = (
    Figure(PLOT_FILE, plot_scores, "Score and NormDEL against the retained ratio per selector; bands and bars: "
                                   "bootstrap intervals over seeds"),
    Figure("normdel.png", plot_normdel, "Aggregate NormDEL per selector (mean over datasets and ratios) with its "
                                        "bootstrap interval; bars start at 50 %, the NormDEL of a zero score"),
    Figure("epochs.png", plot_epochs, "Score against the pre-training epoch at the intermediate checkpoints"),
    Figure("cross_dataset.png", plot_cross_dataset, "Cross-dataset heat map: fine-tuned on the row's dataset, "
                                                    "tested on the column's"),
    Figure("timing.png", plot_timing, "Selection time against pre-training time per selection (means over seeds)"),
    Figure("ground_truth.png", plot_ground_truth, "Planted ground truth on the synthetic pool: core frames kept, "
                                                  "invalid and near-duplicate frames removed per selection"),
)


def draw_figures(summary: dict[str, Any], directory: str | Path) -> list[tuple[Path, str]]:
    """Draw every figure that applies into ``directory``; returns ``(path, caption)`` pairs in
    report order. A figure that no longer applies (say, the intermediate checkpoints of an
    earlier report's config) is removed, so the directory never shows a stale one."""
    directory = Path(directory)
    drawn = []
    for figure in FIGURES:
        path = figure.draw(summary, directory / figure.file)
        if path is None:
            (directory / figure.file).unlink(missing_ok=True)
        else:
            drawn.append((path, figure.caption))
    return drawn
