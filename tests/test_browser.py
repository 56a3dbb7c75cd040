"""Open every built page of the book in headless Chromium (Debian's ``chromium``).

Needs ``_build/html`` (``make book``) and chromium; without them the tests skip with the reason, unless
``FLATCAST_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where they fail instead. Screenshots of every chapter page
are kept in ``_build/screenshots/<chapter>.png`` to look at.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from _book import load

bb = load()
pytestmark = pytest.mark.browser
SHOTS = bb.BUILD / "screenshots"
CHAPTERS = bb.toc_chapters()
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]
ERROR_CLASSES = ("output_error", "traceback", "jupyter-widgets-error")


def _chromium() -> str:
    required = os.environ.get("FLATCAST_REQUIRE_BROWSER") == "1"
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    problem = None
    if exe is None:
        problem = "chromium is not installed (apt-get install chromium)"
    elif not (bb.HTML / "index.html").is_file():
        problem = f"{bb.HTML / 'index.html'} is missing: run `make book` first"
    if problem:
        if required:
            pytest.fail(problem)
        pytest.skip(problem)
    return exe


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [_chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return proc


def _screenshot(url: str, shot: Path, tmp_path: Path) -> None:
    """Screenshot the whole page: grow the window until its bottom is blank, then crop the blank tail."""
    from PIL import Image

    # at most 16000 px: taller windows exceed Chromium's 16384-px surface limit and the screenshot hangs
    for height in (4000, 8000, 16000):
        _run(["--virtual-time-budget=5000", f"--window-size=1280,{height}", f"--screenshot={shot}", url], tmp_path)
        with Image.open(shot) as im:
            gray = im.convert("L")
            # 20-px bands of the content column holding anything darker than the background; the theme's
            # footer sits at the bottom of the window, so the page fits when a long blank gap precedes it
            inked = [y for y in range(0, height - 400, 20) if gray.crop((300, y, 950, y + 20)).getextrema()[0] <= 235]
            end = inked[-1] + 20 if inked else 0
            if height - 400 - end >= 400 or height == 16000:
                im.crop((0, 0, 1280, min(height, end + 80))).save(shot)
                return


class _Page(HTMLParser):
    """Collects <img> sources and the class names of every element of a DOM dump."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.classes: list[str] = []
        self.redirect = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        if a.get("class"):
            self.classes.extend(a["class"].split())
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "refresh":
            self.redirect = a.get("content")


def _page_path(chapter: str) -> Path:
    return bb.HTML / CHAPTERS[chapter].relative_to(bb.ROOT).with_suffix(".html")


