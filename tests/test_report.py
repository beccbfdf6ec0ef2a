"""The report format is pinned by a golden file; aggregation is checked by hand."""
import json
import math
import re
from pathlib import Path

import pytest

from delbench.reports import render_markdown, summarize, validity_verdict, write_report
from delbench.reports.plots import draw_figures
from delbench.store import HEADER_FILE, ROWS_FILE, ResultRow, SCHEMA_VERSION, append_row

GOLDEN = Path(__file__).parent / "data" / "report_golden.md"
HEADER = {"schema_version": SCHEMA_VERSION, "protocol": "golden", "protocol_version": "1",
          "config_sha256": "ab" * 32, "delbench_version": "0.1.0", "protocol_config": {"alpha": 1.0}}


def _row(selector, ratio, seed, miou, normdel, kept=None, status="ok", higher_is_better=True):
    row = {"higher_is_better": higher_is_better, "key": f"{selector}|ratio={ratio:g}|seed={seed}|seg/segmentation", "status": status,
           "selector": selector, "selector_name": selector.split("[")[0], "ratio": ratio, "seed": seed,
           "task": "segmentation", "task_dataset": "seg",
           "metric": "mIoU", "metrics": {"mIoU": miou, "Dice": miou - 0.1}, "normdel": normdel,
           "n_selected": int(ratio * 100), "pretrain_epoch": None}
    if kept:
        row["selection"] = {"composition": {k: {"pool": p, "kept": k_} for k, (p, k_) in kept.items()}}
    if status != "ok":
        row["error"], row["stage"] = "RuntimeError: boom", "pretrain"
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
    assert summary["failed"] == [{"key": "broken|ratio=0.05|seed=0|seg/segmentation", "stage": "pretrain",
                                  "error": "RuntimeError: boom"}]


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
    report = write_report(tmp_path)
    summary_path, report_path = report.files["json"], report.files["md"]
    assert json.loads(summary_path.read_text())["config_sha256"] == "ab" * 32
    figures = "\n".join(f"![{caption}]({path.name})\n" for path, caption in draw_figures(report.summary, tmp_path))
    assert report_path.read_text() == GOLDEN.read_text() + "\n## Figures\n\n" + figures.rstrip() + "\n"
    assert (tmp_path / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))


# -- validity: bracket, rank correlation, secondary metrics -------------------------------

CORE_KEPT = {"oracle": 4, "meddel[center=true]": 3, "oracle[k=2]": 2, "random": 1, "anti_oracle": 0}  # of 4
PASSING = {"oracle": [0.80, 0.82, 0.84], "meddel[center=true]": [0.75], "oracle[k=2]": [0.73],
           "random": [0.70, 0.71, 0.72], "anti_oracle": [0.50, 0.52, 0.54]}


def _quality(validity):
    """The quality bracket's entries of a summary's validity section."""
    return validity["brackets"]["quality"]["entries"]


def _selection_rows(scores, ratio=0.05, higher_is_better=True, planted=True, loss=None, quality=None):
    """Rows of ``scores[selector][seed]``; ``loss`` and ``quality`` add the secondary metrics."""
    rows = []
    for selector, values in scores.items():
        for seed, score in enumerate(values):
            kept = {"core": (4, CORE_KEPT[selector]), "invalid": (50, 0)} if planted else None
            row = _row(selector, ratio, seed, score, 0.6, kept, higher_is_better=higher_is_better)
            if loss:
                row.pretrain = {"heldout_recon_loss": loss[selector][seed]}
            if quality and (selector, seed) in quality:
                row.selection["embedding_quality"] = {"scene_nn_agreement": quality[(selector, seed)]}
            rows.append(row)
    return rows


