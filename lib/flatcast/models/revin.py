"""Reversible instance normalisation (RevIN, Kim et al. 2022), as used by SAMformer (§3, Algorithm 1).

Each input window is standardised with its own statistics over time, the network works on the standardised
window, and the forecast is mapped back with the same statistics:

    x̃ = γ_c · (x − μ) / s + β_c,        ŷ = (y − β_c) / (γ_c + ε²) · s + μ,

where μ and s = sqrt(Var(x) + ε) are the per-instance, per-channel mean and (biased) standard deviation over the
time axis, detached from the graph, and γ_c, β_c the learnable per-channel affine parameters. The ``ε²`` in the
denominator guards against division by zero exactly as in the official SAMformer code
(romilbert/samformer, ``samformer_pytorch/samformer/utils/revin.py``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RevIN", "instance_statistics", "standardize"]


def instance_statistics(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """μ and s = sqrt(Var(x) + ε) over the last axis (biased variance, keepdim, detached: no autograd record).

    Lean form: one sum for μ and one fused norm of x − μ for the variance; ``torch.var``'s Welford kernel is
    several times slower than a sum on the CPU. Equal to ``x.var(unbiased=False)`` to float rounding.
    """
    with torch.no_grad():
        mean = x.mean(dim=-1, keepdim=True)
        norm = torch.linalg.vector_norm(x - mean, dim=-1, keepdim=True)
        std = norm.square_().div_(x.shape[-1]).add_(eps).sqrt_()
    return mean, std


def standardize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """γ · (x − μ) / s + β as one fused multiply-add over ``x``: x · a + (β − μ · a) with a = γ / s.

    ``weight``/``bias`` broadcast against ``mean``/``std`` (e.g. ``(D, 1)``); without them γ = 1, β = 0. The
    gradient reaches x (through a), γ and β as in the written formula with detached statistics.
    """
    scale = 1.0 / std if weight is None else weight / std
    shift = -mean * scale if bias is None else bias - mean * scale
    return torch.addcmul(shift, x, scale)


class RevIN(nn.Module):
    """Per-instance normalisation over the last (time) axis of tensors shaped ``(..., D, T)``.

    Parameters
    ----------
    n_channels:
        Number of channels ``D`` (the second-to-last axis); one affine weight and bias per channel.
    eps:
        Added to the variance before the square root (and squared, to the affine weight on the way back).
    affine:
        Learn a per-channel scale (initialised at 1) and shift (initialised at 0).

    ``normalize(x)`` stores the statistics of ``x``; ``denormalize(y)`` uses the statistics of the last
    ``normalize`` call, so ``y`` may have a different length on the time axis (the horizon ``H``).
    """

    def __init__(self, n_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        if not isinstance(n_channels, int) or isinstance(n_channels, bool) or n_channels < 1:
            raise ValueError(f"n_channels must be a positive integer, got {n_channels!r}")
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise ValueError(f"eps must be a positive number, got {eps!r}")
        self.n_channels = n_channels
        self.eps = float(eps)
        self.affine = bool(affine)
        if self.affine:
            self.affine_weight = nn.Parameter(torch.ones(n_channels))
            self.affine_bias = nn.Parameter(torch.zeros(n_channels))
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def _check(self, x: torch.Tensor, what: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim < 2 or x.shape[-2] != self.n_channels:
            raise ValueError(
                f"{what} must have shape (..., {self.n_channels}, T) (channels second to last), "
                f"got {tuple(x.shape)}"
            )

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise ``x`` (``(..., D, L)``) over its last axis and apply the affine map; remember μ and s."""
        self._check(x, "x")
        self.mean, self.std = instance_statistics(x, self.eps)
        if self.affine:
            return standardize(x, self.mean, self.std, self.affine_weight[:, None], self.affine_bias[:, None])
        return standardize(x, self.mean, self.std)

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`normalize` on ``y`` (``(..., D, H)``) with the statistics of the last normalised input."""
        if self.mean is None or self.std is None:
            raise RuntimeError("RevIN.denormalize called before any normalize: no statistics stored")
        self._check(y, "y")
        if y.shape[:-1] != self.mean.shape[:-1]:
            raise ValueError(
                f"y must have leading shape {tuple(self.mean.shape[:-1])} like the last normalised input, "
                f"got {tuple(y.shape)}"
            )
        out = y
        if self.affine:
            out = (out - self.affine_bias[:, None]) / (self.affine_weight[:, None] + self.eps * self.eps)
        return out * self.std + self.mean

    def forward(self, x: torch.Tensor, mode: str = "normalize") -> torch.Tensor:
        """``mode="normalize"`` → :meth:`normalize`; ``mode="denormalize"`` → :meth:`denormalize`."""
        if mode == "normalize":
            return self.normalize(x)
        if mode == "denormalize":
            return self.denormalize(x)
        raise ValueError(f"mode must be 'normalize' or 'denormalize', got {mode!r}")

    def extra_repr(self) -> str:
        return f"n_channels={self.n_channels}, eps={self.eps}, affine={self.affine}"
