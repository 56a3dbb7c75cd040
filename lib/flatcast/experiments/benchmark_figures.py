"""Figures of the benchmark chapter: ours vs paper per dataset (seed dots), the (ours − paper) heatmap, and the
critical-difference diagram of OCE-TS Fig. 6 recomputed with Eq. (88)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["plot_ours_vs_paper", "plot_diff_heatmap", "plot_cd_diagram", "plot_table_dataset"]

_COLORS = {"SAMformer": "C0", "TSMixer+SAM": "C1", "Transformer": "C3", "TSMixer": "C2", "EEO-TFV": "C4",
           "DLinear": "C5", "OCE-TS": "C6"}


def plot_ours_vs_paper(seeds: pd.DataFrame, comparison: pd.DataFrame, dataset: str, metric: str = "mse",
                       ax: plt.Axes | None = None, title: str | None = None) -> plt.Figure:
    """Per horizon and model: our seeds (dots), their mean (bar tick) and the paper's value (open diamond)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 3.4))
    else:
        fig = ax.figure
    s = seeds[seeds.dataset == dataset]
    c = comparison[comparison.dataset == dataset]
    horizons = sorted(c.horizon.unique())
    models = [m for m in _COLORS if m in set(c.model)]
    width = 0.8 / max(len(models), 1)
    for j, m in enumerate(models):
        color = _COLORS[m]
        for i, h in enumerate(horizons):
            x = i + (j - (len(models) - 1) / 2) * width
            vals = s[(s.model == m) & (s.horizon == h)][f"test_{metric}"].to_numpy()
            row = c[(c.model == m) & (c.horizon == h)]
            if len(vals):
                ax.scatter(np.full(len(vals), x), vals, s=12, color=color, alpha=0.7,
                           label=f"{m} (ours, seeds)" if i == 0 else None)
                ax.hlines(vals.mean(), x - width * 0.4, x + width * 0.4, color=color, lw=2)
            if len(row) and pd.notna(row[f"paper_{metric}"].iloc[0]):
                ax.scatter([x], [row[f"paper_{metric}"].iloc[0]], marker="D", facecolors="none",
                           edgecolors=color, s=40, label=f"{m} (paper)" if i == 0 else None)
    ax.set_xticks(range(len(horizons)), [f"H={h}" for h in horizons])
    ax.set_xlabel("prediction horizon")
    ax.set_ylabel(f"test {metric.upper()} (standardized scale)")
    ax.set_title(title or f"{dataset}: our seeds (dots, mean = bar) vs the paper (◇)")
    ax.legend(fontsize=7, ncol=2, frameon=False)
    ax.grid(alpha=0.3)
    return fig


