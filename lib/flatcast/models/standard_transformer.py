"""A standard (temporal-token) transformer encoder forecaster: the "Original" baseline of the EEO-TFV ablations.

This is the usual LTSF transformer recipe (Vaswani et al. 2017 as used by Informer / Autoformer baselines),
scaled down so that it trains on a CPU:

1. RevIN over time (optional, on by default, the same layer as SAMformer's, Algorithm 1 of SAMformer).
2. Tokens are the L time steps: the D channel values at step t are embedded by ``Linear(D → d_model)`` and a
   fixed sinusoidal positional encoding PE(t, 2i) = sin(t / 10000^{2i/d_model}), PE(t, 2i+1) = cos(·) is added
   (Vaswani et al. Eq. in §3.5), followed by dropout.
3. ``n_layers`` encoder layers ``nn.TransformerEncoderLayer`` (multi-head self-attention + position-wise
   feed-forward with GELU, residual connections, dropout), **post-LN** as in the original transformer and in
   Informer's encoder (``norm_first=False`` by default, switchable), then a final LayerNorm as in Informer.
4. Head: ``Linear(d_model → D)`` per time step maps each encoded step back to the channels, giving
   ``(B, L, D)``; a ``Linear(L → H)`` shared across channels maps the look-back axis to the horizon. This keeps
   the head at d_model·D + L·H weights instead of the L·d_model·H·D of a flatten head (≈44 M for L=512, H=96,
   D=7, d_model=128), which would dwarf the encoder.

Default sizes: d_model = 128, 8 heads, d_ff = 256, 2 encoder layers, dropout 0.1 — the LTSF baselines use
d_model = 512, d_ff = 2048 (too slow for thousands of CPU steps); the structure is the same.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from flatcast.utils import check_positive_int

from .channel_transformer import check_series_batch, seeded_init
from .revin import RevIN

__all__ = ["StandardTransformer", "sinusoidal_positional_encoding"]


def sinusoidal_positional_encoding(length: int, d_model: int) -> torch.Tensor:
    """``(length, d_model)`` table PE(t, 2i) = sin(t·ω_i), PE(t, 2i+1) = cos(t·ω_i), ω_i = 10000^{-2i/d_model}."""
    if length < 1 or d_model < 1:
        raise ValueError(f"length and d_model must be positive, got length={length!r}, d_model={d_model!r}")
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequencies = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * frequencies)
    table[:, 1::2] = torch.cos(position * frequencies[: d_model // 2])
    return table


class StandardTransformer(nn.Module):
    """Encoder-only transformer over embedded time steps; ``forward(x: (B, D, L)) -> (B, D, H)``.

    Parameters
    ----------
    lookback, horizon, n_channels: L, H, D.
    d_model, n_heads, d_ff, n_layers, dropout: encoder sizes (``d_model`` must be divisible by ``n_heads``).
    revin: RevIN normalisation/denormalisation around the network.
    norm_first: pre-LN layers instead of the default post-LN.
    seed: if given, initialise from ``torch.manual_seed(seed)`` in a forked RNG (global RNG untouched).
    record_attention: when True, each forward also stores ``last_attention``, the first layer's attention
        averaged over heads ``(B, L, L)`` (off by default: it costs an extra B·n_heads·L² softmax).
    """

    def __init__(
        self,
        lookback: int,
        horizon: int,
        n_channels: int,
        d_model: int = 128,
        n_heads: int = 8,
        d_ff: int = 256,
        n_layers: int = 2,
        dropout: float = 0.1,
        revin: bool = True,
        norm_first: bool = False,
        seed: int | None = None,
        record_attention: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("lookback", lookback),
            ("horizon", horizon),
            ("n_channels", n_channels),
            ("d_model", d_model),
            ("n_heads", n_heads),
            ("d_ff", d_ff),
            ("n_layers", n_layers),
        ):
            check_positive_int(name, value)
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.lookback = lookback
        self.horizon = horizon
        self.n_channels = n_channels
        self.d_model = d_model
        self.n_heads = n_heads
        self.use_revin = bool(revin)
        self.norm_first = bool(norm_first)
        self.record_attention = bool(record_attention)
        self.last_attention: torch.Tensor | None = None

        with seeded_init(seed):
            self.revin = RevIN(n_channels) if self.use_revin else None
            self.embedding = nn.Linear(n_channels, d_model)
            self.register_buffer("positional_encoding", sinusoidal_positional_encoding(lookback, d_model))
            self.embedding_dropout = nn.Dropout(dropout)
            layer = nn.TransformerEncoderLayer(
                d_model,
                n_heads,
                dim_feedforward=d_ff,
                dropout=dropout,
                activation="gelu",
                batch_first=True,
                norm_first=self.norm_first,
            )
            self.encoder = nn.TransformerEncoder(
                layer, n_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
            )
            self.channel_projection = nn.Linear(d_model, n_channels)
            self.temporal_head = nn.Linear(lookback, horizon)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate, RevIN-normalise and embed: returns (normalised x ``(B, D, L)``, tokens ``(B, L, d_model)``)."""
        check_series_batch(x, self.n_channels, self.lookback)
        z = self.revin.normalize(x) if self.revin is not None else x
        tokens = self.embedding(z.transpose(1, 2)) + self.positional_encoding
        return z, self.embedding_dropout(tokens)

    def _first_layer_attention(self, tokens: torch.Tensor) -> torch.Tensor:
        """softmax(Q Kᵀ / √d_head) of the first encoder layer, averaged over heads, ``(B, L, L)`` (no dropout)."""
        layer = self.encoder.layers[0]
        h = layer.norm1(tokens) if self.norm_first else tokens
        attn = layer.self_attn
        d = self.d_model
        bias = attn.in_proj_bias
        queries = nn.functional.linear(h, attn.in_proj_weight[:d], None if bias is None else bias[:d])
        keys = nn.functional.linear(h, attn.in_proj_weight[d : 2 * d], None if bias is None else bias[d : 2 * d])
        batch, length, _ = h.shape
        head_dim = d // self.n_heads
        queries = queries.view(batch, length, self.n_heads, head_dim).transpose(1, 2)
        keys = keys.view(batch, length, self.n_heads, head_dim).transpose(1, 2)
        weights = torch.softmax(queries @ keys.transpose(-1, -2) / math.sqrt(head_dim), dim=-1)
        return weights.mean(dim=1)

    def attention_scores(self, x: torch.Tensor) -> torch.Tensor:
        """First-layer self-attention of ``x`` averaged over heads, ``(B, L, L)``, with gradient."""
        _, tokens = self._embed(x)
        return self._first_layer_attention(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, tokens = self._embed(x)
        if self.record_attention:
            self.last_attention = self._first_layer_attention(tokens).detach()
        encoded = self.encoder(tokens)  # (B, L, d_model)
        per_step = self.channel_projection(encoded)  # (B, L, D)
        out = self.temporal_head(per_step.transpose(1, 2))  # (B, D, H)
        if self.revin is not None:
            out = self.revin.denormalize(out)
        return out

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Point forecast ``(B, D, H)`` (the same as :meth:`forward`)."""
        return self(x)

    def n_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def extra_repr(self) -> str:
        return (
            f"lookback={self.lookback}, horizon={self.horizon}, n_channels={self.n_channels}, "
            f"revin={self.use_revin}, norm_first={self.norm_first}"
        )
