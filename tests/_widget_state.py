"""Reads the explorers (flatcast.explorer) out of a built page's saved widget state, with no browser.

A page built by myst-nb carries the notebook's widget state in
``<script type="application/vnd.jupyter.widget-state+json">``; the html-manager restores every model of it in
the browser. This module finds each explorer's box (class ``flatcast-explorer``), its controls (class
``flatcast-control``, in order, with their number of values), its precomputed choices (class
``flatcast-choice-<i>-<j>…``: the picture's bytes and the caption's text) and the link models between controls
and stacks, so that a test can say what the browser must show for each choice.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from dataclasses import dataclass, field

STATE_SCRIPT = re.compile(r'<script type="application/vnd\.jupyter\.widget-state\+json">(.*?)</script>', re.S)
CHOICE = re.compile(r"^flatcast-choice-(\d+(?:-\d+)*)$")


def text_of(fragment: str) -> str:
    """Visible text of an HTML fragment: tags removed, entities decoded, whitespace collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()


def page_state(page_html: str) -> dict:
    """``{model id: {"model_name", "state", "buffers", ...}}`` of a built page (empty without widgets)."""
    found = STATE_SCRIPT.findall(page_html)
    if not found:
        return {}
    if len(found) > 1:
        raise AssertionError(f"{len(found)} widget-state scripts in one page (expected one)")
    return json.loads(found[0])["state"]


def _ref(value) -> str | None:
    return value[len("IPY_MODEL_"):] if isinstance(value, str) and value.startswith("IPY_MODEL_") else None


def _classes(model: dict) -> list[str]:
    return list(model["state"].get("_dom_classes", []))


def _buffer(model: dict, name: str) -> bytes:
    for buf in model.get("buffers", []):
        if buf["path"] == [name]:
            return base64.b64decode(buf["data"])
    value = model["state"].get(name)
    if isinstance(value, str):  # an inline base64 value
        return base64.b64decode(value)
    raise AssertionError(f"model {model.get('model_name')} has no {name!r} buffer")


@dataclass
class Choice:
    indices: tuple[int, ...]
    png: bytes
    caption: str  # visible text of the caption ("" without one)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.png).hexdigest()


@dataclass
class Explorer:
    key: str                       # the flatcast-explorer-<key> class
    controls: list[tuple[str, str, int]]  # (model name, description, number of values), in order
    control_ids: list[str]
    choices: dict[tuple[int, ...], Choice] = field(default_factory=dict)
    stacks: dict[str, int] = field(default_factory=dict)  # stack model id -> its level
    state_bytes: int = 0           # bytes of the explorer's subtree in the state (JSON, pictures base64)


def _walk(state: dict, model_id: str):
    """Every model id reachable from ``model_id`` through children/references (depth first, in order)."""
    seen, order = set(), []

    def visit(mid):
        if mid in seen or mid not in state:
            return
        seen.add(mid)
        order.append(mid)
        for value in state[mid]["state"].values():
            for item in value if isinstance(value, list) else [value]:
                ref = _ref(item)
                if ref:
                    visit(ref)

    visit(model_id)
    return order


def explorers(state: dict) -> list[Explorer]:
    """The explorers of a page's widget state."""
    found = []
    for mid, model in state.items():
        classes = _classes(model)
        if "flatcast-explorer" not in classes:
            continue
        key = next(c.removeprefix("flatcast-explorer-") for c in classes if c.startswith("flatcast-explorer-"))
        subtree = _walk(state, mid)
        controls = [m for m in subtree if "flatcast-control" in _classes(state[m])]
        ex = Explorer(key=key, control_ids=controls,
                      controls=[(state[c]["model_name"], state[c]["state"].get("description", ""),
                                 len(state[c]["state"]["_options_labels"])) for c in controls])
        for m in subtree:
            ex.state_bytes += len(json.dumps(state[m]))
            match = next((CHOICE.match(c) for c in _classes(state[m]) if CHOICE.match(c)), None)
            if match is None:
                continue
            indices = tuple(int(i) for i in match.group(1).split("-"))
            leaf = state[m]
            if leaf["model_name"] == "ImageModel":
                png, caption = _buffer(leaf, "value"), ""
            else:  # a box: caption (HTML) and picture (Image)
                kids = [state[_ref(k)] for k in leaf["state"]["children"]]
                png = _buffer(next(k for k in kids if k["model_name"] == "ImageModel"), "value")
                caption = " ".join(text_of(k["state"]["value"]) for k in kids if k["model_name"] == "HTMLModel")
            ex.choices[indices] = Choice(indices, png, caption)
        found.append(ex)
    # stacks linked to each control (LinkModel: source = (control, "index"), target = (stack, "selected_index"))
    for model in state.values():
        if model["model_name"] not in ("LinkModel", "DirectionalLinkModel"):
            continue
        source, target = model["state"]["source"], model["state"]["target"]
        for ex in found:
            if _ref(source[0]) in ex.control_ids and source[1] == "index" and target[1] == "selected_index":
                ex.stacks[_ref(target[0])] = ex.control_ids.index(_ref(source[0]))
    return found
