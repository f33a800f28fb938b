"""The channel map: kept original indices per layer and dim, NNI's node_infos view, save/load,
and a calibration config carried through speedup."""
import torch
from torch import nn

from torchslim.pruning import L1NormPruner
from torchslim.quantization import PtqQuantizer, Quantizer
from torchslim.speedup import ChannelMap, ModelSpeedup, load, model_channel_map, save


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def _net():
    torch.manual_seed(0)
    net = Net().eval()
    for bn in (net.bn1, net.bn2):  # trained-looking BatchNorms: a pruned conv channel is not 0 after them
        bn.bias.data.uniform_(-1, 1)
        bn.running_mean.uniform_(-0.5, 0.5)
    return net


PRUNE = [{"op_names": ["conv1", "conv2"], "sparse_ratio": 0.5},
         *[{"op_names": [bn], "target_names": ["_output_"],
            "target_settings": {"_output_": {"align": {"module_name": conv, "target_name": "weight", "dims": [0]}}}}
           for bn, conv in (("bn1", "conv1"), ("bn2", "conv2"))]]
QUANT = [{"op_types": ["Conv2d"], "quant_dtype": "int8", "target_names": ["_input_"], "granularity": "per_channel"},
         {"op_types": ["Conv2d"], "quant_dtype": "int8", "target_names": ["weight"], "granularity": "out_channel"},
         {"op_types": ["BatchNorm2d"], "quant_dtype": "int8", "target_names": ["_output_"],
          "granularity": "per_channel"}]
X = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
DATA = [torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(3)]


def _pruned_and_sped_up(calibrate=False):
    net = _net()
    pruner = L1NormPruner(net, PRUNE)
    pruner.compress()
    calibration = None
    if calibrate:
        quantizer = PtqQuantizer(net, QUANT)
        _, calibration = quantizer.compress(DATA)
        quantizer.unwrap_model()
    pruner.unwrap_model()
    masks = pruner.get_masks()
    speedup = ModelSpeedup(net, X, masks)
    speedup.speedup_model()
    return net, masks, speedup, calibration


def test_kept_indices_on_every_dim():
    net, masks, speedup, _ = _pruned_and_sped_up()
    cmap = speedup.channel_map
    kept1 = torch.nonzero(masks["conv1"]["weight"].sum((1, 2, 3))).reshape(-1)
    kept2 = torch.nonzero(masks["conv2"]["weight"].sum((1, 2, 3))).reshape(-1)
    assert torch.equal(cmap["conv1"].outputs, kept1) and cmap["conv1"].sizes["out"] == 8
    assert torch.equal(cmap["conv1"].params["weight"][0], kept1) and torch.equal(cmap["conv1"].params["bias"][0], kept1)
    assert torch.equal(cmap["conv2"].inputs, kept1) and torch.equal(cmap["conv2"].params["weight"][1], kept1)
    assert torch.equal(cmap["bn1"].inputs, kept1) and torch.equal(cmap["bn1"].params["running_var"][0], kept1)
    assert torch.equal(cmap["fc"].inputs, kept2) and torch.equal(cmap["fc"].params["weight"][1], kept2)
    assert "out" not in cmap["fc"].kept or cmap["fc"].kept["out"].numel() == 4
    assert net.conv2.weight.shape == (4, 4, 3, 3)


def test_saved_as_plain_data_and_loaded_with_the_model(tmp_path):
    net, _, speedup, _ = _pruned_and_sped_up()
    torch.save(speedup.channel_map.to_dict(), tmp_path / "map.pt")
    again = ChannelMap.from_dict(torch.load(tmp_path / "map.pt", weights_only=True))
    assert torch.equal(again["conv2"].params["weight"][1], speedup.channel_map["conv2"].params["weight"][1])
    save(net, tmp_path / "net.pt")
    fresh = load(tmp_path / "net.pt", model=Net())
    assert torch.equal(model_channel_map(fresh)["bn2"].outputs, speedup.channel_map["bn2"].outputs)


def test_a_second_speedup_composes_onto_original_indices():
    net, _, first, _ = _pruned_and_sped_up()
    mask = torch.zeros(4, 3, 3, 3)
    mask[[1, 3]] = 1
    channels = mask[:, 0, 0, 0]
    ModelSpeedup(net, X, {"conv1": {"weight": mask, "bias": channels},
                          "bn1": {"weight": channels, "bias": channels}}).speedup_model()
    total = model_channel_map(net)["conv1"].outputs
    assert torch.equal(total, first.channel_map["conv1"].outputs[[1, 3]])


