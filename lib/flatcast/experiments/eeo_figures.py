"""Figures of the EEO chapter (every function returns a matplotlib Figure and draws only data it is given)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FixedLocator, StrMethodFormatter

from flatcast.eeo_lemmas import fitted_slope
from flatcast.testfunctions import TestFunction, Trajectory, loss_grid

__all__ = ["draw_trajectories", "trajectories_figure", "probe_curvature_figure", "fd_error_figure",
           "real_fd_figure", "robust_expansion_figure", "attention_descent_figure", "ablation_figure",
           "table4_figure", "loo_figure", "validation_curves_figure", "cost_figure", "sensitivity_figure",
           "explorer_render"]

_COLORS = ["#444444", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]


def draw_trajectories(ax, function: TestFunction, trajectories: Mapping[str, Trajectory], levels: int = 30,
                      show_kicks: bool = True) -> None:
    """Contours of ``function`` and each trajectory (thin: raw iterates; thick: EMA when on), with the kicks
    as arrows and probes that did not kick as small ticks."""
    grid_x, grid_y, values = loss_grid(function, 160)
    ax.contourf(grid_x, grid_y, values, levels=levels, cmap="Greys", alpha=0.45)
    ax.contour(grid_x, grid_y, values, levels=levels, colors="k", linewidths=0.3, alpha=0.4)
    for (label, trajectory), color in zip(trajectories.items(), _COLORS):
        path = trajectory.path
        ax.plot(path[:, 0], path[:, 1], "-", color=color, lw=1.0 if trajectory.ema_path is not None else 1.8,
                alpha=0.6 if trajectory.ema_path is not None else 0.95, label=label)
        if trajectory.ema_path is not None:
            ax.plot(trajectory.ema_path[:, 0], trajectory.ema_path[:, 1], "-", color=color, lw=2.6,
                    label=f"{label}: EMA weights")
        ax.plot(*trajectory.evaluated[-1], "o", color=color, ms=6, mec="white")
        if show_kicks:
            for probe in trajectory.kicks:
                ax.annotate("", xy=probe["where"] + probe["kick"], xytext=probe["where"],
                            arrowprops=dict(arrowstyle="->", color=color, lw=1.6))
    ax.plot(*function.start, "k*", ms=12, label="start")
    for minimum in function.minima:
        ax.plot(*minimum, "kx", ms=7)
    for saddle in function.saddles:
        ax.plot(*saddle, "k+", ms=9)
    ax.set_xlim(function.xlim)
    ax.set_ylim(function.ylim)
    ax.set_xlabel("w₁")
    ax.set_ylabel("w₂")


def trajectories_figure(function: TestFunction, trajectories: Mapping[str, Trajectory], title: str = ""):
    """Left: paths on the contours (arrows: escape kicks; × minima, + saddle, ★ start); right: f along the
    evaluated weights against the step."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.25, 1]})
    draw_trajectories(left, function, trajectories)
    left.set_title(title or f"{function.label}: {function.formula}", fontsize=10)
    for (label, trajectory), color in zip(trajectories.items(), _COLORS):
        right.plot(trajectory.loss, color=color, label=label)
        for probe in trajectory.kicks:
            right.axvline(probe["step"], color=color, ls=":", lw=1)
    right.set_xlabel("step")
    right.set_ylabel("f at the evaluated weights (EMA when on)")
    right.set_title("loss along the run (dotted: escape kicks)", fontsize=10)
    right.legend(fontsize=8)
    left.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def probe_curvature_figure(trajectories: Mapping[str, Trajectory]):
    """Every escape probe: the FD Rayleigh quotient EEO read (Eq. 10) against the exact vᵀHv along the same v."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for (label, trajectory), color in zip(trajectories.items(), _COLORS[2:]):
        if not trajectory.probes:
            continue
        fd = np.array([p["fd_curvature"] for p in trajectory.probes])
        exact = np.array([p["exact_curvature"] for p in trajectory.probes])
        steps = [p["step"] for p in trajectory.probes]
        kicked = np.array([p["kicked"] for p in trajectory.probes])
        left.scatter(exact, fd, color=color, s=18, label=label)
        right.plot(steps, fd, "o-", color=color, ms=3, label=f"{label}: FD read")
        right.plot(np.array(steps)[kicked], fd[kicked], "v", color=color, ms=9, mfc="none")
        right.plot(steps, exact, "--", color=color, lw=1)
    lims = left.get_xlim()
    left.plot(lims, lims, "k:", lw=1, label="FD = exact")
    left.axhline(0, color="grey", lw=0.5)
    left.axvline(0, color="grey", lw=0.5)
    left.set_xlabel("exact vᵀHv / vᵀv (autograd Hessian)")
    left.set_ylabel("FD estimate read by EEO (α = 5e-3)")
    left.set_title("curvature read at each probe", fontsize=10)
    left.legend(fontsize=7)
    right.axhline(0, color="grey", lw=0.5)
    right.set_xlabel("step of the probe")
    right.set_ylabel("curvature λ along the kept direction")
    right.set_title("probes along the run (▽: a kick was taken; dashed: exact)", fontsize=10)
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fd_error_figure(curves: pd.DataFrame):
    """‖(Ĥ − H)v‖ against α for each case and dtype, with the printed bound (ρ_H/6)α², the fourth-derivative
    bound (M₄/6)α² and the Hessian-Lipschitz bound (ρ_H/2)α; the fitted slope (1e-4 ≤ α ≤ 1e-2, float64)
    is in the title of each panel."""
    cases = list(dict.fromkeys(curves["case"]))
    fig, axes = plt.subplots(1, len(cases), figsize=(4.6 * len(cases), 4), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, case in zip(axes, cases):
        data = curves[curves["case"] == case]
        for dtype, marker in (("float64", "o"), ("float32", "s")):
            part = data[data["dtype"] == dtype]
            if not part.empty:
                ax.loglog(part["alpha"], part["error"].clip(lower=1e-18), marker + "-", ms=3, label=f"error ({dtype})")
        part = data[data["dtype"] == data["dtype"].iloc[0]]
        for column, style, label in (("bound_printed", "r--", "printed (ρ_H/6)α²"),
                                     ("bound_fourth_derivative", "g:", "(M₄/6)α²"),
                                     ("bound_hessian_lipschitz", "b-.", "(ρ_H/2)α")):
            finite = part[np.isfinite(part[column])]
            if not finite.empty:
                ax.loglog(finite["alpha"], finite[column], style, lw=1.2, label=label)
        fit = data[(data["dtype"] == "float64") & (data["alpha"] >= 1e-4) & (data["alpha"] <= 1e-2)]
        slope = fitted_slope(fit["alpha"], fit["error"]) if len(fit) > 1 else float("nan")
        ax.set_title(f"{case}: slope {slope:.2f}", fontsize=10)
        ax.set_xlabel("finite-difference step α")
        ax.axvline(5e-3, color="grey", lw=0.6, ls=":")
    axes[0].set_ylabel("‖(Ĥ − H)v‖, ‖v‖ = 1")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def real_fd_figure(frame: pd.DataFrame, title: str = ""):
    """|vᵀĤv − vᵀHv| of EEO's float32 FD estimate on the channel transformer against α."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.loglog(frame["alpha"], frame["abs_error"].clip(lower=1e-12), "o-", label="|FD − exact| (float32 FD)")
    ax.axvline(5e-3, color="grey", ls=":", label="EEO's default α = 5e-3")
    exact = frame["exact_curvature"].iloc[0]
    ax.axhline(abs(exact), color="k", lw=0.6, ls="--", label=f"|exact vᵀHv| = {abs(exact):.3g}")
    ax.set_xlabel("finite-difference step α")
    ax.set_ylabel("absolute error of the curvature")
    ax.set_title(title or "FD curvature on the channel transformer (random unit v)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def robust_expansion_figure(plain: pd.DataFrame, scaled: pd.DataFrame):
    """Lemma 3.2: |U_ρ − L − ρ‖g‖| and ‖∇U_ρ − g(w + e_w)‖ against ρ, with fitted slopes."""
    fig, ax = plt.subplots(figsize=(6.2, 4))
    for data, column, style, label in ((plain, "value_residual", "o-", "|U_ρ − L − ρ‖g‖|"),
                                       (plain, "gradient_residual", "s-", "‖∇U_ρ − g(w+e_w)‖, s = 1"),
                                       (scaled, "gradient_residual", "^-", "‖∇U_ρ − g(w+e_w)‖, s = |w|+0.01")):
        slope = fitted_slope(data["rho"], data[column])
        ax.loglog(data["rho"], data[column], style, label=f"{label} (slope {slope:.2f})")
    ax.set_xlabel("ρ")
    ax.set_ylabel("residual")
    ax.set_title("Lemma 3.2's expansions (claimed O(ρ²) and O(ρ))", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def attention_descent_figure(runs: Mapping[str, pd.DataFrame]):
    """Lemma 3.1: L_att and the ratio the proof bounds below by c₁ > 0, per step."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for (label, frame), color in zip(runs.items(), _COLORS[1:]):
        left.plot(frame["step"], frame["loss"], color=color, label=label)
        right.semilogy(frame["step"], frame["c1"].clip(lower=1e-8), color=color, label=label)
    left.set_xlabel("step")
    left.set_ylabel("L_att = ½‖A − A*‖²_F")
    left.set_title("attention loss (A* unreachable)", fontsize=10)
    left.legend(fontsize=8)
    right.set_xlabel("step")
    right.set_ylabel("⟨∇θL, ∇θL(θ+e)⟩ / ‖∇_A L‖²_F")
    right.set_title("the ratio Eq. 16 bounds below by a constant c₁ > 0", fontsize=10)
    fig.tight_layout()
    return fig


def ablation_figure(tables: Mapping[str, pd.DataFrame], variants: Sequence[str], reference: Mapping[str, float]
                    | None = None, title: str = ""):
    """Test MSE per variant: one panel per source (e.g. quick / paper), seeds as dots, mean ± std as bars;
    ``reference`` (variant → value) is drawn as red ticks (EEO-TFV Table 4)."""
    fig, axes = plt.subplots(1, len(tables), figsize=(5.5 * len(tables), 4), squeeze=False)
    for ax, (source, runs) in zip(axes[0], tables.items()):
        if runs.empty:
            ax.text(0.5, 0.5, "no runs yet", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(source, fontsize=10)
            continue
        for i, variant in enumerate(variants):
            values = runs.loc[runs["variant"] == variant, "test_mse"].to_numpy()
            if values.size:
                ax.plot(np.full(values.size, i) + np.linspace(-0.12, 0.12, values.size), values, "o",
                        color=_COLORS[i % len(_COLORS)], alpha=0.7, ms=4)
                ax.errorbar(i + 0.25, values.mean(), yerr=values.std(ddof=1) if values.size > 1 else 0,
                            fmt="D", color="k", ms=4, capsize=3)
            if reference and variant in reference:
                ax.plot([i - 0.3, i + 0.3], [reference[variant]] * 2, "r-", lw=2)
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels(variants, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("test MSE (standardised)")
        ax.set_title(source, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def _legend_below(fig, axes, title: str, bottom: float):
    """One legend for all ``axes`` (each label once) in a strip of height ``bottom`` under them, and the title."""
    handles = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def table4_figure(comparison: pd.DataFrame, n_horizons: int = 4, title: str = ""):
    """EEO-TFV Table 4 against our runs, one panel per dataset: per Table 4 row, our horizon-averaged test MSE
    (◆, bars: seed std) where every one of the ``n_horizons`` horizons has runs, and the paper's value (red tick);
    a row with fewer horizons run is labelled with its count and not drawn. ``comparison`` is
    :func:`flatcast.experiments.eeo.table4_comparison`."""
    datasets = list(dict.fromkeys(comparison.index.get_level_values("dataset")))
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.6 * len(datasets), 4.2), squeeze=False, sharey=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = comparison.loc[dataset]
        labels = []
        for i, (label, row) in enumerate(rows.iterrows()):
            complete = row["horizons run"] == n_horizons
            if complete:
                ax.errorbar(i, row["ours"], yerr=0 if np.isnan(row["seed std"]) else row["seed std"], fmt="D",
                            color="k", ms=5, capsize=3, label="ours (mean ± seed std)" if not labels else None)
            if not np.isnan(row["paper"]):
                ax.plot([i - 0.3, i + 0.3], [row["paper"]] * 2, "r-", lw=2,
                        label="EEO-TFV Table 4" if i == 0 else None)
            labels.append(label if complete else f"{label} ({int(row['horizons run'])}/{n_horizons} H)")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
        ax.set_title(dataset, fontsize=10)
        ax.set_ylabel("test MSE, mean over horizons (standardised)", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    return _legend_below(fig, axes[0], title, bottom=0.05)


def loo_figure(tests: pd.DataFrame, title: str = "", symlog_threshold: float = 10.0):
    """Leave-one-out, one panel per removed part: per cell (dataset, horizon), the test MSE of full EEO minus
    that part relative to full EEO's (%), mean over the paired seeds (◆) ± the seed std of the paired difference;
    above zero, removing the part hurts. The y axis is linear within ±``symlog_threshold`` % and logarithmic
    beyond, so one failed run does not flatten every other cell. ``tests`` is
    :func:`flatcast.experiments.eeo.paired_tests`."""
    parts = list(dict.fromkeys(tests["variant"]))
    datasets = list(dict.fromkeys(tests["dataset"]))
    fig, axes = plt.subplots(1, len(parts), figsize=(3.6 * len(parts), 3.9), squeeze=False, sharey=True)
    for ax, part in zip(axes[0], parts):
        cells = tests[tests["variant"] == part].reset_index(drop=True)
        scale = 100 / cells["reference_mse"]
        for j, dataset in enumerate(datasets):
            mine = cells["dataset"] == dataset
            ax.errorbar(cells.index[mine], (cells["mean_diff"] * scale)[mine], yerr=(cells["std_diff"] * scale)[mine],
                        fmt="D", ms=4, capsize=2, color=_COLORS[(j + 1) % len(_COLORS)], label=dataset)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_yscale("symlog", linthresh=symlog_threshold)
        ax.yaxis.set_major_locator(FixedLocator([-100, -10, -5, 0, 5, 10, 100]))
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        ax.set_xticks(cells.index)
        ax.set_xticklabels(cells["horizon"].astype(str), rotation=90, fontsize=7)
        ax.set_xlabel("horizon H (cells grouped by dataset)", fontsize=8)
        ax.set_title(f"{part}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(f"Δ test MSE vs full EEO (% of full EEO's;\nlog beyond ±{symlog_threshold:g} %); > 0: "
                          "removing hurts", fontsize=8)
    return _legend_below(fig, axes[0], title, bottom=0.06)


def validation_curves_figure(runs: pd.DataFrame, variants: Sequence[str], factor: float = 2.0, title: str = ""):
    """Validation curves of one cell, one panel per variant: per seed, the validation MSE at each epoch over the
    untrained model's (epoch 0), log scale; the dashed line is the blow-up threshold of
    :func:`flatcast.experiments.eeo.validation_blowups`, ○ the epoch early stopping restored."""
    fig, axes = plt.subplots(1, len(variants), figsize=(3.5 * len(variants), 3.6), squeeze=False, sharey=True)
    for ax, variant in zip(axes[0], variants):
        mine = runs[runs["variant"] == variant].sort_values("seed")
        for i, (_, run) in enumerate(mine.iterrows()):
            curve = np.asarray(run["val_curve"], dtype=float)
            ratio = curve / curve[0]
            color = _COLORS[(i + 1) % len(_COLORS)]
            ax.plot(np.arange(curve.size), ratio, "-", color=color, lw=1.2, label=f"seed {run['seed']}")
            best = int(run["best_epoch"])
            ax.plot(best, ratio[best], "o", mfc="none", color=color, ms=7)
        ax.axhline(factor, color="k", ls="--", lw=0.8, label=f"blow-up threshold ({factor:g}×)")
        ax.axhline(1, color="0.6", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("epoch (0 = untrained)", fontsize=8)
        ax.set_title(variant, fontsize=10)
    axes[0][0].set_ylabel("validation MSE / untrained model's", fontsize=8)
    return _legend_below(fig, axes[0], title, bottom=0.07)

def cost_figure(costs: pd.DataFrame):
    """Per variant: gradient evaluations per step, wall time per epoch, optimizer-state memory (in units of
    the model's parameter memory)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    labels = list(costs.index)
    for ax, column, ylabel in zip(axes, ("grad_evals_per_step", "s_per_epoch", "state_over_params"),
                                  ("gradient evaluations per step", "wall time per epoch (s, 1 thread, shared CPU)",
                                   "optimizer state / parameter memory")):
        ax.bar(range(len(labels)), costs[column], color=[_COLORS[i % len(_COLORS)] for i in range(len(labels))])
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=9)
    fig.tight_layout()
    return fig


#: axis labels of the sensitivity grid's settings (flatcast.experiments.eeo.sensitivity_grid)
SETTING_LABELS = {"rho": "ρ (SAM radius; kick 2ρ)", "temperature": "T (SGLD temperature)",
                  "ema_decay": "β (EMA decay)", "fd_alpha": "α (finite-difference step)",
                  "probe_every": "probe period (steps)"}


def sensitivity_figure(frame: pd.DataFrame, title: str = "", defaults: dict[str, float] | None = None,
                       references: dict[str, float] | None = None):
    """Test MSE of full EEO with one setting moved at a time (one panel per setting; mean ± seed std).

    ``defaults`` (setting → value) draws each setting's default value as a filled square; ``references``
    (label → test MSE) draws horizontal lines for other optimizers on the same cell and seeds."""
    settings = list(dict.fromkeys(frame["setting"]))
    fig, axes = plt.subplots(1, len(settings), figsize=(3.2 * len(settings), 3.5), sharey=True)
    axes = np.atleast_1d(axes)
    styles = ["--", ":", "-."]
    for ax, setting in zip(axes, settings):
        part = frame[frame["setting"] == setting].groupby("value")["test_mse"].agg(["mean", "std", "count"])
        x = part.index.to_numpy(dtype=float)
        positions = np.arange(len(x))
        ax.errorbar(positions, part["mean"], yerr=part["std"].fillna(0), fmt="o-", capsize=3,
                    label=f"EEO full (mean ± std, {int(part['count'].max())} seed(s))")
        if defaults is not None and setting in defaults:
            at = [i for i, v in enumerate(x) if v == defaults[setting]]
            ax.plot(at, part["mean"].to_numpy()[at], "s", color="C0", markersize=9, label="default")
        for (label, value), style in zip((references or {}).items(), styles):
            ax.axhline(value, color="grey", linestyle=style, linewidth=1, label=label)
        ax.set_xticks(positions)
        ax.set_xticklabels([f"{v:g}" for v in x], fontsize=8)
        ax.set_xlabel(SETTING_LABELS.get(setting, setting))
    axes[0].set_ylabel("test MSE (standardised)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def explorer_render(function: TestFunction, trajectory: Trajectory, reference: Trajectory, label: str):
    """One explorer picture: the chosen configuration against plain Adam on the function's contours."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    draw_trajectories(ax, function, {"Adam": reference, label: trajectory})
    final = trajectory.evaluated[-1]
    ax.set_title(f"{label}\nends at ({final[0]:.2f}, {final[1]:.2f}), f = {trajectory.loss[-1]:.3f}, "
                 f"{len(trajectory.kicks)} kick(s), {trajectory.grad_evals} gradient evaluations", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
