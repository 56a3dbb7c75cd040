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

(biases: the sum of the corresponding output gradient over rows).

Two products per evaluation
---------------------------
Written as above, an evaluation reads and writes length-L tensors (Z, M, ∂ℓ/∂M, ∂ℓ/∂Z) some twenty times; on a CPU
those passes over memory, not the products, dominate a step. Everything that is linear in Z is therefore taken
through the stacked matrix Ŵ = [W_Q; W_K; W_V; W] ∈ R^{(3d_m+H)×L} and the standardised windows S = (X − μ)/s,
with Z = γ S + β 1ᵀ per channel (RevIN's affine map):

    P = S Ŵᵀ,   Z Ŵᵀ = γ P + β (Ŵ 1)ᵀ                    Q, K, V and Z Wᵀ at once
    O = Z Wᵀ + (A V)(W W_O)ᵀ + W b_O + b                 M = Z + A V W_Oᵀ + b_O is never formed
    G = [∂ℓ/∂Q, ∂ℓ/∂K, ∂ℓ/∂V, ∂ℓ/∂O] = ∂ℓ/∂(Z Ŵᵀ),   ∂ℓ/∂(AV) = ∂ℓ/∂O (W W_O)
    ∂ℓ/∂Ŵ = (γ G)ᵀ S + (β G)ᵀ 1 1ᵀ  (+ T W_Oᵀ + (1ᵀ∂ℓ/∂O)ᵀ b_Oᵀ in W's rows),   T = (∂ℓ/∂O)ᵀ A V
    ∂ℓ/∂W_O = Wᵀ T,   ∂ℓ/∂b_O = (1ᵀ ∂ℓ/∂O) W
    ∂ℓ/∂γ|_in = Σ_rows G ⊙ P,   ∂ℓ/∂β|_in = Σ_rows G (Ŵ 1)

so only P = S Ŵᵀ and (γ G)ᵀ S touch the windows; ∂ℓ/∂Z = G Ŵ is never formed either (its products with S and 1
are the two sums on the last line). It also drops five products with L on one side (≈ 40 % of the arithmetic).
Every operation is per member: a member's numbers do not depend on how many members share the call (matrix-vector
products are written as products and sums for that reason: a batched matrix-vector product is not k-invariant).

Covered: learned channel-wise attention (``attention="learned"``) and the identity attention A = I of SAMformer
App. C.4 (``attention="identity"``: no W_Q, W_K; A V = V, so ∂ℓ/∂V = ∂ℓ/∂(AV) and Ŵ = [W_V; W]), plain
``nn.Linear`` maps with or without biases, RevIN with or without its affine parameters, or no RevIN. Anything else
(σReparam, frozen or temporal attention, a custom loss) is left to autograd: :func:`closed_form_unsupported` says
why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from flatcast.compiled import CompiledOrEager

__all__ = ["ChannelWeights", "loss_and_gradient", "loss_and_gradient_maybe_compiled", "closed_form_unsupported",
           "model_loss_and_gradient"]


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
    #: optional ``(k, 3 d_m + H, L)`` tensor equal to ``[qkv_weight; head_weight]`` along dim 1 (e.g. a view of
    #: storage where both lie side by side), so that :func:`loss_and_gradient` need not concatenate them
    stacked_weight: torch.Tensor | None = None


def closed_form_unsupported(model) -> str | None:
    """``None`` when :func:`loss_and_gradient` computes ``model``'s training loss and gradient, else the reason."""
    from torch import nn

    from flatcast.models.channel_transformer import ChannelTransformer
    from flatcast.models.revin import RevIN

    if type(model) is not ChannelTransformer:
        return f"{type(model).__name__} is not a ChannelTransformer"
    if model.attention_kind not in ("learned", "identity"):
        return f"attention {model.attention_kind!r} (only 'learned' and 'identity' have a closed-form gradient here)"
    names = ("value", "output", "head") if model.attention_kind == "identity" else ("query", "key", "value",
                                                                                     "output", "head")
    for name in names:
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
    identity_attention: bool = False,
) -> tuple[torch.Tensor, ChannelWeights | None, tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None]:
    """The k members' MSE losses ``(k,)`` and their gradients (module docstring), in one pass without autograd.

    ``identity_attention=True``: SAMformer App. C.4's A(X) = I (no W_Q, W_K): ``weights.qkv_weight``/``qkv_bias``
    then hold W_V and b_V alone (``(k, d_m, L)``), A V = V, and the softmax and its gradient drop out.

    ``x`` ``(k, B, D, L)`` and ``y`` ``(k, B, D, H)``: one batch per member. Returns ``(losses, gradient,
    statistics)`` where ``gradient`` is a :class:`ChannelWeights` of the same shapes as ``weights`` (``None``
    when ``with_gradient=False``) and ``statistics`` = (μ, s, (X − μ)/s) of RevIN, which depend on ``x`` only: pass
    them back for a second evaluation on the same batch (SAM's perturbed gradient) to skip recomputing them.

    Evaluation order (module docstring, "Two products per evaluation"): only ``S Ŵᵀ`` and ``Ĝᵀ S`` touch the
    length-L windows; Z, M and their gradients are never formed.
    """
    k, batch, n_channels, lookback = x.shape
    horizon = y.shape[-1]
    n_maps = 1 if identity_attention else 3  # W_V, or W_Q, W_K, W_V
    d_model = weights.qkv_weight.shape[1] // n_maps
    n_qkv = n_maps * d_model
    rows = batch * n_channels
    affine = revin and weights.revin_weight is not None

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
    else:
        standardized = x
    windows = standardized.reshape(k, rows, lookback)  # S
    stacked = weights.stacked_weight  # Ŵ = [W_Q; W_K; W_V; W]: (k, 3d_m+H, L)
    if stacked is None:
        stacked = torch.cat([weights.qkv_weight, weights.head_weight], dim=1)
    products = torch.bmm(windows, stacked.transpose(1, 2))  # P = S Ŵᵀ: (k, rows, 3d_m+H)
    if affine:
        gamma = weights.revin_weight[:, None, :, None]
        beta = weights.revin_bias[:, None, :, None]
        row_sums = stacked.sum(dim=-1)  # Ŵ 1: (k, 3d_m+H)
        pre = torch.addcmul(beta * row_sums[:, None, None, :],
                            products.view(k, batch, n_channels, -1), gamma).view(k, rows, -1)  # Z Ŵᵀ
    else:
        pre = products
    qkv = pre[..., :n_qkv]
    if weights.qkv_bias is not None:
        qkv = qkv + weights.qkv_bias.unsqueeze(1)
    qkv = qkv.reshape(k * batch, n_channels, n_qkv)
    scale = 1.0 / math.sqrt(d_model)
    if identity_attention:
        values = qkv
        mixed_values = values.reshape(k, rows, d_model)  # A V = V
    else:
        queries, keys, values = qkv.split(d_model, dim=2)
        attention = torch.softmax(torch.bmm(queries, keys.transpose(1, 2)).mul_(scale), dim=-1)
        mixed_values = torch.bmm(attention, values).view(k, rows, d_model)  # A V
    head_output = torch.bmm(weights.head_weight, weights.output_weight)  # W W_O: (k, H, d_m)
    out = torch.baddbmm(pre[..., n_qkv:], mixed_values, head_output.transpose(1, 2))  # O = M Wᵀ + b
    if weights.output_bias is not None:  # W b_O, as a product and a sum: a matrix-vector bmm is not k-invariant
        out.add_((weights.head_weight * weights.output_bias.unsqueeze(1)).sum(dim=2).unsqueeze(1))
    if weights.head_bias is not None:
        out.add_(weights.head_bias.unsqueeze(1))
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
    grad_out_sum = _sum_rows(grad_out)  # ∂ℓ/∂b: (k, H)
    grad_head_bias = None if weights.head_bias is None else grad_out_sum
    head_mixed = torch.bmm(grad_out.transpose(1, 2), mixed_values)  # T = (∂ℓ/∂O)ᵀ A V: (k, H, d_m)
    grad_output_weight = torch.bmm(weights.head_weight.transpose(1, 2), head_mixed)  # Wᵀ T
    grad_output_bias = None if weights.output_bias is None else \
        (grad_out_sum.unsqueeze(2) * weights.head_weight).sum(dim=1)  # (1ᵀ ∂ℓ/∂O) W
    grad_mixed_values = torch.bmm(grad_out, head_output).view(k * batch, n_channels, d_model)  # ∂ℓ/∂O W W_O
    if identity_attention:  # ∂ℓ/∂V = ∂ℓ/∂(AV)
        grad_pre = torch.cat([grad_mixed_values.reshape(k, rows, d_model), grad_out], dim=2)  # ∂ℓ/∂(Z Ŵᵀ)
    else:
        grad_attention = torch.bmm(grad_mixed_values, values.transpose(1, 2))
        grad_values = torch.bmm(attention.transpose(1, 2), grad_mixed_values)
        grad_scores = grad_attention.sub_((grad_attention * attention).sum(dim=-1, keepdim=True)).mul_(attention)
        grad_scores.mul_(scale)
        grad_queries = torch.bmm(grad_scores, keys)
        grad_keys = torch.bmm(grad_scores.transpose(1, 2), queries)
        grad_pre = torch.cat([grad_queries.reshape(k, rows, d_model), grad_keys.reshape(k, rows, d_model),
                              grad_values.reshape(k, rows, d_model), grad_out], dim=2)  # ∂ℓ/∂(Z Ŵᵀ)
    grad_qkv_bias = None if weights.qkv_bias is None else _sum_rows(grad_pre[..., :n_qkv])
    if affine:
        grad_pre_4d = grad_pre.view(k, batch, n_channels, -1)
        scaled = (grad_pre_4d * gamma).view(k, rows, -1)
        grad_stacked = torch.bmm(scaled.transpose(1, 2), windows)  # (γ ∂ℓ/∂(ZŴᵀ))ᵀ S
        grad_stacked.add_((grad_pre_4d * beta).sum(dim=(1, 2)).unsqueeze(2))  # + (β ∂ℓ/∂(ZŴᵀ))ᵀ 1 1ᵀ
        grad_revin_weight += (grad_pre_4d * products.view(k, batch, n_channels, -1)).sum(dim=(1, 3))
        grad_revin_bias += (grad_pre_4d * row_sums[:, None, None, :]).sum(dim=(1, 3))
    else:
        grad_stacked = torch.bmm(grad_pre.transpose(1, 2), windows)
    grad_qkv_weight = grad_stacked[:, :n_qkv]
    grad_head_weight = torch.baddbmm(grad_stacked[:, n_qkv:], head_mixed, weights.output_weight.transpose(1, 2))
    if weights.output_bias is not None:  # + (1ᵀ ∂ℓ/∂O)ᵀ b_Oᵀ
        grad_head_weight.add_(grad_out_sum.unsqueeze(2) * weights.output_bias.unsqueeze(1))
    gradient = ChannelWeights(grad_qkv_weight, grad_qkv_bias, grad_output_weight, grad_output_bias,
                              grad_head_weight, grad_head_bias, grad_revin_weight, grad_revin_bias)
    return losses, gradient, statistics if revin else None


