"""Figures of the OCE chapter (:mod:`flatcast.experiments.oce`): each takes results, returns a matplotlib figure."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from flatcast.experiments import oce

__all__ = ["plot_theorem1", "plot_outlier_sweep", "plot_snr", "plot_bars", "plot_knobs", "plot_ce_vs_oce",
           "plot_forecasts", "plot_pit", "render_explorer", "LOSS_COLORS"]

LOSS_COLORS = {"MSE": "tab:blue", "Huber": "tab:green", "CE": "tab:orange", "OCE": "tab:red"}
MODEL_COLORS = {"dlinear": "tab:blue", "huber": "tab:green", "oce": "tab:red", "ce": "tab:orange",
                "quantile": "tab:purple", "oce_target": "tab:brown", "oce_std": "tab:pink"}


def plot_theorem1(th: Mapping[str, Any]) -> plt.Figure:
    """Left: measured ratio R_i against |residual| with the theorem's bounds (log-log). Right: each point's
    influence norm under MSE, CE and OCE against |residual|."""
    r = th["residual"].abs().numpy()
    order = np.argsort(r)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    ax.loglog(r, th["measured"].numpy(), "o", ms=3, color="k", label="measured R = ‖IF_CE‖ / ‖IF_MSE‖")
    ax.loglog(r[order], th["lower"].numpy()[order], "-", color="tab:green", lw=1, label="lower bound (mean P)")
    ax.loglog(r[order], th["upper"].numpy()[order], "-", color="tab:red", lw=1, label="upper bound (mean P, on 1⊥)")
    ax.axhline(1.0, color="grey", ls=":", lw=1)
    ax.set(xlabel="|residual y − xᵀθ| (standardised units)", ylabel="ratio R",
           title=f"Theorem 1 on a fitted CE classifier: {th['fraction_holding']:.0%} inside the bounds")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.loglog(r, th["if_mse"].numpy(), "o", ms=3, color=LOSS_COLORS["MSE"], label="MSE (Eq. 5)")
    ax.loglog(r, th["if_ce"].numpy(), "s", ms=3, color=LOSS_COLORS["CE"], label="CE (Eq. 6)")
    ax.loglog(r, th["if_oce"].numpy(), "^", ms=3, color=LOSS_COLORS["OCE"], label="OCE (autograd Hessian)")
    ax.set(xlabel="|residual| (standardised units)", ylabel="‖IF(z_i)‖₂ (parameter units)",
           title="influence of each training point")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_outlier_sweep(sweep: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for loss, group in sweep.groupby("loss"):
        ax.plot(group["shift"], group["mean |Δ prediction|"], "o-", ms=3, label=loss, color=LOSS_COLORS.get(loss))
    ax.set(xlabel="shift of one training target (units of y)", ylabel="mean |Δ fitted prediction| over x ∈ [−2, 2]",
           title="one outlier, refitted: how far each fit moves")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_snr(table: pd.DataFrame, title: str) -> plt.Figure:
    """Test MSE against input SNR for DLinear and OCE-TS (ours solid, paper dashed)."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    snr = [s for s in table.index if s != "clean"]
    x = np.array(snr, dtype=float)
    for label, color in ((oce.MODEL_LABELS["dlinear"], MODEL_COLORS["dlinear"]), (oce.MODEL_LABELS["oce"], MODEL_COLORS["oce"])):
        if label in table:
            ax.plot(x, table.loc[snr, label].to_numpy(float), "o-", color=color, label=f"{label} (ours)")
            if "clean" in table.index and np.isfinite(table.loc["clean", label]):
                ax.axhline(table.loc["clean", label], color=color, lw=0.8, ls=":")
    for col, color in (("paper DLinear", MODEL_COLORS["dlinear"]), ("paper OCE-TS", MODEL_COLORS["oce"])):
        if col in table and table[col].notna().any():
            ax.plot(x, table.loc[snr, col].to_numpy(float), "s--", color=color, alpha=0.6, label=col)
    ax.set(xlabel="input SNR (dB)", ylabel="test MSE (standardised)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_bars(frame: pd.DataFrame, column: str, by: str, title: str, ylabel: str = "test MSE (standardised)"
              ) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    labels = [str(v) for v in frame[by]]
    colors = [MODEL_COLORS.get(v, "grey") for v in frame.get("model", frame[by])]
    ax.bar(range(len(frame)), frame[column].to_numpy(float), color=colors)
    ax.set_xticks(range(len(frame)), labels, rotation=20, ha="right", fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    fig.tight_layout()
    return fig


KNOB_TITLES = {"bins": "bins K (σ = 0.01)", "sigma": "σ (K = 100)", "distribution": "target distribution",
               "lookback": "look-back L"}


def plot_knobs(summary: pd.DataFrame, title: str) -> plt.Figure:
    """OCE-TS's test MSE against each knob of :func:`flatcast.experiments.oce.knob_summary` (one panel per knob
    present, one line per dataset and horizon, values in the paper's grid order on a categorical axis)."""
    knobs = [k for k in oce.KNOB_GRIDS if k in set(summary["knob"])]
    if not knobs:
        raise ValueError("knob summary is empty: no bins, σ, distribution or look-back cells")
    fig, axes = plt.subplots(1, len(knobs), figsize=(3.6 * len(knobs), 3.4), squeeze=False)
    for ax, knob in zip(axes[0], knobs):
        sub = summary[summary.knob == knob]
        grid = list(oce.KNOB_GRIDS[knob][1])
        values = grid + [v for v in dict.fromkeys(sub["value"]) if v not in grid]
        present = [v for v in values if v in set(sub["value"])]
        position = {v: i for i, v in enumerate(present)}
        for (dataset, horizon), line in sub.groupby(["dataset", "H"]):
            line = line.assign(_x=[position[v] for v in line["value"]]).sort_values("_x")
            ax.plot(line["_x"], line["test MSE"], "o-", label=f"{dataset}, H={horizon}")
        ax.set_xticks(range(len(present)), [f"{v:g}" if isinstance(v, float) else str(v) for v in present], fontsize=8)
        ax.set(title=KNOB_TITLES[knob], xlabel=oce.KNOB_GRIDS[knob][0], ylabel="OCE-TS test MSE (standardised)")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_ce_vs_oce(pairs: pd.DataFrame, title: str) -> plt.Figure:
    """OCE's relative gain over the CE head, (CE − OCE) / CE, per (dataset, horizon) of
    :func:`flatcast.experiments.oce.ce_vs_oce`'s pairs, one panel per metric (test MSE, and test MAE where the
    records have it): one dot per seed, a bar at the mean over seeds. Above zero OCE is lower; the dotted lines mark
    the one-seed margin. A seed that two studies share with the same data and horizon (the calibration study's
    ETTh1 H = 96 pair is the ``ce_compare`` study's seed 0) is drawn once."""
    if pairs.empty:
        raise ValueError("no CE/OCE pairs to plot")
    pairs = oce.distinct_pairs(pairs)
    pairs = pairs.assign(label=[f"{d}\nH={h}" for d, h in zip(pairs["dataset"], pairs["horizon"])])
    labels = list(dict.fromkeys(pairs.sort_values(["dataset", "horizon"])["label"]))
    metrics = [(m, cols) for m, cols in oce.CE_COMPARE_METRICS.items()
               if m == "MSE" or (cols[0] in pairs and pairs[list(cols)].notna().all(axis=None))]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(5.0, 1.0 * len(labels) + 1.5), 3.2 * len(metrics)),
                             squeeze=False, sharex=True)
    for ax, (metric, (oce_column, ce_column)) in zip(axes[:, 0], metrics):
        gain = 100 * (pairs[ce_column] - pairs[oce_column]) / pairs[ce_column]
        for i, label in enumerate(labels):
            gains = gain[pairs["label"] == label].to_numpy(float)
            ax.bar(i, gains.mean(), color=MODEL_COLORS["oce"], alpha=0.35, width=0.6,
                   label="mean over seeds" if i == 0 else None)
            ax.plot(np.full(len(gains), i), gains, "o", color=MODEL_COLORS["oce"], ms=4,
                    label="one seed" if i == 0 else None)
        ax.axhline(0.0, color="black", lw=0.8)
        for sign in (1, -1):
            ax.axhline(sign * 100 * oce.ONE_SEED_MARGIN, color="grey", lw=0.8, ls=":",
                       label=f"±{oce.ONE_SEED_MARGIN:.0%} (one-seed margin)" if sign == 1 else None)
        ax.set(ylabel=f"(CE − OCE) / CE of test {metric} (%)", title=f"test {metric}")
        ax.legend(fontsize=7)
    axes[-1, 0].set_xticks(range(len(labels)), labels, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_forecasts(snapshots: Mapping[str, Mapping[str, Any]], title: str) -> plt.Figure:
    """Truth, DLinear and OCE-TS forecasts of the stored test windows, with OCE-TS's 5–95 % and 25–75 % bands."""
    base = snapshots["oce"]
    n = len(base["windows"])
    fig, axes = plt.subplots(1, n, figsize=(6.5 * n, 3.6), squeeze=False)
    for i, ax in enumerate(axes[0]):
        item = base["windows"][i]
        past = np.asarray(item["input"])
        truth = np.asarray(item["truth"])
        t_past = np.arange(-len(past), 0)
        t_future = np.arange(len(truth))
        ax.plot(t_past, past, color="grey", lw=0.8, label="input")
        ax.plot(t_future, truth, color="k", lw=0.9, label="truth")
        bands = item.get("bands", {})
        if bands:
            ax.fill_between(t_future, bands["0.05"], bands["0.95"], color=MODEL_COLORS["oce"], alpha=0.15, label="OCE-TS 5–95 %")
            ax.fill_between(t_future, bands["0.25"], bands["0.75"], color=MODEL_COLORS["oce"], alpha=0.3, label="OCE-TS 25–75 %")
        ax.plot(t_future, item["mean"], color=MODEL_COLORS["oce"], lw=1, label="OCE-TS mean (Eq. 18)")
        if "dlinear" in snapshots:
            ax.plot(t_future, snapshots["dlinear"]["windows"][i]["mean"], color=MODEL_COLORS["dlinear"], lw=1, label="DLinear (MSE)")
        ax.axvline(0, color="grey", lw=0.5)
        ax.set(xlabel="time step relative to the forecast origin", ylabel="value (standardised)",
               title=f"{title}, test window {item['window']}, channel {base['channel']}")
        if i == 0:
            ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def plot_pit(calibration: Mapping[str, Mapping[str, Any]]) -> plt.Figure:
    """PIT histograms (uniform = calibrated, dashed line) of each model's predictive distribution."""
    fig, axes = plt.subplots(1, len(calibration), figsize=(3.2 * len(calibration), 3), sharey=True)
    for ax, (label, metrics) in zip(np.atleast_1d(axes), calibration.items()):
        pit = np.asarray(metrics["pit"])
        ax.bar((np.arange(len(pit)) + 0.5) / len(pit), pit * len(pit), width=1 / len(pit), color="tab:grey",
               edgecolor="k", lw=0.4)
        ax.axhline(1.0, color="k", ls="--", lw=0.8)
        ax.set(title=label, xlabel="PIT = F(y)", xlim=(0, 1))
    np.atleast_1d(axes)[0].set_ylabel("density (1 = uniform)")
    fig.tight_layout()
    return fig


def render_explorer(position: float, sweep: pd.DataFrame) -> plt.Figure:
    """The explorer's picture for one precomputed position of the dragged target (``sweep`` from
    :func:`flatcast.experiments.oce.outlier_refit_sweep`): left, each loss's refitted function (the classifiers'
    expected value, Eq. 18) and the data; right, how far each fit moved against the position."""
    prob, index, grid = sweep.attrs["problem"], sweep.attrs["index"], sweep.attrs["grid"]
    key = min(sweep.attrs["curves"], key=lambda k: abs(k - position))
    curves = sweep.attrs["curves"][key]
    x, y = prob["x"].numpy(), prob["y"].numpy().copy()
    y[index] = key
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    ax.scatter(x, y, s=14, color="k", zorder=3, label="training points")
    ax.scatter([x[index]], [key], s=80, facecolor="none", edgecolor="tab:red", lw=2, zorder=4, label="dragged point")
    for name, pred in curves.items():
        label = {"mse": "MSE", "huber": "Huber", "ce": "CE", "oce": "OCE"}[name]
        ax.plot(grid, pred, color=LOSS_COLORS[label], lw=1.5, label=label)
    ax.set(xlabel="x", ylabel="y", ylim=(-3, 8), title=f"refitted with the red target at y = {key:.2f}")
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[1]
    for loss, group in sweep.groupby("loss"):
        ax.plot(group["position"], group["mean |Δ prediction|"], "-", color=LOSS_COLORS[loss], label=loss)
        here = group[np.isclose(group["position"], key)]
        ax.plot(here["position"], here["mean |Δ prediction|"], "o", color=LOSS_COLORS[loss])
    ax.axvline(key, color="grey", lw=0.6)
    ax.set(xlabel="position of the dragged target (y)", ylabel="mean |Δ fitted prediction| over x ∈ [−2, 2]",
           title="how far each fit moved")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
