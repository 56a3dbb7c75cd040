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

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from flatcast.losses import ce_loss_from_logits, huber_loss, oce_loss_fused, pinball_loss
from flatcast.targets import DISTRIBUTIONS, Bins, target_to_cumulative, target_to_probs
from flatcast.utils import check_positive_int

__all__ = ["SeriesDecomposition", "DLinear", "DLinearOCE", "DLinearHuber", "DLinearQuantile", "MinMaxWindowOCE",
           "TARGET_RANGES"]

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
    exact_loss:
        ``True`` (default): the exact log-cumsum-exp OCE (:func:`flatcast.losses.oce_loss_from_logits`);
        ``False``: the faster clamped version (:func:`flatcast.losses.oce_loss_from_logits_clamped`, what the
        authors' code computes). Either is evaluated by :func:`flatcast.losses.oce_loss_fused` (the same value
        and gradient to rounding, in cache-sized blocks with a hand-written gradient).
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
        exact_loss: bool = True,
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
        self.exact_loss = bool(exact_loss)
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
        if self.loss == "oce":
            # the same loss as oce_loss_from_logits(_clamped)(p, logits), blockwise with its gradient written out
            cumulative = functools.partial(target_to_cumulative, bins=self.bins, sigma=self.sigma,
                                           distribution=self.distribution, df=self.df)
            return oce_loss_fused(logits, y.to(logits.dtype), cumulative, exact=self.exact_loss)
        with torch.no_grad():
            p = self.target_probabilities(y.to(logits.dtype))
        return ce_loss_from_logits(p, logits)

    def extra_repr(self) -> str:
        return (
            f"bins=Bins(low={self.bins.low:.4g}, high={self.bins.high:.4g}, n_bins={self.bins.n_bins}), "
            f"sigma={self.sigma:.4g}, distribution={self.distribution!r}, loss={self.loss!r}"
        )


def _check_xy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_channels: int, horizon: int) -> None:
    expected = (x.shape[0], n_channels, horizon)
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != expected:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must have shape {expected} = (batch, channels, horizon), got {shape}")


class DLinearHuber(DLinear):
    """DLinear trained with the Huber loss (:func:`flatcast.losses.huber_loss`, threshold ``delta`` in the units
    of the standardised data): the robust regression baseline that OCE-TS's introduction names but never runs.
    Same forward/predict as :class:`DLinear`; only ``training_loss`` differs (the trainer's hook)."""

    def __init__(self, lookback: int, horizon: int, n_channels: int, delta: float = 1.0, **options) -> None:
        super().__init__(lookback, horizon, n_channels, **options)
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < math.inf:
            raise ValueError(f"delta must be a finite positive number, got {delta!r}")
        self.delta = float(delta)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_xy(self, x, y, self.n_channels, self.horizon)
        return huber_loss(self(x), y, self.delta)


class DLinearQuantile(nn.Module):
    """Quantile regression on the DLinear backbone: one ``L → H`` map pair per quantile level.

    The backbone is a :class:`DLinear` with ``H · m`` outputs (``m`` = number of levels), reshaped to
    ``(B, D, H, m)``; trained with the pinball loss averaged over levels. ``predict_quantiles`` sorts the ``m``
    outputs along the level axis (monotone rearrangement, Chernozhukov et al. 2010) so quantiles never cross;
    ``predict`` is the median level (0.5 must be among the levels). This is "the same backbone" as OCE-TS's,
    with a distribution read from quantiles instead of bins.
    """

    def __init__(self, lookback: int, horizon: int, n_channels: int, levels=(0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975),
                 **options) -> None:
        super().__init__()
        levels = [float(v) for v in levels]
        if not levels or any(not 0 < v < 1 for v in levels) or sorted(set(levels)) != levels:
            raise ValueError(f"levels must be strictly increasing numbers in (0, 1), got {levels}")
        if 0.5 not in levels:
            raise ValueError("levels must include the median 0.5 (the point forecast)")
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.get_default_dtype()))
        self.horizon = check_positive_int("horizon", horizon)
        self.n_channels = check_positive_int("n_channels", n_channels)
        self.backbone = DLinear(lookback, horizon * len(levels), n_channels, **options)
        # Every level starts at the same DLinear initialisation plus the level's unit-normal quantile as an offset.
        with torch.no_grad():
            normal = torch.distributions.Normal(0.0, 1.0)
            offsets = normal.icdf(self.levels.double()).to(self.backbone.seasonal_bias.dtype)
            for bias in (self.backbone.seasonal_bias, self.backbone.trend_bias):
                per_level = bias.view(*bias.shape[:-1], horizon, len(levels))
                per_level.copy_(per_level[..., :1].expand_as(per_level).clone())  # same start for every level
            seasonal = self.backbone.seasonal_bias
            seasonal.view(*seasonal.shape[:-1], horizon, len(levels)).add_(offsets)

    @property
    def lookback(self) -> int:
        return self.backbone.lookback

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw quantile outputs ``(B, D, H, m)`` (not sorted)."""
        out = self.backbone(x)
        return out.reshape(*out.shape[:-1], self.horizon, self.levels.numel())

    def predict_quantiles(self, x: torch.Tensor) -> torch.Tensor:
        """Sorted quantiles ``(B, D, H, m)`` at ``self.levels``."""
        return torch.sort(self(x), dim=-1).values

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The median forecast ``(B, D, H)``."""
        median = int((self.levels == 0.5).nonzero()[0])
        return self.predict_quantiles(x)[..., median]

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_xy(self, x, y, self.n_channels, self.horizon)
        return pinball_loss(self(x), y, self.levels)


