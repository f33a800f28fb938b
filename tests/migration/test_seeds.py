"""The seeds (NNI's docs, ``../shared/seeds/``) as tests: every PyTorch code block is migrated and run.

Each block goes through ``torchslim migrate``; what runs is exactly the migrated text (the diff
``torchslim migrate`` prints). Blocks of one page run in order in one namespace, as a notebook.
The test supplies what a page assumes but does not show (data, a model, a training loop), with
tiny budgets; the lists below say, per block, what is patched or excluded and why. Blocks that
are not Python (console output, shell commands, YAML/JSON) are recognised and counted apart.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from torchslim.experiment.trial import TrialContext, run_in_context
from torchslim.migration import migrate_source

SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"

# Code blocks that do not run yet, with the reason (block id = first 3 characters of the seed file
# name ':' line of the block's first line). Shrink this list as the features land.
EXCLUDED: dict[str, str] = {
    "001:57": "TensorFlow code (nni.compression.tensorflow)",
    "001:93": "fragment of a config entry (bare name 'quant_bits' as key), not a statement",
    "001:102": "fragment of a config entry (bare name 'quant_bits' as key), not a statement",
    "001:139": "TensorFlow form (update_epoch(epoch, sess))",
}

# Text changes applied to a block before migration: (old, new, why). "doc bug" fixes a mistake of
# the page itself; "tiny budget" shrinks training so the whole test stays short; "the block says"
# follows an instruction written in the block.
PATCHES: dict[str, list[tuple[str, str, str]]] = {
    "001:171": [
        ("nni.compression.tensorflow.Pruner", "nni.compression.torch.Pruner",
         "the block says: for PyTorch replace nni.compression.tensorflow.Pruner with nni.compression.torch.Pruner"),
        ("epoch_num, sess)", "epoch_num)", "the block says: for PyTorch there is no sess argument"),
        ("def step(self, sess):", "def step(self):", "the block says: for PyTorch there is no sess argument"),
    ],
    "003:72": [
        ("PRUNERS(params['prune_method']['_name'])", "PRUNERS[params['prune_method']['_name']]",
         "doc bug: PRUNERS is a dict, it is indexed, not called"),
        ("nni.report_final_results(acc)", "nni.report_final_result(acc)",
         "doc bug: NNI's function is report_final_result"),
    ],
    "004:381": [("'op_names': ['relu1', 'relu2'],", "'op_types': ['ReLU'],",
                 "doc bug: the page's LeNet (004:89) has no modules relu1/relu2 (it calls F.relu); torchslim refuses "
                 "op_names naming no module, while op_types matching none only warns")],
    "004:533": [("for epoch in range(3):", "for epoch in range(1):", "tiny budget: 1 epoch per trial instead of 3")],
    "004:635": [("num_workers=8", "num_workers=0", "tiny budget: no loader worker processes for 64 images")],
    "004:774": [("max_epochs=30)", "max_epochs=1)", "tiny budget: 1 epoch instead of 30")],
    "004:797": [("torch.rand(8, 3, 224, 224)", "torch.rand(2, 3, 64, 64)", "tiny budget: a smaller example input")],
    "004:824": [("training_steps=100", "training_steps=2", "tiny budget"),
                ("interval_steps=100, total_times=30", "interval_steps=1, total_times=2", "tiny budget")],
    "004:835": [("quant_start_step=100", "quant_start_step=2", "tiny budget")],
    "004:859": [("max_steps=100 * 60", "max_steps=3", "tiny budget: 3 steps (pruning ends after 2)")],
}

# Call forms migrate keeps (they need the program's data flow to rewrite): they run through the
# families' NNI boundary, with these DeprecationWarnings. Every other running block emits none.
STILL_WARNS: dict[str, list[str]] = {
    "000:55": ["AGPPruner(model, config_list, optimizer, ...)"],
    "003:9": ["LevelPruner(config_list); pruner(model)"],
    "003:72": ["AGPPruner(config_list); pruner(model)", "LevelPruner(config_list); pruner(model)",
               "the v0 AGP keys (initial_sparsity, final_sparsity, start_epoch, end_epoch, frequency)"],
    "001:296": ["ClipGrad.quant_backward(tensor, grad_output, quant_type)"],
}

# Code run right after a block that only defines things, to use what it defined: (code, why)
USES: dict[str, tuple[str, str]] = {
    "001:296": ("quantizer = YourQuantizer(model, [{'quant_types': ['output'], 'quant_bits': 8, 'op_types': ['ReLU6']}])\n"
                "quantizer.compress()\nmodel(torch.randn(2, 1, 28, 28) * 4).sum().backward()\n",
                "the custom 3-argument quant_backward must run in a backward pass"),
}

# Code run right after a block to check what it did, where a failure would not raise: (code, why)
CHECKS: dict[str, tuple[str, str]] = {
    "004:607": ("records = exp.trials()\n"
                "assert [r.status for r in records] == ['SUCCEEDED'] * 3, [(r.status, r.error) for r in records]\n"
                "assert all(0 <= r.value <= 100 for r in records), [r.value for r in records]\n"
                "top = exp.export_top_models(formatter='dict')\n"
                "assert len(top) == 1 and set(top[0]) == {'conv2', 'dropout', 'feature'}, top\n"
                "assert top[0]['conv2'] in (0, 1) and top[0]['dropout'] in (0.25, 0.5, 0.75), top\n"
                "assert top[0]['feature'] in (64, 128, 256), top\n",
                "a failing trial does not fail its experiment: the search must have run its 3 trials and "
                "exported an architecture of the space"),
}

# trial parameters the page's experiment (003) would hand its trial: one point of its search space
TRIAL_PARAMETERS = {"prune_method": {"_name": "agp", "conv0_sparsity": 0.5, "conv1_sparsity": 0.6}}

_FENCE = re.compile(r"^(\s*)```\s*(\S*)")
_DIRECTIVE = re.compile(r"^(\s*)\.\. code-block::\s*(\S*)")


def extract_blocks(path: Path) -> list[tuple[str, str, str]]:
    """``(block id, language, code)`` of every reST ``code-block`` and Markdown fence of a page."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        directive, fence = _DIRECTIVE.match(lines[i]), _FENCE.match(lines[i])
        if not (directive or fence):
            i += 1
            continue
        start, lang, body = i + 1, (directive or fence).group(2), []
        i += 1
        if directive:
            indent = len(directive.group(1))
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                body.append(lines[i])
                i += 1
            while body and body[0].strip().startswith(":"):  # directive options
                body.pop(0)
        else:
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            i += 1
        blocks.append((f"{path.name[:3]}:{start}", lang, textwrap.dedent("\n".join(body)).strip("\n") + "\n"))
    return blocks


