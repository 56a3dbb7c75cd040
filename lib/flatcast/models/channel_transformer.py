"""SAMformer's shallow channel-wise transformer (Ilbert et al. 2024, §2.2 Eqs. 3–4, Algorithm 1) and its ablations.

For one window X ∈ R^{D×L} (D channels, look-back L; RevIN-normalised when ``revin=True``):

    f(X) = [X + A(X) X W_V W_O] W ∈ R^{D×H}                             (Eq. 3)
    A(X) = softmax(X W_Q W_Kᵀ Xᵀ / √d_m) ∈ R^{D×D}                     (Eq. 4, row-wise softmax)

with W_Q, W_K, W_V ∈ R^{L×d_m}, W_O ∈ R^{d_m×L}, W ∈ R^{L×H} and d_m = 16; the forecast is RevIN-denormalised
(Algorithm 1). Attention is *across channels*: each channel's whole look-back window is one token.

Layer choices where the paper is silent follow the official PyTorch implementation (romilbert/samformer,
``samformer_pytorch/samformer/samformer.py``): every map is an ``nn.Linear`` **with bias** and its default
initialisation, the softmax scale is 1/√d_m, and the residual adds the (normalised) input. One deliberate
difference: the official code merges W_V W_O into one L×L ``compute_values`` layer; we keep the paper's
factorisation W_V (L→d_m), W_O (d_m→L) of Eq. 3 (so the value path has rank ≤ d_m and W_O exists as a matrix).
Pass ``bias=False`` for the bias-free equations exactly as written.

Ablations (``attention=``):

* ``"learned"`` — Eq. 3–4 as above.
* ``"random"`` — the paper's "Random Transformer" (§2.2): "only W is optimized, while self-attention weights W_Q,
  W_K, W_V, W_O are fixed during training and initialized following Glorot & Bengio (2010)". W_Q, W_K, W_V, W_O are
  drawn from the Glorot (Xavier) uniform law U(−a, a), a = √(6 / (fan_in + fan_out)), their biases are zero (Glorot &
  Bengio's bias initialisation), and all four are frozen (buffers, no gradient). Only the head W (weight and bias)
  and, when ``revin=True``, RevIN's affine parameters train: the model is linear in its trainable weights.
* ``"frozen_qk"`` — an earlier, weaker variant kept for comparison: only W_Q, W_K (and their biases) are frozen,
  at ``nn.Linear``'s default initialisation; W_V, W_O, W and RevIN train. It is *not* the paper's model: its
  attention pattern is random and fixed, but the value path W_V W_O still learns.
* ``"identity"`` — A(X) = I_D: there is no W_Q, W_K at all and f(X) = [X + X W_V W_O] W.
* ``"temporal"`` — attention across the L time steps instead of the channels (SAMformer Table 9, "Temporal
  Attention"): the tokens are the L time steps, each the D-vector of channel values X[:, t], so with
  Xᵀ ∈ R^{L×D}, W_Q, W_K, W_V ∈ R^{D×d_m}, W_O ∈ R^{d_m×D},
  A = softmax(Xᵀ W_Q W_Kᵀ X / √d_m) ∈ R^{L×L} and f(X) = [Xᵀ + A Xᵀ W_V W_O]ᵀ W (same head W ∈ R^{L×H}).

``sigma_reparam=True`` replaces every trainable weight matrix (W_Q, W_K, W_V, W_O, W) by a σReparam layer
(Eq. 5, :class:`~flatcast.models.sigma_reparam.SigmaReparamLinear`). Frozen matrices (``"random"``,
``"frozen_qk"``) have nothing to learn; with σReparam they are stored already divided by their spectral norm
(Ŵ at γ = 1), so the random and learned σReparam models start from the same attention scale.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from flatcast.utils import check_positive_int

from .revin import RevIN
from .sigma_reparam import SigmaReparamLinear

__all__ = ["ChannelTransformer", "ATTENTION_KINDS", "FROZEN_ATTENTION_KINDS", "check_series_batch", "seeded_init"]

ATTENTION_KINDS = ("learned", "random", "frozen_qk", "identity", "temporal")
#: attention kinds whose W_Q, W_K, W_V, W_O are all frozen (only the head W and RevIN train)
FROZEN_ATTENTION_KINDS = ("random",)


def check_series_batch(x: object, n_channels: int, lookback: int) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``x`` is a floating tensor of shape ``(B, n_channels, lookback)``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (B, D, L), got {type(x).__name__}")
    if x.ndim != 3 or x.shape[1] != n_channels or x.shape[2] != lookback:
        raise ValueError(
            f"x must have shape (B, D={n_channels}, L={lookback}), got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")


@contextmanager
def seeded_init(seed: int | None):
    """Run the enclosed initialisation with the torch RNG seeded by ``seed`` and restore the global RNG afterwards;
    with ``seed=None`` draw from (and advance) the global RNG as usual."""
    if seed is None:
        yield
        return
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer or None, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class FrozenLinear(nn.Module):
    """``x ↦ x Wᵀ + b`` with W, b stored as buffers: moves with the module, never trains (frozen attention maps)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def _linear(in_features: int, out_features: int, bias: bool, sigma_reparam: bool) -> nn.Module:
    if sigma_reparam:
        return SigmaReparamLinear(in_features, out_features, bias=bias)
    return nn.Linear(in_features, out_features, bias=bias)


