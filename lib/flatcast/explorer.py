"""Static-interactive explorers: widgets that keep working in the rendered book, without a kernel.

A chapter declares its controls and their values, and a ``render(**choice)`` function that draws one
choice. :func:`static_explorer` renders *every* combination while the chapter executes and lays the pictures
out in nested :class:`ipywidgets.Stack` containers, one level per control. Each control's index is linked to
the ``selected_index`` of every stack at its level with :func:`ipywidgets.jslink`; such links are widget
models that the html-manager restores from the saved widget state and evaluates in the browser, so moving a
control in the static HTML switches the picture with no kernel and no network (ipywidgets docs, "Widget
Events": "Javascript links persist when embedding widgets in html web pages without a kernel").
``tests/test_browser.py::test_explorers_respond_offline`` checks this in headless Chromium against the built
book: it moves every control of every explorer and compares the picture shown with the one saved for that choice.

Cost of a product of controls with ``n_1 × … × n_k`` values: one picture per combination, stored base64
inside the page's widget state (:attr:`StaticExplorer.page_bytes` measures it), and ``n_1 + n_1 n_2 + …``
stacks and links (a few hundred bytes of JSON each). The budget is :data:`PAGE_BUDGET_BYTES` (3 MB) of
explorer pictures per chapter page; :func:`static_explorer` refuses more than ``max_choices`` combinations
before rendering anything, and more than ``max_bytes`` of pictures once they are drawn (lower ``dpi`` or the
figure size, or shrink the grid).

In Jupyter with a live kernel, ``live`` (optional) adds a button that calls ``live(**choice)`` with the
current choice (e.g. a retrain); its figure replaces the picture below the controls. Controls for values
outside the grid belong to the chapter's own live panel (see ``flatcast.experiments.toy_explorer``).

DOM hooks (for tests and styling): the explorer's box has the classes ``flatcast-explorer`` and
``flatcast-explorer-<key>`` (:attr:`StaticExplorer.key`, a digest of its pictures); its controls
``flatcast-control``; each precomputed choice (a picture, with its caption when ``caption`` is given) the
classes ``flatcast-choice`` and ``flatcast-choice-<i>-<j>…`` (the index of each control's value).
"""

from __future__ import annotations

import hashlib
import io
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt

__all__ = ["static_explorer", "figure_png", "StaticExplorer", "PAGE_BUDGET_BYTES", "choice_class"]

#: Page weight that a chapter's explorers may add to its HTML page (pictures, base64): 3 MB.
PAGE_BUDGET_BYTES = 3_000_000


def figure_png(figure: Any, dpi: int = 80) -> bytes:
    """PNG bytes of a matplotlib figure (closed afterwards), or ``figure`` itself when it is already bytes."""
    if isinstance(figure, (bytes, bytearray)):
        return bytes(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def choice_class(indices: Sequence[int]) -> str:
    """The DOM class of the precomputed choice whose controls show the values at ``indices``."""
    return "flatcast-choice-" + "-".join(str(int(i)) for i in indices)


def _label(value: Any) -> str:
    return value if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)


def _labelled(values: Sequence[Any]) -> list[tuple[str, int]]:
    return [(_label(value), i) for i, value in enumerate(values)]