def test_validity_bracket_passes_by_hand():
    checkpoint = _row("oracle", 0.05, 0, 0.0, 0.6, {"core": (4, 4)})
    checkpoint.pretrain_epoch = 1.0  # intermediate checkpoints are not part of the bracket
    loss = {"oracle": [0.10, 0.11, 0.12], "random": [0.20, 0.20, 0.20], "anti_oracle": [0.30, 0.32, 0.34],
            "meddel[center=true]": [0.15], "oracle[k=2]": [0.16]}
    quality = {("oracle", 0): 0.8, ("random", 0): 0.9}  # seed 0: mean 0.85
    rows = _selection_rows(PASSING, loss=loss, quality=quality) + [checkpoint, ROWS[0]]
    summary = summarize(HEADER, rows)
    validity = summary["validity"]
    assert validity["ground_truth"] and validity["bracket_passed"] is True
    [entry] = _quality(validity)  # ratio 1 (the `full` row) is not bracketed
    assert (entry["ratio"], entry["missing"], entry["passed"]) == (0.05, [], True)
    oracle = entry["selectors"]["oracle"]
    # oracle 0.80, 0.82, 0.84: mean 0.82, sd 0.02, half width 4.302653 · 0.02 / √3 = 0.049683
    assert oracle["mean"] == pytest.approx(0.82) and oracle["n_seeds"] == 3
    assert oracle["half_width"] == pytest.approx(0.049683, abs=1e-6)
    upper, lower = entry["gaps"]["oracle-random"], entry["gaps"]["random-anti_oracle"]
    # oracle − random per seed: 0.10, 0.11, 0.12; mean 0.11, sd 0.01, half width 4.302653 · 0.01 / √3 = 0.024841
    assert upper["seeds"] == [0, 1, 2] and upper["gaps"] == pytest.approx([0.10, 0.11, 0.12])
    assert upper["mean"] == pytest.approx(0.11) and upper["half_width"] == pytest.approx(0.024841, abs=1e-6)
    # random − anti_oracle: 0.20, 0.19, 0.18; mean 0.19, same spread
    assert lower["mean"] == pytest.approx(0.19) and upper["holds"] and lower["holds"]
    # the parametrised oracle[k=2] is no bracket member, but it is in the rank correlation:
    # core kept 1, 0.75, 0.5, 0.25, 0 against scores 0.82, 0.75, 0.73, 0.71, 0.52 is a perfect ranking,
    # rho 1, exact p = 2 / 5! = 1/60
    [place] = validity["rank_correlation"]
    correlation = place["columns"]["core_kept"]
    assert correlation["n_selectors"] == 5
    assert (correlation["rho"], correlation["p_value"]) == (pytest.approx(1.0), pytest.approx(1 / 60))
    # every selection kept no invalid frame: the valid share is constant, so no correlation
    assert math.isnan(place["columns"]["valid_share"]["rho"])
    # held-out loss, lower is better: oracle − random gap = random loss − oracle loss = 0.10, 0.09, 0.08
    [heldout] = validity["heldout_recon_loss"]
    assert heldout["gaps"]["oracle-random"]["mean"] == pytest.approx(0.09) and heldout["passed"]
    assert validity["embedding_quality"] == [
        {"seed": 0, "n_rows": 2, "values": {"scene_nn_agreement": pytest.approx(0.85)}}]
    assert "bracket_passed" not in str(summary["cells"])  # the score tables are untouched

    markdown = render_markdown(summary)
    assert markdown.index("## Downstream scores") < markdown.index("## Validity") < markdown.index(
        "## What the selections removed")
    section = markdown.split("## Validity", 1)[1].split("## What the selections removed", 1)[0]
    assert "95 % Student-t interval (significance level 0.05)" in section
    assert "| 0.05    | 82.00 [77.03, 86.97], n=3 |" in section
    assert "+11.00 ± 2.48 (min +10.00)" in section and "+19.00 ± 2.48 (min +18.00)" in section
    assert "Quality check: PASSED at ratio 0.05." in section
    assert "per ratio only" in section and "| +1.000 (p 0.0167, n 5) |" in section
    assert "not used for NormDEL" in section and "+0.09 ± 0.02484 (min +0.08)" in section
    assert "scene_nn_agreement" in section and "0.85" in section
    assert validity_verdict(summary) == "bracket check PASSED at ratio 0.05"


def test_validity_flips_the_sign_for_lower_is_better():
    errors = {name: [1 - v for v in values] for name, values in PASSING.items()}
    validity = summarize(HEADER, _selection_rows(errors, higher_is_better=False))["validity"]
    [entry] = _quality(validity)
    assert entry["selectors"]["oracle"]["mean"] == pytest.approx(0.18)  # raw error, unflipped
    assert entry["gaps"]["oracle-random"]["mean"] == pytest.approx(0.11)  # positive: oracle has less error
    assert entry["passed"] and validity["rank_correlation"][0]["columns"]["core_kept"]["rho"] == pytest.approx(1.0)


