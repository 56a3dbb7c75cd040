"""The toy linear forecasting problem of SAMformer §2.2 and its closed-form least-squares oracle.

SAMformer §2.2 generates ``Y = X W_toy + ε`` with ``X ∈ R^{D×L}`` and ``W_toy ∈ R^{L×H}`` having i.i.d. standard
normal entries, and shows that a Transformer fails to reach the linear oracle while a linear model does.

Noise level. The paper says ε is Gaussian noise but prints no variance. We take ``noise_std = 1.0`` by default:
unit-variance noise, on the same scale as the entries of ``X`` — the value the authors' public code uses too
(romilbert/samformer, ``utils/data_utils.py``, which also draws ``X`` and ``W`` standard normal and adds a separate
2 000-sample test set; here ``n_test`` does that). With standard-normal ``W_toy`` each target entry
``(X W_toy)_{dh} = Σ_l X_{dl} W_{lh}`` has variance ``Σ_l W_{lh}² ≈ L`` (512 for ``L=512``), so the signal-to-noise
ratio is about ``L`` (27 dB) and the oracle's validation MSE is about ``noise_std² · (1 + L / (N D))``. We keep the
paper's scale (targets of variance ≈ L; MSE values are on that scale); ``weight_std = 1/sqrt(L)`` gives
unit-variance targets instead. ``W_toy`` is returned in ``splits.extras["W_toy"]``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .splits import Splits, WindowSet, check_window_sizes

__all__ = ["make_toy", "oracle_least_squares", "OracleFit", "DEFAULT_TOY_NOISE_STD"]

DEFAULT_TOY_NOISE_STD = 1.0


def _count(label: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{label} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{label} must be >= {minimum}, got {value!r}")
    return value


def _nonnegative(label: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
    return float(value)


def make_toy(n_train: int = 10000, n_val: int = 5000, lookback: int = 512, horizon: int = 96,
             n_channels: int = 7, noise_std: float = DEFAULT_TOY_NOISE_STD, seed: int = 0, n_test: int = 0,
             weight_std: float = 1.0) -> Splits:
    """Samples of ``Y = X W_toy + ε`` (SAMformer §2.2) as :class:`Splits` with ``x (N, D, L)``, ``y (N, D, H)``.

    ``X`` entries are N(0, 1), ``W_toy`` (``L × H``) entries N(0, ``weight_std²``) (1: the paper's), ``ε``
    entries N(0, ``noise_std²``). ``W_toy`` is drawn first from ``seed``; each split then has its own generator
    seeded from that stream, so the validation samples do not change with ``n_train``. If ``n_test == 0`` the
    test set *is* the validation set (the same object). The data are not standardised (``mean`` 0, ``std`` 1);
    ``borders`` gives each split's range of sample indices; ``extras`` holds ``W_toy`` (float32), ``noise_std``
    and ``weight_std``.
    """
    lookback, horizon = check_window_sizes(lookback, horizon)
    n_train = _count("n_train", n_train, 1)
    n_val = _count("n_val", n_val, 1)
    n_test = _count("n_test", n_test, 0)
    n_channels = _count("n_channels", n_channels, 1)
    noise_std = _nonnegative("noise_std", noise_std)
    weight_std = _nonnegative("weight_std", weight_std)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")

    generator = torch.Generator().manual_seed(seed)
    w_toy = torch.randn(lookback, horizon, generator=generator) * weight_std
    split_seeds = torch.randint(0, 2**62, (3,), generator=generator).tolist()

    def draw(n_samples: int, split_seed: int) -> WindowSet:
        split_generator = torch.Generator().manual_seed(split_seed)
        x = torch.randn(n_samples, n_channels, lookback, generator=split_generator)
        noise = torch.randn(n_samples, n_channels, horizon, generator=split_generator) * noise_std
        return WindowSet(x, x @ w_toy + noise)

    train = draw(n_train, split_seeds[0])
    val = draw(n_val, split_seeds[1])
    test = draw(n_test, split_seeds[2]) if n_test > 0 else val
    test_range = (n_train + n_val, n_train + n_val + n_test) if n_test > 0 else (n_train, n_train + n_val)
    return Splits(
        train=train, val=val, test=test, name="toy", lookback=lookback, horizon=horizon, n_channels=n_channels,
        mean=torch.zeros(n_channels), std=torch.ones(n_channels),
        borders={"train": (0, n_train), "val": (n_train, n_train + n_val), "test": test_range},
        extras={"W_toy": w_toy, "noise_std": noise_std, "weight_std": weight_std, "seed": seed},
    )


class OracleFit(NamedTuple):
    """Closed-form least-squares fit: ``weights`` ``(L, H)`` and its validation / test MSE."""

    weights: torch.Tensor
    val_mse: float
    test_mse: float


def _chunks(windows: WindowSet, chunk_size: int):
    for start in range(0, len(windows), chunk_size):
        x, y = windows[start:start + chunk_size]
        yield x.reshape(-1, x.shape[-1]).double(), y.reshape(-1, y.shape[-1]).double()


def _mse_of(weights: torch.Tensor, windows: WindowSet, chunk_size: int) -> float:
    total, count = 0.0, 0
    for a, b in _chunks(windows, chunk_size):
        total += float(((a @ weights - b) ** 2).sum())
        count += b.numel()
    return total / count


def oracle_least_squares(splits: Splits, chunk_size: int = 2048) -> OracleFit:
    """The linear oracle of SAMformer §2.2: ``Ŵ = argmin_W Σ ||X W − Y||_F²`` over the training samples.

    Every channel row of every training window is one regression sample (``N·D`` rows of length ``L``), so
    ``Ŵ = (AᵀA)⁻¹ AᵀB`` with ``A`` ``(N·D, L)`` and ``B`` ``(N·D, H)``. ``AᵀA`` and ``AᵀB`` are accumulated in
    float64 over chunks of windows (memory stays small) and solved by Cholesky. Needs ``N·D ≥ L`` training rows.
    Returns :class:`OracleFit` (``weights`` float32 on the CPU, MSEs as floats).
    """
    if not isinstance(splits, Splits):
        raise TypeError(f"splits must be a Splits, got {type(splits).__name__}")
    n_rows = len(splits.train) * splits.n_channels
    if n_rows < splits.lookback:
        raise ValueError(f"least squares needs at least lookback={splits.lookback} training rows, got "
                         f"{len(splits.train)} windows x {splits.n_channels} channels = {n_rows}")
    gram = torch.zeros(splits.lookback, splits.lookback, dtype=torch.float64, device=splits.train.device)
    cross = torch.zeros(splits.lookback, splits.horizon, dtype=torch.float64, device=splits.train.device)
    for a, b in _chunks(splits.train, chunk_size):
        gram += a.T @ a
        cross += a.T @ b
    factor, info = torch.linalg.cholesky_ex(gram)
    if int(info) != 0:
        raise ValueError("the training inputs are rank deficient: X^T X is singular, least squares is not unique")
    weights = torch.cholesky_solve(cross, factor)
    val_mse = _mse_of(weights, splits.val, chunk_size)
    test_mse = val_mse if splits.test is splits.val else _mse_of(weights, splits.test, chunk_size)
    return OracleFit(weights.float().cpu(), val_mse, test_mse)