def _frozen_linear(in_features: int, out_features: int, bias: bool, sigma_reparam: bool) -> FrozenLinear:
    drawn = nn.Linear(in_features, out_features, bias=bias)  # nn.Linear's initialisation, then frozen
    weight = drawn.weight.detach()
    if sigma_reparam:
        weight = weight / torch.linalg.matrix_norm(weight, ord=2)
    return FrozenLinear(weight, drawn.bias)


def _glorot_frozen_linear(in_features: int, out_features: int, bias: bool, sigma_reparam: bool) -> FrozenLinear:
    """A frozen map initialised as in Glorot & Bengio (2010): weight ~ U(−a, a), a = √(6/(in + out)), bias 0."""
    weight = torch.empty(out_features, in_features)
    nn.init.xavier_uniform_(weight)
    if sigma_reparam:
        weight = weight / torch.linalg.matrix_norm(weight, ord=2)
    return FrozenLinear(weight, torch.zeros(out_features) if bias else None)


def _paper_matrix(layer: nn.Module) -> torch.Tensor:
    """The layer's (effective) weight in the paper's right-multiplication layout ``(in, out)``."""
    if isinstance(layer, SigmaReparamLinear):
        return layer.effective_weight().t()
    return layer.weight.t()


class ChannelTransformer(nn.Module):
    """SAMformer / Transformer / Random Transformer of the SAMformer paper (§2.2 Eqs. 3–4, Eq. 5, Algorithm 1).

    Parameters
    ----------
    lookback, horizon, n_channels:
        L, H and D. Input ``x`` is ``(B, D, L)``; the output ``(B, D, H)``.
    d_model:
        d_m, the width of queries, keys and values (16 in the paper).
    attention:
        One of ``"learned"``, ``"random"`` (the paper's Random Transformer), ``"frozen_qk"``, ``"identity"``,
        ``"temporal"`` (see the module docstring).
    sigma_reparam:
        σReparam (Eq. 5) on every trainable weight matrix. SAMformer proper is ``sigma_reparam=False`` + SAM.
    revin:
        RevIN normalisation of the input and denormalisation of the output (affine, statistics detached).
    seed:
        If given, the initialisation draws from ``torch.manual_seed(seed)`` inside a forked RNG (the global RNG
        is left untouched); otherwise it draws from the global torch RNG (the caller seeds).
    bias:
        Biases in every linear map (default ``True``, as in the official implementation).

    After each forward pass ``last_attention`` holds the detached attention matrices, ``(B, D, D)``
    (``(B, L, L)`` for ``"temporal"``; the identity expanded to ``(B, D, D)`` for ``"identity"``).
    """

    def __init__(
        self,
        lookback: int,
        horizon: int,
        n_channels: int,
        d_model: int = 16,
        attention: str = "learned",
        sigma_reparam: bool = False,
        revin: bool = True,
        seed: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (
            ("lookback", lookback),
            ("horizon", horizon),
            ("n_channels", n_channels),
            ("d_model", d_model),
        ):
            check_positive_int(name, value)
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {attention!r}")
        self.lookback = lookback
        self.horizon = horizon
        self.n_channels = n_channels
        self.d_model = d_model
        self.attention_kind = attention
        self.sigma_reparam = bool(sigma_reparam)
        self.use_revin = bool(revin)
        self.last_attention: torch.Tensor | None = None

        # token width: a channel's whole window (L) for channel-wise attention, the D channel values for temporal
        token_dim = n_channels if attention == "temporal" else lookback
        with seeded_init(seed):
            self.revin = RevIN(n_channels) if self.use_revin else None
            if attention in ("learned", "temporal"):
                self.query = _linear(token_dim, d_model, bias, self.sigma_reparam)
                self.key = _linear(token_dim, d_model, bias, self.sigma_reparam)
            elif attention == "frozen_qk":
                self.query = _frozen_linear(token_dim, d_model, bias, self.sigma_reparam)
                self.key = _frozen_linear(token_dim, d_model, bias, self.sigma_reparam)
            elif attention == "random":
                self.query = _glorot_frozen_linear(token_dim, d_model, bias, self.sigma_reparam)
                self.key = _glorot_frozen_linear(token_dim, d_model, bias, self.sigma_reparam)
            else:  # identity: no W_Q, W_K at all
                self.query = None
                self.key = None
            if attention in FROZEN_ATTENTION_KINDS:
                self.value = _glorot_frozen_linear(token_dim, d_model, bias, self.sigma_reparam)
                self.output = _glorot_frozen_linear(d_model, token_dim, bias, self.sigma_reparam)
            else:
                self.value = _linear(token_dim, d_model, bias, self.sigma_reparam)
                self.output = _linear(d_model, token_dim, bias, self.sigma_reparam)
            self.head = _linear(lookback, horizon, bias, self.sigma_reparam)

    # ------------------------------------------------------------------ helpers
    def _normalized(self, x: torch.Tensor) -> torch.Tensor:
        check_series_batch(x, self.n_channels, self.lookback)
        return self.revin.normalize(x) if self.revin is not None else x

    def _tokens(self, z: torch.Tensor) -> torch.Tensor:
        """Token matrix: ``(B, D, L)`` for channel-wise attention, ``(B, L, D)`` for temporal attention."""
        return z.transpose(1, 2) if self.attention_kind == "temporal" else z

    def _attention_from_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """A = softmax(T W_Q (T W_K)ᵀ / √d_m) (Eq. 4) for a batch of token matrices T."""
        queries = self.query(tokens)
        keys = self.key(tokens)
        scores = queries @ keys.transpose(1, 2) / math.sqrt(self.d_model)
        return torch.softmax(scores, dim=-1)

    # ------------------------------------------------------------------ public API
    def attention_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Attention matrices A(X) of Eq. 4 for input ``x`` (after RevIN), *with* gradient.

        ``(B, D, D)``, or ``(B, L, L)`` for ``"temporal"``; the identity (expanded) for ``"identity"``.
        """
        tokens = self._tokens(self._normalized(x))
        if self.attention_kind == "identity":
            n = tokens.shape[1]
            eye = torch.eye(n, dtype=tokens.dtype, device=tokens.device)
            return eye.expand(tokens.shape[0], n, n)
        return self._attention_from_tokens(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forecast ``(B, D, H)`` from ``x`` ``(B, D, L)``: RevIN → Eq. 4, Eq. 3 → RevIN⁻¹ (Algorithm 1)."""
        tokens = self._tokens(self._normalized(x))
        values = self.value(tokens)  # T W_V: (B, n_tokens, d_m)
        if self.attention_kind == "identity":
            mixed_values = values
            n = tokens.shape[1]
            attention = torch.eye(n, dtype=tokens.dtype, device=tokens.device).expand(tokens.shape[0], n, n)
        else:
            attention = self._attention_from_tokens(tokens)
            # A (T W_V) W_O == (A T W_V) W_O; rows of A sum to 1, so W_O's bias passes through unchanged too
            mixed_values = attention @ values
        self.last_attention = attention.detach()
        mixed = tokens + self.output(mixed_values)  # T + A T W_V W_O
        if self.attention_kind == "temporal":
            mixed = mixed.transpose(1, 2)  # back to (B, D, L)
        out = self.head(mixed)  # [·] W: (B, D, H)
        if self.revin is not None:
            out = self.revin.denormalize(out)
        return out

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Point forecast ``(B, D, H)`` (the same as :meth:`forward`)."""
        return self(x)

    def attention_parameters(self, include_values: bool = True) -> list[nn.Parameter]:
        """Trainable parameters of W_Q, W_K (and of W_V, W_O when ``include_values``), for restricted Hessians.

        Includes each layer's bias and, with σReparam, its γ. Frozen (``"random"``: all four; ``"frozen_qk"``:
        W_Q, W_K) or absent (``"identity"``) maps contribute nothing.
        """
        layers = [self.query, self.key]
        if include_values:
            layers += [self.value, self.output]
        return [p for layer in layers if layer is not None for p in layer.parameters() if p.requires_grad]

    def weight_matrices(self) -> dict[str, torch.Tensor]:
        """Effective (σReparam'd where applicable) weights in the paper's layout: W_Q, W_K, W_V ``(L, d_m)``,
        W_O ``(d_m, L)``, W ``(L, H)`` (``D`` in place of ``L`` for the attention maps of ``"temporal"``).
        W_Q, W_K are absent for ``"identity"``."""
        matrices = {}
        if self.query is not None:
            matrices["W_Q"] = _paper_matrix(self.query)
            matrices["W_K"] = _paper_matrix(self.key)
        matrices["W_V"] = _paper_matrix(self.value)
        matrices["W_O"] = _paper_matrix(self.output)
        matrices["W"] = _paper_matrix(self.head)
        return matrices

    def n_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def extra_repr(self) -> str:
        return (
            f"lookback={self.lookback}, horizon={self.horizon}, n_channels={self.n_channels}, "
            f"d_model={self.d_model}, attention={self.attention_kind!r}, sigma_reparam={self.sigma_reparam}, "
            f"revin={self.use_revin}"
        )
