"""Submissions: verify catches every tampering of a finished run, archives open safely, the
leaderboard ranks verified submissions, compare catches regressions (tiny protocol runs)."""
import gzip
import hashlib
import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from delbench.cli import main
from delbench.errors import SubmissionError
from delbench.submissions import MANIFEST_FILE, compare, extract_submission, open_submission, verify, write_submission

TINY = str(Path(__file__).parent / "configs" / "tiny.py")


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run


@pytest.fixture
def copy(run, tmp_path):
    """A copy of the finished run to tamper with (its pre-training cache left behind)."""
    target = tmp_path / "copy"
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("cache"))
    return target


def _rows(directory):
    return [json.loads(line) for line in (directory / "results.jsonl").read_text().splitlines()]


def _write_rows(directory, rows):
    (directory / "results.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def _verify(target, capsys, *extra):
    capsys.readouterr()
    code = main(["verify", str(target), "--protocol", TINY, *extra])
    return code, capsys.readouterr().out


def test_a_finished_run_and_its_submission_verify(run, tmp_path, capsys):
    code, out = _verify(run, capsys)
    assert code == 0 and out.startswith("ok: every hash matches; 3 rows are the planned cells of protocol tiny v1")
    archive = tmp_path / "sub.tar.gz"
    assert main(["submit", str(run), "--out", str(archive), "--protocol", TINY]) == 0
    code, out = _verify(archive, capsys)
    assert code == 0, out
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"MANIFEST.json", "config.json", "run.json", "environment.json", "results.jsonl", "pool_ids.txt",
            "subsets/subsets.json"} <= names
    assert sum(n.endswith(".npy") for n in names) == sum(n.endswith(".ids.txt") for n in names) == 3
    with open_submission(archive) as folder:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        assert manifest["protocol"] == "tiny" and manifest["protocol_version"] == "1"
        for name, entry in manifest["files"].items():  # the manifest holds the sha256 of every other file
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"]
        environment = json.loads((folder / "environment.json").read_text())
        assert {"python", "torch", "timm", "delbench", "plugins", "cpu", "gpus"} <= set(environment)
        assert environment["plugins"]["selector"]["meddel"] == "2"
        config = json.loads((folder / "config.json").read_text())
        assert config == json.loads((run / "run.json").read_text())["protocol_config"]
        ids = (folder / "pool_ids.txt").read_text().splitlines()
        subset = next((folder / "subsets").glob("random*.npy"))
        chosen = (folder / "subsets" / subset.name.replace(".npy", ".ids.txt")).read_text().splitlines()
        assert chosen == sorted(ids[i] for i in np.load(subset))
    again = tmp_path / "again.tar.gz"
    write_submission(run, again)
    assert again.read_bytes() == archive.read_bytes()  # reproducible archive


def test_the_four_tamperings_of_the_issue_each_fail(copy, capsys):
    rows = _rows(copy)
    # 1. a row's mIoU and NormDEL set to 0.99
    tampered = json.loads(json.dumps(rows))
    tampered[1]["metrics"]["mIoU"], tampered[1]["normdel"] = 0.99, 0.99
    _write_rows(copy, tampered)
    code, out = _verify(copy, capsys)
    assert code == 1 and f"FAIL row {rows[1]['key']}: normdel 0.99 != 0.71008" in out
    assert "recomputed from mIoU 0.99, ratio 0.1 and α 1" in out
    # 2. a row's subset_sha256 and n_selected (and ids_sha256) swapped for another subset's
    tampered = json.loads(json.dumps(rows))
    a = next(r for r in tampered if r["selector"] == "random")
    b = next(r for r in tampered if r["selector"] == "meddel")
    for key in ("subset_sha256", "n_selected", "ids_sha256"):
        a[key], b[key] = b[key], a[key]
    _write_rows(copy, tampered)
    code, out = _verify(copy, capsys)
    assert code == 1
    assert f"FAIL row {a['key']}: subset_sha256 {a['subset_sha256']} is not this cell's selection: " \
           f"subsets/random_ratio0.1_seed0_" in out
    # 3. a row deleted
    _write_rows(copy, rows[:1] + rows[2:])
    code, out = _verify(copy, capsys)
    assert code == 1 and f"FAIL row {rows[1]['key']}: missing (a planned cell of protocol tiny v1 has no row)" in out
    # ... or a row duplicated, or one that is no planned cell
    extra = dict(rows[1], key=rows[1]["key"].replace("seed=0", "seed=7"), seed=7)
    _write_rows(copy, rows + [rows[1], extra])
    code, out = _verify(copy, capsys)
    assert f"FAIL row {rows[1]['key']}: recorded 2 times (duplicated)" in out
    assert f"FAIL row {extra['key']}: not a planned cell of protocol tiny v1 (extra)" in out
    _write_rows(copy, rows)
    assert _verify(copy, capsys)[0] == 0
    # 4. a subset file rewritten as float64 (+0.4): the same int64 hash, but not a subset file
    subset = next((copy / "subsets").glob("random*.npy"))
    np.save(subset, np.load(subset).astype(np.float64) + 0.4)
    code, out = _verify(copy, capsys)
    assert code == 1 and f"FAIL subsets/{subset.name}: dtype float64, shape (12,)" in out


