"""Influence functions: how much one training point moves a model (OCE-TS, "Comparative analysis of OCE and MSE").

Conventions (Koh & Liang 2017, used throughout and checked by the tests)
-----------------------------------------------------------------------
The empirical risk is ``R(θ) = (1/n) Σ_i ℓ(z_i, θ) + (λ/2) ‖θ‖²`` (``λ`` is called ``ridge`` in the closed forms
and ``damping`` in the generic path; they play the same role) and ``H = ∇²R(θ̂)``.

* Up-weighting a training point ``z`` by ``ε`` (``R + ε ℓ(z)``) moves the minimiser by
  ``dθ̂/dε = IF(z) = −H⁻¹ ∇_θ ℓ(z, θ̂)``; the *influence on a test loss* is
  ``I(z, z_test) = −∇ℓ(z_test)ᵀ H⁻¹ ∇ℓ(z)``.
* Removing ``z_i`` is ``ε = −1/n``:  ``θ̂_{−i} − θ̂ ≈ −IF(z_i)/n`` and ``L_test(θ̂_{−i}) − L_test(θ̂) ≈ −I(z_i)/n``.
  The matching leave-one-out retraining keeps the weights ``1/n`` of the other points and the ridge
  (:func:`ridge_leave_one_out`); the first-order prediction then differs from retraining only by the leverage
  factor ``1/(1 − h_i)``.

Closed forms (our reading of OCE-TS; the paper text was not available, so the formulas are reconstructed)
------------------------------------------------------------------------------------------------------
* Eq. 5, linear regression with MSE, ``ℓ = ½ (y − θᵀx)²``: ``∇ℓ = −r x`` with the residual ``r = y − θᵀx`` and
  ``H = Σ_X + λI`` with ``Σ_X = XᵀX/n`` (uncentred second moment), so ``IF_MSE(z) = (Σ_X + λI)⁻¹ x r`` — linear
  in ``r``, hence unbounded for outliers (:func:`mse_influence`).
* Eq. 6, softmax classifier ``q = softmax(Wx)``, ``W ∈ R^{K×d}``, CE ``ℓ = −Σ_k p_k log q_k`` (soft targets
  allowed): ``∇_W ℓ = (q − p) xᵀ``, ``‖∇ℓ‖ = ‖q − p‖ ‖x‖ ≤ √2 ‖x‖`` whatever the target, and
  ``H = E[xxᵀ ⊗ P] + λI`` with ``P = diag(q) − qqᵀ``.  The paper's ``xxᵀ ⊗ P`` is written for the column-stacking
  ``vec(W)``; this module flattens ``W`` row-major like ``W.flatten()`` (index ``k·d + j``), where the same matrix
  reads ``E[P ⊗ xxᵀ]`` (a permutation of the paper's; same eigenvalues) (:func:`ce_hessian`, :func:`ce_influence`).
* ``P`` annihilates the all-ones vector (softmax is invariant to adding ``c`` to every logit), so without ridge
  ``H_CE`` is singular along ``1 cᵀ``.  The gradient ``(q − p) xᵀ`` is orthogonal to those directions, so with
  ``λ = 0`` the exact solves use the Moore–Penrose inverse, i.e. they work on the subspace orthogonal to the
  all-ones direction; with ``λ > 0`` they are ordinary solves.
* OCE on a linear model (OCE-TS Eq. 12-14 as we read them): ``OCE(p, q) = −Σ_{k<K} [P_k log Q_k + (1 − P_k)
  log(1 − Q_k)]`` on the cumulative sums ``P, Q``; its Hessian comes from autograd (:func:`oce_influence`).
  Unlike CE, OCE is *not* convex in the softmax logits (``log Σ_{j≤k} e^{z_j} − log Σ_j e^{z_j}`` is a difference
  of convex functions): away from a minimiser its Hessian is indefinite, so evaluate OCE influence at a fitted
  ``W`` (:func:`fit_linear_classifier`); an indefinite Hessian raises ``ValueError``.

Theorem 1 (reconstruction, :func:`theorem1_bounds`)
--------------------------------------------------
For ``R = ‖IF_CE(z)‖₂ / ‖IF_MSE(z)‖₂`` and a symmetric PSD ``A``, ``‖A⁻¹g‖ ∈ [‖g‖/λ_max(A), ‖g‖/λ_min(A)]`` on
the subspace containing ``g``.  Under the theorem's assumption that every sample shares the same ``P``,
``H_CE = Σ_X ⊗ P + λI`` whose eigenvalues on ``1^⊥ ⊗ R^d`` are ``λ_i(Σ_X) μ_j + λ`` with ``μ_j`` the eigenvalues
of ``P`` on ``1^⊥`` (the non-null ones).  ``‖x‖`` cancels and

    ‖q − p‖ (λ_min(Σ_X) + λ) / (|r| (λ_max(Σ_X) μ_max + λ))  ≤  R  ≤  ‖q − p‖ (λ_max(Σ_X) + λ) / (|r| (λ_min(Σ_X) μ_min + λ)).

With ``λ = 0``: ``‖q−p‖ / (|r| κ μ_max) ≤ R ≤ ‖q−p‖ κ / (|r| μ_min)``, ``κ = cond(Σ_X)``; since ``‖q−p‖ ≤ √2``
the ratio decays like ``1/|r|``.  When per-sample ``P_i`` differ, :func:`theorem1_check` plugs in the mean
``P̄ = E[P_i]`` and reports whether the bound still holds (a finding, not a guarantee).

Generic models (:func:`influence_on_test_loss`)
----------------------------------------------
``loss_fn(model, x, y) -> scalar`` is the *mean* loss over the batch (the convention of
:mod:`flatcast.diagnostics.hessian`).  ``H`` is the Hessian of the mean training loss over the chosen parameters
and the solve is ``(H + λI) s = g`` with ``λ = damping`` (equal to a ridge term ``λ/2 ‖θ‖²`` in the objective):
either conjugate gradient on autograd Hessian-vector products (double backward) or the exact Hessian from
``torch.autograd.functional.hessian`` for tiny models.  Per-sample gradients use ``torch.func.vmap(grad)``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from flatcast.utils import check_nonnegative

__all__ = [
    "fit_ridge",
    "ridge_leave_one_out",
    "mse_influence",
    "softmax_covariance",
    "ce_hessian",
    "ce_influence",
    "oce_loss_linear",
    "oce_hessian",
    "oce_influence",
    "fit_linear_classifier",
    "per_sample_gradients",
    "flat_hessian",
    "inverse_hvp",
    "influence_on_test_loss",
    "theorem1_bounds",
    "measured_ratio",
    "Theorem1Instance",
    "theorem1_instance",
    "Theorem1Check",
    "theorem1_check",
    "outlier_sweep",
]

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

_MAX_EXACT_PARAMS = 4096


# ----------------------------------------------------------------------------------------------- validation


def _as_tensor(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not torch.is_floating_point(value):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    return value


def _check_ndim(t: torch.Tensor, ndim: int, name: str, shape_doc: str) -> None:
    if t.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_doc}, got {tuple(t.shape)}")


def _check_design(X, name: str = "X") -> torch.Tensor:
    X = _as_tensor(X, name)
    _check_ndim(X, 2, name, "(n, d)")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(X.shape)}")
    return X


def _check_classifier(X, p, W) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    X = _check_design(X)
    p = _as_tensor(p, "p")
    W = _as_tensor(W, "W")
    _check_ndim(p, 2, "p", "(n, K)")
    _check_ndim(W, 2, "W", "(K, d)")
    n, d = X.shape
    if W.shape[1] != d:
        raise ValueError(f"W has {W.shape[1]} columns but X has d={d} features (W must be (K, d))")
    if p.shape != (n, W.shape[0]):
        raise ValueError(f"p must have shape (n, K)=({n}, {W.shape[0]}), got {tuple(p.shape)}")
    if W.shape[0] < 2:
        raise ValueError(f"need K >= 2 classes/bins, got K={W.shape[0]}")
    return X, p, W


def _psd_solve(H: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Solve ``H s = rhs`` for symmetric PSD ``H`` (columns of ``rhs``) with the Moore–Penrose inverse.

    Eigen-directions with eigenvalue below ``100 · dim · eps(dtype) · λ_max`` are dropped; for a non-singular ``H`` this is the
    ordinary solve, for the softmax Hessians it restricts to the subspace orthogonal to the null directions.
    """
    H = 0.5 * (H + H.T)
    evals, evecs = torch.linalg.eigh(H)
    if evals[-1] <= 0:
        raise ValueError(f"Hessian is not positive semi-definite with a positive direction (λ_max={evals[-1]:.3g})")
    if evals[0] < -1e-6 * evals[-1]:
        raise ValueError(
            f"Hessian has a negative eigenvalue {evals[0].item():.3g} (λ_max={evals[-1].item():.3g}): "
            "influence needs a convex point; increase the damping/ridge"
        )
    keep = evals > 100 * H.shape[0] * torch.finfo(H.dtype).eps * evals[-1]
    inv = torch.where(keep, 1.0 / torch.where(keep, evals, torch.ones_like(evals)), torch.zeros_like(evals))
    return evecs @ (inv.unsqueeze(-1) * (evecs.T @ rhs))


