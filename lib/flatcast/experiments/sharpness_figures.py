"""Figures of the sharpness chapter (SAMformer Figs. 5, 8, 11, 14; Li et al. 2018 slices; PyHessian spectra).

Every function takes a :class:`flatcast.experiments.sharpness.SharpnessStudy` (or one of its landscape records),
draws a complete figure with titles, axis labels and legends, and returns it. Seeds are shown as points or as
min–max bands, never hidden in a mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from flatcast.plotting import plot_band

from .sharpness import FLATNESS_MEASURES, SharpnessStudy, _geomean, flatness_correlations, optimizer_label
from .sharpness import recipe_label as _label

__all__ = ["RECIPE_COLORS", "DATASET_LABELS", "plot_lambda_max", "plot_seed_spread", "plot_benchmark_seed_spread", "plot_rho_sensitivity",
           "plot_sigma_reparam", "plot_optimizers", "plot_interpolation", "plot_slice_1d", "plot_landscape_slices", "plot_landscape_set", "plot_contours", "plot_spectrum",
           "plot_flatness_vs_mse", "render_landscape", "landscape_choices", "SLICE_TYPES"]

RECIPE_COLORS = {"transformer": "tab:red", "samformer": "tab:blue", "sigma_reparam": "tab:orange",
                 "samformer_sigma_reparam": "tab:purple", "transformer_eeo": "tab:green"}
DATASET_LABELS = {"ETTh1": "ETTh1", "exchange_rate": "Exchange"}
SLICE_TYPES = {"interpolation": "1-D linear interpolation", "random_1d": "1-D random (filter-normalised)",
               "eigen_1d": "1-D top Hessian eigenvector", "random_2d": "2-D random plane (filter-normalised)"}


def _dataset(name: str) -> str:
    return DATASET_LABELS.get(name, name)


def _panels(n: int, width: float = 5.0, height: float = 3.6, **kwargs):
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False, **kwargs)
    return fig, list(axes[0])


def _profile_note(study: SharpnessStudy) -> str:
    return f"{study.config.profile} profile: {study.config.label}"


# --------------------------------------------------------------------------------------------- per-run numbers
def plot_lambda_max(study: SharpnessStudy, measure: str = "lambda_max") -> plt.Figure:
    """λmax (or another curvature column) of each recipe at its own ρ, per dataset: seeds as points, the
    geometric mean as a bar, log scale (SAMformer Fig. 5a)."""
    datasets = study.config.datasets
    fig, axes = _panels(len(datasets), width=5.5)
    for ax, dataset in zip(axes, datasets):
        for i, name in enumerate(study.config.recipes):
            runs = study.runs_of(name, dataset)
            if runs.empty:
                continue
            values = runs[measure].to_numpy(dtype=float)
            ax.bar(i, _geomean(values), color=RECIPE_COLORS.get(name), alpha=0.35, width=0.7)
            ax.scatter(np.full(values.size, i) + np.linspace(-0.15, 0.15, values.size), values, s=18,
                       color=RECIPE_COLORS.get(name), zorder=3)
        ax.set_yscale("log")
        ax.set_xticks(range(len(study.config.recipes)),
                      [_label(n).replace(" + ", "\n+ ") for n in study.config.recipes], fontsize=7)
        ax.set_ylabel(f"{FLATNESS_MEASURES.get(measure, measure)} of the training loss (log scale)")
        ax.set_title(f"{_dataset(dataset)}, H={study.config.horizon}", fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both")
    fig.suptitle(f"Sharpness after training (bars: geometric mean; points: seeds)\n{_profile_note(study)}",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_seed_spread(study: SharpnessStudy, recipes: Sequence[str] = ("transformer", "samformer")) -> plt.Figure:
    """Test MSE of every seed, Transformer vs SAMformer, per dataset (SAMformer Fig. 5b, App. B.4)."""
    datasets = study.config.datasets
    fig, axes = _panels(len(datasets), width=4.0)
    for ax, dataset in zip(axes, datasets):
        for i, name in enumerate(recipes):
            runs = study.runs_of(name, dataset)
            if runs.empty:
                continue
            values = runs["test_mse"].to_numpy(dtype=float)
            ax.scatter(np.full(values.size, i), values, color=RECIPE_COLORS.get(name), s=25, zorder=3)
            std = values.std(ddof=1) if values.size > 1 else 0.0
            ax.errorbar(i + 0.18, values.mean(), yerr=std, fmt="_", color="black", capsize=4)
            ax.annotate(f"std {std:.4f}", (i + 0.22, values.mean()), fontsize=7, va="center")
        ax.set_xticks(range(len(recipes)), [_label(n) for n in recipes])
        ax.set_xlim(-0.5, len(recipes) - 0.2)
        ax.set_ylabel("test MSE (standardised scale)")
        ax.set_title(f"{_dataset(dataset)}, H={study.config.horizon}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Test MSE over seeds (points: seeds; bar: mean ± std)\n{_profile_note(study)}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_benchmark_seed_spread(spread, recipes: Sequence[str] = ("transformer", "samformer")) -> plt.Figure:
    """Seed spread at the paper's size from the benchmark grid (SAMformer Fig. 5b / App. B.4 on every dataset and
    horizon run): left, every seed's test MSE divided by SAMformer's mean for the same (dataset, horizon), so that
    datasets of different scales share one axis; right, the ratio of the two models' std over seeds (log scale).
    ``spread``: :func:`flatcast.experiments.sharpness.benchmark_seed_spread`."""
    # one panel above the other: up to 24 (dataset, horizon) labels need the full width
    fig, (left, right) = plt.subplots(2, 1, figsize=(12, 7.2), sharex=True)
    if spread is None or len(spread) == 0:
        for ax in (left, right):
            ax.text(0.5, 0.5, "no finished benchmark cells", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        return fig
    labels = [f"{_dataset(row.dataset)}\nH={row.horizon}" for row in spread.itertuples()]
    x = np.arange(len(spread))
    reference = spread[f"{recipes[1]}_mean"].to_numpy(dtype=float)
    offsets = np.linspace(-0.18, 0.18, len(recipes))
    for offset, name in zip(offsets, recipes):
        for i, (seeds, ref) in enumerate(zip(spread[f"{name}_seeds"], reference)):
            values = np.asarray(seeds, dtype=float) / ref
            left.scatter(np.full(values.size, x[i] + offset), values, s=14, color=RECIPE_COLORS.get(name),
                         label=_label(name) if i == 0 else None, zorder=3)
    left.axhline(1.0, color="grey", lw=0.8, ls=":")
    left.tick_params(axis="x", labelbottom=True)
    left.set_xticks(x, labels, fontsize=7)
    left.set_ylabel("test MSE / SAMformer's mean")
    left.set_title("every seed's test MSE, relative to SAMformer's mean", fontsize=10)
    left.legend(fontsize=8)
    left.grid(axis="y", alpha=0.3)
    ratio = spread["std_ratio"].to_numpy(dtype=float)
    right.bar(x, ratio, color=[RECIPE_COLORS.get(recipes[0]) if r > 1 else "lightgrey" for r in ratio])
    right.axhline(1.0, color="black", lw=0.8)
    right.axhline(2.0, color="grey", lw=0.8, ls="--", label="2× (the chapter's rule)")
    right.set_yscale("log")
    right.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    right.yaxis.set_minor_formatter(NullFormatter())
    right.set_xticks(x, labels, fontsize=7)
    right.set_ylabel(f"std {_label(recipes[0])} /\nstd {_label(recipes[1])} (log scale)")
    right.set_title("ratio of the test-MSE std over seeds", fontsize=10)
    right.legend(fontsize=8, loc="lower right")
    right.grid(axis="y", alpha=0.3, which="both")
    n_seeds = int(spread[f"{recipes[0]}_n"].max())
    fig.suptitle(f"Seed spread at the paper's size (benchmark grid, L=512, {n_seeds} seeds per model; "
                 f"{len(spread)} of 24 dataset × horizon pairs finished)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_rho_sensitivity(study: SharpnessStudy) -> plt.Figure:
    """SAMformer's test MSE against ρ (mean line, min–max band over seeds), the Transformer's band for reference
    and Table 4's ρ* marked (SAMformer Fig. 14); λmax on the right axis."""
    from .sharpness import _main_rho

    datasets = study.config.datasets
    fig, axes = _panels(len(datasets), width=5.2)
    for ax, dataset in zip(axes, datasets):
        runs = study.runs[(study.runs["recipe"] == "samformer") & (study.runs["dataset"] == dataset)]
        if runs.empty:
            continue
        seeds = sorted(set(study.config.rho_seeds))
        runs = runs[runs["seed"].isin(seeds)]
        rhos = sorted(runs["rho"].astype(float).unique())
        # a ρ value counts once every seed of the grid has run (a resumable study fills its grid one run at a time)
        table = runs.pivot_table(index="seed", columns="rho", values="test_mse").reindex(index=seeds, columns=rhos)
        table = table.dropna(axis=1)
        rhos = [float(r) for r in table.columns]
        runs = runs[np.isin(runs["rho"].astype(float), rhos)]
        x = np.arange(len(rhos))
        plot_band(ax, x, table.to_numpy(), color=RECIPE_COLORS["samformer"], label="SAMformer (SAM), min–max band")
        transformer = study.runs_of("transformer", dataset)["test_mse"]
        if len(transformer):
            ax.axhspan(transformer.min(), transformer.max(), color=RECIPE_COLORS["transformer"], alpha=0.12)
            ax.axhline(transformer.mean(), color=RECIPE_COLORS["transformer"], ls="--", lw=1,
                       label="Transformer (Adam): mean, min–max")
        star = _main_rho("samformer", dataset, study.config.horizon)
        if star is not None and any(np.isclose(rhos, star)):
            ax.axvline(int(np.argmin(np.abs(np.array(rhos) - star))), color="gray", ls=":", lw=1,
                       label=f"Table 4 ρ* = {star:g}")
        ax.set_xticks(x, [f"{r:g}" for r in rhos])
        ax.set_xlabel("SAM neighbourhood ρ (ρ = 0: Adam)")
        ax.set_ylabel("test MSE (standardised scale)")
        twin = ax.twinx()
        lam = runs.groupby("rho")["lambda_max"].apply(_geomean).reindex(rhos)
        twin.plot(x, lam.to_numpy(), color="black", marker="o", ms=3, lw=0.8, alpha=0.6)
        twin.set_yscale("log")
        twin.set_ylabel("λmax (black, geometric mean, log)")
        ax.set_title(f"{_dataset(dataset)}: sensitivity to ρ ({len(seeds)} seeds)", fontsize=10)
        ax.legend(fontsize=7, loc="upper right")
        planned = len(study.config.rho_grid)
        if len(table.columns) < planned:  # a resumable study that has not finished its grid
            ax.text(0.02, 0.03, f"{len(rhos)} of {planned} ρ values run on every seed so far", transform=ax.transAxes,
                    fontsize=8, color="0.35")
    fig.suptitle(_profile_note(study), fontsize=9)
    fig.tight_layout()
    return fig


