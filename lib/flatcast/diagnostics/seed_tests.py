"""Is a difference between two models beyond the seed spread? Two-sample t-tests per benchmark cell.

A table cell (dataset × horizon) holds, for each model, one test error per seed. Whether model ``a`` beats
model ``b`` in that cell is a question about two small samples, not about two means: a mean difference inside the
seed spread is no improvement. :func:`cell_t_tests` runs one two-sample t-test per cell:

* ``welch=True`` (default): Welch's unequal-variance test, for our own runs, where one model's seed spread can
  be several times the other's (SAMformer §3.1: the Transformer's);
* ``welch=False``: Student's pooled-variance test, the test the papers' bold marks imply when they are audited
  from a table's mean ± std (SAMformer Table 7).

Cells with fewer than two seeds of either model are skipped. When both samples are constant (zero spread) the
test is undefined; the p-value is then 0 if the two constants differ and 1 if they are equal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["cell_t_tests", "significance_counts"]

COLUMNS = ["a_mean", "b_mean", "a_n", "b_n", "p", "significant_a_better", "significant_a_worse"]


def cell_t_tests(frame: pd.DataFrame, label: str, a: str, b: str, metric: str = "test_mse",
                 cells: Sequence[str] = ("dataset", "horizon"), welch: bool = True,
                 alpha: float = 0.05) -> pd.DataFrame:
    """One row per cell of ``frame`` (one row per seed; ``label`` names the model column) where ``a`` and ``b``
    both have ≥ 2 finite values of ``metric``: the cell, both means and sample sizes, the two-sided p-value and
    whether ``a`` is significantly lower (``significant_a_better``) or higher (``significant_a_worse``) at
    ``alpha``."""
    if frame.empty:
        return pd.DataFrame(columns=[*cells, *COLUMNS])
    missing = [c for c in (label, metric, *cells) if c not in frame.columns]
    if missing:
        raise KeyError(f"cell_t_tests: frame has no column(s) {missing}")
    rows = []
    for key, block in frame.groupby(list(cells), sort=True):
        x = block.loc[block[label] == a, metric].to_numpy(dtype=float)
        y = block.loc[block[label] == b, metric].to_numpy(dtype=float)
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
        if len(x) < 2 or len(y) < 2:
            continue
        if np.ptp(x) == 0 and np.ptp(y) == 0:
            p = 0.0 if x[0] != y[0] else 1.0
        else:
            p = float(stats.ttest_ind(x, y, equal_var=not welch).pvalue)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(cells, key)), "a_mean": float(x.mean()), "b_mean": float(y.mean()),
                     "a_n": len(x), "b_n": len(y), "p": p,
                     "significant_a_better": bool(p < alpha and x.mean() < y.mean()),
                     "significant_a_worse": bool(p < alpha and x.mean() > y.mean())})
    return pd.DataFrame(rows, columns=[*cells, *COLUMNS])


def significance_counts(tests: pd.DataFrame) -> dict[str, int]:
    """``{"cells", "better", "worse"}``: how many cells were tested and in how many ``a`` was significantly lower
    or higher."""
    return {"cells": len(tests), "better": int(tests["significant_a_better"].sum()),
            "worse": int(tests["significant_a_worse"].sum())}
