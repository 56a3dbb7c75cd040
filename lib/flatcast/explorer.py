"""Static-interactive explorers: widgets that keep working in the rendered book, without a kernel.

A chapter declares its controls and their values, and a ``render(**choice)`` function that draws one
choice. :func:`static_explorer` renders *every* combination while the chapter executes and lays the pictures
out in nested :class:`ipywidgets.Stack` containers, one level per control. Each control's index is linked to
the ``selected_index`` of every stack at its level with :func:`ipywidgets.jslink`; such links are widget
models that the html-manager restores from the saved widget state and evaluates in the browser, so moving a
control in the static HTML switches the picture with no kernel and no network (ipywidgets docs, "Widget
Events": "Javascript links persist when embedding widgets in html web pages without a kernel").

A product of controls with ``n_1 × … × n_k`` values costs one picture per combination (page weight: the
sum of the PNGs, base64 inside the page) and ``n_1 + n_1 n_2 + …`` links. Keep grids small (tens of
pictures); :func:`static_explorer` refuses more than ``max_choices``.

In Jupyter with a live kernel, ``live`` (optional) adds a button that calls ``live(**choice)`` for values
outside the precomputed grid (e.g. a retrain); its result replaces the picture below the controls.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt

__all__ = ["static_explorer", "figure_png", "StaticExplorer"]


def figure_png(figure: Any, dpi: int = 80) -> bytes:
    """PNG bytes of a matplotlib figure (closed afterwards), or ``figure`` itself when it is already bytes."""
    if isinstance(figure, (bytes, bytearray)):
        return bytes(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _labelled(values: Sequence[Any]) -> list[tuple[str, int]]:
    return [(value if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value), i)
            for i, value in enumerate(values)]


class StaticExplorer:
    """The widget tree built by :func:`static_explorer` (``explorer.ui``; it displays itself in a notebook).

    ``controls`` maps a control name to its widget (a Dropdown or SelectionSlider whose ``index`` is linked),
    ``pictures`` maps each choice (a tuple of values, in control order) to its PNG bytes, and ``links`` holds the
    jslink objects (kept alive so that they are saved with the notebook's widget state).
    """

    def __init__(self, controls: Mapping[str, Sequence[Any]], render: Callable[..., Any], *,
                 live: Callable[..., Any] | None = None, title: str = "", dpi: int = 80,
                 max_choices: int = 64, slider: Sequence[str] = ()) -> None:
        if not controls:
            raise ValueError("an explorer needs at least one control")
        names = list(controls)
        values = [list(controls[n]) for n in names]
        for name, vals in zip(names, values):
            if not vals:
                raise ValueError(f"control {name!r} has no values")
            if len(set(map(repr, vals))) != len(vals):
                raise ValueError(f"control {name!r} repeats a value: {vals}")
        unknown = set(slider) - set(names)
        if unknown:
            raise ValueError(f"slider names unknown controls {sorted(unknown)}; controls are {names}")
        n_choices = 1
        for vals in values:
            n_choices *= len(vals)
        if n_choices > max_choices:
            raise ValueError(f"{n_choices} combinations exceed max_choices={max_choices}: reduce the grid")
        self.names, self.values = names, values
        self.pictures: dict[tuple, bytes] = {}
        for combo in itertools.product(*values):
            self.pictures[combo] = figure_png(render(**dict(zip(names, combo))), dpi=dpi)

        style = {"description_width": "initial"}
        self.controls: dict[str, widgets.Widget] = {}
        for name, vals in zip(names, values):
            if name in slider:
                w = widgets.SelectionSlider(options=_labelled(vals), value=0, description=name, style=style,
                                            continuous_update=True)
            else:
                w = widgets.Dropdown(options=_labelled(vals), value=0, description=name, style=style)
            self.controls[name] = w

        self.links: list[Any] = []
        self.stacks_by_level: list[list[widgets.Stack]] = [[] for _ in names]
        self.display_area = self._build(0, ())
        self.status = widgets.HTML(value="")
        self.live_output = widgets.Image(format="png", layout=widgets.Layout(display="none"))
        parts: list[widgets.Widget] = []
        if title:
            parts.append(widgets.HTML(value=f"<b>{title}</b>"))
        parts.append(widgets.HBox(list(self.controls.values()), layout=widgets.Layout(flex_flow="row wrap")))
        parts.append(self.display_area)
        self.live = live
        if live is not None:
            self.button = widgets.Button(description="Recompute live (kernel only)", icon="play")
            self.button.on_click(lambda _: self.recompute())
            parts += [self.button, self.status, self.live_output]
        self.ui = widgets.VBox(parts)

    def _build(self, level: int, prefix: tuple) -> widgets.Widget:
        if level == len(self.names):
            return widgets.Image(value=self.pictures[prefix], format="png",
                                 layout=widgets.Layout(max_width="100%"))
        children = [self._build(level + 1, prefix + (v,)) for v in self.values[level]]
        stack = widgets.Stack(children, selected_index=0)
        self.stacks_by_level[level].append(stack)
        self.links.append(widgets.jslink((self.controls[self.names[level]], "index"), (stack, "selected_index")))
        return stack

    def choice(self) -> dict[str, Any]:
        """The values the controls show now."""
        return {name: vals[self.controls[name].index] for name, vals in zip(self.names, self.values)}

    def picture(self, **choice: Any) -> bytes:
        """The precomputed PNG of one choice."""
        return self.pictures[tuple(choice[n] for n in self.names)]

    def recompute(self) -> Any:
        """Call ``live`` with the current choice and show its figure below the controls (needs a kernel)."""
        if self.live is None:
            raise RuntimeError("this explorer has no live function")
        self.status.value = "<i>computing…</i>"
        result = self.live(**self.choice())
        self.live_output.value = figure_png(result)
        self.live_output.layout.display = None
        self.status.value = ""
        return result

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.ui)


def static_explorer(controls: Mapping[str, Sequence[Any]], render: Callable[..., Any], **options: Any
                    ) -> StaticExplorer:
    """Precompute ``render(**choice)`` for every combination of ``controls`` and return a :class:`StaticExplorer`.

    ``render`` returns a matplotlib figure (or PNG bytes). Options: ``live`` (a function of the same keywords,
    called by a button in Jupyter), ``title``, ``dpi`` (default 80), ``max_choices`` (default 64), ``slider``
    (names of controls drawn as sliders instead of dropdowns).
    """
    return StaticExplorer(controls, render, **options)
