"""Figures of the attention chapter, drawn from the run records of :mod:`flatcast.experiments.attention`.

Seeds are drawn as a min–max band around the mean (histories of different lengths — early stopping — are
NaN-padded, and the band covers the seeds still running at each epoch). Every function returns its figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .attention import DYNAMICS_RECIPES, LABELS, TABLE_RECIPES, diagonal_statistics, final_attention

__all__ = ["RECIPE_COLORS", "plot_history", "plot_entropy", "plot_attention_grid", "plot_mean_maps",
           "plot_nuclear_norms", "plot_attention_spectra", "plot_proposition5", "plot_which_attention",
           "plot_representation", "plot_explorer_choice", "attention_explorer", "DATASET_LABELS"]

RECIPE_COLORS = {"transformer": "tab:red", "samformer": "tab:blue", "sigma_reparam": "tab:orange",
                 "samformer_sigma_reparam": "tab:brown", "transformer_eeo": "tab:green", "temporal": "tab:purple",
                 "identity_sam": "tab:gray"}
DATASET_LABELS = {"exchange_rate": "Exchange", "weather": "Weather"}


def _dataset_label(name: str) -> str:
    return DATASET_LABELS.get(name, name)


def _runs(records, recipe: str | None = None, dataset: str | None = None, dynamics: bool = True) -> list[dict]:
    return [r for r in records if (recipe is None or r["recipe"] == recipe) and
            (dataset is None or r["dataset"] == dataset) and (not dynamics or "final" in r)]


def _datasets(records) -> list[str]:
    return list(dict.fromkeys(r["dataset"] for r in records if "final" in r))


def _recipes(records, order: Sequence[str] = DYNAMICS_RECIPES) -> list[str]:
    present = {r["recipe"] for r in records if "final" in r}
    return [name for name in order if name in present]


def _stack_histories(runs: list[dict], column: str) -> tuple[np.ndarray, np.ndarray]:
    length = max(len(r["history"]["epoch"]) for r in runs)
    values = np.full((len(runs), length), np.nan)
    for i, r in enumerate(runs):
        column_values = np.asarray(r["history"].get(column, []), dtype=float)
        values[i, : len(column_values)] = column_values
    return np.arange(length), values


def _band(ax, runs: list[dict], column: str, color, label: str) -> None:
    epochs, values = _stack_histories(runs, column)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values, axis=0)
            low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
    (line,) = ax.plot(epochs, mean, color=color, lw=1.6, label=f"{label} ({len(runs)} seeds)")
    if len(runs) > 1:
        ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2, lw=0)


def plot_history(records, column: str, ylabel: str, title: str, recipes: Sequence[str] | None = None,
                 log: bool = False, reference=None) -> plt.Figure:
    """One panel per dataset: ``column`` of the history along training, per recipe (mean, min–max band)."""
    datasets = _datasets(records)
    if not datasets:
        raise ValueError("no dynamics runs to plot")
    recipes = recipes or _recipes(records)
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for name in recipes:
            runs = _runs(records, name, dataset)
            if runs:
                _band(ax, runs, column, RECIPE_COLORS.get(name), LABELS[name])
        if reference is not None:
            value = reference(dataset)
            if value is not None:
                ax.axhline(value[0], color="black", ls="--", lw=1, label=value[1])
        ax.set_title(_dataset_label(dataset))
        ax.set_xlabel("epoch (0 = initialisation)")
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(ylabel)
    handles, labels = axes[0, -1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def _n_channels(records, dataset: str) -> int:
    run = _runs(records, dataset=dataset)[0]
    return len(run["final"]["attention_batch"][0])


def plot_entropy(records, title: str = "Attention entropy along training") -> plt.Figure:
    """Mean row entropy of A(X) (nats) on validation windows, per dataset and recipe; log D = uniform attention."""
    return plot_history(records, "attention_entropy", "mean row entropy of A(X) (nats)", title,
                        reference=lambda d: (math.log(_n_channels(records, d)), "log D (uniform)"))


def _imshow(ax, matrix, vmax=None):
    return ax.imshow(matrix, cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")


def plot_attention_grid(records, dataset: str = "weather",
                        recipes: Sequence[str] = ("transformer", "sigma_reparam", "samformer",
                                                  "samformer_sigma_reparam"),
                        seed: int | None = None, columns: int = 8) -> plt.Figure:
    """SAMformer App. B.5 Fig. 12's layout: for each recipe, the batch of test windows' attention matrices after
    training, as a grid (one small matrix per window; colour scale 0–1 shared)."""
    recipes = [r for r in recipes if _runs(records, r, dataset)]
    batches = [final_attention(records, r, dataset, seed) for r in recipes]
    n = batches[0].shape[0]
    rows = math.ceil(n / columns)
    fig = plt.figure(figsize=(2 * columns * 0.62 * 2, rows * 0.62 * len(recipes) * 1.15 + 0.6))
    outer = fig.add_gridspec(math.ceil(len(recipes) / 2), 2, wspace=0.08, hspace=0.25)
    image = None
    for k, (name, batch) in enumerate(zip(recipes, batches)):
        inner = outer[k // 2, k % 2].subgridspec(rows, columns, wspace=0.05, hspace=0.05)
        for i in range(rows * columns):
            ax = fig.add_subplot(inner[i // columns, i % columns])
            ax.set_xticks([])
            ax.set_yticks([])
            if i < n:
                image = _imshow(ax, batch[i], vmax=1)
            else:
                ax.axis("off")
            if i == 0:
                ax.set_title(f"({'abcd'[k] if k < 4 else k}) {LABELS[name]}", loc="left", fontsize=9, x=0)
    if image is not None:
        fig.colorbar(image, ax=fig.axes, shrink=0.6, label="attention weight")
    fig.suptitle(f"Batch of {n} test windows' attention after training: {_dataset_label(dataset)}, "
                 f"H={_runs(records, dataset=dataset)[0]['horizon']}")
    return fig


def plot_mean_maps(records, dataset: str = "weather",
                   recipes: Sequence[str] = ("transformer", "samformer", "sigma_reparam", "transformer_eeo"),
                   seed: int | None = None) -> plt.Figure:
    """SAMformer Fig. 6 / EEO-TFV Fig. 5 layout: one attention matrix per model (the first window of the batch)
    and the batch mean, with the diagonal statistics in the titles."""
    recipes = [r for r in recipes if _runs(records, r, dataset)]
    fig, axes = plt.subplots(2, len(recipes), figsize=(3.4 * len(recipes), 6.6), squeeze=False)
    image = None
    for j, name in enumerate(recipes):
        batch = final_attention(records, name, dataset, seed)
        stats = diagonal_statistics(batch)
        for i, (matrix, what) in enumerate(((batch[0], "window 1"), (batch.mean(axis=0), "batch mean"))):
            ax = axes[i, j]
            image = _imshow(ax, matrix, vmax=1)
            ax.set_xlabel("key channel")
            if j == 0:
                ax.set_ylabel(f"{what}\nquery channel")
        axes[0, j].set_title(f"{LABELS[name]}\nbatch: diagonal {stats['diag_ratio']:.2f}/D\nrow spread "
                             f"{stats['row_spread']:.2f}", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.7, label="attention weight")
    fig.suptitle(f"Attention after training on {_dataset_label(dataset)}, H={_runs(records, dataset=dataset)[0]['horizon']}")
    return fig


def plot_nuclear_norms(records, recipes: Sequence[str] | None = None) -> plt.Figure:
    """SAMformer Fig. 7 / EEO-TFV Fig. 4: distribution of ‖A(X)‖_* over validation windows (all seeds pooled)
    after training, per dataset and recipe; the dotted lines are D (identity) and 1 (rank one)."""
    datasets = _datasets(records)
    recipes = recipes or _recipes(records)
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        data, names = [], []
        for name in recipes:
            runs = _runs(records, name, dataset)
            if runs:
                data.append(np.concatenate([r["final"]["nuclear_norms"] for r in runs]))
                names.append(name)
        parts = ax.boxplot(data, patch_artist=True, widths=0.6, showfliers=False)
        for patch, name in zip(parts["boxes"], names):
            patch.set_facecolor(RECIPE_COLORS.get(name))
            patch.set_alpha(0.6)
        ax.set_xticks(range(1, len(names) + 1), [LABELS[n].replace(" + ", "\n+ ") for n in names], fontsize=7,
                      rotation=30)
        D = _n_channels(records, dataset)
        ax.axhline(D, color="black", ls=":", lw=1)
        ax.axhline(1, color="black", ls=":", lw=1)
        ax.set_title(f"{_dataset_label(dataset)} (D = {D})")
        ax.grid(alpha=0.3, axis="y")
    axes[0, 0].set_ylabel("nuclear norm ‖A(X)‖_*")
    fig.suptitle("Nuclear norm of the attention after training (validation windows, seeds pooled)")
    fig.tight_layout()
    return fig


def plot_attention_spectra(records, recipes: Sequence[str] | None = None) -> plt.Figure:
    """Mean singular values of A(X) after training (sorted, validation windows, seeds averaged) per dataset; the
    legend gives each recipe's mean effective rank."""
    datasets = _datasets(records)
    recipes = recipes or _recipes(records)
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for name in recipes:
            runs = _runs(records, name, dataset)
            if not runs:
                continue
            spectrum = np.mean([r["final"]["attention_spectrum"] for r in runs], axis=0)
            erank = np.mean([r["final"]["attention_erank"] for r in runs])
            ax.plot(np.arange(1, len(spectrum) + 1), spectrum, marker="o", ms=3, color=RECIPE_COLORS.get(name),
                    label=f"{LABELS[name]} (erank {erank:.1f})")
        ax.set_yscale("log")
        ax.set_xlabel("index i")
        ax.set_title(_dataset_label(dataset))
        ax.legend(fontsize=6.5)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("singular value σ_i(A(X))")
    fig.suptitle("Singular spectrum of the attention after training")
    fig.tight_layout()
    return fig


