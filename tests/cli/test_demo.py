"""`torchslim demo`: the pipeline runs end to end and writes its table and plot."""
import json

from torchslim.cli.main import main


def test_quick_demo_writes_table_and_plot(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--quick", "--epochs", "1", "--finetune-epochs", "1", "--no-progress"]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())
    stages = [r["stage"] for r in rows]
    assert stages[0] == "dense" and stages[1].startswith("pruned")
    dense, pruned = rows[0], rows[1]
    assert pruned["nonzero_params"] < 0.6 * dense["nonzero_params"]
    assert dense["accuracy"] > 50  # learned something from 1,000 images in one epoch (chance: 10%)
    assert (tmp_path / "layer_sparsity.png").stat().st_size > 10_000
    assert "| stage |" in (tmp_path / "results.md").read_text()
    assert "torchslim demo" in capsys.readouterr().out


def test_cli_without_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out
