"""torchslim migrate: what it rewrites, what it keeps as written, and what it lists as untranslatable."""
from __future__ import annotations

import textwrap

import pytest

from torchslim.cli.main import main
from torchslim.migration import migrate_source

NNI_SCRIPT = textwrap.dedent('''\
    """An NNI v2 script."""
    import nni
    from nni.algorithms.compression.pytorch.pruning import LevelPruner, AGP_Pruner as AGP
    from nni.algorithms.compression.pytorch.quantization import QAT_Quantizer
    from nni.compression.utils import auto_set_denpendency_group_ids

    config_list = [{'sparsity': 0.5, 'op_types': ['default']},   # 50% everywhere
                   {"sparsity_per_layer": 0.2, "op_name": "fc1"}]
    quant = [{'quant_types': ['weight'], 'quant_bits': 8, 'op_types': ['Linear']}]
    optimizer = nni.trace(torch.optim.Adam)(model.parameters(), lr=1e-3)
    quantizer = QAT_Quantizer(model, quant)
    nni.report_final_result(0.9)
''')


def test_rewrites_imports_names_keys_and_trace():
    migration = migrate_source(NNI_SCRIPT, "train.py")
    assert migration.result == textwrap.dedent('''\
        """An NNI v2 script."""
        import torchslim
        from torchslim.pruning import LevelPruner, AGPPruner as AGP
        from torchslim.quantization import QATQuantizer
        from torchslim.pruning import auto_set_dependency_group_ids

        config_list = [{'sparse_ratio': 0.5, 'op_types': ['default']},   # 50% everywhere
                       {"sparse_ratio": 0.2, "op_names": ["fc1"]}]
        quant = [{'quant_types': ['weight'], 'quant_bits': 8, 'op_types': ['Linear']}]
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        quantizer = QATQuantizer(model, quant)
        torchslim.report_final_result(0.9)
    ''')
    assert not migration.untranslated
    diff = migration.diff()
    assert diff.startswith("--- a/train.py\n+++ b/train.py\n")
    assert "\n-quantizer = QAT_Quantizer(model, quant)\n" in diff and "\n+quantizer = QATQuantizer(model, quant)\n" in diff
    assert {n.line for n in migration.changes} >= {2, 3, 4, 5, 7, 8, 10, 11, 12}