def _all_blocks() -> list[tuple[str, str, str]]:
    return [b for page in sorted(SEEDS.glob("*.txt")) for b in extract_blocks(page)] if SEEDS.is_dir() else []


def migrated(block_id: str, code: str):
    for old, new, _ in PATCHES.get(block_id, []):
        assert old in code, f"{block_id}: patch target {old!r} not found"
        code = code.replace(old, new)
    return migrate_source(code, f"seed {block_id}")


def not_python(lang: str, code: str) -> str | None:
    """Why a block is not a Python code block (None when it is one)."""
    if lang not in ("python", ""):
        return f"{lang} block"
    migration = migrate_source(code)
    if any("not valid Python" in n.message for n in migration.untranslated):
        return "console output or shell command"
    return None


BLOCKS = _all_blocks()
CODE = [(bid, code) for bid, lang, code in BLOCKS if not_python(lang, code) is None]
RUN = [(bid, code) for bid, code in CODE if bid not in EXCLUDED]


# --- what the pages assume ------------------------------------------------------------------------------
class SeedNet(torch.nn.Module):
    """A LeNet-sized model with the module names the pages use (conv0/conv1, ReLU6, fc1/fc2)."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.conv0, self.relu0 = nn.Conv2d(1, 6, 5), nn.ReLU6()
        self.conv1, self.relu1 = nn.Conv2d(6, 16, 5), nn.ReLU6()
        self.fc1, self.fc2 = nn.Linear(256, 120), nn.Linear(120, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.max_pool2d(self.relu0(self.conv0(x)), 2)
        x = torch.nn.functional.max_pool2d(self.relu1(self.conv1(x)), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def _mnist_tensors(train: bool):
    from torchslim.datasets import load_mnist

    train_set, test_set = load_mnist(train_size=512, normalize=False)
    x, y = (train_set if train else test_set).tensors
    return (x[:256], y[:256]) if not train else (x, y)


class TinyMNIST(torch.utils.data.Dataset):
    """Stands in for torchvision's MNIST (no download): 512 / 256 images of the embedded MNIST."""

    def __init__(self, root=None, train=True, transform=None, target_transform=None, download=False) -> None:
        self.x, self.y = _mnist_tensors(train)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        image = Image.fromarray((self.x[i, 0] * 255).to(torch.uint8).numpy(), mode="L")
        return (self.transform(image) if self.transform else image), int(self.y[i])


