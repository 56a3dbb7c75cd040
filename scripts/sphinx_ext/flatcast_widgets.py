"""Sphinx extension staged with the book by scripts/build_book.py: keep the ipywidgets scripts tidy.

myst-nb registers the widget scripts (require.js, the html-manager embed script and the page's widget state)
through ``app.add_js_file`` during ``html-page-context``, which in Sphinx 7 also puts them in the global
registry: every page ends up loading them, and a page with widgets loads them twice (rendering each widget
twice). This handler runs after myst-nb's and, per page, drops duplicate
scripts and removes the widget scripts from pages that have no widget state.
"""

from __future__ import annotations

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _name(js) -> str:
    return str(getattr(js, "filename", js) or "").removeprefix("_static/")


def _tidy_scripts(app, pagename, templatename, context, doctree):
    files = context.get("script_files")
    if not files:
        return
    widget_js = set(app.config.nb_ipywidgets_js or {})
    has_state = any(getattr(js, "attributes", {}).get("type") == WIDGET_STATE for js in files)
    seen, kept = set(), []
    for js in files:
        attrs = getattr(js, "attributes", {}) or {}
        name = _name(js)
        key = (name, attrs.get("type"), attrs.get("body"))
        if key in seen:
            continue
        if not has_state and (name in widget_js or attrs.get("type") == WIDGET_STATE):
            continue
        seen.add(key)
        kept.append(js)
    files[:] = kept


def setup(app):
    app.connect("html-page-context", _tidy_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