def test_unsorted_subset_file_fails(copy, capsys):
    subset = next((copy / "subsets").glob("random*.npy"))
    np.save(subset, np.load(subset)[::-1].copy())
    code, out = _verify(copy, capsys)
    assert code == 1 and f"FAIL subsets/{subset.name}: indices are not sorted and unique" in out


def test_an_altered_protocol_key_fails(copy, capsys):
    from delbench.protocol import protocol_sha256

    header = json.loads((copy / "run.json").read_text())
    header["protocol_config"]["pretrain"]["reference_epochs"] = 4.0
    header["config_sha256"] = protocol_sha256(header["protocol_config"])  # consistent with itself
    (copy / "run.json").write_text(json.dumps(header))  # the rows are unchanged: only the setting moved
    code, out = _verify(copy, capsys)
    assert code == 1
    assert "FAIL setting pretrain.reference_epochs: 4.0 in the run, 0.4 in protocol tiny v1" in out
    # a changed NormDEL α is a setting too, and every NormDEL then disagrees with its recomputation
    header["protocol_config"]["pretrain"]["reference_epochs"] = 0.4
    header["protocol_config"]["alpha"] = 0.5
    header["config_sha256"] = protocol_sha256(header["protocol_config"])
    (copy / "run.json").write_text(json.dumps(header))
    code, out = _verify(copy, capsys)
    assert "FAIL setting alpha: 0.5 in the run, 1.0 in protocol tiny v1" in out
    assert "recomputed from mIoU" in out and "and α 0.5" in out


def test_a_selector_run_at_other_seeds_than_the_protocol_fails(run, tmp_path, capsys):
    from delbench.protocol import load_protocol
    from delbench.submissions import check_settings

    reference, _ = load_protocol(TINY)
    more_seeds, _ = load_protocol(TINY, {"selectors": [{"name": "random", "ratios": [0.1], "seeds": [0, 1]},
                                                       {"name": "oracle"}]})
    assert check_settings(more_seeds, reference) == [
        "setting selectors[0] (random).seeds: [0, 1] in the run, [0] in its entry in protocol tiny v1"]
    only_small, _ = load_protocol(TINY, {"selectors": [{"name": "oracle", "ratios": [0.1]}]})
    assert check_settings(only_small, reference) == [
        "setting selectors[0] (oracle).ratios: [0.1] in the run, [0.1, 1.0] in the ratios of protocol tiny v1"]


def test_a_tampered_submission_fails_even_with_a_recomputed_manifest(run, tmp_path, capsys):
    archive = write_submission(run, tmp_path / "sub.tar.gz")
    folder = extract_submission(archive, tmp_path / "extracted")
    rows = _rows(folder)
    rows[0]["metrics"]["mIoU"] = 0.99
    _write_rows(folder, rows)
    code, out = _verify(folder, capsys)
    assert "FAIL results.jsonl: sha256" in out and "MANIFEST.json" in out  # the manifest's hash is off
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["files"]["results.jsonl"]["sha256"] = hashlib.sha256((folder / "results.jsonl").read_bytes()).hexdigest()
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    code, out = _verify(folder, capsys)
    assert code == 1 and "results.jsonl: sha256" not in out and f"FAIL row {rows[0]['key']}: normdel" in out
    (folder / "pool_ids.txt").write_text("x\n" * 120)
    code, out = _verify(folder, capsys)
    assert "FAIL pool_ids.txt: sha256" in out and ".ids.txt: not the ids its indices name in pool_ids.txt" in out


def test_a_submission_needs_its_protocol_to_verify(run, tmp_path, capsys):
    archive = write_submission(run, tmp_path / "sub.tar.gz")
    result = verify(archive, check_pool=False)  # no benchmarks/tiny.py: its settings cannot be checked
    assert result.problems == ["protocol 'tiny': no protocol file benchmarks/tiny.py to compare its settings with; "
                               "pass --protocol FILE"]
    assert verify(run, check_pool=False).ok  # a run directory of one's own: a note only
    assert verify(run, check_pool=False).notes


