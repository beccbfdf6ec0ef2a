"""Hostile use: two runs into one work dir, a full disk, leftover temporaries, stages that
raise, return garbage or hang, and inputs that used to get misleading or multi-line messages.

Each test names the fault it reproduces; each failed on the code before the fix.
"""
import errno
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from delbench import hookimpl
from delbench.cli import main
from delbench.errors import LockError, WriteError
from delbench.sdk.files import atomic_save_npy, atomic_write_text, remove_orphan_temporaries, temp_path
from delbench.store import LOCK_FILE, ROWS_FILE, ResultRow, WorkDirLock, append_row, read_rows

TINY = str(Path(__file__).parent / "configs" / "tiny.py")
RANDOM_ONLY = "selectors=[{'name':'random','ratios':[0.1]}]"
QUIET = ["--no-progress", "--quiet"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("delbench: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]


# --- two runs into one work dir --------------------------------------------------------------
BLOCKING_RUN = """
import functools, sys, time
from pathlib import Path
from delbench_plugins.backbones import timm_mae
from delbench.cli import main
flag, release = Path(sys.argv[1]), Path(sys.argv[2])
original = timm_mae.TimmMAE.pretrain
@functools.wraps(original)
def pretrain(self, *args, **kwargs):
    flag.touch()  # the lock is held by now
    while not release.exists():
        time.sleep(0.05)
    return original(self, *args, **kwargs)
timm_mae.TimmMAE.pretrain = pretrain
sys.exit(main(["run", sys.argv[3], "--work-dir", sys.argv[4], "--resume", "--no-progress", "--quiet",
               "--cfg-options", sys.argv[5]]))
"""


@pytest.mark.slow
def test_a_second_run_into_a_held_work_dir_is_refused_naming_the_holder(tmp_path):
    """Before: both runs exited 0 and every key was in results.jsonl twice."""
    work, flag, release = tmp_path / "run", tmp_path / "started", tmp_path / "release"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-c", BLOCKING_RUN, str(flag), str(release), TINY, str(work),
                              RANDOM_ONLY], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert first.poll() is None, first.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the first run never reached pre-training"
            time.sleep(0.1)
        second = subprocess.run([sys.executable, "-m", "delbench", "run", TINY, "--work-dir", str(work), "--resume",
                                 *QUIET, "--cfg-options", RANDOM_ONLY], env=env, capture_output=True, text=True)
        assert second.returncode == 1
        errors = [line for line in second.stderr.splitlines() if line.startswith("delbench: ")]
        assert errors == [f"delbench: error: {work} is in use by another delbench run (pid {first.pid} on "
                          f"{json.loads((work / LOCK_FILE).read_text())['host']}, started "
                          f"{json.loads((work / LOCK_FILE).read_text())['started_at']}); wait for it to finish "
                          f"or choose another --work-dir"]
    finally:
        release.touch()
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    keys = [json.loads(line)["key"] for line in (work / ROWS_FILE).read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 1
    assert (work / LOCK_FILE).read_text() == ""


def test_the_lock_is_reentrant_in_a_process_and_released_on_error(tmp_path):
    work = tmp_path / "w"
    with pytest.raises(RuntimeError):
        with WorkDirLock.of(work):
            with WorkDirLock.of(work):  # the CLI holds it around run_protocol, which takes it too
                assert json.loads((work / LOCK_FILE).read_text())["pid"] == os.getpid()
            assert (work / LOCK_FILE).read_text()  # still held by the outer block
            (work / "run.json").write_text("{}")  # the run wrote something: its work dir stays
            raise RuntimeError("a crash inside the run")
    assert (work / LOCK_FILE).read_text() == ""
    with WorkDirLock.of(work):  # free again
        pass


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    work = tmp_path / "w"
    work.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (work / LOCK_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host": "elsewhere",
                                              "started_at": "2024-01-01T00:00:00+00:00"}))
    with WorkDirLock.of(work):
        pass
    assert f"taking over a stale lock: pid {int(dead.stdout)} on elsewhere" in caplog.text


