"""Model statistics helpers."""
import torch

from torchslim.models import LeNet
from torchslim.utils.metrics import count_macs, count_nonzero_params, count_params, measure_latency, state_dict_bytes


def test_counts_on_lenet():
    model = LeNet()
    # conv1 24*24*20*25 + conv2 8*8*50*500 + fc1 800*500 + fc2 500*10
    assert count_macs(model, torch.randn(1, 1, 28, 28)) == 288_000 + 1_600_000 + 400_000 + 5_000
    assert count_params(model) == 431_080
    with torch.no_grad():
        model.fc1.weight.zero_()
    assert count_nonzero_params(model) == 431_080 - 400_000
    assert state_dict_bytes(model) > 4 * 431_080


def test_latency_is_positive_and_restores_threads():
    threads = torch.get_num_threads()
    assert measure_latency(LeNet(), torch.randn(1, 1, 28, 28), threads=1, warmup=1, repeats=3) > 0
    assert torch.get_num_threads() == threads