def test_rerun_of_a_sampled_cell_matches_within_tolerance(run, capsys):
    code, out = _verify(run, capsys, "--rerun", "1", "--tolerance", "0")
    assert code == 0 and "1 re-run cell(s) within ±0" in out


def _archive(path, members):
    """A gzip tarball of (TarInfo, bytes or None) members."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


@pytest.mark.parametrize("member, reason", [
    (_file("../escaped.txt"), "leads out of its folder ('..')"),
    (_file("subsets/../../escaped.txt"), "leads out of its folder ('..')"),
    (_file("/tmp/delbench-absolute.txt"), "has an absolute path"),
    (_special("run.json", tarfile.SYMTYPE, "/etc/passwd"), "is a symbolic link"),
    (_special("hard", tarfile.LNKTYPE, "MANIFEST.json"), "is a hard link"),
    (_special("fifo", tarfile.FIFOTYPE), "is not a regular file"),
])
def test_archives_that_would_write_outside_are_refused(tmp_path, member, reason, capsys):
    archive = _archive(tmp_path / "evil.tar.gz", [_file("MANIFEST.json", b"{}"), member])
    target = tmp_path / "deep" / "target"
    with pytest.raises(SubmissionError, match=f"refused: member .* {re.escape(reason)}; nothing was extracted"):
        extract_submission(archive, target)
    assert not target.exists() and not (tmp_path / "deep" / "escaped.txt").exists()
    assert not Path("/tmp/delbench-absolute.txt").exists()
    capsys.readouterr()
    assert main(["verify", str(archive)]) == 1  # one line, no traceback
    err = capsys.readouterr().err
    assert "refused" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_duplicated_member_and_garbage_are_refused(tmp_path):
    archive = _archive(tmp_path / "twice.tar.gz", [_file("run.json", b"{}"), _file("run.json", b"[]")])
    with pytest.raises(SubmissionError, match="appears twice"):
        extract_submission(archive, tmp_path / "t")
    (tmp_path / "garbage.tar.gz").write_bytes(gzip.compress(b"not a tar"))
    with pytest.raises(SubmissionError, match="not a readable tar archive|damaged archive"):
        extract_submission(tmp_path / "garbage.tar.gz", tmp_path / "g")


def _manifested(path, files, *, declared=None):
    """A gzip tarball of ``files`` (name -> bytes) with a MANIFEST.json listing them;
    ``declared`` overrides the sizes the manifest records."""
    listed = {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in files.items()}
    for name, size in (declared or {}).items():
        listed[name]["bytes"] = size
    manifest = json.dumps({"format": "delbench-submission/1", "files": listed}).encode()
    return _archive(path, [_file(MANIFEST_FILE, manifest), *(_file(n, d) for n, d in files.items())])


def test_a_member_whose_size_is_not_the_manifests_is_refused_before_writing(tmp_path):
    archive = _manifested(tmp_path / "liar.tar.gz", {"run.json": b"{}", "results.jsonl": b"\n" * 50},
                          declared={"results.jsonl": 10})
    target = tmp_path / "t"
    with pytest.raises(SubmissionError, match=r"refused: member 'results.jsonl' declares 50 bytes, MANIFEST.json "
                                              r"records 10; nothing was extracted"):
        extract_submission(archive, target)
    assert not target.exists()
    unlisted = _archive(tmp_path / "extra.tar.gz", [_file(MANIFEST_FILE, b'{"files": {}}'), _file("run.json", b"{}")])
    with pytest.raises(SubmissionError, match="member 'run.json' is not listed in MANIFEST.json"):
        extract_submission(unlisted, target)
    bare = _archive(tmp_path / "bare.tar.gz", [_file("run.json", b"{}")])
    with pytest.raises(SubmissionError, match="refused: no MANIFEST.json"):
        extract_submission(bare, target)
    assert not target.exists()


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, read without holding them."""

    def __init__(self, size):
        self.left = size

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def _zero_bomb(path, size):
    """An archive whose one data member is ``size`` zero bytes, recorded faithfully in the
    manifest (streamed: the bytes are never held in memory)."""
    listed = {"zeros.bin": {"sha256": "0" * 64, "bytes": size}}
    manifest = json.dumps({"format": "delbench-submission/1", "files": listed}).encode()
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        tar.addfile(_file(MANIFEST_FILE, manifest)[0], io.BytesIO(manifest))
        info = tarfile.TarInfo("zeros.bin")
        info.size = size
        tar.addfile(info, io.BufferedReader(_Zeros(size)))
    return path