def test_a_held_lock_refuses_a_second_holder_in_another_process(tmp_path):
    work = tmp_path / "w"
    with WorkDirLock.of(work):
        code = ("import sys\nfrom delbench.store import WorkDirLock\n"
                f"try:\n    WorkDirLock({str(work)!r}).acquire()\nexcept Exception as e:\n    print(e)\n    sys.exit(3)\n")
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert other.returncode == 3 and f"(pid {os.getpid()} on " in other.stdout


# --- a full disk --------------------------------------------------------------------------------
def _row(key="k"):
    return ResultRow(key=key, status="ok")


def test_a_full_disk_while_appending_a_row_names_the_file_and_leaves_no_half_line(tmp_path, monkeypatch):
    """Before: '[Errno 28] No space left on device', naming no file, and half a row in the file."""
    rows = tmp_path / ROWS_FILE
    append_row(rows, _row("first"))
    before = rows.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(ROWS_FILE):
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(WriteError, match=rf"^cannot write {rows}: \[Errno 28\] No space left on device$"):
        append_row(rows, _row("second"))
    monkeypatch.undo()
    assert rows.read_bytes() == before


def test_a_run_whose_rows_cannot_be_written_stops_with_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    """Before: 'delbench: error (OSError): [Errno 28] No space left on device', no file named."""
    real_write = os.write

    def full_for_rows(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(ROWS_FILE):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_for_rows)
    work = tmp_path / "run"
    assert main(["run", TINY, "--work-dir", str(work), *QUIET, "--cfg-options", RANDOM_ONLY]) == 1
    assert _one_line_error(capsys) == (f"delbench: error: cannot write {work / ROWS_FILE}: [Errno 28] No space "
                                       f"left on device")
    assert not _temporaries(work) and (work / ROWS_FILE).read_bytes() == b""
    assert (work / LOCK_FILE).read_text() == ""


def _full_disk_save(handle, array, allow_pickle=False):
    handle.write(b"\x93NUMPY")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_saving_a_subset_leaves_no_temporary(tmp_path, monkeypatch):
    """Before: two zero-byte subsets/.*.tmp.npy files were left behind."""
    monkeypatch.setattr(np, "save", _full_disk_save)
    target = tmp_path / "subsets" / "s.npy"
    with pytest.raises(WriteError, match=rf"^cannot write {target}: \[Errno 28\] No space left on device$"):
        atomic_save_npy(target, np.arange(3))
    assert list((tmp_path / "subsets").iterdir()) == []


def test_a_subset_that_cannot_be_written_fails_its_cell_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(np, "save", _full_disk_save)
    work = tmp_path / "run"
    assert main(["run", TINY, "--work-dir", str(work), *QUIET, "--cfg-options", RANDOM_ONLY]) == 1
    (row,) = read_rows(work)
    assert row.status == "failed" and row.stage == "select"
    assert row.error.startswith(f"WriteError: cannot write {work / 'subsets'}/random_ratio0.1_seed0_")
    assert row.error.endswith(".npy: [Errno 28] No space left on device")
    assert not _temporaries(work)