def _has_math(chapter: str) -> bool:
    """Whether the chapter's source has math: $..$, $$..$$ or an environment in markdown, or a LaTeX output."""
    nb = json.loads((bb.EXECUTED / f"{chapter}.ipynb").read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown":
            src = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", src, flags=re.S))  # not in code
            if re.search(r"\$\$|(?<![\\$])\$[^$\s][^$\n]*\$|\\begin\{", src):
                return True
        for out in cell.get("outputs", []):
            if "text/latex" in out.get("data", {}):
                return True
    return False


def _visible_text(dom: str) -> str:
    """Text a reader sees: like _text, without scripts, styles, code blocks and MathJax's hidden MathML copy."""
    for tag in ("script", "style", "pre", "mjx-assistive-mml"):
        dom = re.sub(rf"<{tag}\b.*?</{tag}>", " ", dom, flags=re.S | re.I)
    return _text(dom)


def _text(dom: str) -> str:
    """Visible-ish text of a DOM dump: tags removed, entities decoded, whitespace collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def test_index_redirects_to_intro(tmp_path):
    _chromium()
    page = _Page()
    page.feed((bb.HTML / "index.html").read_text())
    root = CHAPTERS[next(iter(CHAPTERS))].relative_to(bb.ROOT).with_suffix(".html")
    assert page.redirect and str(root) in page.redirect, f"index.html must lead to {root}, got {page.redirect!r}"


@pytest.mark.parametrize("chapter", list(CHAPTERS))
def test_chapter_page(chapter, tmp_path):
    path = _page_path(chapter)
    if not path.is_file():
        pytest.fail(f"{path} was not built: is {chapter!r} in the last `make book CHAPTERS=...`?")
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"{chapter}.png"
    shot.unlink(missing_ok=True)
    url = path.resolve().as_uri()
    _screenshot(url, shot, tmp_path)
    assert shot.is_file() and shot.stat().st_size > 20_000, f"no real screenshot of {chapter} at {shot}"
    dom = _run(["--virtual-time-budget=5000", "--dump-dom", url], tmp_path).stdout
    page = _Page()
    page.feed(dom)

    # figures: at least one output image, and every image file exists
    figures = [src for src in page.images if "_images/" in src]
    assert figures, f"{chapter}: the page shows no figure"
    for src in figures:
        img = (path.parent / src.split("?")[0]).resolve()
        assert img.is_file() and img.stat().st_size > 1000, f"{chapter}: figure {src} is missing or empty"

    # no error output
    bad = sorted({c for c in page.classes if c in ERROR_CLASSES})
    assert not bad, f"{chapter}: error output on the page (classes {bad})"
    text = _text(dom)
    assert "Traceback (most recent call last)" not in text, f"{chapter}: a traceback is shown"
    stderr_blocks = re.findall(r'class="output stderr".*?</div>', dom, flags=re.S)
    for block in stderr_blocks:
        assert not re.search(r"Error|Traceback", _text(block)), f"{chapter}: error on stderr: {_text(block)[:500]}"

    # parameter cells are hidden
    assert "injected-parameters" not in dom and 'profile = "quick"' not in text, \
        f"{chapter}: the parameters cell is visible"

    # no script from another host: MathJax and the widget scripts are served from the book's _static/
    remote = re.findall(r'<script[^>]*\ssrc="(https?://[^"]*)"', dom)
    assert not remote, f"{chapter}: scripts loaded from the network, which the book must not need: {remote}"

    # math: typeset by the local MathJax (mjx-container per formula, no raw \( or \[ left, no TeX errors)
    if _has_math(chapter):
        static = path.read_text()
        formulas = static.count('class="math notranslate nohighlight"')
        assert formulas, f"{chapter}: the source has math but the built page has no math element"
        assert "_static/mathjax/" in static, f"{chapter}: MathJax is not loaded from _static/mathjax/"
        if "_static/mathjax/tex-chtml" in static:  # CommonHTML output loads its fonts relative to its script
            fonts = bb.HTML / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
            assert len(list(fonts.glob("*.woff"))) > 20, f"{chapter}: MathJax's fonts are missing from {fonts}"
        containers = dom.count("<mjx-container")
        assert containers >= formulas, \
            f"{chapter}: MathJax rendered {containers} of {formulas} formulas (is _static/mathjax/ served?)"
        visible = _visible_text(dom)
        raw = re.findall(r".{0,40}\\[(\[].{0,40}", visible)
        assert not raw, f"{chapter}: raw TeX left in the page: {raw[:3]}"
        assert "<mjx-merror" not in dom, f"{chapter}: MathJax reports a TeX error: " + \
            _text(dom.split("<mjx-merror", 1)[1])[:200]

    # widgets: rendered by the offline embed script when the chapter has any
    executed = json.loads((bb.EXECUTED / f"{chapter}.ipynb").read_text())
    state = executed["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    views = dom.count("application/vnd.jupyter.widget-view+json")
    if state.get("state") and views:
        rendered = [c for c in page.classes if c == "jupyter-widgets"]
        assert rendered, f"{chapter}: {views} widget(s) in the page but none rendered (is embed-amd.js served?)"


# ------------------------------------------------------------------------------------ static-interactive explorers
# flatcast.explorer.static_explorer precomputes every choice and links the controls to stacks in the browser
# (jslink). These tests prove it works in the built page, offline: Playwright (PyPI package, no browser download)
# drives the system Chromium, with the network blocked, moves every control of every explorer, and compares the
# picture shown (bytes of the <img>) and its caption with the ones the page's widget state saved for that choice.

from _widget_state import STATE_SCRIPT, explorers, page_state, text_of  # noqa: E402

from flatcast.explorer import PAGE_BUDGET_BYTES, choice_class  # noqa: E402

#: Chapters that must have an explorer (the test fails when its page has none).
EXPLORER_CHAPTERS = ("toy_problem", "sharpness", "attention", "eeo", "oce", "benchmark")
#: Whole page budget: the HTML (with its widget state) plus the figures it references; the book's shared
#: scripts under _static/ (widget manager, require.js, MathJax), loaded once for every page, are not counted.
PAGE_WEIGHT_BUDGET_BYTES = 6_000_000
EXPLORER_SHOTS = bb.BUILD / "screenshots" / "explorers"
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
PW_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
            "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]

_SHOWN = """root => [...root.querySelectorAll('.flatcast-choice')]
    .filter(el => el.checkVisibility())
    .map(el => {
        const img = el.tagName === 'IMG' ? el : el.querySelector('img');
        return {cls: [...el.classList].find(c => /^flatcast-choice-[0-9]/.test(c)) || '',
                src: img ? img.src : '', text: el.innerText || ''};
    })"""
_IMAGE_BYTES = """async src => {
    const bytes = new Uint8Array(await (await fetch(src)).arrayBuffer());
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s);
}"""


def _built(chapter: str) -> Path:
    path = _page_path(chapter)
    if not path.is_file():
        problem = f"{path} was not built: is {chapter!r} in the last `make book CHAPTERS=...`?"
        if os.environ.get("FLATCAST_REQUIRE_BROWSER") == "1" or (bb.HTML / "index.html").is_file():
            pytest.fail(problem)
        pytest.skip(problem)
    return path


def _page_weight(path: Path) -> dict[str, int]:
    """Bytes of a built page: its HTML (widget state inline) and the distinct figures under _images/ it shows."""
    page = _Page()
    text = path.read_text()
    page.feed(text)
    images = {(path.parent / src.split("?")[0]).resolve() for src in page.images if "_images/" in src}
    state = page_state(text)
    explorer_bytes = sum(ex.state_bytes for ex in explorers(state)) if state else 0
    return {"html": path.stat().st_size, "images": sum(p.stat().st_size for p in images if p.is_file()),
            "widget_state": sum(len(m.group(0)) for m in re.finditer(
                r'<script type="application/vnd\.jupyter\.widget-state\+json">.*?</script>', text, re.S)),
            "explorers": explorer_bytes}


@pytest.mark.parametrize("chapter", list(CHAPTERS))
def test_page_weight_budget(chapter):
    """Explorers add ≤ PAGE_BUDGET_BYTES (3 MB) to a chapter page; the whole page (HTML + figures) ≤ 6 MB."""
    path = _built(chapter)
    w = _page_weight(path)
    total = w["html"] + w["images"]
    print(f"{chapter}: page {total / 1e6:.2f} MB = HTML {w['html'] / 1e6:.2f} MB (widget state "
          f"{w['widget_state'] / 1e6:.2f} MB, of which explorers {w['explorers'] / 1e6:.2f} MB) + figures "
          f"{w['images'] / 1e6:.2f} MB")
    assert w["explorers"] <= PAGE_BUDGET_BYTES, \
        f"{chapter}: explorers weigh {w['explorers'] / 1e6:.2f} MB, over the {PAGE_BUDGET_BYTES / 1e6:.0f} MB budget"
    assert total <= PAGE_WEIGHT_BUDGET_BYTES, \
        f"{chapter}: the page weighs {total / 1e6:.2f} MB, over the {PAGE_WEIGHT_BUDGET_BYTES / 1e6:.0f} MB budget"


@pytest.mark.parametrize("chapter", list(CHAPTERS))
def test_explorer_links_are_saved(chapter):
    """Without a browser: each explorer's controls are linked (jslink models in the page) to every stack of their
    level, and every combination of the controls' values has its precomputed picture."""
    path = _built(chapter)
    found = explorers(page_state(path.read_text()))
    if not found:
        if chapter in EXPLORER_CHAPTERS:
            pytest.fail(f"{chapter}: the page has no explorer (class flatcast-explorer in its widget state)")
        pytest.skip(f"{chapter} has no explorer")
    for ex in found:
        sizes = [n for _, _, n in ex.controls]
        assert sizes, f"{chapter}: explorer {ex.key} has no control"
        expected = 1
        for n in sizes:
            expected *= n
        assert len(ex.choices) == expected, f"{chapter}: {len(ex.choices)} pictures for {sizes} values"
        levels = sorted(set(ex.stacks.values()))
        assert levels == list(range(len(sizes))), f"{chapter}: controls without a link to a stack: {levels}"
        stacks_per_level = [sum(1 for v in ex.stacks.values() if v == level) for level in levels]
        assert stacks_per_level == [expected // _prod(sizes[level:]) for level in levels]


def _prod(values):
    out = 1
    for v in values:
        out *= v
    return out


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the playwright package is not installed (it is in requirements.txt: make venv)"
        if os.environ.get("FLATCAST_REQUIRE_BROWSER") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    return sync_playwright


def _shown(root) -> dict:
    shown = root.evaluate(_SHOWN)
    assert len(shown) == 1, f"expected one precomputed choice on screen, got {[s['cls'] for s in shown]}"
    return shown[0]


def _set_control(control, kind: str, index: int, current: int) -> None:
    if kind == "DropdownModel":
        control.locator("select").select_option(index=index)
    else:  # a SelectionSlider (noUiSlider): keyboard on its handle, one step per value
        handle = control.locator(".noUi-handle").first
        handle.focus()
        key = "ArrowRight" if index > current else "ArrowLeft"
        for _ in range(abs(index - current)):
            handle.press(key)


@pytest.mark.parametrize("chapter", list(CHAPTERS))
def test_explorers_respond_offline(chapter):
    """Move every control of every explorer in the built page (file://, network blocked): the picture and caption
    shown must become the ones saved for the new choice, and no request may leave the machine."""
    path = _built(chapter)
    found = explorers(page_state(path.read_text()))
    if not found:
        if chapter in EXPLORER_CHAPTERS:
            pytest.fail(f"{chapter}: the page has no explorer (class flatcast-explorer in its widget state)")
        pytest.skip(f"{chapter} has no explorer")
    moves = _exercise(path, found, chapter, shots=EXPLORER_SHOTS)
    print(f"{chapter}: {len(found)} explorer(s), {moves} control moves checked offline; screenshots in "
          f"{EXPLORER_SHOTS}")


def test_a_dead_control_fails_the_check():
    """The check above can fail: in a copy of the toy page whose link models are removed from the widget state,
    moving a control changes nothing, and _exercise says so."""
    path = _built("toy_problem")
    text = path.read_text()
    state_json = STATE_SCRIPT.search(text)
    data = json.loads(state_json.group(1))
    dead = {k: v for k, v in data["state"].items() if v["model_name"] not in ("LinkModel", "DirectionalLinkModel")}
    assert len(dead) < len(data["state"]), "the toy page has no link models"
    found = explorers(data["state"])
    data["state"] = dead
    copy = path.with_name(path.stem + "-dead-links.html")  # beside the page, so its relative _static/ paths hold
    copy.write_text(text[:state_json.start(1)] + json.dumps(data) + text[state_json.end(1):])
    try:
        with pytest.raises(AssertionError, match="did not switch"):
            _exercise(copy, found, "toy_problem without links", shots=None, wait_s=2)
    finally:
        copy.unlink()


def _exercise(path: Path, found: list, label: str, shots: Path | None, wait_s: float = 10) -> int:
    """Open ``path`` offline, move each control of each explorer in ``found`` and check what is shown."""
    exe = _chromium()
    sync_playwright = _playwright()
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    requests, errors, moves = [], [], 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=PW_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1600}, offline=True,
                                          service_workers="block")
            context.on("request", lambda request: requests.append(request.url))
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(LOCAL_SCHEMES)
                          else route.abort("internetdisconnected"))
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(path.resolve().as_uri(), wait_until="load")
            for e, ex in enumerate(found):
                root = page.locator(f".flatcast-explorer-{ex.key}")
                root.locator(".flatcast-choice img, img.flatcast-choice").first.wait_for(state="visible", timeout=30_000)
                root.scroll_into_view_if_needed()
                current = [0] * len(ex.controls)
                _expect_shown(page, root, ex, current, f"{label} explorer {e} on load", wait_s)
                if shots is not None:
                    root.screenshot(path=shots / f"{label}-{e}-0-before.png")
                controls = root.locator(".flatcast-control")
                assert controls.count() == len(ex.controls), f"{label}: {controls.count()} controls on the page"
                for level, (kind, name, n) in enumerate(ex.controls):
                    if n < 2:
                        continue
                    for target in (n - 1, 0) if level == 0 else (n - 1,):  # there and back for the first
                        _set_control(controls.nth(level), kind, target, current[level])
                        current[level] = target
                        _expect_shown(page, root, ex, current, f"{label} explorer {e} after {name} → {target}", wait_s)
                        moves += 1
                        if shots is not None:
                            root.screenshot(path=shots / f"{label}-{e}-{level + 1}-after-{name}-{target}.png")
        finally:
            browser.close()
    assert not errors, f"{label}: JavaScript errors: {errors[:3]}"
    remote = [u for u in requests if not u.startswith(LOCAL_SCHEMES)]
    assert not remote, f"{label}: requests left the machine: {remote[:5]}"
    assert any(u.startswith("file:") for u in requests), "no request was recorded at all: is the recording broken?"
    return moves