def test_migrated_code_runs_without_legacy_warnings():
    import warnings

    import torch

    source = textwrap.dedent('''\
        from nni.compression.pytorch.pruning import L1FilterPruner
        pruner = L1FilterPruner(model, [{'sparsity': 0.5, 'op_name': 'fc'}])
        pruner.compress()
    ''')
    model = torch.nn.Sequential()
    model.add_module("fc", torch.nn.Linear(4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        exec(migrate_source(source).result, {"model": model})
    assert (model.fc.weight == 0).all(dim=1).sum() == 2


def test_lists_what_it_cannot_translate_with_line_numbers():
    source = textwrap.dedent('''\
        import tensorflow as tf
        from nni.compression.tensorflow import LevelPruner
        from nni.retiarii.nn.pytorch import LayerChoice
        from nni.compression.pytorch.utils import count_flops_params
        experiment = Experiment('remote')
        experiment.config.training_service.platform = 'openpai'
        x = nni.no_such_function()
    ''')
    migration = migrate_source(source)
    notes = {n.line: n.message for n in migration.untranslated}
    assert sorted(notes) == [1, 2, 3, 4, 5, 6, 7]
    assert "TensorFlow" in notes[1] and "TensorFlow" in notes[2] and "NAS" in notes[3]
    assert "count_flops_params" in notes[4] and "'remote'" in notes[5] and "'openpai'" in notes[6]
    assert "nni.no_such_function" in notes[7]
    # an untranslatable import stays as written (it fails loudly at run time, never silently)
    assert "from nni.compression.tensorflow import LevelPruner" in migration.result


def test_full_width_punctuation_and_non_python():
    migration = migrate_source("x = {'a': 1，'b': 2}  # 注释，保留\n")
    assert migration.result == "x = {'a': 1,'b': 2}  # 注释，保留\n"
    assert "full-width" in migration.changes[0].message
    migration = migrate_source("pip install nni\n")
    assert not migration.changed and "not valid Python" in migration.untranslated[0].message


def test_dotted_module_reference_adds_its_import():
    migration = migrate_source('"""Doc."""\nclass P(nni.compression.torch.Pruner):\n    pass\n')
    assert migration.result == '"""Doc."""\nimport torchslim.pruning\nclass P(torchslim.pruning.Pruner):\n    pass\n'


def test_cli_prints_diff_and_writes(tmp_path, capsys):
    script = tmp_path / "prune.py"
    script.write_text("from nni.compression.pytorch.pruning import L1FilterPruner\nimport tensorflow\n")
    config = tmp_path / "config.yml"
    config.write_text("trainingServicePlatform: remote\ntrial:\n  command: python prune.py\n")
    assert main(["migrate", str(script), str(config)]) == 0
    out, err = capsys.readouterr()
    assert "-from nni.compression.pytorch.pruning import L1FilterPruner\n+from torchslim.pruning import L1NormPruner" in out
    assert f"{script}:2: cannot translate: TensorFlow code" in err
    assert f"{config}:1: cannot translate: training service 'remote'" in err
    assert script.read_text().startswith("from nni")  # without --write nothing changes
    assert main(["migrate", "--write", str(script)]) == 0
    assert script.read_text() == "from torchslim.pruning import L1NormPruner\nimport tensorflow\n"
    assert main(["migrate", str(tmp_path / "missing.py")]) == 2


@pytest.mark.parametrize("source", ["import os\nx = {'sparsity': 1}\n", "from .nni import thing\n"])
def test_leaves_other_code_alone(source):
    assert migrate_source(source).result == source


def test_one_to_one_module_paths_follow_the_installed_package(monkeypatch):
    """nni.nas maps path for path onto torchslim.nas once that package exists (here: a stand-in)."""
    from torchslim.migration import table

    monkeypatch.setattr(table, "MODULES", [
        ("nni.fake", table.SamePaths("torchslim.speedup", "fake: not in this version")),
        ("nni.gone", table.SamePaths("torchslim.no_such_package", "gone: not in this version")),
        *table.MODULES,
    ])
    table.public_names.cache_clear()
    source = "from nni.fake.core import ModelSpeedup\nimport nni.fake.report as report\nfrom nni.gone.x import Y\n"
    migration = migrate_source(source)
    assert migration.result.splitlines()[:2] == ["from torchslim.speedup.core import ModelSpeedup",
                                                 "import torchslim.speedup.report as report"]
    assert [str(n) for n in migration.untranslated] == ["line 3: from nni.gone.x import ...: gone: not in this version"]


def test_nas_paths_torchslim_lacks_fold_into_their_parent():
    """NNI's framework submodules (nni.nas.evaluator.pytorch, ...) are their parent in PyTorch-only torchslim."""
    source = ("from nni.nas.evaluator.pytorch import Classification, DataLoader\n"
              "from nni.nas.profiler.pytorch.flops import FlopsProfiler\n"
              "from nni.nas.nn.pytorch import LayerChoice\n"
              "from nni.nas.space import no_such_name\n")
    migration = migrate_source(source)
    assert migration.result.splitlines()[:3] == ["from torchslim.nas.evaluator import Classification, DataLoader",
                                                 "from torchslim.nas.profiler import FlopsProfiler",
                                                 "from torchslim.nas.nn.pytorch import LayerChoice"]
    assert [n.line for n in migration.untranslated] == [4] and "no_such_name" in migration.untranslated[0].message
    exec(compile("\n".join(migration.result.splitlines()[:3]), "<migrated>", "exec"), {})
