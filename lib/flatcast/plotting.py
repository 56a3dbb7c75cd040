"""Shared figure helpers for the book's chapters (one look across chapters).

Every helper draws on a given matplotlib ``Axes`` (or makes a figure) and returns what it drew on, so a chapter
can adjust labels afterwards. Helpers never call ``plt.show()``: the notebook's inline backend shows figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["SPLIT_COLORS", "plot_series_with_splits", "plot_band"]

SPLIT_COLORS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}


def plot_series_with_splits(frame: pd.DataFrame, borders: Mapping[str, tuple[int, int]], *,
                            columns: Sequence[str] | None = None, ax: plt.Axes | None = None,
                            standardize: Mapping[str, np.ndarray] | None = None, title: str | None = None,
                            max_points: int = 4000, lookback: int | None = None) -> plt.Axes:
    """Plot channels of ``frame`` (DatetimeIndex) over time, shading the train / val / test rows.

    ``borders`` maps ``"train"/"val"/"test"`` to ``(start, stop)`` rows (as ``Splits.borders``); each part is
    shaded from the row where its *targets* start (``start + lookback`` for val/test when ``lookback`` is given,
    since those parts begin ``lookback`` rows early) and a vertical line marks each border. ``standardize``
    (``{"mean": ..., "std": ...}`` per column) plots standardized values, otherwise raw values; the y label
    says which. Long series are thinned to about ``max_points`` points per line for speed.
    """
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise TypeError("frame must have a DatetimeIndex (as returned by flatcast.data.load_dataset)")
    missing = {"train", "val", "test"} - set(borders)
    if missing:
        raise ValueError(f"borders lacks {sorted(missing)}: expected train, val and test (row) borders")
    columns = list(frame.columns if columns is None else columns)
    unknown = [c for c in columns if c not in frame.columns]
    if unknown:
        raise KeyError(f"columns {unknown} are not in the frame (it has {list(frame.columns)})")
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3))
    step = max(1, len(frame) // max_points)
    data = frame[columns]
    if standardize is not None:
        idx = [list(frame.columns).index(c) for c in columns]
        data = (data - np.asarray(standardize["mean"])[idx]) / np.asarray(standardize["std"])[idx]
    thin = data.iloc[::step]
    lw = 0.8 if len(columns) <= 3 else 0.5
    for col in columns:
        ax.plot(thin.index, thin[col].to_numpy(), lw=lw, label=str(col), alpha=0.9 if len(columns) <= 3 else 0.6)
    dates = frame.index
    for part in ("train", "val", "test"):
        start, stop = borders[part]
        first = start + (lookback or 0) if part != "train" else start
        first, last = max(0, min(first, len(dates) - 1)), max(0, min(stop, len(dates)) - 1)
        ax.axvspan(dates[first], dates[last], color=SPLIT_COLORS[part], alpha=0.08, lw=0)
        ax.axvline(dates[last], color=SPLIT_COLORS[part], lw=1.2, ls="--")
        ax.text(dates[first], 1.0, f" {part}", transform=ax.get_xaxis_transform(), va="top", ha="left",
                fontsize=8, color=SPLIT_COLORS[part])
    ax.set_ylabel("standardized value" if standardize is not None else "raw value")
    if title:
        ax.set_title(title, fontsize=10)
    if len(columns) <= 8:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    ax.margins(x=0.01)
    return ax


def plot_band(ax: plt.Axes, x, values, *, color=None, label: str | None = None, alpha: float = 0.2,
              lw: float = 1.6) -> plt.Axes:
    """Mean curve of ``values`` (``(n_seeds, n_points)``) with a min–max band over the seeds.

    One seed draws the curve alone. This is how every chapter shows seed-to-seed variation.
    """
    values = np.atleast_2d(np.asarray(values, dtype=float))
    x = np.asarray(x)
    if values.shape[1] != len(x):
        raise ValueError(f"values must be (n_seeds, {len(x)}) to match x, got {values.shape}")
    mean = values.mean(axis=0)
    (line,) = ax.plot(x, mean, color=color, lw=lw, label=label)
    if values.shape[0] > 1:
        ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=alpha, lw=0)
    return ax
