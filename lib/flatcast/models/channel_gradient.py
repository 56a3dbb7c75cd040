"""The training loss of SAMformer's channel transformer and its gradient, derived by hand (no autograd graph).

For k members, each on its own batch of B windows X ∈ R^{D×L} (SAMformer §2.2, Algorithm 1):

    Z   = γ ⊙ (X − μ) / s + β                                   RevIN, μ, s per window and channel, detached
    Q, K, V = Z W_Qᵀ + b_Q,  Z W_Kᵀ + b_K,  Z W_Vᵀ + b_V           (nn.Linear layout: W_Q ∈ R^{d_m×L})
    A   = softmax(Q Kᵀ / √d_m)                                   Eq. 4, row-wise
    M   = Z + (A V) W_Oᵀ + b_O                                   Eq. 3, the residual
    O   = M Wᵀ + b                                               the linear head
    Ŷ   = (O − β) / (γ + ε²) · s + μ                             RevIN⁻¹
    ℓ   = mean((Ŷ − Y)²)                                         SAMformer Eq. 1, one per member

and the gradient of each member's ℓ with respect to W_Q, W_K, W_V, W_O, W, their biases and RevIN's γ, β, by the
chain rule written out: for G = ∂ℓ/∂Ŷ = 2(Ŷ − Y)/(B D H),

    ∂ℓ/∂O = G s/(γ + ε²),   ∂ℓ/∂γ|_out = −Σ ∂ℓ/∂O ⊙ (O − β)/(γ + ε²),   ∂ℓ/∂β|_out = −Σ ∂ℓ/∂O
    ∂ℓ/∂W = (∂ℓ/∂O)ᵀ M,   ∂ℓ/∂M = (∂ℓ/∂O) W,   ∂ℓ/∂W_O = (∂ℓ/∂M)ᵀ (A V),   ∂ℓ/∂(AV) = (∂ℓ/∂M) W_O
    ∂ℓ/∂A = ∂ℓ/∂(AV) Vᵀ,   ∂ℓ/∂V = Aᵀ ∂ℓ/∂(AV),   ∂ℓ/∂S = A ⊙ (∂ℓ/∂A − rowsum(A ⊙ ∂ℓ/∂A))   (softmax)
    ∂ℓ/∂Q = ∂ℓ/∂S K / √d_m,   ∂ℓ/∂K = (∂ℓ/∂S)ᵀ Q / √d_m,   ∂ℓ/∂W_{Q,K,V} = (∂ℓ/∂{Q,K,V})ᵀ Z
    ∂ℓ/∂Z = ∂ℓ/∂M + [∂ℓ/∂Q, ∂ℓ/∂K, ∂ℓ/∂V] [W_Q; W_K; W_V],   ∂ℓ/∂γ += Σ ∂ℓ/∂Z ⊙ (X − μ)/s,   ∂ℓ/∂β += Σ ∂ℓ/∂Z

(biases: the sum of the corresponding output gradient over rows). It is the same mathematics as autograd through
:class:`~flatcast.models.ChannelTransformer` (the tests compare both to float tolerance), computed with about a
dozen batched products and a few fused elementwise operations instead of a graph of ~100 recorded operations:
on a CPU, where a SAMformer step is dominated by per-operation overhead, this is what makes a step cheap.

Covered: learned channel-wise attention (``attention="learned"``), plain ``nn.Linear`` maps with or without
biases, RevIN with or without its affine parameters, or no RevIN. Anything else (σReparam, frozen, identity or
temporal attention, a custom loss) is left to autograd: :func:`closed_form_unsupported` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["ChannelWeights", "loss_and_gradient", "closed_form_unsupported", "model_loss_and_gradient"]


@dataclass
class ChannelWeights:
    """The weights of k members, each with a leading member dimension (nn.Linear layout ``(k, out, in)``).

    ``qkv_weight`` stacks W_Q, W_K, W_V along dim 1: ``(k, 3 d_m, L)``; biases are ``(k, out)`` or ``None``;
    ``revin_weight``/``revin_bias`` are γ, β ``(k, D)`` (``None`` without RevIN's affine map).
    """

    qkv_weight: torch.Tensor
    qkv_bias: torch.Tensor | None
    output_weight: torch.Tensor
    output_bias: torch.Tensor | None
    head_weight: torch.Tensor
    head_bias: torch.Tensor | None
    revin_weight: torch.Tensor | None = None
    revin_bias: torch.Tensor | None = None


def closed_form_unsupported(model) -> str | None:
    """``None`` when :func:`loss_and_gradient` computes ``model``'s training loss and gradient, else the reason."""
    from torch import nn

    from flatcast.models.channel_transformer import ChannelTransformer
    from flatcast.models.revin import RevIN

    if type(model) is not ChannelTransformer:
        return f"{type(model).__name__} is not a ChannelTransformer"
    if model.attention_kind != "learned":
        return f"attention {model.attention_kind!r} (only 'learned' has a closed-form gradient here)"
    for name in ("query", "key", "value", "output", "head"):
        layer = getattr(model, name)
        if type(layer) is not nn.Linear:
            return f"layer {name!r} is a {type(layer).__name__}, not an nn.Linear"
        if not all(p.requires_grad for p in layer.parameters()):
            return f"layer {name!r} has frozen parameters"
    if model.revin is not None and type(model.revin) is not RevIN:
        return "the RevIN module is not flatcast's RevIN"
    if model.revin is not None and model.revin.affine:
        if not all(p.requires_grad for p in model.revin.parameters()):
            return "RevIN's affine parameters are frozen"
    if hasattr(model, "training_loss"):
        return "the model defines its own training_loss"
    return None


def _sum_rows(t: torch.Tensor) -> torch.Tensor:
    """``(k, n, m)`` → ``(k, m)``."""
    return t.sum(dim=1)


@torch.no_grad()
def loss_and_gradient(
    x: torch.Tensor,
    y: torch.Tensor,
    weights: ChannelWeights,
    *,
    revin: bool = True,
    revin_eps: float = 1e-5,
    statistics: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    with_gradient: bool = True,
) -> tuple[torch.Tensor, ChannelWeights | None, tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None]:
    """The k members' MSE losses ``(k,)`` and their gradients (module docstring), in one pass without autograd.

    ``x`` ``(k, B, D, L)`` and ``y`` ``(k, B, D, H)``: one batch per member. Returns ``(losses, gradient,
    statistics)`` where ``gradient`` is a :class:`ChannelWeights` of the same shapes as ``weights`` (``None``
    when ``with_gradient=False``) and ``statistics`` = (μ, s, (X − μ)/s) of RevIN, which depend on ``x`` only: pass
    them back for a second evaluation on the same batch (SAM's perturbed gradient) to skip recomputing them.
    """
    k, batch, n_channels, lookback = x.shape
    horizon = y.shape[-1]
    d_model = weights.qkv_weight.shape[1] // 3
    rows = batch * n_channels
    affine = weights.revin_weight is not None

    # ---- forward
    if revin:
        if statistics is None:
            mean = x.mean(dim=-1, keepdim=True)
            centred = x - mean
            std = torch.linalg.vector_norm(centred, dim=-1, keepdim=True).square_().div_(lookback).add_(revin_eps)
            std.sqrt_()
            standardized = centred.div_(std)
            statistics = (mean, std, standardized)
        mean, std, standardized = statistics
        if affine:
            gamma = weights.revin_weight[:, None, :, None]
            beta = weights.revin_bias[:, None, :, None]
            z = torch.addcmul(beta, standardized, gamma)
        else:
            z = standardized
    else:
        z = x
    tokens = z.reshape(k, rows, lookback)
    qkv_t = weights.qkv_weight.transpose(1, 2)
    if weights.qkv_bias is None:
        qkv = torch.bmm(tokens, qkv_t)
    else:
        qkv = torch.baddbmm(weights.qkv_bias.unsqueeze(1), tokens, qkv_t)
    qkv = qkv.view(k * batch, n_channels, 3 * d_model)
    queries, keys, values = qkv.split(d_model, dim=2)
    scale = 1.0 / math.sqrt(d_model)
    attention = torch.softmax(torch.bmm(queries, keys.transpose(1, 2)).mul_(scale), dim=-1)
    mixed_values = torch.bmm(attention, values).view(k, rows, d_model)
    mixed = torch.baddbmm(tokens, mixed_values, weights.output_weight.transpose(1, 2))
    if weights.output_bias is not None:
        mixed.add_(weights.output_bias.unsqueeze(1))
    head_t = weights.head_weight.transpose(1, 2)
    if weights.head_bias is None:
        out = torch.bmm(mixed, head_t)
    else:
        out = torch.baddbmm(weights.head_bias.unsqueeze(1), mixed, head_t)
    out = out.view(k, batch, n_channels, horizon)
    if revin:
        if affine:
            inverse_gamma = 1.0 / (gamma + revin_eps * revin_eps)
            centred_out = out - beta
            prediction = torch.addcmul(mean, centred_out, inverse_gamma * std)
        else:
            prediction = torch.addcmul(mean, out, std)
    else:
        prediction = out
    error = prediction - y
    n_elements = batch * n_channels * horizon
    losses = error.square().sum(dim=(1, 2, 3)).div_(n_elements)
    if not with_gradient:
        return losses, None, statistics if revin else None

    # ---- backward (module docstring)
    grad_prediction = error.mul_(2.0 / n_elements)  # ∂ℓ/∂Ŷ (error is not used again)
    grad_revin_weight = grad_revin_bias = None
    if revin:
        if affine:
            grad_out = grad_prediction.mul_(std * inverse_gamma)
            grad_revin_weight = -(grad_out * centred_out * inverse_gamma).sum(dim=(1, 3))
            grad_revin_bias = -grad_out.sum(dim=(1, 3))
        else:
            grad_out = grad_prediction.mul_(std)
    else:
        grad_out = grad_prediction
    grad_out = grad_out.view(k, rows, horizon)
    grad_head_weight = torch.bmm(grad_out.transpose(1, 2), mixed)
    grad_head_bias = None if weights.head_bias is None else _sum_rows(grad_out)
    grad_mixed = torch.bmm(grad_out, weights.head_weight)  # (k, rows, L)
    grad_output_weight = torch.bmm(grad_mixed.transpose(1, 2), mixed_values)
    grad_output_bias = None if weights.output_bias is None else _sum_rows(grad_mixed)
    grad_mixed_values = torch.bmm(grad_mixed, weights.output_weight).view(k * batch, n_channels, d_model)
    grad_attention = torch.bmm(grad_mixed_values, values.transpose(1, 2))
    grad_values = torch.bmm(attention.transpose(1, 2), grad_mixed_values)
    grad_scores = grad_attention.sub_((grad_attention * attention).sum(dim=-1, keepdim=True)).mul_(attention)
    grad_scores.mul_(scale)
    grad_queries = torch.bmm(grad_scores, keys)
    grad_keys = torch.bmm(grad_scores.transpose(1, 2), queries)
    grad_qkv = torch.cat([grad_queries, grad_keys, grad_values], dim=2).view(k, rows, 3 * d_model)
    grad_qkv_weight = torch.bmm(grad_qkv.transpose(1, 2), tokens)
    grad_qkv_bias = None if weights.qkv_bias is None else _sum_rows(grad_qkv)
    if revin and affine:
        grad_tokens = torch.baddbmm(grad_mixed, grad_qkv, weights.qkv_weight).view(k, batch, n_channels, lookback)
        grad_revin_weight += (grad_tokens * standardized).sum(dim=(1, 3))
        grad_revin_bias += grad_tokens.sum(dim=(1, 3))
    gradient = ChannelWeights(grad_qkv_weight, grad_qkv_bias, grad_output_weight, grad_output_bias,
                              grad_head_weight, grad_head_bias, grad_revin_weight, grad_revin_bias)
    return losses, gradient, statistics if revin else None


def _model_weights(model) -> ChannelWeights:
    """A single :class:`~flatcast.models.ChannelTransformer`'s weights as a one-member :class:`ChannelWeights`."""
    linear = (model.query, model.key, model.value)
    has_bias = model.query.bias is not None
    affine = model.revin is not None and model.revin.affine

    def one(t):
        return None if t is None else t.detach().unsqueeze(0)

    return ChannelWeights(
        torch.cat([layer.weight.detach() for layer in linear]).unsqueeze(0),
        torch.cat([layer.bias.detach() for layer in linear]).unsqueeze(0) if has_bias else None,
        one(model.output.weight), one(model.output.bias), one(model.head.weight), one(model.head.bias),
        one(model.revin.affine_weight) if affine else None, one(model.revin.affine_bias) if affine else None,
    )


def model_loss_and_gradient(model, x: torch.Tensor, y: torch.Tensor,
                            statistics: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None):
    """MSE of ``model(x)`` against ``y`` and its gradient written into every parameter's ``.grad`` (replacing it),
    by :func:`loss_and_gradient`: what ``mse_loss(model(x), y).backward()`` computes, without autograd.

    ``model`` must pass :func:`closed_form_unsupported`; ``x`` ``(B, D, L)``, ``y`` ``(B, D, H)``. Returns the
    loss (a 0-dim tensor) and RevIN's statistics of ``x`` (pass them back for another evaluation on the same batch).
    """
    revin = model.revin is not None
    losses, gradient, statistics = loss_and_gradient(
        x.unsqueeze(0), y.unsqueeze(0), _model_weights(model), revin=revin,
        revin_eps=model.revin.eps if revin else 0.0, statistics=statistics)
    d_model = model.d_model
    for layer, weight, bias in zip((model.query, model.key, model.value),
                                   gradient.qkv_weight[0].split(d_model),
                                   gradient.qkv_bias[0].split(d_model) if gradient.qkv_bias is not None
                                   else (None,) * 3):
        layer.weight.grad = weight
        if bias is not None:
            layer.bias.grad = bias
    for layer, weight, bias in ((model.output, gradient.output_weight, gradient.output_bias),
                                (model.head, gradient.head_weight, gradient.head_bias)):
        layer.weight.grad = weight[0]
        if bias is not None:
            layer.bias.grad = bias[0]
    if gradient.revin_weight is not None:
        model.revin.affine_weight.grad = gradient.revin_weight[0]
        model.revin.affine_bias.grad = gradient.revin_bias[0]
    return losses[0], statistics
