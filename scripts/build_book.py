#!/usr/bin/env python3
"""Build the flatcast book: execute every chapter with papermill, then render it with jupyter-book.

Usage (the Makefile wraps this; run from anywhere with the project's virtual environment)::

    python scripts/build_book.py build [--profile quick|paper] [--chapters intro,data] [--force]
                                       [--timeout SECONDS] [--device auto|cpu|cuda] [--seed N]
    python scripts/build_book.py execute ...      # execute (or reuse) chapters, no HTML
    python scripts/build_book.py strip [--check]  # strip outputs of book/*.ipynb (or check they are stripped)
    python scripts/build_book.py chapters         # list the chapters of _toc.yml

Pipeline
--------
1. **Execute.** Each chapter listed in ``_toc.yml`` runs headlessly with papermill on the ``flatcast`` kernel,
   with ``profile`` (and optionally ``device``, ``seed``) injected into its ``parameters`` cell, its working
   directory being the chapter's folder. Execution happens in a child process with a per-chapter wall-clock
   timeout; progress per cell and the chapter's wall time are printed. ``MPLBACKEND`` is removed from the
   kernel's environment so that the inline backend puts figures into the notebook.
2. **Cache.** An executed chapter is stored as ``_build/executed/<chapter>.ipynb`` with a content key in its
   metadata: sha256 over the chapter's source (outputs stripped), the injected parameters, every
   ``lib/flatcast/**.py``, ``requirements.txt``, ``_toc.yml``, the files under ``data/`` (results and
   reference tables by content, raw CSVs by size and mtime) and the data directory's CSVs (size and mtime).
   A chapter whose key matches is not executed again, so ``make test`` followed by ``make book`` executes
   each chapter once. ``--force`` re-executes.
3. **Stage.** ``_build/stage/`` receives ``_config.yml``, ``_toc.yml`` (restricted to the chosen chapters),
   the non-notebook files of ``book/``, the executed notebooks (parameter cells tagged ``remove-cell`` so
   they are hidden in the HTML) and, in ``_static/``, require.js and the ipywidgets embed script from
   ``node_modules`` (``npm ci``), so widgets render offline.
4. **Render.** ``jupyter-book build -W --keep-going`` with notebook execution off writes ``_build/html``.

A failing cell fails the build; the message names the chapter, the cell, its source and the error.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
EXECUTED = BUILD / "executed"
FAILED = BUILD / "failed"
STAGE = BUILD / "stage"
HTML = BUILD / "html"
TOC = ROOT / "_toc.yml"
CONFIG = ROOT / "_config.yml"
KERNEL_NAME = "flatcast"
PROFILES = ("quick", "paper")
DEFAULT_TIMEOUT_S = {"quick": 900, "paper": 6 * 3600}
EXECUTOR_VERSION = "1"  # bump to invalidate every cached chapter
KEY_FIELD = "flatcast_cache_key"
WIDGET_ASSETS = {  # file name in the HTML's _static/  ->  path in node_modules
    "require.min.js": Path("node_modules/requirejs/require.js"),
    "embed-amd.js": Path("node_modules/@jupyter-widgets/html-manager/dist/embed-amd.js"),
}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class BookError(RuntimeError):
    """A problem with the book's configuration or build (not a chapter's cell)."""


class ChapterExecutionError(RuntimeError):
    """A chapter failed while executing; the message names the chapter, the cell, its source and the error."""

    def __init__(self, chapter: str, cell_index: int | None, source: str, ename: str, evalue: str,
                 traceback: str = "", notebook: Path | None = None):
        self.chapter, self.cell_index, self.source = chapter, cell_index, source
        self.ename, self.evalue, self.traceback, self.notebook = ename, evalue, traceback, notebook
        where = f"cell {cell_index}" if cell_index is not None else "no particular cell"
        lines = [f"chapter {chapter!r} failed in {where}: {ename}: {evalue}"]
        if source:
            lines += ["--- cell source ---", source.rstrip(), "-------------------"]
        if traceback:
            lines += ["--- traceback (last lines) ---", "\n".join(traceback.rstrip().splitlines()[-25:])]
        if notebook is not None:
            lines.append(f"(executed notebook with the error saved at {notebook})")
        super().__init__("\n".join(lines))


@dataclass
class ExecResult:
    chapter: str
    path: Path
    cached: bool
    wall_s: float


# --------------------------------------------------------------------------------------------- chapters
def _load_yaml(path: Path):
    import yaml

    if not path.is_file():
        raise BookError(f"{path} is missing")
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _toc_files(toc: dict) -> list[str]:
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("chapters"))
            walk(entry.get("sections"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return files


def toc_chapters(toc_path: Path = TOC) -> dict[str, Path]:
    """Chapters in book order: ``{chapter name (file stem): notebook path}``, read from ``_toc.yml``."""
    toc = _load_yaml(toc_path)
    if not isinstance(toc, dict) or "root" not in toc:
        raise BookError(f"{toc_path} has no 'root' entry")
    chapters: dict[str, Path] = {}
    for entry in _toc_files(toc):
        path = ROOT / (entry if entry.endswith(".ipynb") else entry + ".ipynb")
        name = path.stem
        if name in chapters:
            raise BookError(f"{toc_path}: two chapters are called {name!r}; chapter file names must be unique")
        if not path.is_file():
            raise BookError(f"{toc_path} lists {entry!r} but {path.relative_to(ROOT)} does not exist")
        chapters[name] = path
    return chapters


def select_chapters(names: list[str] | None) -> dict[str, Path]:
    """The chapters called ``names`` (all of ``_toc.yml`` when empty), in book order."""
    chapters = toc_chapters()
    if not names:
        return chapters
    unknown = [n for n in names if n not in chapters]
    if unknown:
        raise BookError(f"unknown chapter(s) {unknown}: _toc.yml has {list(chapters)}")
    return {n: p for n, p in chapters.items() if n in names}


# ------------------------------------------------------------------------------------------- stripping
def stripped(nb: dict) -> dict:
    """A copy of notebook ``nb`` without outputs, execution counts or execution metadata."""
    nb = copy.deepcopy(nb)
    for key in ("papermill", "widgets", "execution"):
        nb.get("metadata", {}).pop(key, None)
    nb.setdefault("metadata", {}).pop(KEY_FIELD, None)
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {})
        for key in ("papermill", "execution", "ExecuteTime"):
            meta.pop(key, None)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return nb


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _write_nb(nb: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def is_stripped(path: Path) -> bool:
    nb = _read_json(path)
    return nb == stripped(nb)


# ------------------------------------------------------------------------------------------------ cache
def data_dir() -> Path:
    """The directory holding the dataset CSVs: ``$FLATCAST_DATA`` or ``data/raw``."""
    env = os.environ.get("FLATCAST_DATA")
    return Path(env).expanduser().resolve() if env else ROOT / "data" / "raw"


def cache_key(notebook: Path, parameters: dict) -> str:
    h = hashlib.sha256()

    def add(label: str, payload: bytes) -> None:
        h.update(label.encode() + b"\0" + hashlib.sha256(payload).digest())

    add("executor", EXECUTOR_VERSION.encode())
    add("parameters", json.dumps(parameters, sort_keys=True).encode())
    add("notebook", json.dumps(stripped(_read_json(notebook)), sort_keys=True).encode())
    for name in ("requirements.txt", "_toc.yml"):
        if (ROOT / name).is_file():
            add(name, (ROOT / name).read_bytes())
    for path in sorted((ROOT / "lib" / "flatcast").rglob("*.py")):
        add(str(path.relative_to(ROOT)), path.read_bytes())
    for path in sorted((ROOT / "data").rglob("*")):
        if path.is_file():
            rel = str(path.relative_to(ROOT))
            if rel.startswith("data/raw/"):
                st = path.stat()
                add(rel, f"{st.st_size}:{st.st_mtime_ns}".encode())
            else:
                add(rel, path.read_bytes())
    ddir = data_dir()
    add("data_dir", str(ddir).encode())
    if ddir.is_dir():
        for path in sorted(ddir.glob("*.csv")):
            st = path.stat()
            add("data:" + path.name, f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _cached_key(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        return _read_json(path).get("metadata", {}).get(KEY_FIELD)
    except (OSError, ValueError):
        return None


# -------------------------------------------------------------------------------------------- execution
def kernel_env() -> dict[str, str]:
    """Environment for the kernel: no MPLBACKEND (the inline backend must capture figures)."""
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def check_kernel() -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        raise BookError(
            f"the Jupyter kernel {KERNEL_NAME!r} is not registered; run `make venv` (it runs "
            f"`python -m ipykernel install --sys-prefix --name {KERNEL_NAME}`)"
        ) from None


def execute_chapter(chapter: str, profile: str = "quick", *, device: str | None = None,
                    seed: int | None = None, force: bool = False, timeout: float | None = None,
                    log=print) -> ExecResult:
    """Execute ``chapter`` (a name from ``_toc.yml``) unless a cached execution with the same key exists.

    Raises :class:`ChapterExecutionError` when a cell fails or the chapter runs past ``timeout`` seconds
    (default: 900 s for ``quick``, 6 h for ``paper``).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: use one of {list(PROFILES)}")
    chapters = toc_chapters()
    if chapter not in chapters:
        raise KeyError(f"unknown chapter {chapter!r}: _toc.yml has {list(chapters)}")
    source = chapters[chapter]
    parameters: dict = {"profile": profile}
    if device is not None:
        parameters["device"] = device
    if seed is not None:
        parameters["seed"] = int(seed)
    out = EXECUTED / f"{chapter}.ipynb"
    key = cache_key(source, parameters)
    if not force and _cached_key(out) == key:
        log(f"[{chapter}] up to date (cached {out.relative_to(ROOT)})")
        return ExecResult(chapter, out, True, 0.0)

    timeout = DEFAULT_TIMEOUT_S[profile] if timeout is None else float(timeout)
    log(f"[{chapter}] executing {source.relative_to(ROOT)} with {parameters} (timeout {timeout:.0f} s)")
    wall = run_notebook(chapter, source, out, parameters, timeout,
                        extra_metadata={KEY_FIELD: key, "flatcast_execution": {"profile": profile,
                                                                               "parameters": parameters}})
    log(f"[{chapter}] done in {wall:.1f} s")
    return ExecResult(chapter, out, False, wall)


