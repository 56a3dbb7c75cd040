"""Tests for DLinear, its series decomposition and the OCE-TS head (flatcast.models.dlinear)."""

from __future__ import annotations

import pytest
import torch

from flatcast.losses import ce_loss, oce_loss
from flatcast.models import DLinear, DLinearOCE, SeriesDecomposition
from flatcast.targets import Bins, target_to_probs


def _randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# -------------------------------------------------------------------------------------- decomposition
@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4, 25, 40])
def test_trend_plus_remainder_equals_input(kernel_size):
    x = _randn(2, 3, 30, dtype=torch.float64)
    remainder, trend = SeriesDecomposition(kernel_size)(x)
    assert trend.shape == x.shape == remainder.shape
    torch.testing.assert_close(trend + remainder, x, rtol=0, atol=1e-14)


def test_trend_plus_remainder_is_bit_exact_on_dyadic_input():
    # Integers and a kernel of 4: every average is a multiple of 1/4, so all arithmetic is exact.
    x = torch.randint(-50, 50, (3, 2, 17), generator=torch.Generator().manual_seed(1)).float()
    remainder, trend = SeriesDecomposition(4)(x)
    assert torch.equal(trend + remainder, x)


def test_moving_average_with_replicate_padding_by_hand():
    x = torch.tensor([[1.0, 2.0, 6.0, 3.0]])
    # kernel 3: pad one copy each side -> [1, 1, 2, 6, 3, 3]
    trend3 = SeriesDecomposition(3).moving_average(x)
    torch.testing.assert_close(trend3, torch.tensor([[4 / 3, 3.0, 11 / 3, 4.0]]))
    # kernel 4 (even): front (4-1)//2 = 1 copy, back 4//2 = 2 copies -> [1, 1, 2, 6, 3, 3, 3]
    trend4 = SeriesDecomposition(4).moving_average(x)
    torch.testing.assert_close(trend4, torch.tensor([[10 / 4, 12 / 4, 14 / 4, 15 / 4]]))
    # A constant series is its own trend, whatever the kernel (longer than the series included).
    constant = torch.full((2, 5), 3.5)
    torch.testing.assert_close(SeriesDecomposition(25).moving_average(constant), constant)


def test_decomposition_rejects_bad_kernel():
    with pytest.raises(ValueError, match="kernel_size"):
        SeriesDecomposition(0)
    with pytest.raises(ValueError, match="kernel_size"):
        SeriesDecomposition(2.5)


# -------------------------------------------------------------------------------------------- DLinear
def test_dlinear_shapes_and_parameter_counts():
    lookback, horizon, channels = 24, 6, 5
    shared = DLinear(lookback, horizon, channels)
    individual = DLinear(lookback, horizon, channels, individual=True)
    assert sum(p.numel() for p in shared.parameters()) == 2 * (horizon * lookback + horizon)
    assert sum(p.numel() for p in individual.parameters()) == 2 * channels * (horizon * lookback + horizon)
    x = _randn(3, channels, lookback)
    assert shared(x).shape == individual(x).shape == (3, channels, horizon)
    torch.testing.assert_close(shared.predict(x), shared(x))


def test_dlinear_matches_hand_computation_with_known_weights():
    # L = 3, H = 2, D = 1, kernel 3. x = [1, 2, 6]: padded [1, 1, 2, 6, 6] -> trend [4/3, 3, 14/3],
    # remainder [-1/3, -1, 4/3].
    model = DLinear(3, 2, 1, kernel_size=3)
    with torch.no_grad():
        model.seasonal_weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))
        model.seasonal_bias.copy_(torch.tensor([0.5, 0.0]))
        model.trend_weight.copy_(torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]))
        model.trend_bias.copy_(torch.tensor([0.0, -1.0]))
    out = model(torch.tensor([[[1.0, 2.0, 6.0]]]))
    expected = torch.tensor([[[(-1 / 3 + 0.5) + 14 / 3, (-1 + 4 / 3) + (4 / 3 + 3 - 1)]]])
    torch.testing.assert_close(out, expected)


def test_individual_dlinear_uses_each_channels_own_weights():
    torch.manual_seed(0)
    model = DLinear(8, 3, 2, individual=True, kernel_size=3)
    with torch.no_grad():
        model.seasonal_weight.normal_()
        model.trend_weight.normal_()
    x = _randn(4, 2, 8, seed=5)
    out = model(x)
    for channel in range(2):
        single = DLinear(8, 3, 1, kernel_size=3)
        with torch.no_grad():
            for name in ("seasonal_weight", "seasonal_bias", "trend_weight", "trend_bias"):
                getattr(single, name).copy_(getattr(model, name)[channel])
        torch.testing.assert_close(out[:, channel : channel + 1], single(x[:, channel : channel + 1]))


def test_dlinear_initial_forecast_is_window_mean_plus_biases():
    model = DLinear(10, 4, 3)
    x = _randn(2, 3, 10)
    expected = x.mean(-1, keepdim=True) + model.seasonal_bias + model.trend_bias
    torch.testing.assert_close(model(x), expected.expand(2, 3, 4))


def test_dlinear_same_seed_same_weights_and_shape_errors():
    torch.manual_seed(7)
    a = DLinear(12, 4, 2, individual=True)
    torch.manual_seed(7)
    b = DLinear(12, 4, 2, individual=True)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match=r"\(B, 2, 12\)"):
        a(torch.zeros(3, 2, 11))
    with pytest.raises(ValueError, match=r"\(B, 2, 12\)"):
        a(torch.zeros(2, 12))
    with pytest.raises(TypeError, match="floating"):
        a(torch.zeros(3, 2, 12, dtype=torch.long))
    with pytest.raises(ValueError, match="horizon"):
        DLinear(12, 0, 2)