def plot_proposition5(records, dataset: str, recipes: Sequence[str] | None = None) -> plt.Figure:
    """Prop. 5 along training on ``dataset``: left, both sides (log scale; solid ‖X̃W̃_QW̃_KᵀX̃ᵀ‖_*, dashed
    ‖W̃_QW̃_Kᵀ‖₂‖X̃‖_F²); middle, the measured ‖A(X)‖_*; right, the distance of W_Q W_Kᵀ from Prop. 5's
    assumption (asymmetry ‖M − Mᵀ‖_F/‖M‖_F and the smallest eigenvalue of its symmetric part over ‖M‖₂)."""
    recipes = recipes or _recipes(records)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for name in recipes:
        runs = _runs(records, name, dataset)
        if not runs:
            continue
        color = RECIPE_COLORS.get(name)
        for column, style in (("prop5_lhs", "-"), ("prop5_rhs", "--")):
            epochs, values = _stack_histories(runs, column)
            axes[0].plot(epochs, np.nanmean(values, axis=0), ls=style, color=color,
                         label=LABELS[name] if style == "-" else None)
        _band(axes[1], runs, "attention_nuclear_norm", color, LABELS[name])
        epochs, asym = _stack_histories(runs, "score_asymmetry")
        _, min_eig = _stack_histories(runs, "score_min_eig")
        axes[2].plot(epochs, np.nanmean(asym, axis=0), color=color, label=f"{LABELS[name]}: asymmetry")
        axes[2].plot(epochs, np.nanmean(min_eig, axis=0), color=color, ls=":")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("solid: ‖X̃W̃_QW̃_KᵀX̃ᵀ‖_*   dashed: bound")
    axes[0].set_title("Proposition 5: both sides")
    axes[1].set_ylabel("‖A(X)‖_*")
    axes[1].set_title("measured nuclear norm of A(X)")
    axes[2].axhline(0, color="black", lw=0.8)
    axes[2].set_ylabel("solid: asymmetry; dotted: λ_min(sym)/‖M‖₂")
    axes[2].set_title("is W_Q W_Kᵀ symmetric PSD? (yes only if both 0/≥0)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Proposition 5 along training on {_dataset_label(dataset)} (validation windows, mean over seeds)")
    fig.tight_layout()
    return fig


