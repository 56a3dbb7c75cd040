"""Tests for flatcast.targets: bins, target → probabilities (OCE-TS Eq. 8–11), values and quantiles (Eq. 18)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from flatcast.targets import (
    DISTRIBUTIONS,
    Bins,
    prediction_interval,
    probs_to_quantile,
    probs_to_value,
    standardized_cdf,
    target_to_cumulative,
    target_to_probs,
)


# ----------------------------------------------------------------------------------------------------- Bins
def test_bins_edges_centres_width_by_hand():
    bins = Bins(0.0, 3.0, 3)
    torch.testing.assert_close(bins.edges, torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(bins.centres, torch.tensor([0.5, 1.5, 2.5], dtype=torch.float64))
    assert bins.width == 1.0
    assert bins.edges_like(torch.zeros(1, dtype=torch.float32)).dtype == torch.float32


@pytest.mark.parametrize(
    "args, error",
    [((1.0, 1.0, 5), ValueError), ((2.0, 1.0, 5), ValueError), ((0.0, 1.0, 1), ValueError),
     ((0.0, 1.0, 2.5), TypeError), ((0.0, float("inf"), 4), ValueError)],
)
def test_bins_reject_bad_arguments(args, error):
    with pytest.raises(error):
        Bins(*args)


def test_bins_from_data_adds_margin_and_validates():
    y = torch.tensor([[-1.0, 0.0], [2.0, 1.0]])
    bins = Bins.from_data(y, n_bins=10, margin=0.1)
    assert bins.low == pytest.approx(-1.3) and bins.high == pytest.approx(2.3) and bins.n_bins == 10
    assert Bins.from_data(np.array([0.0, 4.0]), 4, margin=0.0) == Bins(0.0, 4.0, 4)
    with pytest.raises(ValueError, match="constant"):
        Bins.from_data(torch.ones(5), 10)
    with pytest.raises(ValueError, match="margin"):
        Bins.from_data(y, 10, margin=-0.1)
    with pytest.raises(ValueError, match="NaN"):
        Bins.from_data(torch.tensor([0.0, float("nan")]), 10)


# ------------------------------------------------------------------------------------------- target_to_probs
def test_gaussian_probs_match_hand_computed_truncated_masses():
    # Bins [0,1), [1,2), [2,3]; y = 1.2, sigma = 0.5: p_k ∝ Φ((e_k - y)/σ) - Φ((e_{k-1} - y)/σ).
    bins = Bins(0.0, 3.0, 3)
    cdf = stats.norm.cdf((np.array([0.0, 1.0, 2.0, 3.0]) - 1.2) / 0.5)
    expected = np.diff(cdf) / (cdf[-1] - cdf[0])
    p = target_to_probs(torch.tensor([1.2], dtype=torch.float64), bins, 0.5)
    np.testing.assert_allclose(p[0].numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_probs_nonnegative_sum_to_one_any_shape(distribution, dtype):
    bins = Bins(-2.0, 2.0, 40)
    gen = torch.Generator().manual_seed(0)
    y = 3 * torch.randn(2, 3, 5, generator=gen, dtype=dtype)  # some outside [a, b]: clipped
    for sigma in (1e-3, 0.05, 0.7, 10.0):
        p = target_to_probs(y, bins, sigma, distribution)
        assert p.shape == (2, 3, 5, 40) and p.dtype == dtype
        assert (p >= 0).all()
        torch.testing.assert_close(p.sum(-1), torch.ones_like(y))


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_expected_value_recovers_target_within_a_bin_width(distribution):
    bins = Bins(0.0, 1.0, 50)
    # Interior points and points at / near / beyond both edges (clipped into [a, b]).
    y = torch.tensor([0.0, 0.003, 0.1234, 0.5, 0.77, 0.999, 1.0], dtype=torch.float64)
    p = target_to_probs(y, bins, sigma=0.002, distribution=distribution)
    value = probs_to_value(p, bins)
    assert ((value - y).abs() <= bins.width).all(), (value - y)
    outside = target_to_probs(torch.tensor([-5.0, 7.0]), bins, 0.002, distribution)
    torch.testing.assert_close(outside, target_to_probs(torch.tensor([0.0, 1.0]), bins, 0.002, distribution))


def test_tiny_sigma_puts_all_mass_in_the_bin_of_y():
    bins = Bins(0.0, 1.0, 10)
    p = target_to_probs(torch.tensor([0.23, 0.61]), bins, 1e-5)
    expected = torch.zeros(2, 10)
    expected[0, 2] = 1.0
    expected[1, 6] = 1.0
    torch.testing.assert_close(p, expected)


def test_far_tail_bins_are_accurate_not_cancelled():
    # Mass of a bin 6-7 sigmas above y: the upper-tail formula keeps it at ~1e-11 relative accuracy in float64.
    bins = Bins(0.0, 1.0, 10)
    p = target_to_probs(torch.tensor([0.05], dtype=torch.float64), bins, 0.1)
    cdf = stats.norm.cdf((np.linspace(0, 1, 11) - 0.05) / 0.1)
    sf = stats.norm.sf((np.linspace(0, 1, 11) - 0.05) / 0.1)
    expected_last = (sf[-2] - sf[-1]) / (cdf[-1] - cdf[0])
    assert p[0, -1].item() == pytest.approx(expected_last, rel=1e-9)


def test_wider_distributions_spread_more():
    # Same sigma: Student-t (ν=5, variance 5/3 σ²) is wider than the unit-variance Gaussian and Laplace, and all
    # are symmetric about a centred y.
    bins = Bins(-1.0, 1.0, 20)
    y = torch.tensor([0.0], dtype=torch.float64)
    variance = {}
    for d in DISTRIBUTIONS:
        p = target_to_probs(y, bins, 0.2, d)[0]
        torch.testing.assert_close(p, p.flip(0))
        variance[d] = float((p * bins.centres**2).sum())
    assert variance["student_t"] > variance["gaussian"]
    assert variance["laplace"] < variance["student_t"]


@pytest.mark.parametrize("df", [1, 2, 3, 5, 8, 1.5, 2.5, 7.3])
def test_student_t_cdf_matches_scipy(df):
    t = torch.linspace(-200, 200, 801, dtype=torch.float64)
    np.testing.assert_allclose(standardized_cdf(t, "student_t", df).numpy(), stats.t.cdf(t.numpy(), df), atol=1e-9)


def test_laplace_cdf_has_unit_variance_scale():
    z = torch.linspace(-30, 30, 301, dtype=torch.float64)
    expected = stats.laplace.cdf(z.numpy(), scale=1 / math.sqrt(2))
    np.testing.assert_allclose(standardized_cdf(z, "laplace").numpy(), expected, atol=1e-15)


def test_target_to_probs_rejects_bad_input():
    bins = Bins(0.0, 1.0, 4)
    y = torch.zeros(3)
    with pytest.raises(ValueError, match="sigma"):
        target_to_probs(y, bins, 0.0)
    with pytest.raises(ValueError, match="cauchy"):
        target_to_probs(y, bins, 0.1, "cauchy")
    with pytest.raises(ValueError, match="df"):
        target_to_probs(y, bins, 0.1, "student_t", df=0.5)
    with pytest.raises(ValueError, match="NaN"):
        target_to_probs(torch.tensor([float("nan")]), bins, 0.1)
    with pytest.raises(TypeError):
        target_to_probs([0.1], bins, 0.1)
    with pytest.raises(TypeError):
        target_to_probs(y, (0, 1, 4), 0.1)


# ---------------------------------------------------------------------------------- values and quantiles
def test_probs_to_value_is_centre_expectation_by_hand():
    bins = Bins(0.0, 3.0, 3)  # centres 0.5, 1.5, 2.5
    q = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(probs_to_value(q, bins), torch.tensor([0.1 + 0.45 + 1.25, 0.5]))
    with pytest.raises(ValueError, match="3 bins"):
        probs_to_value(torch.ones(2, 4) / 4, bins)


def test_quantiles_by_hand_linear_within_bins():
    bins = Bins(0.0, 3.0, 3)
    q = torch.tensor([0.1, 0.2, 0.7])  # CDF at edges: 0, 0.1, 0.3, 1.0
    got = probs_to_quantile(q, bins, [0.05, 0.1, 0.2, 0.5, 0.99])
    torch.testing.assert_close(got, torch.tensor([0.5, 1.0, 1.5, 2.0 + 0.2 / 0.7, 2.0 + 0.69 / 0.7]))
    assert probs_to_quantile(q, bins, 0.2).shape == ()


def test_quantile_of_one_hot_lies_in_its_bin_and_quantiles_are_monotone():
    bins = Bins(-1.0, 1.0, 20)
    q = torch.full((4, 20), 1e-6)
    hot = torch.tensor([0, 7, 13, 19])
    q[torch.arange(4), hot] = 1.0
    q = q / q.sum(-1, keepdim=True)
    median = probs_to_quantile(q, bins, 0.5)
    edges = bins.edges.float()
    assert ((median >= edges[hot]) & (median <= edges[hot + 1])).all()

    gen = torch.Generator().manual_seed(1)
    q = torch.softmax(torch.randn(3, 5, 20, generator=gen), -1)
    levels = torch.linspace(0.01, 0.99, 25)
    quantiles = probs_to_quantile(q, bins, levels)
    assert quantiles.shape == (3, 5, 25)
    assert (quantiles.diff(dim=-1) > 0).all()
    assert ((quantiles >= -1.0) & (quantiles <= 1.0)).all()


def test_quantiles_invert_the_piecewise_linear_cdf():
    # Evaluating the piecewise-linear CDF at the returned quantile gives back the level.
    bins = Bins(0.0, 1.0, 8)
    q = torch.softmax(torch.randn(6, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64), -1)
    levels = torch.tensor([0.1, 0.37, 0.5, 0.9], dtype=torch.float64)
    x = probs_to_quantile(q, bins, levels)
    cdf_at_edges = torch.cat([torch.zeros(6, 1, dtype=torch.float64), q.cumsum(-1)], -1)
    cdf_at_x = torch.stack([torch.from_numpy(np.interp(x[i].numpy(), bins.edges.numpy(), cdf_at_edges[i].numpy()))
                            for i in range(6)])
    torch.testing.assert_close(cdf_at_x, levels.expand(6, 4))


def test_prediction_interval_covers_the_mass():
    bins = Bins(0.0, 10.0, 10)
    q = torch.full((10,), 0.1)  # uniform on [0, 10]
    lower, upper = prediction_interval(q, bins, coverage=0.8)
    assert lower.item() == pytest.approx(1.0) and upper.item() == pytest.approx(9.0)
    with pytest.raises(ValueError, match="coverage"):
        prediction_interval(q, bins, coverage=1.0)
    with pytest.raises(ValueError, match="levels"):
        probs_to_quantile(q, bins, [0.0, 0.5])
    with pytest.raises(ValueError, match="negative"):
        probs_to_quantile(q - 0.2, bins, 0.5)


# ------------------------------------------------------------------------------------- target_to_cumulative
def test_cumulative_targets_hand_computed_two_bins():
    # Bins [0, 0.5), [0.5, 1]; y = 0.25, σ = 0.25: the one level k = 1 sits at e_1 = 0.5, z = (-1, 1, 3).
    # below = Φ(1) − Φ(−1), above = Φ(−1) − Φ(−3); P_1 = below / (below + above).
    phi = lambda t: 0.5 * (1.0 + math.erf(t / math.sqrt(2.0)))  # noqa: E731
    below, above = phi(1.0) - phi(-1.0), phi(-1.0) - phi(-3.0)
    cum, tail = target_to_cumulative(torch.tensor([0.25], dtype=torch.float64), Bins(0.0, 1.0, 2), 0.25)
    assert cum.shape == tail.shape == (1, 1)
    assert cum.item() == pytest.approx(below / (below + above), rel=1e-14)
    assert tail.item() == pytest.approx(above / (below + above), rel=1e-14)
    assert cum.item() == pytest.approx(0.8127306, abs=1e-7)  # 0.6826895 / 0.8399948


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("sigma", [0.002, 0.05, 0.7])
def test_cumulative_targets_equal_the_cumulative_sums_of_the_bin_probabilities(distribution, sigma):
    bins = Bins(-1.0, 1.0, 40)
    y = torch.cat([torch.linspace(-1.4, 1.4, 57, dtype=torch.float64), torch.tensor([-1.0, 1.0, 0.0, 0.05])])
    p = target_to_probs(y.reshape(61, 1), bins, sigma, distribution)
    cum, tail = target_to_cumulative(y.reshape(61, 1), bins, sigma, distribution)
    assert cum.shape == tail.shape == (61, 1, 39)
    torch.testing.assert_close(cum, torch.cumsum(p, -1)[..., :-1], rtol=0, atol=1e-12)
    reverse = torch.flip(torch.cumsum(torch.flip(p, (-1,)), -1), (-1,))[..., 1:]
    torch.testing.assert_close(tail, reverse, rtol=0, atol=1e-12)
    torch.testing.assert_close(cum + tail, torch.ones_like(cum), rtol=0, atol=1e-14)
    # the far tails are resolved relative to their size, not lost to 1 − (something close to 1)
    small = (tail > 0) & (tail < 1e-6)
    if small.any():
        torch.testing.assert_close(tail[small], reverse[small], rtol=1e-8, atol=0)


def test_cumulative_targets_reject_bad_input():
    bins = Bins(0.0, 1.0, 4)
    with pytest.raises(ValueError, match="sigma"):
        target_to_cumulative(torch.zeros(2), bins, -1.0)
    with pytest.raises(ValueError, match="NaN"):
        target_to_cumulative(torch.tensor([float("nan")]), bins, 0.1)
    with pytest.raises(ValueError, match="unknown distribution"):
        target_to_cumulative(torch.zeros(2), bins, 0.1, "cauchy")
