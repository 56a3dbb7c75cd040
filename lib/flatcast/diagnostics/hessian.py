"""Curvature of the training loss: Hessian-vector products, λmax, top-k eigenvalues, trace and spectral density.

The sharpness of a minimum is measured, as in SAMformer (Ilbert et al. 2024, Fig. 3b) and PyHessian (Yao et al.
2020), by the largest eigenvalue λmax of the Hessian ∇²L(w) of the training loss L with respect to the weights w.
Everything here is matrix-free: the only access to ∇²L is the exact Hessian-vector product (HVP)

    H v = ∇_w ( ∇_w L(w) · v )                                                     (Pearlmutter's double backward)

computed by autograd on the very function the trainer minimises. Nothing is cached between calls: RevIN
(Kim et al. 2022) recomputes its per-instance mean and standard deviation inside every forward pass, so the HVP
treats those statistics exactly as the loss does (differentiated through, or detached if the model detaches them).

Conventions
-----------
- ``loss_fn(model, x, y) -> scalar``; default :func:`default_loss` (``model.training_loss`` if the model defines
  it, else the MSE of ``model(x)`` against ``y`` — the trainer's objective).
- ``data`` is a batch ``(x, y)`` or a ``WindowSet``-like object with ``.x``, ``.y`` and ``len()``. It is cut into
  mini-batches of ``batch_size`` windows and every quantity (loss, gradient, HVP) is the batch-size-weighted mean
  over the mini-batches, which equals the quantity of the mean loss over the whole split whenever ``loss_fn`` is
  a per-window mean (MSE, cross-entropy, OCE).
- ``params``: optional list of parameters (e.g. ``model.attention_parameters()``); default every parameter with
  ``requires_grad``. The Hessian is then the block ∂²L/∂params². Vectors are lists of tensors shaped like
  ``params``; :func:`flatten` and :func:`unflatten` convert to and from one 1-D tensor.
- During the computations the model is put in eval mode (dropout off) and its modes are restored afterwards.
  Eigen-solvers work in float64 (Lanczos basis, dot products, tridiagonal matrices); HVPs run in the model's dtype.
- Every random start vector is drawn from a CPU ``torch.Generator`` seeded with ``seed``: same seed, same numbers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from flatcast.utils import eval_mode

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "default_loss",
    "resolve_params",
    "flatten",
    "unflatten",
    "dataset_loss",
    "hvp",
    "top_eigenvalue",
    "top_k_eigenvalues",
    "hessian_trace",
    "spectral_density",
    "dataset_gradient",
    "gradient_curvature_product",
]

DEFAULT_BATCH_SIZE = 256

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------------- plumbing
def default_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The trainer's objective: ``model.training_loss(x, y)`` when the model defines it, else MSE(model(x), y)."""
    training_loss = getattr(model, "training_loss", None)
    if callable(training_loss):
        return training_loss(x, y)
    return F.mse_loss(model(x), y)


def resolve_params(model: nn.Module, params: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Return ``params`` as a list (default: every parameter of ``model`` with ``requires_grad``), validated."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if params is None:
        resolved = [p for p in model.parameters() if p.requires_grad]
    else:
        if isinstance(params, torch.Tensor):
            raise TypeError("params must be a list of tensors, got a single tensor (wrap it in a list)")
        resolved = list(params)
        for i, p in enumerate(resolved):
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"params[{i}] must be a tensor, got {type(p).__name__}")
            if not p.requires_grad:
                raise ValueError(f"params[{i}] (shape {tuple(p.shape)}) does not require grad")
    if not resolved:
        raise ValueError("no parameters to differentiate: params is empty or the model has no trainable parameter")
    return resolved


def flatten(vectors: Sequence[torch.Tensor], dtype: torch.dtype | None = None) -> torch.Tensor:
    """Concatenate a list of tensors into one 1-D tensor (optionally cast to ``dtype``)."""
    flat = torch.cat([t.reshape(-1) for t in vectors])
    return flat if dtype is None else flat.to(dtype)