def plot_which_attention(table: pd.DataFrame, metric: str = "MSE") -> plt.Figure:
    """SAMformer Tables 9–10: our test ``metric`` (mean over seeds, whiskers ± one seed standard deviation) of the
    four attentions per horizon as bars, the paper's numbers as black ticks on the same bars; one panel per dataset,
    each on its own scale (the datasets' errors differ by an order of magnitude)."""
    if table.empty:
        raise ValueError("no Tables 9–10 runs to plot")
    datasets = list(dict.fromkeys(table["dataset"]))
    ncols = min(3, len(datasets))
    nrows = -(-len(datasets) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.9 * nrows + 0.8), squeeze=False)
    width = 0.8 / len(TABLE_RECIPES)
    for ax, dataset in zip(axes.flat, datasets):
        rows = table[table["dataset"] == dataset].sort_values("horizon")
        x = np.arange(len(rows))
        for k, name in enumerate(TABLE_RECIPES):
            ours = rows.get(f"{name} {metric}")
            if ours is None:
                continue
            position = x - 0.4 + width * (k + 0.5)
            spread = rows.get(f"{name} {metric} std")
            ax.bar(position, ours, width, color=RECIPE_COLORS.get(name), alpha=0.8, label=f"{LABELS[name]} (ours)",
                   yerr=None if spread is None else spread.fillna(0).to_numpy(),
                   error_kw={"lw": 0.8, "capsize": 1.5})
            paper = rows.get(f"{name} {metric} (paper)")
            if paper is not None:
                ax.scatter(position, paper, marker="_", s=120, color="black", zorder=3,
                           label="paper (Tables 1/6, 9, 10)" if k == 0 else None)
        ax.set_xticks(x, [f"H={h}" for h in rows["horizon"]], fontsize=8)
        ax.set_title(_dataset_label(dataset), fontsize=10)
        ax.set_ylabel(f"test {metric} (standardized)", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    for ax in list(axes.flat)[len(datasets):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, bbox_to_anchor=(0.5, 1.0))
    fig.suptitle("Which attention is needed: channel-wise vs temporal (Table 9) and vs A = I (Table 10); "
                 "whiskers: ± 1 std over seeds", y=1.04, fontsize=11)
    fig.tight_layout()
    return fig


def plot_representation(records, dataset: str, recipes: Sequence[str] | None = None) -> plt.Figure:
    """EEO-TFV §4.2–4.3 (Figs. 2–3) on ``dataset``: left, effective rank of the last-layer representation along
    training; right, its normalised singular spectrum after training (log–log)."""
    recipes = recipes or _recipes(records)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    shape = None
    for name in recipes:
        runs = _runs(records, name, dataset)
        if not runs:
            continue
        color = RECIPE_COLORS.get(name)
        _band(axes[0], runs, "representation_erank", color, LABELS[name])
        spectra = [np.asarray(r["final"]["representation_spectrum"]) for r in runs]
        size = min(len(s) for s in spectra)
        spectrum = np.mean([s[:size] for s in spectra], axis=0)
        axes[1].plot(np.arange(1, size + 1), spectrum, color=color, label=LABELS[name])
        shape = runs[0]["final"]["representation_shape"]
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("effective rank (Roy & Vetterli)")
    axes[0].set_title("rank-collapse diagnostic (EEO-TFV Fig. 2)")
    axes[0].legend(fontsize=7)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("index i")
    axes[1].set_ylabel("σ_i / Σ σ")
    axes[1].set_title("singular spectrum after training (EEO-TFV Fig. 3)")
    for ax in axes:
        ax.grid(alpha=0.3)
    rows = "" if shape is None else f" ({shape[0]} rows = windows × channels, {shape[1]} features)"
    fig.suptitle(f"Last-layer representation on {_dataset_label(dataset)}{rows}")
    fig.tight_layout()
    return fig


def plot_explorer_choice(records, recipe: str, dataset: str, epoch: str, window: int) -> plt.Figure:
    """One explorer picture: the attention of one window of the Fig. 12 batch for one run (first seed) at one
    snapshot epoch (``"final"`` = the restored best weights after training)."""
    run = _runs(records, recipe, dataset)[0]
    if epoch == "final":
        matrix = np.asarray(run["final"]["attention_batch"])[window]
        when = f"after training (best epoch {run['best_epoch']})"
    else:
        snapshots = run["snapshots"]
        if str(epoch) not in snapshots:
            raise KeyError(f"no snapshot at epoch {epoch}; have {sorted(snapshots, key=int)}")
        position = _explorer_position(run, window)
        matrix = np.asarray(snapshots[str(epoch)])[position]
        when = f"epoch {epoch}"
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    image = _imshow(ax, matrix, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8)
    stats = diagonal_statistics(matrix)
    ax.set_title(f"{LABELS[recipe]} · {_dataset_label(dataset)}\n{when}, window {window} · diag {stats['diag_ratio']:.2f}/D",
                 fontsize=8)
    ax.set_xlabel("key channel")
    ax.set_ylabel("query channel")
    fig.tight_layout()
    return fig


def _explorer_position(run: dict, window: int) -> int:
    windows = list(run.get("explorer_windows") or [])
    if window not in windows:
        raise KeyError(f"window {window} was not kept along training (kept: {windows})")
    return windows.index(window)


def attention_explorer(records, datasets: Sequence[str] | None = None, max_epochs: int = 4,
                       windows: Sequence[int] | None = None, dpi: int = 60, **options):
    """The attention explorer: model × dataset × epoch × window → that window's attention matrix (first seed).

    Built with :func:`flatcast.explorer.static_explorer`, so every choice is precomputed and the controls work in
    the static HTML. ``epoch`` offers up to ``max_epochs`` snapshot epochs (always the first, second and the
    last snapshot, then "final" = the restored best weights); ``windows`` defaults to every window kept along
    training."""
    from flatcast.explorer import static_explorer

    datasets = list(datasets or _datasets(records))
    recipes = _recipes(records)
    # a resumable study read half-way: offer the datasets every recipe has run on (else the best-covered one and
    # the recipes it has), so that every precomputed choice exists
    complete = [d for d in datasets if all(_runs(records, r, d) for r in recipes)]
    if complete:
        datasets = complete
    else:
        best = max(datasets, key=lambda d: sum(bool(_runs(records, r, d)) for r in recipes))
        datasets, recipes = [best], [r for r in recipes if _runs(records, r, best)]
    first = _runs(records, recipes[0], datasets[0])[0]
    snapshot_epochs = sorted(int(e) for e in first["snapshots"])
    common = [e for e in snapshot_epochs if all(str(e) in r["snapshots"] for r in records if "final" in r
                                                and r["dataset"] in datasets)]
    if len(common) > max_epochs - 1:
        common = common[:2] + common[-(max_epochs - 3):] if max_epochs > 3 else common[: max_epochs - 1]
    epochs = [str(e) for e in common] + ["final"]
    windows = list(windows if windows is not None else first["explorer_windows"])
    controls = {"model": [LABELS[r] for r in recipes], "dataset": [_dataset_label(d) for d in datasets],
                "epoch": epochs, "window": windows}
    by_label = {LABELS[r]: r for r in recipes}
    by_dataset = {_dataset_label(d): d for d in datasets}

    def render(model, dataset, epoch, window):
        return plot_explorer_choice(records, by_label[model], by_dataset[dataset], epoch, window)

    n = len(recipes) * len(datasets) * len(epochs) * len(windows)
    return static_explorer(controls, render, dpi=dpi, max_choices=max(64, n), slider=("epoch",),
                           title="Attention explorer: one window's A(X) (first seed)", **options)
