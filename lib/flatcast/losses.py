"""Training objectives: plain and ordinal cross-entropy over ordered bins (OCE-TS Eq. 2, 19) and the MSE.

Notation (OCE-TS): ``p`` is the target distribution over ``K`` ordered bins (from
:func:`flatcast.targets.target_to_probs`), ``q`` the predicted one (a softmax); both on the **last** dimension.

* Cross-entropy (Eq. 19): ``CE(p, q) = -Σ_{k=1}^{K} p_k log q_k``.
* Ordinal cross-entropy (Eq. 2) compares the cumulative distributions ``P_k = Σ_{j≤k} p_j`` and
  ``Q_k = Σ_{j≤k} q_j`` level by level, as ``K - 1`` binary cross-entropies:
  ``OCE(p, q) = -Σ_{k=1}^{K-1} [P_k log Q_k + (1 - P_k) log(1 - Q_k)]``.
  The last level ``k = K`` is left out: there ``P_K = Q_K = 1`` and the term is ``0 · log 0`` in exact
  arithmetic, but with rounding ``1 - Q_K`` can be a tiny number or zero and its log would only add noise or
  NaN. ``1 - Q_k`` is computed as the upper tail ``Σ_{j>k} q_j``, not by subtraction, so it stays accurate
  where ``Q_k`` is close to one.

Logarithms are natural. Every loss is summed over the bins and **averaged over all leading dimensions**
(windows, channels, horizon steps: the paper's Eq. 15 average over windows and steps). The probability
versions clamp the probabilities into ``[eps, 1]`` before the log, so the value and the gradient stay
finite when ``q`` has zeros (the gradient through a clamped entry is zero). The ``*_from_logits`` versions
take the unnormalised logits instead of ``q`` and are exact and stable without clamping (log-softmax and
log-cumsum-exp); models should prefer them.

A note on the paper's Table 1 (3-bin examples, ``flatcast.reference.load_reference("oce_table1_ce_vs_oce")``):
its OCE values agree with this definition (natural log, ``K - 1 = 2`` levels), but its printed CE values are
in **base-10** logarithms (e.g. case 1, prediction A: ``-Σ p log q = 1.1934`` nats, printed 0.518 =
1.1934 / ln 10). The two columns of that table are therefore not on the same scale.
"""

from __future__ import annotations

import torch

__all__ = [
    "DEFAULT_EPS",
    "ce_loss",
    "oce_loss",
    "ce_loss_from_logits",
    "oce_loss_from_logits",
    "mse_loss",
    "huber_loss",
    "pinball_loss",
    "oce_loss_from_logits_clamped",
]

DEFAULT_EPS = 1e-7


