"""An ipywidgets explorer for the toy problem: pick a model, optimizer, ρ, learning rate, epochs and seed,
retrain at the quick scale and redraw.

The explorer trains on construction, so the executed notebook (and the static HTML built from it) shows a
figure even without a live kernel; in Jupyter, the *Train* button retrains with the widgets' values.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display

from flatcast.data.splits import Splits

from .toy import MODEL_KINDS, MODEL_LABELS, OPTIMIZER_LABELS, OPTIMIZERS, ToyConfig, ToyRun, train_toy
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
    """Widgets → :func:`~flatcast.experiments.toy.train_toy` → a three-panel figure and a one-line summary.

    ``explorer.ui`` is the widget tree (an explorer displays itself in a notebook); ``explorer.train()`` is what
    the button calls; ``explorer.last_run`` holds the latest :class:`ToyRun`, ``explorer.status.value`` its
    summary line and ``explorer.figure.value`` the PNG of its figure.
    """

    def __init__(self, splits: Splits, config: ToyConfig, oracle_val_mse: float, epochs: int = 10,
                 train_now: bool = True) -> None:
        self.splits, self.config, self.oracle_val_mse = splits, config, float(oracle_val_mse)
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
        self.figure = widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width="1100px"))
        self.button.on_click(lambda _: self.train())
        controls = widgets.VBox([self.model, self.optimizer, self.rho, self.lr, self.epochs,
                                 widgets.HBox([self.seed, self.button])])
        self.ui = widgets.VBox([controls, self.status, self.figure])
        self.last_run: ToyRun | None = None
        if train_now:
            self.train()

    def choice(self) -> _Choice:
        optimizer = None if self.optimizer.value == _OWN else self.optimizer.value
        return _Choice(self.model.value, optimizer, float(self.rho.value), float(self.lr.value), int(self.epochs.value),
                       int(self.seed.value))

    def train(self) -> ToyRun:
        """Retrain with the widgets' current values, redraw the figure and update the status line."""
        c = self.choice()
        self.status.value = f"<i>training {MODEL_LABELS[c.kind]} for {c.epochs} epochs…</i>"
        run = train_toy(c.kind, self.splits, self.config, c.seed, optimizer=c.optimizer, lr=c.lr, rho=c.rho,
                        epochs=c.epochs)
        self.last_run = run
        optimizer = OPTIMIZER_LABELS[run.optimizer]
        rho = f", ρ = {run.rho:.3g}" if run.rho is not None else ""
        self.status.value = (
            f"<b>{run.label}</b> with {optimizer}{rho}, lr = {run.lr:.1e}, seed {run.seed}: final validation MSE "
            f"<b>{run.final_val_mse:.4f}</b> = {run.final_val_mse / self.oracle_val_mse:.2f} × oracle, "
            f"λmax = {run.lambda_max:.3g}, final attention entropy "
            f"{run.history['attention_entropy'].iloc[-1]:.3f} nats ({run.wall_time_s:.1f} s)")
        fig = self._figure(run)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        self.figure.value = buffer.getvalue()  # an Image widget: also shown in the static HTML
        return run

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
