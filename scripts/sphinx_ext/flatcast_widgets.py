"""Sphinx extension staged with the book by scripts/build_book.py: widget scripts tidy, MathJax served locally.

myst-nb registers the widget scripts (require.js, the html-manager embed script and the page's widget state)
through ``app.add_js_file`` during ``html-page-context``, which in Sphinx 7 also puts them in the global
registry: every page ends up loading them, and a page with widgets loads them twice (rendering each widget
twice). This handler runs after myst-nb's and, per page, drops duplicate
scripts and removes the widget scripts from pages that have no widget state. Pages with widget state also get a small MathJax 2 → 3 shim
(``MATHJAX2_SHIM``) that the widget controls need to typeset their labels. The MathJax scripts that
``sphinx.ext.mathjax`` adds the same way are likewise removed from pages without math.

MathJax: ``_config.yml`` sets ``mathjax_path`` to ``mathjax/<component>.js`` (relative, i.e. under the HTML's
``_static/``) instead of Sphinx's CDN default, so math renders offline. When the build finishes, this extension
copies from ``node_modules/mathjax/es5`` (``npm ci``, see package.json) only what that combined component
needs into ``_static/mathjax/``: the component itself, the TeX extensions it may autoload (``\\boldsymbol``,
``\\cancel``, ...) and, for CommonHTML output (``tex-chtml``), its woff-v2 fonts, which MathJax loads relative
to its own script. ``mathjax3_config`` (myst-nb's ``processHtmlClass``) and the ``\\(``/``\\[`` delimiters are
untouched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.errors import ExtensionError

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# The widget controls typeset labels with MathJax 2's ``MathJax.Hub.Queue(["Typeset", MathJax.Hub, el])``
# whenever ``window.MathJax`` exists (@jupyter-widgets/controls ``typeset``); the book loads MathJax 3, which
# has no ``Hub``, so every labelled widget threw "Cannot read properties of undefined (reading 'Queue')" on pages
# with math. This shim, put before the widget scripts on pages with widget state, maps ``Hub.Queue`` to MathJax 3's
# ``typesetPromise`` once MathJax (a deferred script) has run, i.e. before the widgets render on ``load``.
MATHJAX2_SHIM = (
    "document.addEventListener('DOMContentLoaded', function () {"
    " var mj = window.MathJax; if (!mj || mj.Hub) { return; }"
    " mj.Hub = {Queue: function (job) {"
    "  var el = job && job[2];"
    "  if (el && mj.typesetPromise) { (mj.startup && mj.startup.promise || Promise.resolve())"
    "   .then(function () { return mj.typesetPromise([el]); }).catch(function () {}); } }}; });")
MATHJAX_PREFIX = "mathjax/"  # mathjax_path values under _static/ that this extension serves
MATHJAX_ES5 = Path("node_modules") / "mathjax" / "es5"


def _name(js) -> str:
    return str(getattr(js, "filename", js) or "").removeprefix("_static/")


def _tidy_scripts(app, pagename, templatename, context, doctree):
    files = context.get("script_files")
    if not files:
        return
    widget_js = set(app.config.nb_ipywidgets_js or {})
    has_state = any(getattr(js, "attributes", {}).get("type") == WIDGET_STATE for js in files)
    has_math = (app.registry.html_assets_policy == "always"
                or app.env.get_domain("math").has_equations(pagename))
    mathjax_js = str(app.config.mathjax_path or "")
    seen, kept = set(), []
    for js in files:
        attrs = getattr(js, "attributes", {}) or {}
        name = _name(js)
        key = (name, attrs.get("type"), attrs.get("body"))
        if key in seen:
            continue
        if not has_state and (name in widget_js or attrs.get("type") == WIDGET_STATE):
            continue
        if not has_math and (name == mathjax_js or str(attrs.get("body", "")).startswith("window.MathJax =")):
            continue
        if not has_state and str(attrs.get("body", "")) == MATHJAX2_SHIM:
            continue
        seen.add(key)
        kept.append(js)
    files[:] = kept


def _local_mathjax(app) -> str | None:
    """The combined component (e.g. ``tex-chtml``) named by a local ``mathjax_path``, or None for a URL."""
    path = str(app.config.mathjax_path or "")
    if not path.startswith(MATHJAX_PREFIX):
        return None
    component = path.removeprefix(MATHJAX_PREFIX)
    if "/" in component or not component.endswith(".js"):
        raise ExtensionError(f"mathjax_path {path!r}: expected {MATHJAX_PREFIX}<component>.js, e.g. "
                             f"{MATHJAX_PREFIX}tex-chtml.js")
    return component.removesuffix(".js")


def _mathjax_source(app) -> Path:
    """``node_modules/mathjax/es5`` of the project: looked for above the (staged) source folder."""
    start = Path(app.srcdir).resolve()
    for folder in (start, *start.parents):
        if (folder / MATHJAX_ES5).is_dir():
            return folder / MATHJAX_ES5
    raise ExtensionError(f"{MATHJAX_ES5} not found above {start}: run `npm ci` (make book does) so math "
                         "renders offline")


def _check_mathjax(app):
    component = _local_mathjax(app)
    if component and app.builder.format == "html":
        src = _mathjax_source(app)
        if not (src / f"{component}.js").is_file():
            raise ExtensionError(f"{src / (component + '.js')} does not exist (mathjax_path "
                                 f"{app.config.mathjax_path!r})")


def _copy_mathjax(app, exception):
    component = _local_mathjax(app)
    if exception is not None or not component or app.builder.format != "html":
        return
    src = _mathjax_source(app)
    dest = Path(app.outdir) / "_static" / "mathjax"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(src / f"{component}.js", dest)
    parts = ["input/tex/extensions"] if component.startswith("tex") else []
    if "chtml" in component:
        parts.append("output/chtml/fonts/woff-v2")
    for part in parts:
        shutil.copytree(src / part, dest / part)


def setup(app):
    app.add_js_file(None, body=MATHJAX2_SHIM, priority=100)  # early: before require.js and the embed script
    app.connect("html-page-context", _tidy_scripts, priority=900)
    app.connect("builder-inited", _check_mathjax)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