def run_notebook(name: str, source: Path, out: Path, parameters: dict, timeout: float,
                 extra_metadata: dict | None = None) -> float:
    """Execute notebook ``source`` into ``out`` with papermill in a child process; return the wall time.

    The kernel runs in ``source``'s folder with :func:`kernel_env`. A failing cell or running past ``timeout``
    seconds raises :class:`ChapterExecutionError` (the partly executed notebook is kept in ``_build/failed/``).
    """
    check_kernel()
    tmp = out.with_suffix(".running.ipynb")
    err_file = out.with_suffix(".error.json")
    for p in (tmp, err_file):
        p.unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "_run-one", "--chapter", name,
           "--input", str(source), "--output", str(tmp), "--parameters", json.dumps(parameters),
           "--error-file", str(err_file), "--timeout", str(timeout)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=kernel_env(), cwd=str(source.parent), start_new_session=True)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        info = _read_json(err_file) if err_file.is_file() else {}
        err_file.unlink(missing_ok=True)
        cell = info.get("cell_index", _running_cell(tmp))
        raise ChapterExecutionError(name, cell, info.get("source") or _cell_source(tmp, cell), "TimeoutError",
                                    f"chapter ran past its {timeout:.0f} s timeout",
                                    notebook=_keep_failed(tmp, name)) from None
    wall = time.perf_counter() - t0
    if rc != 0:
        info = _read_json(err_file) if err_file.is_file() else {}
        err_file.unlink(missing_ok=True)
        cell = info.get("cell_index", _running_cell(tmp))
        raise ChapterExecutionError(
            name, cell, info.get("source") or _cell_source(tmp, cell), info.get("ename", "ExecutionFailed"),
            info.get("evalue", f"the executor exited with status {rc} (see its output above)"),
            info.get("traceback", ""), notebook=_keep_failed(tmp, name))
    nb = _read_json(tmp)
    nb["metadata"].update(extra_metadata or {})
    nb["metadata"].setdefault("flatcast_execution", {})["wall_time_s"] = round(wall, 2)
    _write_nb(nb, out)
    tmp.unlink(missing_ok=True)
    return wall