#: :func:`loss_and_gradient`, compiled by ``torch.compile`` when ``FLATCAST_COMPILE=1`` (:mod:`flatcast.compiled`;
#: off by default, eager fallback): what the trainers call. ``loss_and_gradient`` itself stays the eager reference.
loss_and_gradient_maybe_compiled = CompiledOrEager(loss_and_gradient)


def _attention_maps(model) -> tuple:
    """W_Q, W_K, W_V's layers, or W_V's alone for identity attention (the order of ``qkv_weight``'s rows)."""
    if model.attention_kind == "identity":
        return (model.value,)
    return (model.query, model.key, model.value)


def _model_weights(model) -> ChannelWeights:
    """A single :class:`~flatcast.models.ChannelTransformer`'s weights as a one-member :class:`ChannelWeights`."""
    linear = _attention_maps(model)
    has_bias = model.value.bias is not None
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
    maps = _attention_maps(model)
    losses, gradient, statistics = loss_and_gradient_maybe_compiled(
        x.unsqueeze(0), y.unsqueeze(0), _model_weights(model), revin=revin,
        revin_eps=model.revin.eps if revin else 0.0, statistics=statistics,
        identity_attention=model.attention_kind == "identity")
    d_model = model.d_model
    for layer, weight, bias in zip(maps, gradient.qkv_weight[0].split(d_model),
                                   gradient.qkv_bias[0].split(d_model) if gradient.qkv_bias is not None
                                   else (None,) * len(maps)):
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