class TinyCIFAR10(torch.utils.data.Dataset):
    """Stands in for torchvision's CIFAR10 (no download): 64 / 32 random 32x32 RGB images."""

    def __init__(self, root=None, train=True, transform=None, target_transform=None, download=False) -> None:
        g = torch.Generator().manual_seed(0 if train else 1)
        n = 64 if train else 32
        self.x = torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8)
        self.y = torch.randint(0, 10, (n,), generator=g)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        image = Image.fromarray(self.x[i].numpy(), mode="RGB")
        return (self.transform(image) if self.transform else image), int(self.y[i])


def _any_free_port(make_server):
    """The page's web UI on a free port: a fixed one (8083) may be taken on a shared test machine."""
    def make(host: str = "127.0.0.1", port: int = 8080, *args, **kwargs):
        return make_server(host, 0, *args, **kwargs)

    return make


def _random_init(factory):
    def build(*args, pretrained=False, weights=None, **kwargs):  # no weight download: random init
        return factory(*args, **kwargs)

    return build


def _prelude(ns: dict, workdir: Path) -> None:
    """Names a page uses without defining them (the page assumes the reader has them)."""
    import time

    import torch.nn.functional as F
    from torch import nn

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*_mnist_tensors(True)), batch_size=64)
    model = SeedNet()

    def trainer(model, optimizer, criterion, epoch):
        for step, (x, y) in enumerate(loader):
            if step == 2:
                break
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()

    def evaluate(model):
        x, y = _mnist_tensors(False)
        with torch.no_grad():
            return float((model(x).argmax(1) == y).float().mean())

    def training_step(batch, model):
        return F.cross_entropy(model(batch[0]), batch[1])

    def training_model(model, optimizers, training_step, lr_schedulers=None, max_steps=None, max_epochs=None):
        optimizer = optimizers[0] if isinstance(optimizers, (list, tuple)) else optimizers
        for _ in range(max_epochs or 1):
            for batch in ns["train_loader"]:
                optimizer.zero_grad()
                training_step(batch, model).backward()
                optimizer.step()

    defaults = dict(
        torch=torch, nn=nn, F=F, time=time, model=model, criterion=F.cross_entropy, trainer=trainer,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01), evaluate=evaluate, epoch=0,
        training_step=training_step, training_model=training_model, evaluating_model=evaluate,
        model_path=str(workdir / "model.pth"), calibration_path=str(workdir / "calibration.pth"),
        onnx_path=str(workdir / "model.onnx"), input_shape=[1, 1, 28, 28], device="cpu",
        __file__=str(workdir / "seed.py"), __name__="__seed__",
    )
    for key, value in defaults.items():
        ns.setdefault(key, value)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """Per page: a namespace and a working directory; torchvision downloads replaced by tiny data."""
    import torchvision
    from torchvision.models import mobilenetv3, resnet

    from torchslim.experiment.store import ENV_EXPERIMENTS_DIR
    from torchslim.experiment.webui import server
    from torchslim.models.lenet import LeNet5
    from torchslim.nas.experiment import NasExperiment

    root = tmp_path_factory.mktemp("seeds")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_EXPERIMENTS_DIR, str(root / "experiments"))  # not the user's ~/torchslim-experiments
        mp.setattr(server, "make_server", _any_free_port(server.make_server))
        mp.setattr(torchvision.datasets, "MNIST", TinyMNIST)
        mp.setattr(torchvision.datasets, "CIFAR10", TinyCIFAR10)
        mp.setattr(resnet, "resnet18", _random_init(resnet.resnet18))
        mp.setattr(mobilenetv3, "mobilenet_v3_small", _random_init(mobilenetv3.mobilenet_v3_small))
        torch.manual_seed(0)
        checkpoint = LeNet5().state_dict()  # what page 004 loads from ../../ch02/model.pt
        state: dict[str, tuple[dict, Path]] = {}
        yield state, root, checkpoint
        for ns, _ in state.values():  # a page's NAS experiment keeps its web UI up until stop()
            for value in list(ns.values()):
                if isinstance(value, NasExperiment):
                    value.stop()
        sys.modules.pop("models", None)
        for _, workdir in state.values():
            with contextlib.suppress(ValueError):
                sys.path.remove(str(workdir))