def plot_diff_heatmap(comparison: pd.DataFrame, model: str, metric: str = "mse",
                      ax: plt.Axes | None = None) -> plt.Figure:
    """Heatmap of (ours − paper) of ``model`` over datasets × horizons (blank = cell not finished)."""
    c = comparison[comparison.model == model]
    table = c.pivot_table(index="dataset", columns="horizon", values=f"{metric}_diff")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 0.5 + 0.45 * max(len(table), 1)))
    else:
        fig = ax.figure
    if table.empty:
        ax.text(0.5, 0.5, f"no finished {model} cell", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    lim = float(np.nanmax(np.abs(table.to_numpy()))) or 1e-3
    im = ax.imshow(table.to_numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(table.shape[1]), [f"H={h}" for h in table.columns])
    ax.set_yticks(range(table.shape[0]), table.index)
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            v = table.iat[i, j]
            if pd.notna(v):
                ax.text(j, i, f"{v:+.3f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label=f"ours − paper, test {metric.upper()}")
    ax.set_title(f"{model}: ours − paper (red: we are worse)")
    ax.set_xlabel("prediction horizon")
    return fig


def plot_cd_diagram(ranks: pd.Series, cd: float, title: str = "", ax: plt.Axes | None = None,
                    cd_alt: float | None = None) -> plt.Figure:
    """Critical-difference diagram (Demšar 2006 layout): average ranks on an axis, the CD as a bar, and thick
    lines joining groups whose rank differences are all below the CD (not significantly different)."""
    ranks = ranks.sort_values()
    k = len(ranks)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 2.6))
    else:
        fig = ax.figure
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-1.8, 1.4)
    ax.hlines(0, 1, k, color="k", lw=1)
    for r in range(1, k + 1):
        ax.vlines(r, -0.05, 0.05, color="k")
        ax.text(r, 0.12, str(r), ha="center", fontsize=8)
    for i, (name, r) in enumerate(ranks.items()):
        y = -0.35 - 0.22 * (i % 4)
        ax.plot([r, r], [0, y], color="C0", lw=0.8)
        ax.text(r, y - 0.05, f"{name} ({r:.2f})", ha="center", va="top", fontsize=8)
    # cliques: maximal runs of models whose ranks span less than the CD
    vals = ranks.to_numpy()
    cliques = []
    for i in range(k):
        j = i
        while j + 1 < k and vals[j + 1] - vals[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in cliques):
            cliques.append((i, j))
    for n, (i, j) in enumerate(cliques):
        y = 0.45 + 0.15 * n
        ax.hlines(y, vals[i] - 0.03, vals[j] + 0.03, color="k", lw=3)
    ax.hlines(1.2, 1, 1 + cd, color="C3", lw=2)
    ax.text(1 + cd / 2, 1.27, f"CD = {cd:.2f}", ha="center", fontsize=8, color="C3")
    if cd_alt is not None:
        ax.hlines(1.0, 1, 1 + cd_alt, color="C1", lw=2)
        ax.text(1 + cd_alt + 0.05, 0.97, f"Demšar CD = {cd_alt:.2f}", ha="left", fontsize=8, color="C1")
    ax.set_axis_off()
    ax.set_title(title or "critical difference diagram (average rank, 1 = best)")
    return fig


def plot_table_dataset(frame: pd.DataFrame, dataset: str, title: str = "") -> plt.Figure:
    """MSE and MAE side by side for one dataset of a :func:`~flatcast.experiments.benchmark.paper_frame`:
    the paper's value (◇) of each model per horizon, and our mean ± std over seeds (●, bar) where it ran."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    f = frame[frame.dataset == dataset]
    if f.empty:
        for ax in axes:
            ax.text(0.5, 0.5, f"{dataset} is not in this table", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        if title:
            fig.suptitle(title)
        return fig
    horizons = sorted(f.horizon.unique())
    models = [m for m in _COLORS if m in set(f.model)]
    width = 0.8 / max(len(models), 1)
    for ax, metric in zip(axes, ("mse", "mae")):
        for j, m in enumerate(models):
            for i, h in enumerate(horizons):
                x = i + (j - (len(models) - 1) / 2) * width
                row = f[(f.model == m) & (f.horizon == h)]
                if row.empty:
                    continue
                p = row[f"paper_{metric}"].iloc[0]
                if pd.notna(p):
                    ax.scatter([x], [p], marker="D", facecolors="none", edgecolors=_COLORS[m], s=36,
                               label=f"{m} (paper)" if i == 0 else None)
                if f"ours_{metric}" in row and pd.notna(row[f"ours_{metric}"].iloc[0]):
                    ax.errorbar([x], [row[f"ours_{metric}"].iloc[0]], yerr=[row[f"ours_{metric}_std"].iloc[0]],
                                fmt="o", color=_COLORS[m], ms=4, label=f"{m} (ours)" if i == 0 else None)
        ax.set_xticks(range(len(horizons)), [f"H={h}" for h in horizons])
        ax.set_xlabel("prediction horizon")
        ax.set_ylabel(f"test {metric.upper()}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle(title or f"{dataset}: paper (◇) and ours (● mean ± std over seeds, where finished)", fontsize=10)
    fig.tight_layout()
    return fig
