"""Huber / pinball losses, the quantile and min–max OCE models, and the data corruption helpers."""

import math

import pytest
import torch

from flatcast.data import add_input_noise, add_target_outliers, noise_std_for_snr, signal_power
from flatcast.data.splits import Splits, WindowSet
from flatcast.losses import huber_loss, pinball_loss
from flatcast.models import DLinearHuber, DLinearQuantile, MinMaxWindowOCE


def test_huber_hand_computed():
    pred = torch.tensor([0.0, 0.0, 0.0])
    y = torch.tensor([0.5, 2.0, -3.0])
    # 0.5*0.25, 1*(2-0.5), 1*(3-0.5)
    assert float(huber_loss(pred, y, 1.0)) == pytest.approx((0.125 + 1.5 + 2.5) / 3)
    # gradient capped at delta
    p = torch.tensor([0.0], requires_grad=True)
    huber_loss(p, torch.tensor([100.0]), 2.0).backward()
    assert float(p.grad) == pytest.approx(-2.0)


def test_pinball_loss_hand_computed():
    q = torch.tensor([[1.0, 2.0]])
    y = torch.tensor([1.5])
    # level 0.1 at 1: 0.1*0.5 = 0.05; level 0.9 at 2: (0.9-1)*(-0.5) = 0.05
    assert float(pinball_loss(q, y, [0.1, 0.9])) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        pinball_loss(q, y, [0.1])


def test_quantile_model_shapes_sorted_and_median():
    torch.manual_seed(0)
    m = DLinearQuantile(16, 4, 3)
    x = torch.randn(5, 3, 16)
    qs = m.predict_quantiles(x)
    assert qs.shape == (5, 3, 4, 7)
    assert bool((qs[..., 1:] >= qs[..., :-1]).all())
    assert torch.equal(m.predict(x), qs[..., 3])
    # initial spread follows the unit-normal offsets: the 97.5 % level sits above the 2.5 % one
    raw = m(x)
    assert float((raw[..., -1] - raw[..., 0]).mean().detach()) == pytest.approx(2 * 1.959964, abs=1e-4)
    loss = m.training_loss(x, torch.randn(5, 3, 4))
    loss.backward()
    with pytest.raises(ValueError):
        DLinearQuantile(16, 4, 3, levels=(0.1, 0.9))


def test_huber_model_uses_huber_loss():
    torch.manual_seed(0)
    m = DLinearHuber(8, 2, 1, delta=0.5)
    x, y = torch.randn(4, 1, 8), torch.randn(4, 1, 2) * 10
    assert float(m.training_loss(x, y)) == pytest.approx(float(huber_loss(m(x), y, 0.5)))


def test_minmax_oce_scaling_roundtrip_and_ranges():
    torch.manual_seed(0)
    m = MinMaxWindowOCE(16, 4, 2, n_bins=20)
    x = torch.randn(3, 2, 16) * 5 + 7
    lo, hi = m.input_range(x)
    scaled = m.scale(x, lo, hi)
    assert float(scaled.min()) == pytest.approx(-1, abs=1e-6) and float(scaled.max()) == pytest.approx(1, abs=1e-6)
    assert torch.allclose(m.unscale(scaled, lo, hi), x, atol=1e-5)
    pred = m.predict(x)
    # the forecast lies inside the input window's range (bin centres are inside [-1, 1])
    assert bool((pred >= lo - 1e-4).all() and (pred <= hi + 1e-4).all())
    edges = m.bin_edges(lo, hi)
    assert edges.shape == (3, 2, 1, 21)
    assert torch.allclose(edges[..., 0], lo, atol=1e-5) and torch.allclose(edges[..., -1], hi, atol=1e-4)
    y = torch.randn(3, 2, 4)
    m.training_loss(x, y).backward()


def test_minmax_oce_target_range_changes_the_soft_labels():
    torch.manual_seed(0)
    a = MinMaxWindowOCE(8, 3, 1, n_bins=10, target_range="input")
    b = MinMaxWindowOCE(8, 3, 1, n_bins=10, target_range="target")
    b.load_state_dict(a.state_dict())
    x = torch.linspace(0, 1, 8).reshape(1, 1, 8)
    y = torch.tensor([[[5.0, 6.0, 7.0]]])  # far above the input's range
    assert float(a.training_loss(x, y)) != pytest.approx(float(b.training_loss(x, y)))
    # with the oracle range the forecast is mapped into the target's own range
    pred = b.predict_with_range(x, y.amin(-1, keepdim=True), y.amax(-1, keepdim=True))
    assert bool((pred >= 5 - 1e-4).all() and (pred <= 7 + 1e-4).all())
    with pytest.raises(ValueError):
        MinMaxWindowOCE(8, 3, 1, target_range="future")


def _splits(T=200, D=2, L=10, H=5):
    gen = torch.Generator().manual_seed(0)
    series = torch.randn(T, D, generator=gen)
    a, b = int(0.6 * T), int(0.8 * T)
    parts = {"train": series[:a], "val": series[a:b], "test": series[b:]}
    ws = {k: WindowSet.from_series(v, L, H) for k, v in parts.items()}
    return Splits(ws["train"], ws["val"], ws["test"], "synthetic", L, H, D, torch.zeros(D), torch.ones(D),
                  {"train": (0, a), "val": (a, b), "test": (b, T)})


def test_snr_noise_has_the_right_power_and_leaves_targets_clean():
    assert float(noise_std_for_snr(1.0, 0.0)) == pytest.approx(1.0)
    assert float(noise_std_for_snr(4.0, 10.0)) == pytest.approx(math.sqrt(0.4))
    big = _splits(T=20000)
    noisy = add_input_noise(big, 3.0, seed=1)
    power = signal_power(big.train.series)
    noise = noisy.train.x[:, :, 0] - big.train.x[:, :, 0]
    measured_snr = 10 * torch.log10(power / noise.double().var(0))
    assert torch.allclose(measured_snr, torch.full_like(measured_snr, 3.0), atol=0.15)
    assert torch.equal(noisy.train.y, big.train.y) and torch.equal(noisy.test.y, big.test.y)
    assert not torch.equal(noisy.test.x, big.test.x)
    # deterministic, and the clean splits are untouched
    again = add_input_noise(big, 3.0, seed=1)
    assert torch.equal(again.val.x, noisy.val.x)


def test_target_outliers_touch_only_training_targets():
    s = _splits()
    out = add_target_outliers(s, 0.1, 5.0, seed=0)
    diff = (out.train.y - s.train.y).abs()
    assert torch.equal(out.train.x, s.train.x) and out.val is s.val and out.test is s.test
    assert set(torch.unique(diff.round(decimals=4)).tolist()) <= {0.0, 5.0}
    frac = out.extras["corruption"]["n_corrupted"] / s.train.series.numel()
    assert 0.05 < frac < 0.15
    with pytest.raises(ValueError):
        add_target_outliers(s, 1.5, 5.0)
    with pytest.raises(ValueError):
        add_input_noise(s, float("nan"))