@pytest.mark.parametrize("block_id, code", RUN, ids=[bid for bid, _ in RUN])
def test_seed_block_runs(block_id, code, pages, monkeypatch):
    state, root, checkpoint = pages
    page = block_id[:3]
    if page not in state:
        workdir = root / page / "a" / "b"
        workdir.mkdir(parents=True)
        (root / page / "ch02").mkdir()
        torch.save(checkpoint, root / page / "ch02" / "model.pt")
        ns: dict = {}
        _prelude(ns, workdir)
        state[page] = (ns, workdir)
        sys.path.insert(0, str(workdir))
    ns, workdir = state[page]
    monkeypatch.chdir(workdir)
    torch.set_num_threads(1)
    migration = migrated(block_id, code)
    assert not migration.untranslated, [str(n) for n in migration.untranslated]
    if block_id == "004:635":  # the page names this block models.py; the next one imports it
        (workdir / "models.py").write_text(migration.result, encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # run as the trial of the page's experiment would: with its parameters
        run_in_context(TrialContext(parameters=TRIAL_PARAMETERS), exec,
                       compile(migration.result, f"<seed {block_id}>", "exec"), ns)
        if block_id in USES:
            exec(compile(USES[block_id][0], f"<use of seed {block_id}>", "exec"), ns)
    if block_id in CHECKS:
        exec(compile(CHECKS[block_id][0], f"<check of seed {block_id}>", "exec"), ns)
    legacy = sorted({str(w.message).split(" is an NNI legacy form")[0] for w in caught
                     if issubclass(w.category, DeprecationWarning) and "NNI legacy form" in str(w.message)})
    assert legacy == STILL_WARNS.get(block_id, [])


def test_exclusions_and_patches_name_existing_code_blocks():
    if not BLOCKS:
        pytest.skip(f"no seeds at {SEEDS}")
    ids = {bid for bid, _ in CODE}
    assert set(EXCLUDED) <= ids, set(EXCLUDED) - ids
    assert set(PATCHES) | set(STILL_WARNS) | set(USES) | set(CHECKS) <= ids - set(EXCLUDED)
    assert len(BLOCKS) == 72 and len(EXCLUDED) <= 12


def test_migrate_translates_every_nni_import_of_the_running_blocks():
    for block_id, code in RUN:
        result = migrated(block_id, code).result
        assert not re.search(r"^\s*(from|import) nni\b", result, flags=re.M), (block_id, result)
        assert "QAT_Quantizer" not in result and "AGP_Pruner" not in result and "denpendency" not in result


def test_migrate_lists_what_it_cannot_translate():
    untranslated = {bid: migrate_source(code).untranslated for bid, code in CODE}
    assert "TensorFlow" in untranslated["001:57"][0].message and untranslated["001:57"][0].line == 1
    assert not any(untranslated[bid] for bid in ("004:440", "004:450", "004:472", "004:533", "004:607"))


def test_migrate_maps_the_nas_blocks_to_torchslim_nas():
    nas = "".join(migrated(bid, code).result for bid, code in RUN
                  if bid in ("004:440", "004:450", "004:472", "004:533", "004:607"))
    for line in ("from torchslim.nas.nn.pytorch import LayerChoice, ModelSpace, MutableDropout, MutableLinear",
                 "import torchslim.nas.strategy as strategy", "torchslim.choice('feature', [64, 128, 256])",
                 "from torchslim.nas.evaluator import FunctionalEvaluator",
                 "from torchslim.nas.experiment import NasExperiment"):
        assert line in nas, line
