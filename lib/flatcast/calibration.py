"""Probabilistic forecast metrics: PIT, interval coverage, CRPS and pinball loss.

OCE-TS says its probability output "quantifies uncertainty" but never measures it. These functions score a
predictive distribution against realised values ``y``; all are vectorised over arbitrary leading dimensions
and return per-element tensors (average them yourself) unless stated.

Three kinds of predictive distribution appear in the OCE chapter:

* **binned** (OCE-TS): probabilities ``q`` over ``K`` bins with edges ``e_0 < … < e_K``; the density is uniform
  inside each bin, so the CDF is piecewise linear (the same convention as
  :func:`flatcast.targets.probs_to_quantile`). Edges may differ per element (per-window scaling): shape
  ``(..., K + 1)`` broadcastable against ``q``'s ``(..., K)``.
* **Gaussian** ``N(μ, s²)``: closed forms.
* **quantiles** at given levels (quantile regression): pinball loss and coverage of central intervals.

Definitions (Gneiting & Raftery 2007): ``PIT = F(y)``; ``CRPS(F, y) = ∫ (F(z) − 1{z ≥ y})² dz``; a calibrated
forecast has uniform PIT and central ``c`` intervals that hold ``y`` a fraction ``c`` of the time.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

__all__ = [
    "binned_cdf",
    "binned_quantile",
    "crps_binned",
    "crps_gaussian",
    "gaussian_cdf",
    "gaussian_quantile",
    "pit_histogram",
    "interval_coverage",
    "pinball",
    "crps_from_quantiles",
]


def _check_tensor(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {value.dtype}")
    return value


def _check_binned(q: torch.Tensor, edges: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q, edges, y = _check_tensor(q, "q"), _check_tensor(edges, "edges"), _check_tensor(y, "y")
    if q.shape[-1] < 1 or edges.shape[-1] != q.shape[-1] + 1:
        raise ValueError(f"edges must have K + 1 = {q.shape[-1] + 1} entries on the last axis, got {edges.shape[-1]}")
    if bool((edges[..., 1:] <= edges[..., :-1]).any()):
        raise ValueError("edges must be strictly increasing along the last axis")
    if bool((q < 0).any()):
        raise ValueError("q has negative entries")
    q = q / q.sum(-1, keepdim=True)
    edges = torch.broadcast_to(edges, (*torch.broadcast_shapes(edges.shape[:-1], q.shape[:-1], y.shape), edges.shape[-1]))
    q = torch.broadcast_to(q, (*edges.shape[:-1], q.shape[-1]))
    return q, edges


def binned_cdf(q: torch.Tensor, edges: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``F(y)`` of the piecewise-uniform binned distribution (0 below ``e_0``, 1 above ``e_K``)."""
    q, edges = _check_binned(q, edges, y)
    y = torch.broadcast_to(y, edges.shape[:-1])
    cum = torch.cat([torch.zeros_like(q[..., :1]), torch.cumsum(q, -1)], -1)  # F at each edge
    # linear interpolation of (edges, cum) at y, per element
    index = torch.searchsorted(edges.contiguous(), y.unsqueeze(-1).contiguous()).clamp(1, edges.shape[-1] - 1)
    e_lo, e_hi = edges.gather(-1, index - 1), edges.gather(-1, index)
    c_lo, c_hi = cum.gather(-1, index - 1), cum.gather(-1, index)
    t = ((y.unsqueeze(-1) - e_lo) / (e_hi - e_lo)).clamp(0.0, 1.0)
    return (c_lo + t * (c_hi - c_lo)).squeeze(-1).clamp(0.0, 1.0)


def binned_quantile(q: torch.Tensor, edges: torch.Tensor, level: float) -> torch.Tensor:
    """Quantile at ``level ∈ (0, 1)`` of the binned distribution (exact inverse of :func:`binned_cdf`)."""
    if not 0 < float(level) < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    q, edges = _check_binned(q, edges, torch.zeros(()).to(q))
    cum = torch.cat([torch.zeros_like(q[..., :1]), torch.cumsum(q, -1)], -1)
    target = torch.full((*cum.shape[:-1], 1), float(level), dtype=cum.dtype, device=cum.device)
    index = torch.searchsorted(cum.contiguous(), target).clamp(1, cum.shape[-1] - 1)
    c_lo, c_hi = cum.gather(-1, index - 1), cum.gather(-1, index)
    e_lo, e_hi = edges.gather(-1, index - 1), edges.gather(-1, index)
    t = ((target - c_lo) / (c_hi - c_lo).clamp_min(torch.finfo(cum.dtype).tiny)).clamp(0.0, 1.0)
    return (e_lo + t * (e_hi - e_lo)).squeeze(-1)


