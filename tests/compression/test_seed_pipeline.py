"""The seeds' fused pipeline (004: pqd_fuse) as written, on a small ResNet-style net."""
import copy

import torch
import torch.nn.functional as F
from torch import nn

from tests.speedup.test_channel_map import nni_trans
from torchslim import TorchEvaluator
from torchslim.distillation import DynamicLayerwiseDistiller
from torchslim.pruning import AGPPruner, TaylorPruner, auto_set_dependency_group_ids
from torchslim.quantization import QATQuantizer, Quantizer
from torchslim.speedup import ModelSpeedup


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.downsample(x))


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = Block(8, 16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.layer1(F.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def test_seed_pipeline_prune_quantize_distill_speedup_carry_calibration():
    torch.manual_seed(0)
    model = TinyResNet()
    teacher_model = copy.deepcopy(model)
    batches = [(torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))) for _ in range(4)]

    def train(model, optimizer, training_step, lr_scheduler, max_steps, max_epochs):
        steps = 0
        while steps < max_steps:
            for batch in batches:
                optimizer.zero_grad()
                training_step(batch, model).backward()
                optimizer.step()
                steps += 1
                if steps >= max_steps:
                    return

    def training_step(batch, model):
        return F.cross_entropy(model(batch[0]), batch[1])

    bn_list = [name for name, module in model.named_modules() if isinstance(module, torch.nn.BatchNorm2d)]
    p_config_list = [{'op_types': ['Conv2d'], 'sparse_ratio': 0.5}, *[{
        'op_names': [name], 'target_names': ['_output_'],
        'target_settings': {'_output_': {'align': {
            'module_name': name.replace('bn', 'conv') if 'bn' in name else name.replace('downsample.1', 'downsample.0'),
            'target_name': 'weight', 'dims': [0]}, 'granularity': 'per_channel'}}} for name in bn_list]]
    dummy_input = torch.rand(2, 3, 16, 16)
    p_config_list = auto_set_dependency_group_ids(model, p_config_list, dummy_input)
    evaluator = TorchEvaluator(train, torch.optim.Adam(model.parameters(), lr=0.001), training_step)
    sub_pruner = TaylorPruner(model, p_config_list, evaluator, training_steps=2)
    scheduled_pruner = AGPPruner(sub_pruner, interval_steps=2, total_times=2)
    q_config_list = [
        {'op_types': ['Conv2d'], 'quant_dtype': 'int8', 'target_names': ['_input_'], 'granularity': 'per_channel'},
        {'op_types': ['Conv2d'], 'quant_dtype': 'int8', 'target_names': ['weight'], 'granularity': 'out_channel'},
        {'op_types': ['BatchNorm2d'], 'quant_dtype': 'int8', 'target_names': ['_output_'], 'granularity': 'per_channel'}]
    quantizer = QATQuantizer.from_compressor(scheduled_pruner, q_config_list, quant_start_step=2)
    d_config_list = [{'op_types': ['Conv2d'], 'lambda': 0.1, 'apply_method': 'mse'}]
    distiller = DynamicLayerwiseDistiller.from_compressor(quantizer, d_config_list, teacher_model,
                                                          lambda batch, teacher: teacher(batch[0]), 0.1)
    distiller.compress(max_steps=6, max_epochs=None)
    model.eval()
    with torch.no_grad():
        fused = model(dummy_input)
    distiller.unwrap_model()
    distiller.unwrap_teacher_model()

    masks = scheduled_pruner.get_masks()
    assert masks  # the seed reads them after unwrap_model()
    before = sum(p.numel() for p in model.parameters())
    speedup = ModelSpeedup(model, dummy_input, masks)
    model = speedup.speedup_model()
    assert sum(p.numel() for p in model.parameters()) < 0.4 * before
    assert model.layer1.conv2.out_channels == 8 and model.bn1.num_features == 4

    calibration_config = nni_trans(quantizer.get_calibration_config(), speedup)
    sim_quantizer = Quantizer(model, q_config_list)
    sim_quantizer.update_calibration_config(calibration_config)
    model.eval()
    with torch.no_grad():
        carried = model(dummy_input)
    torch.testing.assert_close(carried, fused, rtol=1e-4, atol=1e-5)
