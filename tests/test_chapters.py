"""The book's chapters: structure of the committed notebooks, the executor, and one test per chapter.

``test_chapter_executes[<chapter>]`` executes a chapter in the ``quick`` profile through the same cached
executor as ``make book`` (scripts/build_book.py), so a broken chapter is a named failing test, and a
following ``make book`` reuses the execution.
"""

from __future__ import annotations

import json
import os
import re

import nbformat
import pytest

from _book import load

bb = load()
CHAPTERS = list(bb.toc_chapters())


def _code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _tmp_notebook(path, *sources, tags0=("parameters",)):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": bb.KERNEL_NAME, "display_name": "flatcast", "language": "python"}
    for i, src in enumerate(sources):
        cell = nbformat.v4.new_code_cell(src)
        if i == 0:
            cell.metadata["tags"] = list(tags0)
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path


def test_a_partial_build_stages_stubs_for_the_chapters_left_out(tmp_path, monkeypatch):
    """make book CHAPTERS=... keeps the whole table of contents; each chapter left out becomes a stub page with its
    title, so cross-references from the built chapters resolve (they failed the -W build before)."""
    monkeypatch.setattr(bb, "STAGE", tmp_path / "stage")
    monkeypatch.setattr(bb, "EXECUTED", tmp_path / "executed")
    bb.EXECUTED.mkdir()
    chapters = bb.toc_chapters()
    kept = {name: chapters[name] for name in ("intro", "sharpness")}
    for name, path in kept.items():
        (bb.EXECUTED / f"{name}.ipynb").write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    stage = bb.stage(kept, require_widget_assets=False)
    assert (stage / "_toc.yml").read_text() == bb.TOC.read_text()
    for name, path in chapters.items():
        notebook, stub = stage / "book" / f"{name}.ipynb", stage / "book" / f"{name}.md"
        if name in kept:
            assert notebook.is_file() and not stub.exists()
        else:
            assert stub.is_file() and not notebook.exists()
            text = stub.read_text()
            assert text.startswith(f"# {bb.chapter_title(path)}\n") and "not part of this partial build" in text
    assert bb.chapter_title(chapters["sharpness"]) == "Sharpness and loss landscapes on real data"


def test_toc_lists_existing_unique_chapters():
    assert CHAPTERS[0] == "intro", "the intro must be the book's root"
    assert "data" in CHAPTERS
    for name, path in bb.toc_chapters().items():
        assert path.is_file() and path.stem == name


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_committed_chapter_is_stripped_and_parameterised(chapter):
    path = bb.toc_chapters()[chapter]
    nb = json.loads(path.read_text())
    assert bb.is_stripped(path), f"{path.name} has outputs or execution metadata: run `make strip`"
    assert nb["metadata"]["kernelspec"]["name"] == bb.KERNEL_NAME
    first = _code_cells(nb)[0]
    assert "parameters" in first["metadata"].get("tags", []), f"{chapter}: first code cell must be tagged parameters"
    namespace: dict = {}
    exec("".join(first["source"]), namespace)  # noqa: S102 — plain assignments
    assert namespace["profile"] == "quick" and namespace["device"] == "auto" and namespace["seed"] == 0
    titles = [c for c in nb["cells"] if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("# ")]
    assert titles, f"{chapter}: needs a '# Title' markdown cell"
    # nbformat 4.5 wants a unique id per cell (a missing one is a warning now, a hard error in later versions)
    ids = [c.get("id") for c in nb["cells"]]
    assert None not in ids and len(set(ids)) == len(ids), f"{chapter}: a cell without an id, or a repeated id"
    # a control character in a source is an escape gone wrong (e.g. "\rho" written from a Python literal as CR + "ho")
    control = [c["id"] for c in nb["cells"] if re.search(r"[\x00-\x08\x0b-\x1f]", "".join(c["source"]))]
    assert not control, f"{chapter}: control characters in cells {control}"