class StaticExplorer:
    """The widget tree built by :func:`static_explorer` (``explorer.ui``; it displays itself in a notebook).

    ``controls`` maps a control name to its widget (a Dropdown or SelectionSlider whose ``index`` is linked),
    ``pictures`` maps each choice (a tuple of values, in control order) to its PNG bytes, ``captions`` to its
    caption (HTML; empty without ``caption``), and ``links`` holds the jslink objects (kept alive so that they
    are saved with the notebook's widget state).
    """

    def __init__(self, controls: Mapping[str, Sequence[Any]], render: Callable[..., Any], *,
                 live: Callable[..., Any] | None = None, title: str = "", dpi: int = 80,
                 max_choices: int = 64, slider: Sequence[str] = (),
                 caption: Callable[..., str] | None = None, labels: Mapping[str, Sequence[str]] | None = None,
                 max_bytes: int = PAGE_BUDGET_BYTES, live_description: str = "Recompute live (kernel only)"
                 ) -> None:
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
        labels = dict(labels or {})
        unknown = set(labels) - set(names)
        if unknown:
            raise ValueError(f"labels name unknown controls {sorted(unknown)}; controls are {names}")
        for name, vals in zip(names, values):
            if name in labels and len(labels[name]) != len(vals):
                raise ValueError(f"control {name!r} has {len(vals)} values but {len(labels[name])} labels")
        n_choices = 1
        for vals in values:
            n_choices *= len(vals)
        if n_choices > max_choices:
            raise ValueError(f"{n_choices} combinations exceed max_choices={max_choices}: reduce the grid")
        self.names, self.values = names, values
        self.pictures: dict[tuple, bytes] = {}
        self.captions: dict[tuple, str] = {}
        for combo in itertools.product(*values):
            choice = dict(zip(names, combo))
            self.pictures[combo] = figure_png(render(**choice), dpi=dpi)
            self.captions[combo] = caption(**choice) if caption is not None else ""
        if self.page_bytes > max_bytes:
            raise ValueError(f"the explorer's {n_choices} pictures weigh {self.page_bytes / 1e6:.2f} MB in the page "
                             f"(base64), over max_bytes={max_bytes / 1e6:.2f} MB: lower dpi (now {dpi}), draw "
                             f"smaller figures or shrink the grid")

        style = {"description_width": "initial"}
        self.controls: dict[str, widgets.Widget] = {}
        for name, vals in zip(names, values):
            options = list(zip(labels[name], range(len(vals)))) if name in labels else _labelled(vals)
            if name in slider:
                w = widgets.SelectionSlider(options=options, value=0, description=name, style=style,
                                            continuous_update=True)
            else:
                w = widgets.Dropdown(options=options, value=0, description=name, style=style)
            w.add_class("flatcast-control")
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
            self.button = widgets.Button(description=live_description, icon="play",
                                         layout=widgets.Layout(width="auto"))
            self.button.on_click(lambda _: self.recompute())
            parts += [self.button, self.status, self.live_output]
        self.ui = widgets.VBox(parts)
        self.ui.add_class("flatcast-explorer")
        self.ui.add_class(f"flatcast-explorer-{self.key}")

    @property
    def key(self) -> str:
        """A short digest of the pictures (in grid order): tells this explorer's box from others on a page."""
        digest = hashlib.sha1()
        for picture in self.pictures.values():
            digest.update(hashlib.sha1(picture).digest())
        return digest.hexdigest()[:12]

    @property
    def page_bytes(self) -> int:
        """Bytes the precomputed choices add to the page: the pictures base64-encoded, plus the captions."""
        return sum(4 * ((len(p) + 2) // 3) for p in self.pictures.values()) + \
            sum(len(c.encode()) for c in self.captions.values())

    def _leaf(self, prefix: tuple, indices: tuple[int, ...]) -> widgets.Widget:
        image = widgets.Image(value=self.pictures[prefix], format="png", layout=widgets.Layout(max_width="100%"))
        text = self.captions[prefix]
        leaf: widgets.Widget = widgets.VBox([widgets.HTML(value=text), image]) if text else image
        leaf.add_class("flatcast-choice")
        leaf.add_class(choice_class(indices))
        return leaf

    def _build(self, level: int, prefix: tuple, indices: tuple[int, ...] = ()) -> widgets.Widget:
        if level == len(self.names):
            return self._leaf(prefix, indices)
        children = [self._build(level + 1, prefix + (v,), indices + (i,)) for i, v in enumerate(self.values[level])]
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
    (names of controls drawn as sliders instead of dropdowns), ``caption`` (a function of the same keywords
    returning HTML shown above each picture, precomputed too), ``labels`` (``{control: [label per value]}``
    shown instead of the values), ``max_bytes`` (default :data:`PAGE_BUDGET_BYTES`), ``live_description``
    (the live button's text).
    """
    return StaticExplorer(controls, render, **options)
