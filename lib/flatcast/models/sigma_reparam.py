"""σReparam linear layer (Zhai et al. 2023, "Stabilizing Transformer Training by Preventing Attention Entropy
Collapse"; SAMformer Eq. 5).

The weight is used through the reparametrisation

    Ŵ = γ / σ(W) · W,        (SAMformer Eq. 5)

with σ(W) the spectral norm (largest singular value) of W and γ a learnable scalar initialised at 1, so that
‖Ŵ‖₂ = |γ|. As in the reference implementation (apple/ml-sigma-reparam), σ(W) is estimated as uᵀ W v with
persistent left/right singular-vector estimates u, v (buffers, no gradient) that take **one** power-iteration
step per training forward pass; u and v are initialised from the exact SVD of the initial weight, so σ is exact
at initialisation and tracks W as it moves slowly during training. The gradient flows through W in uᵀ W v
(∂σ/∂W = u vᵀ), not through u, v.

Determinism: the power step only runs when the module is in training mode *and* gradients are enabled; in
``eval()`` mode or under ``torch.no_grad()`` the layer is a fixed function of its parameters and buffers.
``exact_spectral_norm=True`` replaces the estimate by ``torch.linalg.matrix_norm(W, 2)`` (an SVD each call,
differentiable), for tests and diagnostics that need ‖Ŵ‖₂ = |γ| to machine precision.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SigmaReparamLinear"]


def _unit(vector: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return vector / vector.norm().clamp_min(eps)


class SigmaReparamLinear(nn.Module):
    """Drop-in replacement for ``nn.Linear(in_features, out_features, bias)`` with the weight σReparam'd (Eq. 5).

    Attributes
    ----------
    weight: ``(out_features, in_features)`` parameter W (same layout and initialisation as ``nn.Linear``).
    bias: ``(out_features,)`` parameter or ``None`` (not reparametrised, as in Zhai et al.).
    gamma: scalar parameter γ, initialised at 1.
    u, v: buffers, unit estimates of the top left/right singular vectors of W.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        exact_spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.exact_spectral_norm = bool(exact_spectral_norm)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.gamma = nn.Parameter(torch.ones(()))
        self.register_buffer("u", torch.zeros(out_features))
        self.register_buffer("v", torch.zeros(in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s initialisation for W and b, γ = 1, and u, v set to W's exact top singular vectors."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)
        with torch.no_grad():
            self.gamma.fill_(1.0)
        self.reset_singular_vectors()

    @torch.no_grad()
    def reset_singular_vectors(self) -> None:
        """Set u, v to the exact top singular vectors of the current W (one SVD), making σ exact again."""
        left, _, right_t = torch.linalg.svd(self.weight.detach(), full_matrices=False)
        self.u.copy_(left[:, 0])
        self.v.copy_(right_t[0])

    @torch.no_grad()
    def power_iteration(self, n_steps: int = 1) -> None:
        """Run ``n_steps`` power-iteration steps v ← Wᵀu/‖Wᵀu‖, u ← Wv/‖Wv‖ on the buffers."""
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        weight = self.weight.detach()
        u, v = self.u, self.v
        for _ in range(n_steps):
            v = _unit(weight.t() @ u)
            u = _unit(weight @ v)
        self.u.copy_(u)
        self.v.copy_(v)

    def weight_spectral_norm(self, exact: bool | None = None) -> torch.Tensor:
        """σ(W): ``torch.linalg.matrix_norm(W, 2)`` when ``exact`` (default: the layer's setting), else uᵀ W v.

        Differentiable in W; the power-iteration buffers are neither read through autograd nor updated here.
        """
        if exact is None:
            exact = self.exact_spectral_norm
        if exact:
            return torch.linalg.matrix_norm(self.weight, ord=2)
        # clones so that later in-place buffer updates never invalidate a graph that is still alive
        return torch.dot(self.u.clone(), self.weight @ self.v.clone())

    def effective_weight(self) -> torch.Tensor:
        """Ŵ = γ / σ(W) · W (Eq. 5), shape ``(out_features, in_features)``; no power step is taken here."""
        return self.gamma / self.weight_spectral_norm() * self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled() and not self.exact_spectral_norm:
            self.power_iteration(1)
        return F.linear(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, exact_spectral_norm={self.exact_spectral_norm}"
        )