def unflatten(flat: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a 1-D tensor into tensors shaped (and typed, and placed) like ``like`` — the inverse of :func:`flatten`."""
    total = sum(t.numel() for t in like)
    if flat.dim() != 1 or flat.numel() != total:
        raise ValueError(f"flat vector has shape {tuple(flat.shape)}, expected ({total},) to match the parameters")
    out, start = [], 0
    for t in like:
        n = t.numel()
        out.append(flat[start : start + n].reshape(t.shape).to(dtype=t.dtype, device=t.device))
        start += n
    return out


def _check_vector(v: Sequence[torch.Tensor], params: Sequence[torch.Tensor], name: str = "v") -> list[torch.Tensor]:
    if isinstance(v, torch.Tensor):
        if v.dim() == 1 and v.numel() == sum(p.numel() for p in params):
            return unflatten(v, params)
        raise TypeError(f"{name} must be a list of tensors shaped like params (or one flat vector), got a tensor "
                        f"of shape {tuple(v.shape)}")
    v = list(v)
    if len(v) != len(params):
        raise ValueError(f"{name} has {len(v)} tensors but there are {len(params)} parameters")
    for i, (vi, p) in enumerate(zip(v, params)):
        if tuple(vi.shape) != tuple(p.shape):
            raise ValueError(f"{name}[{i}] has shape {tuple(vi.shape)}, expected {tuple(p.shape)}")
    return [vi.to(dtype=p.dtype, device=p.device) for vi, p in zip(v, params)]


def _dataset_size(data) -> int:
    if isinstance(data, (tuple, list)):
        if len(data) != 2 or not all(isinstance(t, torch.Tensor) for t in data):
            raise TypeError("data must be a pair (x, y) of tensors or a WindowSet-like object with .x, .y, len()")
        x, y = data
        if x.dim() == 0 or y.dim() == 0 or x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must share their first (batch) dimension, got {tuple(x.shape)} and "
                             f"{tuple(y.shape)}")
        return int(x.shape[0])
    if hasattr(data, "x") and hasattr(data, "y"):
        return len(data)
    raise TypeError(f"data must be a pair (x, y) or a WindowSet-like object with .x, .y, len(); got "
                    f"{type(data).__name__}")


def _batches(data, batch_size: int, device: torch.device, dtype: torch.dtype
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
    """Yield ``(x, y, weight)`` mini-batches with weights ``len(batch) / len(data)`` (summing to 1)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = _dataset_size(data)
    if n == 0:
        raise ValueError("data is empty (0 windows)")
    x_all, y_all = (data if isinstance(data, (tuple, list)) else (data.x, data.y))
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        x, y = x_all[start:stop], y_all[start:stop]
        x = x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device)
        y = y.to(device=device, dtype=dtype) if y.is_floating_point() else y.to(device)
        yield x, y, (stop - start) / n


