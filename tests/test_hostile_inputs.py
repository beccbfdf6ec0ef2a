"""Issue 26, item 5: what a hostile user's probe still broke. One test per case; each failed on
the code before its fix (the "Before:" line says how)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from delbench import hookimpl
from delbench.cli import main
from delbench.store import HEADER_FILE, LOCK_FILE, ROWS_FILE, SCHEMA_VERSION, ResultRow, append_row

TINY = str(Path(__file__).parent / "configs" / "tiny.py")
RANDOM_ONLY = "selectors=[{'name':'random','ratios':[0.1]}]"
QUIET = ["--no-progress", "--quiet"]
SELECT = ["select", "--dataset", "synthetic_endoscopy", "--dataset-param", "num_frames=40", "image_size=16",
          "--ratio", "0.5"]


def _one_line_error(capsys, prefix: str = "delbench: ") -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _run_dir(folder: Path, rows: list[dict]) -> Path:
    """A run directory written by hand: its header and these rows (a report needs no more)."""
    folder.mkdir()
    (folder / HEADER_FILE).write_text(json.dumps({
        "schema_version": SCHEMA_VERSION, "protocol": "hand", "protocol_version": "1", "config_sha256": "ab" * 32,
        "delbench_version": "0", "protocol_config": {"alpha": 1.0}}))
    for row in rows:
        append_row(folder / ROWS_FILE, ResultRow.from_json(row))
    return folder


def _row(seed: int, miou: float) -> dict:
    return {"key": f"random|ratio=0.1|seed={seed}|seg/segmentation", "status": "ok", "selector": "random",
            "selector_name": "random", "ratio": 0.1, "seed": seed, "task": "segmentation", "task_dataset": "seg",
            "metric": "mIoU", "metrics": {"mIoU": miou}, "normdel": 0.6, "n_selected": 10}


# --- silently wrong ----------------------------------------------------------------------------
def test_a_selector_listed_twice_is_refused_at_load_naming_both_entries(tmp_path, capsys):
    """Before: every cell ran twice and the run exited 0 (its own verify then failed it)."""
    work = tmp_path / "w"
    twice = "selectors=[{'name': 'random', 'ratios': [0.1]}, {'name': 'full', 'ratios': [1.0]}, {'name': 'random'}]"
    assert main(["run", TINY, "--work-dir", str(work), *QUIET, "--cfg-options", twice]) == 1
    assert _one_line_error(capsys) == (
        "delbench: error: selectors[0] and selectors[2] are both 'random' at ratio 0.1 and seed 0: each of their "
        "common cells would run twice; remove one, or give them other params, ratios or seeds")
    assert not work.exists()


def test_report_names_a_cut_off_last_line_keeps_the_other_rows_and_exits_1(tmp_path, capsys):
    """Before: exit 0 and the cell missing from the report without a word."""
    run = _run_dir(tmp_path / "run", [_row(0, 0.5), _row(1, 0.6)])
    with open(run / ROWS_FILE, "ab") as handle:
        handle.write(json.dumps(_row(2, 0.7)).encode()[:80])  # a writer killed mid-row
    assert main(["report", str(run), "--format", "json,md"]) == 1
    warning = _one_line_error(capsys, "delbench: warning")
    assert warning == (f"delbench: warning: {run / ROWS_FILE}:3: the last line is cut off (a run killed while "
                       f"writing it?) and was left out with its cell; 'delbench run --resume' moves it aside and "
                       f"re-runs the cell")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["cells"][0]["n_seeds"] == 2 and summary["row_problems"] == [warning.split("warning: ", 1)[1]]
    assert "## Rows left out" in (run / "report.md").read_text()


def test_report_names_an_ok_row_whose_metric_is_not_a_number(tmp_path, capsys):
    """Before: exit 0, the row's seed left out of every mean without a word."""
    run = _run_dir(tmp_path / "run", [_row(0, 0.5), _row(1, 0.6)])
    with open(run / ROWS_FILE, "a") as handle:
        handle.write(json.dumps(_row(2, float("nan"))) + "\n")
    assert main(["report", str(run), "--format", "json"]) == 1
    assert _one_line_error(capsys, "delbench: warning") == (
        f"delbench: warning: {run / ROWS_FILE}:3: cell random|ratio=0.1|seed=2|seg/segmentation is ok but its "
        f"metric mIoU is nan, not a finite number: every mean over seeds leaves it out")


