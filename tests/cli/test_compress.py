"""``torchslim compress`` end to end on the embedded MNIST (quick mode)."""
import json

from torchslim.cli.main import main


def test_compress_cli_quick(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["compress", "--model", "lenet5", "--params", "10%", "--quick", "--epochs", "1",
               "--finetune-epochs", "1", "--algorithm", "netadapt", "--short-term-images", "0", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["met"] and report["compressed"]["params"] <= 0.1 * report["dense"]["params"]
    assert "test_accuracy" in report
    printed = capsys.readouterr().out
    assert "test accuracy (touched once)" in printed and "| unit |" in printed


def test_compress_cli_needs_a_budget(capsys):
    import pytest

    with pytest.raises(SystemExit, match="give a budget"):
        main(["compress", "--model", "lenet5"])
