"""The shipped real-data protocols, end to end on tiny fixtures in the published layouts.

``benchmarks/meddel_paper.py`` (MedDEL, arXiv 2401.17542: DataDEL pool, 7 downstream
segmentation sets) and ``benchmarks/small_real.py`` run through ``delbench.cli.main`` exactly as
a user runs them: dataset roots from the ``DELBENCH_<NAME>_ROOT`` variables, and
``--cfg-options`` that shrink SIZES only (model width/depth, image size, epochs, warm-up steps).
Selectors, ratios, seeds, budget rule and task list stay as the protocol files say.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from delbench.cli import main
from delbench.protocol import load_protocol
from delbench.sdk.subsets import subset_size
from delbench_plugins.lib.discovery import root_env_var
from delbench_plugins.datasets.endoscopy_pools import DataDEL
from fixtures_layouts import POOL_LAYOUTS, SEGMENTATION_LAYOUTS, STEMS

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
PAPER = BENCHMARKS / "meddel_paper.py"
SMALL_REAL = BENCHMARKS / "small_real.py"

PAPER_TASK_DATASETS = ("kvasir_seg", "kvasir_instrument", "etis_larib", "polypgen2021", "cvc_300",
                       "cvc_clinicdb", "cvc_colondb")
PAPER_SELECTIONS = {("full", 1.0)} | {(name, r) for name in ("random", "meddel")
                                      for r in (0.5, 0.33, 0.2, 0.1, 0.05)}
IMAGE_SIZE = 32
REFERENCE_EPOCHS = 0.3  # 2 optimizer steps over a 57-image pool at the protocol's batch 16


def tiny_sizes(config: Path) -> list[str]:
    """``--cfg-options`` shrinking every size of ``config``; nothing else changes.

    The encoder keeps the protocol's timm model name; only its width and depth shrink.
    """
    n_tasks = len(load_protocol(config)[0].tasks)
    return ['backbone.params.model_kwargs={"depth":1,"embed_dim":32,"num_heads":2}',
            f"backbone.params.image_size={IMAGE_SIZE}", "backbone.params.patch_size=8",
            "backbone.params.decoder_dim=32", "backbone.params.decoder_depth=1",
            "backbone.params.decoder_heads=2", f"pool.params.image_size={IMAGE_SIZE}",
            f"pretrain.reference_epochs={REFERENCE_EPOCHS}", "pretrain.optimizer.warmup_steps=0",
            "embedding.warmup_steps=1"] + [f"tasks.{i}.params.epochs=1" for i in range(n_tasks)]


def run_cli(config: Path, work_dir: Path, options: list[str]) -> int:
    return main(["run", str(config), "--work-dir", str(work_dir), "--no-progress", "--quiet",
                 "--cfg-options", *options])


def read_rows(work_dir: Path) -> list[dict]:
    path = work_dir / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Split files under tmp_path; no dataset root leaks in from the caller's environment."""
    monkeypatch.setenv("DELBENCH_CACHE_DIR", str(tmp_path / "cache"))
    for name in (*POOL_LAYOUTS, *SEGMENTATION_LAYOUTS, "datadel", "image_folder"):
        monkeypatch.delenv(root_env_var(name), raising=False)
    yield


@pytest.fixture
def paper_data(tmp_path, monkeypatch) -> dict[str, Path]:
    """A tiny copy of every dataset the paper protocol names, roots set in the environment."""
    protocol, _ = load_protocol(PAPER)
    assert protocol.pool.name == "datadel"
    roots = {}
    for source in DataDEL.source_classes:  # the pool's members, each in its own layout
        roots[source] = POOL_LAYOUTS[source](tmp_path / "data" / source, size=IMAGE_SIZE)
    for task in protocol.tasks:
        name = task.dataset.name
        roots[name] = SEGMENTATION_LAYOUTS[name](tmp_path / "data" / name, STEMS[:5], size=IMAGE_SIZE)
    for name, root in roots.items():
        monkeypatch.setenv(root_env_var(name), str(root))
    return roots


def count_images(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.suffix in (".jpg", ".png", ".tif"))


def test_paper_protocol_names_the_published_sets():
    protocol, _ = load_protocol(PAPER)
    assert tuple(t.dataset.name for t in protocol.tasks) == PAPER_TASK_DATASETS
    assert {t.name for t in protocol.tasks} == {"segmentation"}
    assert {(s.name, r) for s in protocol.selectors for r in protocol.selector_ratios(s)} == PAPER_SELECTIONS
    assert protocol.pretrain.budget == "compute_matched" and protocol.pretrain.reference_epochs == 200
    assert protocol.pretrain.batch_size == 16 and protocol.pretrain.optimizer["lr"] == 1.5e-4
    assert protocol.alpha == 1.0


