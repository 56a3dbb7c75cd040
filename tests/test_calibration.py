"""Calibration metrics against hand-computed values and closed forms."""

import math

import pytest
import torch

from flatcast import calibration as cal


def test_crps_of_one_uniform_bin_matches_closed_form():
    # U(a, b): CRPS(y) = ((y-a)^3 + (b-y)^3) / (3 (b-a)^2) inside; (a - y) + (b-a)/3 below a.
    a, b = -1.0, 3.0
    q = torch.tensor([1.0], dtype=torch.float64)
    edges = torch.tensor([a, b], dtype=torch.float64)
    for y in (-1.0, 0.0, 1.0, 2.5, 3.0):
        expected = ((y - a) ** 3 + (b - y) ** 3) / (3 * (b - a) ** 2)
        got = float(cal.crps_binned(q, edges, torch.tensor(y, dtype=torch.float64)))
        assert got == pytest.approx(expected, rel=1e-12)
    # outside the support: distance to the support plus the CRPS at the nearest edge
    got = float(cal.crps_binned(q, edges, torch.tensor(-3.0, dtype=torch.float64)))
    assert got == pytest.approx(2.0 + (b - a) / 3, rel=1e-12)


def test_crps_two_bins_hand_computed():
    # bins [0,1], [1,2] with masses 0.25, 0.75; y = 1: F goes 0 -> 0.25 on [0,1], 0.25 -> 1 on [1,2]
    # ∫_0^1 F^2 = 0.25^2/3; ∫_1^2 (F-1)^2 = 0.75^2/3
    q = torch.tensor([0.25, 0.75], dtype=torch.float64)
    edges = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    got = float(cal.crps_binned(q, edges, torch.tensor(1.0, dtype=torch.float64)))
    assert got == pytest.approx((0.25**2 + 0.75**2) / 3, rel=1e-12)


def test_crps_gaussian_closed_form_values():
    # At z = 0: s (2 φ(0) - 1/√π) = s (2/√(2π) - 1/√π)
    s = 2.0
    got = float(cal.crps_gaussian(torch.tensor(0.0), torch.tensor(s), torch.tensor(0.0)))
    assert got == pytest.approx(s * (2 / math.sqrt(2 * math.pi) - 1 / math.sqrt(math.pi)), rel=1e-6)
    # far from the mean CRPS -> |y - μ| - s/√π
    got = float(cal.crps_gaussian(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64),
                                  torch.tensor(30.0, dtype=torch.float64)))
    assert got == pytest.approx(30 - 1 / math.sqrt(math.pi), rel=1e-12)


def test_binned_crps_of_a_finely_binned_gaussian_approaches_the_closed_form():
    edges = torch.linspace(-10, 10, 4001, dtype=torch.float64)
    cdf = torch.special.ndtr(edges)
    q = cdf[1:] - cdf[:-1]
    y = torch.tensor([-2.0, -0.3, 0.0, 1.1, 4.0], dtype=torch.float64)
    binned = cal.crps_binned(q, edges, y)
    exact = cal.crps_gaussian(torch.zeros_like(y), torch.ones_like(y), y)
    assert torch.allclose(binned, exact, atol=1e-5)


def test_crps_equals_integral_of_pinball_losses():
    # CRPS = 2 ∫ pinball_τ(F^{-1}(τ), y) dτ for the binned distribution (numerical check)
    q = torch.tensor([0.1, 0.5, 0.4], dtype=torch.float64)
    edges = torch.tensor([0.0, 1.0, 3.0, 4.0], dtype=torch.float64)
    y = torch.tensor(2.2, dtype=torch.float64)
    taus = torch.linspace(0.00005, 0.99995, 10000, dtype=torch.float64)
    quant = torch.stack([cal.binned_quantile(q, edges, float(t)) for t in taus])
    integral = float(2 * torch.stack([cal.pinball(qq, y, float(t)) for qq, t in zip(quant, taus)]).mean())
    assert integral == pytest.approx(float(cal.crps_binned(q, edges, y)), rel=1e-3)