@pytest.mark.parametrize("kind, message", [
    ("no columns", "embeddings have no columns (shape (40, 0)): each item needs a feature vector"),
    ("all zero", "embeddings are zero for all 40 items: a selector could tell no item from another; check how they "
                 "were computed"),
])
def test_embeddings_without_columns_or_all_zero_are_refused(kind, message, tmp_path, capsys):
    """Before: a 40 × 0 array was accepted; all-zero embeddings gave a degenerate subset, exit 0."""
    path = tmp_path / "e.npy"
    np.save(path, np.zeros((40, 0 if kind == "no columns" else 8), np.float32))
    assert main([*SELECT, "--selector", "meddel", "--embeddings", str(path), "--out", str(tmp_path / "m.npy")]) == 1
    assert _one_line_error(capsys) == f"delbench: error: embeddings file {path}: {message}"
    assert not (tmp_path / "m.npy").exists()


def test_embeddings_of_the_same_ids_under_other_pool_parameters_are_refused(tmp_path, capsys):
    """Before: the manifest's pool parameters were not compared: the same ids (synthetic pool
    seed 0 against seed 1) passed and the selector ran on another pool's embeddings."""
    from delbench import discovery
    from delbench.embed import embed_shards, plan_shards

    params = {"num_frames": 40, "image_size": 16}
    pool = discovery.create("dataset", "synthetic_endoscopy", params, split="all")
    plan = plan_shards(tmp_path / "emb", pool_name="synthetic_endoscopy", pool_params={**params, "split": "all"},
                       pool_ids=list(pool.item_ids()), backbone_name="fake", backbone_params={}, checkpoint=None,
                       shard_size=16)
    embed_shards(plan, pool, lambda images: images.reshape(len(images), -1)[:, :8].astype(np.float32))
    argv = ["select", "--dataset", "synthetic_endoscopy", "--ratio", "0.5", "--selector", "meddel",
            "--embeddings", str(tmp_path / "emb"), "--out", str(tmp_path / "m.npy"), "--dataset-param",
            "num_frames=40", "image_size=16"]
    assert main([*argv, "seed=1"]) == 1
    assert _one_line_error(capsys) == (
        f"delbench: error: embeddings in {tmp_path / 'emb'} are of synthetic_endoscopy with other parameters "
        f"(seed: 0 there, 1 here): the same ids name other images; embed this pool, or give the same --dataset-param")
    assert main([*argv, "seed=0"]) == 0  # the default written out is the same pool


@pytest.fixture(scope="module")
def submission(tmp_path_factory):
    from delbench.submissions import write_submission

    folder = tmp_path_factory.mktemp("leaderboard")
    assert main(["run", TINY, "--work-dir", str(folder / "run"), *QUIET, "--cfg-options", RANDOM_ONLY]) == 0
    return write_submission(folder / "run", folder / "sub.tar.gz")


def test_leaderboard_ranks_a_submission_given_twice_once(submission, tmp_path, capsys):
    """Before: both copies were ranked, as two entries."""
    out = tmp_path / "board"
    assert main(["leaderboard", str(submission), str(submission), "--out", str(out), "--protocol", TINY,
                 "--cfg-options", RANDOM_ONLY]) == 0
    board = json.loads((out / "leaderboard.json").read_text())
    assert [e["selector"] for e in board["entries"]] == ["random"]
    assert board["repeated"][0]["same_as"] == str(submission)
    assert "## Given more than once (ranked once)" in (out / "leaderboard.md").read_text()
    assert f"note: {submission} is the same submission as {submission}: ranked once" in capsys.readouterr().err


def test_leaderboard_of_no_verified_submission_is_an_error(tmp_path, capsys):
    """Before: exit 0 and a leaderboard headed 'None (protocol vNone)'."""
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tarball")
    assert main(["leaderboard", str(bad), "--out", str(tmp_path / "board")]) == 1
    line = _one_line_error(capsys)
    assert line.startswith(f"delbench: error: no submission verified, so there is nothing to rank: {bad}: ")
    assert not (tmp_path / "board").exists()


