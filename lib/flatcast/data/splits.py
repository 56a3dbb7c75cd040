"""Train / validation / test windows following Time-Series-Library (TSL), as used by SAMformer and OCE-TS.

A forecasting sample is a look-back window ``x`` of ``L`` steps and the next ``H`` steps ``y`` (SAMformer §2,
Eq. 1: predict ``Y ∈ R^{D×H}`` from ``X ∈ R^{D×L}``). Windows slide with stride 1 over each part of the series.

Borders (TSL ``Dataset_ETT_hour`` / ``Dataset_ETT_minute`` / ``Dataset_Custom``), in rows, with ``L`` the look-back:

- ETTh: train ``[0, 8640)``, val ``[8640 − L, 11520)``, test ``[11520 − L, 14400)`` (12/4/4 months of 30 days);
- ETTm: the same ×4 (15-minute steps);
- the rest: ``n_train = int(0.7 T)``, ``n_test = int(0.2 T)``, ``n_val = T − n_train − n_test``; train
  ``[0, n_train)``, val ``[n_train − L, n_train + n_val)``, test ``[T − n_test − L, T)``.

Each part starts ``L`` rows early so that its first target follows the previous part directly. Data are
standardised with the mean and the population standard deviation (``ddof=0``, like sklearn's ``StandardScaler``)
of the train part only. Every window is kept (TSL's ``drop_last`` on the test loader is not reproduced), so a part
of ``n`` rows gives ``n − L − H + 1`` windows; ETTh1 with ``L=512, H=96`` gives 8033 / 2785 / 2785.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from .registry import DatasetInfo, dataset_info, load_dataset

__all__ = ["WindowSet", "Splits", "make_splits", "split_borders", "check_window_sizes"]


def check_window_sizes(lookback: Any, horizon: Any) -> tuple[int, int]:
    """Return ``(lookback, horizon)`` as ints, raising ``TypeError``/``ValueError`` unless both are positive ints."""
    out = []
    for label, value in (("lookback", lookback), ("horizon", horizon)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{label} must be a positive integer, got {type(value).__name__} {value!r}")
        if value <= 0:
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
        out.append(int(value))
    return out[0], out[1]


class WindowSet:
    """``N`` forecasting windows: ``x`` ``(N, D, L)`` and ``y`` ``(N, D, H)`` float32 tensors.

    Built either from explicit tensors (``WindowSet(x, y)``) or from one standardised series ``(T, D)`` with
    :meth:`from_series`, in which case ``x`` and ``y`` are strided ``unfold`` views of that series (no copy):
    window ``i`` is ``x[i] = series[i : i+L].T`` and ``y[i] = series[i+L : i+L+H].T``. A batch is
    ``ws.x[idx]`` for a LongTensor ``idx`` (a copy; it may be non-contiguous, so use ``reshape`` rather than
    ``view``) or ``ws[idx]`` which returns a contiguous ``(x, y)`` pair.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
            raise TypeError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
        if x.ndim != 3 or y.ndim != 3 or x.shape[:2] != y.shape[:2]:
            raise ValueError(f"x must be (N, D, L) and y (N, D, H) with the same N and D, got {tuple(x.shape)} "
                             f"and {tuple(y.shape)}")
        self.x = x
        self.y = y
        self.series: torch.Tensor | None = None

    @classmethod
    def from_series(cls, series: torch.Tensor, lookback: int, horizon: int) -> "WindowSet":
        """All stride-1 windows of ``series`` ``(T, D)``: ``T − L − H + 1`` of them, as views (no Python loop)."""
        lookback, horizon = check_window_sizes(lookback, horizon)
        if series.ndim != 2:
            raise ValueError(f"series must be (T, D), got shape {tuple(series.shape)}")
        n_windows = series.shape[0] - lookback - horizon + 1
        if n_windows < 1:
            raise ValueError(f"a series of {series.shape[0]} rows holds no window of lookback {lookback} + "
                             f"horizon {horizon}")
        x = series[: n_windows + lookback - 1].unfold(0, lookback, 1)  # (N, D, L)
        y = series[lookback:].unfold(0, horizon, 1)  # (N, D, H)
        windows = cls(x, y)
        windows.series = series
        windows._sizes = (lookback, horizon)
        return windows

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index].contiguous(), self.y[index].contiguous()

    def __repr__(self) -> str:
        return f"WindowSet(N={len(self)}, x={tuple(self.x.shape)}, y={tuple(self.y.shape)}, device={self.x.device})"

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device: str | torch.device) -> "WindowSet":
        """Return the windows on ``device`` (a new ``WindowSet``, like ``Tensor.to``; ``self`` if already there).

        A series-backed set moves its series once and rebuilds the views, so memory stays ``T × D``.
        """
        device = torch.device(device)
        if self.x.device == device:
            return self
        if self.series is not None:
            return WindowSet.from_series(self.series.to(device), *self._sizes)
        return WindowSet(self.x.to(device), self.y.to(device))


