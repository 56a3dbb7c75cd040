"""Per-cell two-sample t-tests (flatcast.diagnostics.seed_tests) against hand-computed statistics."""

import math

import numpy as np
import pandas as pd
import pytest

from flatcast.diagnostics.seed_tests import cell_t_tests, significance_counts


def _frame(cells):
    rows = []
    for (dataset, horizon), by_model in cells.items():
        for model, values in by_model.items():
            rows += [{"dataset": dataset, "horizon": horizon, "model": model, "test_mse": v} for v in values]
    return pd.DataFrame(rows)


def _welch_by_hand(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    t = (x.mean() - y.mean()) / math.sqrt(vx + vy)
    dof = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    return t, dof


def test_welch_and_student_agree_with_the_textbook_statistics():
    from scipy import stats

    x, y = [0.40, 0.41, 0.39, 0.42], [0.45, 0.50, 0.40, 0.55, 0.47]
    tests = cell_t_tests(_frame({("ETTh1", 96): {"a": x, "b": y}}), "model", "a", "b")
    t, dof = _welch_by_hand(x, y)
    assert tests.loc[0, "p"] == pytest.approx(2 * stats.t.sf(abs(t), dof), rel=1e-12)
    # Student: pooled variance, n_x + n_y − 2 degrees of freedom
    pooled = ((len(x) - 1) * np.var(x, ddof=1) + (len(y) - 1) * np.var(y, ddof=1)) / (len(x) + len(y) - 2)
    t_student = (np.mean(x) - np.mean(y)) / math.sqrt(pooled * (1 / len(x) + 1 / len(y)))
    student = cell_t_tests(_frame({("ETTh1", 96): {"a": x, "b": y}}), "model", "a", "b", welch=False)
    assert student.loc[0, "p"] == pytest.approx(2 * stats.t.sf(abs(t_student), len(x) + len(y) - 2), rel=1e-12)
    assert tests.loc[0, "a_n"] == 4 and tests.loc[0, "b_n"] == 5
    assert tests.loc[0, "a_mean"] == pytest.approx(np.mean(x))


def test_counts_cells_better_worse_and_skips_thin_or_constant_cells():
    cells = {
        ("ETTh1", 96): {"a": [0.40, 0.41, 0.40], "b": [0.50, 0.51, 0.52]},   # a clearly better
        ("ETTh1", 192): {"a": [0.60, 0.61, 0.62], "b": [0.40, 0.41, 0.40]},  # a clearly worse
        ("ETTh1", 336): {"a": [0.40, 0.50, 0.45], "b": [0.44, 0.47, 0.46]},  # inside the spread
        ("ETTh1", 720): {"a": [0.40], "b": [0.50, 0.51]},                    # one seed: skipped
        ("ETTm1", 96): {"a": [0.3, 0.3], "b": [0.3, 0.3]},                   # identical constants: p = 1
        ("ETTm1", 192): {"a": [0.3, 0.3], "b": [0.4, 0.4]},                  # distinct constants: p = 0
    }
    tests = cell_t_tests(_frame(cells), "model", "a", "b")
    assert len(tests) == 5
    assert significance_counts(tests) == {"cells": 5, "better": 2, "worse": 1}
    constant = tests.set_index(["dataset", "horizon"])
    assert constant.loc[("ETTm1", 96), "p"] == 1.0 and constant.loc[("ETTm1", 192), "p"] == 0.0
    # swapping the models swaps better and worse
    assert significance_counts(cell_t_tests(_frame(cells), "model", "b", "a")) == {"cells": 5, "better": 1,
                                                                                  "worse": 2}


def test_non_finite_values_are_dropped_and_a_missing_column_is_named():
    frame = _frame({("ETTh1", 96): {"a": [0.4, float("nan"), 0.41], "b": [0.5, 0.52]}})
    tests = cell_t_tests(frame, "model", "a", "b")
    assert tests.loc[0, "a_n"] == 2
    assert cell_t_tests(frame.iloc[:0], "model", "a", "b").empty
    with pytest.raises(KeyError, match="recipe"):
        cell_t_tests(frame, "recipe", "a", "b")