def test_validity_bracket_fails_on_one_seed_by_hand():
    failing = dict(PASSING, anti_oracle=[0.50, 0.52, 0.77])
    summary = summarize(HEADER, _selection_rows(failing))
    validity = summary["validity"]
    [entry] = _quality(validity)
    gap = entry["gaps"]["random-anti_oracle"]
    # random − anti_oracle per seed: 0.20, 0.19, −0.05; mean 0.34 / 3 = 0.113333;
    # deviations 0.086667, 0.076667, −0.163333, squares sum 0.040067, sd √(0.040067 / 2) = 0.141539,
    # half width 4.302653 · 0.141539 / √3 = 0.351603: mean < half width and one seed is negative
    assert gap["gaps"] == pytest.approx([0.20, 0.19, -0.05])
    assert gap["mean"] == pytest.approx(0.113333, abs=1e-6) and gap["half_width"] == pytest.approx(0.351603, abs=1e-5)
    assert not gap["holds"] and entry["gaps"]["oracle-random"]["holds"]
    assert entry["passed"] is False and validity["bracket_passed"] is False
    markdown = render_markdown(summary)
    assert "| FAIL: random−anti_oracle gap +11.33 ± 35.16 (min −5.00) |" in markdown
    assert "Quality check: FAILED at 0.05: random−anti_oracle gap +11.33 ± 35.16 (min −5.00)." in markdown
    assert validity_verdict(summary) == (
        "bracket check FAILED at 0.05: random−anti_oracle gap +11.33 ± 35.16 (min −5.00)")


def test_validity_with_one_seed_needs_two(tmp_path):
    one_seed = {name: values[:1] for name, values in PASSING.items()}
    rows = _selection_rows(one_seed)
    summary = summarize(HEADER, rows)
    [entry] = _quality(summary["validity"])
    assert entry["gaps"]["oracle-random"]["gaps"] == pytest.approx([0.10])  # 0.80 − 0.70
    assert entry["passed"] is False and summary["validity"]["bracket_passed"] is False
    assert "needs at least 2 seeds" in render_markdown(summary)
    assert validity_verdict(summary) == "bracket check FAILED at 0.05: needs at least 2 seeds"
    # NaN half-widths are written as null, and the summary read back renders the same
    (tmp_path / HEADER_FILE).write_text(json.dumps(HEADER))
    for row in rows:
        append_row(tmp_path / ROWS_FILE, row)
    loaded = json.loads(write_report(tmp_path).files["json"].read_text())
    assert _quality(loaded["validity"])[0]["gaps"]["oracle-random"]["half_width"] is None
    assert render_markdown(loaded).split("## Validity")[1] == render_markdown(summary).split("## Validity")[1]
    assert validity_verdict(loaded) == validity_verdict(summary)


def test_validity_names_a_missing_bracket_selector():
    rows = _selection_rows(PASSING) + _selection_rows({"oracle": [0.8, 0.8], "random": [0.7, 0.7]}, ratio=0.2)
    summary = summarize(HEADER, rows)
    at_02 = next(e for e in _quality(summary["validity"]) if e["ratio"] == 0.2)
    assert at_02["missing"] == ["anti_oracle"] and at_02["passed"] is None and at_02["gaps"] == {}
    assert summary["validity"]["bracket_passed"] is True  # the one ratio that could be checked passed
    assert "not run: anti_oracle missing" in render_markdown(summary)
    assert validity_verdict(summary) == "bracket check PASSED at ratio 0.05; not run at 0.2: anti_oracle missing"


def test_validity_on_a_real_pool_without_ground_truth():
    summary = summarize(HEADER, _selection_rows({"random": [0.7, 0.71], "meddel[center=true]": [0.75, 0.74]},
                                                planted=False))
    validity = summary["validity"]
    assert validity["ground_truth"] is False and validity["bracket_passed"] is None
    assert _quality(validity) == [] and validity["rank_correlation"] == []
    section = render_markdown(summary).split("## Validity", 1)[1]
    assert "no planted ground truth" in section and "`synthetic_endoscopy`" in section
    assert validity_verdict(summary) is None


# -- statistics in the report: against random, aggregates, intervals --------------------------