def test_a_large_declared_member_is_refused_over_the_total_cap(tmp_path, monkeypatch):
    import delbench.submissions.extract as extract

    archive = _zero_bomb(tmp_path / "bomb.tar.gz", 4 << 20)
    monkeypatch.setattr(extract, "RATIO_ALLOWANCE", 1 << 30)  # the ratio cap out of the way
    target = tmp_path / "t"
    with pytest.raises(SubmissionError, match=r"refused: member 'zeros.bin' \(4194304 bytes\) takes the archive to "
                                              r"\d+ bytes, over the cap of 1048576 bytes; nothing was extracted"):
        extract_submission(archive, target, max_bytes=1 << 20)
    assert not target.exists()
    assert extract_submission(archive, target, max_bytes=8 << 20) == target  # under the cap: extracted
    assert (target / "zeros.bin").stat().st_size == 4 << 20


def test_a_compression_bomb_is_refused_by_the_ratio_cap(run, tmp_path, monkeypatch, capsys):
    import delbench.submissions.extract as extract

    archive = _zero_bomb(tmp_path / "bomb.tar.gz", 16 << 20)  # gzips about 1000 fold
    assert archive.stat().st_size < 100 << 10
    monkeypatch.setattr(extract, "RATIO_ALLOWANCE", 1 << 20)
    with pytest.raises(SubmissionError, match=r"member 'zeros.bin' .* over 100 × the archive's \d+ bytes"):
        extract_submission(archive, tmp_path / "t")
    assert not (tmp_path / "t").exists()
    for command in (["verify", str(archive)], ["compare", str(run), str(archive)],
                    ["leaderboard", str(archive), "--out", str(tmp_path / "board")]):
        capsys.readouterr()
        code = main(command)
        captured = capsys.readouterr()
        text = captured.err + captured.out
        assert "over 100 × the archive's" in text, (command, code, text)
        assert code != 0  # a leaderboard of no verified submission too (issue 26 item 5)
    assert not (tmp_path / "board").exists()


def test_a_member_longer_than_declared_is_stopped(tmp_path):
    """tarfile reads a member no further than its header's size; the copy still counts."""
    from delbench.submissions.extract import _copy_member

    info = tarfile.TarInfo("a.bin")
    info.size = 4
    with pytest.raises(SubmissionError, match="member 'a.bin' holds more than the 4 bytes it declares"):
        _copy_member(io.BytesIO(b"x" * 10), tmp_path / "a.bin", info, tmp_path / "s.tar.gz")
    assert not (tmp_path / "a.bin").exists()


def test_a_real_submission_is_well_within_the_caps(run, tmp_path):
    from delbench.submissions.extract import MAX_COMPRESSION_RATIO

    archive = write_submission(run, tmp_path / "sub.tar.gz")
    with tarfile.open(archive) as tar:
        total = sum(m.size for m in tar.getmembers())
    assert total < MAX_COMPRESSION_RATIO * archive.stat().st_size
    assert extract_submission(archive, tmp_path / "x", max_bytes=total, max_ratio=0).is_dir()


