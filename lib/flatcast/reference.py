"""The papers' published numbers, as tidy tables (``data/reference/``, described in its README.md).

Every numeric table of SAMformer (prefix ``samformer_``), EEO-TFV (``eeo_``) and OCE-TS (``oce_``), plus
``hyperparameters``, transcribed one row per table cell. :func:`load_reference` returns one as a DataFrame:

- only empty cells are missing (``NaN``); text such as ``"None"`` or ``"NA"`` is kept as written;
- ``horizon``, where present, holds Python ints for prediction lengths and the string ``"avg"`` for
  horizon-averaged rows (so ``df[df.horizon == 96]`` works).

The directory is ``<repo>/data/reference`` (found relative to this package), or the one named by the environment
variable ``FLATCAST_REFERENCE``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

__all__ = ["REFERENCE_ENV_VAR", "reference_dir", "list_reference_tables", "load_reference"]

REFERENCE_ENV_VAR = "FLATCAST_REFERENCE"
_DEFAULT_DIR = Path(__file__).resolve().parents[2] / "data" / "reference"


def reference_dir() -> Path:
    """The directory holding the reference CSVs (``FLATCAST_REFERENCE`` if set, else ``<repo>/data/reference``)."""
    override = os.environ.get(REFERENCE_ENV_VAR, "").strip()
    directory = Path(override).expanduser() if override else _DEFAULT_DIR
    if not directory.is_dir():
        source = f"${REFERENCE_ENV_VAR}" if override else "the repository"
        raise FileNotFoundError(f"reference directory {directory} (from {source}) does not exist")
    return directory


def list_reference_tables() -> list[str]:
    """Names (file stems) of every reference table, sorted, e.g. ``"samformer_table1_mse"``."""
    return sorted(path.stem for path in reference_dir().glob("*.csv"))


def _horizon_value(cell):
    if isinstance(cell, str) and cell.strip().lstrip("-").isdigit():
        return int(cell)
    return cell


def load_reference(name: str) -> pd.DataFrame:
    """Load reference table ``name`` (a stem from :func:`list_reference_tables`) as a DataFrame.

    An unknown name raises ``KeyError`` listing the known ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"reference table name must be a string, got {type(name).__name__} {name!r}")
    known = list_reference_tables()
    stem = name[:-4] if name.endswith(".csv") else name
    if stem not in known:
        raise KeyError(f"unknown reference table {name!r}; known tables: {known}")
    frame = pd.read_csv(reference_dir() / f"{stem}.csv", keep_default_na=False, na_values=[""],
                        dtype={"horizon": str})
    if "horizon" in frame.columns:
        frame["horizon"] = frame["horizon"].map(_horizon_value).astype(object)
    return frame
