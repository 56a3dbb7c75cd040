"""Sharpness and loss landscapes on real data (SAMformer §3.1 Fig. 5, §3.4 Figs. 8, 11, 14, App. B.4–B.5).

The runner trains the recipes of :mod:`flatcast.recipes` on the benchmarks and measures each solution:

* every ``(recipe, dataset, seed, ρ)`` run: test/validation MSE, training time, gradient evaluations, and the
  curvature of its training loss — λmax, tr H, the SAMformer code's ``gᵀHv`` number — see *How λmax is measured*;
* the ρ grid of SAMformer (Fig. 14): ``samformer`` over :attr:`SharpnessConfig.rho_grid` (ρ = 0 is Adam inside
  SAM's two-pass step, i.e. plain Adam's trajectory at twice the gradient evaluations);
* the cost of σReparam (App. B.5 Fig. 11): seconds per optimizer step and, on CUDA, peak memory per step;
* landscapes around the Transformer's and SAMformer's solutions for a few seeds: 1-D linear interpolation
  (initialisation → each solution, Transformer → SAMformer), 1-D and 2-D filter-normalised random slices
  (Li et al. 2018), a 1-D slice along the top Hessian eigenvector, each with training *and* validation loss,
  the Hessian eigenvalue density (stochastic Lanczos quadrature) and the top-k eigenvalues.

How λmax is measured (and why it is comparable across models)
-------------------------------------------------------------
* **Loss**: the trainer's objective, the mean squared error over every element of the standardised target
  windows (SAMformer Eq. 1), with RevIN on exactly as in training (its statistics are recomputed per window and
  differentiated through).
* **Data**: the training split — all of it in the paper profile, :attr:`SharpnessConfig.sharpness_samples`
  windows spread evenly over it in the quick profile. The same windows for every model of a dataset.
* **Parameters**: every trainable parameter (for σReparam this includes the γ scalars; see the caveat below).
* **Algorithm**: :func:`flatcast.diagnostics.hessian.top_k_eigenvalues` with ``k=1`` — ``sharpness_iters``
  Lanczos steps on exact Hessian-vector products (double backward), full reorthogonalisation, float64, started
  from a seeded Gaussian vector; λmax is the largest Ritz value, i.e. the largest *algebraic* eigenvalue of the
  Hessian of the mean loss. Lanczos rather than PyHessian's power iteration because, for the same number of
  HVPs, its top Ritz value converges much faster (power iteration's error shrinks by λ₂/λ₁ per step; on a tiny
  channel transformer 5 power steps stopped 18 % below the Lanczos value); both have the same limit. The Ritz vector is the top eigenvector used for
  the eigenvector slice and for the authors' number below.
* **Mode**: ``model.eval()`` (the channel transformer has no dropout, so this changes nothing numerically) and
  the math kernel of scaled-dot-product attention (fused kernels have no double backward).

Because every model is scored on the same objective (a per-element mean, so independent of the number of
windows), on the same windows, with the same algorithm, λmax is an eigenvalue in the same units for all of them.
Two caveats the chapter states: λmax is not invariant to reparametrisation, so σReparam's value (different
parameters) is comparable as "curvature of this model's training problem", not as "the same function's
curvature"; and SAM does not converge to a stationary point of the unperturbed loss, which matters for the next
number, not for λmax.

The SAMformer authors' TensorFlow code reports a different number (``utils/model_utils.py::power_iteration``,
called on the whole training set, 50 iterations, RevIN switched *off* in that mode): it power-iterates
``v ← Hv/‖Hv‖`` on a loss summed over windows and horizon steps and returns ``|gᵀHv|`` — at convergence
``λmax · |gᵀu₁|``, the eigenvalue times the gradient's component along the top eigenvector, scaled by the square
of the number of summed terms. That is not an eigenvalue: it vanishes at a stationary point and grows with the
gradient. The runner records it too (``authors_sharpness``, computed as ``(N·H)² |gᵀHu|`` with ``u`` our
converged eigenvector, which is the value their iteration converges to) so the chapter can show how the two
orderings differ; it never mixes the two.

Choices where the papers are silent (all :class:`SharpnessConfig` fields): the ρ grid (SAMformer does not list
Fig. 14's values; ours brackets Table 4's ρ*), the landscape ranges and resolutions, SLQ steps, the direction
seeds (shared by both models; each direction is filter-normalised to its own model's weights), and the number of
Hutchinson probes for the trace.

Results and resumption
----------------------
:class:`ResultsStore` appends one JSON line per finished item (a run, a landscape, a cost measurement) to
``data/results/sharpness_<profile>.jsonl`` and flushes it; on restart every item whose key is in the file is
skipped, so the runner can be stopped at any time (``--max-runs`` stops it on purpose) and continued with the
same command. The file's first line holds the configuration; a file written with another configuration is
refused rather than mixed. The weights of the landscape seeds' solutions are kept beside it
(``<results>.models/``, not committed) so that the landscapes can be resumed without retraining.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from flatcast.claims import DIVERGED_FACTOR, SIMILAR_TO_ADAM, cap_verdict, write_verdicts
from flatcast.data.splits import Splits, make_splits
from flatcast.diagnostics.hessian import (dataset_gradient, dataset_loss, flatten, hessian_trace, hvp,
                                          spectral_density, top_k_eigenvalues)
from flatcast.diagnostics.interpolation import barrier_height, interpolation_path, parameter_state
from flatcast.diagnostics.landscape import random_direction, slice_1d, slice_2d
from flatcast.diagnostics.rank_correlation import rank_correlation
from flatcast.diagnostics.step_memory import peak_step_memory_mib
from flatcast.profiles import get_profile
from flatcast.provenance import REPO_ROOT, provenance
from flatcast.recipes import (OPTIMIZER_RECIPES, RECIPES, SGD_LR, build_model, fit_recipe_seeds, paper_rho, recipe,
                              recipe_optimizer)
from flatcast.trainer import TrainingStep
from flatcast.utils import resolve_device, seed_everything, torch_threads

__all__ = [
    "SharpnessConfig", "SHARPNESS_CONFIGS", "sharpness_config", "MAIN_RECIPES", "LANDSCAPE_RECIPES",
    "ResultsStore", "SharpnessStudy", "STUDY_PARTS", "run_key", "run_study", "measure_curvature", "compute_landscape",
    "step_cost", "claim_keys", "findings", "optimizer_label", "optimizer_table", "optimizer_verdict", "summary_table", "landscape_summary", "LANDSCAPE_COLUMNS", "recipe_label", "rho_grid_means", "rho_not_better", "rho_grid_summary", "sharpness_ratios", "flatness_correlations", "sharpness_verdicts", "claims_box", "results_path",
    "benchmark_seed_spread", "seed_spread_verdict", "SPREAD_DATASETS", "SPREAD_HORIZONS",
    "load_study", "planned_runs", "main",
]

#: The five recipes of the chapter (SAMformer Figs. 5 and 8, EEO-TFV §3.6).
MAIN_RECIPES = ("transformer", "samformer", "sigma_reparam", "samformer_sigma_reparam", "transformer_eeo")
#: The two solutions whose landscapes are drawn.
LANDSCAPE_RECIPES = ("transformer", "samformer")
#: Recipes whose step cost is measured (σReparam with and without SAM, App. B.5 Fig. 11).
COST_RECIPES = ("transformer", "sigma_reparam", "samformer", "samformer_sigma_reparam")


@dataclass(frozen=True)
class SharpnessConfig:
    """Sizes and settings of the sharpness study for one profile (module docstring: what each one means)."""

    profile: str
    datasets: tuple[str, ...]
    lookback: int
    horizon: int
    recipes: tuple[str, ...]
    seeds: tuple[int, ...]
    rho_grid: tuple[float, ...]
    rho_seeds: tuple[int, ...]
    epochs: int
    patience: int | None
    batch_size: int
    max_train_batches: int | None
    cosine: bool
    sharpness_samples: int | None  # None: the whole training split
    sharpness_iters: int  # Lanczos steps (= Hessian-vector products) for λmax and the top-k eigenvalues
    trace_samples: int
    landscape_datasets: tuple[str, ...]
    landscape_seeds: tuple[int, ...]
    landscape_samples: int | None  # windows of the train / validation split for the slices (None: all)
    slice_points: int
    slice_points_2d: int
    slice_radius: float  # filter-normalised slices: α, β ∈ [−r, r] (Li et al. 2018 use r = 1)
    eigen_radius: float  # eigenvector slice: α ∈ [−r, r] in weight units (the direction has unit norm)
    interp_range: tuple[float, float]
    slq_steps: int
    slq_runs: int
    top_k: int
    cost_steps: int
    direction_seed: int = 0
    threads: int | None = 1  # torch intra-op threads on the CPU (None: leave torch's setting)
    # SAMformer App. C.3 (S27): the Transformer under SGD / AdamW, trained on every dataset and seed, no curvature.
    # A field added after the paper study started: a results file whose header lacks it is read as "()" (see
    # ResultsStore) and extended when the first such run is stored.
    optimizer_recipes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        budget = f"{self.epochs} epochs" + (f" × ≤{self.max_train_batches} batches" if self.max_train_batches else "")
        stop = f", early stopping (patience {self.patience})" if self.patience else ""
        return (f"L={self.lookback}, H={self.horizon}, {budget}{stop}, batch {self.batch_size}, "
                f"{len(self.seeds)} seeds ({len(self.rho_seeds)} for the ρ grid)")

    def fingerprint(self) -> dict[str, Any]:
        """The fields that determine the results (``threads`` does not)."""
        out = asdict(self)
        out.pop("threads")
        return json.loads(json.dumps(out))  # tuples → lists, as they come back from a file


SHARPNESS_CONFIGS: dict[str, SharpnessConfig] = {
    # Reduced to fit about three minutes on two idle CPU cores: L = 96 instead of 512, 4 epochs of at most 20
    # batches (no early stopping), 3 seeds (2 for the ρ grid), curvature on 256 evenly spread training windows,
    # landscapes on ETTh1 only, coarse slices.
    "quick": SharpnessConfig(
        profile="quick", datasets=("ETTh1", "exchange_rate"), lookback=96, horizon=96, recipes=MAIN_RECIPES,
        seeds=(0, 1, 2), rho_grid=(0.0, 0.2, 1.0), rho_seeds=(0, 1), epochs=4, patience=None, batch_size=32,
        max_train_batches=20, cosine=True, sharpness_samples=256, sharpness_iters=20,
        trace_samples=5, landscape_datasets=("ETTh1",), landscape_seeds=(0, 1), landscape_samples=256,
        slice_points=13, slice_points_2d=9, slice_radius=1.0, eigen_radius=2.0, interp_range=(-0.5, 1.5),
        slq_steps=30, slq_runs=1, top_k=5, cost_steps=10, optimizer_recipes=OPTIMIZER_RECIPES,
    ),
    # SAMformer App. A.1: L = 512, H = 96, Adam, batch 32, up to 300 epochs, early stopping with patience 5,
    # cosine annealing, the lr of Table 3 and ρ* of Table 4; 5 seeds (Fig. 5b). Curvature on the whole training
    # split (as the authors' code), 50 Lanczos steps, 20 Hutchinson probes. The ρ grid brackets ρ* (ETTh1 0.5, Exchange 0.7).
    "paper": SharpnessConfig(
        profile="paper", datasets=("ETTh1", "exchange_rate"), lookback=512, horizon=96, recipes=MAIN_RECIPES,
        seeds=(0, 1, 2, 3, 4), rho_grid=(0.0, 0.1, 0.2, 0.5, 0.7, 1.0, 2.0, 5.0), rho_seeds=(0, 1, 2, 3, 4),
        epochs=300, patience=5, batch_size=32, max_train_batches=None, cosine=True, sharpness_samples=None,
        sharpness_iters=50, trace_samples=20, landscape_datasets=("ETTh1", "exchange_rate"),
        landscape_seeds=(0, 1, 2), landscape_samples=2048, slice_points=41, slice_points_2d=21, slice_radius=1.0,
        eigen_radius=2.0, interp_range=(-0.5, 1.5), slq_steps=80, slq_runs=3, top_k=10, cost_steps=50,
        optimizer_recipes=OPTIMIZER_RECIPES,
    ),
}


def sharpness_config(profile: str = "quick", **overrides: Any) -> SharpnessConfig:
    """The :class:`SharpnessConfig` of ``profile`` (``"quick"`` | ``"paper"``), with any field overridden."""
    get_profile(profile)
    fields = SharpnessConfig.__dataclass_fields__
    unknown = set(overrides) - set(fields)
    if unknown:
        raise ValueError(f"unknown SharpnessConfig fields {sorted(unknown)}; known: {sorted(fields)}")
    for key in ("datasets", "recipes", "landscape_datasets", "optimizer_recipes"):
        if key in overrides:
            overrides[key] = tuple(str(v) for v in overrides[key])
    for key in ("seeds", "rho_seeds", "landscape_seeds"):
        if key in overrides:
            overrides[key] = tuple(int(v) for v in overrides[key])
    if "rho_grid" in overrides:
        overrides["rho_grid"] = tuple(float(v) for v in overrides["rho_grid"])
    config = replace(SHARPNESS_CONFIGS[profile], **overrides)
    for name in config.recipes:
        recipe(name)  # KeyError naming the known recipes
    unknown = [n for n in config.optimizer_recipes if n not in OPTIMIZER_RECIPES]
    if unknown:
        raise ValueError(f"optimizer_recipes {unknown} are not App. C.3 recipes; use some of {OPTIMIZER_RECIPES}")
    if any(r < 0 for r in config.rho_grid):
        raise ValueError(f"rho_grid must hold values >= 0, got {config.rho_grid}")
    if not set(config.landscape_datasets) <= set(config.datasets):
        raise ValueError(f"landscape_datasets {config.landscape_datasets} must be among datasets {config.datasets}")
    return config


# --------------------------------------------------------------------------------------------- result store
def _rho_key(rho: float | None) -> float | None:
    return None if rho is None else round(float(rho), 6)


def run_key(recipe_name: str, dataset: str, seed: int, rho: float | None) -> str:
    """The key of one training run: ``run|recipe|dataset|seed|ρ`` (ρ ``None`` for recipes without one)."""
    return f"run|{recipe_name}|{dataset}|{int(seed)}|{_rho_key(rho)}"


def _landscape_key(dataset: str, seed: int) -> str:
    return f"landscape|{dataset}|{int(seed)}"


def _cost_key(recipe_name: str, dataset: str) -> str:
    return f"cost|{recipe_name}|{dataset}"


#: Configuration fields added after results files were first written; a file without one means the field's dataclass
#: default (which :func:`load_study` fills in).
_ADDED_FIELDS = ("optimizer_recipes",)


class ResultsStore:
    """An append-only JSON-lines file of finished items, keyed; ``path=None`` keeps everything in memory.

    Line 1 is ``{"type": "header", "config": ..., "provenance": ...}``; every other line is one record with a
    unique ``key``. Each record is written with one ``write`` + ``flush`` + ``fsync``, so a killed process
    leaves at most one partial last line: it is dropped (with a warning) when the file is opened again. Any
    other unreadable line, a duplicate key or a header with another configuration raises ``ValueError``.
    ``read_only=True`` (:func:`load_study`: the chapter and ``--verdicts-only``, possibly beside a running writer)
    never writes: a partial last line is skipped in memory, the file left as it is.
    """

    def __init__(self, path: str | os.PathLike | None, config: SharpnessConfig,
                 run_provenance: dict[str, Any] | None = None, read_only: bool = False) -> None:
        self._stale_header = False
        self.read_only = read_only
        self.path = None if path is None else Path(path)
        self.config = config
        self.records: dict[str, dict[str, Any]] = {}
        self.header: dict[str, Any] = {"type": "header", "config": config.fingerprint(),
                                       "provenance": run_provenance or {}}
        if self.path is not None and self.path.exists() and self.path.stat().st_size > 0:
            self._load()
        elif self.path is not None and not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_line(self.header, mode="w")

    def _load(self) -> None:
        text = self.path.read_text(encoding="utf-8")
        lines = text.split("\n")
        complete = text.endswith("\n")
        if complete:
            lines = lines[:-1]
        parsed = []
        for number, line in enumerate(lines, start=1):
            try:
                parsed.append(json.loads(line))
            except ValueError:
                if number == len(lines) and not complete:
                    if self.read_only:  # a reader beside a running writer: the line may be half-way written
                        break
                    warnings.warn(f"{self.path}: dropping the unfinished last line {number} (an interrupted write)")
                    good = "".join(line_ + "\n" for line_ in lines[:-1])
                    self.path.write_text(good, encoding="utf-8")
                    break
                raise ValueError(f"{self.path}: line {number} is not valid JSON; the results file is corrupt "
                                 f"(move it away to start over)") from None
        if not parsed or parsed[0].get("type") != "header":
            raise ValueError(f"{self.path}: the first line is not a sharpness results header")
        stored = parsed[0].get("config", {})
        expected = self.config.fingerprint()
        added = [k for k in _ADDED_FIELDS if k not in stored and k in expected]
        if added and stored == {k: v for k, v in expected.items() if k not in added}:
            # written before these fields existed, with the same configuration otherwise: the stored records stay
            # valid (an added field only adds runs); the header is brought up to date when the next record is stored
            self._stale_header = True
            parsed[0] = {**parsed[0], "config": expected}
            stored = expected
        if stored != expected:
            differ = sorted(k for k in set(stored) | set(expected) if stored.get(k) != expected.get(k))
            raise ValueError(f"{self.path} was written with another configuration (fields {differ} differ); "
                             f"use --out to write elsewhere or move the file away")
        self.header = parsed[0]
        for number, record in enumerate(parsed[1:], start=2):
            key = record.get("key")
            if not key or key in self.records:
                raise ValueError(f"{self.path}: line {number} has a missing or duplicate key {key!r}")
            self.records[key] = record

    def _rewrite_header(self) -> None:
        """Replace line 1 by the current header (atomically: a temporary file renamed over the old one)."""
        lines = self.path.read_text(encoding="utf-8").split("\n", 1)
        temporary = self.path.with_suffix(self.path.suffix + ".tmp")
        temporary.write_text(json.dumps(self.header, ensure_ascii=False) + "\n" + (lines[1] if len(lines) > 1 else ""),
                             encoding="utf-8")
        os.replace(temporary, self.path)
        self._stale_header = False

    def _write_line(self, record: dict[str, Any], mode: str = "a") -> None:
        with open(self.path, mode, encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def has(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> dict[str, Any]:
        return self.records[key]

    def append(self, record: dict[str, Any]) -> None:
        key = record.get("key")
        if not key:
            raise ValueError("a record needs a key")
        if key in self.records:
            raise ValueError(f"record {key!r} is already stored")
        if self.read_only:
            raise ValueError(f"{self.path} was opened read-only")
        record = json.loads(json.dumps(record))  # exactly what a reload would give (tuples → lists, floats)
        if self.path is not None:
            if self._stale_header:
                self._rewrite_header()
            self._write_line(record)
        self.records[key] = record

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records.values() if r.get("type") == kind]

    @property
    def models_dir(self) -> Path | None:
        return None if self.path is None else self.path.with_suffix(".models")


# --------------------------------------------------------------------------------------------- measurements
def _even_subset(windows, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` windows spread evenly over the split (all of them when ``n`` is None or too large)."""
    total = len(windows)
    if n is None or n >= total:
        return windows.x[:], windows.y[:]
    index = torch.linspace(0, total - 1, n).round().long()
    return windows.x[index], windows.y[index]