@dataclass
class Splits:
    """Train / validation / test :class:`WindowSet` s of one dataset plus how they were made.

    ``mean`` and ``std`` ``(D,)`` are the train-only scaler (already applied: everything is standardised);
    ``borders`` maps ``"train"/"val"/"test"`` to the ``(start, stop)`` rows of each part in the raw file;
    ``extras`` holds anything else (``columns``, ``dates``, ``file`` for benchmarks; ``W_toy`` for the toy).
    """

    train: WindowSet
    val: WindowSet
    test: WindowSet
    name: str
    lookback: int
    horizon: int
    n_channels: int
    mean: torch.Tensor
    std: torch.Tensor
    borders: dict[str, tuple[int, int]]
    extras: dict[str, Any] = field(default_factory=dict)

    def to(self, device: str | torch.device) -> "Splits":
        """Return the splits on ``device`` (a new ``Splits``; shared series are moved once; tensor extras too)."""
        device = torch.device(device)
        moved: dict[int, WindowSet] = {}

        def move(ws: WindowSet) -> WindowSet:
            if id(ws) not in moved:
                moved[id(ws)] = ws.to(device)
            return moved[id(ws)]

        extras = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.extras.items()}
        return replace(self, train=move(self.train), val=move(self.val), test=move(self.test),
                       mean=self.mean.to(device), std=self.std.to(device), extras=extras)


def split_borders(info: DatasetInfo, lookback: int, n_rows: int | None = None) -> dict[str, tuple[int, int]]:
    """Row borders ``(start, stop)`` of train / val / test for ``info`` (TSL conventions, module docstring)."""
    n_rows = info.rows if n_rows is None else n_rows
    if info.split in ("ett_hour", "ett_minute"):
        scale = 1 if info.split == "ett_hour" else 4
        month = 30 * 24 * scale
        train_end, val_end, test_end = 12 * month, 16 * month, 20 * month
        return {"train": (0, train_end), "val": (train_end - lookback, val_end),
                "test": (val_end - lookback, test_end)}
    if info.split == "ratio":
        n_train = int(n_rows * 0.7)
        n_test = int(n_rows * 0.2)
        n_val = n_rows - n_train - n_test
        return {"train": (0, n_train), "val": (n_train - lookback, n_train + n_val),
                "test": (n_rows - n_test - lookback, n_rows)}
    raise ValueError(f"unknown split kind {info.split!r} for dataset {info.name!r}")


def make_splits(name: str, lookback: int, horizon: int, data_dir=None, download: bool = True) -> Splits:
    """Standardised TSL windows of dataset ``name`` (module docstring): ``Splits`` with ``x (N, D, L)``, ``y (N, D, H)``.

    Arguments are checked before the file is read: an unknown ``name`` raises ``KeyError``; a ``lookback`` or
    ``horizon`` that is not a positive int, or that leaves a part without a window, raises ``ValueError`` naming
    the dataset, lookback and horizon. ``data_dir``/``download`` are passed to :func:`load_dataset`.
    """
    info = dataset_info(name)
    lookback, horizon = check_window_sizes(lookback, horizon)
    _check_borders(info, split_borders(info, lookback), lookback, horizon)

    frame = load_dataset(name, data_dir=data_dir, download=download)
    borders = split_borders(info, lookback, n_rows=len(frame))
    values = frame.to_numpy(dtype=np.float64)
    train_start, train_stop = borders["train"]
    mean = values[train_start:train_stop].mean(axis=0)
    std = values[train_start:train_stop].std(axis=0)  # ddof=0, as sklearn's StandardScaler
    std = np.where(std > 0, std, 1.0)  # a constant train channel is only centred (sklearn does the same)
    series = torch.from_numpy(((values - mean) / std).astype(np.float32))
    parts = {part: WindowSet.from_series(series[start:stop], lookback, horizon)
             for part, (start, stop) in borders.items()}
    return Splits(
        train=parts["train"], val=parts["val"], test=parts["test"], name=name, lookback=lookback,
        horizon=horizon, n_channels=values.shape[1], mean=torch.from_numpy(mean.astype(np.float32)),
        std=torch.from_numpy(std.astype(np.float32)), borders=borders,
        extras={"columns": list(frame.columns), "dates": frame.index, "freq": info.freq},
    )


def _check_borders(info: DatasetInfo, borders: dict[str, tuple[int, int]], lookback: int, horizon: int) -> None:
    for part, (start, stop) in borders.items():
        if start < 0 or stop - start - lookback - horizon + 1 < 1:
            raise ValueError(
                f"dataset {info.name!r} with lookback={lookback}, horizon={horizon}: the {part} part (rows "
                f"[{start}, {stop}) of {info.rows}) holds no complete window; use a shorter lookback or horizon")
