"""The report format is pinned by a golden file; aggregation is checked by hand."""
import json
from pathlib import Path

import pytest

from delbench.report import render_markdown, summarize, write_report
from delbench.results import HEADER_FILE, ROWS_FILE, SCHEMA_VERSION, ResultRow, append_row

GOLDEN = Path(__file__).parent / "data" / "report_golden.md"
HEADER = {"schema_version": SCHEMA_VERSION, "protocol": "golden", "protocol_version": "1",
          "config_sha256": "ab" * 32, "delbench_version": "0.1.0", "protocol_config": {"alpha": 1.0}}


def _row(selector, ratio, seed, miou, normdel, kept=None, status="ok", higher_is_better=True):
    row = {"higher_is_better": higher_is_better, "key": f"{selector}|ratio={ratio:g}|seed={seed}|seg/segmentation", "status": status,
           "selector": selector, "ratio": ratio, "seed": seed, "task": "segmentation", "task_dataset": "seg",
           "metric": "mIoU", "metrics": {"mIoU": miou, "Dice": miou - 0.1}, "normdel": normdel,
           "n_selected": int(ratio * 100), "pretrain_epoch": None}
    if kept:
        row["selection"] = {"composition": {k: {"pool": p, "kept": k_} for k, (p, k_) in kept.items()}}
    if status != "ok":
        row["error"] = "RuntimeError: boom"
    return ResultRow.from_json(row)


ROWS = [
    _row("full", 1.0, 0, 0.70, 0.6000, {"core": (4, 4), "near_duplicate": (46, 46), "invalid": (50, 50)}),
    _row("random", 0.05, 0, 0.60, 0.6400, {"core": (4, 0), "near_duplicate": (46, 2), "invalid": (50, 3)}),
    _row("random", 0.05, 1, 0.64, 0.6500, {"core": (4, 1), "near_duplicate": (46, 3), "invalid": (50, 1)}),
    _row("meddel", 0.05, 0, 0.68, 0.6600, {"core": (4, 4), "near_duplicate": (46, 1), "invalid": (50, 0)}),
    _row("broken", 0.05, 0, 0.0, 0.0, status="failed"),
]


def test_aggregation_by_hand():
    summary = summarize(HEADER, ROWS)
    random = next(c for c in summary["cells"] if c["selector"] == "random")
    assert random["n_seeds"] == 2 and random["score_mean"] == pytest.approx(0.62)
    assert random["score_std"] == pytest.approx(0.0282843, abs=1e-6)  # sample std of 0.60, 0.64
    truth = {(t["selector"], t["ratio"]): t for t in summary["ground_truth"]}
    assert truth[("meddel", 0.05)]["core_kept"] == 1.0
    assert truth[("random", 0.05)]["invalid_kept"] == pytest.approx((3 / 50 + 1 / 50) / 2)
    assert summary["failed"] == [{"key": "broken|ratio=0.05|seed=0|seg/segmentation", "error": "RuntimeError: boom"}]


def test_selectors_are_ranked_in_the_direction_of_the_metric():
    better_high = summarize(HEADER, ROWS)
    table = render_markdown(better_high).split("| selector", 1)[1]
    assert table.index("| meddel") < table.index("| random")  # 68 % beats 62 %
    error_rows = [_row(s, r, seed, score, 0.6, higher_is_better=False) for s, r, seed, score in
                  (("full", 1.0, 0, 0.1), ("meddel", 0.05, 0, 0.3), ("random", 0.05, 0, 0.2))]
    table = render_markdown(summarize(HEADER, error_rows)).split("| selector", 1)[1]
    assert table.index("| full") < table.index("| random") < table.index("| meddel")  # lower error first
    assert "(lower is better)" in render_markdown(summarize(HEADER, error_rows))


def test_markdown_matches_golden_file():
    rendered = render_markdown(summarize(HEADER, ROWS))
    assert rendered == GOLDEN.read_text(), "report format changed: inspect, then regenerate tests/data/report_golden.md"


def test_write_report_is_atomic_and_complete(tmp_path):
    (tmp_path / HEADER_FILE).write_text(json.dumps(HEADER))
    for row in ROWS:
        append_row(tmp_path / ROWS_FILE, row)
    summary_path, report_path = write_report(tmp_path)
    assert json.loads(summary_path.read_text())["config_sha256"] == "ab" * 32
    assert report_path.read_text() == GOLDEN.read_text() + "\n![scores against ratio](scores.png)\n"
    assert (tmp_path / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))
