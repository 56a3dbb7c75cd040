"""Rank correlation between a flatness measure and the test error: does flatness predict generalisation?

SAMformer (§3.1, Fig. 5a) and EEO-TFV (§1) argue from "flatter minimum" to "better generalisation" without
testing the link across runs. Given, for every trained run, a flatness measure (λmax, tr H) and its test MSE,
the rank correlations below say how well the ordering by flatness predicts the ordering by test error, with no
assumption that the relation is linear:

* Spearman's ρ_s: the Pearson correlation of the ranks (ties get their average rank), in [−1, 1];
* Kendall's τ_b: (concordant − discordant pairs) / √((n₀ − n₁)(n₀ − n₂)), with the tie corrections n₁, n₂
  (Kendall 1945), in [−1, 1];
* a two-sided permutation p-value for ρ_s: the share of ``n_permutations`` random re-pairings (plus the observed
  one) whose |ρ_s| is at least the observed |ρ_s| — exact in expectation for any n, no normal approximation.

A positive value means "sharper runs have larger test error" (the papers' reading).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["average_ranks", "spearman", "kendall_tau_b", "permutation_pvalue", "rank_correlation"]


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D sequences of the same length, got shapes {x.shape} and {y.shape}")
    if x.size < 3:
        raise ValueError(f"a rank correlation needs at least 3 pairs, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite (drop runs whose measure is NaN first)")
    return x, y


def average_ranks(values) -> np.ndarray:
    """Ranks 1..n of ``values``, ties sharing the mean of the ranks they span (e.g. [10, 20, 20, 30] → 1, 2.5, 2.5, 4)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    sorted_values = values[order]
    start = 0
    while start < values.size:
        stop = start + 1
        while stop < values.size and sorted_values[stop] == sorted_values[start]:
            stop += 1
        ranks[order[start:stop]] = 0.5 * (start + stop - 1) + 1.0
        start = stop
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    return float("nan") if denominator == 0.0 else float(a @ b) / denominator


def spearman(x, y) -> float:
    """Spearman's rank correlation ρ_s (Pearson correlation of average ranks); NaN if one side is constant."""
    x, y = _pair(x, y)
    return _pearson(average_ranks(x), average_ranks(y))


def kendall_tau_b(x, y) -> float:
    """Kendall's τ_b with tie corrections; NaN if one side is constant. O(n²), fine for hundreds of runs."""
    x, y = _pair(x, y)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    upper = np.triu_indices(x.size, k=1)
    s = float((dx * dy)[upper].sum())
    pairs = x.size * (x.size - 1) / 2
    ties_x = float((dx[upper] == 0).sum())
    ties_y = float((dy[upper] == 0).sum())
    denominator = math.sqrt((pairs - ties_x) * (pairs - ties_y))
    return float("nan") if denominator == 0.0 else s / denominator


def permutation_pvalue(x, y, n_permutations: int = 2000, seed: int = 0) -> float:
    """Two-sided permutation p-value of Spearman's ρ_s: (1 + #{|ρ_s(x, π y)| ≥ |ρ_s(x, y)|}) / (1 + n_permutations)."""
    x, y = _pair(x, y)
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, int) or n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive integer, got {n_permutations!r}")
    rx, ry = average_ranks(x), average_ranks(y)
    observed = abs(_pearson(rx, ry))
    if math.isnan(observed):
        return float("nan")
    rng = np.random.default_rng(seed)
    hits = sum(abs(_pearson(rx, rng.permutation(ry))) >= observed - 1e-12 for _ in range(n_permutations))
    return (1.0 + hits) / (1.0 + n_permutations)


def rank_correlation(x, y, n_permutations: int = 2000, seed: int = 0) -> dict[str, float]:
    """``{"n", "spearman", "kendall_tau_b", "p_value"}`` for the pairs (x_i, y_i) (p-value: permutation test of ρ_s)."""
    x, y = _pair(x, y)
    return {"n": int(x.size), "spearman": spearman(x, y), "kendall_tau_b": kendall_tau_b(x, y),
            "p_value": permutation_pvalue(x, y, n_permutations=n_permutations, seed=seed)}
