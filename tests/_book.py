"""Import helper: the book pipeline lives in scripts/build_book.py (not part of the installed package)."""

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "build_book.py"


def load():
    if "build_book" not in sys.modules:
        spec = importlib.util.spec_from_file_location("build_book", _PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules["build_book"] = module
        spec.loader.exec_module(module)
    return sys.modules["build_book"]
