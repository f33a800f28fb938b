"""ModelSpeedup features: LeNet5 seed numbers, NNI signatures, save/load, round_to, reuse,
attention heads (nn.MultiheadAttention, BERT, ViT, GPT-2), dependency-aware pruning."""
import copy

import pytest
import torch
from torch import nn

from torchslim.models import LeNet, LeNet5
from torchslim.pruning import L1NormPruner, auto_set_dependency_group_ids
from torchslim.speedup import ModelSpeedup, SlimMultiheadAttention, load, save
from torchslim.utils.metrics import count_params

LENET_CONFIG = [{"op_types": ["Linear", "Conv2d"], "sparse_ratio": 0.8}, {"op_names": ["fc3"], "exclude": True}]


def test_lenet5_seed_numbers_and_masked_equals_shrunk():
    model = LeNet5()
    _, masks = L1NormPruner(model, LENET_CONFIG).compress()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        masked = model(x)
    assert count_params(model) == 44_426
    speedup = ModelSpeedup(model, torch.randn(1, 1, 28, 28), masks)
    assert speedup.speedup_model() is model
    assert count_params(model) == 2_421
    with torch.no_grad():
        torch.testing.assert_close(model(x), masked)  # no BN: the plain masked model is the reference
    rows = {r.name: r for r in speedup.report.layers}
    assert rows["fc1"].requested == pytest.approx(0.8) and rows["fc1"].achieved == pytest.approx(0.8)
    assert not model._forward_pre_hooks  # mask hooks are gone


def test_nni_v2_signature_with_masks_file(tmp_path):
    model = LeNet()
    _, masks = L1NormPruner(model, [{"sparsity": 0.5, "op_types": ["default"]}]).compress()
    torch.save(masks, tmp_path / "mask.pth")
    ModelSpeedup(model, torch.randn(1, 1, 28, 28), str(tmp_path / "mask.pth")).speedup_model()
    assert model.conv1.out_channels == 10 and model.fc1.in_features == 25 * 16


def test_save_and_load_round_trip(tmp_path):
    model = LeNet5()
    _, masks = L1NormPruner(model, LENET_CONFIG).compress()
    ModelSpeedup(model, torch.randn(1, 1, 28, 28), masks).speedup_model()
    save(model, tmp_path / "slim.pt")
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(load(tmp_path / "slim.pt", weights_only=False)(x), expected,
                                   rtol=0, atol=0)
        fresh = load(tmp_path / "slim.pt", model=LeNet5())  # resized from the shape spec
        torch.testing.assert_close(fresh(x), expected, rtol=0, atol=0)
    assert count_params(fresh) == 2_421


def test_round_to_keeps_multiples_and_exactness():
    model = LeNet()
    _, masks = L1NormPruner(model, [{"op_types": ["Conv2d", "Linear"], "sparse_ratio": 0.7},
                                    {"op_names": ["fc2"], "exclude": True}]).compress()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        masked = model(x)
    ModelSpeedup(model, x, masks, round_to=8).speedup_model()
    assert model.conv1.out_channels % 8 == 0 and model.conv2.out_channels % 8 == 0
    assert model.fc1.out_features % 8 == 0
    with torch.no_grad():
        torch.testing.assert_close(model(x), masked)


class Reused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.shared(x))
        x = torch.relu(self.shared(x))  # same module twice: its input and output channels are one
        return self.head(x.mean([2, 3]))


def test_reused_module():
    model = Reused().eval()
    row = torch.ones(8)
    row[[1, 4]] = 0
    masks = {"stem": {"weight": row.reshape(8, 1, 1, 1).expand(8, 3, 1, 1).clone(), "bias": row.clone()},
             "shared": {"weight": row.reshape(8, 1, 1, 1).expand(8, 8, 3, 3).clone(), "bias": row.clone()}}
    ModelSpeedup(model, torch.randn(2, 3, 6, 6), masks).speedup_model()
    assert model.shared.in_channels == model.shared.out_channels == 6


def _head_mask(rows: int, head_dim: int, dead_heads: list[int]) -> torch.Tensor:
    keep = torch.ones(rows // head_dim)
    keep[dead_heads] = 0
    return keep.repeat_interleave(head_dim)


def test_multihead_attention_heads():
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(16, 32), nn.Identity())
    mha = nn.MultiheadAttention(32, 4, batch_first=True)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj, self.attn, self.out = block, mha, nn.Linear(32, 3)

        def forward(self, x):
            h = self.proj(x)
            return self.out(self.attn(h, h, h, need_weights=False)[0])

    model = Net().eval()
    row = _head_mask(32, 8, [0, 2]).repeat(3)
    masks = {"attn": {"in_proj_weight": row[:, None].expand(96, 32).clone(), "in_proj_bias": row.clone()}}
    x = torch.randn(2, 5, 16)
    speedup = ModelSpeedup(model, x, masks)
    speedup.speedup_model()
    assert isinstance(model.attn, SlimMultiheadAttention) and model.attn.num_heads == 2
    assert model.attn.in_proj_weight.shape == (48, 32)
    out, weights = model.attn(torch.randn(2, 5, 32), torch.randn(2, 5, 32), torch.randn(2, 5, 32))
    assert out.shape == (2, 5, 32) and weights.shape == (2, 5, 5)


