"""The static-interactive explorer: every combination precomputed, controls linked to nested stacks."""

import base64
import itertools

import ipywidgets as widgets
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from flatcast.explorer import choice_class, static_explorer


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


def test_controls_and_choices_carry_dom_hooks_and_captions():
    ex = static_explorer({"model": ["a", "b"], "rho": [0.1, 1.0, 3.0]}, _render2, slider=["rho"],
                         caption=lambda model, rho: f"<b>{model}</b> at ρ = {rho}",
                         labels={"model": ["Model A", "Model B"]})
    assert "flatcast-explorer" in ex.ui._dom_classes
    assert all("flatcast-control" in w._dom_classes for w in ex.controls.values())
    assert isinstance(ex.controls["rho"], widgets.SelectionSlider)
    assert ex.controls["model"].options == (("Model A", 0), ("Model B", 1))
    # the leaf under (model index 1, rho index 2) is labelled with its indices and shows its caption and picture
    leaf = ex.display_area.children[1].children[2]
    assert {"flatcast-choice", "flatcast-choice-1-2"} <= set(leaf._dom_classes)
    caption, image = leaf.children
    assert caption.value == "<b>b</b> at ρ = 3.0" == ex.captions[("b", 3.0)]
    assert image.value == ex.picture(model="b", rho=3.0)
    # page weight: base64 of every picture plus the captions
    expected = sum(len(base64.b64encode(p)) for p in ex.pictures.values()) + \
        sum(len(c.encode()) for c in ex.captions.values())
    assert ex.page_bytes == expected


def test_links_connect_each_control_to_every_stack_of_its_level():
    ex = static_explorer({"model": ["a", "b", "c"], "seed": [0, 1], "rho": [1.0, 2.0]}, _render3)
    assert [len(level) for level in ex.stacks_by_level] == [1, 3, 6]
    for level, name in enumerate(ex.names):
        linked = {id(link.target[0]) for link in ex.links if link.source[0] is ex.controls[name]}
        assert linked == {id(stack) for stack in ex.stacks_by_level[level]}
    # every leaf is reachable through exactly the stacks' selected children: choice_class names the path
    for i, m in enumerate("abc"):
        for j, s in enumerate((0, 1)):
            for k, r in enumerate((1.0, 2.0)):
                leaf = ex.display_area.children[i].children[j].children[k]
                assert choice_class((i, j, k)) in leaf._dom_classes
                assert leaf.value == ex.picture(model=m, seed=s, rho=r)


def test_the_page_budget_is_enforced_after_rendering():
    with pytest.raises(ValueError, match="max_bytes"):
        static_explorer({"model": ["a", "b"]}, lambda model: b"\x89PNG" + bytes(3000), max_bytes=2000)
    with pytest.raises(ValueError, match="labels"):
        static_explorer({"model": ["a", "b"]}, _render1, labels={"model": ["only one"]})
    with pytest.raises(ValueError, match="unknown controls"):
        static_explorer({"model": ["a", "b"]}, _render1, labels={"seed": ["x"]})


def _render1(model):
    return _render(model, 0)


def _render2(model, rho):
    return _render(model, rho)


def _render3(model, seed, rho):
    return _render(model, f"{seed}/{rho}")


def test_the_saved_widget_state_holds_every_choice_and_its_links():
    """What the page embeds (ipywidgets.embed, as nbclient saves it): the links as models, each picture once."""
    from ipywidgets.embed import embed_data

    from _widget_state import explorers

    ex = static_explorer({"model": ["a", "b", "c"], "seed": [0, 1]}, _render, slider=["seed"],
                         caption=lambda model, seed: f"<i>{model}</i> seed {seed}")
    state = embed_data(views=[ex.ui])["manager_state"]["state"]  # every live widget, as nbclient saves them
    controls = {f"IPY_MODEL_{w.model_id}" for w in ex.controls.values()}
    links = [m for m in state.values() if m["model_name"] == "LinkModel" and m["state"]["source"][0] in controls]
    assert len(links) == len(ex.links) == 4
    (found,) = [e for e in explorers(state) if e.control_ids == [w.model_id for w in ex.controls.values()]]
    assert found.key == ex.key
    assert found.controls == [("DropdownModel", "model", 3), ("SelectionSliderModel", "seed", 2)]
    assert sorted(found.stacks.values()) == [0, 1, 1, 1]
    for (i, model), (j, seed) in itertools.product(enumerate("abc"), enumerate((0, 1))):
        choice = found.choices[i, j]
        assert choice.png == ex.picture(model=model, seed=seed)
        assert choice.caption == f"{model} seed {seed}"