def _scored(selector, ratio, scores, normdels=None, **extra):
    rows = []
    for seed, score in enumerate(scores):
        row = _row(selector, ratio, seed, score, (normdels or [0.6] * len(scores))[seed])
        for key, value in extra.items():
            setattr(row, key, value)
        rows.append(row)
    return rows


def test_selectors_against_random_by_hand():
    rows = (_scored("random", 0.05, [0.60, 0.61, 0.62, 0.63, 0.64, 0.65])
            + _scored("meddel", 0.05, [0.70, 0.70, 0.70, 0.70, 0.70, 0.70])  # better on all 6 seeds
            + _scored("semdedup", 0.05, [0.70, 0.71, 0.72]))  # better on its 3 common seeds
    summary = summarize(HEADER, rows)
    tests = {c["selector"]: c for c in summary["comparisons"]}
    # meddel − random: 0.10, 0.09, 0.08, 0.07, 0.06, 0.05, all positive: exact p = 2 / 2⁶ = 0.03125 ≤ 0.05
    assert tests["meddel"]["n"] == 6 and tests["meddel"]["mean"] == pytest.approx(0.075)
    assert tests["meddel"]["p_value"] == pytest.approx(2 / 64) and tests["meddel"]["significant"]
    # semdedup − random on seeds 0-2: 0.10 each; p = 2 / 2³ = 0.25, the smallest 3 pairs can give
    assert tests["semdedup"]["pairs"] == [["seg", "segmentation", 0], ["seg", "segmentation", 1],
                                          ["seg", "segmentation", 2]]
    assert tests["semdedup"]["p_value"] == pytest.approx(0.25) and not tests["semdedup"]["significant"]
    assert "random" not in tests
    markdown = render_markdown(summary)
    table = markdown.split("### seg / segmentation", 1)[1].split("## Selectors against random", 1)[0]
    meddel_line = next(line for line in table.splitlines() if line.startswith("| meddel"))
    semdedup_line = next(line for line in table.splitlines() if line.startswith("| semdedup"))
    assert "†" not in meddel_line and "†" in semdedup_line  # only the non-significant difference is marked
    section = markdown.split("## Selectors against random", 1)[1].split("## Aggregate", 1)[0]
    assert "| meddel     | 0.05    | 6       | +7.50        | 0.0312 | better" in section
    assert "not significant (smallest attainable p 0.25)" in section
    assert summary["statistics"]["significance"] == 0.05 and summary["statistics"]["normdel_alpha"] == 1.0
    # the protocol's significance level decides: at 0.01 six pairs are not enough either
    strict = summarize({**HEADER, "protocol_config": {"alpha": 1.0, "significance": 0.01}}, rows)
    assert not next(c for c in strict["comparisons"] if c["selector"] == "meddel")["significant"]
    assert "significance level 0.01 (99 % intervals" in render_markdown(strict)


def test_aggregate_normdel_and_curve_area_by_hand():
    rows = (_scored("random", 0.05, [0.50, 0.54], normdels=[0.60, 0.64])
            + _scored("random", 0.2, [0.60], normdels=[0.62])
            + _scored("meddel", 0.05, [0.70], normdels=[0.66]))
    aggregate = {a["selector"]: a for a in summarize(HEADER, rows)["aggregate"]}
    random = aggregate["random"]
    # NormDEL: cell means 0.62 (0.05) and 0.62 (0.2), mean 0.62. Bootstrap: the 0.05 cell's mean is 0.60, 0.62
    # or 0.64 (probabilities 1/4, 1/2, 1/4), the one-seed cell stays 0.62: the aggregate is 0.61, 0.62 or 0.63,
    # and its 95 % interval [0.61, 0.63]
    assert random["normdel_mean"] == pytest.approx(0.62)
    assert random["normdel_ci"] == [pytest.approx(0.61), pytest.approx(0.63)]
    # score AUC over R = 0.05 and 0.2: (0.52 + 0.60) / 2 = 0.56 (two points: the mean of the ends);
    # bootstrap: (0.50 or 0.52 or 0.54, + 0.60) / 2 → interval [0.55, 0.57]
    assert random["score_auc"] == pytest.approx(0.56)
    assert random["score_auc_ci"] == [pytest.approx(0.55), pytest.approx(0.57)]
    assert random["ratios"] == [0.05, 0.2] and random["n_seeds"] == [1, 2]
    meddel = aggregate["meddel"]
    assert meddel["normdel_mean"] == pytest.approx(0.66) and meddel["rank"] == 1 and random["rank"] == 2
    assert math.isnan(meddel["score_auc"])  # one ratio: no curve
    assert all(math.isnan(v) for v in meddel["normdel_ci"])  # one seed: no interval
    cell = next(c for c in summarize(HEADER, rows)["cells"] if c["selector"] == "random" and c["ratio"] == 0.05)
    assert cell["score_ci"] == [pytest.approx(0.50), pytest.approx(0.54)]  # bootstrap of two values: their range