def test_loading_reads_data_only(run, tmp_path, capsys):
    """A pickled subset file is reported, never unpickled; the config is JSON."""
    archive = write_submission(run, tmp_path / "sub.tar.gz")
    folder = extract_submission(archive, tmp_path / "x")
    subset = next((folder / "subsets").glob("random*.npy"))
    np.save(subset, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, out = _verify(folder, capsys)
    assert code == 1 and f"FAIL subsets/{subset.name}: not a readable numeric .npy" in out


def test_leaderboard_from_two_runs(run, tmp_path, capsys):
    other = tmp_path / "oracle_run"
    assert main(["run", TINY, "--work-dir", str(other), "--no-progress", "--quiet", "--cfg-options",
                 "selectors=[{'name':'oracle'}]"]) == 0
    first, second = write_submission(run, tmp_path / "a.tar.gz"), write_submission(other, tmp_path / "b.tar.gz")
    bad = tmp_path / "bad"
    shutil.copytree(run, bad, ignore=shutil.ignore_patterns("cache"))
    rows = _rows(bad)
    _write_rows(bad, rows[1:])
    broken = write_submission(bad, tmp_path / "c.tar.gz")
    evil = _archive(tmp_path / "evil.tar.gz", [_file("../escaped.txt")])
    out = tmp_path / "board"
    capsys.readouterr()
    assert main(["leaderboard", str(first), str(second), str(broken), str(evil), "--out", str(out),
                 "--protocol", TINY]) == 0
    board = json.loads((out / "leaderboard.json").read_text())
    ranked = [(e["submission"], e["selector"]) for e in board["entries"]]
    assert sorted(ranked) == [("a.tar.gz", "full"), ("a.tar.gz", "meddel"), ("a.tar.gz", "random"),
                              ("b.tar.gz", "oracle")]
    normdels = [e["normdel_mean"] for e in board["entries"]]
    assert normdels == sorted(normdels, reverse=True) and [e["rank"] for e in board["entries"]] == [1, 2, 3, 4]
    assert board["statistics"] == {"normdel_alpha": 1.0, "significance": 0.05, "confidence": 0.95}
    apart, refused = board["unverified"]
    assert apart["submission"].endswith("c.tar.gz") and "missing" in apart["reason"]
    assert refused["submission"].endswith("evil.tar.gz") and "leads out of its folder" in refused["reason"]
    assert not (tmp_path / "escaped.txt").exists()
    markdown = (out / "leaderboard.md").read_text()
    assert "# delbench leaderboard: tiny (protocol v1)" in markdown and "## Not verified (not ranked)" in markdown
    assert "NormDEL α = 1.0" in markdown and "significance level 0.05" in markdown
    page = (out / "leaderboard.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<table>") == 2 and "b.tar.gz" in page


def test_compare_catches_a_changed_subset_and_a_metric_outside_tolerance(run, tmp_path, capsys):
    baseline = json.loads((run / "summary.json").read_text())
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    capsys.readouterr()
    assert main(["compare", str(run), str(path)]) == 0
    assert "ok: 3 cell(s) match the baseline" in capsys.readouterr().out
    key = baseline["rows"][1]["key"]
    changed = json.loads(json.dumps(baseline))
    changed["rows"][1]["subset_sha256"] = "0" * 64
    changed["rows"][1]["metrics"]["mIoU"] += 0.02
    path.write_text(json.dumps(changed))
    assert main(["compare", str(run), str(path), "--tolerance", "0.01"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL row {key}: subset_sha256 " in out and "!= the baseline's 000000" in out
    assert f"FAIL row {key}: mIoU " in out and "(tolerance ±0.01)" in out and "|Δ| 0.02" in out
    changed["rows"][1]["subset_sha256"] = baseline["rows"][1]["subset_sha256"]
    path.write_text(json.dumps(changed))
    assert main(["compare", str(run), str(path), "--tolerance", "0.05"]) == 0  # within a looser tolerance
    # a submission is a baseline too; a cell missing from the run is a regression
    archive = write_submission(run, tmp_path / "sub.tar.gz")
    assert compare(run, archive).differences == []
    partial = tmp_path / "partial"
    shutil.copytree(run, partial, ignore=shutil.ignore_patterns("cache"))
    _write_rows(partial, _rows(partial)[1:])
    assert compare(partial, archive).differences == [f"row {_rows(run)[0]['key']}: in the baseline, missing from the run"]


def test_only_a_rerun_catches_a_consistently_forged_metric(copy, capsys):
    """A metric raised together with the NormDEL it implies passes every recomputation; re-running
    the cell here shows the forgery (on one CPU the cell reruns bitwise)."""
    from delbench.sdk.metrics import normdel

    rows = _rows(copy)
    forged = next(r for r in rows if r["selector"] == "random")
    recorded = forged["metrics"]["mIoU"]
    forged["metrics"]["mIoU"], forged["normdel"] = 0.99, normdel(0.99, forged["ratio"], 1.0)
    _write_rows(copy, rows)
    assert _verify(copy, capsys)[0] == 0
    code, out = _verify(copy, capsys, "--rerun", "3", "--tolerance", "0.001")
    assert code == 1
    assert f"FAIL re-run of {forged['key']}: mIoU {recorded!r} != recorded 0.99 (tolerance ±0.001)" in out
    assert out.count("FAIL re-run") == 1  # the two other cells rerun to their recorded metrics


def test_cells_that_select_the_same_subset_verify(tmp_path):
    """oracle is deterministic in its seed: its seeds share one subset, recorded once per cell."""
    work = tmp_path / "run"
    assert main(["run", TINY, "--work-dir", str(work), "--no-progress", "--quiet", "--cfg-options",
                 "selectors=[{'name':'oracle','ratios':[0.1],'seeds':[0,1]}]"]) == 0
    rows = _rows(work)
    assert rows[0]["subset_sha256"] == rows[1]["subset_sha256"]
    result = verify(work, check_pool=False)
    assert result.ok, result.problems