def measure_curvature(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor], config: SharpnessConfig,
                      horizon: int, seed: int = 0) -> dict[str, Any]:
    """λmax, tr H, the gradient norm and the SAMformer code's ``gᵀHv`` number of ``model`` on ``data``.

    λmax by Lanczos (module docstring); tr H by Hutchinson with ``config.trace_samples`` Rademacher
    probes; ``g_h_u = |gᵀ H u|`` with ``u`` the converged top eigenvector (what the authors' iteration converges
    to, for the mean loss) and ``authors_sharpness = (N·H)² g_h_u`` for a loss summed over the N windows and the
    H horizon steps, as in their code. Also the training loss on ``data`` at the solution.
    """
    start = time.perf_counter()
    (lam,), (vector,) = top_k_eigenvalues(model, data, k=1, lanczos_steps=config.sharpness_iters, seed=seed)
    trace = hessian_trace(model, data, n_samples=config.trace_samples, seed=seed)
    gradient = flatten(dataset_gradient(model, data), torch.float64)
    h_u = flatten(hvp(model, data, vector), torch.float64)
    g_h_u = abs(float(torch.dot(gradient, h_u)))
    n_windows = int(data[0].shape[0])
    return {
        "lambda_max": float(lam), "trace": float(trace), "grad_norm": float(torch.linalg.vector_norm(gradient)),
        "g_h_u": g_h_u, "authors_sharpness": (n_windows * horizon) ** 2 * g_h_u,
        "sharpness_train_loss": dataset_loss(model, data), "sharpness_windows": n_windows,
        "sharpness_seconds": time.perf_counter() - start,
    }