def _math_attention():
    """Force the math kernel of scaled_dot_product_attention (fused kernels have no double backward)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        return sdpa_kernel(SDPBackend.MATH)
    except (ImportError, AttributeError):  # pragma: no cover - older torch
        return contextlib.nullcontext()


def _resolve_loss_fn(loss_fn: LossFn | None) -> LossFn:
    if loss_fn is None:
        return default_loss
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (model, x, y) -> scalar, got {type(loss_fn).__name__}")
    return loss_fn


def _scalar_loss(loss: torch.Tensor) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(f"loss_fn must return a scalar tensor, got {type(loss).__name__} "
                         f"{tuple(getattr(loss, 'shape', ()))}")
    return loss.reshape(())


def dataset_loss(model: nn.Module, data, loss_fn: LossFn | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> float:
    """Mean loss over ``data`` (batch-size-weighted mean over mini-batches), in eval mode, without gradients."""
    loss_fn = _resolve_loss_fn(loss_fn)
    ref = next(iter(model.parameters()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.get_default_dtype()
    total = 0.0
    with eval_mode(model), torch.no_grad():
        for x, y, weight in _batches(data, batch_size, device, dtype):
            total += weight * float(_scalar_loss(loss_fn(model, x, y)))
    return total


# -------------------------------------------------------------------------------------------------------- HVP
def _hvp_unchecked(model: nn.Module, data, v: list[torch.Tensor], params: list[torch.Tensor], loss_fn: LossFn,
                   batch_size: int) -> list[torch.Tensor]:
    device, dtype = params[0].device, params[0].dtype
    result = [torch.zeros_like(p) for p in params]
    with eval_mode(model), _math_attention(), torch.enable_grad():  # enable_grad: callers may be in no_grad
        for x, y, weight in _batches(data, batch_size, device, dtype):
            loss = _scalar_loss(loss_fn(model, x, y))
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
            # Parameters the loss does not depend on (grad None) or depends on linearly (grad constant) have a
            # zero Hessian row: leave them out of the second backward.
            keep = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
            if not keep:
                continue
            hv = torch.autograd.grad([grads[i] for i in keep], params, grad_outputs=[v[i] for i in keep],
                                     allow_unused=True)
            for r, h in zip(result, hv):
                if h is not None:
                    r.add_(h.detach(), alpha=weight)
    return result


def hvp(model: nn.Module, data, v, params: Sequence[torch.Tensor] | None = None, loss_fn: LossFn | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE) -> list[torch.Tensor]:
    """Exact Hessian-vector product ``H v`` of the (mean) loss over ``data`` with respect to ``params``.

    ``H = ∇²_params L`` with ``L`` the mean of ``loss_fn(model, x, y)`` over ``data``; computed by double backward
    (Pearlmutter 1994), batch by batch, weighted by batch size. Returns a list of tensors shaped like ``params``.
    ``v`` is a list of tensors shaped like ``params`` (or one flat vector of matching length).
    """
    params = resolve_params(model, params)
    loss_fn = _resolve_loss_fn(loss_fn)
    v = _check_vector(v, params)
    _dataset_size(data)
    return _hvp_unchecked(model, data, v, params, loss_fn, batch_size)


def _flat_operator(model, data, params, loss_fn, batch_size) -> Callable[[torch.Tensor], torch.Tensor]:
    """``q ↦ H q`` on flat float64 vectors (the HVP itself runs in the parameters' dtype)."""
    def matvec(q: torch.Tensor) -> torch.Tensor:
        return flatten(_hvp_unchecked(model, data, unflatten(q, params), params, loss_fn, batch_size), torch.float64)
    return matvec


def _random_flat(n: int, generator: torch.Generator, device: torch.device, kind: str = "gaussian") -> torch.Tensor:
    if kind == "rademacher":
        r = torch.randint(0, 2, (n,), generator=generator, dtype=torch.int64).to(torch.float64) * 2.0 - 1.0
    else:
        r = torch.randn(n, generator=generator, dtype=torch.float64)
    return r.to(device)


def _check_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _setup(model, data, params, loss_fn, batch_size):
    params = resolve_params(model, params)
    loss_fn = _resolve_loss_fn(loss_fn)
    _dataset_size(data)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return params, loss_fn, _flat_operator(model, data, params, loss_fn, batch_size)


# ------------------------------------------------------------------------------------------ power iteration
def _power_iteration(matvec, q: torch.Tensor, n_iter: int, tol: float) -> tuple[float, torch.Tensor]:
    """Dominant (largest-|λ|) eigenpair of the symmetric operator by power iteration with Rayleigh quotients."""
    q = q / torch.linalg.vector_norm(q)
    eigenvalue = None
    for _ in range(n_iter):
        hq = matvec(q)
        rayleigh = float(torch.dot(q, hq))
        norm = float(torch.linalg.vector_norm(hq))
        if norm == 0.0:  # q lies in the null space: the operator vanishes on it
            return 0.0, q
        q = hq / norm
        if eigenvalue is not None and abs(rayleigh - eigenvalue) <= tol * (abs(eigenvalue) + 1e-12):
            eigenvalue = rayleigh
            break
        eigenvalue = rayleigh
    return float(eigenvalue), q


def top_eigenvalue(model: nn.Module, data, params: Sequence[torch.Tensor] | None = None,
                   loss_fn: LossFn | None = None, n_iter: int = 100, tol: float = 1e-6, seed: int = 0,
                   batch_size: int = DEFAULT_BATCH_SIZE) -> tuple[float, list[torch.Tensor]]:
    """Largest eigenvalue λmax of the Hessian (the sharpness of SAMformer Fig. 3b) and its unit eigenvector.

    Power iteration ``q ← Hq/‖Hq‖`` with Rayleigh quotient ``qᵀHq`` (as in PyHessian), stopped when the
    relative change falls below ``tol`` or after ``n_iter`` HVPs. Power iteration converges to the eigenvalue of
    largest *magnitude*; if that one is negative (a saddle with strong negative curvature) a second power
    iteration on the shifted operator ``H − μI`` (μ the negative dominant eigenvalue, so ``H − μI ⪰ 0``) returns
    ``λmax − μ``, and ``λmax`` is reported — always the largest algebraic eigenvalue. At a minimum ``λmax ≥ 0``.

    Returns ``(eigenvalue, eigenvector)`` with the eigenvector a list of tensors shaped like ``params``
    (unit Euclidean norm overall).
    """
    n_iter = _check_int(n_iter, "n_iter")
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"tol must be a non-negative number, got {tol!r}")
    params, loss_fn, matvec = _setup(model, data, params, loss_fn, batch_size)
    n = sum(p.numel() for p in params)
    generator = torch.Generator().manual_seed(int(seed))
    start = _random_flat(n, generator, params[0].device)
    mu, q = _power_iteration(matvec, start, n_iter, tol)
    if mu < 0:
        def shifted(vec: torch.Tensor) -> torch.Tensor:
            return matvec(vec) - mu * vec
        nu, q = _power_iteration(shifted, _random_flat(n, generator, params[0].device), n_iter, tol)
        # λmax = μ + ν; report the Rayleigh quotient of the final vector on H itself (equal at convergence).
        mu = float(torch.dot(q, matvec(q)))
    return mu, unflatten(q, params)


