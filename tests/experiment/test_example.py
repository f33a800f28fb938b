"""The auto-compression example's config and search space stay valid."""
from __future__ import annotations

from pathlib import Path

from torchslim.experiment.config import load_config
from torchslim.experiment.searchspace import SearchSpace

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "auto_compress"


def test_auto_compress_config_loads():
    cfg = load_config(EXAMPLE / "config.yml")
    assert cfg.tuner == "TPE" and cfg.max_trial_number == 20 and cfg.trial_concurrency == 2
    assert cfg.trial_code_directory == str(EXAMPLE)
    assert (EXAMPLE / cfg.trial_command.split()[-1]).is_file()
    options = SearchSpace.parse(cfg.search_space).params[0].options
    assert [name for name, _ in options] == ["agp", "level", "l1"]


def test_auto_compress_multi_objective_config_loads():
    cfg = load_config(EXAMPLE / "config_multi.yml")
    assert cfg.tuner == "MOTPE"
    assert [o["name"] for o in cfg.objectives] == ["accuracy", "parameters", "latency_ms"]
    assert [o["direction"] for o in cfg.objectives] == ["maximize", "minimize", "minimize"]
    assert cfg.optimize_mode == "maximize"