def step_cost(recipe_name: str, splits: Splits, config: SharpnessConfig, device: str = "cpu",
              rho: float | None = None) -> dict[str, Any]:
    """What one optimizer step of ``recipe_name`` costs on a training batch: seconds (median over
    ``config.cost_steps`` after 3 warm-up steps), gradient evaluations per step, and the step's peak working memory
    in MiB on the CPU or CUDA (:func:`flatcast.diagnostics.step_memory.peak_step_memory_mib`: memory held on top of
    the weights and optimizer state, the median over 3 measured steps).

    Every recipe is timed through the same autograd step (:class:`flatcast.trainer.TrainingStep` with
    ``closed_form=False``), as the papers' implementations train: the hand-derived gradient that ``fit`` uses for
    the plain channel transformer has no σReparam counterpart, and timing it would measure our shortcut, not
    σReparam's cost (App. B.5's question)."""
    dev = resolve_device(device)
    factory, lr, rho = recipe_optimizer(recipe_name, splits.name, splits.horizon, rho=rho)
    seed_everything(0)
    model = build_model(recipe_name, splits.lookback, splits.horizon, splits.n_channels, 0).to(dev)
    model.train()
    optimizer = factory(model.parameters())
    step = TrainingStep(model, optimizer, closed_form=False)
    x = splits.train.x[: config.batch_size].to(dev)
    y = splits.train.y[: config.batch_size].to(dev)
    for _ in range(3):
        step(x, y)
    memory = statistics.median(peak_step_memory_mib(lambda: step(x, y), dev) for _ in range(3))
    counted = step.grad_evals
    times = []
    for _ in range(config.cost_steps):
        t0 = time.perf_counter()
        step(x, y)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    return {"seconds_per_step": statistics.median(times),
            "grad_evals_per_step": (step.grad_evals - counted) / config.cost_steps,
            "peak_memory_mib": memory, "rho": rho, "lr": lr,
            "n_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def compute_landscape(models: dict[str, torch.nn.Module], inits: dict[str, dict[str, torch.Tensor]],
                      train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                      config: SharpnessConfig, seed: int = 0) -> dict[str, Any]:
    """Every landscape of the chapter for the solutions ``models`` (recipe → trained model) of one seed.

    Per model: filter-normalised random 1-D slice and 2-D plane (direction seeds ``config.direction_seed`` and
    ``+1``, the same for every model, each filter-normalised to its own model), the slice along the top Hessian
    eigenvector (Lanczos, as λmax), train and validation loss on each, the SLQ density and the top-k eigenvalues. Between models:
    the linear interpolation from each model's initialisation ``inits[recipe]`` to its solution, and from the
    first model's solution to the second's. All arrays are lists (JSON).
    """
    out: dict[str, Any] = {"models": {}, "interpolation": {}}
    alphas = np.linspace(-config.slice_radius, config.slice_radius, config.slice_points)
    alphas_2d = np.linspace(-config.slice_radius, config.slice_radius, config.slice_points_2d)
    eigen_alphas = np.linspace(-config.eigen_radius, config.eigen_radius, config.slice_points)
    for name, model in models.items():
        d1 = random_direction(model, seed=config.direction_seed)
        d2 = random_direction(model, seed=config.direction_seed + 1)
        top_k, vectors = top_k_eigenvalues(model, train, k=config.top_k,
                                           lanczos_steps=max(config.sharpness_iters, config.top_k), seed=seed)
        lam, v = top_k[0], vectors[0]
        grid, density = spectral_density(model, train, n_runs=config.slq_runs, lanczos_steps=config.slq_steps,
                                         grid=400, seed=seed)
        out["models"][name] = {
            "random_1d": {"alphas": alphas.tolist(), "train": slice_1d(model, train, d1, alphas).tolist(),
                          "val": slice_1d(model, val, d1, alphas).tolist()},
            "eigen_1d": {"alphas": eigen_alphas.tolist(), "lambda_max": float(lam),
                         "train": slice_1d(model, train, v, eigen_alphas).tolist(),
                         "val": slice_1d(model, val, v, eigen_alphas).tolist()},
            "random_2d": {"alphas": alphas_2d.tolist(), "train": slice_2d(model, train, d1, d2, alphas_2d,
                                                                          alphas_2d).tolist(),
                          "val": slice_2d(model, val, d1, d2, alphas_2d, alphas_2d).tolist()},
            "density": {"grid": grid.tolist(), "density": density.tolist()},
            "top_k": [float(e) for e in top_k],
        }
    interp = np.linspace(config.interp_range[0], config.interp_range[1], config.slice_points)
    names = list(models)
    paths = {f"init → {n}": (inits[n], parameter_state(models[n]), n) for n in names}
    if len(names) >= 2:
        paths[f"{names[0]} → {names[1]}"] = (parameter_state(models[names[0]]), parameter_state(models[names[1]]),
                                            names[0])
    for label, (a, b, host) in paths.items():
        train_losses = interpolation_path(models[host], train, a, b, interp)
        val_losses = interpolation_path(models[host], val, a, b, interp)
        try:
            barrier = barrier_height(interp, train_losses)
        except ValueError:  # the grid does not contain both ends
            barrier = float("nan")
        out["interpolation"][label] = {"alphas": interp.tolist(), "train": train_losses.tolist(),
                                       "val": val_losses.tolist(), "train_barrier": barrier}
    return out


# --------------------------------------------------------------------------------------------- the study
@dataclass
class SharpnessStudy:
    """Everything the chapter shows, read from a :class:`ResultsStore`."""

    config: SharpnessConfig
    runs: pd.DataFrame
    landscapes: dict[tuple[str, int], dict[str, Any]]
    costs: pd.DataFrame
    provenance: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = float("nan")
    complete: bool = True

    @classmethod
    def from_store(cls, store: ResultsStore, wall_time_s: float = float("nan")) -> "SharpnessStudy":
        runs = pd.DataFrame([{k: v for k, v in r.items() if k not in ("history",)} for r in store.of_type("run")])
        costs = pd.DataFrame(store.of_type("cost"))
        landscapes = {(r["dataset"], int(r["seed"])): r["landscape"] for r in store.of_type("landscape")}
        planned = planned_runs(store.config)
        done = {r["key"] for r in store.of_type("run")}
        return cls(config=store.config, runs=runs, landscapes=landscapes, costs=costs,
                   provenance=store.header.get("provenance", {}), wall_time_s=wall_time_s,
                   complete=planned <= done)

    def stored_keys(self) -> set[str]:
        """The keys of every stored run and cost record."""
        return {str(k) for frame in (self.runs, self.costs) if "key" in frame for k in frame["key"]}

    def runs_of(self, recipe_name: str, dataset: str, rho: float | None | str = "main") -> pd.DataFrame:
        """Runs of ``recipe_name`` on ``dataset``; ``rho="main"``: the recipe's own ρ (ρ* for SAM/EEO)."""
        if self.runs.empty:
            return self.runs
        frame = self.runs[(self.runs["recipe"] == recipe_name) & (self.runs["dataset"] == dataset)]
        if rho == "main":
            return frame[frame["main"]]
        if rho is None:
            return frame[frame["rho"].isna()]
        return frame[np.isclose(frame["rho"].astype(float), float(rho))]