# --- messages that misled or named nothing -------------------------------------------------------
@pytest.mark.parametrize("option, message", [
    ("ratios=[nan]", "ratios: ratios must be in (0, 1], got [nan]"),
    ("selectors=[dict(name='nope')]", "unknown selector 'nope'."),
    ("tasks=[dict(name=segmentation)]", "--cfg-options tasks: '[dict(name=segmentation)]' is not a value "
                                        "('segmentation' is not a literal)"),
])
def test_a_config_literal_on_the_command_line_is_parsed_or_refused_naming_the_key(option, message, tmp_path, capsys):
    """Before: kept as the string '[nan]' / "[dict(...)]" and read letter by letter
    ("unknown selector '['", "tasks[0] must be dict(...)")."""
    assert main(["run", TINY, "--work-dir", str(tmp_path / "w"), *QUIET, "--cfg-options", option]) == 1
    assert _one_line_error(capsys).startswith(f"delbench: error: {message}")


def test_a_dict_call_on_the_command_line_is_a_dict():
    from delbench.cli.base import parse_value

    assert parse_value("[dict(name='random', params=dict(k=3)), {'a': -inf}]") == [
        {"name": "random", "params": {"k": 3}}, {"a": -math.inf}]
    assert parse_value("vit_small") == "vit_small" and parse_value("x-y") == "x-y"  # plain strings stay strings


@pytest.mark.parametrize("damage, message", [
    (b'{"key": "x", "metric": "mIoU"}\n', ":3: not a result row of schema 2.1: no 'status'"),
    (b"\xff\xfe binary\n{}\n", ":3: not UTF-8 text"),
])
def test_a_row_of_another_schema_or_binary_is_one_line_naming_file_and_line(damage, message, tmp_path, capsys):
    """Before: "TypeError: ResultRow.__init__() missing 1 required positional argument:
    'status'" and an unnamed "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff"."""
    run = _run_dir(tmp_path / "run", [_row(0, 0.5), _row(1, 0.6)])
    with open(run / ROWS_FILE, "ab") as handle:
        handle.write(damage)
    assert main(["report", str(run), "--format", "json"]) == 1
    assert _one_line_error(capsys) == f"delbench: error: {run / ROWS_FILE}{message}"


def test_a_damaged_run_header_is_one_line_naming_it(tmp_path, capsys):
    """Before: "error (JSONDecodeError): Expecting property name …", no file named."""
    run = _run_dir(tmp_path / "run", [_row(0, 0.5)])
    (run / HEADER_FILE).write_text('{"schema_version": "2.1", ')
    assert main(["report", str(run)]) == 1
    assert _one_line_error(capsys) == (f"delbench: error: {run / HEADER_FILE} is not valid JSON (Expecting property "
                                       f"name enclosed in double quotes at line 1): the run's header is damaged")


def test_a_negative_seed_names_the_option(tmp_path, capsys):
    """Before: "error (ValueError): expected non-negative integer" (numpy's), after the pool was built."""
    with pytest.raises(SystemExit) as exited:
        main([*SELECT, "--selector", "random", "--seed", "-1", "--out", str(tmp_path / "r.npy")])
    assert exited.value.code == 2
    assert "argument --seed: must be an integer ≥ 0, got '-1'" in capsys.readouterr().err


def test_a_work_dir_that_is_a_file_is_named(tmp_path, capsys):
    """Before: "cannot write FILE/.delbench.lock: [Errno 17] File exists"."""
    blocker = tmp_path / "results"
    blocker.write_text("mine")
    for work in (blocker, blocker / "sub"):
        assert main(["run", TINY, "--work-dir", str(work), *QUIET, "--cfg-options", RANDOM_ONLY]) == 1
        assert _one_line_error(capsys) == (f"delbench: error: work dir {work}: {blocker} is a file, not a directory; "
                                           f"choose another --work-dir")
    assert blocker.read_text() == "mine"


def test_a_full_disk_while_saving_a_checkpoint_names_the_file(tmp_path, monkeypatch):
    """Before: safetensors' "Error while serializing: I/O error: No space left on device (os
    error 28)", naming no file of ours."""
    import safetensors.torch
    from safetensors import SafetensorError

    from delbench import discovery
    from delbench.errors import WriteError

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 10)
        raise SafetensorError(f'Error while serializing: I/O error: No space left on device (os error 28) at path '
                              f'"{Path(filename).parent}/.tmpXyZ"')

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    backbone = discovery.create("backbone", "timm_mae", {"model": "vit_tiny_patch16_224", "image_size": 32,
                                                         "patch_size": 8, "model_kwargs": {"depth": 1}})
    target = tmp_path / "cache" / "final.safetensors"
    with pytest.raises(WriteError) as raised:
        backbone.save(target)
    assert str(raised.value) == f"cannot write {target}: No space left on device (os error 28)"
    assert list(target.parent.iterdir()) == []  # no temporary left