def _transformer_masks(model: nn.Module) -> dict:
    masks = {}
    for name, module in model.named_modules():
        kind = type(module).__name__
        if kind == "BertSelfAttention":
            row = _head_mask(module.all_head_size, module.attention_head_size, [0, 3])
            for proj in ("query", "key", "value"):
                w = getattr(module, proj).weight
                masks[f"{name}.{proj}"] = {"weight": row[:, None].expand_as(w).clone(), "bias": row.clone()}
        if kind == "ViTAttention":
            row = _head_mask(module.q_proj.weight.shape[0], module.head_dim, [1])
            for proj in ("q_proj", "k_proj", "v_proj"):
                w = getattr(module, proj).weight
                masks[f"{name}.{proj}"] = {"weight": row[:, None].expand_as(w).clone(), "bias": row.clone()}
        if kind == "GPT2Attention":
            col = _head_mask(module.split_size, module.head_dim, [2]).repeat(3)
            masks[f"{name}.c_attn"] = {"weight": col[None].expand_as(module.c_attn.weight).clone(), "bias": col.clone()}
    return masks


def _tiny(kind: str):
    transformers = pytest.importorskip("transformers")
    if kind == "bert":
        cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                      vocab_size=50, attn_implementation="eager")
        return transformers.BertModel(cfg), torch.randint(0, 50, (2, 6))
    if kind == "vit":
        cfg = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                     image_size=16, patch_size=8, attn_implementation="eager")
        return transformers.ViTModel(cfg), torch.randn(2, 3, 16, 16)
    cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=50, n_positions=16, use_cache=False,
                                  attn_implementation="eager", bos_token_id=0, eos_token_id=0)
    return transformers.GPT2Model(cfg), torch.randint(0, 50, (2, 6))


@pytest.mark.parametrize("kind", ["bert", "vit", "gpt2"])
def test_transformer_heads_and_ffn(kind):
    torch.manual_seed(0)
    model, x = _tiny(kind)
    model.eval()
    if kind == "gpt2":  # transformers' Conv1D stores [in, out]: mask output columns by hand
        masks = {}
        for name, module in model.named_modules():
            if name.endswith("mlp.c_fc"):
                keep = torch.ones(module.nf)
                keep[module.weight.abs().sum(0).argsort()[: int(0.3 * module.nf)]] = 0
                masks[name] = {"weight": keep[None].expand_as(module.weight).clone(), "bias": keep.clone()}
    else:
        ffn = {"bert": "intermediate.dense", "vit": "mlp.fc1"}[kind]
        _, masks = L1NormPruner(model, [{"op_names_re": [rf".*{ffn}"], "sparse_ratio": 0.3}]).compress()
    masks.update(_transformer_masks(model))
    before = count_params(model)
    speedup = ModelSpeedup(model, x, masks)
    speedup.speedup_model()
    assert count_params(model) < before
    heads = [r for r in speedup.report.layers if "heads" in r.sizes]
    assert heads and all(r.sizes["heads"][1] < r.sizes["heads"][0] for r in heads)
    if kind == "bert":
        attn = model.encoder.layer[0].attention.self
        assert attn.num_attention_heads == 2 and attn.all_head_size == 16
        assert model.encoder.layer[0].intermediate.dense.out_features == 45
    if kind == "gpt2":
        assert model.h[0].attn.num_heads == 3 and model.h[0].attn.split_size == 24


def test_dependency_aware_mode_prunes_coupled_layers_alike():
    torch.manual_seed(0)
    from tests.graph.test_channel_rules import Residual

    model = Residual().eval()
    x = torch.randn(1, 3, 8, 8)
    config = [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}]
    new = auto_set_dependency_group_ids(model, config, x)
    groups = {e["op_names"][0]: e["dependency_group_id"] for e in new if "dependency_group_id" in e}
    assert groups["stem"] == groups["conv2"] and "conv1" not in groups
    from torchslim.pruning import L1NormPruner as P

    pruner = P(copy.deepcopy(model), config, mode="dependency_aware", dummy_input=x)
    _, masks = pruner.compress()
    assert torch.equal(masks["stem"]["weight"][:, 0, 0, 0], masks["conv2"]["weight"][:, 0, 0, 0])
    m = pruner.unwrap_model()
    ModelSpeedup(m, x, masks).speedup_model()
    assert m.stem.out_channels == 4
