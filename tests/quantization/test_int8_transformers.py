"""int8 for Linear-heavy transformers: static (calibrated activations) and dynamic (per-batch ranges)."""
import pytest
import torch

from torchslim.errors import ConfigError
from torchslim.quantization import PtqQuantizer, deploy
from torchslim.quantization.int8.common import first_output

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


def test_dynamic_on_weights_is_rejected_in_the_users_words():
    with pytest.raises(ConfigError, match="dynamic"):
        PtqQuantizer(tiny_bert(), [{"op_types": ["Linear"], "target_names": ["weight"], "dynamic": True}])
    with pytest.raises(ConfigError, match="dynamic"):
        PtqQuantizer(tiny_bert(), [{"op_types": ["Linear"], "target_names": ["_input_"], "dynamic": "yes"}])
