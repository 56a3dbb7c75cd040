"""TSMixer (Chen, Li, Arik, Yoder & Pfister, "TSMixer: An All-MLP Architecture for Time Series Forecasting",
TMLR 2023), the all-MLP baseline that SAMformer calls "the current multivariate state-of-the-art" (SAMformer §3).

Architecture (TSMixer §4, Fig. 1 and its Algorithm; SAMformer App. A.1 uses "the official implementation", the
``TSMixerRevIN`` model of google-research/tsmixer): for one window X ∈ R^{L×D} (RevIN-normalised),

* ``n_blocks`` mixer blocks, each
    - **time mixing**: ``X ← X + Dropout(ReLU(Norm(X)ᵀ W_t + b_t))ᵀ`` with one ``Linear(L, L)`` shared by all
      channels (the MLP acts along time);
    - **feature mixing**: ``X ← X + Dropout(Linear(ff, D)(Dropout(ReLU(Linear(D, ff)(Norm(X))))))``, a
      two-layer MLP shared by all time steps (it acts across channels);
* **temporal projection**: ``Linear(L, H)`` along time, then RevIN denormalisation.

``Norm`` is batch normalisation over the joint (time, feature) axes as in the official code
(``norm_type='B'``, ``BatchNormalization(axis=[-2, -1])``): one affine pair per (time, channel) entry, i.e.
``nn.BatchNorm1d(L·D)`` on the flattened window. Where the paper and SAMformer are silent we follow the official
tuned scripts (``run_tuned_hparam.sh``): ETTm2 ``n_block=2, ff_dim=64, dropout=0.9``, weather ``n_block=4,
ff_dim=32, dropout=0.3``; the other ETT sets and exchange_rate get the ETTm2 settings (see
:data:`TSMIXER_SETTINGS`).

Input/output follow the library's convention: ``x`` is ``(B, D, L)`` and the forecast ``(B, D, H)``.
"""

from __future__ import annotations

import torch
from torch import nn

from flatcast.utils import check_positive_int

from .channel_transformer import check_series_batch, seeded_init
from .revin import RevIN

__all__ = ["TSMixer", "TSMixerBlock", "TSMIXER_SETTINGS", "tsmixer_settings"]

#: Official tuned settings (google-research/tsmixer ``run_tuned_hparam.sh``); other datasets get the ETTm2 row.
TSMIXER_SETTINGS = {
    "ETTm2": {"n_blocks": 2, "ff_dim": 64, "dropout": 0.9},
    "weather": {"n_blocks": 4, "ff_dim": 32, "dropout": 0.3},
    "electricity": {"n_blocks": 4, "ff_dim": 64, "dropout": 0.7},
    "traffic": {"n_blocks": 8, "ff_dim": 64, "dropout": 0.7},
}


def tsmixer_settings(dataset: str) -> dict:
    """The block count, feature-MLP width and dropout used for ``dataset`` (ETTm2's for datasets without a row)."""
    return dict(TSMIXER_SETTINGS.get(dataset, TSMIXER_SETTINGS["ETTm2"]))


class TSMixerBlock(nn.Module):
    """One mixer block: time mixing then feature mixing, each residual with batch norm first (TSMixer Fig. 1)."""

    def __init__(self, lookback: int, n_channels: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.time_norm = nn.BatchNorm1d(lookback * n_channels)
        self.time_linear = nn.Linear(lookback, lookback)
        self.feature_norm = nn.BatchNorm1d(lookback * n_channels)
        self.feature_in = nn.Linear(n_channels, ff_dim)
        self.feature_out = nn.Linear(ff_dim, n_channels)
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def _norm(norm: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
        # x: (B, L, D) -> normalise each (t, d) entry over the batch (BatchNormalization(axis=[-2, -1]))
        return norm(x.reshape(x.shape[0], -1)).reshape(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, L, D)
        z = self._norm(self.time_norm, x).transpose(1, 2)                       # (B, D, L)
        z = self.dropout(torch.relu(self.time_linear(z))).transpose(1, 2)       # (B, L, D)
        x = x + z
        z = self._norm(self.feature_norm, x)
        z = self.dropout(torch.relu(self.feature_in(z)))
        z = self.dropout(self.feature_out(z))
        return x + z


class TSMixer(nn.Module):
    """TSMixer with RevIN (the official ``TSMixerRevIN``). ``x``: ``(B, D, L)`` → forecast ``(B, D, H)``.

    Parameters: ``lookback`` L, ``horizon`` H, ``n_channels`` D, ``n_blocks``, ``ff_dim`` (hidden width of the
    feature MLP), ``dropout``, ``revin`` (on by default, as in SAMformer Table 1), ``seed`` (initialisation
    drawn in a forked RNG, like :class:`~flatcast.models.ChannelTransformer`)."""

    def __init__(self, lookback: int, horizon: int, n_channels: int, n_blocks: int = 2, ff_dim: int = 64,
                 dropout: float = 0.9, revin: bool = True, seed: int | None = None) -> None:
        super().__init__()
        for name, value in (("lookback", lookback), ("horizon", horizon), ("n_channels", n_channels),
                            ("n_blocks", n_blocks), ("ff_dim", ff_dim)):
            check_positive_int(name, value)
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.lookback, self.horizon, self.n_channels = lookback, horizon, n_channels
        self.n_blocks, self.ff_dim, self.dropout_rate = n_blocks, ff_dim, float(dropout)
        with seeded_init(seed):
            self.revin = RevIN(n_channels) if revin else None
            self.blocks = nn.ModuleList(TSMixerBlock(lookback, n_channels, ff_dim, dropout)
                                        for _ in range(n_blocks))
            self.head = nn.Linear(lookback, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_series_batch(x, self.n_channels, self.lookback)
        z = self.revin.normalize(x) if self.revin is not None else x             # (B, D, L)
        z = z.transpose(1, 2)                                                    # (B, L, D)
        for block in self.blocks:
            z = block(z)
        out = self.head(z.transpose(1, 2))                                       # (B, D, H)
        return self.revin.denormalize(out) if self.revin is not None else out

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    def n_parameters(self) -> int:
        """Trainable parameters (the batch-norm running statistics are buffers and not counted)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def extra_repr(self) -> str:
        return (f"lookback={self.lookback}, horizon={self.horizon}, n_channels={self.n_channels}, "
                f"n_blocks={self.n_blocks}, ff_dim={self.ff_dim}, dropout={self.dropout_rate}")