def plot_sigma_reparam(study: SharpnessStudy) -> plt.Figure:
    """σReparam on real data (SAMformer Fig. 8): test MSE of the four recipes per dataset (points: seeds, lines:
    means; the axis does not start at zero, so no bars); and its cost (App. B.5 Fig. 11): milliseconds per optimizer
    step, SAM + σReparam against SAM."""
    names = [n for n in ("transformer", "sigma_reparam", "samformer", "samformer_sigma_reparam")
             if n in study.config.recipes]
    datasets = study.config.datasets
    fig, axes = _panels(len(datasets) + 1, width=4.4)
    for ax, dataset in zip(axes, datasets):
        for i, name in enumerate(names):
            values = study.runs_of(name, dataset)["test_mse"].to_numpy(dtype=float)
            if values.size == 0:
                continue
            ax.hlines(values.mean(), i - 0.3, i + 0.3, color=RECIPE_COLORS[name], linewidth=2.5)
            ax.scatter(np.full(values.size, i) + np.linspace(-0.15, 0.15, values.size), values,
                       color=RECIPE_COLORS[name], s=16, zorder=3)
        ax.set_xticks(range(len(names)), [_label(n).replace(" + ", "\n+ ") for n in names], fontsize=7)
        measured = np.concatenate([study.runs_of(n, dataset)["test_mse"].to_numpy(dtype=float) for n in names])
        if measured.size:
            low, high = measured.min(), measured.max()
            ax.set_ylim(low - 0.15 * (high - low + 1e-9), high + 0.15 * (high - low + 1e-9))
        else:  # an incomplete (resumable) study: this dataset has no run yet
            ax.text(0.5, 0.5, "no runs yet", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_ylabel("test MSE (standardised scale)")
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.set_title(f"{_dataset(dataset)}: σReparam vs SAM (points: seeds; lines: means)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    ax = axes[-1]
    costs = study.costs
    if not costs.empty:
        width = 0.8 / max(1, len(datasets))
        for j, dataset in enumerate(datasets):
            c = costs[costs["dataset"] == dataset].set_index("recipe").reindex(names)
            ax.bar(np.arange(len(names)) + j * width, 1e3 * c["seconds_per_step"].to_numpy(dtype=float), width,
                   color=[RECIPE_COLORS[n] for n in names], alpha=0.4 + 0.4 * j, label=_dataset(dataset))
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, [_label(n).replace(" + ", "\n+ ") for n in names],
                      fontsize=7)
        device = costs["device"].iloc[0]
        memory = costs["peak_memory_mib"].to_numpy(dtype=float)
        note = "peak memory not measurable on the CPU" if not np.isfinite(memory).any() else "peak memory in the table"
        ax.set_ylabel(f"ms per optimizer step ({device}, batch {study.config.batch_size})")
        ax.set_title(f"Cost per step ({note})", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(_profile_note(study), fontsize=9)
    fig.tight_layout()
    return fig


def plot_optimizers(study: SharpnessStudy) -> plt.Figure:
    """SAMformer App. C.3 on real data (S27): the Transformer's test MSE under Adam, SGD and AdamW with three weight
    decays, per dataset; points are seeds, a horizontal line marks the mean. The axis is linear, and logarithmic
    only when the values span more than a factor of 10 (a diverged run would sit decades above the rest)."""
    names = ("transformer", *study.config.optimizer_recipes)
    labels = [optimizer_label(n) for n in names]
    datasets = study.config.datasets
    fig, axes = _panels(len(datasets), width=5.0)
    colors = plt.get_cmap("viridis")(np.linspace(0.1, 0.85, max(1, len(names) - 1)))
    for ax, dataset in zip(axes, datasets):
        drawn = []
        for i, name in enumerate(names):
            values = study.runs_of(name, dataset)["test_mse"].to_numpy(dtype=float) if not study.runs.empty \
                else np.array([])
            if values.size == 0:
                continue
            color = RECIPE_COLORS["transformer"] if i == 0 else colors[i - 1]
            ax.hlines(np.nanmean(values), i - 0.3, i + 0.3, color=color, linewidth=2.5)
            ax.scatter(np.full(values.size, i) + np.linspace(-0.15, 0.15, values.size), values, s=18, color=color,
                       zorder=3)
            drawn.append(values)
        if drawn:
            finite = np.concatenate(drawn)
            finite = finite[np.isfinite(finite) & (finite > 0)]
            if finite.size and finite.max() / finite.min() > 10:
                ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "no runs yet", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.set_xticks(range(len(names)), [lab.replace(", ", "\n") for lab in labels], fontsize=7)
        ax.set_ylabel("test MSE (standardised scale)")
        ax.set_title(f"{_dataset(dataset)}: the Transformer under other optimizers", fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both")
    fig.suptitle(f"SAMformer App. C.3 on real data (points: seeds; lines: means)\n{_profile_note(study)}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_flatness_vs_mse(study: SharpnessStudy, measures: Sequence[str] = ("lambda_max", "trace")) -> plt.Figure:
    """Test MSE against λmax and tr H for every run (all recipes, seeds and ρ), per dataset, with Spearman's ρ_s
    and Kendall's τ_b in each title."""
    datasets = study.config.datasets
    correlations = flatness_correlations(study, n_permutations=1000)
    fig, axes = plt.subplots(len(datasets), len(measures), figsize=(5.0 * len(measures), 3.6 * len(datasets)),
                             squeeze=False)
    for row, dataset in enumerate(datasets):
        runs = study.runs[study.runs["dataset"] == dataset]
        for col, measure in enumerate(measures):
            ax = axes[row][col]
            for name in study.config.recipes:
                sel = runs[runs["recipe"] == name]
                main = sel[sel["main"]]
                grid = sel[~sel["main"]]
                ax.scatter(main[measure], main["test_mse"], color=RECIPE_COLORS.get(name), s=22, label=_label(name))
                if len(grid):
                    ax.scatter(grid[measure], grid["test_mse"], color=RECIPE_COLORS.get(name), s=22,
                               marker="x", label=f"{_label(name)}, ρ grid")
            ax.set_xlabel(f"{FLATNESS_MEASURES[measure]} of the training loss (log scale)")
            ax.set_ylabel("test MSE (standardised scale)")
            if not (runs[measure].to_numpy(dtype=float) > 0).any():  # an incomplete study: no run here yet
                ax.text(0.5, 0.5, "no runs yet", transform=ax.transAxes, ha="center", va="center", color="0.4")
                ax.set_title(_dataset(dataset), fontsize=9)
                continue
            ax.set_xscale("log")
            # labels at 1, 2, 3, 5 × 10^k in plain numbers (the default minor labels overlap)
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            c = correlations[(correlations["dataset"] == dataset) &
                             (correlations["measure"] == FLATNESS_MEASURES[measure])]
            stats = (f"Spearman {c['spearman'].iloc[0]:+.2f}, Kendall {c['kendall_tau_b'].iloc[0]:+.2f}, "
                     f"p={c['p_value'].iloc[0]:.3f}, n={c['n'].iloc[0]}") if len(c) else ""
            ax.set_title(f"{_dataset(dataset)}: {stats}", fontsize=8)
            ax.grid(alpha=0.3, which="both")
    axes[0][-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.suptitle(f"Does flatness predict test error? Every run with a measured curvature\n{_profile_note(study)}",
                 fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------- landscapes
def _crop(alphas, values, radius: float | None):
    alphas = np.asarray(alphas, dtype=float)
    values = np.asarray(values, dtype=float)
    if radius is None:
        return alphas, values
    keep = np.abs(alphas) <= radius + 1e-9
    if keep.sum() < 3:  # too coarse a grid to zoom into: show all of it
        return alphas, values
    return alphas[keep], values[keep] if values.ndim == 1 else values[np.ix_(keep, keep)]


def plot_interpolation(landscape: dict, ax: plt.Axes | None = None, log: bool = True,
                       highlight: str | None = None) -> plt.Figure:
    """Loss along the straight lines init → each solution and Transformer → SAMformer (train solid, validation
    dashed), α = 0 the start and α = 1 the end of each path."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.8))
    colors = {"init → transformer": RECIPE_COLORS["transformer"], "init → samformer": RECIPE_COLORS["samformer"],
              "transformer → samformer": "black"}
    for label, path in landscape["interpolation"].items():
        color = colors.get(label, "gray")
        width = 2.2 if highlight and highlight in label else 1.3
        pretty = label.replace("transformer", "Transformer").replace("samformer", "SAMformer")
        ax.plot(path["alphas"], path["train"], color=color, lw=width, label=f"{pretty} (train)")
        ax.plot(path["alphas"], path["val"], color=color, lw=width, ls="--", label=f"{pretty} (validation)")
    for x in (0.0, 1.0):
        ax.axvline(x, color="gray", lw=0.6, ls=":")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("α: weights (1 − α) θ_start + α θ_end")
    ax.set_ylabel("MSE (standardised scale" + (", log)" if log else ")"))
    ax.set_title("Linear interpolation between solutions", fontsize=10)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.grid(alpha=0.3, which="both")
    return fig if fig is not None else ax.figure


def plot_slice_1d(landscape: dict, kind: str = "random_1d", models: Sequence[str] = ("transformer", "samformer"),
                  ax: plt.Axes | None = None, radius: float | None = None, log: bool = True) -> plt.Figure:
    """Train (solid) and validation (dashed) loss along a 1-D slice through each solution: ``kind`` is
    ``"random_1d"`` (filter-normalised random direction, α relative to each filter's norm) or ``"eigen_1d"``
    (unit top Hessian eigenvector, α in weight units)."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.8))
    for name in models:
        piece = landscape["models"][name][kind]
        alphas, train = _crop(piece["alphas"], piece["train"], radius)
        _, val = _crop(piece["alphas"], piece["val"], radius)
        extra = f", λmax {piece['lambda_max']:.3g}" if kind == "eigen_1d" else ""
        ax.plot(alphas, train, color=RECIPE_COLORS[name], lw=1.6, label=f"{_label(name)} train{extra}")
        ax.plot(alphas, val, color=RECIPE_COLORS[name], lw=1.6, ls="--", label=f"{_label(name)} validation")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("α (filter-normalised units)" if kind == "random_1d" else "α (weight units, unit eigenvector)")
    ax.set_ylabel("MSE (standardised scale" + (", log)" if log else ")"))
    ax.set_title(SLICE_TYPES[kind], fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return fig if fig is not None else ax.figure


def plot_landscape_slices(landscape: dict, title: str = "") -> plt.Figure:
    """The two 1-D slices through each solution side by side: a filter-normalised random direction (left) and the
    top Hessian eigenvector (right), train solid and validation dashed."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    plot_slice_1d(landscape, "random_1d", ax=left)
    plot_slice_1d(landscape, "eigen_1d", ax=right)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_landscape_set(landscape: dict, title: str = "") -> list[plt.Figure]:
    """Every picture of one landscape set, each titled ``title``: the interpolation paths, the two 1-D slices, the
    train and the validation planes (shared colour scale) and the Hessian spectrum."""
    figures = [plot_interpolation(landscape), plot_landscape_slices(landscape, title=title),
               plot_contours(landscape, split="train"), plot_contours(landscape, split="val"),
               plot_spectrum(landscape, title=title)]
    if title:
        for figure in (figures[0], figures[2], figures[3]):
            figure.suptitle(title, fontsize=9)
    return figures


def plot_contours(landscape: dict, models: Sequence[str] = ("transformer", "samformer"), split: str = "train",
                  radius: float | None = None, axes: Sequence[plt.Axes] | None = None,
                  scale_models: Sequence[str] | None = None) -> plt.Figure:
    """Filter-normalised 2-D planes around each solution, filled contours on a log scale with the *same* levels
    and colour scale for every model of ``scale_models`` (default: ``models``), so "flatter" is visible; the
    solution is the star at the centre."""
    def piece(name):
        plane = landscape["models"][name]["random_2d"]
        return _crop(plane["alphas"], plane[split], radius)

    pieces = {n: piece(n) for n in models}
    scale = [piece(n)[1] for n in (scale_models or models)]
    low = min(float(np.min(z)) for z in scale)
    high = max(float(np.max(z)) for z in scale)
    levels = np.logspace(np.log10(max(low, 1e-12)), np.log10(max(high, low * 1.01)), 16)
    norm = LogNorm(vmin=levels[0], vmax=levels[-1])
    fig = None
    if axes is None:
        fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models) + 1.0, 3.9), squeeze=False)
        axes = list(axes[0])
    image = None
    for ax, name in zip(axes, models):
        alphas, z = pieces[name]
        image = ax.contourf(alphas, alphas, z.T, levels=levels, norm=norm, cmap="viridis")
        ax.contour(alphas, alphas, z.T, levels=levels, colors="white", linewidths=0.4, alpha=0.6)
        ax.plot(0, 0, marker="*", color="red", ms=9)
        ax.set_xlabel("α (direction 1, filter-normalised)")
        if ax is axes[0]:  # the panels share their axes: one label, no overlap with the neighbour
            ax.set_ylabel("β (direction 2, filter-normalised)")
        ax.set_title(f"{_label(name)} ({'train' if split == 'train' else 'validation'} loss)", fontsize=10)
        ax.set_aspect("equal")
    figure = fig if fig is not None else axes[0].figure
    figure.colorbar(image, ax=list(axes), label=f"{split} MSE (log scale, shared)", shrink=0.9, format="%.3g")
    return figure


def plot_spectrum(landscape: dict, models: Sequence[str] = ("transformer", "samformer"), title: str = ""
                  ) -> plt.Figure:
    """Hessian eigenvalue density by stochastic Lanczos quadrature (log density, PyHessian's convention) and the
    top-k eigenvalues (Lanczos) for each solution; ``title`` above both panels."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    if title:
        fig.suptitle(title, fontsize=9)
    for name in models:
        piece = landscape["models"][name]
        left.semilogy(piece["density"]["grid"], np.asarray(piece["density"]["density"]) + 1e-7,
                      color=RECIPE_COLORS[name], label=_label(name))
        top = np.asarray(piece["top_k"], dtype=float)
        right.plot(np.arange(1, top.size + 1), top, marker="o", color=RECIPE_COLORS[name], label=_label(name))
    left.set_xlabel("eigenvalue of the training-loss Hessian")
    left.set_ylabel("density (log scale, + 1e-7)")
    left.set_title("Eigenvalue density (SLQ)", fontsize=10)
    left.legend(fontsize=8)
    right.set_xlabel("rank k")
    right.set_ylabel("k-th largest eigenvalue")
    right.set_xticks(np.arange(1, len(landscape["models"][models[0]]["top_k"]) + 1))
    right.set_title("Top-k eigenvalues (Lanczos)", fontsize=10)
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def landscape_choices(study: SharpnessStudy) -> dict[str, list]:
    """The controls of a landscape explorer over every stored landscape set of ``study`` (each picture draws both
    solutions: :func:`render_landscape` with ``model=None``): its datasets, the seeds that *every* offered dataset
    has (a half-run study offers no picture it cannot draw), the slice types. Empty lists when nothing is stored."""
    datasets = sorted({d for d, _ in study.landscapes})
    seeds = sorted(set.intersection(*({s for d, s in study.landscapes if d == ds} for ds in datasets))) if datasets else []
    if not seeds:
        datasets = []
    return {"dataset": datasets, "seed": seeds, "slice": list(SLICE_TYPES)}


def render_landscape(study: SharpnessStudy, dataset: str, model: str | None, seed: int, slice_type: str,
                     zoom: str = "full") -> plt.Figure:
    """One picture of the landscape explorer: ``slice_type`` in :data:`SLICE_TYPES` around ``model``'s solution
    (``None``: both solutions, overlaid or side by side on one colour scale) for ``seed`` on ``dataset``;
    ``zoom="half"`` shows the inner half of the range."""
    landscape = study.landscapes[(dataset, int(seed))]
    models = tuple(landscape["models"]) if model is None else (model,)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    config = study.config
    if slice_type == "interpolation":
        plot_interpolation(landscape, ax=ax, highlight=model)
        if zoom == "half":
            ax.set_xlim(-0.25, 1.25)
    elif slice_type in ("random_1d", "eigen_1d"):
        full = config.slice_radius if slice_type == "random_1d" else config.eigen_radius
        plot_slice_1d(landscape, slice_type, models=models, ax=ax, radius=full / 2 if zoom == "half" else None)
    elif slice_type == "random_2d":
        plt.close(fig)
        fig, axes = plt.subplots(1, len(models), figsize=(4.4 * len(models) + 1.0, 4.0), squeeze=False)
        plot_contours(landscape, models=models, radius=config.slice_radius / 2 if zoom == "half" else None,
                      axes=list(axes[0]), scale_models=tuple(landscape["models"]))
    else:
        plt.close(fig)
        raise ValueError(f"unknown slice type {slice_type!r}: use one of {list(SLICE_TYPES)}")
    who = " vs ".join(_label(m) for m in models)
    fig.suptitle(f"{_dataset(dataset)}, seed {seed}, {who} — {config.profile} profile", fontsize=9)
    return fig