def _main_rho(recipe_name: str, dataset: str, horizon: int) -> float | None:
    return paper_rho(dataset, horizon, fallback=True) if recipe(recipe_name).uses_rho else None


def planned_runs(config: SharpnessConfig) -> set[str]:
    """Every run key the configuration asks for (main recipes × seeds, ρ grid × ρ seeds, App. C.3 optimizer
    recipes × seeds, per dataset)."""
    keys = set()
    for dataset in config.datasets:
        for name in config.recipes:
            for seed in config.seeds:
                keys.add(run_key(name, dataset, seed, _main_rho(name, dataset, config.horizon)))
        for rho in config.rho_grid:
            for seed in config.rho_seeds:
                keys.add(run_key("samformer", dataset, seed, rho))
        for name in config.optimizer_recipes:
            for seed in config.seeds:
                keys.add(run_key(name, dataset, seed, None))
    return keys


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)


#: The parts of the study :func:`run_study` can be restricted to (``--only``).
STUDY_PARTS = ("runs", "landscapes")


class _Budget(Exception):
    """Raised to stop after ``max_runs`` newly trained runs."""


def run_study(config: SharpnessConfig, path: str | os.PathLike | None = None, device: str = "cpu",
              progress: bool = False, max_runs: int | None = None,
              run_provenance: dict[str, Any] | None = None,
              parts: Collection[str] = STUDY_PARTS) -> SharpnessStudy:
    """Run (or resume) the study of ``config``, appending every finished item to ``path`` (``None``: in memory).

    Items already in the file are skipped. ``max_runs`` stops after that many newly trained runs (the study
    returned is then marked ``complete=False``). ``parts`` (of :data:`STUDY_PARTS`) restricts the work to the
    trained runs (main recipes, step costs, optimizer recipes, ρ grids) or to the landscapes, so that two processes
    can share one results file: each appends whole lines and skips what it has loaded, and the two parts never
    write the same item. Returns the :class:`SharpnessStudy` of everything stored (as this process knows it).
    """
    unknown = set(parts) - set(STUDY_PARTS)
    if unknown or not parts:
        raise ValueError(f"parts must be a non-empty subset of {STUDY_PARTS}, got {tuple(parts)}")
    start = time.perf_counter()
    dev = resolve_device(device)
    store = ResultsStore(path, config, run_provenance)
    resumed = [store.path is not None and bool(store.records) and bool(run_provenance)]

    def append(record: dict[str, Any]) -> None:
        if resumed[0]:  # a resumed session that adds something: record which code and machine continued the file
            store.append({"type": "session", "key": f"session|{run_provenance.get('date')}|{len(store.records)}",
                          "provenance": run_provenance})
            resumed[0] = False
        store.append(record)

    trained = [0]
    train_options = dict(epochs=config.epochs, patience=config.patience, batch_size=config.batch_size,
                         cosine=config.cosine, max_train_batches=config.max_train_batches, device=str(dev),
                         threads=config.threads)
    kept_models: dict[tuple[str, str, int], torch.nn.Module] = {}

    def wants_model(name: str, dataset: str, seed: int, rho: float | None) -> bool:
        return (name in LANDSCAPE_RECIPES and dataset in config.landscape_datasets
                and seed in config.landscape_seeds and _rho_key(rho) == _rho_key(_main_rho(name, dataset,
                                                                                           config.horizon)))

    def train_group(name: str, splits: Splits, seeds: Sequence[int], rho: float | None,
                    sharp_data, main: bool, curvature: bool = True) -> None:
        missing = [s for s in seeds if not store.has(run_key(name, splits.name, s, rho))]
        if not missing:
            return
        if max_runs is not None:
            if trained[0] >= max_runs:
                raise _Budget
            missing = missing[: max_runs - trained[0]]
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        results = fit_recipe_seeds(name, splits, missing, rho=rho, **train_options)
        group_seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else float("nan")
        for seed, result in zip(missing, results):
            measured = {}
            if curvature:
                with torch_threads(config.threads if dev.type == "cpu" else None):
                    measured = measure_curvature(result.model, sharp_data, config, splits.horizon, seed=0)
            history = result.history
            record = {
                "type": "run", "key": run_key(name, splits.name, seed, rho), "recipe": name,
                "label": RECIPES[name].label, "dataset": splits.name, "seed": int(seed), "rho": _rho_key(rho),
                "main": bool(main), "lr": result.recipe["lr"], "test_mse": result.test_mse,
                "test_mae": result.test_mae, "val_mse": result.val_mse, "best_epoch": int(result.best_epoch),
                "epochs_run": int(history["epoch"].max()), "n_steps": int(result.n_steps),
                "grad_evals": int(result.grad_evals), "wall_time_s": float(result.wall_time_s),
                "group_seconds": group_seconds, "group_size": len(missing), "group_peak_memory_mib": peak,
                "n_params": sum(p.numel() for p in result.model.parameters() if p.requires_grad),
                **measured,
                "history": {"epoch": history["epoch"].tolist(), "train_loss": history["train_loss"].tolist(),
                            "val_mse": history["val_mse"].tolist()},
            }
            append(record)
            trained[0] += 1
            if wants_model(name, splits.name, seed, rho):
                kept_models[(name, splits.name, seed)] = result.model
                if store.models_dir is not None:
                    store.models_dir.mkdir(parents=True, exist_ok=True)
                    torch.save({k: v.cpu() for k, v in parameter_state(result.model).items()},
                               store.models_dir / f"{name}_{splits.name}_s{seed}.pt")
            sharpness = (f"λmax {measured['lambda_max']:.4g}, tr H {measured['trace']:.4g} ({result.wall_time_s:.0f} s + "
                         f"{measured['sharpness_seconds']:.0f} s)" if measured else
                         f"no curvature ({result.wall_time_s:.0f} s, {int(history['epoch'].max())} epochs)")
            _say(progress, f"[{trained[0]} new] {RECIPES[name].label:<24} {splits.name:<14} seed {seed} "
                           f"ρ={_rho_key(rho)}: test MSE {result.test_mse:.4f}, {sharpness}")

    def solution(name: str, splits: Splits, seed: int) -> torch.nn.Module:
        """A kept model, else its saved weights, else retrain it (the run record is already stored)."""
        key = (name, splits.name, seed)
        if key in kept_models:
            return kept_models[key]
        seed_everything(seed)
        model = build_model(name, splits.lookback, splits.horizon, splits.n_channels, seed).to(dev)
        saved = None if store.models_dir is None else store.models_dir / f"{name}_{splits.name}_s{seed}.pt"
        if saved is not None and saved.is_file():
            state = torch.load(saved, map_location=dev)
            with torch.no_grad():
                for pname, p in model.named_parameters():
                    p.copy_(state[pname])
            return model
        rho = _main_rho(name, splits.name, splits.horizon)
        return fit_recipe_seeds(name, splits, [seed], rho=rho, **train_options)[0].model

    complete = True
    try:
        # In order of value per CPU hour, so that a study stopped half-way has the main comparison on every
        # dataset first: (1) the main recipes on every dataset, (2) their step costs (a minute), (3) the App. C.3
        # optimizer recipes (training only), (4) the ρ grids, (5) the landscapes.
        every_splits = {dataset: make_splits(dataset, config.lookback, config.horizon) for dataset in config.datasets}
        every_sharp_data = {dataset: _even_subset(splits.train, config.sharpness_samples)
                            for dataset, splits in every_splits.items()}
        runs = "runs" in parts
        for dataset, splits in every_splits.items():
            for name in config.recipes if runs else ():
                train_group(name, splits, config.seeds, _main_rho(name, dataset, config.horizon),
                            every_sharp_data[dataset], True)
        for dataset, splits in every_splits.items():
            for name in COST_RECIPES if runs else ():
                key = _cost_key(name, dataset)
                if name not in config.recipes or store.has(key):
                    continue
                with torch_threads(config.threads if dev.type == "cpu" else None):
                    cost = step_cost(name, splits, config, device=str(dev))
                append({"type": "cost", "key": key, "recipe": name, "label": RECIPES[name].label,
                        "dataset": dataset, "device": str(dev), **cost})
        for dataset, splits in every_splits.items():
            for name in config.optimizer_recipes if runs else ():
                train_group(name, splits, config.seeds, None, every_sharp_data[dataset], True, curvature=False)
        for dataset, splits in every_splits.items():
            for rho in config.rho_grid if runs else ():
                is_main = _rho_key(rho) == _rho_key(_main_rho("samformer", dataset, config.horizon))
                train_group("samformer", splits, config.rho_seeds, rho, every_sharp_data[dataset], is_main)
        for dataset in config.landscape_datasets if "landscapes" in parts else ():
            splits = every_splits[dataset]
            train_w = _even_subset(splits.train, config.landscape_samples)
            val_w = _even_subset(splits.val, config.landscape_samples)
            for seed in config.landscape_seeds:
                key = _landscape_key(dataset, seed)
                if store.has(key):
                    continue
                t0 = time.perf_counter()
                models = {n: solution(n, splits, seed) for n in LANDSCAPE_RECIPES}
                inits = {}
                for n in LANDSCAPE_RECIPES:
                    seed_everything(seed)
                    inits[n] = parameter_state(build_model(n, splits.lookback, splits.horizon,
                                                           splits.n_channels, seed).to(dev))
                with torch_threads(config.threads if dev.type == "cpu" else None):
                    landscape = compute_landscape(models, inits, train_w, val_w, config, seed=0)
                append({"type": "landscape", "key": key, "dataset": dataset, "seed": int(seed),
                        "landscape": landscape, "seconds": time.perf_counter() - t0})
                _say(progress, f"landscape {dataset} seed {seed} ({time.perf_counter() - t0:.0f} s)")
    except _Budget:
        complete = False
        _say(progress, f"stopped after {trained[0]} new runs (--max-runs); run the same command again to continue")
    study = SharpnessStudy.from_store(store, wall_time_s=time.perf_counter() - start)
    study.complete = study.complete and complete
    return study


