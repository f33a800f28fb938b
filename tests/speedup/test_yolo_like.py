"""A YOLO-style detector written here: C2f-like split/concat, SPPF, a module called twice,
upsample + concat, two output scales. Structure only, random init."""
import torch
import torch.nn.functional as F
from torch import nn

from torchslim.pruning import L1NormPruner, auto_set_dependency_group_ids
from torchslim.speedup import ModelSpeedup
from torchslim.utils.metrics import count_params


def cbs(c_in, c_out, k=1, s=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.SiLU())


class Bottleneck(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.cv1, self.cv2 = cbs(c, c, 3), cbs(c, c, 3)

    def forward(self, x):
        return x + self.cv2(self.cv1(x))


class C2f(nn.Module):
    def __init__(self, c_in, c_out, n=2):
        super().__init__()
        self.c = c_out // 2
        self.cv1 = cbs(c_in, 2 * self.c)
        self.m = nn.ModuleList(Bottleneck(self.c) for _ in range(n))
        self.cv2 = cbs((2 + n) * self.c, c_out)

    def forward(self, x):
        y = list(self.cv1(x).split((self.c, self.c), 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.cv1 = cbs(c_in, c_in // 2)
        self.cv2 = cbs(c_in // 2 * 4, c_out)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.pool(x)  # the same module three times
        y2 = self.pool(y1)
        return self.cv2(torch.cat([x, y1, y2, self.pool(y2)], 1))


class TinyYolo(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.stem = cbs(3, 16, 3, 2)
        self.p3 = nn.Sequential(cbs(16, 32, 3, 2), C2f(32, 32))
        self.p4 = nn.Sequential(cbs(32, 64, 3, 2), C2f(64, 64), SPPF(64, 64))
        self.fuse = C2f(64 + 32, 32)
        self.down = cbs(32, 32, 3, 2)
        self.fuse2 = C2f(32 + 64, 64)
        self.head3, self.head4 = nn.Conv2d(32, 4 + classes, 1), nn.Conv2d(64, 4 + classes, 1)

    def forward(self, x):
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        n3 = self.fuse(torch.cat([F.interpolate(p4, scale_factor=2.0, mode="nearest"), p3], 1))
        n4 = self.fuse2(torch.cat([self.down(n3), p4], 1))
        return [self.head3(n3), self.head4(n4)]


def test_yolo_like_detector_shrinks_as_requested():
    torch.manual_seed(0)
    model = TinyYolo()
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))  # BatchNorm statistics of real activations
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    config = [{"op_types": ["Conv2d"], "sparse_ratio": 0.3}, {"op_names": ["head3", "head4"], "exclude": True}]
    _, masks = L1NormPruner(model, auto_set_dependency_group_ids(model, config, x)).compress()
    before = count_params(model)
    speedup = ModelSpeedup(model, x, masks)
    speedup.speedup_model()  # checked: both scales equal the masked model's
    assert not speedup.report.barriers and not speedup.report.untraced
    # every layer asked to shrink did (a C2f split half shared with a residual chain keeps a few more)
    assert all(r.achieved > 0 for r in speedup.report.layers if r.requested)
    assert count_params(model) < 0.65 * before
    assert model.p4[2].cv1[0].out_channels < 32 and model.fuse.cv1[0].out_channels < 32
    out = model(x)
    assert [o.shape[1] for o in out] == [7, 7]
    assert not torch.allclose(out[0], model(torch.randn_like(x))[0])  # the check was not vacuous