def _stop(proc: subprocess.Popen) -> None:
    """Ask the executor to shut its kernel down, then kill whatever is left of its process group."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _running_cell(path: Path) -> int | None:
    if not path.is_file():
        return None
    try:
        cells = _read_json(path)["cells"]
    except (OSError, ValueError, KeyError):
        return None
    for i, cell in enumerate(cells):
        if cell.get("metadata", {}).get("papermill", {}).get("status") in ("running", "failed"):
            return i
    return None


def _cell_source(path: Path, index: int | None) -> str:
    if index is None or not path.is_file():
        return ""
    try:
        src = _read_json(path)["cells"][index]["source"]
    except (OSError, ValueError, KeyError, IndexError):
        return ""
    return "".join(src) if isinstance(src, list) else src


def _keep_failed(tmp: Path, chapter: str) -> Path | None:
    if not tmp.is_file():
        return None
    dest = FAILED / f"{chapter}.ipynb"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(tmp), dest)
    return dest


def _run_one(args) -> int:
    """Child process: run one notebook with papermill, print per-cell progress, report errors as JSON."""
    import papermill as pm
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.exceptions import PapermillExecutionError

    chapter = args.chapter
    current: dict = {}

    def _term(signum, frame):  # the parent's timeout: say which cell was running, then unwind (kernel shutdown)
        Path(args.error_file).write_text(json.dumps(
            {**current, "ename": "TimeoutError", "evalue": f"chapter ran past its {float(args.timeout):.0f} s timeout"}),
            encoding="utf-8")
        raise KeyboardInterrupt(f"chapter {chapter} stopped by its timeout")

    signal.signal(signal.SIGTERM, _term)

    class ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            code = [i for i, c in enumerate(nb_man.nb.cells) if c.cell_type == "code"]
            start = {}
            orig_start, orig_complete = nb_man.cell_start, nb_man.cell_complete

            def cell_start(cell, cell_index=None, **kw):
                start[cell_index] = time.perf_counter()
                current.update(cell_index=cell_index, source=cell.source)
                return orig_start(cell, cell_index, **kw)

            def cell_complete(cell, cell_index=None, **kw):
                if cell_index in code:
                    dt = time.perf_counter() - start.get(cell_index, time.perf_counter())
                    print(f"  [{chapter}] cell {code.index(cell_index) + 1}/{len(code)} "
                          f"({dt:.1f} s)", flush=True)
                return orig_complete(cell, cell_index, **kw)

            nb_man.cell_start, nb_man.cell_complete = cell_start, cell_complete
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register("flatcast-progress", ProgressEngine)
    error: dict = {}
    try:
        pm.execute_notebook(
            args.input, args.output, parameters=json.loads(args.parameters), kernel_name=KERNEL_NAME,
            engine_name="flatcast-progress", progress_bar=False, log_output=False,
            cwd=str(Path(args.input).parent), execution_timeout=int(float(args.timeout)) + 1,
        )
        return 0
    except PapermillExecutionError as exc:
        error = {"cell_index": exc.cell_index, "source": exc.source, "ename": exc.ename,
                 "evalue": exc.evalue, "traceback": _ANSI.sub("", "\n".join(exc.traceback))}
    except BaseException as exc:  # kernel death, timeouts, bad parameters: still say which cell
        if Path(args.error_file).is_file():  # the timeout handler has already reported
            return 3
        error = {**current, "ename": type(exc).__name__, "evalue": str(exc) or repr(exc)}
    Path(args.error_file).write_text(json.dumps(error), encoding="utf-8")
    return 3


# ---------------------------------------------------------------------------------------------- staging
def _tag_remove(cell: dict) -> None:
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    if "remove-cell" not in tags:
        tags.append("remove-cell")


def chapter_title(notebook: Path) -> str:
    """The first ``# `` heading of a chapter's markdown cells (its file stem when it has none)."""
    for cell in _read_json(notebook).get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", [])).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return notebook.stem


