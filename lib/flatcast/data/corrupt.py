"""Corrupted copies of benchmark splits: input noise at a given SNR and outliers in the training targets.

Windows are strided views of one series (:meth:`WindowSet.from_series`), so both helpers corrupt a *copy of the
series* and rebuild the windows as views: ``x`` from one series, ``y`` from another (no per-window copies, memory
stays ``T × D``). The clean splits are never modified.

* :func:`add_input_noise` — OCE-TS "Model Performance under Different SNRs" (App. C): additive Gaussian white
  noise of variance ``P_signal / 10^(SNR/10)`` on the *inputs*, ``P_signal`` the mean squared value of the
  signal. We take ``P_signal`` per channel over the standardised training series (≈ 1 per channel) and add
  noise to the input series of every split (train, validation, test); targets stay clean. Each time step gets
  one noise draw, shared by every window that sees it. (The authors' code, ``add_gaussian_noise_with_snr``, is
  commented out in ``train()`` and ``vali()`` and absent from ``test()``, and computes ``P`` over a whole
  min–max-scaled batch; the paper does not say which splits are noisy.)
* :func:`add_target_outliers` — not in the paper: a ``fraction`` of the (time step, channel) entries of the
  training series used as *targets* is shifted by ``± size`` standard deviations (random sign); inputs,
  validation and test stay clean.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from .splits import Splits, WindowSet

__all__ = ["signal_power", "noise_std_for_snr", "add_input_noise", "add_target_outliers"]


def _check_splits(splits) -> None:
    if not isinstance(splits, Splits):
        raise TypeError(f"splits must be flatcast.data.Splits, got {type(splits).__name__}")
    for part in ("train", "val", "test"):
        if getattr(splits, part).series is None:
            raise ValueError(f"splits.{part} is not built from a series (WindowSet.from_series); cannot corrupt it")


def signal_power(series: torch.Tensor) -> torch.Tensor:
    """Mean squared value per channel of a ``(T, D)`` series, shape ``(D,)``."""
    if not isinstance(series, torch.Tensor) or series.ndim != 2:
        raise ValueError("series must be a (T, D) tensor")
    return series.double().square().mean(0)


def noise_std_for_snr(power: torch.Tensor | float, snr_db: float) -> torch.Tensor:
    """``sqrt(P / 10^(SNR/10))``: the noise standard deviation that gives ``snr_db`` decibels."""
    if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float)) or not math.isfinite(snr_db):
        raise ValueError(f"snr_db must be a finite number, got {snr_db!r}")
    return torch.sqrt(torch.as_tensor(power, dtype=torch.float64) / 10.0 ** (snr_db / 10.0))


def _windows(x_series: torch.Tensor, y_series: torch.Tensor, lookback: int, horizon: int) -> WindowSet:
    xs = WindowSet.from_series(x_series, lookback, horizon)
    ys = WindowSet.from_series(y_series, lookback, horizon)
    return WindowSet(xs.x, ys.y)


def add_input_noise(splits: Splits, snr_db: float, seed: int = 0) -> Splits:
    """Copy of ``splits`` whose inputs carry white Gaussian noise at ``snr_db`` dB (targets clean)."""
    _check_splits(splits)
    std = noise_std_for_snr(signal_power(splits.train.series), snr_db).to(torch.float32)
    generator = torch.Generator().manual_seed(int(seed))
    parts = {}
    for index, part in enumerate(("train", "val", "test")):
        clean = getattr(splits, part).series
        noise = torch.randn(clean.shape, generator=generator, dtype=torch.float32) * std
        parts[part] = _windows(clean + noise.to(clean.device), clean, splits.lookback, splits.horizon)
    extras = {**splits.extras, "corruption": {"kind": "input_noise", "snr_db": float(snr_db), "seed": int(seed),
                                              "noise_std": std.tolist()}}
    return replace(splits, **parts, extras=extras)


def add_target_outliers(splits: Splits, fraction: float, size: float, seed: int = 0) -> Splits:
    """Copy of ``splits`` whose *training targets* contain outliers: a ``fraction`` of the (step, channel) entries
    of the training series, read as targets, are shifted by ``± size`` (standardised units, random sign)."""
    _check_splits(splits)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be a number in [0, 1], got {fraction!r}")
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not (0 <= size < math.inf):
        raise ValueError(f"size must be a finite non-negative number, got {size!r}")
    clean = splits.train.series
    generator = torch.Generator().manual_seed(int(seed))
    hit = torch.rand(clean.shape, generator=generator) < fraction
    sign = torch.where(torch.rand(clean.shape, generator=generator) < 0.5, -1.0, 1.0)
    corrupted = clean + (hit * sign * float(size)).to(clean.dtype).to(clean.device)
    train = _windows(clean, corrupted, splits.lookback, splits.horizon)
    extras = {**splits.extras, "corruption": {"kind": "target_outliers", "fraction": float(fraction),
                                              "size": float(size), "seed": int(seed),
                                              "n_corrupted": int(hit.sum())}}
    return replace(splits, train=train, extras=extras)