def crps_binned(q: torch.Tensor, edges: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact CRPS of the piecewise-uniform binned distribution at ``y`` (per element).

    On each bin the CDF is linear; the bin is split at ``y`` (where the step ``1{z ≥ y}`` jumps) and
    ``∫ (F − h)²`` over a piece where ``F − h`` goes linearly from ``a`` to ``b`` over a length ``ℓ`` is
    ``ℓ (a² + ab + b²) / 3``. Outside ``[e_0, e_K]`` the integrand is 1 between ``y`` and the support.
    """
    q, edges = _check_binned(q, edges, y)
    y = torch.broadcast_to(y, edges.shape[:-1]).unsqueeze(-1)
    cum = torch.cat([torch.zeros_like(q[..., :1]), torch.cumsum(q, -1)], -1)
    left, right = edges[..., :-1], edges[..., 1:]
    f_left, f_right = cum[..., :-1], cum[..., 1:]
    split = torch.minimum(torch.maximum(y, left), right)
    f_split = f_left + (f_right - f_left) * (split - left) / (right - left)

    def piece(length, a, b):
        return length * (a * a + a * b + b * b) / 3.0

    below = piece(split - left, f_left, f_split)  # z < y: h = 0
    above = piece(right - split, f_split - 1.0, f_right - 1.0)  # z >= y: h = 1
    inside = (below + above).sum(-1)
    outside = (edges[..., :1] - y).clamp_min(0.0) + (y - edges[..., -1:]).clamp_min(0.0)
    return inside + outside.squeeze(-1)


def gaussian_cdf(mean: torch.Tensor, std: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.special.ndtr((y - mean) / std)


def gaussian_quantile(mean: torch.Tensor, std: torch.Tensor, level: float) -> torch.Tensor:
    if not 0 < float(level) < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    return mean + std * float(torch.special.ndtri(torch.tensor(float(level), dtype=torch.float64)))


def crps_gaussian(mean: torch.Tensor, std: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Closed-form CRPS of ``N(mean, std²)`` at ``y``: ``s [z (2Φ(z) − 1) + 2φ(z) − 1/√π]``, ``z = (y − μ)/s``."""
    mean, std, y = _check_tensor(mean, "mean"), _check_tensor(std, "std"), _check_tensor(y, "y")
    if bool((std <= 0).any()):
        raise ValueError("std must be positive")
    z = (y - mean) / std
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return std * (z * (2 * torch.special.ndtr(z) - 1) + 2 * pdf - 1 / math.sqrt(math.pi))


def pit_histogram(pit: torch.Tensor, n_bins: int = 10) -> np.ndarray:
    """Relative frequencies of the PIT values in ``n_bins`` equal bins of ``[0, 1]`` (uniform = all ``1/n_bins``)."""
    pit = _check_tensor(pit, "pit").detach().reshape(-1).double().clamp(0.0, 1.0)
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    counts = torch.histc(pit, bins=n_bins, min=0.0, max=1.0)
    return (counts / counts.sum()).cpu().numpy()


def interval_coverage(lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``y`` inside ``[lower, upper]``."""
    lower, upper, y = _check_tensor(lower, "lower"), _check_tensor(upper, "upper"), _check_tensor(y, "y")
    return float(((y >= lower) & (y <= upper)).double().mean())


def pinball(quantile: torch.Tensor, y: torch.Tensor, level: float) -> torch.Tensor:
    """Per-element pinball loss of a ``level`` quantile: ``max(τ (y − q), (τ − 1)(y − q))``."""
    if not 0 < float(level) < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    diff = _check_tensor(y, "y") - _check_tensor(quantile, "quantile")
    return torch.maximum(level * diff, (level - 1.0) * diff)


def crps_from_quantiles(quantiles: torch.Tensor, y: torch.Tensor, levels: Sequence[float]) -> torch.Tensor:
    """CRPS approximated from quantiles: ``CRPS = 2 ∫₀¹ pinball_τ dτ`` by the trapezoid rule over ``levels``
    (the tails outside ``[τ_1, τ_m]`` are left out, so this *under*-estimates the CRPS; label it)."""
    levels = [float(v) for v in levels]
    if quantiles.shape[-1] != len(levels) or len(levels) < 2:
        raise ValueError("quantiles must have one entry per level on the last axis (at least two levels)")
    losses = torch.stack([pinball(quantiles[..., i], y, t) for i, t in enumerate(levels)], -1)
    tau = torch.tensor(levels, dtype=losses.dtype, device=losses.device)
    return 2.0 * torch.trapezoid(losses, tau, dim=-1)
