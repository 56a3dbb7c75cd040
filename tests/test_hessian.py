"""Tests of flatcast.diagnostics.hessian: exact HVPs, λmax, top-k, Hutchinson trace, SLQ density."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from flatcast.diagnostics import hessian as hs


# ----------------------------------------------------------------------------------------------- fixtures
def random_orthogonal(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q


class Quadratic(nn.Module):
    """L(w) = ½ wᵀAw: Hessian A, independent of the data."""

    def __init__(self, A: torch.Tensor, w0: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("A", A)
        self.w = nn.Parameter(torch.zeros(A.shape[0], dtype=A.dtype) if w0 is None else w0.clone())

    def training_loss(self, x, y):
        return 0.5 * self.w @ self.A @ self.w


def quadratic_with_spectrum(eigenvalues, seed=0):
    eig = torch.tensor(eigenvalues, dtype=torch.float64)
    Q = random_orthogonal(len(eigenvalues), seed)
    A = Q @ torch.diag(eig) @ Q.T
    return Quadratic(0.5 * (A + A.T)), Q


DUMMY = (torch.zeros(4, 1), torch.zeros(4, 1))


class TinyRevIN(nn.Module):
    """Per-instance normalisation over the look-back (Kim et al. 2022), statistics recomputed at every call."""

    def __init__(self, n_channels: int, generator: torch.Generator):
        super().__init__()
        self.weight = nn.Parameter(1.0 + 0.3 * torch.randn(n_channels, generator=generator))
        self.bias = nn.Parameter(0.2 * torch.randn(n_channels, generator=generator))

    def normalize(self, x):
        self.mean = x.mean(-1, keepdim=True)
        self.std = torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5)
        return (x - self.mean) / self.std * self.weight[:, None] + self.bias[:, None]

    def denormalize(self, y):
        return (y - self.bias[:, None]) / self.weight[:, None] * self.std + self.mean


class TinyForecaster(nn.Module):
    def __init__(self, lookback=6, horizon=2, n_channels=2, hidden=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.revin = TinyRevIN(n_channels, g)
        self.hidden = nn.Linear(lookback, hidden)
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(hidden, horizon)

    def forward(self, x):
        z = self.revin.normalize(x)
        return self.revin.denormalize(self.head(self.dropout(torch.tanh(self.hidden(z)))))


class Windows:
    """WindowSet-like: .x, .y, len()."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return self.x.shape[0]


def tiny_problem(n=12, seed=0):
    model = TinyForecaster(seed=seed).double()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, 2, 6, generator=g, dtype=torch.float64) * 3 + 1
    y = torch.randn(n, 2, 2, generator=g, dtype=torch.float64)
    return model, x, y


def dense_hessian(model, x, y, names=None):
    """Independent reference: torch.autograd.functional.hessian of the MSE as a function of the flat parameters."""
    named = dict(model.named_parameters())
    names = list(named) if names is None else names
    shapes = [named[n].shape for n in names]
    flat0 = torch.cat([named[n].detach().reshape(-1) for n in names])

    def loss(flat):
        parts, start = {}, 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape))
            parts[name] = flat[start:start + size].reshape(shape)
            start += size
        return F.mse_loss(functional_call(model, parts, (x,)), y)

    was_training = model.training
    model.eval()
    H = torch.autograd.functional.hessian(loss, flat0, vectorize=True)
    model.train(was_training)
    return H


# -------------------------------------------------------------------------------------------- quadratics
def test_top_eigenvalue_exact_on_quadratic():
    model, Q = quadratic_with_spectrum([4.0, 2.0, 1.0, 0.5, -0.3])
    value, vector = hs.top_eigenvalue(model, DUMMY, n_iter=500, tol=1e-14)
    assert value == pytest.approx(4.0, rel=1e-9)
    assert abs(float(vector[0] @ Q[:, 0])) == pytest.approx(1.0, abs=1e-6)


def test_top_eigenvalue_is_largest_algebraic_when_dominant_is_negative():
    # |−3| dominates: plain power iteration would return −3; λmax is 1.
    model, Q = quadratic_with_spectrum([1.0, 0.5, -3.0], seed=1)
    value, vector = hs.top_eigenvalue(model, DUMMY, n_iter=500, tol=1e-14)
    assert value == pytest.approx(1.0, rel=1e-8)
    assert abs(float(vector[0] @ Q[:, 0])) == pytest.approx(1.0, abs=1e-6)


def test_top_k_exact_on_quadratic():
    spectrum = [5.0, 3.0, 2.0, 1.0, -1.0, -4.0]
    model, _ = quadratic_with_spectrum(spectrum, seed=2)
    values, vectors = hs.top_k_eigenvalues(model, DUMMY, k=3, lanczos_steps=6)
    assert values == pytest.approx([5.0, 3.0, 2.0], rel=1e-10)
    for lam, vec in zip(values, vectors):
        v = vec[0]
        assert float(v.norm()) == pytest.approx(1.0, abs=1e-12)
        torch.testing.assert_close(model.A @ v, lam * v, atol=1e-9, rtol=0)


