"""The `tox -e regression` suite: its commands, run here as tox runs them, pass against the
baseline checked into the repo (so the baseline stays current with the code)."""
import configparser
import shlex
from pathlib import Path

import pytest

from delbench.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _regression_commands(envtmpdir: Path) -> list[list[str]]:
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    lines = [line.strip() for line in tox["testenv:regression"]["commands"].splitlines() if line.strip()]
    return [shlex.split(line.replace("{envtmpdir}", str(envtmpdir))) for line in lines]


@pytest.mark.slow
def test_tox_regression_env_passes_against_the_checked_in_baseline(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # tox runs its commands in the repository root
    commands = _regression_commands(tmp_path)
    assert [c[:2] for c in commands] == [["delbench", "run"], ["delbench", "compare"]]
    assert "benchmarks/regression.py" in commands[0] and "benchmarks/baselines/regression.json" in commands[1]
    for command in commands:
        assert main(command[1:]) == 0, capsys.readouterr().out
    assert "ok: 6 cell(s) match the baseline" in capsys.readouterr().out


def test_the_baseline_records_every_cells_subset_and_metrics():
    import json

    baseline = json.loads((ROOT / "benchmarks" / "baselines" / "regression.json").read_text())
    assert baseline["protocol"] == "regression" and len(baseline["rows"]) == 6
    assert all(row["subset_sha256"] for row in baseline["rows"])
