"""Tests of flatcast.diagnostics.landscape: filter-normalised directions, 1-D/2-D slices, exact restoration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flatcast.diagnostics import hessian as hs
from flatcast.diagnostics import landscape as ls

DUMMY = (torch.zeros(3, 1), torch.zeros(3, 1))


class Quadratic(nn.Module):
    """L(w) = ½ wᵀAw."""

    def __init__(self, A, w0):
        super().__init__()
        self.register_buffer("A", A)
        self.w = nn.Parameter(w0.clone())

    def training_loss(self, x, y):
        return 0.5 * self.w @ self.A @ self.w


def spd_quadratic(eigenvalues, w0, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ Q.T
    return Quadratic(0.5 * (A + A.T), torch.as_tensor(w0, dtype=torch.float64))


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(2, 3, kernel_size=2)
        self.fc = nn.Linear(3 * 4, 2)
        self.scale = nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1)) * self.scale


def net_data(n=8):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 2, 5, generator=g), torch.randn(n, 2, generator=g)


def test_filter_normalised_rows_match_weight_rows():
    model = SmallNet()
    with torch.no_grad():
        model.fc.weight[1].zero_()  # a dead filter gets a zero direction
    direction = ls.random_direction(model, seed=3)
    for p, d in zip(model.parameters(), direction):
        assert d.shape == p.shape and d.dtype == p.dtype
        if p.dim() <= 1:
            assert torch.count_nonzero(d) == 0  # biases and scalars ignored (Li et al. 'biasbn')
        else:
            row_w = p.detach().reshape(p.shape[0], -1).norm(dim=1)
            row_d = d.reshape(d.shape[0], -1).norm(dim=1)
            torch.testing.assert_close(row_d, row_w, rtol=1e-5, atol=1e-6)
    by_name = dict(zip([n for n, _ in model.named_parameters()], direction))
    assert torch.count_nonzero(by_name["fc.weight"][1]) == 0


def test_direction_options_and_determinism():
    model = SmallNet()
    kept = ls.random_direction(model, seed=3, ignore_1d=False)
    for p, d in zip(model.parameters(), kept):
        if p.dim() <= 1:
            assert torch.equal(d, p.detach())
    raw = ls.random_direction(model, seed=3, filter_normalize=False)
    normalised = ls.random_direction(model, seed=3)
    # the same Gaussian draw, rescaled row by row: directions are parallel filter by filter
    conv = [n for n, _ in model.named_parameters()].index("conv.weight")
    cos = F.cosine_similarity(raw[conv].reshape(3, -1), normalised[conv].reshape(3, -1), dim=1)
    torch.testing.assert_close(cos, torch.ones(3), rtol=0, atol=1e-6)
    assert not torch.allclose(raw[conv].norm(), normalised[conv].norm())
    again = ls.random_direction(model, seed=3)
    other = ls.random_direction(model, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(normalised, again))
    assert not torch.equal(normalised[conv], other[conv])


def test_slice_1d_at_zero_is_the_loss_and_weights_are_restored_exactly():
    model = SmallNet()
    x, y = net_data()
    before = [p.detach().clone() for p in model.parameters()]
    direction = ls.random_direction(model, seed=0)
    alphas = np.linspace(-1, 1, 5)
    losses = ls.slice_1d(model, (x, y), direction, alphas)
    assert losses.shape == (5,)
    with torch.no_grad():
        expected = float(F.mse_loss(model(x), y))
    assert losses[2] == pytest.approx(expected, rel=1e-6)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert losses[0] != pytest.approx(losses[2])  # the slice actually moved the weights


def test_weights_restored_when_the_loss_raises():
    model = SmallNet()
    x, y = net_data()
    before = [p.detach().clone() for p in model.parameters()]
    calls = {"n": 0}

    def failing_loss(m, a, b):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return F.mse_loss(m(a), b)

    with pytest.raises(RuntimeError, match="boom"):
        ls.slice_1d(model, (x, y), ls.random_direction(model), [0.5, 1.0, 2.0], loss_fn=failing_loss)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_slice_along_top_eigenvector_of_quadratic_is_the_parabola():
    model = spd_quadratic([3.0, 1.0, 0.5, 0.1], torch.zeros(4))
    lam, direction = ls.top_eigenvector_direction(model, DUMMY, n_iter=500, tol=1e-14)
    assert lam == pytest.approx(3.0, rel=1e-9)
    alphas = np.linspace(-2, 2, 9)
    losses = ls.slice_1d(model, DUMMY, direction, alphas)
    np.testing.assert_allclose(losses, 0.5 * 3.0 * alphas**2, rtol=1e-9, atol=1e-12)


def test_slice_off_the_minimum_includes_the_gradient_term():
    w0 = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    model = spd_quadratic([2.0, 1.0, 0.5], w0, seed=2)
    lam, direction = ls.top_eigenvector_direction(model, DUMMY, n_iter=500, tol=1e-14)
    v = direction[0]
    f0 = float(0.5 * w0 @ model.A @ w0)
    slope = float((model.A @ w0) @ v)
    alphas = np.array([-1.0, 0.0, 0.5, 1.5])
    np.testing.assert_allclose(ls.slice_1d(model, DUMMY, direction, alphas), f0 + slope * alphas + 0.5 * lam * alphas**2,
                               rtol=1e-9)


def test_slice_2d_orientation_and_values_on_quadratic():
    A = torch.diag(torch.tensor([2.0, 4.0], dtype=torch.float64))
    model = Quadratic(A, torch.zeros(2, dtype=torch.float64))
    d1 = [torch.tensor([1.0, 0.0], dtype=torch.float64)]
    d2 = [torch.tensor([0.0, 1.0], dtype=torch.float64)]
    alphas, betas = np.array([-1.0, 0.0, 1.0]), np.array([0.0, 0.5])
    surface = ls.slice_2d(model, DUMMY, d1, d2, alphas, betas)
    assert surface.shape == (3, 2)
    expected = 0.5 * (2.0 * alphas[:, None] ** 2 + 4.0 * betas[None, :] ** 2)  # ½(2α² + 4β²)
    np.testing.assert_allclose(surface, expected, rtol=1e-12)
    assert torch.equal(model.w.detach(), torch.zeros(2, dtype=torch.float64))


def test_slice_2d_agrees_with_slice_1d_on_a_network():
    model = SmallNet()
    x, y = net_data()
    d1, d2 = ls.random_direction(model, seed=1), ls.random_direction(model, seed=2)
    surface = ls.slice_2d(model, (x, y), d1, d2, [0.0, 0.3], [0.0])
    line = ls.slice_1d(model, (x, y), d1, [0.0, 0.3])
    np.testing.assert_allclose(surface[:, 0], line, rtol=1e-6)


def test_subset_direction_and_bad_inputs():
    model = SmallNet()
    x, y = net_data()
    subset = [model.fc.weight]
    d = ls.random_direction(model, params=subset, seed=0)
    assert len(d) == 1 and d[0].shape == model.fc.weight.shape
    before = model.conv.weight.detach().clone()
    ls.slice_1d(model, (x, y), d, [1.0], params=subset)
    assert torch.equal(model.conv.weight, before)
    with pytest.raises(ValueError, match="direction has 1 tensors"):
        ls.slice_1d(model, (x, y), d, [1.0])
    with pytest.raises(ValueError, match="alphas must be"):
        ls.slice_1d(model, (x, y), d, [[1.0]], params=subset)
    with pytest.raises(ValueError, match="betas must be"):
        ls.slice_2d(model, (x, y), d, d, [0.0], [], params=subset)
    assert hs.dataset_loss(model, (x, y)) > 0
