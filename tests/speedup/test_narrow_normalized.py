"""narrow_normalized=True: LayerNorm'd residual streams narrowed (ViT- and ConvNeXt-like), the
deviation from the masked model reported, strict raising, the default staying exact."""
import contextlib
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchslim.errors import SpeedupError
from torchslim.pruning import L1NormPruner, auto_set_dependency_group_ids
from torchslim.speedup import ModelSpeedup, load, save
from torchslim.utils.metrics import count_params


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, width_from_input: bool = False) -> None:
        super().__init__()
        self.dim, self.heads, self.width_from_input = dim, heads, width_from_input
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        width = c if self.width_from_input else self.dim  # timm reads it from x: the stream's width
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, width))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, width_from_input: bool) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, width_from_input)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.gamma = nn.Parameter(torch.rand(dim) + 0.5)  # layer scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.gamma * self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, depth: int = 2, width_from_input: bool = False) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, 4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 17, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, width_from_input) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


class LayerNorm2d(nn.LayerNorm):
    """torchvision's: traced through, so the analysis sees F.layer_norm between permutes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1, self.pw2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.layer_scale = nn.Parameter(torch.rand(dim, 1, 1) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.pw2(F.gelu(self.pw1(y))).permute(0, 3, 1, 2)
        return x + self.layer_scale * y


class TinyConvNeXt(nn.Module):
    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dim, 4, 4), LayerNorm2d(dim))
        self.blocks = nn.Sequential(CNBlock(dim), CNBlock(dim))
        self.down = nn.Sequential(LayerNorm2d(dim), nn.Conv2d(dim, 2 * dim, 2, 2))
        self.last = CNBlock(2 * dim)
        self.head = nn.Linear(2 * dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.last(self.down(self.blocks(self.stem(x))))
        return self.head(x.mean((2, 3)))


def _prune(model: nn.Module, x: torch.Tensor, narrow: bool, ratio: float = 0.3) -> dict:
    config = [{"op_types": ["Conv2d", "Linear"], "sparse_ratio": ratio}, {"op_names": ["head"], "exclude": True}]
    config = auto_set_dependency_group_ids(model, config, x, narrow_normalized=narrow)
    _, masks = L1NormPruner(model, config, dummy_input=x).compress()
    return masks


def _narrowed(model: nn.Module, x: torch.Tensor, **options) -> tuple[ModelSpeedup, float]:
    before = count_params(model)
    masks = _prune(model, x, True)
    speedup = ModelSpeedup(model, x, masks, narrow_normalized=True, **options)
    with pytest.warns(UserWarning, match="LayerNorm over a narrowed stream"):
        speedup.speedup_model()
    return speedup, count_params(model) / before


def _vit(**kwargs) -> TinyViT:
    torch.manual_seed(0)
    return TinyViT(**kwargs).eval()


X_VIT = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_default_keeps_layernormed_stream_whole_and_exact():
    model = _vit()
    before = count_params(model)
    speedup = ModelSpeedup(model, X_VIT, _prune(model, X_VIT, False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exact: nothing to warn about
        speedup.speedup_model()
    assert speedup.report.check.status == "equal" and speedup.report.deviation is None
    assert model.norm.normalized_shape == (32,) and model.pos_embed.shape[-1] == 32
    assert count_params(model) / before > 0.8  # only the MLPs' hidden widths shrank


def test_vit_like_stream_narrowed_with_deviation_reported():
    model = _vit()
    speedup, kept = _narrowed(model, X_VIT)
    report = speedup.report
    width = model.norm.normalized_shape[0]
    assert width < 32 and model.norm.weight.shape == (width,)
    assert model.pos_embed.shape == (1, 17, width) and model.cls_token.shape == (1, 1, width)
    assert model.blocks[0].gamma.shape == (width,) and model.patch.out_channels == width
    assert kept < 0.7  # the stream goes too (whole: 0.87)
    assert model(X_VIT).shape == (2, 10)
    # the shrunk model equals the narrowed reference, but is not called equal to the masked one
    assert report.check.status == "narrowed" and report.check.passed
    assert report.deviation["relative"] > 0.01 and "LayerNorm over a narrowed stream" in report.deviation["cause"]
    assert report.deviation["narrowed_layernorms"] == 5
    assert {"cls_token", "pos_embed", "blocks.0.gamma"} <= {r.name for r in report.layers}


def test_convnext_like_blocks_narrowed_to_about_the_requested_share():
    torch.manual_seed(0)
    model = TinyConvNeXt().eval()
    x = torch.randn(2, 3, 32, 32)
    speedup, kept = _narrowed(model, x)
    assert 0.4 < kept < 0.6  # 30% of every layer's channels: about half the params
    assert model.stem[1].normalized_shape[0] == model.stem[0].out_channels < 16
    assert model.blocks[0].layer_scale.shape[0] == model.stem[0].out_channels
    assert speedup.report.check.status == "narrowed"
    assert model(x).shape == (2, 10)


def test_strict_raises_and_restores():
    model = _vit()
    masks = _prune(model, X_VIT, True)
    with pytest.raises(SpeedupError, match="LayerNorm over a narrowed stream"):
        ModelSpeedup(model, X_VIT, masks, narrow_normalized=True, strict=True).speedup_model()
    assert model.norm.normalized_shape == (32,) and model.pos_embed.shape == (1, 17, 32)


def test_check_fails_without_the_narrowed_reference(monkeypatch):
    """Mutation: compared with the masked model as it is, the narrowed model differs."""
    from torchslim.speedup import narrow

    monkeypatch.setattr(narrow, "narrowed_reference", lambda model, narrowing: contextlib.nullcontext())
    model = _vit()
    masks = _prune(model, X_VIT, True)
    with pytest.raises(SpeedupError, match="does not match"):
        ModelSpeedup(model, X_VIT, masks, narrow_normalized=True).speedup_model()
    assert model.norm.normalized_shape == (32,)


def test_width_read_from_the_stream_keeps_it_whole():
    """timm's attention reshapes with C from x.shape: narrowing the stream would break it."""
    model = _vit(width_from_input=True)
    masks = _prune(model, X_VIT, True)
    speedup = ModelSpeedup(model, X_VIT, masks, narrow_normalized=True)
    speedup.speedup_model()
    assert model.norm.normalized_shape == (32,) and speedup.report.check.status == "equal"


