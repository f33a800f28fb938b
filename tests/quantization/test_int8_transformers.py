"""int8 for Linear-heavy transformers: static (calibrated activations) and dynamic (per-batch ranges)."""
import contextlib
import copy

import pytest
import torch

from torchslim.errors import ConfigError
from torchslim.quantization import PtqQuantizer, deploy
from torchslim.quantization.int8.common import first_output, float_copy

transformers = pytest.importorskip("transformers")

WEIGHT = {"op_types": ["Linear"], "target_names": ["weight"], "quant_dtype": "int8", "quant_scheme": "symmetric",
          "granularity": "per_channel"}
DYNAMIC = [WEIGHT, {"op_types": ["Linear"], "target_names": ["_input_"], "quant_dtype": "uint8", "dynamic": True}]
STATIC = [WEIGHT, {"op_types": ["Linear"], "target_names": ["_input_"], "quant_dtype": "int8"}]


def tiny_bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=32, num_labels=3)
    return transformers.BertForSequenceClassification(config).eval()


def ids(batch=4, seq=16, seed=0):
    return torch.randint(0, 100, (batch, seq), generator=torch.Generator().manual_seed(seed))


def rel(a, b):
    a, b = first_output(a).float(), first_output(b).float()
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("backend", ["x86", "onnxruntime"])
def test_dynamic_int8_bert_round_trips_through_export_model_and_deploy(tmp_path, backend):
    model = tiny_bert()
    quantizer = PtqQuantizer(model, DYNAMIC)
    _, calibration = quantizer.compress([ids(seed=s) for s in range(2)])
    entry = calibration["bert.encoder.layer.0.attention.self.query"]["_input_0"]
    assert entry["dynamic"] and "scale" not in entry
    quantizer.export_model(tmp_path / "model.pth", tmp_path / "calibration.pth")

    fresh = tiny_bert()
    fresh.load_state_dict(torch.load(tmp_path / "model.pth"))
    loaded = torch.load(tmp_path / "calibration.pth", weights_only=False)
    deployed = deploy(fresh, loaded, ids(), backend=backend)
    x = ids(batch=8, seed=5)
    with torch.no_grad():
        fake, fp32 = model(x), fresh(x)
        out = deployed(x)
    assert rel(out, fake) < 0.05  # int8 kernels reproduce the simulation
    assert rel(fake, fp32) < 0.1
    assert any(r["source"] == "dynamic (per batch)" for r in deployed.report)
    assert rel(deployed(ids(batch=8, seed=6)), out) > 0.05  # depends on its input


def test_dynamic_x86_uses_our_weight_grid():
    model = tiny_bert()
    _, calibration = PtqQuantizer(model, DYNAMIC).compress([ids()])
    deployed = deploy(model, calibration, ids(), backend="x86")
    name = "bert.encoder.layer.1.output.dense"
    qweight = deployed.model.get_submodule(name).weight()
    assert torch.allclose(qweight.q_per_channel_scales().float(), calibration[name]["weight"]["scale"].flatten())


def test_static_int8_bert_on_onnxruntime_matches_fake_quant():
    model = tiny_bert()
    _, calibration = PtqQuantizer(model, STATIC).compress([ids(seed=s) for s in range(3)])
    x = ids(batch=8, seed=7)
    with torch.no_grad():
        fake = model(x)
    deployed = deploy(model, calibration, ids(), backend="onnxruntime")
    assert rel(deployed(x), fake) < 0.1
    assert rel(deployed(ids(batch=8, seed=8)), fake) > 0.1  # depends on its input
    assert any("matmul of activations" in r["source"] for r in deployed.report)


