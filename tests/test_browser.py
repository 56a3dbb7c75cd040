"""Open every built page of the book in headless Chromium (Debian's ``chromium``).

Needs ``_build/html`` (``make book``) and chromium; without them the tests skip with the reason, unless
``FLATCAST_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where they fail instead. Screenshots of every chapter page
are kept in ``_build/screenshots/<chapter>.png`` to look at.
"""

from __future__ import annotations

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
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=180)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return proc


def _screenshot(url: str, shot: Path, tmp_path: Path) -> None:
    """Screenshot the whole page: grow the window until its bottom is blank, then crop the blank tail."""
    from PIL import Image

    for height in (4000, 8000, 16000, 24000):
        _run(["--virtual-time-budget=5000", f"--window-size=1280,{height}", f"--screenshot={shot}", url], tmp_path)
        with Image.open(shot) as im:
            gray = im.convert("L")
            # 20-px bands of the content column holding anything darker than the background; the theme's
            # footer sits at the bottom of the window, so the page fits when a long blank gap precedes it
            inked = [y for y in range(0, height - 400, 20) if gray.crop((300, y, 950, y + 20)).getextrema()[0] <= 235]
            end = inked[-1] + 20 if inked else 0
            if height - 400 - end >= 400 or height == 24000:
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