# --------------------------------------------------------------------------------------------- summaries
def _geomean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.exp(np.log(values).mean())) if values.size else float("nan")


def summary_table(study: SharpnessStudy) -> pd.DataFrame:
    """Per dataset and recipe (own ρ): test MSE mean ± std over seeds, λmax (geometric mean and range), tr H,
    epochs trained and wall time per run."""
    rows = []
    for dataset in study.config.datasets:
        for name in study.config.recipes:
            runs = study.runs_of(name, dataset)
            if runs.empty:
                continue
            rows.append({
                "dataset": dataset, "model": RECIPES[name].label,
                "ρ": "" if pd.isna(runs["rho"].iloc[0]) else f"{float(runs['rho'].iloc[0]):g}", "seeds": len(runs),
                "test MSE": f"{runs['test_mse'].mean():.4f} ± {runs['test_mse'].std(ddof=1) if len(runs) > 1 else 0:.4f}",
                "λmax (geo. mean)": _geomean(runs["lambda_max"]),
                "λmax min–max": f"{runs['lambda_max'].min():.3g}–{runs['lambda_max'].max():.3g}",
                "tr H (mean)": float(runs["trace"].mean()),
                "gᵀHu (authors' number, mean loss)": float(runs["g_h_u"].mean()),
                "epochs": f"{runs['epochs_run'].mean():.0f}", "s / run": float(runs["wall_time_s"].mean()),
            })
    return pd.DataFrame(rows)


def sharpness_ratios(study: SharpnessStudy, baseline: str = "samformer") -> pd.DataFrame:
    """Per dataset and recipe: the ratio of its geometric-mean λmax, tr H and authors' number to ``baseline``'s
    (SAMformer Fig. 5a reads "Transformer / SAMformer")."""
    rows = []
    for dataset in study.config.datasets:
        base = study.runs_of(baseline, dataset)
        if base.empty:
            continue
        for name in study.config.recipes:
            runs = study.runs_of(name, dataset)
            if name == baseline or runs.empty:
                continue
            row = {"dataset": dataset, "model": RECIPES[name].label}
            for column, label in FLATNESS_MEASURES.items():
                row[f"{label}: × {RECIPES[baseline].label}"] = _geomean(runs[column]) / _geomean(base[column])
            rows.append(row)
    return pd.DataFrame(rows)


FLATNESS_MEASURES = {"lambda_max": "λmax", "trace": "tr H", "authors_sharpness": "authors' gᵀHv"}

#: A point of a 2-D slice belongs to the solution's basin when its loss is at most this multiple of the centre's.
BASIN_FACTOR = 2.0


#: Readable headers for :func:`landscape_summary`'s table in the chapter.
LANDSCAPE_COLUMNS = {"lambda_max": "λmax", "train_mse": "train MSE", "val_mse": "val. MSE",
                     "random_rise": "rise, random (train)", "random_rise_val": "rise, random (val.)",
                     "eigen_rise": "rise, top eigenvector (train)", "basin_share": f"basin share (≤ {BASIN_FACTOR:g}×)",
                     "barrier": "barrier T → S (train)"}


def _rise(piece: dict[str, Any], split: str = "train") -> tuple[float, float]:
    """``(loss at the solution, mean loss at the two ends of the slice / loss at the solution)`` of a 1-D slice."""
    alphas = np.asarray(piece["alphas"], dtype=float)
    losses = np.asarray(piece[split], dtype=float)
    centre = float(losses[np.argmin(np.abs(alphas))])
    return centre, float((losses[0] + losses[-1]) / 2 / centre)