def test_binned_cdf_and_quantile_are_inverse_and_hand_computed():
    q = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    edges = torch.tensor([0.0, 1.0, 2.0, 4.0], dtype=torch.float64)
    assert float(cal.binned_cdf(q, edges, torch.tensor(1.5, dtype=torch.float64))) == pytest.approx(0.35)
    assert float(cal.binned_cdf(q, edges, torch.tensor(-1.0, dtype=torch.float64))) == 0.0
    assert float(cal.binned_cdf(q, edges, torch.tensor(9.0, dtype=torch.float64))) == 1.0
    assert float(cal.binned_quantile(q, edges, 0.75)) == pytest.approx(3.0)
    for level in (0.05, 0.2, 0.5, 0.9):
        x = cal.binned_quantile(q, edges, level)
        assert float(cal.binned_cdf(q, edges, x)) == pytest.approx(level, abs=1e-12)


def test_per_element_edges_broadcast():
    q = torch.tensor([[0.5, 0.5], [0.5, 0.5]], dtype=torch.float64)
    edges = torch.tensor([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]], dtype=torch.float64)
    y = torch.tensor([1.0, 11.0], dtype=torch.float64)
    assert torch.allclose(cal.binned_cdf(q, edges, y), torch.tensor([0.5, 0.5], dtype=torch.float64))
    crps = cal.crps_binned(q, edges, y)
    assert torch.allclose(crps[0], crps[1])


def test_pinball_coverage_and_pit_histogram():
    assert float(cal.pinball(torch.tensor(1.0), torch.tensor(3.0), 0.9)) == pytest.approx(1.8)
    assert float(cal.pinball(torch.tensor(1.0), torch.tensor(-1.0), 0.9)) == pytest.approx(0.2)
    lower, upper = torch.tensor([0.0, 0.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 1.0, 1.0])
    assert cal.interval_coverage(lower, upper, torch.tensor([0.5, 1.0, 1.5, -0.1])) == 0.5
    hist = cal.pit_histogram(torch.tensor([0.05, 0.15, 0.95, 0.96]), n_bins=10)
    assert hist[0] == 0.25 and hist[1] == 0.25 and hist[9] == 0.5 and hist.sum() == pytest.approx(1)


def test_calibrated_gaussian_has_uniform_pit_and_nominal_coverage():
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(200_000, generator=gen, dtype=torch.float64)
    std = torch.full_like(mean, 0.7)
    y = mean + std * torch.randn(200_000, generator=gen, dtype=torch.float64)
    hist = cal.pit_histogram(cal.gaussian_cdf(mean, std, y), 10)
    assert abs(hist - 0.1).max() < 0.005
    lo, hi = cal.gaussian_quantile(mean, std, 0.1), cal.gaussian_quantile(mean, std, 0.9)
    assert cal.interval_coverage(lo, hi, y) == pytest.approx(0.8, abs=0.005)


def test_crps_from_quantiles_underestimates_but_approaches_exact():
    levels = [i / 100 for i in range(1, 100)]
    y = torch.tensor([0.3], dtype=torch.float64)
    qs = torch.stack([cal.gaussian_quantile(torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64), t)
                      for t in levels], -1)
    approx = float(cal.crps_from_quantiles(qs, y, levels))
    exact = float(cal.crps_gaussian(torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64), y))
    assert approx < exact and approx == pytest.approx(exact, rel=0.05)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        cal.crps_binned(torch.tensor([0.5, 0.5]), torch.tensor([0.0, 1.0]), torch.tensor(0.0))
    with pytest.raises(ValueError):
        cal.crps_binned(torch.tensor([0.5, 0.5]), torch.tensor([0.0, 2.0, 1.0]), torch.tensor(0.0))
    with pytest.raises(ValueError):
        cal.crps_gaussian(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0))
    with pytest.raises(ValueError):
        cal.pinball(torch.tensor(0.0), torch.tensor(0.0), 1.5)
