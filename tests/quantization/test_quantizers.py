"""Quantizers on the shipped MNIST split: QAT (v2 loop and evaluator), PTQ, DoReFa, BNN, naive, export."""
import torch
from torch.utils.data import DataLoader, Subset

from torchslim import TorchEvaluator
from torchslim.quantization import (
    BNNQuantizer, DoReFaQuantizer, NaiveQuantizer, PtqQuantizer, QATQuantizer, Quantizer,
)
from torchslim.utils.training import evaluate_accuracy, train_epochs

SEED_CONFIG = [  # seed 004's QAT config (NNI 3.0 dialect) on LeNet5
    {"op_names": ["conv1", "conv2", "fc1", "fc2"], "target_names": ["_input_", "weight", "_output_"],
     "quant_dtype": "int8", "quant_scheme": "affine", "granularity": "default"},
    {"op_names": ["relu1", "relu2"], "target_names": ["_output_"], "quant_dtype": "int8", "quant_scheme": "affine",
     "granularity": "default"},
]
CALIB_KEYS = {"scale", "zero_point", "quant_dtype", "quant_scheme", "quant_bits", "tracked_min", "tracked_max"}


def test_qat_with_evaluator_returns_seed_format_calibration_config(trained_lenet5, mnist):
    train, test = mnist
    model = trained_lenet5
    loader = DataLoader(Subset(train, range(1000)), batch_size=64, shuffle=True)

    def training_func(model, optimizer, training_step, lr_scheduler, max_steps, max_epochs):
        model.train()
        for _ in range(max_epochs or 1):
            for batch in loader:
                optimizer.zero_grad()
                training_step(batch, model).backward()
                optimizer.step()

    def training_step(batch, model):
        return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])

    evaluator = TorchEvaluator(training_func, torch.optim.Adam(model.parameters(), 1e-4), training_step)
    quantizer = QATQuantizer(model, SEED_CONFIG, evaluator, 5)
    quantizer.track_forward(next(iter(loader))[0])
    _, calibration = quantizer.compress(None, max_epochs=1)
    assert set(calibration) == {"conv1", "conv2", "fc1", "fc2", "relu1", "relu2"}
    assert set(calibration["fc1"]) == {"weight", "_input_0", "_output_0"}
    assert set(calibration["relu1"]) == {"_output_0"}
    entry = calibration["fc1"]["_input_0"]
    assert CALIB_KEYS <= set(entry)
    assert entry["quant_dtype"] == "int8" and entry["quant_scheme"] == "affine" and entry["quant_bits"] == 8
    assert entry["scale"].dim() == 0 and entry["tracked_min"] >= 0  # fc1's input follows a ReLU
    assert entry["zero_point"] == -128  # so 0.0 sits at the bottom of the int8 grid
    relu = calibration["relu1"]["_output_0"]
    assert torch.isclose(relu["scale"], (relu["tracked_max"] - 0) / 255)
    assert evaluate_accuracy(model, test) > 85.0


def test_qat_v2_form_and_quant_start_step(trained_lenet5, mnist):
    model = trained_lenet5
    x = mnist[0].tensors[0][:32]
    quantizer = QATQuantizer(model, [{"op_types": ["Linear"], "quant_types": ["input", "weight"], "quant_bits": 8,
                                      "quant_start_step": 2}])
    quantizer.compress()
    model.train()
    outs = [model(x) for _ in range(3)]
    model.eval()
    state = quantizer.states["fc1"].targets["_input_0"]
    assert state.step == 3
    float_model = quantizer.unwrap_model()
    with torch.no_grad():
        ref = float_model.train()(x)
    assert torch.allclose(outs[0], ref) and torch.allclose(outs[1], ref)  # observing only
    assert not torch.allclose(outs[2], ref)  # fake quantization started at step 2


def test_ptq_minmax_percentile_mse_keep_accuracy(trained_lenet5, mnist):
    train, test = mnist
    base = evaluate_accuracy(trained_lenet5, test)
    calib = DataLoader(Subset(train, range(512)), batch_size=128)
    cfg = [{"op_types": ["Conv2d", "Linear"], "quant_types": ["input", "weight"], "quant_bits": 8}]
    for observer in ("minmax", "percentile", "mse"):
        model = trained_lenet5.__class__()
        model.load_state_dict(trained_lenet5.state_dict())
        _, calibration = PtqQuantizer(model, cfg, observer=observer).compress(calib)
        assert all(e["_input_0"]["scale"] > 0 for e in calibration.values())
        assert evaluate_accuracy(model, test) > base - 1.0, observer