def _figure_rows():
    """Rows for which every figure applies: several selectors and ratios, seeds, times,
    planted ground truth, an intermediate checkpoint and a cross-dataset cell."""
    rows = []
    kept = {"core": (4, 2), "near_duplicate": (46, 3), "invalid": (50, 1)}
    for selector, base in (("random", 0.60), ("meddel", 0.66), ("oracle", 0.70)):
        for ratio in (0.05, 0.2):
            for seed in range(3):
                score = base + 0.02 * seed + 0.05 * ratio
                row = _row(selector, ratio, seed, score, 0.6 + score / 10, kept)
                row.time_s = {"select": 0.01 * (1 + seed), "pretrain": 10.0 + seed, "task": 1.0}
                row.pretrain = {"epochs": 12.0 / ratio}
                if ratio == 0.05:
                    row.cross_dataset = {"other": {"mIoU": score - 0.1}}
                rows.append(row)
            early = _row(selector, ratio, 0, base - 0.1, 0.6, kept)
            early.pretrain_epoch, early.key = 2.0, early.key + "|epoch=2"
            rows.append(early)
    return rows


def test_every_figure_is_drawn_and_listed(tmp_path):
    from delbench.reports.plots import FIGURES

    (tmp_path / HEADER_FILE).write_text(json.dumps(HEADER))
    for row in _figure_rows():
        append_row(tmp_path / ROWS_FILE, row)
    report = write_report(tmp_path)
    assert set(report.files) == {"md", "json", "html"}
    markdown = report.files["md"].read_text()
    for figure in FIGURES:
        data = (tmp_path / figure.file).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", figure.file
        assert f"![{figure.caption}]({figure.file})" in markdown
    # a run without intermediate checkpoints or cross-dataset cells has no such figures (stale ones removed)
    rows = [r for r in _figure_rows() if r.pretrain_epoch is None]
    for row in rows:
        row.cross_dataset = {}
    (tmp_path / ROWS_FILE).write_text("")
    for row in rows:
        append_row(tmp_path / ROWS_FILE, row)
    markdown = write_report(tmp_path).files["md"].read_text()
    assert not (tmp_path / "epochs.png").exists() and not (tmp_path / "cross_dataset.png").exists()
    assert "epochs.png" not in markdown and "scores.png" in markdown


def test_report_formats_are_chosen_and_checked(tmp_path):
    from delbench.errors import ConfigError
    from delbench.reports import parse_formats

    (tmp_path / HEADER_FILE).write_text(json.dumps(HEADER))
    for row in ROWS:
        append_row(tmp_path / ROWS_FILE, row)
    assert parse_formats("md, json,html,md") == ("md", "json", "html")
    with pytest.raises(ConfigError, match="unknown format 'pdf'"):
        parse_formats("md,pdf")
    report = write_report(tmp_path, ("json",))
    assert set(report.files) == {"json"} and not (tmp_path / "report.md").exists()
    assert not (tmp_path / "scores.png").exists()  # figures serve the documents only
    summary = json.loads(report.files["json"].read_text())
    assert summary["statistics"]["normdel_alpha"] == 1.0 and summary["statistics"]["significance"] == 0.05
    assert summary["statistics"]["bootstrap_resamples"] == 10_000


def test_html_report_is_self_contained(tmp_path):
    import base64
    import re

    (tmp_path / HEADER_FILE).write_text(json.dumps(HEADER))
    for row in _figure_rows():
        append_row(tmp_path / ROWS_FILE, row)
    page = write_report(tmp_path, ("html",)).files["html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from anywhere
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == 6
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:4] == b"\x89PNG"
    assert page.count("<table>") >= 6 and "NormDEL α = 1.0" in page and "significance level 0.05" in page
    assert "<th>mIoU @ 0.05</th>" in page and "&lt;" not in page.split("<main>")[0]