def _expect_shown(page, root, ex, indices, what: str, wait_s: float = 10) -> None:
    """Wait (≤ ``wait_s``) until the choice ``indices`` is on screen; check its picture bytes and caption."""
    want = choice_class(indices)
    shown = _shown(root)
    for _ in range(int(wait_s * 10)):
        if shown["cls"] == want:
            break
        page.wait_for_timeout(100)
        shown = _shown(root)
    assert shown["cls"] == want, f"{what}: shows {shown['cls']}, expected {want} (the control did not switch)"
    expected = ex.choices[tuple(indices)]
    png = base64.b64decode(page.evaluate(_IMAGE_BYTES, shown["src"]))
    assert hashlib.sha256(png).hexdigest() == expected.sha256, f"{what}: the picture is not the one saved for {want}"
    if expected.caption:  # compared without whitespace: tags become spaces in text_of, not in innerText
        assert re.sub(r"\s+", "", shown["text"]) == re.sub(r"\s+", "", expected.caption), \
            f"{what}: caption {text_of(shown['text'])!r} != saved {expected.caption!r}"
    twins = [k for k, c in ex.choices.items()
             if k != tuple(indices) and (c.sha256, c.caption) == (expected.sha256, expected.caption)]
    assert not twins, f"{what}: choices {twins} show the same picture and caption, so the check cannot tell them apart"
