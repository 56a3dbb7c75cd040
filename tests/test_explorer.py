"""The static-interactive explorer: every combination precomputed, controls linked to nested stacks."""

import ipywidgets as widgets
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from flatcast.explorer import static_explorer


def _render(model, seed):
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.set_title(f"{model} {seed}")
    return fig


def test_every_combination_is_precomputed_and_linked():
    ex = static_explorer({"model": ["a", "b", "c"], "seed": [0, 1]}, _render)
    assert set(ex.pictures) == {(m, s) for m in "abc" for s in (0, 1)}
    assert len({ex.pictures[k] for k in ex.pictures}) == 6  # six different pictures
    # one stack at the first level, three at the second; one link per stack
    assert [len(level) for level in ex.stacks_by_level] == [1, 3]
    assert len(ex.links) == 4
    for link in ex.links:
        assert type(link).__name__ == "Link" and link.source[1] == "index" and link.target[1] == "selected_index"
    # the image under (model index 2, seed index 1) is that choice's picture
    leaf = ex.display_area.children[2].children[1]
    assert leaf.value == ex.picture(model="c", seed=1)


def test_bad_grids_are_refused_before_rendering():
    calls = []

    def render(**choice):
        calls.append(choice)
        return _render(**choice)

    with pytest.raises(ValueError, match="max_choices"):
        static_explorer({"model": list("abcdefghi"), "seed": list(range(10))}, render)
    with pytest.raises(ValueError, match="no values"):
        static_explorer({"model": []}, render)
    with pytest.raises(ValueError, match="repeats"):
        static_explorer({"model": ["a", "a"]}, render)
    assert calls == []


def test_live_recompute_shows_the_current_choice():
    ex = static_explorer({"model": ["a", "b"], "seed": [0]}, _render, live=_render)
    ex.controls["model"].index = 1
    assert ex.choice() == {"model": "b", "seed": 0}
    ex.recompute()
    assert ex.live_output.value[:8] == b"\x89PNG\r\n\x1a\n"