def stage(chapters: dict[str, Path], require_widget_assets: bool = True) -> Path:
    """Copy config, book files and executed chapters into ``_build/stage``; return the stage folder.

    A partial build (``make book CHAPTERS=...``) keeps the whole table of contents: every chapter left out gets
    a one-page stub with its title and a note, so that cross-references from the built chapters still resolve
    (``-W`` turns an unresolved one into an error)."""
    if STAGE.exists():
        shutil.rmtree(STAGE)
    STAGE.mkdir(parents=True)
    shutil.copy2(CONFIG, STAGE / "_config.yml")
    toc = _load_yaml(TOC)
    keep = {str(p.relative_to(ROOT).with_suffix("")) for p in chapters.values()}
    root = toc["root"].removesuffix(".ipynb")
    if root not in keep:
        raise BookError(f"the root chapter {root!r} must be part of every build")
    shutil.copy2(TOC, STAGE / "_toc.yml")

    book_src = ROOT / "book"
    shutil.copytree(book_src, STAGE / "book",
                    ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints", "__pycache__"))
    for name, src in toc_chapters().items():
        if name not in chapters:
            stub = (STAGE / src.relative_to(ROOT)).with_suffix(".md")
            stub.write_text(f"# {chapter_title(src)}\n\n```{{note}}\nThis chapter is not part of this partial build "
                            f"(`make book CHAPTERS=...`); `make book` builds it.\n```\n", encoding="utf-8")
    for name, src in chapters.items():
        executed = EXECUTED / f"{name}.ipynb"
        if not executed.is_file():
            raise BookError(f"chapter {name!r} has not been executed ({executed} missing)")
        nb = _read_json(executed)
        for cell in nb["cells"]:
            tags = cell.get("metadata", {}).get("tags", [])
            if "parameters" in tags or "injected-parameters" in tags:
                _tag_remove(cell)
        _write_nb(nb, STAGE / src.relative_to(ROOT))

    ext = STAGE / "_ext"
    ext.mkdir()
    shutil.copy2(Path(__file__).resolve().parent / "sphinx_ext" / "flatcast_widgets.py", ext)
    static = STAGE / "_static"
    static.mkdir(exist_ok=True)
    for name, rel in WIDGET_ASSETS.items():
        if (ROOT / rel).is_file():
            shutil.copy2(ROOT / rel, static / name)
        elif require_widget_assets:
            raise BookError(f"{rel} is missing: run `npm ci` (make book does) so widgets render offline")
    return STAGE


def render(stage_dir: Path) -> Path:
    """Run ``jupyter-book build -W --keep-going`` on the staged book; return ``_build/html/index.html``."""
    for stale in (HTML, BUILD / ".doctrees", BUILD / "jupyter_execute"):
        if stale.exists():
            shutil.rmtree(stale)
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(stage_dir), "--path-output", str(ROOT),
           "--builder", "html", "-W", "--keep-going"]
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    warnings = [line for line in proc.stdout.splitlines() if "WARNING" in line or "ERROR" in line]
    if proc.returncode != 0 or warnings or os.environ.get("VERBOSE") == "1":
        print(proc.stdout, flush=True)
    else:
        print("\n".join(proc.stdout.splitlines()[:4]) + "\n  ... (jupyter-book output elided; VERBOSE=1 shows it)",
              flush=True)
    if proc.returncode != 0 or warnings:
        raise BookError("jupyter-book build failed" + (":\n" + "\n".join(warnings) if warnings else
                                                        f" with exit status {proc.returncode}"))
    index = HTML / "index.html"
    if not index.is_file():
        raise BookError(f"jupyter-book finished but {index} is missing")
    return index


