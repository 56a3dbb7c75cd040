"""DLinear (Zeng et al. 2023) as a point forecaster, and DLinear with the OCE-TS ordinal head.

**DLinear.** Each input window ``x`` of shape ``(B, D, L)`` is split by a moving average into a trend and a
remainder ("seasonal") part, ``x = trend + remainder``; two linear maps ``L → H`` along time, shared by all
channels or one pair per channel, forecast each part and the forecasts are added:

    trend = MovingAverage_k(x),   remainder = x - trend,   ŷ = W_s · remainder + b_s + W_t · trend + b_t.

This follows Time-Series-Library's ``models/DLinear.py`` (kernel 25, replicate padding, weights initialised
to ``1/L``). For an even kernel TSL's symmetric padding of ``(k-1)//2`` steps would shorten the series by one;
here the front gets ``(k-1)//2`` and the back ``k//2`` copies, so the trend always has length ``L`` (identical
to TSL for odd ``k``).

**DLinearOCE** (OCE-TS §Methodology, Eq. 14–18): the DLinear forecast ``s_{d,t}`` of every channel ``d`` and
step ``t`` is mapped to ``K`` logits over the ordered bins, ``q = softmax(W_o h + b_o)``, trained with the
ordinal cross-entropy (Eq. 2) against the binned targets (Eq. 8–11), and read out as ``ŷ = Σ_k v_k q_k``
(Eq. 18). See :class:`DLinearOCE` for the reading of ``W_o ∈ R^{K×M}``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from flatcast.losses import ce_loss_from_logits, oce_loss_from_logits
from flatcast.targets import DISTRIBUTIONS, Bins, target_to_probs
from flatcast.utils import check_positive_int

__all__ = ["SeriesDecomposition", "DLinear", "DLinearOCE"]

LOSSES = ("oce", "ce")


class SeriesDecomposition(nn.Module):
    """Moving-average decomposition along the last axis: ``forward(x) -> (remainder, trend)``.

    ``trend`` is the mean over a window of ``kernel_size`` steps of ``x`` padded by repeating its first value
    ``(kernel_size - 1) // 2`` times in front and its last value ``kernel_size // 2`` times at the back (so
    ``trend`` has the length of ``x``); ``remainder = x - trend``. Works on any shape ``(..., L)``.
    """

    def __init__(self, kernel_size: int = 25) -> None:
        super().__init__()
        self.kernel_size = check_positive_int("kernel_size", kernel_size)

    def moving_average(self, x: torch.Tensor) -> torch.Tensor:
        """The trend: replicate-padded moving average of ``x`` over its last axis."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating torch.Tensor, got {type(x).__name__}")
        if x.dim() < 1 or x.shape[-1] < 1:
            raise ValueError(f"x needs a non-empty time axis (last dimension), got shape {tuple(x.shape)}")
        k = self.kernel_size
        if k == 1:
            return x.clone()
        front, back = (k - 1) // 2, k // 2
        length = x.shape[-1]
        padded = torch.cat(
            [x[..., :1].expand(*x.shape[:-1], front), x, x[..., -1:].expand(*x.shape[:-1], back)], dim=-1
        )
        pooled = F.avg_pool1d(padded.reshape(-1, 1, length + k - 1), kernel_size=k, stride=1)
        return pooled.reshape(x.shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trend = self.moving_average(x)
        return x - trend, trend

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"


class DLinear(nn.Module):
    """DLinear point forecaster ``(B, D, L) -> (B, D, H)``.

    Parameters
    ----------
    lookback, horizon, n_channels:
        ``L``, ``H`` and ``D``.
    individual:
        ``False``: one pair of ``L → H`` maps shared by all channels (``2 (H L + H)`` parameters). ``True``: one
        pair per channel (``2 D (H L + H)`` parameters).
    kernel_size:
        Moving-average window of the decomposition (TSL default 25).

    Weights start at ``1/L`` (as in TSL, so the initial forecast is the window mean plus the biases); biases
    start like ``nn.Linear``'s, uniform in ``±1/sqrt(L)`` (torch's global RNG: seed it for reproducibility).
    """

    def __init__(
        self, lookback: int, horizon: int, n_channels: int, individual: bool = False, kernel_size: int = 25
    ) -> None:
        super().__init__()
        self.lookback = check_positive_int("lookback", lookback)
        self.horizon = check_positive_int("horizon", horizon)
        self.n_channels = check_positive_int("n_channels", n_channels)
        if not isinstance(individual, bool):
            raise TypeError(f"individual must be a bool, got {individual!r}")
        self.individual = individual
        self.decomposition = SeriesDecomposition(kernel_size)
        lead = (n_channels,) if individual else ()
        bound = 1.0 / math.sqrt(lookback)
        self.seasonal_weight = nn.Parameter(torch.full((*lead, horizon, lookback), 1.0 / lookback))
        self.seasonal_bias = nn.Parameter(torch.empty(*lead, horizon).uniform_(-bound, bound))
        self.trend_weight = nn.Parameter(torch.full((*lead, horizon, lookback), 1.0 / lookback))
        self.trend_bias = nn.Parameter(torch.empty(*lead, horizon).uniform_(-bound, bound))

    @property
    def kernel_size(self) -> int:
        return self.decomposition.kernel_size

    def check_input(self, x: torch.Tensor) -> None:
        """Raise unless ``x`` is a floating tensor of shape ``(B, n_channels, lookback)``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating tensor, got dtype {x.dtype}")
        if x.dim() != 3 or x.shape[1] != self.n_channels or x.shape[2] != self.lookback:
            raise ValueError(
                f"x must have shape (B, {self.n_channels}, {self.lookback}) = (batch, channels, lookback), "
                f"got {tuple(x.shape)}"
            )

    def _project(self, part: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if self.individual:
            return torch.einsum("bdl,dhl->bdh", part, weight) + bias
        return torch.matmul(part, weight.transpose(0, 1)) + bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        remainder, trend = self.decomposition(x)
        return self._project(remainder, self.seasonal_weight, self.seasonal_bias) + self._project(
            trend, self.trend_weight, self.trend_bias
        )

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Point forecast ``(B, D, H)`` (same as ``forward``)."""
        return self(x)


class DLinearOCE(nn.Module):
    """DLinear backbone with the OCE-TS softmax head over ``K`` ordered bins (Eq. 14–18).

    ``forward(x)`` returns logits ``(B, D, H, K)``; ``predict_distribution(x)`` their softmax ``q``;
    ``predict(x)`` the point forecast ``Σ_k v_k q_k`` (Eq. 18), which lies in ``[v_1, v_K] ⊂ [a, b]``;
    ``training_loss(x, y)`` the OCE (Eq. 2, or CE of Eq. 19 when ``loss="ce"``) between the binned targets
    ``p(y)`` (Eq. 8–11) and ``q``, averaged over batch, channels and steps (Eq. 15).

    **Reading of Eq. 14, ``z = W_o h + b_o`` with ``W_o ∈ R^{K×M}``.** The paper's backbone is DLinear, whose
    output at each (channel, step) is a single number ``s``, and it describes the head as acting "per step".
    We read ``h ∈ R^M`` as a feature vector computed from that scalar forecast alone, and the head
    ``(W_o, b_o)`` as shared by all steps and channels (one probability vector per channel and step, as the
    loss of Eq. 15 requires):

    * ``head_hidden=1`` (default): ``h = s``, i.e. ``M = 1`` and ``z_k = w_k s + b_k``. This is not as weak as
      it looks: with ``w_k = v_k / τ²`` and ``b_k = -v_k² / (2τ²)`` the softmax is exactly a Gaussian of width
      ``τ`` centred at ``s`` discretised on the bin centres (the ``-s²/(2τ²)`` term is common to all bins
      and cancels in the softmax). The head is initialised this way with ``τ = max(sigma, bin width)``, so
      training starts from "forecast ``s`` with the target's spread" and the head can learn to reshape it.
    * ``head_hidden=M > 1``: ``h = GELU(A s + c) ∈ R^M`` (a learned feature map of the scalar), then
      ``z = W_o h + b_o``; this lets the predicted shape (spread, skew) depend on the level ``s``.
      Default PyTorch initialisation.

    The alternative readings — ``M`` = number of channels (mixing channels into one distribution per step) or
    a ``K×H`` map from the whole horizon — would either lose the per-channel distributions or break the
    "per step" description, so we do not use them.

    Parameters
    ----------
    bins:
        The :class:`flatcast.targets.Bins` (support ``[a, b]`` and ``K``).
    sigma:
        Scale of the target distribution (Eq. 9). ``None`` (default) uses one bin width, which is the paper's
        setting (σ = 0.01 with K = 100 bins on [0, 1]).
    distribution, df:
        Target shape: ``"gaussian"`` (paper), ``"student_t"`` (``df`` degrees of freedom, paper ν = 5) or
        ``"laplace"``.
    loss:
        ``"oce"`` (Eq. 2, the method) or ``"ce"`` (Eq. 19, the ablation).
    """

    def __init__(
        self,
        lookback: int,
        horizon: int,
        n_channels: int,
        bins: Bins,
        sigma: float | None = None,
        individual: bool = False,
        kernel_size: int = 25,
        distribution: str = "gaussian",
        df: float = 5.0,
        loss: str = "oce",
        head_hidden: int = 1,
    ) -> None:
        super().__init__()
        if not isinstance(bins, Bins):
            raise TypeError(f"bins must be a flatcast.targets.Bins, got {type(bins).__name__}")
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution {distribution!r}: use one of {DISTRIBUTIONS}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}: use one of {LOSSES}")
        if sigma is None:
            sigma = bins.width
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (0 < sigma < math.inf):
            raise ValueError(f"sigma must be a finite positive number, got {sigma!r}")
        head_hidden = check_positive_int("head_hidden", head_hidden)
        # Validate df (and everything else about the target transform) once, on a tiny tensor.
        target_to_probs(torch.zeros(1), bins, float(sigma), distribution, df)

        self.bins = bins
        self.sigma = float(sigma)
        self.distribution = distribution
        self.df = float(df)
        self.loss = loss
        self.head_hidden = head_hidden
        self.backbone = DLinear(lookback, horizon, n_channels, individual=individual, kernel_size=kernel_size)
        centres = bins.centres.to(torch.get_default_dtype())
        self.register_buffer("bin_centres", centres)

        if head_hidden == 1:
            self.head_feature = None
            temperature = max(self.sigma, bins.width)
            self.head = nn.Linear(1, bins.n_bins)
            with torch.no_grad():
                self.head.weight.copy_((centres / temperature**2).unsqueeze(-1))
                self.head.bias.copy_(-(centres**2) / (2 * temperature**2))
        else:
            self.head_feature = nn.Sequential(nn.Linear(1, head_hidden), nn.GELU())
            self.head = nn.Linear(head_hidden, bins.n_bins)

    @property
    def lookback(self) -> int:
        return self.backbone.lookback

    @property
    def horizon(self) -> int:
        return self.backbone.horizon

    @property
    def n_channels(self) -> int:
        return self.backbone.n_channels

    @property
    def n_bins(self) -> int:
        return self.bins.n_bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, D, H, K)`` over the bins (Eq. 14)."""
        features = self.backbone(x).unsqueeze(-1)  # (B, D, H, 1): the scalar forecast per channel and step
        if self.head_feature is not None:
            features = self.head_feature(features)
        return self.head(features)

    def predict_distribution(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted bin probabilities ``q = softmax(logits)`` of shape ``(B, D, H, K)``."""
        return torch.softmax(self(x), dim=-1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Point forecast ``Σ_k v_k q_k`` of shape ``(B, D, H)`` (Eq. 18)."""
        q = self.predict_distribution(x)
        return (q * self.bin_centres.to(q.dtype)).sum(dim=-1)

    def target_probabilities(self, y: torch.Tensor) -> torch.Tensor:
        """Binned soft targets ``p(y)`` of shape ``(*y.shape, K)`` (Eq. 8–11, with this model's settings)."""
        return target_to_probs(y, self.bins, self.sigma, self.distribution, self.df)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """OCE (Eq. 2; or CE, Eq. 19, if ``loss="ce"``) between ``p(y)`` and ``softmax(self(x))``, averaged."""
        self.backbone.check_input(x)
        expected = (x.shape[0], self.n_channels, self.horizon)
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != expected:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"y must have shape {expected} = (batch, channels, horizon), got {shape}")
        logits = self(x)
        with torch.no_grad():
            p = self.target_probabilities(y.to(logits.dtype))
        if self.loss == "oce":
            return oce_loss_from_logits(p, logits)
        return ce_loss_from_logits(p, logits)

    def extra_repr(self) -> str:
        return (
            f"bins=Bins(low={self.bins.low:.4g}, high={self.bins.high:.4g}, n_bins={self.bins.n_bins}), "
            f"sigma={self.sigma:.4g}, distribution={self.distribution!r}, loss={self.loss!r}"
        )