def landscape_summary(study: SharpnessStudy) -> pd.DataFrame:
    """Numbers read off each stored landscape set, one row per dataset, seed and model (the landscapes' own
    windows: ``landscape_samples`` of the train and validation splits):

    * ``lambda_max`` — the top Hessian eigenvalue (Lanczos) of the eigenvector slice;
    * ``train_mse`` / ``val_mse`` — the losses at the solution;
    * ``random_rise`` / ``random_rise_val`` — the mean loss at the two ends of the filter-normalised random slice
      (α = ±``slice_radius``) over the loss at the solution: how far the loss climbs one filter norm away;
    * ``eigen_rise`` — the same along the top eigenvector (α = ±``eigen_radius``);
    * ``basin_share`` — the share of the 2-D random plane whose training loss is at most :data:`BASIN_FACTOR` × the
      solution's (the dark region of the contour plots);
    * ``barrier`` — the training-loss barrier on the straight line Transformer → SAMformer (same on both rows).
    """
    rows = []
    for (dataset, seed), landscape in sorted(study.landscapes.items()):
        pair = [p for label, p in landscape["interpolation"].items() if not label.startswith("init")]
        barrier = float(pair[0]["train_barrier"]) if pair else float("nan")
        for name, piece in landscape["models"].items():
            train_mse, random_rise = _rise(piece["random_1d"], "train")
            val_mse, random_rise_val = _rise(piece["random_1d"], "val")
            _, eigen_rise = _rise(piece["eigen_1d"], "train")
            plane = np.asarray(piece["random_2d"]["train"], dtype=float)
            centre = plane[plane.shape[0] // 2, plane.shape[1] // 2]
            rows.append({"dataset": dataset, "seed": int(seed), "recipe": name, "model": recipe_label(name),
                         "lambda_max": float(piece["top_k"][0]), "train_mse": train_mse, "val_mse": val_mse,
                         "random_rise": random_rise, "random_rise_val": random_rise_val, "eigen_rise": eigen_rise,
                         "basin_share": float(np.mean(plane <= BASIN_FACTOR * centre)), "barrier": barrier})
    return pd.DataFrame(rows, columns=["dataset", "seed", "recipe", "model", "lambda_max", "train_mse", "val_mse",
                                       "random_rise", "random_rise_val", "eigen_rise", "basin_share", "barrier"])


def recipe_label(name: str) -> str:
    """The recipe's display label (the name itself for a name that is not a recipe)."""
    return RECIPES[name].label if name in RECIPES else name


def flatness_correlations(study: SharpnessStudy, n_permutations: int = 2000) -> pd.DataFrame:
    """Rank correlation of each flatness measure with the test MSE over every run of a dataset whose curvature
    was measured (all recipes, seeds and ρ; the App. C.3 optimizer runs have none). Within a dataset only: test
    MSEs of different datasets are on different scales."""
    rows = []
    for dataset in study.config.datasets:
        runs = study.runs[study.runs["dataset"] == dataset] if not study.runs.empty else study.runs
        for column, label in FLATNESS_MEASURES.items():
            measured = runs[runs[column].notna()] if column in runs else runs.iloc[:0]
            if len(measured) < 3:
                continue
            stats = rank_correlation(measured[column].to_numpy(), measured["test_mse"].to_numpy(),
                                     n_permutations=n_permutations)
            rows.append({"dataset": dataset, "measure": label, **stats})
    return pd.DataFrame(rows, columns=["dataset", "measure", "n", "spearman", "kendall_tau_b", "p_value"])


#: S19: "an order of magnitude smaller".
ORDER_OF_MAGNITUDE = 10.0
#: S20: Transformer's seed spread "significant" when its test-MSE std is at least this multiple of SAMformer's.
SPREAD_FACTOR = 2.0
#: S30: "significantly increases training time and memory usage" when a step of SAM + σReparam takes this multiple of
#: SAM's time (and of its peak working memory).
COST_FACTOR = 1.5


#: S20 at the paper's size: the datasets × horizons of SAMformer Table 1 that can run here (electricity and traffic
#: cannot be had on these machines).
SPREAD_DATASETS = ("ETTh1", "ETTh2", "ETTm1", "ETTm2", "exchange_rate", "weather")
SPREAD_HORIZONS = (96, 192, 336, 720)


def benchmark_seed_spread(results: list[dict] | None = None,
                          recipes: Sequence[str] = ("transformer", "samformer")) -> pd.DataFrame:
    """Seed spread at the paper's size from the benchmark grid's SAMformer Table 1 cells (SAMformer Fig. 5b, App.
    B.4 Figs. 9–10: "holds across all datasets and prediction horizons").

    ``results``: finished paper-profile cells (default: :func:`flatcast.experiments.benchmark.paper_results`, the
    committed store). One row per (dataset, horizon) where every recipe of ``recipes`` has a finished cell: for each
    recipe the test-MSE mean, std over seeds (ddof 1) and number of seeds, the per-seed values, and the ratio of
    the first recipe's std to the second's; ``current_code`` is false when a cell was computed by older code.
    """
    from flatcast.experiments.benchmark import paper_results, seed_frame

    frame = seed_frame(paper_results() if results is None else results)
    columns = ["dataset", "horizon", *[f"{r}_{m}" for r in recipes for m in ("mean", "std", "n", "seeds")],
               "std_ratio", "current_code"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame = frame[frame["recipe"].isin(recipes)]
    rows = []
    for (dataset, horizon), cell in frame.groupby(["dataset", "horizon"], sort=False):
        if set(cell["recipe"]) != set(recipes):
            continue
        row: dict[str, Any] = {"dataset": dataset, "horizon": int(horizon),
                               "current_code": bool(cell["current_code"].all())}
        for name in recipes:
            values = cell.loc[cell["recipe"] == name, "test_mse"].to_numpy(dtype=float)
            row.update({f"{name}_mean": float(values.mean()),
                        f"{name}_std": float(values.std(ddof=1)) if values.size > 1 else float("nan"),
                        f"{name}_n": int(values.size), f"{name}_seeds": values.tolist()})
        row["std_ratio"] = row[f"{recipes[0]}_std"] / row[f"{recipes[1]}_std"]
        rows.append(row)
    out = pd.DataFrame(rows, columns=columns)
    order = {name: i for i, name in enumerate(_table_names(SPREAD_DATASETS))}
    return out.sort_values(["dataset", "horizon"], key=lambda c: c.map(order) if c.name == "dataset" else c,
                           ignore_index=True)


def _table_names(datasets: Sequence[str]) -> list[str]:
    from flatcast.experiments.benchmark import TABLE_NAMES

    return [TABLE_NAMES.get(d, d) for d in datasets]


def seed_spread_verdict(spread: pd.DataFrame) -> dict[str, str]:
    """S20 from :func:`benchmark_seed_spread`: ``{"id", "measured", "rule", "verdict"}``.

    The claim is that the Transformer's test MSE varies a lot over seeds and SAMformer's does not, on every dataset
    and horizon. Rule: supported if the Transformer's std is at least :data:`SPREAD_FACTOR` × SAMformer's in every
    available (dataset, horizon) pair; partly supported if it is larger in most pairs; not supported otherwise.
    Until all 6 × 4 pairs have finished cells the verdict is "inconclusive" (the rule's outcome on the pairs run
    is given) — unless no result of the missing pairs could change it: the rule's outcome only grows with the
    number of pairs where the Transformer's spread is wider, so it is settled when the two extreme completions (every
    missing pair ≥ :data:`SPREAD_FACTOR` ×, every missing pair not wider) give the same outcome."""
    expected = len(SPREAD_DATASETS) * len(SPREAD_HORIZONS)
    n = len(spread)

    def rule_outcome(wider_pairs: int, much_pairs: int, pairs: int) -> str:
        return ("supported" if much_pairs == pairs else "partly supported" if wider_pairs > pairs / 2
                else "not supported")

    rule = (f"supported if Transformer's std ≥ {SPREAD_FACTOR:g}× SAMformer's in every one of the {expected} "
            "(dataset, horizon) pairs of Table 1 available here; partly if larger in most; not supported otherwise")
    if n == 0:
        return {"id": "S20", "measured": "no finished Table 1 cells of both models", "rule": rule,
                "verdict": "not yet tested"}
    wider = int((spread["std_ratio"] > 1).sum())
    much = int((spread["std_ratio"] >= SPREAD_FACTOR).sum())
    outcome = rule_outcome(wider, much, n)
    median = float(spread["std_ratio"].median())
    stale = "" if spread["current_code"].all() else "; some cells computed by older code"
    measured = (f"benchmark grid (paper profile, 5 seeds): Transformer's test-MSE std > SAMformer's in {wider} of {n} "
                f"(dataset, horizon) pairs, ≥ {SPREAD_FACTOR:g}× in {much}; median ratio {median:.2f}× "
                f"({n} of {expected} pairs finished{stale})")
    if n < expected:
        missing = expected - n
        best, worst = rule_outcome(wider + missing, much + missing, expected), rule_outcome(wider, much, expected)
        if best != worst:
            return {"id": "S20", "measured": f"{measured} — rule outcome on the pairs run: {outcome}", "rule": rule,
                    "verdict": "inconclusive"}
        return {"id": "S20", "measured": f"{measured}; settled: whatever the {missing} missing pairs show, the rule "
                                         f"gives {worst}", "rule": rule, "verdict": worst}
    return {"id": "S20", "measured": measured, "rule": rule, "verdict": outcome}


def claim_keys(config: SharpnessConfig) -> dict[str, set[str]]:
    """The stored items each claim's verdict needs: S19 the main Transformer and SAMformer runs on every
    dataset, S27 the App. C.3 optimizer runs and the Transformer's (Adam) main runs, S29 the main runs of the four
    σReparam-comparison recipes, S28 every ρ-grid run, S30 the step costs of SAM and SAM + σReparam with their
    main runs (the whole-run time ratio)."""
    def main_runs(names):
        return {run_key(n, d, s, _main_rho(n, d, config.horizon))
                for n in names if n in config.recipes for d in config.datasets for s in config.seeds}

    rho_grid = {run_key("samformer", d, s, rho) for d in config.datasets for rho in config.rho_grid
                for s in config.rho_seeds}
    costs = {_cost_key(n, d) for n in ("samformer", "samformer_sigma_reparam") for d in config.datasets}
    optimizers = {run_key(n, d, s, None) for n in config.optimizer_recipes for d in config.datasets
                  for s in config.seeds}
    return {"S19": main_runs(("transformer", "samformer")), "S27": optimizers | main_runs(("transformer",)),
            "S29": main_runs(("transformer", "samformer", "sigma_reparam", "samformer_sigma_reparam")),
            "S28": rho_grid, "S30": costs | main_runs(("samformer", "samformer_sigma_reparam"))}


def sharpness_verdicts(study: SharpnessStudy, spread: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per claim this chapter owns (S19, S20, S27–S30): what we measured, the rule and the verdict.

    Outside the paper profile every verdict is capped at ``inconclusive``: the rule's outcome is shown in the
    evidence, but reduced sizes cannot settle a claim about the paper's. In the paper profile a claim is capped
    the same way until every item it needs (:func:`claim_keys`) is stored, so a study stopped half-way already
    settles the claims whose runs are complete.
    With ``spread`` (:func:`benchmark_seed_spread`: the benchmark grid's paper-profile cells) S20 is judged on it
    by :func:`seed_spread_verdict` instead, over every available dataset and horizon, whatever this study's profile.
    """
    config = study.config
    datasets = [d for d in ("ETTh1", "exchange_rate") if d in config.datasets]
    rows = []

    def mean_of(name, dataset, column, rho="main"):
        runs = study.runs_of(name, dataset, rho)
        return float(runs[column].mean()) if len(runs) else float("nan")

    def std_of(name, dataset, column):
        runs = study.runs_of(name, dataset)
        return float(runs[column].std(ddof=1)) if len(runs) > 1 else float("nan")

    # S19 — λmax ratio Transformer / SAMformer
    ratios = {d: _geomean(study.runs_of("transformer", d)["lambda_max"]) /
              _geomean(study.runs_of("samformer", d)["lambda_max"]) for d in datasets}
    ok = [r >= ORDER_OF_MAGNITUDE for r in ratios.values()]
    sharper = [r > 1 for r in ratios.values()]
    verdict = ("supported" if ratios and all(ok) else "partly supported" if ratios and all(sharper)
               else "not supported")
    rows.append({"id": "S19", "measured": "λmax Transformer / SAMformer (geometric means over seeds): " + ", ".join(
        f"{d} {r:.2f}×" for d, r in ratios.items()),
        "rule": f"supported if ≥ {ORDER_OF_MAGNITUDE:g}× on ETTh1 and Exchange; partly if > 1× on both",
        "verdict": verdict})

    # S20 — seed spread
    stds = {d: (std_of("transformer", d, "test_mse"), std_of("samformer", d, "test_mse")) for d in datasets}
    wider = [t > s for t, s in stds.values()]
    much = [t >= SPREAD_FACTOR * s for t, s in stds.values()]
    verdict = ("partly supported" if stds and all(much) else "partly supported" if stds and any(wider)
               else "not supported")
    rows.append({"id": "S20", "measured": "test-MSE std over seeds, Transformer vs SAMformer: " + ", ".join(
        f"{d} {t:.4f} vs {s:.4f}" for d, (t, s) in stds.items()) + f" (H={config.horizon} only)",
        "rule": f"partly supported if Transformer's std ≥ {SPREAD_FACTOR:g}× SAMformer's on every dataset run, or "
                "larger on some; 'every dataset and horizon' is not run here, so never fully supported",
        "verdict": verdict})

    # S27 — SGD / AdamW instead of Adam (App. C.3) on real data
    rows.append(optimizer_verdict(study))

    # S28 — ρ = 0 vs every ρ > 0 (the TSMixer halves are not run)
    parts, always = [], []
    for d in datasets:
        means = rho_grid_means(study, d)
        if means is not None:
            always.append(rho_not_better(means).empty)
            parts.append(f"{d}: {rho_grid_summary(study, d)}")
    verdict = "partly supported" if always and all(always) else "not supported" if always else "not yet tested"
    rows.append({"id": "S28", "measured": "; ".join(parts) + " (TSMixer not run: its two halves untested)",
                 "rule": "partly supported if every ρ > 0 of the grid beats ρ = 0 on both datasets (the TSMixer "
                         "comparisons are not run, so never fully supported)", "verdict": verdict})

    # S29 — σReparam vs SAMformer / Transformer; SAM + σReparam vs SAM
    parts, fails, below_tf, no_gain = [], [], [], []
    for d in datasets:
        m = {n: mean_of(n, d, "test_mse") for n in ("transformer", "samformer", "sigma_reparam",
                                                   "samformer_sigma_reparam")}
        fails.append(m["sigma_reparam"] > m["samformer"])
        below_tf.append(m["sigma_reparam"] > m["transformer"])
        no_gain.append(m["samformer_sigma_reparam"] >= m["samformer"])
        parts.append(f"{d}: Transformer {m['transformer']:.4f}, σReparam {m['sigma_reparam']:.4f}, SAMformer "
                     f"{m['samformer']:.4f}, SAM+σReparam {m['samformer_sigma_reparam']:.4f}")
    verdict = ("supported" if fails and all(fails) and any(below_tf) and all(no_gain)
               else "partly supported" if fails and (all(fails) or all(no_gain)) else "not supported")
    rows.append({"id": "S29", "measured": "; ".join(parts) + " (mean test MSE over seeds)",
                 "rule": "supported if σReparam is worse than SAMformer on both, worse than the Transformer on at "
                         "least one, and SAM+σReparam is not better than SAMformer on either; partly if the first "
                         "or the last part holds", "verdict": verdict})

    # S30 — cost of SAM + σReparam vs SAM
    parts, slower, memory = [], [], []
    costs = study.costs
    for d in datasets:
        if costs.empty:
            continue
        c = costs[costs["dataset"] == d].set_index("recipe")
        if not {"samformer", "samformer_sigma_reparam"} <= set(c.index):
            continue
        ratio = c.loc["samformer_sigma_reparam", "seconds_per_step"] / c.loc["samformer", "seconds_per_step"]
        mem = c.loc["samformer_sigma_reparam", "peak_memory_mib"] / c.loc["samformer", "peak_memory_mib"]
        slower.append(ratio)
        memory.append(mem)
        total = mean_of("samformer_sigma_reparam", d, "wall_time_s") / mean_of("samformer", d, "wall_time_s")
        parts.append(f"{d}: step time ×{ratio:.2f}, whole run ×{total:.2f}, peak step memory "
                     + (f"×{mem:.2f}" if math.isfinite(mem) else "not measured"))
    measured_memory = bool(memory) and all(math.isfinite(m) for m in memory)
    much_slower = bool(slower) and all(s >= COST_FACTOR for s in slower)
    much_more_memory = measured_memory and all(m >= COST_FACTOR for m in memory)
    if not slower:
        verdict = "not yet tested"
    elif not measured_memory:  # the time half alone can only be partial support
        verdict = "partly supported" if all(s > 1.0 for s in slower) else "not supported"
    elif much_slower and much_more_memory:
        verdict = "supported"
    elif much_slower or much_more_memory or (all(s > 1.0 for s in slower) and all(m > 1.0 for m in memory)):
        verdict = "partly supported"
    else:
        verdict = "not supported"
    rows.append({"id": "S30", "measured": "; ".join(parts) + f" (one horizon, H={config.horizon}; wall times on the "
                                                            "runner's machine, noisy when it is shared)",
                 "rule": f"supported if a SAM+σReparam step takes ≥ {COST_FACTOR:g}× a SAM step's time and ≥ "
                         f"{COST_FACTOR:g}× its peak working memory on both datasets; partly if one of the two holds, "
                         "or both are merely larger (with memory unmeasured: partly if slower on both)",
                 "verdict": verdict})

    frame = pd.DataFrame(rows, columns=["id", "measured", "rule", "verdict"])
    needed = claim_keys(config)
    stored = study.stored_keys()
    for i, claim_id in enumerate(frame["id"]):
        frame.loc[i, ["verdict", "measured"]] = cap_verdict(
            frame.at[i, "verdict"], frame.at[i, "measured"],
            quick_label=config.label if config.profile != "paper" else None,
            needed=needed.get(claim_id, set()), stored=stored)
    if spread is not None:
        s20 = seed_spread_verdict(spread)
        frame.loc[frame["id"] == "S20", ["measured", "rule", "verdict"]] = [s20["measured"], s20["rule"],
                                                                            s20["verdict"]]
    return frame


def rho_grid_means(study: SharpnessStudy, dataset: str) -> pd.Series | None:
    """SAMformer's mean test MSE per ρ of ``dataset`` (over the seeds run), sorted by ρ; ``None`` unless ρ = 0 (Adam)
    and at least one ρ > 0 were run."""
    runs = study.runs
    grid = runs[(runs["recipe"] == "samformer") & (runs["dataset"] == dataset)] if not runs.empty else runs
    if grid.empty:
        return None
    means = grid.groupby("rho")["test_mse"].mean().sort_index()
    return means if 0.0 in means.index and len(means) >= 2 else None


def rho_not_better(means: pd.Series) -> pd.Series:
    """The ρ > 0 of :func:`rho_grid_means` whose mean test MSE does not beat ρ = 0's (empty: SAM always helps)."""
    others = means.drop(0.0)
    return others[others >= means.loc[0.0]]


def rho_grid_summary(study: SharpnessStudy, dataset: str) -> str | None:
    """SAMformer's ρ grid of ``dataset`` in one line: ρ = 0 (Adam), the best ρ, and every ρ > 0 that does not beat
    ρ = 0 ("every ρ>0 better" when none); ``None`` as :func:`rho_grid_means`."""
    means = rho_grid_means(study, dataset)
    if means is None:
        return None
    worse = [f"{rho:g} ({value:.4f})" for rho, value in rho_not_better(means).items()]
    return (f"ρ=0 {means.loc[0.0]:.4f}, best ρ={float(means.idxmin()):g} {means.min():.4f}, "
            + ("every ρ>0 better" if not worse else f"not better than ρ=0 at ρ = {', '.join(worse)}"))


def findings(study: SharpnessStudy, n_permutations: int = 1000) -> str:
    """What the stored runs say, as Markdown bullets computed from them (for the chapter's paper-size section):
    λmax ratios, test MSE per recipe, the flatness–error rank correlation and the App. C.3 optimizers, each with
    the number of runs it rests on."""
    lines = []
    for dataset in study.config.datasets:
        t, s_ = study.runs_of("transformer", dataset), study.runs_of("samformer", dataset)
        if len(t) and len(s_):
            ratio = _geomean(t["lambda_max"]) / _geomean(s_["lambda_max"])
            lines.append(f"- **{dataset}, λmax**: the Transformer's is {ratio:.1f}× SAMformer's (geometric means over "
                         f"{len(t)} and {len(s_)} seeds; \"an order of magnitude\" needs ≥ {ORDER_OF_MAGNITUDE:g}×).")
        means = []
        for name in study.config.recipes:
            runs = study.runs_of(name, dataset)
            if len(runs):
                spread = f" ± {runs['test_mse'].std(ddof=1):.4f}" if len(runs) > 1 else ""
                means.append(f"{RECIPES[name].label} {runs['test_mse'].mean():.4f}{spread}")
        if means:
            lines.append(f"- **{dataset}, test MSE** (mean ± std over seeds): " + "; ".join(means) + ".")
        rho_line = rho_grid_summary(study, dataset)
        if rho_line is not None:
            lines.append(f"- **{dataset}, SAMformer over the ρ grid** (mean test MSE over seeds): {rho_line}.")
    correlations = flatness_correlations(study, n_permutations=n_permutations)
    for row in correlations[correlations["measure"] == "λmax"].itertuples():
        lines.append(f"- **{row.dataset}, flatness vs error**: over {row.n} runs with a measured λmax (recipes × seeds × "
                     f"ρ), Spearman ρ_s = {row.spearman:+.2f}, Kendall τ_b = {row.kendall_tau_b:+.2f} (permutation "
                     f"p = {row.p_value:.3f}); positive means sharper runs have larger test error.")
    table = optimizer_table(study)
    for dataset, frame in table.groupby("dataset", sort=False):
        others = frame[frame["recipe"] != "transformer"]
        if len(others):
            adam = frame[frame["recipe"] == "transformer"]
            best = f"; Adam's best epoch {adam['best epoch'].iloc[0]:.1f} on average" if len(adam) else ""
            lines.append(f"- **{dataset}, other optimizers** (Transformer, test MSE × Adam's, mean best epoch): "
                         + ", ".join(f"{o} {r:.2f}× (epoch {e:.1f})" for o, r, e in
                                     zip(others["optimizer"], others["× Adam"], others["best epoch"])) + best + ".")
    summary = landscape_summary(study)
    for dataset, frame in summary.groupby("dataset", sort=False):
        def median(name, column):
            return float(frame.loc[frame["recipe"] == name, column].median())

        names = [n for n in LANDSCAPE_RECIPES if (frame["recipe"] == n).any()]
        seeds = frame["seed"].nunique()
        lines.append(
            f"- **{dataset}, landscapes** ({seeds} seed{'s' if seeds > 1 else ''}, medians): one filter norm along a "
            "random direction the training loss rises " + ", ".join(
                f"{median(n, 'random_rise'):.3g}× for {recipe_label(n)}" for n in names)
            + f"; share of the 2-D plane within {BASIN_FACTOR:g}× the solution's loss " + ", ".join(
                f"{median(n, 'basin_share'):.0%} ({recipe_label(n)})" for n in names)
            + f"; training-loss barrier between the two solutions {frame['barrier'].median():.3g}.")
    if not lines:
        return "No runs stored yet."
    done, planned = len(study.runs), len(planned_runs(study.config))
    return f"From the {done} of {planned} planned runs stored:\n\n" + "\n".join(lines)


def optimizer_label(name: str) -> str:
    """The optimizer of the Transformer recipe ``name``: "Adam" for ``transformer``, else what its label names
    in brackets ("SGD", "AdamW, wd 1e-4")."""
    return "Adam" if name == "transformer" else RECIPES[name].label.split("(", 1)[1].rstrip(")")


def optimizer_table(study: SharpnessStudy) -> pd.DataFrame:
    """Per dataset, the Transformer's test MSE under Adam (its main runs) and each App. C.3 optimizer: mean ± std
    over seeds, the ratio of means to Adam's, the epochs run and the final training loss."""
    rows = []
    for dataset in study.config.datasets:
        adam = study.runs_of("transformer", dataset)
        if all(study.runs_of(name, dataset).empty for name in study.config.optimizer_recipes):
            continue
        for name in ("transformer", *study.config.optimizer_recipes):
            runs = study.runs_of(name, dataset)
            if runs.empty:
                continue
            mse = runs["test_mse"].to_numpy(dtype=float)
            rows.append({"dataset": dataset, "optimizer": optimizer_label(name), "recipe": name, "seeds": len(runs),
                         "lr": float(runs["lr"].iloc[0]) if "lr" in runs else float("nan"), "test MSE mean": float(np.mean(mse)),
                         "test MSE std": float(np.std(mse, ddof=1)) if len(mse) > 1 else float("nan"),
                         "× Adam": float(np.mean(mse)) / float(adam["test_mse"].mean()) if len(adam) else float("nan"),
                         "epochs": float(runs["epochs_run"].mean()), "best epoch": float(runs["best_epoch"].mean())})
    return pd.DataFrame(rows, columns=["dataset", "optimizer", "recipe", "seeds", "lr", "test MSE mean", "test MSE std",
                                       "× Adam", "epochs", "best epoch"])


def optimizer_verdict(study: SharpnessStudy) -> dict[str, str]:
    """S27 (SAMformer §3.4, App. C.3): "SGD … fails to converge and AdamW … leads to similar performance but is
    very sensitive to the choice of the weight decay", judged on real data with the toy chapter's thresholds
    (:data:`flatcast.claims.DIVERGED_FACTOR`, :data:`flatcast.claims.SIMILAR_TO_ADAM`): SGD fails when its mean test
    MSE is ≥ DIVERGED_FACTOR × Adam's (or not finite); AdamW is "similar" when wd 1e-5 and 1e-4 stay within
    SIMILAR_TO_ADAM of Adam, and "very sensitive" when wd 1e-3 fails like SGD (the paper's App. C.3 reading)."""
    table = optimizer_table(study)
    rule = (f"supported if, on every dataset, SGD's test MSE is ≥ {DIVERGED_FACTOR:g}× Adam's (or NaN), AdamW wd "
            f"1e-5 and 1e-4 are within {SIMILAR_TO_ADAM:.0%} of Adam and wd 1e-3 is ≥ {DIVERGED_FACTOR:g}× Adam's; "
            "partly if the SGD half or the AdamW half holds on every dataset")
    if table.empty or not set(table["recipe"]) & set(OPTIMIZER_RECIPES):
        return {"id": "S27", "measured": "no SGD / AdamW runs on real data yet", "rule": rule,
                "verdict": "not yet tested"}
    parts, sgd_fails, adamw_holds = [], [], []
    for dataset, frame in table.groupby("dataset", sort=False):
        ratio = dict(zip(frame["recipe"], frame["× Adam"]))

        def fails(name):
            value = ratio.get(name, float("nan"))
            return not math.isfinite(value) or value >= DIVERGED_FACTOR

        if "transformer_sgd" in ratio:
            sgd_fails.append(fails("transformer_sgd"))
        small = [abs(ratio[n] - 1) <= SIMILAR_TO_ADAM for n in ("transformer_adamw_1e-5", "transformer_adamw_1e-4")
                 if n in ratio]
        if small and "transformer_adamw_1e-3" in ratio:
            adamw_holds.append(all(small) and fails("transformer_adamw_1e-3"))
        parts.append(f"{dataset}: " + ", ".join(f"{o} {r:.2f}×" for o, r in zip(frame["optimizer"], frame["× Adam"])
                                                 if o != "Adam"))
    sgd_half = bool(sgd_fails) and all(sgd_fails)
    adamw_half = bool(adamw_holds) and all(adamw_holds)
    verdict = "supported" if sgd_half and adamw_half else "partly supported" if sgd_half or adamw_half \
        else "not supported"
    measured = ("test MSE × Adam's (Transformer, mean over seeds) — " + "; ".join(parts)
                + f". SGD at lr {SGD_LR:g} (the paper gives none) {'fails' if sgd_half else 'trains'}; AdamW "
                + ("behaves as App. C.3 says" if adamw_half else "does not behave as App. C.3 says"))
    return {"id": "S27", "measured": measured, "rule": rule, "verdict": verdict}


def claims_box(spread: pd.DataFrame | None = None, **studies: SharpnessStudy | None) -> pd.DataFrame:
    """The claims box: one row per claim with each named study's measurement and verdict side by side (S20 from
    ``spread`` when given, see :func:`sharpness_verdicts`)."""
    from flatcast.claims import claim

    box = None
    for name, study in studies.items():
        if study is None or study.runs.empty:
            continue
        verdicts = sharpness_verdicts(study, spread)[["id", "measured", "verdict"]].rename(
            columns={"measured": f"measured ({name})", "verdict": f"verdict ({name})"})
        box = verdicts if box is None else box.merge(verdicts, on="id")
    if box is None:
        raise ValueError("claims_box needs at least one study with runs")
    box.insert(1, "claim", [claim(i).claim for i in box["id"]])
    return box


# --------------------------------------------------------------------------------------------- persistence
def results_path(profile: str = "paper") -> Path:
    """Where the runner writes ``profile``'s results: ``data/results/sharpness_<profile>.jsonl``."""
    return REPO_ROOT / "data" / "results" / f"sharpness_{profile}.jsonl"


def load_study(path: str | os.PathLike | None = None, profile: str = "paper") -> SharpnessStudy | None:
    """The study stored at ``path`` (default: ``profile``'s results file), or ``None`` when there is none."""
    path = Path(path) if path is not None else results_path(profile)
    if not path.is_file():
        return None
    header = json.loads(path.read_text(encoding="utf-8").split("\n", 1)[0])
    fields = dict(header["config"])
    for key, value in fields.items():
        if isinstance(value, list):
            fields[key] = tuple(value)
    config = SharpnessConfig(**fields)
    return SharpnessStudy.from_store(ResultsStore(path, config, read_only=True))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flatcast.experiments.sharpness --profile paper``: run or resume the study, then publish the
    verdicts (capped at "inconclusive" unless the paper profile is complete)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--profile", default="paper", choices=sorted(SHARPNESS_CONFIGS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads on the CPU (default: the profile's, 1; 0: torch's default)")
    parser.add_argument("--out", default=None, help="results file (default data/results/sharpness_<profile>.jsonl)")
    parser.add_argument("--max-runs", type=int, default=None, help="stop after this many newly trained runs")
    parser.add_argument("--no-verdicts", action="store_true", help="do not write data/results/sharpness_claims.json")
    parser.add_argument("--claims-dir", default=None, help="where to write sharpness_claims.json")
    parser.add_argument("--plan", action="store_true", help="print how many runs are planned and done, train nothing")
    parser.add_argument("--only", choices=STUDY_PARTS, default=None,
                        help="do only the trained runs or only the landscapes (two processes may share the file)")
    parser.add_argument("--verdicts-only", action="store_true",
                        help="train nothing: write the verdicts of the stored study (S20 from the benchmark grid)")
    args = parser.parse_args(argv)
    command = ["python", "-m", "flatcast.experiments.sharpness", *(argv if argv is not None else sys.argv[1:])]
    out = Path(args.out) if args.out else results_path(args.profile)
    if args.threads is not None and args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    config = sharpness_config(args.profile, **({} if args.threads is None else {"threads": args.threads or None}))
    if args.plan:
        done = load_study(out)
        n_done = 0 if done is None else len(done.runs)
        print(f"{len(planned_runs(config))} runs planned, {n_done} stored in {out}")
        return 0
    run_provenance = provenance(args.device, command)
    run_provenance["threads"] = config.threads or run_provenance["threads"]
    if args.verdicts_only:
        study = load_study(out, profile=args.profile)
        if study is None:
            parser.error(f"--verdicts-only: no stored study at {out}")
    else:
        study = run_study(config, out, device=args.device, progress=True, max_runs=args.max_runs,
                          run_provenance=run_provenance, parts=(args.only,) if args.only else STUDY_PARTS)
        if args.only:  # another process may have stored the other part meanwhile: judge what the file holds
            study = load_study(out, profile=args.profile)
    print(f"{len(study.runs)} runs stored in {out}; complete: {study.complete}")
    spread = benchmark_seed_spread()
    verdicts = sharpness_verdicts(study, spread)
    print(verdicts.to_string())
    if not args.no_verdicts:
        def evidence(row) -> str:  # S20 comes from the benchmark grid's paper-profile cells, not from this study
            return row.measured if row.id == "S20" and len(spread) else f"{row.measured} ({args.profile} profile)"

        path = write_verdicts("sharpness", {row.id: {"verdict": row.verdict, "evidence": evidence(row)}
                                            for row in verdicts.itertuples()},
                              provenance={**study.provenance, "verdicts": provenance(args.device, command)},
                              results_dir=args.claims_dir)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