def _chromium() -> str | None:
    import shutil

    return next((path for path in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if path), None)


def test_html_report_renders_in_headless_chromium(tmp_path):
    """The page opens in a real browser: every table is laid out and every figure decoded."""
    import os
    import re
    import subprocess

    browser = _chromium()
    if browser is None:
        if os.environ.get("DELBENCH_REQUIRE_CHROMIUM"):
            pytest.fail("DELBENCH_REQUIRE_CHROMIUM is set but no chromium is installed (.ci/run installs it)")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); CI installs it")
    (tmp_path / HEADER_FILE).write_text(json.dumps(HEADER))
    for row in _figure_rows():
        append_row(tmp_path / ROWS_FILE, row)
    page = write_report(tmp_path, ("html",)).files["html"].read_text()
    # the probe is added to a copy: the report itself carries no script. It records, once the page has
    # loaded, how many images were decoded and drawn and how many tables are laid out with rows
    probe = """<script>
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const shown = images.filter(i => i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 100
                                   && i.getBoundingClientRect().height > 50);
  const tables = Array.from(document.querySelectorAll('table')).filter(
      t => t.rows.length > 1 && t.getBoundingClientRect().width > 50);
  document.body.setAttribute('data-probe', `images=${images.length} shown=${shown.length} tables=${tables.length}`);
});
</script>"""
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", probe + "\n</body>"))
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
                             "--virtual-time-budget=10000", "--window-size=1300,2000", "--dump-dom",
                             probed.as_uri()], capture_output=True, text=True, timeout=180)
    match = re.search(r'data-probe="images=(\d+) shown=(\d+) tables=(\d+)"', result.stdout)
    assert match, f"no probe result in chromium's DOM (exit {result.returncode}): {result.stderr[-2000:]}"
    images, shown, tables = map(int, match.groups())
    assert images == shown == 6
    assert tables == page.count("<table>") >= 6
    assert "Downstream scores" in result.stdout and "Aggregate per selector" in result.stdout


def test_html_pages_carry_no_markup_links_or_images_from_run_data():
    """Labels and errors come from runs and submissions: rendered as text, never as markup, a
    link or a fetched image (the leaderboard shows other people's labels)."""
    from delbench.reports import markdown_to_html

    hostile = "[x](javascript:alert(1)) ![t](http://example.com/t.png) <http://example.com> <script>alert(2)</script>"
    markdown = (f"# report\n\n## Scores\n\n| selector | score |\n|---|---|\n| {hostile} | 1 |\n\n"
                f"- `cell`: failed: {hostile}\n\n![a figure](scores.png)\n")
    page = markdown_to_html(markdown, lambda src: f"data:image/png;base64,{src}", "t")
    body = page.split("<main>", 1)[1]
    assert "<script" not in body and "&lt;script&gt;" in body
    assert "javascript:" not in body and "http://example.com/t.png" not in body
    assert re.findall(r'<a [^>]*href="([^"]*)"', body) == ["#scores"]  # the nav, nothing else
    assert re.findall(r'<img [^>]*src="([^"]*)"', body) == ["data:image/png;base64,scores.png"]


# -- validity: the coverage bracket and several downstream sets ----------------------------

def _set_rows(scores, task_dataset, ratio=0.05, covered=None):
    """Rows of ``scores[selector][seed]`` on one downstream set, the valid frames of each
    selection covering ``covered[selector]`` scenes (of 40)."""
    rows = []
    for selector, values in scores.items():
        for seed, score in enumerate(values):
            row = _row(selector, ratio, seed, score, 0.6, {"core": (4, 2), "invalid": (50, 0)})
            row.task_dataset = task_dataset
            row.key = row.key.replace("seg/", f"{task_dataset}/")
            if covered:
                row.selection["coverage"] = {"scenes": {"pool": 40, "kept": covered[selector]},
                                             "centres": {"pool": 4, "kept": min(4, covered[selector])}}
            rows.append(row)
    return rows


