"""Exact checks of the sharpness chapter's instruments: interpolation between solutions, the eigenvector slice,
rank correlations and the SAMformer code's gᵀHv number, on problems whose answers are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from flatcast.diagnostics import hessian as hs
from flatcast.diagnostics import interpolation as ip
from flatcast.diagnostics import landscape as ls
from flatcast.diagnostics import rank_correlation as rc

DUMMY = (torch.zeros(4, 1), torch.zeros(4, 1))


class ShiftedQuadratic(nn.Module):
    """L(w) = ½ (w − c)ᵀ A (w − c): gradient A(w − c), Hessian A, minimum at c."""

    def __init__(self, A, c, w0):
        super().__init__()
        self.register_buffer("A", A)
        self.register_buffer("c", c)
        self.w = nn.Parameter(w0.clone())

    def training_loss(self, x, y):
        d = self.w - self.c
        return 0.5 * d @ self.A @ d


def spd(eigenvalues, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ Q.T
    return 0.5 * (A + A.T), Q


def closed_form(A, c, w):
    d = w - c
    return float(0.5 * d @ A @ d)


# ----------------------------------------------------------------------------------------- interpolation
def test_interpolation_path_is_the_exact_parabola_between_two_points():
    A, _ = spd([5.0, 2.0, 0.5])
    c = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    wa = torch.tensor([0.3, 0.2, -0.7], dtype=torch.float64)
    wb = torch.tensor([-1.0, 0.4, 2.0], dtype=torch.float64)
    model = ShiftedQuadratic(A, c, torch.zeros(3, dtype=torch.float64))
    alphas = np.linspace(-0.5, 1.5, 9)
    losses = ip.interpolation_path(model, DUMMY, {"w": wa}, {"w": wb}, alphas)
    expected = [closed_form(A, c, (1 - a) * wa + a * wb) for a in alphas]
    np.testing.assert_allclose(losses, expected, rtol=1e-12)
    # the model's own weights are untouched
    assert torch.equal(model.w.detach(), torch.zeros(3, dtype=torch.float64))


def test_barrier_height_of_a_double_well_and_of_a_convex_path():
    alphas = np.linspace(0, 1, 11)
    bump = 1.0 + np.sin(np.pi * alphas)  # ends at 1, peak 2 in the middle → barrier 1
    assert ip.barrier_height(alphas, bump) == pytest.approx(1.0)
    convex = (alphas - 0.5) ** 2  # highest at the ends: no barrier
    assert ip.barrier_height(alphas, convex) == 0.0
    with pytest.raises(ValueError, match="contain both 0 and 1"):
        ip.barrier_height([0.1, 0.5, 0.9], [1.0, 2.0, 3.0])


def test_interpolation_rejects_mismatched_states():
    A, _ = spd([1.0, 2.0])
    model = ShiftedQuadratic(A, torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    good = {"w": torch.zeros(2, dtype=torch.float64)}
    with pytest.raises(ValueError, match="missing"):
        ip.interpolation_path(model, DUMMY, good, {"v": torch.zeros(2)}, [0.0, 1.0])
    with pytest.raises(ValueError, match="shape"):
        ip.interpolation_path(model, DUMMY, good, {"w": torch.zeros(3)}, [0.0, 1.0])
    assert set(ip.parameter_state(model)) == {"w"}
    mid = ip.interpolate_states({"w": torch.zeros(2)}, {"w": torch.ones(2)}, 0.25)
    assert torch.allclose(mid["w"], torch.full((2,), 0.25))


# --------------------------------------------------------------------------------- eigenvector slice
def test_top_eigenvector_slice_is_the_exact_parabola_with_curvature_lambda_max():
    A, Q = spd([7.0, 3.0, 1.0, 0.2], seed=3)
    c = torch.tensor([0.5, -0.2, 0.1, 0.3], dtype=torch.float64)
    w0 = torch.tensor([1.0, 0.0, -1.0, 0.5], dtype=torch.float64)
    model = ShiftedQuadratic(A, c, w0)
    lam, direction = ls.top_eigenvector_direction(model, DUMMY, n_iter=500, tol=1e-14)
    assert lam == pytest.approx(7.0, rel=1e-9)
    v = direction[0]
    assert abs(abs(float(v @ Q[:, 0])) - 1.0) < 1e-6
    alphas = np.linspace(-1, 1, 7)
    train = ls.slice_1d(model, DUMMY, direction, alphas)
    g = A @ (w0 - c)
    expected = closed_form(A, c, w0) + alphas * float(g @ v) + 0.5 * lam * alphas**2
    np.testing.assert_allclose(train, expected, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------ the authors' number
def test_gradient_curvature_product_is_lambda_times_gradient_along_top_eigenvector():
    eig = [4.0, 1.0, 0.5]
    A, Q = spd(eig, seed=1)
    c = torch.zeros(3, dtype=torch.float64)
    w0 = torch.tensor([0.3, -0.6, 0.9], dtype=torch.float64)
    model = ShiftedQuadratic(A, c, w0)
    g = A @ w0
    expected = 4.0 * abs(float(g @ Q[:, 0]))  # λmax · |gᵀu₁| = λ₁² |w0ᵀu₁|
    value = hs.gradient_curvature_product(model, DUMMY, n_iter=200)
    assert value == pytest.approx(expected, rel=1e-9)
    # a summed loss (scale s) multiplies both g and H: s² times the number
    assert hs.gradient_curvature_product(model, DUMMY, n_iter=200, loss_scale=10.0) == pytest.approx(100 * expected,
                                                                                                      rel=1e-9)
    # at the minimum the gradient vanishes and so does the number, while λmax stays 4
    model.w.data.zero_()
    assert hs.gradient_curvature_product(model, DUMMY, n_iter=50) == 0.0
    assert hs.top_eigenvalue(model, DUMMY, n_iter=300, tol=1e-14)[0] == pytest.approx(4.0, rel=1e-9)


def test_dataset_gradient_is_the_gradient_of_the_mean_loss():
    torch.manual_seed(0)
    net = nn.Linear(3, 2).double()
    x = torch.randn(10, 3, dtype=torch.float64)
    y = torch.randn(10, 2, dtype=torch.float64)
    grads = hs.dataset_gradient(net, (x, y), batch_size=3)  # uneven last batch
    loss = torch.nn.functional.mse_loss(net(x), y)
    expected = torch.autograd.grad(loss, list(net.parameters()))
    for a, b in zip(grads, expected):
        assert torch.allclose(a, b, atol=1e-12)


# --------------------------------------------------------------------------------------- rank correlation
def test_average_ranks_with_ties():
    np.testing.assert_array_equal(rc.average_ranks([10, 20, 20, 30]), [1, 2.5, 2.5, 4])
    np.testing.assert_array_equal(rc.average_ranks([3, 1, 2]), [3, 1, 2])


def test_spearman_and_kendall_hand_computed():
    x = [1, 2, 3, 4, 5]
    assert rc.spearman(x, [2, 4, 6, 8, 10]) == pytest.approx(1.0)
    assert rc.spearman(x, [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    # one swap of neighbours: ρ_s = 1 − 6·Σd²/(n(n²−1)) = 1 − 6·2/120 = 0.9; τ = (9 − 1)/10 = 0.8
    assert rc.spearman(x, [1, 3, 2, 4, 5]) == pytest.approx(0.9)
    assert rc.kendall_tau_b(x, [1, 3, 2, 4, 5]) == pytest.approx(0.8)
    # monotone but non-linear: ranks only
    assert rc.spearman(x, np.exp(np.array(x, dtype=float) * 3)) == pytest.approx(1.0)
    # τ_b with a tie in y: 6 pairs, 5 concordant, 0 discordant, 1 tied in y → 5/√(6·5)
    assert rc.kendall_tau_b([1, 2, 3, 4], [1, 2, 2, 3]) == pytest.approx(5 / math.sqrt(30))
    assert math.isnan(rc.spearman(x, [1, 1, 1, 1, 1]))


def test_rank_correlation_agrees_with_scipy_when_available():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x = rng.normal(size=25)
    y = x + rng.normal(size=25)
    y[3] = y[4]  # a tie
    assert rc.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], rel=1e-12)
    assert rc.kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y)[0], rel=1e-12)


def test_permutation_pvalue_small_for_perfect_order_and_large_for_noise():
    x = np.arange(12, dtype=float)
    assert rc.permutation_pvalue(x, x, n_permutations=500) < 0.01
    # ρ_s = 1 − 6·10/(4·15) = 0 exactly: every re-pairing is at least as extreme, p = 1
    assert rc.spearman([1, 2, 3, 4], [2, 4, 1, 3]) == pytest.approx(0.0, abs=1e-15)
    assert rc.permutation_pvalue([1, 2, 3, 4], [2, 4, 1, 3], n_permutations=50) == 1.0
    out = rc.rank_correlation(x, x ** 2, n_permutations=100)
    assert out["n"] == 12 and out["spearman"] == pytest.approx(1.0) and out["kendall_tau_b"] == pytest.approx(1.0)


def test_rank_correlation_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        rc.spearman([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 3"):
        rc.spearman([1, 2], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        rc.spearman([1, 2, float("nan")], [1, 2, 3])


def test_runner_curvature_is_exact_on_a_diagonal_quadratic_and_matches_the_authors_iteration():
    from flatcast.experiments import sharpness as sh

    A = torch.diag(torch.tensor([6.0, 2.0, 0.5], dtype=torch.float64))
    c = torch.tensor([0.1, 0.2, -0.3], dtype=torch.float64)
    w0 = torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64)
    model = ShiftedQuadratic(A, c, w0)
    config = sh.sharpness_config("quick", sharpness_iters=3, trace_samples=1)
    out = sh.measure_curvature(model, DUMMY, config, horizon=5)
    g = A @ (w0 - c)
    assert out["lambda_max"] == pytest.approx(6.0, rel=1e-12)  # 3 Lanczos steps span ℝ³: exact
    assert out["trace"] == pytest.approx(8.5, rel=1e-12)  # Hutchinson is exact for a diagonal Hessian
    assert out["grad_norm"] == pytest.approx(float(torch.linalg.vector_norm(g)), rel=1e-12)
    assert out["g_h_u"] == pytest.approx(6.0 * abs(float(g[0])), rel=1e-10)  # λmax |gᵀu₁|, u₁ = e₁
    assert out["authors_sharpness"] == pytest.approx((4 * 5) ** 2 * out["g_h_u"], rel=1e-12)  # N = 4, H = 5
    assert out["g_h_u"] == pytest.approx(hs.gradient_curvature_product(model, DUMMY, n_iter=100), rel=1e-9)
    assert out["sharpness_train_loss"] == pytest.approx(closed_form(A, c, w0), rel=1e-12)
