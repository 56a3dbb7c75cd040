"""Figures of the toy-problem chapter (SAMformer Figs. 1, 2, 3a, 3b, 15), drawn from :class:`ToyRun` lists.

Each function draws on given axes (or makes a figure) and returns the figure; seeds are drawn as a band
(min–max over seeds) around the mean curve.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from flatcast.plotting import plot_band

from .toy import MODEL_LABELS, OPTIMIZER_LABELS, ToyRun

__all__ = ["MODEL_COLORS", "plot_learning_curves", "plot_entropy", "plot_attention_matrix", "plot_attention_snapshots",
           "plot_sharpness_and_entropy", "plot_nuclear_norm", "plot_optimizer_comparison", "plot_rho_sweep"]

MODEL_COLORS = {
    "oracle": "black", "transformer": "tab:red", "random_transformer": "tab:purple", "sigma_reparam": "tab:orange",
    "transformer_sam": "tab:blue", "transformer_eeo": "tab:green",
}
OPTIMIZER_COLORS = {
    "sgd": "tab:gray", "adam": "tab:red", "adamw_1e-5": "gold", "adamw_1e-4": "tab:orange", "adamw_1e-3": "tab:brown",
    "sam": "tab:blue", "eeo": "tab:green",
}


def _curves(runs: Sequence[ToyRun], column: str) -> tuple[np.ndarray, np.ndarray]:
    epochs = runs[0].history["epoch"].to_numpy()
    values = np.stack([r.history[column].to_numpy(dtype=float) for r in runs])
    return epochs, values


def _group(runs: Sequence[ToyRun], attribute: str) -> dict[str, list[ToyRun]]:
    groups: dict[str, list[ToyRun]] = {}
    for run in runs:
        groups.setdefault(getattr(run, attribute), []).append(run)
    return groups


def _bands(ax: plt.Axes, runs: Sequence[ToyRun], column: str, by: str = "kind",
           keys: Sequence[str] | None = None, with_seeds: bool = False) -> None:
    """One mean curve with a min–max band over the seeds per model kind (or optimizer), for a history column."""
    colors, labels = (MODEL_COLORS, MODEL_LABELS) if by == "kind" else (OPTIMIZER_COLORS, OPTIMIZER_LABELS)
    groups = _group(runs, by)
    for key in keys or list(groups):
        epochs, values = _curves(groups[key], column)
        label = f"{labels[key]} ({len(values)} seeds)" if with_seeds else labels[key]
        plot_band(ax, epochs, values, color=colors.get(key), label=label)


def _finish(ax: plt.Axes, ylabel: str, title: str, log: bool = False) -> plt.Figure:
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both" if log else "major")
    return ax.figure


def _axes(ax: plt.Axes | None, figsize: tuple[float, float]) -> plt.Axes:
    return plt.subplots(figsize=figsize)[1] if ax is None else ax


def plot_attention_matrix(ax: plt.Axes, matrix: np.ndarray, title: str, small: bool = False):
    """A D × D attention matrix as a heatmap on a fixed [0, 1] colour scale; returns the image."""
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_title(title, fontsize=9 if small else None)
    ax.set_xlabel("key channel", fontsize=8 if small else None)
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_yticks(range(matrix.shape[0]))
    if small:
        ax.tick_params(labelsize=6)
    return image


def plot_learning_curves(runs: Sequence[ToyRun], oracle_val_mse: float, kinds: Sequence[str] | None = None,
                         ax: plt.Axes | None = None, title: str | None = None) -> plt.Figure:
    """Validation MSE along training for each model kind (band over seeds) against the oracle (Figs. 1–2)."""
    ax = _axes(ax, (7, 4))
    _bands(ax, runs, "val_mse", keys=kinds, with_seeds=True)
    ax.axhline(oracle_val_mse, color="black", ls="--", lw=1.2, label=f"Oracle (least squares): {oracle_val_mse:.3f}")
    return _finish(ax, "validation MSE (log scale)",
                   title or "Validation loss along training vs the least-squares oracle", log=True)


def plot_entropy(runs: Sequence[ToyRun], n_channels: int, kinds: Sequence[str] | None = None,
                 ax: plt.Axes | None = None) -> plt.Figure:
    """Mean row entropy of A(X) along training (SAMformer Fig. 3b, right); log D is uniform, 0 the identity."""
    ax = _axes(ax, (7, 3.6))
    _bands(ax, runs, "attention_entropy", keys=kinds)
    ax.axhline(np.log(n_channels), color="gray", ls=":", label=f"uniform attention (log {n_channels})")
    ax.axhline(0.0, color="gray", ls="-", lw=0.8, label="identity attention (0)")
    return _finish(ax, "attention entropy (nats)", "Attention entropy along training (band = seeds)")


def plot_attention_snapshots(run: ToyRun, epochs: Sequence[int] | None = None) -> plt.Figure:
    """The mean attention matrix A(X) (D × D) at several epochs of one run (SAMformer Fig. 3a)."""
    epochs = sorted(run.attention) if epochs is None else [e for e in epochs if e in run.attention]
    fig, axes = plt.subplots(1, len(epochs), figsize=(2.2 * len(epochs) + 0.8, 2.6), squeeze=False)
    image = None
    for ax, epoch in zip(axes[0], epochs):
        image = plot_attention_matrix(ax, run.attention[epoch], f"epoch {epoch}", small=True)
    axes[0][0].set_ylabel("query channel", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="attention weight")
    fig.suptitle(f"{run.label}, seed {run.seed}: mean attention matrix over validation windows", fontsize=10)
    return fig


def plot_sharpness_and_entropy(runs: Sequence[ToyRun], n_channels: int, kinds: Sequence[str] | None = None) -> plt.Figure:
    """Left: λmax at the end of training per model (dots = seeds). Right: attention entropy along training (Fig. 3b)."""
    groups = _group(runs, "kind")
    kinds = kinds or list(groups)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    for i, kind in enumerate(kinds):
        values = np.array([r.lambda_max for r in groups[kind]])
        left.bar(i, values.mean(), color=MODEL_COLORS.get(kind), alpha=0.6)
        left.scatter(np.full(len(values), i), values, color="black", s=12, zorder=3)
    left.set_xticks(range(len(kinds)))
    left.set_xticklabels([MODEL_LABELS[k] for k in kinds], rotation=25, ha="right", fontsize=8)
    left.set_xlabel("model")
    left.set_yscale("log")
    left.set_ylabel("λmax of the training-loss Hessian (log scale)")
    left.set_title("Sharpness at the end of training (bar = mean, dots = seeds)")
    left.grid(alpha=0.3, axis="y", which="both")
    # The Random Transformer's attention is frozen: its entropy never moves, so it is left out on the right.
    plot_entropy(runs, n_channels, kinds=[k for k in kinds if k != "random_transformer"], ax=right)
    fig.tight_layout()
    return fig


def plot_nuclear_norm(runs: Sequence[ToyRun], n_channels: int, kinds: Sequence[str] | None = None,
                      ax: plt.Axes | None = None) -> plt.Figure:
    """Mean nuclear norm ‖A(X)‖_* of the attention along training (SAMformer Fig. 7's measure of rank).

    For a row-stochastic D × D matrix it lies between 1 (rank one, e.g. uniform attention) and D (the identity).
    """
    ax = _axes(ax, (7, 3.6))
    _bands(ax, runs, "attention_nuclear_norm", keys=kinds)
    ax.axhline(n_channels, color="gray", ls="-", lw=0.8, label=f"identity attention ({n_channels})")
    ax.axhline(1.0, color="gray", ls=":", label="rank one, e.g. uniform (1)")
    return _finish(ax, "nuclear norm of A(X)", "Rank of the attention along training (band = seeds)")


def plot_optimizer_comparison(runs: Sequence[ToyRun], oracle_val_mse: float, ax: plt.Axes | None = None) -> plt.Figure:
    """Validation MSE of the plain Transformer under SGD, Adam and AdamW (SAMformer Fig. 15)."""
    ax = _axes(ax, (7, 4))
    _bands(ax, runs, "val_mse", by="optimizer")
    ax.axhline(oracle_val_mse, color="black", ls="--", lw=1.2, label="Oracle (least squares)")
    return _finish(ax, "validation MSE (log scale)", "The plain Transformer under five optimizers vs the oracle",
                   log=True)


def plot_rho_sweep(sweep, oracle_val_mse: float) -> plt.Figure:
    """Final validation MSE and λmax against SAM's ρ."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    left.plot(sweep["rho"], sweep["final_val_mse"], "o-", color=MODEL_COLORS["transformer_sam"])
    left.axhline(oracle_val_mse, color="black", ls="--", lw=1, label="Oracle")
    left.set_xscale("log")
    left.set_xlabel("SAM neighbourhood size ρ (log scale)")
    left.set_ylabel("final validation MSE")
    left.set_title("Transformer + SAM: validation MSE vs ρ")
    left.legend(fontsize=8)
    left.grid(alpha=0.3, which="both")
    right.plot(sweep["rho"], sweep["lambda_max"], "o-", color="tab:gray")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("SAM neighbourhood size ρ (log scale)")
    right.set_ylabel("λmax (log scale)")
    right.set_title("Sharpness at the end of training vs ρ")
    right.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig
