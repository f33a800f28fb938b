"""``torchslim experiment ...`` end to end through the real entry point."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from torchslim.cli.main import main

ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture
def config(tmp_path, code_dir):
    (tmp_path / "space.json").write_text(json.dumps({
        "x": {"_type": "uniform", "_value": [0, 1]},
        "sleep": {"_type": "choice", "_value": [0.05]},
    }))
    path = tmp_path / "config.yml"
    path.write_text(textwrap.dedent(f"""
        experimentName: cli
        searchSpaceFile: space.json
        trialCommand: {sys.executable} trial.py
        trialCodeDirectory: {code_dir.name}
        trialConcurrency: 2
        maxTrialNumber: 4
        tuner:
          name: Random
    """))
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "torchslim.cli.main", "experiment", *args],
                          capture_output=True, text=True, env=env, timeout=60)


def _id(text: str) -> str:
    return text.split("experiment ", 1)[1].split()[0].rstrip(":")


def test_create_foreground_list_status_export(exp_dir, config, tmp_path, capsys):
    assert main(["experiment", "create", "--config", str(config), "--foreground",
                 "--progress", "plain"]) == 0
    out = capsys.readouterr().out
    assert "trial_0003 SUCCEEDED" in out and "DONE; best trial_" in out
    exp_id = out.strip().splitlines()[-1].split()[1].rstrip(":")

    assert main(["experiment", "list"]) == 0
    listing = capsys.readouterr().out
    assert exp_id in listing and "DONE" in listing and "4/4" in listing

    assert main(["experiment", "status", exp_id, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["status"] == "DONE" and len(status["trials"]) == 4
    assert status["best"]["value"] == max(t["value"] for t in status["trials"])

    out_csv = tmp_path / "trials.csv"
    assert main(["experiment", "export", exp_id, "--format", "csv", "--output", str(out_csv)]) == 0
    lines = out_csv.read_text().splitlines()
    assert lines[0].startswith("trialJobId,sequence,status,value") and "x" in lines[0].split(",")
    assert len(lines) == 5
    capsys.readouterr()
    assert main(["experiment", "export", exp_id, "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert {r["trialJobId"] for r in records} == {f"trial_{i:04d}" for i in range(4)}
    assert all(set(r["parameter"]) == {"x", "sleep"} for r in records)


def test_background_create_then_stop_then_resume(exp_dir, config, wait_for):
    text = config.read_text().replace("maxTrialNumber: 4", "maxTrialNumber: 60")
    config.write_text(text.replace("[0.05]", "[0.3]"))
    created = cli("create", "--config", str(config))
    assert created.returncode == 0, created.stderr
    exp_id = _id(created.stdout)
    wait_for(lambda: any(t["status"] == "SUCCEEDED" for t in json.loads(cli("status", exp_id, "--json").stdout)["trials"]),
             "a finished trial", timeout=120)  # stop once one has finished, however loaded the machine
    stopped = cli("stop", exp_id)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stdout
    status = json.loads(cli("status", exp_id, "--json").stdout)
    assert status["status"] == "STOPPED"
    finished = [t for t in status["trials"] if t["status"] == "SUCCEEDED"]
    assert finished and all(t["status"] in ("SUCCEEDED", "WAITING") for t in status["trials"])
    # resume in the foreground with a smaller remaining budget is not possible: same budget
    config_less = cli("resume", exp_id, "--foreground", "--progress", "plain")
    assert config_less.returncode == 0, config_less.stderr
    status = json.loads(cli("status", exp_id, "--json").stdout)
    assert status["status"] == "DONE" and len(status["trials"]) == 60
    assert all(t["status"] == "SUCCEEDED" for t in status["trials"])


def test_cli_errors_name_the_problem(exp_dir, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("searchSpace: {}\ntrialCommand: x\nmaxTrialNumbr: 3\n")
    out = cli("create", "--config", str(bad))
    assert out.returncode == 1
    assert "unknown key 'maxTrialNumbr'" in out.stderr and "allowed keys:" in out.stderr
    out = cli("status", "nosuchid")
    assert out.returncode == 1 and "no experiment with id 'nosuchid'" in out.stderr
    out = cli("export", "x", "--format", "xml")
    assert out.returncode == 2 and "invalid choice: 'xml'" in out.stderr