# -------------------------------------------------------------------------------------------------- CLI
def _execute_all(args) -> dict[str, Path]:
    names = [n.strip() for n in (args.chapters or "").replace(",", " ").split() if n.strip()]
    root = next(iter(toc_chapters()))
    if names and args.command == "build" and root not in names:
        print(f"(adding the root chapter {root!r}: every HTML build needs it)", flush=True)
        names.insert(0, root)
    chapters = select_chapters(names)
    results = []
    t0 = time.perf_counter()
    for i, name in enumerate(chapters, 1):
        print(f"== chapter {i}/{len(chapters)}: {name} ({args.profile} profile)", flush=True)
        results.append(execute_chapter(name, args.profile, device=args.device, seed=args.seed,
                                       force=args.force, timeout=args.timeout))
    print("== chapter wall times", flush=True)
    for r in results:
        print(f"   {r.chapter:<24} {'cached' if r.cached else f'{r.wall_s:7.1f} s'}", flush=True)
    print(f"   {'total':<24} {time.perf_counter() - t0:7.1f} s", flush=True)
    return chapters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("build", "execute"):
        p = sub.add_parser(name)
        p.add_argument("--profile", default="quick", choices=PROFILES)
        p.add_argument("--chapters", default="", help="comma/space separated chapter names (default: all)")
        p.add_argument("--force", action="store_true", help="re-execute even when the cache is valid")
        p.add_argument("--timeout", type=float, default=None, help="per-chapter timeout in seconds")
        p.add_argument("--device", default=None, help="inject device= into every chapter")
        p.add_argument("--seed", type=int, default=None, help="inject seed= into every chapter")
    p = sub.add_parser("strip")
    p.add_argument("--check", action="store_true", help="only report notebooks that have outputs")
    sub.add_parser("chapters")
    p = sub.add_parser("_run-one")
    for opt in ("--chapter", "--input", "--output", "--parameters", "--error-file", "--timeout"):
        p.add_argument(opt, required=True)
    args = parser.parse_args(argv)

    if args.command == "_run-one":
        return _run_one(args)
    try:
        if args.command == "chapters":
            for name, path in toc_chapters().items():
                print(f"{name}\t{path.relative_to(ROOT)}")
            return 0
        if args.command == "strip":
            bad = []
            for path in sorted((ROOT / "book").rglob("*.ipynb")):
                if ".ipynb_checkpoints" in path.parts or is_stripped(path):
                    continue
                bad.append(path)
                if not args.check:
                    _write_nb(stripped(_read_json(path)), path)
                    print(f"stripped {path.relative_to(ROOT)}")
            if args.check and bad:
                print("notebooks with outputs (run `make strip`): " + ", ".join(str(p.relative_to(ROOT))
                                                                           for p in bad))
                return 1
            return 0
        t0 = time.perf_counter()
        chapters = _execute_all(args)
        if args.command == "build":
            t1 = time.perf_counter()
            index = render(stage(chapters))
            print(f"== rendered in {time.perf_counter() - t1:.1f} s: {index.relative_to(ROOT)}")
        print(f"== total {time.perf_counter() - t0:.1f} s")
        return 0
    except ChapterExecutionError as exc:
        print("\n" + "=" * 100 + f"\nBOOK BUILD FAILED\n{exc}\n" + "=" * 100, file=sys.stderr, flush=True)
        return 1
    except BookError as exc:
        print(f"\nBOOK BUILD FAILED: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