# ----------------------------------------------------------------------------------------- DLinearOCE
def _oce_model(**kwargs):
    torch.manual_seed(0)
    return DLinearOCE(16, 4, 3, Bins(-3.0, 3.0, 30), **kwargs)


def test_dlinear_oce_shapes_and_distribution():
    model = _oce_model()
    x = _randn(5, 3, 16)
    logits = model(x)
    assert logits.shape == (5, 3, 4, 30)
    q = model.predict_distribution(x)
    torch.testing.assert_close(q, torch.softmax(logits, -1))
    point = model.predict(x)
    assert point.shape == (5, 3, 4)
    torch.testing.assert_close(point, (q * Bins(-3.0, 3.0, 30).centres.float()).sum(-1))


def test_dlinear_oce_predict_stays_inside_the_support():
    model = _oce_model(head_hidden=8)
    x = 100 * _randn(4, 3, 16)  # backbone forecasts far outside [a, b]
    point = model.predict(x)
    assert ((point >= -3.0) & (point <= 3.0)).all()


def test_gaussian_head_initialisation_reproduces_the_backbone_forecast():
    # With w_k = v_k/τ², b_k = -v_k²/(2τ²) the softmax is a discretised Gaussian around the backbone forecast s,
    # so Σ v_k q_k ≈ s for s well inside [a, b].
    model = _oce_model()
    x = 0.3 * _randn(6, 3, 16, seed=3)
    s = model.backbone(x)
    assert (s.abs() < 2.0).all()
    torch.testing.assert_close(model.predict(x), s, atol=1e-4, rtol=0)


@pytest.mark.parametrize("loss", ["oce", "ce"])
@pytest.mark.parametrize("distribution", ["gaussian", "student_t", "laplace"])
def test_training_loss_matches_losses_and_backpropagates(loss, distribution):
    model = _oce_model(loss=loss, distribution=distribution, sigma=0.3, head_hidden=4)
    x, y = _randn(4, 3, 16, seed=1), _randn(4, 3, 4, seed=2)
    value = model.training_loss(x, y)
    p = target_to_probs(y, model.bins, 0.3, distribution)
    reference = (oce_loss if loss == "oce" else ce_loss)(p, model.predict_distribution(x))
    torch.testing.assert_close(value, reference, rtol=1e-4, atol=1e-5)
    value.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.backbone.trend_weight.grad.abs().sum() > 0


def test_a_few_oce_steps_reduce_the_loss():
    model = _oce_model(sigma=0.2)
    x = _randn(32, 3, 16, seed=4)
    y = x[..., -4:].flip(-1)  # a learnable target: the last four inputs reversed
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model.training_loss(x, y).item()
    for _ in range(10):
        optimizer.zero_grad()
        model.training_loss(x, y).backward()
        optimizer.step()
    assert model.training_loss(x, y).item() < 0.8 * first


def test_dlinear_oce_default_sigma_and_bad_arguments():
    bins = Bins(0.0, 1.0, 100)
    assert DLinearOCE(8, 2, 1, bins).sigma == pytest.approx(0.01)  # the paper's σ = 0.01 with K = 100 on [0, 1]
    with pytest.raises(ValueError, match="loss"):
        DLinearOCE(8, 2, 1, bins, loss="mse")
    with pytest.raises(ValueError, match="distribution"):
        DLinearOCE(8, 2, 1, bins, distribution="cauchy")
    with pytest.raises(ValueError, match="sigma"):
        DLinearOCE(8, 2, 1, bins, sigma=-1.0)
    with pytest.raises(ValueError, match="df"):
        DLinearOCE(8, 2, 1, bins, distribution="student_t", df=0.2)
    with pytest.raises(TypeError, match="Bins"):
        DLinearOCE(8, 2, 1, (0.0, 1.0, 100))
    model = DLinearOCE(8, 2, 1, bins)
    with pytest.raises(ValueError, match=r"\(3, 1, 2\)"):
        model.training_loss(torch.zeros(3, 1, 8), torch.zeros(3, 1, 3))
    with pytest.raises(ValueError, match=r"\(B, 1, 8\)"):
        model(torch.zeros(3, 2, 8))


@pytest.mark.parametrize("exact_loss", [True, False])
@pytest.mark.parametrize("distribution", ["gaussian", "student_t"])
def test_training_loss_is_the_unfused_oce_value_and_parameter_gradients(exact_loss, distribution):
    # The model's loss goes through oce_loss_fused; in float64 it is the plain-autograd OCE of the soft targets.
    from flatcast.losses import oce_loss_from_logits, oce_loss_from_logits_clamped

    torch.manual_seed(0)
    model = _oce_model(distribution=distribution, exact_loss=exact_loss).double()
    x, y = _randn(5, 3, 16, seed=7).double(), _randn(5, 3, 4, seed=8).double()
    value = model.training_loss(x, y)
    fused_grads = torch.autograd.grad(value, list(model.parameters()))
    p = target_to_probs(y, model.bins, model.sigma, distribution)
    unfused = (oce_loss_from_logits if exact_loss else oce_loss_from_logits_clamped)(p, model(x))
    unfused_grads = torch.autograd.grad(unfused, list(model.parameters()))
    torch.testing.assert_close(value, unfused, rtol=1e-12, atol=0)
    for fused_grad, unfused_grad in zip(fused_grads, unfused_grads):
        torch.testing.assert_close(fused_grad, unfused_grad, rtol=1e-9, atol=1e-12)