def _check_pair(p: torch.Tensor, other: torch.Tensor, other_name: str) -> None:
    for name, tensor in (("p", p), (other_name, other)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got dtype {tensor.dtype}")
    if p.shape != other.shape:
        raise ValueError(
            f"p and {other_name} must have the same shape, got {tuple(p.shape)} and {tuple(other.shape)}"
        )
    if p.dim() < 1 or p.shape[-1] < 2:
        raise ValueError(f"need at least 2 bins on the last dimension, got shape {tuple(p.shape)}")


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 0.5:
        raise ValueError(f"eps must be a number in (0, 0.5), got {eps!r}")
    return float(eps)


def _mean_over_leading(per_item: torch.Tensor) -> torch.Tensor:
    return per_item.mean() if per_item.dim() > 0 else per_item


def ce_loss(p: torch.Tensor, q: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Cross-entropy ``-Σ_k p_k log q_k`` (OCE-TS Eq. 19), natural log, mean over leading dimensions.

    ``q`` is clamped to ``[eps, 1]`` before the log.
    """
    _check_pair(p, q, "q")
    eps = _check_eps(eps)
    per_item = -(p * torch.log(q.clamp(min=eps, max=1.0))).sum(dim=-1)
    return _mean_over_leading(per_item)


def oce_loss(p: torch.Tensor, q: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Ordinal cross-entropy over the ``K - 1`` cumulative levels (OCE-TS Eq. 2), mean over leading dims.

    ``-Σ_{k<K} [P_k log Q_k + (1 - P_k) log(1 - Q_k)]`` with ``P``, ``Q`` the cumulative sums of ``p``, ``q``;
    ``1 - P_k`` and ``1 - Q_k`` are computed as upper-tail sums. ``Q_k`` and ``1 - Q_k`` are clamped to
    ``[eps, 1]`` before the log.
    """
    _check_pair(p, q, "q")
    eps = _check_eps(eps)
    cum_p, tail_p = _cumulative_and_tail(p)
    cum_q, tail_q = _cumulative_and_tail(q)
    per_level = cum_p * torch.log(cum_q.clamp(min=eps, max=1.0)) + tail_p * torch.log(tail_q.clamp(min=eps, max=1.0))
    return _mean_over_leading(-per_level.sum(dim=-1))


def _cumulative_and_tail(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Σ_{j≤k} x_j, Σ_{j>k} x_j)`` for the levels ``k = 1, ..., K-1``."""
    cumulative = torch.cumsum(probs, dim=-1)[..., :-1]
    tail = torch.flip(torch.cumsum(torch.flip(probs, dims=(-1,)), dim=-1), dims=(-1,))[..., 1:]
    return cumulative, tail


def ce_loss_from_logits(p: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """:func:`ce_loss` with ``q = softmax(logits)``, computed exactly through ``log_softmax`` (Eq. 19)."""
    _check_pair(p, logits, "logits")
    per_item = -(p * torch.log_softmax(logits, dim=-1)).sum(dim=-1)
    return _mean_over_leading(per_item)


def oce_loss_from_logits(p: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """:func:`oce_loss` with ``q = softmax(logits)``, computed exactly without clamping (Eq. 2).

    ``log Q_k = logcumsumexp(z)_k - logsumexp(z)`` and ``log(1 - Q_k) = log Σ_{j>k} exp z_j - logsumexp(z)``,
    both finite for finite logits however peaked the softmax is.
    """
    _check_pair(p, logits, "logits")
    log_total = torch.logsumexp(logits, dim=-1, keepdim=True)
    log_cum_q = torch.logcumsumexp(logits, dim=-1)[..., :-1] - log_total
    log_tail_q = (
        torch.flip(torch.logcumsumexp(torch.flip(logits, dims=(-1,)), dim=-1), dims=(-1,))[..., 1:] - log_total
    )
    cum_p, tail_p = _cumulative_and_tail(p)
    per_level = cum_p * log_cum_q + tail_p * log_tail_q
    return _mean_over_leading(-per_level.sum(dim=-1))


def mse_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error ``mean((pred - y)²)`` over every element; shapes must match exactly."""
    for name, tensor in (("pred", pred), ("y", y)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if pred.shape != y.shape:
        raise ValueError(f"pred and y must have the same shape, got {tuple(pred.shape)} and {tuple(y.shape)}")
    return torch.mean((pred - y) ** 2)


def huber_loss(pred: torch.Tensor, y: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Huber loss (Huber 1964; the robust baseline OCE-TS cites but does not run), mean over every element.

    ``ρ_δ(r) = r²/2`` for ``|r| ≤ δ`` and ``δ (|r| − δ/2)`` beyond, with ``r = pred − y``: quadratic near zero,
    linear in the tails, so a point's gradient (and influence) is capped at ``δ`` in absolute value.
    """
    for name, tensor in (("pred", pred), ("y", y)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if pred.shape != y.shape:
        raise ValueError(f"pred and y must have the same shape, got {tuple(pred.shape)} and {tuple(y.shape)}")
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < float("inf"):
        raise ValueError(f"delta must be a finite positive number, got {delta!r}")
    abs_r = (pred - y).abs()
    quadratic = 0.5 * abs_r.square()
    linear = delta * (abs_r - 0.5 * delta)
    return torch.where(abs_r <= delta, quadratic, linear).mean()


def pinball_loss(quantiles: torch.Tensor, y: torch.Tensor, levels) -> torch.Tensor:
    """Pinball (quantile) loss averaged over every element and level (Koenker & Bassett 1978).

    ``quantiles`` has shape ``(*y.shape, m)`` (one predicted quantile per level on the last axis) and ``levels``
    the ``m`` levels ``τ ∈ (0, 1)``. Per element and level: ``max(τ (y − q), (τ − 1)(y − q))``.
    """
    if not isinstance(quantiles, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("quantiles and y must be torch.Tensors")
    levels = torch.as_tensor(levels, dtype=quantiles.dtype, device=quantiles.device).reshape(-1)
    if levels.numel() == 0 or not bool(((levels > 0) & (levels < 1)).all()):
        raise ValueError(f"levels must be a non-empty sequence of numbers strictly between 0 and 1, got {levels.tolist()}")
    if tuple(quantiles.shape) != (*y.shape, levels.numel()):
        raise ValueError(f"quantiles must have shape {(*y.shape, levels.numel())} = (*y.shape, n_levels), "
                         f"got {tuple(quantiles.shape)}")
    diff = y.unsqueeze(-1) - quantiles
    return torch.maximum(levels * diff, (levels - 1) * diff).mean()


def oce_loss_from_logits_clamped(p: torch.Tensor, logits: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    """:func:`oce_loss_from_logits` computed as ``softmax → cumulative sums → clamp → log`` (Eq. 2).

    Several times faster on the CPU than the exact log-cumsum-exp version (whose backward pass is slow for
    ``K = 100`` bins), at the price of clamping ``Q_k`` and ``1 − Q_k`` at ``eps`` (their gradient is zero where
    clamped). The authors' code clamps the cumulative probabilities the same way (at 1e-8). Equal to the exact
    version wherever no cumulative probability falls below ``eps`` (checked in the tests).
    """
    _check_pair(p, logits, "logits")
    q = torch.softmax(logits, dim=-1)
    cum_q, tail_q = _cumulative_and_tail(q)
    cum_p, tail_p = _cumulative_and_tail(p)
    per_level = cum_p * torch.log(cum_q.clamp_min(eps)) + tail_p * torch.log(tail_q.clamp_min(eps))
    return _mean_over_leading(-per_level.sum(dim=-1))