# ------------------------------------------------------------------------------------------------- Lanczos
def _lanczos(matvec, q0: torch.Tensor, steps: int, generator: torch.Generator | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Lanczos tridiagonalisation with full (twice-applied) Gram–Schmidt reorthogonalisation, in float64.

    Returns ``(T, Q)`` with ``T`` (m, m) tridiagonal and ``Q`` (m, n) orthonormal rows, ``Q H Qᵀ = T``. On breakdown
    (an invariant Krylov subspace) the recursion restarts from a fresh random vector orthogonal to ``Q`` when a
    ``generator`` is given (so every eigenvalue can be reached), or stops when ``generator`` is None (stochastic
    Lanczos quadrature, where the invariant subspace makes the quadrature exact).
    """
    n = q0.numel()
    steps = min(steps, n)
    basis = torch.zeros(steps, n, dtype=torch.float64, device=q0.device)
    alphas: list[float] = []
    betas: list[float] = []
    q = q0 / torch.linalg.vector_norm(q0)
    scale = 0.0
    for j in range(steps):
        basis[j] = q
        w = matvec(q)
        alpha = float(torch.dot(q, w))
        alphas.append(alpha)
        active = basis[: j + 1]
        for _ in range(2):
            w = w - active.T @ (active @ w)
        if j == steps - 1:
            break
        beta = float(torch.linalg.vector_norm(w))
        scale = max(scale, abs(alpha), beta)
        if beta > 1e-10 * max(scale, 1e-30):
            betas.append(beta)
            q = w / beta
            continue
        if generator is None:
            break
        r = _random_flat(n, generator, q0.device)
        for _ in range(2):
            r = r - active.T @ (active @ r)
        norm = float(torch.linalg.vector_norm(r))
        if norm <= 1e-8 * math.sqrt(n):  # the whole space is spanned
            break
        betas.append(0.0)
        q = r / norm
    m = len(alphas)
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if m > 1:
        off = torch.tensor(betas[: m - 1], dtype=torch.float64)
        T = T + torch.diag(off, 1) + torch.diag(off, -1)
    return T.to(q0.device), basis[:m]


def top_k_eigenvalues(model: nn.Module, data, k: int = 5, params: Sequence[torch.Tensor] | None = None,
                      loss_fn: LossFn | None = None, lanczos_steps: int | None = None, seed: int = 0,
                      batch_size: int = DEFAULT_BATCH_SIZE) -> tuple[list[float], list[list[torch.Tensor]]]:
    """The ``k`` largest (algebraic) Hessian eigenvalues and their eigenvectors, by Lanczos.

    ``lanczos_steps`` Lanczos iterations (default ``max(4k, 40)``, capped at the number of parameters) with full
    reorthogonalisation build ``Q H Qᵀ = T``; the Ritz values (eigenvalues of ``T``) and Ritz vectors ``Qᵀ s``
    approximate the extreme eigenpairs, exactly once the Krylov space spans the whole parameter space.
    Returns ``(eigenvalues, eigenvectors)``, eigenvalues in decreasing order, each eigenvector a list of tensors
    shaped like ``params`` with unit norm.
    """
    k = _check_int(k, "k")
    params, loss_fn, matvec = _setup(model, data, params, loss_fn, batch_size)
    n = sum(p.numel() for p in params)
    if k > n:
        raise ValueError(f"k={k} exceeds the number of parameters ({n})")
    steps = max(4 * k, 40) if lanczos_steps is None else _check_int(lanczos_steps, "lanczos_steps")
    steps = min(steps, n)
    if steps < k:
        raise ValueError(f"lanczos_steps={lanczos_steps} must be at least k={k}")
    generator = torch.Generator().manual_seed(int(seed))
    T, basis = _lanczos(matvec, _random_flat(n, generator, params[0].device), steps, generator)
    ritz_values, ritz_coords = torch.linalg.eigh(T)
    order = torch.argsort(ritz_values, descending=True)[:k]
    eigenvalues = [float(ritz_values[i]) for i in order]
    eigenvectors = []
    for i in order:
        vec = basis.T @ ritz_coords[:, i]
        eigenvectors.append(unflatten(vec / torch.linalg.vector_norm(vec), params))
    return eigenvalues, eigenvectors


# ------------------------------------------------------------------------------------------------ Hutchinson
def hessian_trace(model: nn.Module, data, n_samples: int = 100, seed: int = 0,
                  params: Sequence[torch.Tensor] | None = None, loss_fn: LossFn | None = None,
                  batch_size: int = DEFAULT_BATCH_SIZE, return_samples: bool = False):
    """Hutchinson's estimate of ``tr H``: the mean of ``zᵀHz`` over ``n_samples`` Rademacher probes ``z``.

    ``E[zᵀHz] = tr H`` since ``E[zzᵀ] = I``; the variance of one probe is ``2 Σ_{i≠j} H_ij²`` (zero for a diagonal
    Hessian, where a single probe is exact). Returns the estimate as a float, or ``(estimate, samples)`` with the
    per-probe values as a NumPy array when ``return_samples`` is true.
    """
    n_samples = _check_int(n_samples, "n_samples")
    params, loss_fn, matvec = _setup(model, data, params, loss_fn, batch_size)
    n = sum(p.numel() for p in params)
    generator = torch.Generator().manual_seed(int(seed))
    samples = np.empty(n_samples)
    for i in range(n_samples):
        z = _random_flat(n, generator, params[0].device, "rademacher")
        samples[i] = float(torch.dot(z, matvec(z)))
    estimate = float(samples.mean())
    return (estimate, samples) if return_samples else estimate


# ------------------------------------------------------------------------------------------ spectral density
def spectral_density(model: nn.Module, data, n_runs: int = 1, lanczos_steps: int = 80,
                     grid: np.ndarray | int | None = None, sigma: float | None = None, seed: int = 0,
                     params: Sequence[torch.Tensor] | None = None, loss_fn: LossFn | None = None,
                     batch_size: int = DEFAULT_BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalue density of the Hessian by stochastic Lanczos quadrature (Ghorbani et al. 2019; PyHessian).

    For each of ``n_runs`` Rademacher probes ``z/‖z‖``, ``lanczos_steps`` Lanczos steps give Ritz values ``θ_i``
    and weights ``τ_i`` (squared first components of the eigenvectors of ``T``), and

        φ(t) = (1/n_runs) Σ_runs Σ_i τ_i 𝒩(t; θ_i, σ²),

    an estimate of the normalised density ``(1/n) Σ_j δ(t − λ_j)`` smoothed by a Gaussian of width ``σ``
    (``E[τ mass at λ_j] = 1/n``; ``φ`` integrates to 1). ``grid``: array of evaluation points, or an integer number
    of points (default 1000) spread over the Ritz range padded by 10 %. ``sigma`` default: 1 % of that range.
    Returns ``(grid, density)`` as NumPy arrays.
    """
    n_runs = _check_int(n_runs, "n_runs")
    lanczos_steps = _check_int(lanczos_steps, "lanczos_steps")
    if sigma is not None and not (isinstance(sigma, (int, float)) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    params, loss_fn, matvec = _setup(model, data, params, loss_fn, batch_size)
    n = sum(p.numel() for p in params)
    generator = torch.Generator().manual_seed(int(seed))
    nodes, weights = [], []
    for _ in range(n_runs):
        T, _basis = _lanczos(matvec, _random_flat(n, generator, params[0].device, "rademacher"), lanczos_steps, None)
        theta, s = torch.linalg.eigh(T)
        nodes.append(theta.cpu().numpy())
        weights.append((s[0, :] ** 2).cpu().numpy())
    all_nodes, all_weights = np.concatenate(nodes), np.concatenate(weights) / n_runs
    lo, hi = float(all_nodes.min()), float(all_nodes.max())
    width = max(hi - lo, 1e-12 * max(abs(lo), abs(hi), 1.0))
    if grid is None or isinstance(grid, (int, np.integer)):
        n_points = 1000 if grid is None else _check_int(grid, "grid", 2)
        grid = np.linspace(lo - 0.1 * width, hi + 0.1 * width, n_points)
    else:
        grid = np.asarray(grid, dtype=np.float64)
        if grid.ndim != 1 or grid.size == 0:
            raise ValueError(f"grid must be a 1-D array of points or an integer, got shape {grid.shape}")
    sigma = 0.01 * width if sigma is None else float(sigma)
    z = (grid[:, None] - all_nodes[None, :]) / sigma
    density = (np.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))) @ all_weights
    return grid, density


