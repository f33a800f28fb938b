"""A scheduled pruner and QAT chained on one model prune and quantize in ONE training run."""
import torch
import torch.nn.functional as F

from torchslim import TorchEvaluator
from torchslim.datasets import load_mnist
from torchslim.models import LeNet5
from torchslim.pruning import AGPPruner, L1NormPruner
from torchslim.quantization import QATQuantizer


def test_agp_and_qat_share_one_training_run():
    train, _ = load_mnist()
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(train, range(1024)), batch_size=64, shuffle=True)
    model = LeNet5()
    steps = []

    def training_step(batch, model):
        steps.append(1)
        return F.cross_entropy(model(batch[0]), batch[1])

    evaluator = TorchEvaluator.from_dataloader(loader, torch.optim.Adam(model.parameters(), 1e-3), training_step)
    config = [{"op_types": ["Conv2d", "Linear"], "exclude_op_names": ["fc3"], "sparse_ratio": 0.5}]
    pruner = AGPPruner(L1NormPruner(model, config), interval_steps=5, total_times=4, evaluator=evaluator)
    quantizer = QATQuantizer.from_compressor(
        pruner, [{"op_types": ["Conv2d", "Linear"], "target_names": ["_input_", "weight"], "quant_dtype": "int8"}],
        quant_start_step=10,
    )
    _, calibration = quantizer.compress(max_steps=30)
    assert len(steps) == 30  # not 20 pruning steps + 30 QAT steps
    masks = pruner.get_masks()
    assert {name: round(1 - float(m["weight"].mean()), 2) for name, m in masks.items()} == {
        "conv1": 0.5, "conv2": 0.5, "fc1": 0.5, "fc2": 0.5,
    }
    assert {"conv1", "conv2", "fc1", "fc2", "fc3"} <= set(calibration)
    assert torch.all(model.fc1.weight[masks["fc1"]["weight"] == 0] == 0)