# ------------------------------------------------------------------------------------ ridge / MSE (Eq. 5)


def fit_ridge(X: torch.Tensor, y: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """Minimiser ``θ̂ = (XᵀX/n + λI)⁻¹ Xᵀy/n`` of ``(1/n) Σ ½ (y_i − θᵀx_i)² + (λ/2)‖θ‖²`` (OCE-TS Eq. 5 setting)."""
    X = _check_design(X)
    y = _as_tensor(y, "y")
    ridge = check_nonnegative("ridge", ridge)
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape (n,)=({X.shape[0]},), got {tuple(y.shape)}")
    n, d = X.shape
    A = X.T @ X / n + ridge * torch.eye(d, dtype=X.dtype, device=X.device)
    return torch.linalg.solve(A, X.T @ y / n)


def ridge_leave_one_out(X: torch.Tensor, y: torch.Tensor, ridge: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact leave-one-out retraining of ridge regression, all ``n`` refits in one batched solve.

    ``θ̂_{−i} = argmin (1/n) Σ_{j≠i} ½ (y_j − θᵀx_j)² + (λ/2)‖θ‖² = (XᵀX − x_i x_iᵀ + nλI)⁻¹ (Xᵀy − x_i y_i)``
    (the other points keep their weight ``1/n``, which is what the influence function's ``ε = −1/n`` describes).

    Returns ``(theta_hat (d,), theta_loo (n, d))``.
    """
    theta = fit_ridge(X, y, ridge)
    n, d = X.shape
    A = X.T @ X + n * ridge * torch.eye(d, dtype=X.dtype, device=X.device)
    A_loo = A.unsqueeze(0) - X.unsqueeze(2) * X.unsqueeze(1)  # (n, d, d)
    b_loo = (X.T @ y).unsqueeze(0) - X * y.unsqueeze(1)  # (n, d)
    theta_loo = torch.linalg.solve(A_loo, b_loo)
    return theta, theta_loo


def mse_influence(X: torch.Tensor, y: torch.Tensor, theta: torch.Tensor | None = None, ridge: float = 0.0) -> torch.Tensor:
    """OCE-TS Eq. 5: ``IF_MSE(z_i) = (Σ_X + λI)⁻¹ x_i r_i`` for every training point, shape ``(n, d)``.

    ``Σ_X = XᵀX/n``, ``r_i = y_i − θᵀx_i``; ``theta`` defaults to the ridge fit :func:`fit_ridge`.
    """
    X = _check_design(X)
    y = _as_tensor(y, "y")
    ridge = check_nonnegative("ridge", ridge)
    n, d = X.shape
    if y.shape != (n,):
        raise ValueError(f"y must have shape (n,)=({n},), got {tuple(y.shape)}")
    if theta is None:
        theta = fit_ridge(X, y, ridge)
    theta = _as_tensor(theta, "theta")
    if theta.shape != (d,):
        raise ValueError(f"theta must have shape (d,)=({d},), got {tuple(theta.shape)}")
    H = X.T @ X / n + ridge * torch.eye(d, dtype=X.dtype, device=X.device)
    residual = y - X @ theta
    return _psd_solve(H, (X * residual.unsqueeze(1)).T).T


# ---------------------------------------------------------------------------------- softmax + CE (Eq. 6)


def softmax_covariance(q: torch.Tensor) -> torch.Tensor:
    """``P = diag(q) − qqᵀ`` (the softmax Jacobian / CE logit Hessian of OCE-TS Eq. 6), batched over leading dims."""
    q = _as_tensor(q, "q")
    return torch.diag_embed(q) - q.unsqueeze(-1) * q.unsqueeze(-2)


def ce_hessian(X: torch.Tensor, W: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """Hessian of ``(1/n) Σ CE(p_i, softmax(W x_i)) + (λ/2)‖W‖²`` in ``W.flatten()`` order, shape ``(Kd, Kd)``.

    OCE-TS Eq. 6 writes ``E[xxᵀ ⊗ P]`` for column-stacked ``vec(W)``; in row-major order the same matrix is
    ``E[P_i ⊗ x_i x_iᵀ]``: ``H[(k,j),(l,m)] = mean_i P_i[k,l] x_i[j] x_i[m] + λ δ``.  It does not depend on ``p``.
    """
    X = _check_design(X)
    W = _as_tensor(W, "W")
    _check_ndim(W, 2, "W", "(K, d)")
    ridge = check_nonnegative("ridge", ridge)
    if W.shape[1] != X.shape[1]:
        raise ValueError(f"W has {W.shape[1]} columns but X has d={X.shape[1]} features")
    n, d = X.shape
    K = W.shape[0]
    P = softmax_covariance(torch.softmax(X @ W.T, dim=-1))
    H = torch.einsum("nkl,nj,nm->kjlm", P, X, X).reshape(K * d, K * d) / n
    return H + ridge * torch.eye(K * d, dtype=X.dtype, device=X.device)


def ce_influence(X: torch.Tensor, p: torch.Tensor, W: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """OCE-TS Eq. 6: ``IF_CE(z_i) = −H_CE⁻¹ vec((q_i − p_i) x_iᵀ)`` for every training point, shape ``(n, K, d)``.

    With ``ridge = 0`` the Moore–Penrose inverse is used (the gradient is orthogonal to the shift directions
    ``1 cᵀ`` that make ``H_CE`` singular).
    """
    X, p, W = _check_classifier(X, p, W)
    H = ce_hessian(X, W, ridge)
    q = torch.softmax(X @ W.T, dim=-1)
    grads = ((q - p).unsqueeze(2) * X.unsqueeze(1)).reshape(X.shape[0], -1)
    return -_psd_solve(H, grads.T).T.reshape(X.shape[0], *W.shape)


# ------------------------------------------------------------------------------------ OCE on linear models


def _oce_from_logits(p: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``−Σ_{k<K} [P_k log Q_k + (1−P_k) log(1−Q_k)]`` per sample, with ``log Q`` and ``log(1−Q)`` from
    log-cumsum-exp of the log-softmax (stable even when ``Q_k`` rounds to 0 or 1)."""
    log_q = torch.log_softmax(logits, dim=-1)
    log_Q = torch.logcumsumexp(log_q, dim=-1)[..., :-1]
    log_tail = torch.logcumsumexp(log_q.flip(-1), dim=-1).flip(-1)[..., 1:]  # log Σ_{j>k} q_j = log(1 − Q_k)
    P = torch.cumsum(p, dim=-1)[..., :-1]
    return -(P * log_Q + (1.0 - P) * log_tail).sum(-1)


def oce_loss_linear(W: torch.Tensor, X: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Mean ordinal cross-entropy (OCE-TS Eq. 12-14) of the linear model ``q = softmax(W x)`` on ``(X, p)``."""
    return _oce_from_logits(p, X @ W.T).mean()


def oce_hessian(X: torch.Tensor, p: torch.Tensor, W: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """Autograd Hessian of ``mean OCE + (λ/2)‖W‖²`` over ``W.flatten()``, shape ``(Kd, Kd)``."""
    X, p, W = _check_classifier(X, p, W)
    ridge = check_nonnegative("ridge", ridge)
    K, d = W.shape

    def risk(flat_w: torch.Tensor) -> torch.Tensor:
        return oce_loss_linear(flat_w.reshape(K, d), X, p) + 0.5 * ridge * flat_w.pow(2).sum()

    return torch.autograd.functional.hessian(risk, W.detach().reshape(-1))


def oce_influence(X: torch.Tensor, p: torch.Tensor, W: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """``IF_OCE(z_i) = −H⁻¹ ∇_W OCE(p_i, softmax(W x_i))`` for every training point, shape ``(n, K, d)``.

    Per-sample gradients by ``vmap(grad)``; ``H`` by :func:`oce_hessian` (pseudo-inverse when ``ridge = 0``;
    OCE is also invariant to shifting all logits, so ``H`` is singular along ``1 cᵀ`` exactly like CE).
    """
    X, p, W = _check_classifier(X, p, W)
    H = oce_hessian(X, p, W, ridge)

    def single(w: torch.Tensor, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _oce_from_logits(target, w @ x)

    grads = vmap(grad(single), in_dims=(None, 0, 0))(W.detach(), X, p).reshape(X.shape[0], -1)
    return -_psd_solve(H, grads.T).T.reshape(X.shape[0], *W.shape)


def fit_linear_classifier(
    X: torch.Tensor, p: torch.Tensor, loss: str = "ce", ridge: float = 1e-3, max_iter: int = 200
) -> torch.Tensor:
    """Minimise ``mean loss(p_i, softmax(W x_i)) + (λ/2)‖W‖²`` over ``W ∈ R^{K×d}`` (``loss`` ``"ce"`` or ``"oce"``)
    with L-BFGS from ``W = 0`` (deterministic); the influence formulas presume such a minimiser."""
    if loss not in ("ce", "oce"):
        raise ValueError(f"loss must be 'ce' or 'oce', got {loss!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    ridge = check_nonnegative("ridge", ridge)
    X = _check_design(X)
    p = _as_tensor(p, "p")
    _check_ndim(p, 2, "p", "(n, K)")
    X, p, W = _check_classifier(X, p, torch.zeros(p.shape[1], X.shape[1], dtype=X.dtype, device=X.device))
    W.requires_grad_(True)
    optimizer = torch.optim.LBFGS([W], max_iter=max_iter, tolerance_grad=1e-12, tolerance_change=1e-15,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logits = X @ W.T
        data = _oce_from_logits(p, logits).mean() if loss == "oce" else -(p * torch.log_softmax(logits, -1)).sum(-1).mean()
        objective = data + 0.5 * ridge * W.pow(2).sum()
        objective.backward()
        return objective

    optimizer.step(closure)
    return W.detach()


# --------------------------------------------------------------------------------- generic torch models


class _LossModule(nn.Module):
    """Wraps ``loss_fn(model, x, y)`` as a module so ``torch.func.functional_call`` can swap the parameters."""

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.model, x, y)


def _check_pair(data, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{name} must be a pair (x, y) of tensors, got {type(data).__name__}")
    x, y = data
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must hold tensors, got ({type(x).__name__}, {type(y).__name__})")
    if x.ndim < 1 or y.ndim < 1 or x.shape[0] != y.shape[0] or x.shape[0] < 1:
        raise ValueError(
            f"{name}: x and y must share a non-empty leading (batch) dimension, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    return x, y


def _select_params(model: nn.Module, params: Sequence[torch.Tensor] | None) -> tuple[list[str], list[torch.Tensor]]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = [(name, t) for name, t in model.named_parameters() if t.requires_grad]
    if params is not None:
        wanted = {id(t) for t in params}
        named = [(name, t) for name, t in named if id(t) in wanted]
        if len(named) != len(wanted):
            raise ValueError("params must be trainable parameters of model")
    if not named:
        raise ValueError("model has no trainable parameters to take influence over")
    return [f"model.{name}" for name, _ in named], [t.detach() for _, t in named]


class _FlatProblem:
    """The mean loss as a function of one flat parameter vector (parameters of ``model`` are never modified)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, params: Sequence[torch.Tensor] | None):
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable loss_fn(model, x, y), got {loss_fn!r}")
        self.wrapper = _LossModule(model, loss_fn)
        self.names, tensors = _select_params(model, params)
        self.shapes = [t.shape for t in tensors]
        self.sizes = [t.numel() for t in tensors]
        self.flat0 = torch.cat([t.reshape(-1) for t in tensors])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        pieces = torch.split(flat, self.sizes)
        return {n: piece.reshape(s) for n, piece, s in zip(self.names, pieces, self.shapes)}

    def loss(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(self.wrapper, self.unflatten(flat), (x, y))
        if out.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar (the mean loss), got shape {tuple(out.shape)}")
        return out

    def gradient(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        flat = self.flat0.clone().requires_grad_(True)
        return torch.autograd.grad(self.loss(flat, x, y), flat)[0]

    def per_sample_gradients(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def single(flat, xi, yi):
            return self.loss(flat, xi.unsqueeze(0), yi.unsqueeze(0))

        return vmap(grad(single), in_dims=(None, 0, 0))(self.flat0, x, y)

    def hessian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.flat0.numel() > _MAX_EXACT_PARAMS:
            raise ValueError(
                f"exact Hessian asked for {self.flat0.numel()} parameters (> {_MAX_EXACT_PARAMS}); use method='cg'"
            )
        return torch.autograd.functional.hessian(lambda flat: self.loss(flat, x, y), self.flat0)


def per_sample_gradients(model: nn.Module, loss_fn: LossFn, data, params: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """``∇_θ ℓ(z_i, θ)`` for every point of ``data = (x, y)``, flattened over ``params``: shape ``(n, n_params)``.

    Vectorised with ``torch.func.vmap(grad)``; ``loss_fn`` is called on batches of one point.
    """
    x, y = _check_pair(data, "data")
    return _FlatProblem(model, loss_fn, params).per_sample_gradients(x, y)


def flat_hessian(model: nn.Module, loss_fn: LossFn, data, params: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Exact Hessian of ``loss_fn(model, x, y)`` over the flattened ``params`` (``torch.autograd.functional.hessian``)."""
    x, y = _check_pair(data, "data")
    return _FlatProblem(model, loss_fn, params).hessian(x, y)


def _conjugate_gradient(hvp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int, tol: float, damping: float) -> torch.Tensor:
    solution = torch.zeros_like(b)
    b_norm = torch.linalg.vector_norm(b)
    if b_norm == 0:
        return solution
    residual = b.clone()
    direction = residual.clone()
    rs = residual @ residual
    for _ in range(iters):
        Ad = hvp(direction)
        curvature = direction @ Ad
        if curvature <= 0:
            raise ValueError(
                f"H + damping·I is not positive definite along a CG direction (dᵀAd={curvature.item():.3g}); "
                f"increase damping (got {damping!r})"
            )
        alpha = rs / curvature
        solution = solution + alpha * direction
        residual = residual - alpha * Ad
        rs_new = residual @ residual
        if torch.sqrt(rs_new) <= tol * b_norm:
            return solution
        direction = residual + (rs_new / rs) * direction
        rs = rs_new
    warnings.warn(
        f"conjugate gradient stopped after cg_iters={iters} with relative residual "
        f"{(torch.sqrt(rs) / b_norm).item():.3g} > tol={tol}",
        RuntimeWarning,
        stacklevel=3,
    )
    return solution


def _check_solver_args(damping, method, cg_iters, tol) -> float:
    damping = check_nonnegative("damping", damping)
    if method not in ("cg", "exact"):
        raise ValueError(f"method must be 'cg' or 'exact', got {method!r}")
    if isinstance(cg_iters, bool) or not isinstance(cg_iters, int) or cg_iters < 1:
        raise ValueError(f"cg_iters must be a positive integer, got {cg_iters!r}")
    if check_nonnegative("tol", tol) <= 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if method == "cg" and damping == 0:
        warnings.warn("CG with damping=0 needs a positive-definite Hessian", RuntimeWarning, stacklevel=3)
    return damping


def _inverse_hvp(problem: _FlatProblem, x, y, v, damping, method, cg_iters, tol) -> torch.Tensor:
    if method == "exact":
        H = problem.hessian(x, y)
        eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
        return _psd_solve(H + damping * eye, v.unsqueeze(1)).squeeze(1)
    flat = problem.flat0.clone().requires_grad_(True)
    g = torch.autograd.grad(problem.loss(flat, x, y), flat, create_graph=True)[0]

    def damped_hvp(vec: torch.Tensor) -> torch.Tensor:  # (H + λI) vec by double backward
        return torch.autograd.grad(g, flat, grad_outputs=vec, retain_graph=True)[0].detach() + damping * vec

    return _conjugate_gradient(damped_hvp, v.detach(), cg_iters, tol, damping)


def inverse_hvp(
    model: nn.Module,
    loss_fn: LossFn,
    train_data,
    v: torch.Tensor,
    damping: float = 0.01,
    method: str = "cg",
    cg_iters: int = 100,
    tol: float = 1e-8,
    params: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Solve ``(H + damping·I) s = v`` with ``H`` the Hessian of the mean training loss (flat over ``params``).

    ``method="cg"``: conjugate gradient on autograd Hessian-vector products, stopping at relative residual
    ``tol`` (a ``RuntimeWarning`` if ``cg_iters`` is reached first).  ``method="exact"``: dense Hessian and a
    pseudo-inverse solve (reference for tiny models).
    """
    damping = _check_solver_args(damping, method, cg_iters, tol)
    x, y = _check_pair(train_data, "train_data")
    problem = _FlatProblem(model, loss_fn, params)
    v = _as_tensor(v, "v")
    if v.shape != problem.flat0.shape:
        raise ValueError(f"v must be a flat vector of {problem.flat0.numel()} entries, got shape {tuple(v.shape)}")
    return _inverse_hvp(problem, x, y, v, damping, method, cg_iters, tol)


def influence_on_test_loss(
    model: nn.Module,
    loss_fn: LossFn,
    train_data,
    test_point,
    damping: float = 0.01,
    method: str = "cg",
    cg_iters: int = 100,
    tol: float = 1e-8,
    params: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Koh & Liang's ``I(z_i, z_test) = −∇L_testᵀ (H + λI)⁻¹ ∇ℓ(z_i)`` for every training point, shape ``(n,)``.

    ``train_data = (x, y)`` with ``n`` points; ``test_point = (x_test, y_test)`` is a *batch* (one point: ``x[None]``)
    whose mean loss is ``L_test``.  One inverse-HVP ``s_test = (H + λI)⁻¹ ∇L_test`` is computed and then dotted
    with all per-sample gradients.  Removing ``z_i`` changes the test loss by ``≈ −I(z_i, z_test)/n``.
    """
    damping = _check_solver_args(damping, method, cg_iters, tol)
    x, y = _check_pair(train_data, "train_data")
    x_test, y_test = _check_pair(test_point, "test_point")
    if x_test.shape[1:] != x.shape[1:] or y_test.shape[1:] != y.shape[1:]:
        raise ValueError(
            f"test_point shapes {tuple(x_test.shape)}, {tuple(y_test.shape)} do not match the training point shapes "
            f"{tuple(x.shape[1:])}, {tuple(y.shape[1:])} (after the batch dimension)"
        )
    problem = _FlatProblem(model, loss_fn, params)
    s_test = _inverse_hvp(problem, x, y, problem.gradient(x_test, y_test), damping, method, cg_iters, tol)
    return -(problem.per_sample_gradients(x, y) @ s_test)


# ------------------------------------------------------------------------------------------- Theorem 1


def theorem1_bounds(
    sigma_x: torch.Tensor,
    P: torch.Tensor,
    residual: torch.Tensor,
    prob_error: torch.Tensor,
    damping: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two sides of OCE-TS Theorem 1 (our reconstruction, see the module docstring) for ``R = ‖IF_CE‖/‖IF_MSE‖``.

    ``lower = ‖q−p‖ (λ_min(Σ_X)+λ) / (|r| (λ_max(Σ_X) μ_max + λ))``,
    ``upper = ‖q−p‖ (λ_max(Σ_X)+λ) / (|r| (λ_min(Σ_X) μ_min + λ))``, where ``μ`` are the eigenvalues of the shared
    ``P`` restricted to ``1^⊥`` (``P1 = 0`` is required) and ``λ = damping``.

    sigma_x: ``(d, d)`` ``Σ_X = XᵀX/n``; P: ``(K, K)``; residual: ``(n,)`` ``r = y − θᵀx`` (non-zero);
    prob_error: ``(n, K)`` ``q − p``.  Returns ``(lower, upper)``, each ``(n,)`` (``upper = inf`` when ``H_CE`` is
    singular on ``1^⊥ ⊗ R^d``).
    """
    sigma_x = _as_tensor(sigma_x, "sigma_x")
    P = _as_tensor(P, "P")
    residual = _as_tensor(residual, "residual")
    prob_error = _as_tensor(prob_error, "prob_error")
    damping = check_nonnegative("damping", damping)
    _check_ndim(sigma_x, 2, "sigma_x", "(d, d)")
    if sigma_x.shape[0] != sigma_x.shape[1]:
        raise ValueError(f"sigma_x must be square, got {tuple(sigma_x.shape)}")
    _check_ndim(P, 2, "P", "(K, K)")
    K = P.shape[0]
    if P.shape != (K, K) or K < 2:
        raise ValueError(f"P must be square (K, K) with K >= 2, got {tuple(P.shape)}")
    _check_ndim(residual, 1, "residual", "(n,)")
    if prob_error.shape != (residual.shape[0], K):
        raise ValueError(f"prob_error must have shape (n, K)=({residual.shape[0]}, {K}), got {tuple(prob_error.shape)}")
    if torch.any(residual == 0):
        raise ValueError("residual has exact zeros: IF_MSE vanishes there and R is undefined")
    scale = P.abs().max().clamp_min(torch.finfo(P.dtype).tiny)
    if torch.linalg.vector_norm(P.sum(-1)) > 1e-6 * scale or not torch.allclose(P, P.T, atol=1e-9 * scale.item()):
        raise ValueError("P must be symmetric with P·1 = 0, as P = diag(q) − qqᵀ is")
    lam = torch.linalg.eigvalsh(0.5 * (sigma_x + sigma_x.T))
    lam_min, lam_max = lam[0].clamp_min(0), lam[-1]
    # orthonormal basis of 1^⊥: the last K-1 columns of Q in a QR of [1 | I]
    ones = torch.ones(K, 1, dtype=P.dtype, device=P.device)
    basis = torch.linalg.qr(torch.cat([ones, torch.eye(K, dtype=P.dtype, device=P.device)], 1))[0][:, 1:K]
    mu = torch.linalg.eigvalsh(basis.T @ (0.5 * (P + P.T)) @ basis).clamp_min(0)
    mu_min, mu_max = mu[0], mu[-1]
    ratio_scale = torch.linalg.vector_norm(prob_error, dim=-1) / residual.abs()
    lower = ratio_scale * (lam_min + damping) / (lam_max * mu_max + damping)
    denominator = lam_min * mu_min + damping
    upper = ratio_scale * (lam_max + damping) / denominator if denominator > 0 else torch.full_like(ratio_scale, math.inf)
    return lower, upper


def measured_ratio(
    X: torch.Tensor, y: torch.Tensor, theta: torch.Tensor, p: torch.Tensor, W: torch.Tensor, damping: float = 0.0
) -> torch.Tensor:
    """Measured ``R_i = ‖IF_CE(z_i)‖₂ / ‖IF_MSE(z_i)‖₂`` (Eq. 6 over Eq. 5, exact per-sample Hessians), shape ``(n,)``."""
    if_ce = ce_influence(X, p, W, damping).flatten(1)
    if_mse = mse_influence(X, y, theta, damping)
    return torch.linalg.vector_norm(if_ce, dim=-1) / torch.linalg.vector_norm(if_mse, dim=-1)


def _soft_bin_targets(y: torch.Tensor, centers: torch.Tensor, width: float) -> torch.Tensor:
    """Soft ordinal targets ``p_k ∝ exp(−(c_k − y)²/(2 width²))``; far targets saturate to a one-hot edge bin."""
    return torch.softmax(-((centers - y.unsqueeze(-1)) ** 2) / (2.0 * width**2), dim=-1)


@dataclass(frozen=True)
class Theorem1Instance:
    """A regression problem seen both as MSE (``theta``) and as a ``K``-bin softmax classifier (``W``)."""

    X: torch.Tensor  # (n, d), last column is the constant 1 (the bias feature)
    y: torch.Tensor  # (n,)
    theta: torch.Tensor  # (d,) ridge fit
    p: torch.Tensor  # (n, K) soft bin targets of y
    W: torch.Tensor  # (K, d)
    bin_centers: torch.Tensor  # (K,)
    bin_width: float
    damping: float


def theorem1_instance(
    n: int = 200,
    d: int = 4,
    K: int = 6,
    shared_p: bool = True,
    logit_scale: float = 3.0,
    damping: float = 0.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Theorem1Instance:
    """Build an instance for Theorem 1.

    ``shared_p=True`` meets the theorem's assumption exactly: ``W = [1aᵀ | b]`` gives every sample the same
    ``q = softmax(b)`` (the constant last feature acts as the bias), so ``H_CE = Σ_X ⊗ P``.  ``shared_p=False``
    breaks it: ``W`` has i.i.d. ``N(0, logit_scale²)`` entries, so ``q_i`` (and ``P_i``) range from nearly flat to
    nearly one-hot across samples.  Targets: ``y = Xθ* + noise``, ``p`` = soft bins of ``y``.
    """
    for value, name, low in ((n, "n", 2), (d, "d", 2), (K, "K", 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    logit_scale = check_nonnegative("logit_scale", logit_scale)
    damping = check_nonnegative("damping", damping)
    gen = torch.Generator().manual_seed(int(seed))
    X = torch.cat([torch.randn(n, d - 1, generator=gen, dtype=dtype), torch.ones(n, 1, dtype=dtype)], 1)
    theta_star = torch.randn(d, generator=gen, dtype=dtype)
    y = X @ theta_star + 0.5 * torch.randn(n, generator=gen, dtype=dtype)
    theta = fit_ridge(X, y, damping)
    centers = torch.linspace(float(torch.quantile(y, 0.05)), float(torch.quantile(y, 0.95)), K, dtype=dtype)
    width = float(centers[1] - centers[0])
    p = _soft_bin_targets(y, centers, width)
    if shared_p:
        a = torch.randn(d - 1, generator=gen, dtype=dtype)
        b = logit_scale * torch.randn(K, generator=gen, dtype=dtype) / 3.0
        W = torch.cat([torch.ones(K, 1, dtype=dtype) * a, b.unsqueeze(1)], 1)
    else:
        W = logit_scale * torch.randn(K, d, generator=gen, dtype=dtype)
    return Theorem1Instance(X, y, theta, p, W, centers, width, damping)


@dataclass(frozen=True)
class Theorem1Check:
    """Theorem 1's sides next to the measured ratio, per training point (all ``(n,)``)."""

    residual: torch.Tensor
    lower: torch.Tensor
    measured: torch.Tensor
    upper: torch.Tensor
    holds: torch.Tensor  # bool, lower·(1−rtol) <= measured <= upper·(1+rtol)
    p_spread: float  # max_i ‖P_i − P̄‖_F / ‖P̄‖_F: 0 when the shared-P assumption holds

    @property
    def fraction_holding(self) -> float:
        return float(self.holds.double().mean())


def theorem1_check(
    X: torch.Tensor,
    y: torch.Tensor,
    theta: torch.Tensor,
    p: torch.Tensor,
    W: torch.Tensor,
    damping: float = 0.0,
    rtol: float = 1e-6,
) -> Theorem1Check:
    """Evaluate Theorem 1 on data: bounds from ``Σ_X = XᵀX/n``, the mean ``P̄ = E[P_i]`` and each residual, next
    to the measured ``R_i`` (:func:`measured_ratio`).  With a shared ``P`` the bound is a theorem; otherwise
    ``holds`` reports what happens."""
    X, p, W = _check_classifier(X, p, W)
    rtol = check_nonnegative("rtol", rtol)
    q = torch.softmax(X @ W.T, dim=-1)
    P_i = softmax_covariance(q)
    P_bar = P_i.mean(0)
    spread = torch.linalg.matrix_norm(P_i - P_bar).max() / torch.linalg.matrix_norm(P_bar)
    residual = y - X @ theta
    lower, upper = theorem1_bounds(X.T @ X / X.shape[0], P_bar, residual, q - p, damping)
    measured = measured_ratio(X, y, theta, p, W, damping)
    holds = (measured >= lower * (1 - rtol)) & (measured <= upper * (1 + rtol))
    return Theorem1Check(residual, lower, measured, upper, holds, float(spread))


def outlier_sweep(instance: Theorem1Instance, index: int, shifts: Sequence[float] | torch.Tensor) -> dict[str, torch.Tensor]:
    """Move the target of training point ``index`` by each shift (model ``θ``, ``W`` held fixed) and return
    ``{"shift", "residual", "if_mse_norm", "if_ce_norm", "ratio"}`` — ``‖IF_MSE‖`` grows linearly in ``|r|``
    (Eq. 5), ``‖IF_CE‖`` stays below ``√2 ‖x‖ / λ_min⁺(H_CE)`` (Eq. 6).  ``H`` does not depend on the targets, so
    it is the same for every shift."""
    n = instance.X.shape[0]
    if isinstance(index, bool) or not isinstance(index, int) or not -n <= index < n:
        raise ValueError(f"index must be an integer in [{-n}, {n}), got {index!r}")
    shifts = torch.as_tensor(shifts, dtype=instance.X.dtype).reshape(-1)
    if shifts.numel() == 0:
        raise ValueError("shifts must not be empty")
    X, theta, W, lam = instance.X, instance.theta, instance.W, instance.damping
    d = X.shape[1]
    x = X[index]
    H_mse = X.T @ X / n + lam * torch.eye(d, dtype=X.dtype)
    H_ce = ce_hessian(X, W, lam)
    y_shifted = instance.y[index] + shifts
    residual = y_shifted - x @ theta
    p = _soft_bin_targets(y_shifted, instance.bin_centers, instance.bin_width)
    q = torch.softmax(W @ x, dim=-1)
    g_ce = ((q - p).unsqueeze(2) * x).reshape(len(shifts), -1)
    if_mse = _psd_solve(H_mse, x.unsqueeze(1) * residual.unsqueeze(0)).T
    if_ce = -_psd_solve(H_ce, g_ce.T).T
    mse_norm = torch.linalg.vector_norm(if_mse, dim=-1)
    ce_norm = torch.linalg.vector_norm(if_ce, dim=-1)
    return {"shift": shifts, "residual": residual, "if_mse_norm": mse_norm, "if_ce_norm": ce_norm, "ratio": ce_norm / mse_norm}