class InterruptingSelector:
    name = "interrupting"
    version = "1"
    description = "raises KeyboardInterrupt on purpose"

    def select(self, pool, ratio, *, seed, embeddings=None, **params):
        raise KeyboardInterrupt


class InterruptingPlugin:
    @hookimpl
    def delbench_register_selectors(self):
        return [InterruptingSelector]


def test_a_selector_that_raises_keyboard_interrupt_is_named(tmp_path, capsys, register_plugin):
    """Before: the sweep stopped with "interrupted" and not a word of which cell or plugin."""
    register_plugin(InterruptingPlugin(), "interrupting")
    assert main(["run", TINY, "--work-dir", str(tmp_path / "w"), *QUIET, "--cfg-options",
                 "selectors=[{'name':'interrupting','ratios':[0.1]}]"]) == 130
    line = _one_line_error(capsys)
    assert line.startswith("delbench: interrupted: KeyboardInterrupt in the select stage of "
                           "interrupting|ratio=0.1|seed=0|synthetic_polyp_seg/segmentation, raised at ")
    assert f"{Path(__file__).name}:" in line and line.endswith("'delbench run --resume' goes on")


def test_a_refused_run_leaves_no_work_dir_behind(tmp_path, capsys, monkeypatch):
    """Before: the refused run left WORK/ holding a 0-byte .delbench.lock."""
    monkeypatch.delenv("DELBENCH_KVASIR_SEG_ROOT", raising=False)
    work = tmp_path / "a" / "w"
    assert main(["run", TINY, "--work-dir", str(work), *QUIET, "--cfg-options", RANDOM_ONLY,
                 "tasks=[dict(name='segmentation', dataset=dict(name='kvasir_seg'))]"]) == 1
    assert "kvasir_seg: no data root given" in _one_line_error(capsys)
    assert not (tmp_path / "a").exists()
    work.mkdir(parents=True)  # a work dir that was there before is the user's: kept, with no lock file left
    assert main(["run", TINY, "--work-dir", str(work), *QUIET, "--cfg-options", RANDOM_ONLY,
                 "tasks=[dict(name='segmentation', dataset=dict(name='kvasir_seg'))]"]) == 1
    assert work.is_dir() and not (work / LOCK_FILE).read_text()


# --- image_folder can be checked ----------------------------------------------------------------
def test_data_check_of_a_plain_image_folder(tmp_path, capsys):
    """Before: "a plain image folder … is a pool with split 'all' only, got split 'train'" on a
    valid folder, the same for a missing root, and split=all refused as an unknown parameter."""
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    for extra in ([], ["--dataset-param", "split=all"]):
        assert main(["data", "check", "image_folder", "--root", str(tmp_path), *extra]) == 0
        assert "counts: all 3" in capsys.readouterr().out
    assert main(["data", "check", "image_folder", "--root", str(tmp_path / "missing")]) == 1
    assert _one_line_error(capsys).startswith(f"delbench: error: image_folder: data root {tmp_path / 'missing'} "
                                              f"(from root) is not a directory")
    (tmp_path / "empty").mkdir()
    assert main(["data", "check", "image_folder", "--root", str(tmp_path / "empty")]) == 1
    assert "no images found" in capsys.readouterr().out


# --- what timm cannot build is refused at load ----------------------------------------------------
@pytest.mark.parametrize("option, message", [
    ("backbone.params.model='vit_tiny_patch16_22'",
     "backbone (timm_mae): model: timm has no model 'vit_tiny_patch16_22'; did you mean 'vit_tiny_patch16_224'"),
    ("backbone.params.model_kwargs={'dept': 2}",
     "got an unexpected keyword argument 'dept'"),
    ("backbone.params.image_size=20", "backbone (timm_mae): image_size: 20 is not a multiple of the patch size"),
    ("backbone.params.model='resnet18'", "timm cannot build 'resnet18' with {'depth': 2}: ResNet.__init__() got an"),
])
def test_what_timm_cannot_build_is_refused_at_load(option, message, tmp_path, capsys):
    """Before: the run started and every cell failed with its own timm error."""
    work = tmp_path / "w"
    assert main(["run", TINY, "--work-dir", str(work), *QUIET, "--cfg-options", RANDOM_ONLY, option]) == 1
    assert message in _one_line_error(capsys)
    assert not work.exists()