# ----------------------------------------------------------------------- the SAMformer code's sharpness number
def dataset_gradient(model: nn.Module, data, params: Sequence[torch.Tensor] | None = None,
                     loss_fn: LossFn | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> list[torch.Tensor]:
    """Gradient ``∇L`` of the mean loss over ``data`` (batch-size-weighted mean over mini-batches), in eval mode."""
    params = resolve_params(model, params)
    loss_fn = _resolve_loss_fn(loss_fn)
    _dataset_size(data)
    device, dtype = params[0].device, params[0].dtype
    total = [torch.zeros_like(p) for p in params]
    with eval_mode(model), torch.enable_grad():
        for x, y, weight in _batches(data, batch_size, device, dtype):
            grads = torch.autograd.grad(_scalar_loss(loss_fn(model, x, y)), params, allow_unused=True)
            for t, g in zip(total, grads):
                if g is not None:
                    t.add_(g.detach(), alpha=weight)
    return total


def gradient_curvature_product(model: nn.Module, data, n_iter: int = 50, seed: int = 0, loss_scale: float = 1.0,
                               params: Sequence[torch.Tensor] | None = None, loss_fn: LossFn | None = None,
                               batch_size: int = DEFAULT_BATCH_SIZE) -> float:
    """The number the SAMformer authors' code reports as sharpness: ``|gᵀ H v|`` after ``n_iter`` power steps.

    Written from the *definition* in the authors' TensorFlow code (``utils/model_utils.py::power_iteration``,
    romilbert/samformer), not from that code: start from ``v ~ N(0, I)``, repeat ``n_iter`` times
    ``h = H v``, ``v ← h/‖h‖``, and report ``|gᵀ h|`` of the last step, with ``g`` and ``H`` the gradient and
    Hessian of the training loss over ``data``. At convergence ``v → ±u₁`` (the top eigenvector) and the value is
    ``λmax · |gᵀu₁|`` — the top eigenvalue *times the gradient's component along the top eigenvector*, not an
    eigenvalue. It vanishes at an exact stationary point and grows with the gradient norm, so it mixes sharpness
    with how far a run is from stationarity. The authors' loss is the MSE reduced over one axis and implicitly
    summed over the others, i.e. ``loss_scale × L`` with ``L`` the mean; since ``g`` and ``H`` both scale, the
    value scales by ``loss_scale²`` (pass ``loss_scale = N·H`` to mimic a sum over N windows and H steps).
    """
    n_iter = _check_int(n_iter, "n_iter")
    if not (isinstance(loss_scale, (int, float)) and loss_scale > 0 and math.isfinite(loss_scale)):
        raise ValueError(f"loss_scale must be a positive number, got {loss_scale!r}")
    params, loss_fn, matvec = _setup(model, data, params, loss_fn, batch_size)
    n = sum(p.numel() for p in params)
    generator = torch.Generator().manual_seed(int(seed))
    v = _random_flat(n, generator, params[0].device)
    h = v
    for _ in range(n_iter):
        h = matvec(v)
        norm = float(torch.linalg.vector_norm(h))
        if norm == 0.0:
            return 0.0
        v = h / norm
    g = flatten(dataset_gradient(model, data, params, loss_fn, batch_size), torch.float64)
    return float(loss_scale) ** 2 * abs(float(torch.dot(g, h)))