def test_static_int8_bert_on_x86_needs_no_trace_and_matches_fake_quant():
    """transformers' BERT does not trace with torch.fx: its Linear layers are swapped for int8 kernels
    one by one, inputs on the calibrated grids, weights on ours, outputs float."""
    from torchslim.quantization.int8.linear_x86 import Int8Linear

    model = tiny_bert()
    _, calibration = PtqQuantizer(model, STATIC).compress([ids(seed=s) for s in range(3)])
    x = ids(batch=8, seed=7)
    with torch.no_grad():
        fake, fp32 = model(x), float_copy(model)(x)
    deployed = deploy(model, calibration, ids(), backend="x86")
    linears = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]
    swapped = {n for n, m in deployed.model.named_modules() if isinstance(m, Int8Linear)}
    assert swapped == {n for n in linears if n in calibration}
    assert rel(deployed(x), fake) < 0.02  # the same grids; only float summation order differs
    assert rel(deployed(x), fp32) < 0.1
    assert rel(deployed(ids(batch=8, seed=8)), fake) > 0.1  # depends on its input
    entry = calibration[linears[0]]["_input_0"]
    layer = deployed.model.get_submodule(linears[0])
    assert layer.input_scale == pytest.approx(float(entry["scale"]))
    with torch.no_grad():  # the packed weights survive a copy
        assert torch.equal(first_output(copy.deepcopy(deployed)(x)), first_output(deployed(x)))


def test_dynamic_on_weights_is_rejected_in_the_users_words():
    with pytest.raises(ConfigError, match="dynamic"):
        PtqQuantizer(tiny_bert(), [{"op_types": ["Linear"], "target_names": ["weight"], "dynamic": True}])
    with pytest.raises(ConfigError, match="dynamic"):
        PtqQuantizer(tiny_bert(), [{"op_types": ["Linear"], "target_names": ["_input_"], "dynamic": "yes"}])


def tiny_gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=32, use_cache=False)
    return transformers.GPT2LMHeadModel(config).eval(), ids()


def tiny_torchvision_vit():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                                                 mlp_dim=64, num_classes=10)
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zero-initialises the head
    return model.eval(), torch.randn(4, 3, 32, 32)


# GPT-2 of current transformers does not export to ONNX with torch's TorchScript exporter (aten::diff
# in its mask code): 'auto' must fall back to the x86 dynamic kernels and say why.
@pytest.mark.parametrize("build, backends", [(tiny_gpt2, {"x86"}), (tiny_torchvision_vit, {"x86", "onnxruntime"})])
def test_dynamic_auto_on_gpt2_and_torchvision_vit(build, backends):
    model, x = build()
    _, calibration = PtqQuantizer(model, DYNAMIC).compress([x])
    with pytest.warns(UserWarning) if len(backends) == 1 else contextlib.nullcontext():
        deployed = deploy(model, calibration, x)
    choice = deployed.auto_choice
    assert choice["chosen"] in backends and set(choice["errors"]).isdisjoint(backends)
    with torch.no_grad():
        assert rel(deployed(x), model(x)) < 0.05
    assert all(t["rel_err"] < 0.05 for t in choice["timings"].values())


def _float_fed_ops(path):
    """Op types of the nodes that read a DequantizeLinear output (run on int8 data) in an ONNX file."""
    import onnx

    graph = onnx.load(str(path)).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.op_type for n in graph.node if n.op_type != "QuantizeLinear" and dequantized.intersection(n.input)}


def test_static_int8_vit_on_onnxruntime_keeps_normalisation_softmax_and_outputs_float(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from torchslim.quantization.int8 import ort_static

    model, x = tiny_torchvision_vit()
    calib = [torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(s)) for s in range(2)]
    _, calibration = PtqQuantizer(model, STATIC).compress(calib)
    test = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(9)) * 1.5  # wider than calibration
    with torch.no_grad():
        fake = model(test)
    deployed = deploy(model, calibration, calib[0], backend="onnxruntime", onnx_path=tmp_path / "vit.onnx")
    assert _float_fed_ops(deployed.path) <= {"MatMul", "Gemm", "Conv", "Add", "Shape", "Reshape", "Transpose"}
    ours = rel(deployed(test), fake)
    assert ours < 0.05
    # mutation: quantizing every op onnxruntime can (LayerNorm, Softmax, graph outputs) is what this guards against
    monkeypatch.setattr(ort_static, "op_types_to_quantize", lambda graph: None)
    everything = deploy(model, calibration, calib[0], backend="onnxruntime", onnx_path=tmp_path / "all.onnx")
    assert "LayerNormalization" in _float_fed_ops(everything.path)
    assert rel(everything(test), fake) > 2 * ours, (ours, rel(everything(test), fake))


