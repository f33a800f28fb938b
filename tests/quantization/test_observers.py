"""Observers and schemes against hand-computed scales and zero points."""
import pytest
import torch

from torchslim.quantization import EMAObserver, MSEObserver, Observer, PercentileObserver, qparams
from torchslim.quantization.config import parse_dtype


def units(values):
    return torch.tensor(values, dtype=torch.float).reshape(1, -1)


def test_affine_int8_covers_range_and_zero():
    scale, zp = qparams(torch.tensor(-1.0), torch.tensor(3.0), parse_dtype("int8"), "affine")
    assert scale.item() == pytest.approx(4 / 255)
    assert zp.item() == -128 - round(-1 / (4 / 255))  # = -64: 0.0 maps exactly to an integer
    assert zp.item() == -64


def test_affine_uint8_of_nonnegative_range_has_zero_point_zero():
    scale, zp = qparams(torch.tensor(0.0), torch.tensor(2.55), parse_dtype("uint8"), "affine")
    assert scale.item() == pytest.approx(0.01)
    assert zp.item() == 0


def test_affine_range_is_widened_to_hold_zero():
    scale, zp = qparams(torch.tensor(1.0), torch.tensor(2.55), parse_dtype("uint8"), "affine")
    assert scale.item() == pytest.approx(0.01) and zp.item() == 0


@pytest.mark.parametrize("dtype, expected_scale, expected_zp", [
    ("int8", 2 / 127, 0), ("uint8", 2 / 127, 128), ("int4", 2 / 7, 0), ("uint4", 2 / 7, 8),
])
def test_symmetric_scale_and_zero_point(dtype, expected_scale, expected_zp):
    scale, zp = qparams(torch.tensor(-2.0), torch.tensor(1.0), parse_dtype(dtype), "symmetric")
    assert scale.item() == pytest.approx(expected_scale)
    assert zp.item() == expected_zp


def test_per_channel_qparams_are_per_unit():
    lo, hi = torch.tensor([[-1.0], [-0.5]]), torch.tensor([[1.0], [0.25]])
    scale, zp = qparams(lo, hi, parse_dtype("int8"), "symmetric")
    assert torch.allclose(scale, torch.tensor([[1 / 127], [0.5 / 127]]))
    assert torch.equal(zp, torch.zeros(2, 1))


def test_minmax_observer_tracks_extremes_over_batches():
    obs = Observer()
    obs.update(units([0.0, 1.0, -2.0]))
    obs.update(units([5.0, -1.0]))
    assert obs.min.item() == -2.0 and obs.max.item() == 5.0


def test_ema_observer_averages_batch_ranges():
    obs = EMAObserver(decay=0.9)
    obs.update(units([-1.0, 1.0]))
    obs.update(units([-3.0, 11.0]))
    assert obs.min.item() == pytest.approx(0.9 * -1 + 0.1 * -3)
    assert obs.max.item() == pytest.approx(0.9 * 1 + 0.1 * 11)


def test_percentile_observer_clips_outliers():
    torch.manual_seed(0)
    data = torch.linspace(-1, 1, 10001)
    data[0], data[-1] = -100.0, 100.0
    obs = PercentileObserver(99.9)
    obs.update(data.reshape(1, -1))
    lo, hi = obs.range(parse_dtype("int8"), "affine")
    assert -1.01 < lo.item() < -0.99 and 0.99 < hi.item() < 1.01
    assert obs.min.item() == -100.0  # the tracked range is still the true one


def test_mse_observer_clips_a_heavy_tail_and_lowers_error():
    torch.manual_seed(0)
    data = torch.distributions.Laplace(0.0, 1.0).sample((1, 4000))
    obs = MSEObserver()
    obs.update(data)
    dtype = parse_dtype("int4")
    lo, hi = obs.range(dtype, "affine")
    assert hi.item() < obs.max.item() and lo.item() > obs.min.item()

    def mse(lo, hi):
        s, z = qparams(lo, hi, dtype, "affine")
        q = (torch.clamp(torch.round(data / s) + z, dtype.qmin, dtype.qmax) - z) * s
        return (q - data).pow(2).mean().item()

    assert mse(lo, hi) < 0.7 * mse(obs.min, obs.max)