def test_paper_protocol_runs_end_to_end_on_fixtures(tmp_path, paper_data, capsys):
    work = tmp_path / "work"
    assert run_cli(PAPER, work, tiny_sizes(PAPER)) == 0
    out = capsys.readouterr().out
    assert "77 cell(s) run, 0 failed" in out  # 11 selections × 7 datasets

    rows = read_rows(work)
    assert [r["status"] for r in rows] == ["ok"] * 77
    n_pool = sum(count_images(paper_data[s]) for s in DataDEL.source_classes)
    assert n_pool == (15 + 7) + 20 + 15  # HyperKvasir labelled + unlabelled, Kvasir-Capsule, GastroVision
    assert {r["n_pool"] for r in rows} == {n_pool} and {r["dataset"] for r in rows} == {"datadel"}
    for dataset in PAPER_TASK_DATASETS:
        mine = [r for r in rows if r["task_dataset"] == dataset]
        assert {(r["selector_name"], r["ratio"]) for r in mine} == PAPER_SELECTIONS, dataset
    steps = math.ceil(REFERENCE_EPOCHS * n_pool / 16)
    for row in rows:
        assert row["n_selected"] == subset_size(n_pool, row["ratio"])
        assert row["pretrain"]["steps"] == steps  # compute-matched: the same steps at every ratio
        assert row["pretrain"]["epochs"] == pytest.approx(steps * 16 / row["n_selected"])
        score = row["metrics"]["mIoU"]
        assert row["metric"] == "mIoU" and 0.0 <= score <= 1.0
        # NormDEL = sigmoid(score · exp(−α R)), α = 1, R = the nominal ratio (MedDEL)
        assert row["normdel"] == pytest.approx(1 / (1 + math.exp(-score * math.exp(-row["ratio"]))))
    meddel = {r["selector"] for r in rows if r["selector_name"] == "meddel"}
    assert len(meddel) == 1 and {r["selector_params"]["eps"] for r in rows if r["selector_name"] == "meddel"} == {0.9}

    report = (work / "report.md").read_text()
    for dataset in PAPER_TASK_DATASETS:
        assert f"### {dataset} / segmentation" in report
    assert report.count("NormDEL @ 0.05") == len(PAPER_TASK_DATASETS)
    summary = json.loads((work / "summary.json").read_text())
    assert summary["failed"] == [] and summary["protocol"] == "meddel_paper"
    assert {c["task_dataset"] for c in summary["cells"]} == set(PAPER_TASK_DATASETS)
    assert all(0.5 < c["normdel_mean"] < 1.0 for c in summary["cells"])  # sigmoid of a score ≥ 0


def test_missing_pool_root_is_one_line_naming_variable_and_layout(tmp_path, paper_data, monkeypatch, capsys):
    monkeypatch.delenv("DELBENCH_GASTROVISION_ROOT")
    assert run_cli(PAPER, tmp_path / "work", tiny_sizes(PAPER)) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("delbench: error")]
    assert len(errors) == 1, captured.err
    assert "DELBENCH_GASTROVISION_ROOT" in errors[0] and "<class>/*.jpg" in errors[0]
    assert read_rows(tmp_path / "work") == []


def test_missing_task_root_stops_before_any_pretraining(tmp_path, paper_data, monkeypatch, capsys):
    monkeypatch.delenv("DELBENCH_CVC_300_ROOT")
    options = tiny_sizes(PAPER) + ['selectors=[{"name":"full","ratios":[1.0]}]']  # one selection suffices
    rc = run_cli(PAPER, tmp_path / "work", options)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("delbench: error")]
    assert rc == 1 and read_rows(tmp_path / "work") == []
    assert len(errors) == 1 and "DELBENCH_CVC_300_ROOT" in errors[0] and "masks/<stem>" in errors[0]


# --- small_real -------------------------------------------------------------------------------
@pytest.fixture
def small_real_data(tmp_path, monkeypatch) -> dict[str, Path]:
    roots = {"kvasir_seg": SEGMENTATION_LAYOUTS["kvasir_seg"](tmp_path / "Kvasir-SEG", STEMS, size=IMAGE_SIZE),
             "cvc_clinicdb": SEGMENTATION_LAYOUTS["cvc_clinicdb"](tmp_path / "CVC-ClinicDB", STEMS[:5],
                                                                  size=IMAGE_SIZE)}
    for name, root in roots.items():
        monkeypatch.setenv(root_env_var(name), str(root))
    monkeypatch.setenv(root_env_var("image_folder"), str(roots["kvasir_seg"] / "images"))
    return roots


def test_small_real_loads_with_its_pool_from_the_environment(small_real_data):
    protocol, _ = load_protocol(SMALL_REAL)
    assert protocol.name == "small_real"
    assert protocol.pool.name == "image_folder" and "root" not in protocol.pool.params
    assert tuple(t.dataset.name for t in protocol.tasks) == ("kvasir_seg", "cvc_clinicdb")
    assert protocol.seeds == (0, 1) and protocol.ratios == (0.1, 0.2, 1.0)


def test_small_real_runs_end_to_end_on_fixtures(tmp_path, small_real_data, capsys):
    work = tmp_path / "work"
    assert run_cli(SMALL_REAL, work, tiny_sizes(SMALL_REAL)) == 0
    assert "20 cell(s) run, 0 failed" in capsys.readouterr().out  # 5 selections × 2 seeds × 2 tasks
    rows = read_rows(work)
    assert [r["status"] for r in rows] == ["ok"] * 20
    assert {r["n_pool"] for r in rows} == {len(STEMS)}  # the pool is Kvasir-SEG's images/ folder
    assert {(r["selector_name"], r["ratio"], r["n_selected"]) for r in rows} == {
        ("full", 1.0, 10), ("random", 0.1, 1), ("random", 0.2, 2), ("meddel", 0.1, 1), ("meddel", 0.2, 2)}
    assert {r["task_dataset"] for r in rows} == {"kvasir_seg", "cvc_clinicdb"}
    assert {r["seed"] for r in rows} == {0, 1}
    report = (work / "report.md").read_text()
    assert "### kvasir_seg / segmentation" in report and "### cvc_clinicdb / segmentation" in report