def test_top_k_recovers_full_spectrum_with_degenerate_eigenvalues():
    # Repeated eigenvalues make Lanczos break down; the restart must still find every eigenvalue.
    spectrum = [2.0, 2.0, 1.0, 1.0, 0.0]
    model, _ = quadratic_with_spectrum(spectrum, seed=3)
    values, _ = hs.top_k_eigenvalues(model, DUMMY, k=5, lanczos_steps=5)
    assert values == pytest.approx(spectrum, abs=1e-9)


def test_trace_exact_for_diagonal_hessian_with_one_probe():
    # For diagonal A, zᵀAz = Σ A_ii z_i² = tr A for every Rademacher z.
    model = Quadratic(torch.diag(torch.tensor([3.0, -1.0, 0.25, 7.0], dtype=torch.float64)))
    assert hs.hessian_trace(model, DUMMY, n_samples=1, seed=5) == pytest.approx(9.25, rel=1e-12)


def test_trace_estimator_is_unbiased_on_quadratic():
    spectrum = [3.0, 1.0, -2.0, 0.5, 4.0]
    model, _ = quadratic_with_spectrum(spectrum, seed=4)
    estimate, samples = hs.hessian_trace(model, DUMMY, n_samples=1500, seed=0, return_samples=True)
    A = model.A
    off_diagonal = A - torch.diag(torch.diag(A))
    predicted_var = 2.0 * float((off_diagonal**2).sum())   # Var(zᵀAz) for Rademacher z
    stderr = math.sqrt(predicted_var / samples.size)
    assert abs(estimate - sum(spectrum)) < 4 * stderr
    assert samples.var() == pytest.approx(predicted_var, rel=0.15)


def test_spectral_density_exact_masses_on_diagonal_quadratic():
    # Diagonal A and Rademacher probes: every eigenvalue gets quadrature weight exactly 1/n.
    eig = [-1.0, 2.0, 5.0]
    model = Quadratic(torch.diag(torch.tensor(eig, dtype=torch.float64)))
    grid = np.linspace(-3, 7, 4001)
    out_grid, density = hs.spectral_density(model, DUMMY, n_runs=2, lanczos_steps=3, grid=grid, sigma=0.05)
    assert np.array_equal(out_grid, grid)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-6)
    for lam in eig:
        window = np.abs(grid - lam) < 0.5
        assert np.trapezoid(density[window], grid[window]) == pytest.approx(1 / 3, abs=1e-4)
        assert grid[window][np.argmax(density[window])] == pytest.approx(lam, abs=2.5e-3)


def test_spectral_density_default_grid_and_determinism():
    model, _ = quadratic_with_spectrum([1.0, 2.0, 3.0, 4.0], seed=6)
    g1, d1 = hs.spectral_density(model, DUMMY, n_runs=3, lanczos_steps=4, seed=1)
    g2, d2 = hs.spectral_density(model, DUMMY, n_runs=3, lanczos_steps=4, seed=1)
    assert g1.shape == d1.shape == (1000,)
    assert np.array_equal(d1, d2)
    assert g1[0] < 1.0 and g1[-1] > 4.0


