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

from typing import Callable

import torch
from torch.autograd.function import once_differentiable

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
    "oce_loss_fused",
    "fused_block_rows",
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


def _reverse_cumsum(x: torch.Tensor, log: bool = False) -> torch.Tensor:
    """``Σ_{j≥k} x_j`` (or its log-sum-exp version) along the last dimension."""
    op = torch.logcumsumexp if log else torch.cumsum
    return torch.flip(op(torch.flip(x, dims=(-1,)), dim=-1), dims=(-1,))


def _cumulative_and_tail(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Σ_{j≤k} x_j, Σ_{j>k} x_j)`` for the levels ``k = 1, ..., K-1``."""
    cumulative = torch.cumsum(probs, dim=-1)[..., :-1]
    tail = _reverse_cumsum(probs)[..., 1:]
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
        _reverse_cumsum(logits, log=True)[..., 1:] - log_total
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


#: Rows (windows × channels × steps) per block of :func:`oce_loss_fused` on a CPU: a block of ``K = 100`` bins is
#: ~0.8 MB per float32 array, so the dozen arrays one block uses stay in the CPU's cache.
FUSED_BLOCK_ROWS = 2048


def fused_block_rows(device: torch.device | str, n_rows: int) -> int:
    """The default block of :func:`oce_loss_fused` for ``n_rows`` rows on ``device``: :data:`FUSED_BLOCK_ROWS` on a
    CPU (cache-sized blocks), every row in one block elsewhere. On a GPU each of a block's operations is a kernel
    launch, so cache-sized blocks multiply the launches by the block count (79 blocks, ~15,000 aten calls per step at
    OCE-TS Table 3's H = 720, batch 32, 7 channels) while one block costs ``n_rows × K`` floats per array of device
    memory."""
    return FUSED_BLOCK_ROWS if torch.device(device).type == "cpu" else max(int(n_rows), 1)


def _fused_block_clamped(z: torch.Tensor, cum_p: torch.Tensor, tail_p: torch.Tensor, eps: float,
                         want_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Loss sum and ``∂(loss sum)/∂z`` of one block, clamped OCE (see :func:`oce_loss_fused`)."""
    q = torch.softmax(z, dim=-1)
    cum_q = torch.cumsum(q, dim=-1)[..., :-1]
    tail_q = _reverse_cumsum(q)[..., 1:]
    cum_q_c, tail_q_c = cum_q.clamp_min(eps), tail_q.clamp_min(eps)
    total = -(cum_p * torch.log(cum_q_c) + tail_p * torch.log(tail_q_c)).sum()
    if not want_grad:
        return total, None
    # ∂/∂Q_k and ∂/∂(1 - Q_k) of the level terms; zero where clamped (as autograd's clamp gives)
    d_cum = torch.where(cum_q >= eps, cum_p / cum_q_c, 0.0)
    d_tail = torch.where(tail_q >= eps, tail_p / tail_q_c, 0.0)
    # q_j enters Q_k for k ≥ j and 1 - Q_k for k < j: ∂(-loss)/∂q_j = Σ_{k≥j} d_cum_k + Σ_{k<j} d_tail_k
    d_q = torch.zeros_like(q)
    d_q[..., :-1] = _reverse_cumsum(d_cum)
    d_q[..., 1:] += torch.cumsum(d_tail, dim=-1)
    # softmax backward, with the sign of the loss
    grad = q * ((q * d_q).sum(dim=-1, keepdim=True) - d_q)
    return total, grad


def _fused_block_exact(z: torch.Tensor, cum_p: torch.Tensor, tail_p: torch.Tensor,
                       want_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Loss sum and ``∂(loss sum)/∂z`` of one block, exact OCE in log space (see :func:`oce_loss_fused`)."""
    log_total = torch.logsumexp(z, dim=-1, keepdim=True)
    log_cum = torch.logcumsumexp(z, dim=-1)[..., :-1]  # log Σ_{i≤k} e^{z_i}
    log_tail = _reverse_cumsum(z, log=True)[..., 1:]  # log Σ_{i>k} e^{z_i}
    total = -(cum_p * (log_cum - log_total) + tail_p * (log_tail - log_total)).sum()
    if not want_grad:
        return total, None
    # ∂loss/∂z_j = q_j Σ_k (P_k + T_k) − Σ_{k≥j} P_k e^{z_j}/C_k − Σ_{k<j} T_k e^{z_j}/U_k, with C_k, U_k the
    # partial sums of e^z below and above level k; each ratio e^{z_j}/C_k ≤ 1 is formed in log space.
    weight = (cum_p + tail_p).sum(dim=-1, keepdim=True)
    grad = torch.exp(z - log_total) * weight
    from_cum = torch.exp(z[..., :-1] + _reverse_cumsum(torch.log(cum_p) - log_cum, log=True))
    from_tail = torch.exp(z[..., 1:] + torch.logcumsumexp(torch.log(tail_p) - log_tail, dim=-1))
    grad[..., :-1] -= from_cum
    grad[..., 1:] -= from_tail
    return total, grad


class _FusedOCE(torch.autograd.Function):
    """Block-wise OCE whose gradient is written in the forward pass (no autograd graph over the bins)."""

    @staticmethod
    def forward(ctx, logits, y, cumulative_targets, exact, eps, block_rows, want_grad):
        K = logits.shape[-1]
        flat_logits = logits.reshape(-1, K)
        flat_y = y.reshape(-1)
        n = flat_logits.shape[0]
        grad = torch.empty_like(flat_logits) if want_grad else None
        total = flat_logits.new_zeros((), dtype=torch.float64)
        for start in range(0, n, block_rows):
            rows = slice(start, start + block_rows)
            cum_p, tail_p = cumulative_targets(flat_y[rows].to(flat_logits.dtype))
            if exact:
                block_total, block_grad = _fused_block_exact(flat_logits[rows], cum_p, tail_p, want_grad)
            else:
                block_total, block_grad = _fused_block_clamped(flat_logits[rows], cum_p, tail_p, eps, want_grad)
            total += block_total.double()
            if want_grad:
                grad[rows] = block_grad
        if want_grad:
            ctx.save_for_backward(grad)
        ctx.n_rows = max(n, 1)
        ctx.logits_shape = logits.shape
        return (total / max(n, 1)).to(logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        scale = grad_output / ctx.n_rows
        return (grad * scale).reshape(ctx.logits_shape), None, None, None, None, None, None


def oce_loss_fused(
    logits: torch.Tensor,
    y: torch.Tensor,
    cumulative_targets: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    exact: bool = True,
    eps: float = 1e-30,
    block_rows: int | None = None,
) -> torch.Tensor:
    """The OCE of Eq. 2 from logits and raw targets, in blocks, with a hand-written gradient.

    Equal to ``oce_loss_from_logits(p, logits)`` (``exact=True``) or ``oce_loss_from_logits_clamped(p, logits,
    eps)`` (``exact=False``) with ``p`` the soft targets of ``y`` — value and gradient, to float rounding (tested
    in float64) — but several times cheaper on the CPU: the ``(..., K)`` tensors of the loss (softmax, cumulative
    sums, logs and their gradients) are formed ``block_rows`` rows at a time, so they stay in cache (``None``: the
    device's default, :func:`fused_block_rows` — one block off a CPU), and the
    gradient with respect to the logits is written out in the forward pass (see the block functions for the
    formulas) instead of through an autograd graph over the bins.

    ``logits`` has shape ``(*y.shape, K)``; ``cumulative_targets(y_block)`` returns the cumulative targets
    ``(P, 1 - P)`` of a 1-D block of targets, each ``(rows, K - 1)`` — e.g.
    ``functools.partial(flatcast.targets.target_to_cumulative, bins=..., sigma=...)``. The loss is averaged over
    all leading dimensions, like the other losses of this module. It is differentiable once (no Hessian-vector
    products through it).
    """
    for name, tensor in (("logits", logits), ("y", y)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating tensor, got dtype {logits.dtype}")
    if logits.dim() < 1 or logits.shape[-1] < 2 or tuple(logits.shape[:-1]) != tuple(y.shape):
        raise ValueError(f"logits must have shape (*y.shape, K) with K >= 2, got {tuple(logits.shape)} for y of "
                         f"shape {tuple(y.shape)}")
    if not callable(cumulative_targets):
        raise TypeError("cumulative_targets must be a function of a block of targets")
    if block_rows is None:
        block_rows = fused_block_rows(logits.device, y.numel())
    if isinstance(block_rows, bool) or not isinstance(block_rows, int) or block_rows < 1:
        raise ValueError(f"block_rows must be a positive integer or None, got {block_rows!r}")
    eps = _check_eps(eps)
    want_grad = torch.is_grad_enabled() and logits.requires_grad  # no gradient work for an evaluation
    return _FusedOCE.apply(logits, y.detach(), cumulative_targets, bool(exact), eps, block_rows, want_grad)