# --- leftover temporaries -----------------------------------------------------------------------
def test_select_onto_a_directory_is_refused_up_front_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    """Before: IsADirectoryError after the selection, and .NAME.tmp.npy left beside it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    code = main(["select", "--dataset", "synthetic_endoscopy", "--selector", "random", "--ratio", "0.25",
                 "--dataset-param", "num_frames=40", "image_size=16", "--out", "out"])
    assert code == 1
    assert _one_line_error(capsys) == ("delbench: error: --out out is a directory; give a file name such as "
                                       "out/subset.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_writing_onto_a_directory_names_it_and_leaves_no_temporary(tmp_path):
    (tmp_path / "report.md").mkdir()
    with pytest.raises(WriteError, match="report.md: it is a directory"):
        atomic_write_text(tmp_path / "report.md", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_temporaries_name_their_process_and_never_collide(tmp_path):
    first, second = temp_path(tmp_path / "scores.png"), temp_path(tmp_path / "scores.png")
    assert first != second and f".{os.getpid()}-" in first.name and first.name.startswith(".scores.png.")


@pytest.mark.slow
def test_reports_written_side_by_side_do_not_trip_over_each_others_temporaries(tmp_path):
    """Before: one writer died on the other's '.scores.png.tmp.png' (FileNotFoundError)."""
    work = tmp_path / "run"
    assert main(["run", TINY, "--work-dir", str(work), *QUIET, "--cfg-options", RANDOM_ONLY]) == 0
    reports = [subprocess.Popen([sys.executable, "-m", "delbench", "report", str(work)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for report in reports:
        assert report.wait(timeout=300) == 0, report.stderr.read()[-2000:]
    assert (work / "scores.png").stat().st_size > 0 and not _temporaries(work)


@pytest.fixture
def sleeper():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


def test_resume_removes_the_temporaries_killed_runs_left(tmp_path, sleeper):
    """Before: a '.json.*.tmp' left by a kill during a subset write stayed through every resume."""
    work = tmp_path / "run"
    assert main(["run", TINY, "--work-dir", str(work), *QUIET, "--cfg-options", RANDOM_ONLY]) == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    subsets = work / "subsets"
    planted = {
        "legacy mkstemp": subsets / ".random_ratio0.1_seed0_47b17d5b.json.k3j_2l1x.tmp",
        "legacy npy": subsets / ".random_ratio0.1_seed0_47b17d5b.npy.tmp.npy",
        "legacy png": work / ".scores.png.tmp.png",
        "legacy checkpoint": work / "cache" / "final.safetensors.tmp",
        "dead process": work / f".summary.json.{dead_pid}-0123abcd.tmp",
    }
    live = work / f".report.md.{sleeper}-89abcdef.tmp"  # a `delbench report` still writing
    for path in [*planted.values(), live]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    assert main(["run", TINY, "--work-dir", str(work), "--resume", *QUIET, "--cfg-options", RANDOM_ONLY]) == 0
    assert [name for name, path in planted.items() if path.exists()] == []
    assert live.exists()


def test_a_shared_cache_keeps_legacy_names_it_cannot_attribute(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    legacy = cache / ".x.npy.tmp.npy"
    legacy.write_bytes(b"")
    assert remove_orphan_temporaries(cache) == [] and legacy.exists()
    assert remove_orphan_temporaries(cache, legacy=True) == [legacy]


# --- stages that fail, return garbage or hang ---------------------------------------------------
class _Selector:
    version = "1"
    description = "misbehaves on purpose"
    deterministic_in_seed = True


class SleepySelector(_Selector):
    name = "sleepy"

    def select(self, pool, ratio, *, seed, embeddings=None, **params):
        try:
            time.sleep(60)
        except Exception:  # a plugin swallowing errors must not swallow the timeout
            pass
        return np.arange(1, dtype=np.int64)


class GarbageSelector(_Selector):
    name = "garbage"

    def select(self, pool, ratio, *, seed, embeddings=None, **params):
        return np.array([5, 5, 3], dtype=np.int64)  # unsorted, repeated, wrong size


class ExitingSelector(_Selector):
    name = "exiting"

    def select(self, pool, ratio, *, seed, embeddings=None, **params):
        sys.exit(3)


class Misbehaving:
    @hookimpl
    def delbench_register_selectors(self):
        return [SleepySelector, GarbageSelector, ExitingSelector]


def test_a_selector_that_hangs_returns_garbage_or_exits_fails_its_cell_and_the_sweep_goes_on(
        tmp_path, register_plugin):
    register_plugin(Misbehaving(), "misbehaving")
    work = tmp_path / "run"
    selectors = "selectors=[" + ",".join(f"{{'name':'{n}','ratios':[0.1]}}" for n in ("sleepy", "garbage", "exiting", "random"))
    started = time.monotonic()
    code = main(["run", TINY, "--work-dir", str(work), *QUIET, "--cfg-options", selectors + "]",
                 "timeouts={'select': 1}"])
    assert code == 1 and time.monotonic() - started < 50  # the sleeper was stopped, not waited for
    rows = {r.selector: r for r in read_rows(work)}
    assert rows["random"].ok
    assert (rows["sleepy"].status, rows["sleepy"].stage) == ("failed", "select")
    assert rows["sleepy"].error == "StageTimeout: the select stage ran past its 1 s timeout (timeouts.select)"
    assert rows["garbage"].stage == "select" and "indices must be sorted and unique" in rows["garbage"].error
    assert rows["exiting"].stage == "select" and rows["exiting"].error == "SystemExit: 3"
    report = (work / "report.md").read_text()
    assert "## Failed cells" in report and "`sleepy|ratio=0.1|seed=0|synthetic_polyp_seg/segmentation` (select)" in report


def test_a_task_past_its_timeout_or_with_a_non_finite_metric_fails_its_cell(tmp_path, monkeypatch):
    from delbench_plugins.tasks import segmentation

    calls = []
    task_cls = segmentation.Segmentation
    original = task_cls.evaluate

    def evaluate(self, backbone, test):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(60)
        metrics = original(self, backbone, test)
        return {**metrics, "mIoU": float("nan")}

    monkeypatch.setattr(task_cls, "evaluate", evaluate)
    work = tmp_path / "run"
    code = main(["run", TINY, "--work-dir", str(work), *QUIET, "--cfg-options",
                 "selectors=[{'name':'random','ratios':[0.1],'seeds':[0,1]}]", "timeouts={'evaluate': 6}"])
    assert code == 1
    first, second = read_rows(work)
    assert first.stage == "evaluate" and "timeouts.evaluate" in first.error
    assert second.stage == "evaluate" and second.error == "DelbenchError: task 'segmentation' returned mIoU = nan, not a finite number"


def test_a_pretraining_past_its_timeout_fails_and_resumes_from_its_state(tmp_path, monkeypatch):
    from delbench_plugins.backbones import timm_mae

    original = timm_mae.TimmMAE.pretrain

    @functools.wraps(original)
    def slow(self, *args, on_step=None, **kwargs):
        def step(n, loss):
            on_step(n, loss)
            if n >= 2:  # stalls in step 2 (before its state is saved), however loaded the machine
                time.sleep(60)
        return original(self, *args, on_step=step, **kwargs)

    monkeypatch.setattr(timm_mae.TimmMAE, "pretrain", slow)
    work = tmp_path / "run"
    options = [RANDOM_ONLY, "pretrain.checkpoint_every=1"]
    assert main(["run", TINY, "--work-dir", str(work), *QUIET, "--cfg-options", *options,
                 "timeouts={'pretrain': 5.0}"]) == 1
    (row,) = read_rows(work)
    assert row.stage == "pretrain" and "timeouts.pretrain" in row.error
    (state,) = work.glob("cache/checkpoints/*/resume/state.json")
    reached = json.loads(state.read_text())["step"]
    assert reached == 1  # the state after step 1; step 2 never finished
    monkeypatch.setattr(timm_mae.TimmMAE, "pretrain", original)
    # timeouts are not part of config_sha256: raising one resumes the same run
    assert main(["run", TINY, "--work-dir", str(work), "--resume", *QUIET, "--cfg-options", *options,
                 "timeouts={'pretrain': 600}"]) == 0
    (row,) = read_rows(work)
    assert row.ok
    info = json.loads(next(work.glob("cache/checkpoints/*/pretrain.json")).read_text())
    assert info["resumed_from_step"] == reached


@pytest.mark.parametrize("option, message", [
    ("timeouts={'selct': 1}", "timeouts: unknown key 'selct' (did you mean 'select'?); valid: evaluate, pretrain, select"),
    ("timeouts={'pretrain': -1}", "timeouts.pretrain must be a number in (0.0, inf] or None, got -1"),
    ("timeouts=5", "timeouts must be a dict, got 5"),
    ("pretrain.checkpoint_every=-2", "pretrain.checkpoint_every must be an integer ≥ 0, got -2"),
])
def test_timeout_and_checkpoint_settings_are_checked_when_the_protocol_loads(option, message, tmp_path, capsys):
    assert main(["run", TINY, "--work-dir", str(tmp_path / "w"), *QUIET, "--cfg-options", option]) == 1
    assert _one_line_error(capsys) == f"delbench: error: {message}"
    assert not (tmp_path / "w").exists()


# --- messages that misled or named nothing ------------------------------------------------------
SELECT = ["select", "--dataset", "synthetic_endoscopy", "--dataset-param", "num_frames=40", "image_size=16",
          "--ratio", "0.5"]


def _embedding_files(folder: Path) -> dict[str, Path]:
    files = {name: folder / f"{name}.npy" for name in ("text", "empty", "truncated", "objects", "nan", "archive")}
    files["text"].write_text("0.1 0.2\n0.3 0.4\n")
    files["empty"].write_bytes(b"")
    good = folder / "good.npy"
    np.save(good, np.ones((40, 8), np.float32))
    files["truncated"].write_bytes(good.read_bytes()[:300])
    np.save(files["objects"], np.array([{"a": 1}] * 40, dtype=object), allow_pickle=True)
    nan = np.ones((40, 8), np.float32)
    nan[7, 1] = np.nan
    np.save(files["nan"], nan)
    np.savez(folder / "archive.npz", a=nan)
    files["archive"] = folder / "archive.npz"
    return files


@pytest.mark.parametrize("kind, message", [
    ("text", "is not a .npy file (no numpy header); write one n × d float array with numpy.save"),
    ("empty", "is empty; write the n × d array with numpy.save"),
    ("truncated", "is truncated: its header promises a float32 array of shape (40, 8) (1408 bytes) but the file "
                  "has 300 bytes"),
    ("objects", "holds Python objects, not numbers; write a float array"),
    ("nan", ": embeddings contain NaN or inf (first at row 7)"),
    ("archive", "is a .npz archive; write one n × d float array with numpy.save"),
])
def test_a_bad_embeddings_file_is_one_line_naming_it(kind, message, tmp_path, capsys):
    """Before: numpy's 'contains pickled (object) data … allow_pickle=' advice for a text
    file, 'EOFError: No data left in file' for an empty one."""
    path = _embedding_files(tmp_path)[kind]
    assert main([*SELECT, "--selector", "meddel", "--embeddings", str(path), "--out", str(tmp_path / "m.npy")]) == 1
    line = _one_line_error(capsys)
    assert line.startswith(f"delbench: error: embeddings file {path}") and line.endswith(message)
    assert "pickle" not in line and not (tmp_path / "m.npy").exists()


def test_embeddings_given_to_a_selector_that_ignores_them_are_refused(tmp_path, capsys):
    """Before: `select --selector random --embeddings nan.npy` exited 0, the file ignored."""
    path = _embedding_files(tmp_path)["nan"]
    assert main([*SELECT, "--selector", "random", "--embeddings", str(path), "--out", str(tmp_path / "r.npy")]) == 1
    assert _one_line_error(capsys) == (f"delbench: error: selector 'random' does not use embeddings; drop "
                                       f"--embeddings {path}")


def test_a_config_that_exits_is_an_error_naming_it(tmp_path, capsys):
    """Before: exit status 3 and not a word."""
    config = tmp_path / "exits.py"
    config.write_text(f"_base_ = [{TINY!r}]\nraise SystemExit(3)\n")
    assert main(["run", str(config), "--work-dir", str(tmp_path / "w"), *QUIET]) == 1
    assert _one_line_error(capsys) == (f"delbench: error: config {config} called SystemExit(3) while it was read; "
                                       f"a config must only assign values")


def test_bad_seeds_in_a_protocol_built_in_code_name_the_key(tmp_path):
    """Before: a protocol changed in code (dataclasses.replace) reached the selectors with
    seeds=('a',) and failed inside them without naming the key."""
    import dataclasses

    from delbench.errors import ConfigError
    from delbench.protocol import load_protocol
    from delbench.run import run_protocol

    protocol, _ = load_protocol(TINY)
    with pytest.raises(ConfigError, match=r"^seeds must be integers ≥ 0, got 'a' in \['a'\]$"):
        run_protocol(dataclasses.replace(protocol, seeds=("a",)), tmp_path / "w", progress=False)
    assert not (tmp_path / "w").exists()


def test_seeds_a_in_a_config_names_the_key(tmp_path, capsys):
    assert main(["run", TINY, "--work-dir", str(tmp_path / "w"), *QUIET, "--cfg-options", "seeds=['a']"]) == 1
    assert _one_line_error(capsys) == "delbench: error: seeds must be integers ≥ 0, got 'a' in ['a']"


def test_a_checkpoint_that_fails_the_safe_load_is_one_line_without_unsafe_advice(tmp_path, capsys):
    """Before: torch's multi-line advice to retry with weights_only=False."""
    import collections

    import torch

    checkpoint = tmp_path / "pickled.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "meta": collections.OrderedDict(a=Path("x"))}, checkpoint)
    work = tmp_path / "w"
    assert main(["run", TINY, "--work-dir", str(work), *QUIET, "--cfg-options", RANDOM_ONLY,
                 f"references=[{{'label':'bad','checkpoint':'{checkpoint}'}}]"]) == 1
    (reference,) = [r for r in read_rows(work) if r.kind == "reference"]
    assert reference.stage == "evaluate" and reference.error == (
        f"DelbenchError: checkpoint {checkpoint} holds Python objects besides tensors (pathlib.PosixPath); "
        f"delbench loads tensors only: save the state dict with safetensors or torch.save(model.state_dict())")
    assert "weights_only=False" not in (work / "report.md").read_text()


def test_a_truncated_checkpoint_is_one_line_naming_it(tmp_path):
    from delbench.errors import DelbenchError
    from delbench_plugins.backbones.timm_mae import read_state_dict

    for name in ("cut.pth", "cut.safetensors"):
        path = tmp_path / name
        path.write_bytes(b"PK\x03\x04 not a whole file")
        with pytest.raises(DelbenchError) as raised:
            read_state_dict(path)
        assert str(raised.value).startswith(f"cannot read checkpoint {path}: ") and "\n" not in str(raised.value)


def test_any_multi_line_error_is_printed_on_one_line(capsys, monkeypatch):
    import delbench.cli.ls

    def explode(args):
        raise ValueError("first line\n  second line\n\nthird")

    monkeypatch.setattr(delbench.cli.ls, "run", explode)
    assert main(["list", "selectors"]) == 1
    assert _one_line_error(capsys) == "delbench: error (ValueError): first line second line third"


# --- masks a run would have used -------------------------------------------------------------
def test_skip_unreadable_skips_a_mask_that_data_check_flags(tmp_path):
    """Before: a mask with values {0, 128, 255} was flagged by data check but trained on."""
    from PIL import Image

    from delbench import discovery

    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for i in range(4):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(tmp_path / "images" / f"{i}.png")
        mask = np.zeros((16, 16), np.uint8)
        mask[4:12, 4:12] = 255
        if i == 2:
            mask[:4] = 128
        Image.fromarray(mask).save(tmp_path / "masks" / f"{i}.png")
    dataset = discovery.create("dataset", "image_folder", {"root": str(tmp_path), "images": "images", "masks": "masks",
                                                         "skip_unreadable": True}, where="test", split="all")
    assert dataset.item_ids() == ["images/0.png", "images/1.png", "images/3.png"]
    assert dataset.skipped == [(str(tmp_path / "masks" / "2.png"), "mask values {0, 128, 255} are not binary "
                                                                   "(expected 0/255, or 0/1 with mask_threshold=1)")]
