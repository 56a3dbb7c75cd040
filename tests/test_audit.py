"""The audit of the papers' tables: primitives checked by hand, and the findings pinned to the printed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from flatcast.audit import (audit, mean_improvement, nemenyi_cd, pooled_improvement, printed_match,
                            student_t_from_summary)


def test_pooled_and_mean_improvement_by_hand():
    ours, base = [1.0, 3.0], [2.0, 4.0]
    assert pooled_improvement(ours, base) == pytest.approx(100 * (6 - 4) / 6)
    assert mean_improvement(ours, base) == pytest.approx(100 * (0.5 + 0.25) / 2)


def test_printed_match_uses_the_printed_digits():
    assert printed_match("14.33", 14.3312) and printed_match("14.33", 14.325)
    assert not printed_match("14.33", 14.31) and not printed_match("3.73", 3.724)
    assert printed_match("0.410", 0.4104) and not printed_match("0.410", 0.4106)


def test_nemenyi_cd_matches_demsars_table():
    # Demšar (2006) Table 5(a): q_0.05 = 2.850 for k = 6; CD = q sqrt(k(k+1)/(6N))
    assert nemenyi_cd(6, 7, demsar=True) == pytest.approx(2.850 * math.sqrt(42 / 42), abs=2e-3)
    assert nemenyi_cd(6, 7) == pytest.approx(2.850 * math.sqrt(2), abs=3e-3)  # the raw Studentized range
    assert nemenyi_cd(6, 28) == pytest.approx(nemenyi_cd(6, 7) / 2)


def test_t_test_from_summary_agrees_with_the_samples():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.38, 0.003, 5), rng.normal(0.39, 0.002, 5)
    p = student_t_from_summary(a.mean(), a.std(ddof=1), b.mean(), b.std(ddof=1), 5)
    assert p == pytest.approx(stats.ttest_ind(a, b).pvalue)


@pytest.fixture(scope="module")
def table():
    return audit()


def _row(table, check, item=None):
    rows = table[table.check.str.contains(check, regex=False)]
    if item is not None:
        rows = rows[rows.item.str.contains(item, regex=False)]
    assert len(rows) >= 1, check
    return rows.iloc[0]


def test_samformer_overall_gains_are_pooled_ratios(table):
    r = _row(table, "overall MSE improvement of SAMformer", "vs TSMixer (")
    assert r.match and "pooled 14.33" in r.recomputed and "mean 11.90" in r.recomputed
    r = _row(table, "overall MSE improvement of SAMformer", "vs iTransformer")
    assert not r.match and "Electricity" in r.note


def test_known_findings(table):
    assert _row(table, "Table 7 repeats Table 1").match
    assert _row(table, "significance marks (summary)").match
    assert not _row(table, "outperforms its competitors on 7 out of 8").match
    r = _row(table, "parameter growth with H")
    assert not r.match and "369904" in r.recomputed
    sam = _row(table, "SAM* column repeats")
    assert "56 identical, 0 differ" in sam.recomputed
    assert _row(table, "Table 4 repeats Table 6").match
    assert "Autoformer" in _row(table, "Nemenyi CD (MSE, N = 7").recomputed
    assert set(table.columns) >= {"printed", "recomputed", "match"}
    assert (~table.match).sum() >= 10