def test_stripped_removes_outputs_and_is_idempotent():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1 + 1")
    cell.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)]
    cell.execution_count = 1
    cell.metadata["papermill"] = {"status": "completed"}
    nb.cells.append(cell)
    nb.metadata["widgets"] = {"x": 1}
    out = bb.stripped(nb)
    assert out["cells"][0]["outputs"] == [] and out["cells"][0]["execution_count"] is None
    assert "papermill" not in out["cells"][0]["metadata"] and "widgets" not in out["metadata"]
    assert bb.stripped(out) == out
    assert nb["cells"][0]["outputs"], "stripped() must not modify its argument"


def test_cache_key_tracks_source_and_parameters(tmp_path):
    nb = _tmp_notebook(tmp_path / "a.ipynb", "profile = 'quick'", "x = 1")
    k1 = bb.cache_key(nb, {"profile": "quick"})
    assert k1 == bb.cache_key(nb, {"profile": "quick"})
    assert k1 != bb.cache_key(nb, {"profile": "paper"})
    # outputs do not change the key, source does
    data = json.loads(nb.read_text())
    data["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi"}]
    nb.write_text(json.dumps(data))
    assert bb.cache_key(nb, {"profile": "quick"}) == k1
    data["cells"][1]["source"] = "x = 2"
    nb.write_text(json.dumps(data))
    assert bb.cache_key(nb, {"profile": "quick"}) != k1


def test_kernel_env_drops_mplbackend(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    assert "MPLBACKEND" not in bb.kernel_env()


def test_unknown_chapter_and_profile_raise():
    with pytest.raises(KeyError, match="unknown chapter 'nope'"):
        bb.execute_chapter("nope")
    with pytest.raises(ValueError, match="unknown profile"):
        bb.execute_chapter("intro", profile="fast")
    with pytest.raises(bb.BookError, match="unknown chapter"):
        bb.select_chapters(["nope"])


def test_executor_captures_figures_and_reports_failing_cell(tmp_path, monkeypatch):
    """Runs a real kernel: figures survive MPLBACKEND=Agg in the caller, and a failure names chapter, cell, error."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    src = _tmp_notebook(
        tmp_path / "broken.ipynb",
        "profile = 'quick'",
        "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.show()",
        "value = profile + '!'\nprint(value)",
        "ratio = 1 / 0  # the failing cell",
    )
    with pytest.raises(bb.ChapterExecutionError) as info:
        bb.run_notebook("broken", src, tmp_path / "out.ipynb", {"profile": "paper"}, timeout=120)
    exc = info.value
    msg = str(exc)
    assert "chapter 'broken'" in msg and "ZeroDivisionError" in msg and "ratio = 1 / 0" in msg
    assert exc.ename == "ZeroDivisionError"
    saved = json.loads(exc.notebook.read_text())
    outputs = [o for c in _code_cells(saved) for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the inline backend must capture the figure"
    assert any("paper!" in "".join(o.get("text", "")) for o in outputs), "parameters must be injected"


def test_executor_enforces_chapter_timeout(tmp_path):
    src = _tmp_notebook(tmp_path / "slow.ipynb", "profile = 'quick'", "import time\ntime.sleep(120)")
    with pytest.raises(bb.ChapterExecutionError, match="timeout") as info:
        bb.run_notebook("slow", src, tmp_path / "out.ipynb", {}, timeout=8)
    assert "time.sleep(120)" in str(info.value)


@pytest.mark.chapter
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_executes(chapter):
    try:
        result = bb.execute_chapter(chapter, "quick", force=os.environ.get("FORCE") == "1")
    except bb.ChapterExecutionError as exc:
        pytest.fail(str(exc), pytrace=False)
    nb = json.loads(result.path.read_text())
    outputs = [o for c in _code_cells(nb) for o in c.get("outputs", [])]
    errors = [o for o in outputs if o["output_type"] == "error"]
    assert not errors, f"{chapter}: error outputs {[(e['ename'], e['evalue']) for e in errors]}"
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{chapter} produced no figure"
    assert nb["metadata"]["flatcast_execution"]["profile"] == "quick"
