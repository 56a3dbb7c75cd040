"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def benchmark_data_dir() -> Path:
    """Directory holding the real benchmark CSVs ($FLATCAST_DATA, else ../shared/data); skip the test if absent."""
    candidates = []
    if os.environ.get("FLATCAST_DATA"):
        env = Path(os.environ["FLATCAST_DATA"]).expanduser()
        candidates += [env, _REPO_ROOT / env]
    candidates += [_REPO_ROOT.parent / "shared" / "data", _REPO_ROOT / "data" / "raw"]
    for directory in candidates:
        if (directory / "ETTh1.csv").is_file():
            return directory
    pytest.skip(f"benchmark data not available (looked for ETTh1.csv in {[str(c) for c in candidates]})")


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every matplotlib figure a test left open (figure functions return their figures to the caller)."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