@pytest.mark.parametrize("config", [STATIC, DYNAMIC], ids=["static", "dynamic"])
def test_multihead_attention_projections_run_int8_on_onnxruntime(tmp_path, config):
    """torchvision's attention keeps its q/k/v and output projections as parameters of
    nn.MultiheadAttention (no nn.Linear a config entry names): they run int8 with the Linear layers."""
    pytest.importorskip("onnxruntime")
    import onnx

    model, x = tiny_torchvision_vit()
    _, calibration = PtqQuantizer(model, config).compress([x])
    deployed = deploy(model, calibration, x, backend="onnxruntime", onnx_path=tmp_path / "vit.onnx")
    projections = [r for r in deployed.report if "MultiheadAttention" in r["source"]]
    assert len(projections) == 2 * 2  # in and out projection of both layers
    graph = onnx.load(str(deployed.path)).graph
    weights = {i.name for i in graph.initializer}
    float_weight_matmuls = [n for n in graph.node if n.op_type in ("MatMul", "Gemm") and set(n.input[:2]) & weights]
    assert not float_weight_matmuls  # every projection with a constant weight is quantized
    with torch.no_grad():
        assert rel(deployed(x), model(x)) < 0.05


def test_static_int8_vit_on_x86_runs_only_the_calibrated_layers_int8():
    """Between the calibrated Linear layers everything stays float, as in the fake-quant model: the
    residual stream, dropout, the class-token concat and the attention output are not put on 8-bit grids
    measured on one batch (they cost ViT-B/16 0.36 relative logit error)."""
    model, _ = tiny_torchvision_vit()
    calib = [torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(s)) for s in range(2)]
    _, calibration = PtqQuantizer(model, STATIC).compress(calib)
    deployed = deploy(model, calibration, calib[0], backend="x86")
    observed = [r["tensor"] for r in deployed.report if r.get("source") == "observed on example input"]
    assert not observed
    test = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        fake, fp32 = model(test), float_copy(model)(test)
        assert rel(deployed(test), fake) < 0.05
        assert rel(deployed(test), fp32) < 2 * rel(fake, fp32)
        other = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(10))
        assert rel(deployed(other), deployed(test)) > 0.1  # depends on its input


def test_multihead_attention_projections_run_int8_on_x86():
    from torchslim.quantization.int8.linear_x86 import Int8Linear, Int8SelfAttention

    model, x = tiny_torchvision_vit()
    _, calibration = PtqQuantizer(model, STATIC).compress([x])
    deployed = deploy(model, calibration, x, backend="x86")
    projections = [r for r in deployed.report if "MultiheadAttention" in r["source"]]
    assert len(projections) == 2 * 2  # in and out projection of both layers
    attention = [m for m in deployed.model.modules() if isinstance(m, Int8SelfAttention)]
    assert len(attention) == 2 and all(isinstance(m.in_proj, Int8Linear) for m in attention)
    with torch.no_grad():
        assert rel(deployed(x), float_copy(model)(x)) < 0.05
        # calls ViT does not make (weights returned, masks) run the float module kept inside
        tokens = torch.randn(4, 5, 32)
        out, weights = attention[0](tokens, tokens, tokens, need_weights=True)
        expected, expected_weights = attention[0].float_attention(tokens, tokens, tokens, need_weights=True)
        assert torch.equal(out, expected) and torch.equal(weights, expected_weights)
        seen = []
        hook = attention[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        deployed(x)
        hook.remove()
        int8_out, _ = attention[0](seen[0], seen[0], seen[0], need_weights=False)
        float_out, _ = attention[0].float_attention(seen[0], seen[0], seen[0], need_weights=False)
        assert 0 < rel(int8_out, float_out) < 0.05