def test_coverage_bracket_needs_one_point_on_every_seed():
    # spread − packed per seed: 0.03, 0.02, 0.012 — all above the 1-point margin, mean 0.020667,
    # sd 0.009018, half width 4.302653 · 0.009018 / √3 = 0.022403 > mean: fails on its interval
    near = {"spread_valid": [0.73, 0.72, 0.722], "packed_valid": [0.70, 0.70, 0.71], **PASSING}
    validity = summarize(HEADER, _set_rows(near, "seg", covered={"spread_valid": 40, "packed_valid": 2,
                                                                 **{k: 20 for k in PASSING}}))["validity"]
    [coverage] = validity["brackets"]["coverage"]["entries"]
    gap = coverage["gaps"]["spread_valid-packed_valid"]
    assert gap["gaps"] == pytest.approx([0.03, 0.02, 0.012]) and not gap["holds"]
    assert validity["brackets"]["quality"]["passed"] is True and validity["bracket_passed"] is False
    # clear of its interval but one seed below the margin: 0.012, 0.012, 0.009
    tight = dict(near, spread_valid=[0.712, 0.712, 0.709], packed_valid=[0.70, 0.70, 0.70])
    validity = summarize(HEADER, _set_rows(tight, "seg"))["validity"]
    gap = validity["brackets"]["coverage"]["entries"][0]["gaps"]["spread_valid-packed_valid"]
    assert gap["mean"] > gap["half_width"] and min(gap["gaps"]) < 0.01 and not gap["holds"]
    # 0.03, 0.03, 0.03 on every seed: holds
    clear = dict(near, spread_valid=[0.73, 0.73, 0.74])
    summary = summarize(HEADER, _set_rows(clear, "seg", covered={"spread_valid": 40, "packed_valid": 2,
                                                                 **{k: 20 for k in PASSING}}))
    validity = summary["validity"]
    assert validity["brackets"]["coverage"]["passed"] is True and validity["bracket_passed"] is True
    assert validity_verdict(summary) == ("bracket check PASSED at ratio 0.05; "
                                         "coverage check PASSED at ratio 0.05")
    section = render_markdown(summary).split("## Validity", 1)[1].split("## What the selections", 1)[0]
    assert "**coverage**" in section and "Coverage check: PASSED at ratio 0.05." in section
    # scenes covered, spread 40 > the rest 20 > packed 2, against the scores: ties, but positive
    scenes = validity["rank_correlation"][0]["columns"]["scenes_covered"]
    assert scenes["n_selectors"] == 7 and scenes["rho"] > 0
    assert {p["selector"]: p["truth"] for p in scenes["points"]}["packed_valid"] == 2


def test_a_run_without_the_coverage_selectors_leaves_coverage_out():
    summary = summarize(HEADER, _selection_rows(PASSING))
    validity = summary["validity"]
    assert validity["brackets"]["coverage"]["passed"] is None
    assert validity_verdict(summary) == "bracket check PASSED at ratio 0.05"
    assert "**coverage**" not in render_markdown(summary)


def test_several_downstream_sets_decide_on_their_mean():
    # set b alone fails random − anti_oracle (gaps 0.20, 0.19, 0.02: mean 0.137 < half width 0.237);
    # the mean over both sets holds (gaps 0.20, 0.19, 0.10: mean 0.163 > half width 0.137)
    a = {"oracle": [0.80, 0.82, 0.84], "random": [0.70, 0.71, 0.72], "anti_oracle": [0.50, 0.52, 0.54]}
    b = dict(a, anti_oracle=[0.50, 0.52, 0.70])
    summary = summarize(HEADER, _set_rows(a, "centre_a") + _set_rows(b, "centre_b"))
    entries = summary["validity"]["brackets"]["quality"]["entries"]
    by_set = {e["task_dataset"]: e for e in entries}
    assert set(by_set) == {"centre_a", "centre_b", "all sets"}
    assert by_set["centre_b"]["passed"] is False and not by_set["centre_b"]["decides"]
    mean = by_set["all sets"]
    assert mean["decides"] and mean["passed"] is True
    assert mean["selectors"]["anti_oracle"]["mean"] == pytest.approx((0.50 + 0.52 + 0.62) / 3)
    assert summary["validity"]["bracket_passed"] is True
    assert validity_verdict(summary) == "bracket check PASSED at ratio 0.05"
    section = render_markdown(summary).split("## Validity", 1)[1]
    assert "### all sets / segmentation" in section and "### centre_b / segmentation" in section