def test_naive_quantizer_uses_8_bit_symmetric_weights(trained_lenet5):
    model = trained_lenet5
    _, calibration = NaiveQuantizer(model, [{"op_types": ["default"], "quant_types": ["weight"], "quant_bits": 8}]).compress()
    assert calibration["conv1"]["weight"]["quant_scheme"] == "symmetric"
    assert calibration["conv1"]["weight"]["zero_point"] == 0
    w = trained_lenet5.conv1.weight
    assert torch.isclose(calibration["conv1"]["weight"]["scale"], w.abs().max() / 127)


def test_dorefa_and_bnn_weights_land_on_their_grids():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 10))
    seen = {}
    DoReFaQuantizer(model, [{"op_types": ["Linear"], "quant_types": ["weight"], "quant_bits": 2}]).compress()
    model[0].register_forward_pre_hook(lambda m, a: seen.update(w=m.weight.detach().clone()))
    model(torch.randn(2, 10))
    levels = torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0])
    assert torch.all((seen["w"].reshape(-1, 1) - levels).abs().min(1).values < 1e-6)
    bnn_model = torch.nn.Sequential(torch.nn.Linear(10, 10))
    BNNQuantizer(bnn_model, [{"op_types": ["Linear"], "quant_types": ["weight"], "quant_bits": 1}]).compress()
    bnn_model[0].register_forward_pre_hook(lambda m, a: seen.update(b=m.weight.detach().clone()))
    bnn_model(torch.randn(2, 10))
    assert set(torch.unique(seen["b"]).tolist()) <= {-1.0, 1.0}


def test_dorefa_and_bnn_train(trained_lenet5, mnist):
    train, test = mnist
    for cls, bits in ((DoReFaQuantizer, 4), (BNNQuantizer, 1)):
        model = trained_lenet5.__class__()
        model.load_state_dict(trained_lenet5.state_dict())
        cls(model, [{"op_types": ["Conv2d", "Linear"], "quant_types": ["weight"], "quant_bits": bits}]).compress()
        train_epochs(model, Subset(train, range(1000)), 1, lr=1e-3)
        assert evaluate_accuracy(model, test) > 30.0, cls.__name__


def test_export_model_writes_weights_calibration_and_qdq_onnx(trained_lenet5, tmp_path):
    import onnx

    model = trained_lenet5
    quantizer = PtqQuantizer(model, [{"op_types": ["Conv2d", "Linear"], "target_names": ["_input_", "weight"]}])
    x = torch.randn(4, 1, 28, 28)
    quantizer.compress([x])
    calibration = quantizer.export_model(tmp_path / "m.pth", tmp_path / "calib.pth", tmp_path / "m.onnx", input_shape=(1, 1, 28, 28))
    state = torch.load(tmp_path / "m.pth")
    assert list(state) == list(trained_lenet5.state_dict())
    saved = torch.load(tmp_path / "calib.pth")
    assert torch.equal(saved["fc1"]["_input_0"]["scale"], calibration["fc1"]["_input_0"]["scale"])
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") >= 4 and ops.count("DequantizeLinear") >= 8
    assert any(i.data_type == onnx.TensorProto.INT8 for i in graph.initializer)  # int8 weights


def test_update_calibration_config_simulates_a_given_config(trained_lenet5):
    x = torch.randn(8, 1, 28, 28)
    source = trained_lenet5
    cfg = [{"op_types": ["Conv2d", "Linear"], "target_names": ["_input_", "weight"]}]
    q1 = PtqQuantizer(source, cfg)
    _, calibration = q1.compress([x])
    out = source(x)
    target = trained_lenet5.__class__()
    target.load_state_dict(q1.unwrap_model().state_dict())
    Quantizer(target, cfg).update_calibration_config(calibration)
    assert torch.allclose(target.eval()(x), out)
