"""Tests for flatcast.diagnostics.influence (OCE-TS Eq. 5, Eq. 6, Theorem 1; Koh & Liang influence)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from flatcast.diagnostics import influence as inf

DT = torch.float64


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.reshape(-1), b.reshape(-1)]))[0, 1])


def _ridge_problem(n=50, d=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=DT)
    y = X @ torch.randn(d, generator=gen, dtype=DT) + 0.5 * torch.randn(n, generator=gen, dtype=DT)
    X_test = torch.randn(8, d, generator=gen, dtype=DT)
    y_test = X_test @ torch.randn(d, generator=gen, dtype=DT)
    return X, y, X_test, y_test


def _half_mse(model, x, y):
    return 0.5 * (model(x).squeeze(-1) - y).pow(2).mean()


def _linear_model(theta: torch.Tensor, out: int = 1) -> nn.Linear:
    model = nn.Linear(theta.shape[-1], out, bias=False).to(DT)
    with torch.no_grad():
        model.weight.copy_(theta.reshape(out, -1))
    return model


def _classifier_problem(n=30, d=3, K=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=DT)
    W = torch.randn(K, d, generator=gen, dtype=DT)
    p = torch.softmax(2 * torch.randn(n, K, generator=gen, dtype=DT), -1)
    return X, p, W


# ------------------------------------------------------------------------------------------------ Eq. 5


def test_mse_influence_hand_computed():
    # X = [1, 2, 3], y = [1, 2, 4]: Σ_X = 14/3, θ̂ = 17/14, r = [-3, -6, 5]/14, IF = x r / Σ_X = [-9, -36, 45]/196
    X = torch.tensor([[1.0], [2.0], [3.0]], dtype=DT)
    y = torch.tensor([1.0, 2.0, 4.0], dtype=DT)
    assert torch.allclose(inf.fit_ridge(X, y), torch.tensor([17 / 14], dtype=DT))
    expected = torch.tensor([[-9.0], [-36.0], [45.0]], dtype=DT) / 196
    assert torch.allclose(inf.mse_influence(X, y), expected, atol=1e-14)


def test_mse_closed_form_equals_generic_exact_and_cg():
    X, y, X_test, y_test = _ridge_problem()
    ridge = 0.1
    theta = inf.fit_ridge(X, y, ridge)
    if_mse = inf.mse_influence(X, y, theta, ridge)
    grad_test = -((y_test - X_test @ theta).unsqueeze(1) * X_test).mean(0)
    expected = if_mse @ grad_test  # I(z_i) = −∇L_testᵀ H⁻¹ ∇ℓ_i = ∇L_testᵀ IF_i
    model = _linear_model(theta)
    for method in ("exact", "cg"):
        scores = inf.influence_on_test_loss(model, _half_mse, (X, y), (X_test, y_test), damping=ridge, method=method, tol=1e-12)
        assert torch.allclose(scores, expected, rtol=1e-8, atol=1e-12), method
    grads = inf.per_sample_gradients(model, _half_mse, (X, y))
    assert torch.allclose(grads, -(y - X @ theta).unsqueeze(1) * X)


def test_leave_one_out_retraining_agrees_with_influence():
    X, y, X_test, y_test = _ridge_problem(n=50, d=5)
    ridge = 0.05
    theta, theta_loo = inf.ridge_leave_one_out(X, y, ridge)
    n = X.shape[0]
    predicted_change = -inf.mse_influence(X, y, theta, ridge) / n  # ε = −1/n
    actual_change = theta_loo - theta
    assert _pearson(predicted_change, actual_change) > 0.99
    # exact relation (Sherman–Morrison): retraining = first-order prediction / (1 − leverage)
    A = X.T @ X + n * ridge * torch.eye(X.shape[1], dtype=DT)
    leverage = torch.einsum("nd,de,ne->n", X, torch.linalg.inv(A), X)
    assert torch.allclose(actual_change, predicted_change / (1 - leverage).unsqueeze(1), atol=1e-12)

    def test_loss(th):  # th: (m, d) -> (m,)
        return 0.5 * (y_test.unsqueeze(1) - X_test @ th.T).pow(2).mean(0)

    actual_loss_change = test_loss(theta_loo) - test_loss(theta.unsqueeze(0))
    scores = inf.influence_on_test_loss(_linear_model(theta), _half_mse, (X, y), (X_test, y_test), damping=ridge)
    assert _pearson(-scores / n, actual_loss_change) > 0.99
    assert torch.sign(-scores / n).eq(torch.sign(actual_loss_change)).double().mean() > 0.9


# ------------------------------------------------------------------------------------------------ Eq. 6


def _mean_ce(flat_w, X, p, K):
    return -(p * torch.log_softmax(X @ flat_w.reshape(K, -1).T, -1)).sum(-1).mean()


def test_ce_kronecker_hessian_equals_autograd():
    X, p, W = _classifier_problem()
    K, d = W.shape
    autograd_H = torch.autograd.functional.hessian(lambda w: _mean_ce(w, X, p, K), W.reshape(-1))
    assert torch.allclose(inf.ce_hessian(X, W), autograd_H, atol=1e-12)
    assert torch.allclose(inf.ce_hessian(X, W, ridge=0.3), autograd_H + 0.3 * torch.eye(K * d, dtype=DT), atol=1e-12)


def test_ce_hessian_with_shared_p_is_the_papers_kronecker_product():
    inst = inf.theorem1_instance(n=40, d=3, K=4, shared_p=True, seed=3)
    n, d = inst.X.shape
    K = inst.W.shape[0]
    q = torch.softmax(inst.X @ inst.W.T, -1)
    assert torch.allclose(q, q[:1].expand_as(q))  # every sample has the same q
    P = inf.softmax_covariance(q[0])
    sigma_x = inst.X.T @ inst.X / n
    H = inf.ce_hessian(inst.X, inst.W)
    assert torch.allclose(H, torch.kron(P, sigma_x), atol=1e-12)  # row-major vec(W)
    # column-stacking vec(W) (the paper's xxᵀ ⊗ P): the same matrix with indices (k, j) -> (j, k)
    H_col = H.reshape(K, d, K, d).permute(1, 0, 3, 2).reshape(d * K, d * K)
    assert torch.allclose(H_col, torch.kron(sigma_x, P), atol=1e-12)


def test_ce_influence_equals_autograd_pseudo_inverse_and_generic_path():
    X, p, W = _classifier_problem()
    K, d = W.shape
    H = torch.autograd.functional.hessian(lambda w: _mean_ce(w, X, p, K), W.reshape(-1))
    grads = torch.stack([torch.func.grad(_mean_ce)(W.reshape(-1), X[i : i + 1], p[i : i + 1], K) for i in range(len(X))])
    expected = -(torch.linalg.pinv(H, hermitian=True, rtol=1e-10) @ grads.T).T
    assert torch.allclose(inf.ce_influence(X, p, W).flatten(1), expected, atol=1e-9)
    # with ridge, agrees with influence_on_test_loss on the same model (one test point)
    model = _linear_model(W, out=K)

    def ce_fn(m, x, target):
        return -(target * torch.log_softmax(m(x), -1)).sum(-1).mean()

    ridge = 0.05
    g_test = torch.func.grad(_mean_ce)(W.reshape(-1), X[:1], p[:1], K)
    scores = inf.influence_on_test_loss(model, ce_fn, (X, p), (X[:1], p[:1]), damping=ridge, method="exact")
    assert torch.allclose(scores, inf.ce_influence(X, p, W, ridge).flatten(1) @ g_test, atol=1e-10)


def test_ce_influence_ignores_the_softmax_shift_directions():
    X, p, W = _classifier_problem()
    if_ce = inf.ce_influence(X, p, W)
    # adding c to every logit changes nothing, so the pseudo-inverse solution has no component along 1 cᵀ
    assert torch.allclose(if_ce.sum(1), torch.zeros_like(if_ce.sum(1)), atol=1e-9)


# ------------------------------------------------------------------------------------------------- OCE


def test_oce_loss_matches_cumulative_formula_and_reduces_to_ce_for_two_bins():
    X, p, W = _classifier_problem(K=5)
    q = torch.softmax(X @ W.T, -1)
    P, Q = p.cumsum(-1)[:, :-1], q.cumsum(-1)[:, :-1]
    direct = -(P * Q.log() + (1 - P) * (1 - Q).log()).sum(-1).mean()
    assert torch.allclose(inf.oce_loss_linear(W, X, p), direct, atol=1e-12)
    X2, p2, W2 = _classifier_problem(K=2)
    assert torch.allclose(inf.oce_hessian(X2, p2, W2), inf.ce_hessian(X2, W2), atol=1e-12)
    assert torch.allclose(inf.oce_influence(X2, p2, W2, 0.1), inf.ce_influence(X2, p2, W2, 0.1), atol=1e-10)


def test_local_oce_agrees_with_flatcast_losses():
    losses = pytest.importorskip("flatcast.losses")
    X, p, W = _classifier_problem(K=6, seed=4)
    q = torch.softmax(X @ W.T, -1)
    assert torch.allclose(inf.oce_loss_linear(W, X, p), losses.oce_loss(p, q), rtol=1e-9)


@pytest.fixture(scope="module")
def fitted_oce():
    X, p, _ = _classifier_problem(K=5)
    ridge = 0.02
    return X, p, inf.fit_linear_classifier(X, p, loss="oce", ridge=ridge), ridge


def test_oce_is_not_convex_in_the_logits_so_influence_needs_a_minimiser(fitted_oce):
    X, p, W = _classifier_problem(K=5)
    assert torch.linalg.eigvalsh(inf.oce_hessian(X, p, W)).min() < 0  # random W: indefinite
    with pytest.raises(ValueError, match="negative eigenvalue"):
        inf.oce_influence(X, p, W)
    _, _, W_fit, _ = fitted_oce
    grad_norm = torch.func.grad(lambda w: inf.oce_loss_linear(w, X, p) + 0.01 * w.pow(2).sum())(W_fit).norm()
    assert grad_norm < 1e-6
    assert torch.linalg.eigvalsh(inf.oce_hessian(X, p, W_fit, 0.02)).min() > 0


def test_oce_influence_agrees_with_generic_cg_path(fitted_oce):
    X, p, W, ridge = fitted_oce
    model = _linear_model(W, out=W.shape[0])

    def oce_fn(m, x, target):
        return inf.oce_loss_linear(m.weight, x, target)

    g_test = torch.func.grad(inf.oce_loss_linear)(W, X[:3], p[:3]).reshape(-1)
    expected = inf.oce_influence(X, p, W, ridge).flatten(1) @ g_test
    scores = inf.influence_on_test_loss(model, oce_fn, (X, p), (X[:3], p[:3]), damping=ridge, method="cg", tol=1e-12)
    assert torch.allclose(scores, expected, atol=1e-9)


# ----------------------------------------------------------------------------------------- generic / CG


def test_cg_matches_exact_on_small_mlp_and_leaves_model_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).to(DT)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, 3, generator=gen, dtype=DT)
    y = torch.sin(x.sum(1))
    before = [t.clone() for t in model.parameters()]
    damping = 0.5
    H = inf.flat_hessian(model, _half_mse, (x, y))
    assert torch.linalg.eigvalsh(H).min() + damping > 0  # CG's precondition holds on this instance
    v = torch.randn(H.shape[0], generator=gen, dtype=DT)
    s_cg = inf.inverse_hvp(model, _half_mse, (x, y), v, damping=damping, method="cg", tol=1e-12)
    s_ref = torch.linalg.solve(H + damping * torch.eye(H.shape[0], dtype=DT), v)
    assert torch.allclose(s_cg, s_ref, rtol=1e-7, atol=1e-9)
    exact = inf.influence_on_test_loss(model, _half_mse, (x, y), (x[:2], y[:2]), damping=damping, method="exact")
    cg = inf.influence_on_test_loss(model, _half_mse, (x, y), (x[:2], y[:2]), damping=damping, method="cg", tol=1e-12)
    assert torch.allclose(cg, exact, rtol=1e-6, atol=1e-9)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_cg_warns_when_iterations_run_out():
    X, y, X_test, y_test = _ridge_problem()
    model = _linear_model(inf.fit_ridge(X, y))
    with pytest.warns(RuntimeWarning, match="cg_iters=1"):
        inf.influence_on_test_loss(model, _half_mse, (X, y), (X_test, y_test), damping=0.01, cg_iters=1, tol=1e-12)


# ------------------------------------------------------------------------- robustness claim and Theorem 1


def test_mse_influence_grows_linearly_while_ce_influence_stays_bounded():
    inst = inf.theorem1_instance(n=60, d=3, K=6, shared_p=False, logit_scale=1.0, damping=0.01, seed=2)
    shifts = torch.tensor([1.0, 3.0, 10.0, 30.0, 100.0, 1000.0], dtype=DT)
    sweep = inf.outlier_sweep(inst, 0, shifts)
    slope = sweep["if_mse_norm"] / sweep["residual"].abs()
    assert torch.allclose(slope, slope[0].expand_as(slope), rtol=1e-10)  # ‖IF_MSE‖ ∝ |r|
    assert sweep["if_mse_norm"][-1] > 300 * sweep["if_mse_norm"][0]
    H_ce = inf.ce_hessian(inst.X, inst.W, inst.damping)
    bound = math.sqrt(2) * inst.X[0].norm() / torch.linalg.eigvalsh(H_ce)[0]
    assert torch.all(sweep["if_ce_norm"] <= bound)
    assert torch.allclose(sweep["if_ce_norm"][-2:], sweep["if_ce_norm"][-1].expand(2), rtol=1e-6)  # saturated
    assert torch.all(sweep["ratio"][1:] < sweep["ratio"][:-1])  # R falls as the target moves away


def test_theorem1_is_tight_for_identity_covariance_and_uniform_q():
    # Σ_X = I and W = 0 (q uniform, P = (I − 11ᵀ/K)/K, μ = 1/K on 1^⊥): R = K ‖q − p‖ / |r| exactly
    n, d, K = 24, 3, 4
    gen = torch.Generator().manual_seed(5)
    X = math.sqrt(n) * torch.linalg.qr(torch.randn(n, d, generator=gen, dtype=DT))[0]
    y = torch.randn(n, generator=gen, dtype=DT)
    p = torch.softmax(torch.randn(n, K, generator=gen, dtype=DT), -1)
    W = torch.zeros(K, d, dtype=DT)
    theta = inf.fit_ridge(X, y)
    check = inf.theorem1_check(X, y, theta, p, W)
    expected = K * (0.25 - p).norm(dim=-1) / (y - X @ theta).abs()
    for side in (check.lower, check.measured, check.upper):
        assert torch.allclose(side, expected, rtol=1e-9)
    assert check.fraction_holding == 1.0 and check.p_spread < 1e-12


@pytest.mark.parametrize("damping", [0.0, 0.1])
@pytest.mark.parametrize("seed", [0, 1])
def test_theorem1_bounds_contain_measured_ratio_under_shared_p(damping, seed):
    inst = inf.theorem1_instance(n=80, d=4, K=5, shared_p=True, logit_scale=3.0, damping=damping, seed=seed)
    check = inf.theorem1_check(inst.X, inst.y, inst.theta, inst.p, inst.W, damping)
    assert check.p_spread < 1e-12
    assert bool(check.holds.all()), (check.measured / check.upper).max()
    assert torch.all(check.lower < check.upper)


def test_theorem1_check_reports_the_spread_of_p_on_assumption_breaking_instances():
    # A finding, not a guarantee: we only check that the report is well formed and the assumption is broken.
    inst = inf.theorem1_instance(n=80, d=4, K=5, shared_p=False, logit_scale=6.0, seed=0)
    check = inf.theorem1_check(inst.X, inst.y, inst.theta, inst.p, inst.W)
    assert check.p_spread > 1.0
    assert torch.isfinite(check.measured).all() and torch.all(check.lower <= check.upper)
    assert 0.0 <= check.fraction_holding <= 1.0


def test_theorem1_instance_is_deterministic():
    a = inf.theorem1_instance(n=20, seed=7, shared_p=False)
    b = inf.theorem1_instance(n=20, seed=7, shared_p=False)
    c = inf.theorem1_instance(n=20, seed=8, shared_p=False)
    assert torch.equal(a.X, b.X) and torch.equal(a.W, b.W) and torch.equal(a.p, b.p)
    assert not torch.equal(a.X, c.X)


# ----------------------------------------------------------------------------------------------- errors


def test_bad_inputs_raise():
    X, y, X_test, y_test = _ridge_problem(n=10, d=3)
    model = _linear_model(inf.fit_ridge(X, y))
    with pytest.raises(ValueError, match="y must have shape"):
        inf.mse_influence(X, y[:-1])
    with pytest.raises(ValueError, match="ridge"):
        inf.mse_influence(X, y, ridge=-1.0)
    with pytest.raises(TypeError, match="X must be a torch.Tensor"):
        inf.fit_ridge(X.numpy(), y)
    with pytest.raises(ValueError, match="damping"):
        inf.influence_on_test_loss(model, _half_mse, (X, y), (X_test, y_test), damping=-0.1)
    with pytest.raises(ValueError, match="method"):
        inf.influence_on_test_loss(model, _half_mse, (X, y), (X_test, y_test), method="lissa")
    with pytest.raises(ValueError, match="cg_iters"):
        inf.influence_on_test_loss(model, _half_mse, (X, y), (X_test, y_test), cg_iters=0)
    with pytest.raises(ValueError, match="leading"):
        inf.influence_on_test_loss(model, _half_mse, (X, y[:-1]), (X_test, y_test))
    with pytest.raises(ValueError, match="do not match"):
        inf.influence_on_test_loss(model, _half_mse, (X, y), (X_test[:, :2], y_test))
    Xc, p, W = _classifier_problem(n=10, d=3, K=4)
    with pytest.raises(ValueError, match="columns"):
        inf.ce_influence(Xc, p, W[:, :2])
    with pytest.raises(ValueError, match="p must have shape"):
        inf.oce_influence(Xc, p[:, :3], W)
    sigma = torch.eye(3, dtype=DT)
    P_ok = inf.softmax_covariance(torch.full((4,), 0.25, dtype=DT))
    r, e = torch.ones(10, dtype=DT), torch.zeros(10, 4, dtype=DT)
    with pytest.raises(ValueError, match="P·1 = 0"):
        inf.theorem1_bounds(sigma, torch.eye(4, dtype=DT), r, e)
    with pytest.raises(ValueError, match="zeros"):
        inf.theorem1_bounds(sigma, P_ok, torch.zeros(10, dtype=DT), e)
    with pytest.raises(ValueError, match="prob_error"):
        inf.theorem1_bounds(sigma, P_ok, r, e[:, :3])
