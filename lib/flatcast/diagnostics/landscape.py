"""Loss-landscape slices (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets").

A slice evaluates the mean training loss on a line or a plane through the trained weights w*:

    f(α)    = L(w* + α δ)                     (1-D, Li et al. 2018 §3)
    f(α, β) = L(w* + α δ + β η)               (2-D contour plots, Li et al. 2018 §3)

with δ, η random Gaussian directions *filter-normalised* to the scale of the weights (Li et al. 2018 §4,
d_{i,j} ← d_{i,j} / ‖d_{i,j}‖ · ‖θ_{i,j}‖: filter i of layer j of the direction gets the norm of the matching
filter of the weights), which makes slices of differently scaled networks comparable. A filter is one output unit: one row
of a linear layer's weight ``(out, in)``, one output channel of a convolution — i.e. one index of dimension 0.
Slices along the top Hessian eigenvector (:func:`top_eigenvector_direction`) show the sharpest curvature.

The weights are always restored bit-for-bit afterwards, even if a loss evaluation raises. Losses use the same
conventions as :mod:`flatcast.diagnostics.hessian` (``loss_fn``, ``data``, mini-batch weighted mean, eval mode).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .hessian import DEFAULT_BATCH_SIZE, LossFn, _check_vector, dataset_loss, resolve_params, top_eigenvalue

__all__ = ["random_direction", "top_eigenvector_direction", "slice_1d", "slice_2d"]


def random_direction(model: nn.Module, params: Sequence[torch.Tensor] | None = None, filter_normalize: bool = True,
                     seed: int = 0, ignore_1d: bool = True) -> list[torch.Tensor]:
    """A random Gaussian direction in weight space, filter-normalised as in Li et al. (2018, §4).

    For every parameter θ with at least 2 dimensions, a direction ``d ~ N(0, I)`` is drawn and, when
    ``filter_normalize``, each filter ``d[i]`` (index ``i`` along dimension 0, an output row of a linear layer) is
    rescaled to ``‖θ[i]‖ / ‖d[i]‖ · d[i]`` so that it has the norm of the matching filter of the weights.
    One-dimensional parameters (biases, RevIN/LayerNorm affine, scalars): with ``ignore_1d=True`` (the default,
    Li et al.'s ``ignore='biasbn'``) the direction is 0 on them, so they stay at their trained values; with
    ``ignore_1d=False`` the direction equals the parameter itself (Li et al.'s alternative, already
    filter-normalised). Without ``filter_normalize`` the direction is the raw standard Gaussian (1-D handled the
    same way). Draws from a CPU generator seeded with ``seed`` in float64: same seed, same direction.
    Returns a list of tensors shaped like ``params`` (default: all parameters with ``requires_grad``).
    """
    params = resolve_params(model, params)
    generator = torch.Generator().manual_seed(int(seed))
    direction = []
    for p in params:
        weights = p.detach().to(torch.float64).cpu()
        if p.dim() <= 1:
            d = torch.zeros_like(weights) if ignore_1d else weights.clone()
        else:
            d = torch.randn(weights.shape, generator=generator, dtype=torch.float64)
            if filter_normalize:
                d_rows = d.reshape(d.shape[0], -1)
                w_norms = torch.linalg.vector_norm(weights.reshape(weights.shape[0], -1), dim=1, keepdim=True)
                d_norms = torch.linalg.vector_norm(d_rows, dim=1, keepdim=True)
                d = (d_rows * (w_norms / (d_norms + 1e-10))).reshape(weights.shape)
        direction.append(d.to(dtype=p.dtype, device=p.device))
    return direction


def top_eigenvector_direction(model: nn.Module, data, params: Sequence[torch.Tensor] | None = None,
                              loss_fn: LossFn | None = None, n_iter: int = 100, tol: float = 1e-6, seed: int = 0,
                              batch_size: int = DEFAULT_BATCH_SIZE) -> tuple[float, list[torch.Tensor]]:
    """The unit top Hessian eigenvector as a slicing direction, with its eigenvalue λmax: ``(λmax, direction)``.

    Along it a quadratic loss is the parabola ``f(α) = f(0) + α g·v + ½ λmax α²``. See
    :func:`flatcast.diagnostics.hessian.top_eigenvalue`.
    """
    return top_eigenvalue(model, data, params=params, loss_fn=loss_fn, n_iter=n_iter, tol=tol, seed=seed,
                          batch_size=batch_size)


def _coefficients(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {values!r}")
    return arr


@contextlib.contextmanager
def _restored(params: list[torch.Tensor]):
    """Yield a snapshot of ``params``; copy it back bit-for-bit on exit (also on error)."""
    snapshot = [p.detach().clone() for p in params]
    try:
        yield snapshot
    finally:
        with torch.no_grad():
            for p, original in zip(params, snapshot):
                p.copy_(original)


def _set_weights(params, snapshot, directions, coefficients) -> None:
    """θ ← θ* + Σ_k c_k d_k, recomputed from the snapshot every time (no drift across grid points)."""
    with torch.no_grad():
        for i, (p, original) in enumerate(zip(params, snapshot)):
            new = original.clone()
            for d, c in zip(directions, coefficients):
                if c != 0.0:
                    new.add_(d[i], alpha=float(c))
            p.copy_(new)


def slice_1d(model: nn.Module, data, direction: Sequence[torch.Tensor], alphas,
             params: Sequence[torch.Tensor] | None = None, loss_fn: LossFn | None = None,
             batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """Losses ``L(w* + α δ)`` for every ``α`` in ``alphas`` (Li et al. 2018, §3), as a NumPy array.

    ``direction`` is shaped like ``params`` (default: all trainable parameters, the default of
    :func:`random_direction`). ``α = 0`` gives the loss at the current weights. Weights restored exactly.
    """
    params = resolve_params(model, params)
    direction = _check_vector(direction, params, "direction")
    alphas = _coefficients(alphas, "alphas")
    losses = np.empty(alphas.size)
    with _restored(params) as snapshot:
        for i, alpha in enumerate(alphas):
            _set_weights(params, snapshot, [direction], [alpha])
            losses[i] = dataset_loss(model, data, loss_fn, batch_size)
    return losses


def slice_2d(model: nn.Module, data, d1: Sequence[torch.Tensor], d2: Sequence[torch.Tensor], alphas, betas,
             params: Sequence[torch.Tensor] | None = None, loss_fn: LossFn | None = None,
             batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """Losses ``L(w* + α δ + β η)`` on the grid ``alphas × betas`` (Li et al. 2018, §3).

    Returns an array of shape ``(len(alphas), len(betas))`` with ``[i, j] = L(w* + alphas[i] d1 + betas[j] d2)``;
    plot it with ``plt.contour(alphas, betas, Z.T)`` (matplotlib puts the first index on the y axis). Weights
    restored exactly.
    """
    params = resolve_params(model, params)
    d1 = _check_vector(d1, params, "d1")
    d2 = _check_vector(d2, params, "d2")
    alphas = _coefficients(alphas, "alphas")
    betas = _coefficients(betas, "betas")
    losses = np.empty((alphas.size, betas.size))
    with _restored(params) as snapshot:
        for i, alpha in enumerate(alphas):
            for j, beta in enumerate(betas):
                _set_weights(params, snapshot, [d1, d2], [alpha, beta])
                losses[i, j] = dataset_loss(model, data, loss_fn, batch_size)
    return losses