# -------------------------------------------------------------------------------- tiny model with RevIN
def test_hvp_matches_dense_hessian_with_revin():
    model, x, y = tiny_problem()
    H = dense_hessian(model, x, y)
    params = list(model.parameters())
    v_flat = torch.randn(H.shape[0], generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    model.train()  # hvp must switch dropout off itself and restore the mode
    hv = hs.hvp(model, (x, y), hs.unflatten(v_flat, params), loss_fn=lambda m, a, b: F.mse_loss(m(a), b))
    assert model.training and model.dropout.training
    torch.testing.assert_close(hs.flatten(hv), H @ v_flat, rtol=1e-10, atol=1e-10)


def test_eigenvalues_within_1e4_of_autograd_hessian_with_revin():
    model, x, y = tiny_problem()
    reference = torch.linalg.eigvalsh(dense_hessian(model, x, y)).flip(0)
    lam_max, vec = hs.top_eigenvalue(model, (x, y), n_iter=3000, tol=1e-13)
    assert lam_max == pytest.approx(float(reference[0]), rel=1e-4)
    values, _ = hs.top_k_eigenvalues(model, (x, y), k=4)
    assert values == pytest.approx(reference[:4].tolist(), rel=1e-4)
    assert float(hs.flatten(vec).norm()) == pytest.approx(1.0, abs=1e-10)


def test_whole_split_hvp_equals_full_batch_hvp():
    model, x, y = tiny_problem(n=10)
    params = list(model.parameters())
    v = [torch.randn(p.shape, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
         for i, p in enumerate(params)]
    full = hs.hvp(model, (x, y), v, batch_size=100)
    chunked = hs.hvp(model, Windows(x, y), v, batch_size=3)  # batches of 3, 3, 3, 1
    torch.testing.assert_close(hs.flatten(chunked), hs.flatten(full), rtol=1e-12, atol=1e-12)


def test_parameter_subset_hvp_is_block_of_full_hessian():
    model, x, y = tiny_problem()
    names = [n for n, _ in model.named_parameters()]
    H = dense_hessian(model, x, y, names)
    sizes = [p.numel() for p in model.parameters()]
    offsets = np.cumsum([0] + sizes)
    block_index = names.index("hidden.weight")
    lo, hi = offsets[block_index], offsets[block_index + 1]
    v = torch.randn(hi - lo, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    hv = hs.hvp(model, (x, y), [v.reshape(model.hidden.weight.shape)], params=[model.hidden.weight])
    torch.testing.assert_close(hv[0].reshape(-1), H[lo:hi, lo:hi] @ v, rtol=1e-10, atol=1e-10)


def test_default_loss_uses_training_loss_hook_else_mse():
    model, x, y = tiny_problem()
    with torch.no_grad():
        expected = float(F.mse_loss(model.eval()(x), y))
    assert hs.dataset_loss(model, (x, y)) == pytest.approx(expected, rel=1e-12)
    quad = Quadratic(torch.eye(2, dtype=torch.float64), torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert float(hs.default_loss(quad, *DUMMY).detach()) == pytest.approx(2.5)


def test_same_seed_same_numbers():
    model, x, y = tiny_problem()
    a = hs.top_eigenvalue(model, (x, y), n_iter=5, seed=3)
    b = hs.top_eigenvalue(model, (x, y), n_iter=5, seed=3)
    assert a[0] == b[0]
    assert torch.equal(hs.flatten(a[1]), hs.flatten(b[1]))
    assert hs.hessian_trace(model, (x, y), n_samples=3, seed=2) == hs.hessian_trace(model, (x, y), n_samples=3,
                                                                                     seed=2)


def test_flatten_unflatten_round_trip():
    like = [torch.zeros(2, 3), torch.zeros(4)]
    flat = torch.arange(10.0)
    parts = hs.unflatten(flat, like)
    assert [tuple(p.shape) for p in parts] == [(2, 3), (4,)]
    assert torch.equal(hs.flatten(parts), flat)
    with pytest.raises(ValueError, match="expected \\(10,\\)"):
        hs.unflatten(torch.arange(9.0), like)


def test_bad_inputs_raise_clear_errors():
    model, x, y = tiny_problem()
    params = list(model.parameters())
    with pytest.raises(ValueError, match="v\\[0\\] has shape"):
        hs.hvp(model, (x, y), [torch.zeros(7)] + [torch.zeros_like(p) for p in params[1:]])
    with pytest.raises(ValueError, match="tensors but there are"):
        hs.hvp(model, (x, y), [torch.zeros_like(params[0])])
    with pytest.raises(TypeError, match="data must be"):
        hs.hessian_trace(model, "not data")
    with pytest.raises(ValueError, match="first \\(batch\\) dimension"):
        hs.top_eigenvalue(model, (x, y[:3]))
    with pytest.raises(ValueError, match="k=1000 exceeds"):
        hs.top_k_eigenvalues(model, (x, y), k=1000)
    with pytest.raises(ValueError, match="n_iter must be"):
        hs.top_eigenvalue(model, (x, y), n_iter=0)
    with pytest.raises(ValueError, match="batch_size must be"):
        hs.hessian_trace(model, (x, y), batch_size=0)
    with pytest.raises(ValueError, match="does not require grad"):
        hs.top_eigenvalue(model, (x, y), params=[torch.zeros(3)])


# ---------------------------------------------------------------------------------- the real model, if any
def test_real_channel_transformer_with_revin_matches_autograd_hessian():
    ct = pytest.importorskip("flatcast.models.channel_transformer")
    torch.manual_seed(0)
    model = ct.ChannelTransformer(lookback=8, horizon=3, n_channels=3, d_model=4, revin=True).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 8, generator=g, dtype=torch.float64) * 2 + 0.5
    y = torch.randn(6, 3, 3, generator=g, dtype=torch.float64)
    loss = lambda m, a, b: F.mse_loss(m(a), b)  # noqa: E731
    attention = list(model.attention_parameters())
    names = [n for n, p in model.named_parameters() if any(p is q for q in attention)]
    H = dense_hessian(model, x, y, names)
    reference = torch.linalg.eigvalsh(H).flip(0)
    values, _ = hs.top_k_eigenvalues(model, (x, y), k=2, params=attention, loss_fn=loss)
    assert values == pytest.approx(reference[:2].tolist(), rel=1e-4, abs=1e-10)
    lam_max, _ = hs.top_eigenvalue(model, (x, y), params=attention, loss_fn=loss, n_iter=3000, tol=1e-13)
    assert lam_max == pytest.approx(float(reference[0]), rel=1e-4)


def test_hvp_works_inside_no_grad():
    model = Quadratic(torch.diag(torch.tensor([2.0, 3.0], dtype=torch.float64)))
    with torch.no_grad():
        hv = hs.hvp(model, DUMMY, [torch.tensor([1.0, 1.0], dtype=torch.float64)])
    torch.testing.assert_close(hv[0], torch.tensor([2.0, 3.0], dtype=torch.float64))