#: How :class:`MinMaxWindowOCE` scales a training target window (see its docstring).
TARGET_RANGES = ("input", "target")


class MinMaxWindowOCE(nn.Module):
    """OCE-TS with the paper's per-window min–max scaling (App. C "Data Normalization", Eq. 74–75).

    Each input window is mapped channel by channel to ``[-1, 1]`` with its own minimum and maximum over time,
    ``x̃ = 2 (x − min x) / (max x − min x + ε) − 1``; a :class:`DLinearOCE` with bins on ``[-1, 1]`` (the support
    the authors' code uses, ``torch.linspace(-1, 1, K + 1)``) forecasts there, and the forecast is mapped back.

    ``target_range`` says whose minimum and maximum scale the *training target* ``y``:

    * ``"target"`` — ``y``'s own (what the paper's App. C states and the authors' code does in training): the
      soft labels then always span exactly ``[-1, 1]``, but at forecast time that range is unknown.
    * ``"input"`` (default) — the input window's, the same map the forecast is inverted with, so training and
      test are consistent and nothing from the future is used. Targets outside the input's range are clipped
      into ``[-1, 1]`` by the soft-label transform (Eq. 9–11 truncate there).

    ``predict(x)`` always inverts with the input window's range (what the paper's text says: "the predicted
    values strictly employ the maximum and minimum values of the input sequence"). ``predict_with_range(x, lo, hi)``
    inverts with any given range; the runner uses it with the target window's own range to reproduce the
    authors' ``test()``, which overwrites ``min_val``/``max_val`` with ``batch_y``'s before denormalising.
    The OCE is the clamped version by default (``exact_loss=False``; several times faster on the CPU).
    """

    def __init__(self, lookback: int, horizon: int, n_channels: int, n_bins: int = 100, sigma: float | None = None,
                 target_range: str = "input", eps: float = 1e-8, exact_loss: bool = False, **options) -> None:
        super().__init__()
        if target_range not in TARGET_RANGES:
            raise ValueError(f"unknown target_range {target_range!r}: use one of {TARGET_RANGES}")
        self.target_range = target_range
        self.eps = float(eps)
        self.inner = DLinearOCE(lookback, horizon, n_channels, Bins(-1.0, 1.0, n_bins), sigma=sigma,
                                exact_loss=exact_loss, **options)

    @property
    def lookback(self) -> int:
        return self.inner.lookback

    @property
    def horizon(self) -> int:
        return self.inner.horizon

    @property
    def n_channels(self) -> int:
        return self.inner.n_channels

    @property
    def bins(self) -> Bins:
        return self.inner.bins

    def input_range(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-window, per-channel ``(min, max)`` over time, each ``(B, D, 1)``."""
        return x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)

    def scale(self, v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        return 2.0 * (v - lo) / (hi - lo + self.eps) - 1.0

    def unscale(self, v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        return (v + 1.0) * 0.5 * (hi - lo + self.eps) + lo

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, D, H, K)`` over the bins of the scaled forecast."""
        self.inner.backbone.check_input(x)
        lo, hi = self.input_range(x)
        return self.inner(self.scale(x, lo, hi))

    def predict_distribution(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(x), dim=-1)

    def bin_edges(self, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """Bin edges in data units for each window and channel, ``(B, D, 1, K + 1)``."""
        edges = self.inner.bins.edges_like(lo)
        return self.unscale(edges, lo.unsqueeze(-1), hi.unsqueeze(-1))

    def predict_with_range(self, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        q = self.predict_distribution(x)
        value = (q * self.inner.bin_centres.to(q.dtype)).sum(-1)
        return self.unscale(value, lo, hi)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Point forecast ``(B, D, H)``: Eq. 18 in the scaled space, inverted with the input window's range."""
        lo, hi = self.input_range(x)
        return self.predict_with_range(x, lo, hi)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.inner.backbone.check_input(x)
        _check_xy(self, x, y, self.n_channels, self.horizon)
        lo, hi = self.input_range(x)
        if self.target_range == "target":
            y_lo, y_hi = y.amin(dim=-1, keepdim=True), y.amax(dim=-1, keepdim=True)
        else:
            y_lo, y_hi = lo, hi
        return self.inner.training_loss(self.scale(x, lo, hi), self.scale(y, y_lo, y_hi))