def nni_trans(calibration_config, speedup):
    """The seeds' trans(), verbatim."""
    for node, node_info in speedup.node_infos.items():
        if node.op == 'call_module' and node.target in calibration_config:
            input_mask = speedup.node_infos[node.args[0]].output_masks
            param_mask = node_info.param_masks
            output_mask = node_info.output_masks
            module_cali_config = calibration_config[node.target]
            if '_input_0' in module_cali_config:
                reduce_dims = list(range(len(input_mask.shape)))
                reduce_dims.remove(1)
                idxs = torch.nonzero(input_mask.sum(reduce_dims), as_tuple=True)[0].cpu()
                module_cali_config['_input_0']['scale'] = module_cali_config['_input_0']['scale'].index_select(1, idxs)
                module_cali_config['_input_0']['zero_point'] = module_cali_config['_input_0']['zero_point'].index_select(1, idxs)
            if '_output_0' in module_cali_config:
                reduce_dims = list(range(len(output_mask.shape)))
                reduce_dims.remove(1)
                idxs = torch.nonzero(output_mask.sum(reduce_dims), as_tuple=True)[0].cpu()
                module_cali_config['_output_0']['scale'] = module_cali_config['_output_0']['scale'].index_select(1, idxs)
                module_cali_config['_output_0']['zero_point'] = module_cali_config['_output_0']['zero_point'].index_select(1, idxs)
            if 'weight' in module_cali_config:
                reduce_dims = list(range(len(param_mask['weight'].shape)))
                reduce_dims.remove(0)
                idxs = torch.nonzero(param_mask['weight'].sum(reduce_dims), as_tuple=True)[0].cpu()
                module_cali_config['weight']['scale'] = module_cali_config['weight']['scale'].index_select(0, idxs)
                module_cali_config['weight']['zero_point'] = module_cali_config['weight']['zero_point'].index_select(0, idxs)
            if 'bias' in module_cali_config:
                idxs = torch.nonzero(param_mask['bias'], as_tuple=True)[0].cpu()
                module_cali_config['bias']['scale'] = module_cali_config['bias']['scale'].index_select(0, idxs)
                module_cali_config['bias']['zero_point'] = module_cali_config['bias']['zero_point'].index_select(0, idxs)
    return calibration_config


def test_calibration_reindexed_after_speedup_equals_a_fresh_calibration_of_the_shrunk_model():
    net, _, speedup, before = _pruned_and_sped_up(calibrate=True)
    carried = speedup.channel_map.reindex(before)
    _, fresh = PtqQuantizer(net, QUANT).compress(DATA)  # the shrunk model, same data
    assert set(carried) == set(fresh)
    for name, entries in fresh.items():
        for target, entry in entries.items():
            for key in ("scale", "zero_point", "tracked_min", "tracked_max"):
                if key not in entry:
                    continue
                got = carried[name][target][key]
                assert got.shape == entry[key].shape, (name, target, key)
                if target != "weight":  # activations: the kept channels saw the same values
                    torch.testing.assert_close(got, entry[key], rtol=1e-4, atol=1e-6)
            if target == "weight":  # a weight range was observed over input columns speedup then removed:
                # it covers the shrunk weight (never clips it) and is no coarser than before
                assert torch.all(carried[name][target]["tracked_min"] <= entry["tracked_min"])
                assert torch.all(carried[name][target]["tracked_max"] >= entry["tracked_max"])
    assert torch.equal(carried["conv1"]["weight"]["scale"], fresh["conv1"]["weight"]["scale"])  # no input removed
    # NNI's trans() over node_infos gives the same scales; both load on the shrunk model
    import copy
    nni = nni_trans(copy.deepcopy(before), speedup)
    for name in ("conv2", "bn1"):
        for target in nni[name]:
            if "scale" in nni[name][target]:
                torch.testing.assert_close(nni[name][target]["scale"], carried[name][target]["scale"])
    sim = Quantizer(net, QUANT)
    sim.update_calibration_config(nni)
    sim.update_calibration_config(carried)
    with torch.no_grad():
        simulated = net(X)
    import warnings

    from torchslim.quantization import deploy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # per-channel activation scales merged for int8 kernels
        int8 = deploy(net, carried, example_input=X, backend="x86")  # the int8 deploy takes the result
    with torch.no_grad():
        assert float((int8(X) - simulated).norm() / simulated.norm()) < 0.1


def test_a_config_from_before_speedup_is_refused_with_the_fix():
    import pytest

    from torchslim.errors import ConfigError

    net, _, _, before = _pruned_and_sped_up(calibrate=True)
    with pytest.raises(ConfigError, match="channel_map.reindex"):
        Quantizer(net, QUANT).update_calibration_config(before)
