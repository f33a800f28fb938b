"""NNI v2's auto-compression names run as thin entry points."""
import torch

from torchslim.auto import AMCPruner, AutoCompressPruner, NetAdaptPruner, SensitivityAnalysis, SimulatedAnnealingPruner
from torchslim.auto.mnist import accuracy_on
from torchslim.utils.metrics import count_params

CONFIG = [{"op_types": ["Conv2d", "Linear"], "total_sparsity": 0.8}, {"op_names": ["fc3"], "exclude": True}]


def test_v2_search_pruners(trained_lenet5, mnist_small):
    evaluator = accuracy_on(mnist_small[1])
    x = torch.randn(1, 1, 28, 28)
    budget = 0.2 * count_params(trained_lenet5)
    for pruner in (NetAdaptPruner(trained_lenet5, CONFIG, evaluator, total_iteration=4, dummy_input=x),
                   SimulatedAnnealingPruner(trained_lenet5, CONFIG, evaluator, dummy_input=x, cool_down_rate=0.5),
                   AMCPruner(4, trained_lenet5, CONFIG, dummy_input=x, evaluator=evaluator),
                   AutoCompressPruner(trained_lenet5, CONFIG, evaluator=evaluator, dummy_input=x,
                                      sa_params={"cool_down_rate": 0.5})):
        pruner.compress()
        _, model, _, score, config_list = pruner.get_best_result()
        assert count_params(model) <= budget and score is not None and config_list


def test_sensitivity_analysis(trained_lenet5, mnist_small):
    evaluator = accuracy_on(mnist_small[1])
    table = SensitivityAnalysis(trained_lenet5, evaluator, sparsities=[0.5, 0.9]).analysis()
    assert set(table) == {"conv1", "conv2", "fc1", "fc2"}
    assert all(set(row) == {0.5, 0.9} for row in table.values())
    assert table["conv1"][0.9] < table["fc1"][0.5]  # one filter of six left hurts more than half of fc1