def test_save_and_load_a_narrowed_model(tmp_path):
    model = _vit()
    _narrowed(model, X_VIT)
    save(model, tmp_path / "m.pt")
    fresh = load(tmp_path / "m.pt", model=_vit())
    assert fresh.pos_embed.shape == model.pos_embed.shape and fresh.norm.normalized_shape == model.norm.normalized_shape
    torch.testing.assert_close(fresh(X_VIT), model(X_VIT))


def test_torchvision_vit_with_multihead_attention_narrowed():
    """nn.MultiheadAttention reads the stream through its in-projection's columns; the patch
    embedding's reshape writes the width as a number (rewritten, with the graph's parameters)."""
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                              num_classes=10).eval()
    with torch.no_grad():
        model.heads.head.weight.normal_(0, 0.25)  # zero-initialised: the output would ignore the input
    config = [{"op_types": ["Conv2d", "Linear", "NonDynamicallyQuantizableLinear"], "sparse_ratio": 0.3},
              {"op_names": ["heads.head"], "exclude": True}]
    x = torch.randn(2, 3, 16, 16)
    config = auto_set_dependency_group_ids(model, config, x, narrow_normalized=True)
    _, masks = L1NormPruner(model, config, dummy_input=x).compress()
    speedup = ModelSpeedup(model, x, masks, narrow_normalized=True)
    with pytest.warns(UserWarning, match="LayerNorm over a narrowed stream"):
        speedup.speedup_model()
    width = model.encoder.ln.normalized_shape[0]
    assert width < 16 and model.class_token.shape[-1] == width and model.encoder.pos_embedding.shape[-1] == width
    assert model.encoder.layers[0].self_attention.in_proj_weight.shape[1] == width
    assert speedup.report.check.status == "narrowed"
    assert model(torch.randn(3, 3, 16, 16)).shape == (3, 10)
