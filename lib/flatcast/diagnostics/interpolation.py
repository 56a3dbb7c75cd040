"""Linear interpolation between two solutions (Goodfellow, Vinyals & Saxe 2015; Li et al. 2018 §3).

For two weight vectors θ_a and θ_b of the *same* architecture (e.g. the Transformer's and SAMformer's minima from
the same initialisation seed, or an initialisation and a trained solution), the interpolation path is

    f(α) = L((1 − α) θ_a + α θ_b),       α = 0 → θ_a,  α = 1 → θ_b,

evaluated for α on a grid that usually extends past both ends ([−0.5, 1.5] in Li et al.'s ``--dir_type states``
examples). A barrier along the path (f above both ends) separates the two minima; a monotone path means a straight
line joins them downhill. Losses follow :mod:`flatcast.diagnostics.hessian` (``loss_fn``, ``data``, mini-batch
weighted mean, eval mode); the model's weights are restored bit-for-bit afterwards, even on error.

``state_a``/``state_b`` are ``state_dict``-like mappings from parameter names to tensors (as returned by
:func:`parameter_state`); only the trainable parameters are interpolated. Buffers are left as they are (the
channel transformer has no running statistics: RevIN recomputes them per window).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from .hessian import DEFAULT_BATCH_SIZE, LossFn, dataset_loss
from .landscape import _coefficients, _restored

__all__ = ["parameter_state", "interpolate_states", "interpolation_path", "barrier_height"]


def parameter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the trainable parameters of ``model``, keyed by name (the weights θ of a solution)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def _named_params(model: nn.Module, state_a: Mapping, state_b: Mapping) -> list[tuple[str, torch.Tensor]]:
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameter to interpolate")
    names = {name for name, _ in named}
    for label, state in (("state_a", state_a), ("state_b", state_b)):
        if not isinstance(state, Mapping):
            raise TypeError(f"{label} must be a mapping name -> tensor, got {type(state).__name__}")
        missing, extra = names - set(state), set(state) - names
        if missing or extra:
            raise ValueError(f"{label} does not match the model's trainable parameters: missing {sorted(missing)}, "
                             f"unexpected {sorted(extra)}")
        for name, p in named:
            if tuple(state[name].shape) != tuple(p.shape):
                raise ValueError(f"{label}[{name!r}] has shape {tuple(state[name].shape)}, expected {tuple(p.shape)}")
    return named


def interpolate_states(state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
                       alpha: float) -> dict[str, torch.Tensor]:
    """``(1 − α) θ_a + α θ_b``, name by name (both states must have the same names and shapes)."""
    if set(state_a) != set(state_b):
        raise ValueError(f"the two states name different parameters: {sorted(set(state_a) ^ set(state_b))}")
    out = {}
    for name, a in state_a.items():
        b = state_b[name]
        if a.shape != b.shape:
            raise ValueError(f"parameter {name!r} has shape {tuple(a.shape)} in state_a and {tuple(b.shape)} in state_b")
        out[name] = torch.lerp(a, b.to(dtype=a.dtype, device=a.device), float(alpha))
    return out


def interpolation_path(model: nn.Module, data, state_a: Mapping[str, torch.Tensor],
                       state_b: Mapping[str, torch.Tensor], alphas, loss_fn: LossFn | None = None,
                       batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """Losses ``L((1 − α) θ_a + α θ_b)`` on ``data`` for every ``α`` in ``alphas``, as a NumPy array.

    ``model`` supplies the architecture (its current weights are restored afterwards); ``state_a`` and ``state_b``
    map each trainable parameter name to its value in the two solutions.
    """
    named = _named_params(model, state_a, state_b)
    alphas = _coefficients(alphas, "alphas")
    params = [p for _, p in named]
    losses = np.empty(alphas.size)
    with _restored(params):
        for i, alpha in enumerate(alphas):
            with torch.no_grad():
                for name, p in named:
                    a = state_a[name].to(dtype=p.dtype, device=p.device)
                    b = state_b[name].to(dtype=p.dtype, device=p.device)
                    p.copy_(torch.lerp(a, b, float(alpha)))
            losses[i] = dataset_loss(model, data, loss_fn, batch_size)
    return losses


def barrier_height(alphas, losses) -> float:
    """Height of the loss barrier on the segment α ∈ [0, 1]: ``max f(α) − max(f(0), f(1))`` over the grid points
    in [0, 1] — positive when the path rises above its higher end, 0 when it never does. ``alphas`` must contain
    0 and 1."""
    alphas = _coefficients(alphas, "alphas")
    losses = np.asarray(losses, dtype=np.float64)
    if losses.shape != alphas.shape:
        raise ValueError(f"losses has shape {losses.shape}, expected {alphas.shape}")
    ends = [np.flatnonzero(np.isclose(alphas, end)) for end in (0.0, 1.0)]
    if any(e.size == 0 for e in ends):
        raise ValueError("alphas must contain both 0 and 1 to measure a barrier between the two solutions")
    inside = (alphas >= 0.0) & (alphas <= 1.0)
    return float(losses[inside].max() - max(losses[ends[0][0]], losses[ends[1][0]]))
