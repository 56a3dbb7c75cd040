"""An explorer for the toy problem that works in the static book and retrains live in Jupyter.

Two parts, one widget tree:

* **Precomputed runs** (a :func:`flatcast.explorer.static_explorer`): model × seed, drawn from the chapter's
  own study runs (``runs=study.runs``: no extra training) or trained here over a small grid. Every choice's
  figure and summary line are rendered while the chapter executes, and the model dropdown and seed slider
  switch between them in the browser, so they respond in the static HTML with no kernel and no network.
* **Train with other settings** (needs a kernel): model, optimizer, ρ, learning rate, epochs and seed, and a
  *Train* button that retrains at the quick scale and redraws. A choice that matches a precomputed run is shown
  from the grid without training.

Both draw with the toy chapter's figure functions (:mod:`flatcast.experiments.toy_figures`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display

from flatcast.data.splits import Splits
from flatcast.explorer import StaticExplorer, figure_png, static_explorer

from .toy import (MODEL_KINDS, MODEL_LABELS, OPTIMIZER_LABELS, OPTIMIZERS, ToyConfig, ToyRun, default_optimizer_of,
                  train_toy, train_toy_seeds)
from .toy_figures import plot_attention_matrix, plot_entropy, plot_learning_curves

__all__ = ["ToyExplorer"]

_OWN = "the model's own"


@dataclass
class _Choice:
    kind: str
    optimizer: str | None
    rho: float
    lr: float
    epochs: int
    seed: int


class ToyExplorer:
    """Precomputed model × seed runs (static-interactive) + live retraining (kernel) for the toy problem.

    ``runs``: the study's runs to show (the model's own optimizer, the config's lr and ρ); when omitted, the
    grid ``kinds`` × ``seeds`` (default: every model kind, the config's first seed) is trained here for
    ``epochs`` epochs. ``explorer.static`` is the :class:`~flatcast.explorer.StaticExplorer`; ``explorer.ui``
    the whole widget tree (an explorer displays itself in a notebook); ``explorer.train()`` is what the button
    calls; ``explorer.last_run`` holds the latest live :class:`ToyRun`, ``explorer.status.value`` its summary
    and ``explorer.figure.value`` the PNG of its figure. ``train_now`` (default: when ``runs`` is omitted)
    trains the live controls' first choice on construction.
    """

    def __init__(self, splits: Splits, config: ToyConfig, oracle_val_mse: float, epochs: int = 10,
                 train_now: bool | None = None, runs: Sequence[ToyRun] | None = None,
                 kinds: Sequence[str] = MODEL_KINDS, seeds: Sequence[int] | None = None, dpi: int = 72) -> None:
        self.splits, self.config, self.oracle_val_mse = splits, config, float(oracle_val_mse)
        unknown = [k for k in kinds if k not in MODEL_LABELS or k == "oracle"]
        if unknown or not kinds:
            raise ValueError(f"unknown model kind(s) {unknown or kinds}; choose from {list(MODEL_KINDS)}")
        self.grid = self._grid(list(kinds), runs, seeds, epochs)
        grid_kinds = [k for k in kinds if any(key[0] == k for key in self.grid)]
        grid_seeds = sorted({key[1] for key in self.grid})
        self.static: StaticExplorer = static_explorer(
            {"model": grid_kinds, "seed": grid_seeds},
            lambda model, seed: self._figure(self.grid[model, seed]),
            caption=lambda model, seed: self._summary(self.grid[model, seed]),
            labels={"model": [MODEL_LABELS[k] for k in grid_kinds]}, slider=["seed"] if len(grid_seeds) > 1 else [],
            dpi=dpi)

        style = {"description_width": "110px"}
        layout = widgets.Layout(width="420px")
        self.model = widgets.Dropdown(options=[(MODEL_LABELS[k], k) for k in MODEL_KINDS], value="transformer",
                                      description="model", style=style, layout=layout)
        self.optimizer = widgets.Dropdown(options=[(_OWN, _OWN)] + [(OPTIMIZER_LABELS[o], o) for o in OPTIMIZERS],
                                          value=_OWN, description="optimizer", style=style, layout=layout)
        self.rho = widgets.FloatLogSlider(value=config.rho, base=10, min=-2, max=0.5, step=0.1,
                                          description="ρ (SAM / EEO)", style=style, layout=layout,
                                          readout_format=".3g")
        self.lr = widgets.FloatLogSlider(value=config.lr, base=10, min=-4, max=-1.5, step=0.25,
                                         description="learning rate", style=style, layout=layout, readout_format=".1e")
        self.epochs = widgets.IntSlider(value=epochs, min=1, max=max(60, config.epochs), description="epochs",
                                        style=style, layout=layout)
        self.seed = widgets.BoundedIntText(value=config.seeds[0], min=0, max=10_000, description="seed", style=style,
                                           layout=widgets.Layout(width="220px"))
        self.button = widgets.Button(description="Train", button_style="primary", icon="play")
        self.status = widgets.HTML(value="")
        # the live figure: hidden until a training has drawn it
        self.figure = widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width="1100px",
                                                                         display="none"))
        self.button.on_click(lambda _: self.train())
        controls = widgets.VBox([self.model, self.optimizer, self.rho, self.lr, self.epochs,
                                 widgets.HBox([self.seed, self.button])])
        self.ui = widgets.VBox([
            widgets.HTML(value="<b>Precomputed runs</b>: pick a model and a seed (these controls work on the "
                               "static page too, with no kernel)."),
            self.static.ui,
            widgets.HTML(value="<b>Train with other settings</b>: optimizer, ρ, learning rate, epochs, seed, then "
                               "<i>Train</i> (needs a running kernel: open this notebook in Jupyter)."),
            controls, self.status, self.figure])
        self.last_run: ToyRun | None = None
        if train_now if train_now is not None else runs is None:
            self.train()

    # ------------------------------------------------------------------------------------------ the grid
    def _grid(self, kinds: list[str], runs: Sequence[ToyRun] | None, seeds: Sequence[int] | None,
              epochs: int) -> dict[tuple[str, int], ToyRun]:
        grid: dict[tuple[str, int], ToyRun] = {}
        if runs is None:
            seed_list = [int(s) for s in (self.config.seeds[:1] if seeds is None else seeds)]
            for kind in kinds:  # a kind's seeds train together (flatcast.trainer.fit_many)
                for seed, run in zip(seed_list, train_toy_seeds(kind, self.splits, self.config, seed_list,
                                                                epochs=epochs)):
                    grid[kind, seed] = run
            return grid
        for run in runs:  # the model's own optimizer at the config's lr (the study's model comparison)
            if run.kind in kinds and run.optimizer == default_optimizer_of(run.kind) and run.lr == self.config.lr \
                    and (seeds is None or run.seed in seeds):
                grid.setdefault((run.kind, run.seed), run)
        if not grid:
            raise ValueError(f"none of the {len(runs)} runs is a model comparison run of kinds {kinds}")
        wanted = {(k, s) for k in {k for k, _ in grid} for s in {s for _, s in grid}}
        missing = sorted(wanted - set(grid))
        if missing:
            raise ValueError(f"the runs do not cover the model × seed grid: missing {missing}")
        return grid

    def _matching_grid_run(self, c: _Choice) -> ToyRun | None:
        run = self.grid.get((c.kind, c.seed))
        optimizer = c.optimizer or default_optimizer_of(c.kind)
        if run is None or run.optimizer != optimizer or len(run.history) != c.epochs + 1 or \
                abs(run.lr - c.lr) > 1e-12 * c.lr:
            return None
        if optimizer in ("sam", "eeo") and (run.rho is None or abs(run.rho - c.rho) > 1e-9 * c.rho):
            return None
        return run

    # ------------------------------------------------------------------------------------------ live
    def choice(self) -> _Choice:
        optimizer = None if self.optimizer.value == _OWN else self.optimizer.value
        return _Choice(self.model.value, optimizer, float(self.rho.value), float(self.lr.value), int(self.epochs.value),
                       int(self.seed.value))

    def train(self) -> ToyRun:
        """Retrain with the widgets' current values (or reuse the matching precomputed run), redraw, summarise."""
        c = self.choice()
        run = self._matching_grid_run(c)
        if run is None:
            self.status.value = f"<i>training {MODEL_LABELS[c.kind]} for {c.epochs} epochs…</i>"
            run = train_toy(c.kind, self.splits, self.config, c.seed, optimizer=c.optimizer, lr=c.lr, rho=c.rho,
                            epochs=c.epochs)
        self.last_run = run
        self.status.value = self._summary(run)
        self.figure.value = figure_png(self._figure(run), dpi=90)  # an Image widget: also shown in the static HTML
        self.figure.layout.display = None
        return run

    def _summary(self, run: ToyRun) -> str:
        optimizer = OPTIMIZER_LABELS[run.optimizer]
        rho = f", ρ = {run.rho:.3g}" if run.rho is not None else ""
        return (f"<b>{run.label}</b> with {optimizer}{rho}, lr = {run.lr:.1e}, seed {run.seed}, "
                f"{len(run.history) - 1} epochs: final validation MSE <b>{run.final_val_mse:.4f}</b> = "
                f"{run.final_val_mse / self.oracle_val_mse:.2f} × oracle, λmax = {run.lambda_max:.3g}, final "
                f"attention entropy {run.history['attention_entropy'].iloc[-1]:.3f} nats ({run.wall_time_s:.1f} s)")

    def _figure(self, run: ToyRun) -> plt.Figure:
        """The chapter's own figures, for one run: learning curve, entropy, and the last attention matrix."""
        fig, (curve, entropy, attention) = plt.subplots(1, 3, figsize=(13, 3.4),
                                                        gridspec_kw={"width_ratios": [1.3, 1.0, 0.8]})
        plot_learning_curves([run], self.oracle_val_mse, ax=curve, title="Validation loss")
        plot_entropy([run], self.config.n_channels, ax=entropy)
        entropy.set_title("Attention entropy")
        last = max(run.attention)
        image = plot_attention_matrix(attention, run.attention[last], f"Attention at epoch {last}")
        attention.set_ylabel("query channel")
        fig.colorbar(image, ax=attention, shrink=0.8)
        fig.tight_layout()
        return fig

    def _ipython_display_(self) -> None:
        display(self.ui)
