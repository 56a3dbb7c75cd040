"""Attention on real data: entropy collapse, rank collapse, and which attention is needed.

SAMformer explains *why* a transformer generalizes badly through its attention: entropy collapse (§2.3, after
Zhai et al. 2023) and, for σReparam, rank collapse (Prop. 5, Fig. 7). EEO-TFV reads the same measurement (the
attention's nuclear norm, its App. 3 Fig. 4) the other way round: a lower nuclear norm as a *simplification*.
This runner trains the recipes of :mod:`flatcast.recipes` on the benchmarks and measures both.

Two studies share one record format and one results file:

* **dynamics** — recipes ``transformer``, ``samformer``, ``sigma_reparam``, ``samformer_sigma_reparam``,
  ``transformer_eeo`` on the ``dynamics_datasets`` at ``H = dynamics_horizon``, with per-epoch diagnostics
  (attention entropy, nuclear norm, both sides of Prop. 5 on the model's own inputs, whether ``W_Q W_Kᵀ`` is
  symmetric PSD, effective rank of the last-layer representation) and, after training, the attention of a batch
  of ``map_windows`` test windows (SAMformer Fig. 6/12, EEO-TFV Fig. 5), per-window nuclear norms (Fig. 7, EEO
  Fig. 4), the attention's singular spectrum and the last-layer spectrum (EEO-TFV §4.3, Fig. 3).
* **table** — recipes ``transformer``, ``temporal``, ``samformer``, ``identity_sam`` on the ``table_datasets`` ×
  ``table_horizons`` (SAMformer App. C.4, Tables 9–10): test MSE/MAE only. Cells that the dynamics study already
  trained (same recipe, dataset, horizon, seed, protocol) are reused, not retrained.

Every finished (recipe, dataset, horizon, seed) run is one JSON line appended to the results file
(``data/results/attention_<profile>.jsonl``) and skipped when the runner starts again, so the paper profile
can be stopped and resumed at any point: ``python -m flatcast.experiments.attention --profile paper``.

Choices where the papers are silent (all :class:`AttentionConfig` fields or documented here):

* Training follows SAMformer App. A.1 through :func:`flatcast.recipes.fit_recipe_seeds` (Adam, batch 32, cosine,
  early stopping with patience 5 on the validation MSE, the paper's lr and ρ*); the quick profile shortens it.
* The "batch of 32 windows" of Fig. 12 is 32 test windows evenly spaced over the test period (the paper does not
  say which); diagnostics along training use the first ``diag_windows`` validation windows.
* Prop. 5 is evaluated with the biases folded in (``X̃ = [X, 1]``), so its left side is exactly the model's score
  matrix; ``X`` is the RevIN-normalised input the attention sees.
* The "last-layer representation" of EEO-TFV §4.2–4.3 is the input of the channel transformer's linear head
  (``X + A X W_V W_O``), one row per (window, channel); EEO-TFV used Traffic and Synapse, which are not available
  here — the chapter says which dataset stands in.
* national_illness is not in Tables 9–10 and too short for L = 512 at the longer horizons; it is not run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from flatcast.claims import cap_verdict, merge_verdicts, write_verdicts
from flatcast.data import DATASETS, make_splits
from flatcast.data.splits import Splits, WindowSet
from flatcast.diagnostics.seed_tests import cell_t_tests, significance_counts
from flatcast.diagnostics.attention import (
    attention_entropy, collect_attention, effective_rank, head_representation, model_proposition5,
    proposition5_callback, representation_rank_callback, score_weights_psd, singular_spectrum,
)
from flatcast.profiles import get_profile
from flatcast.provenance import REPO_ROOT, device_type, provenance
from flatcast.recipes import RECIPES, fit_recipe_seeds, recipe
from flatcast.reference import load_reference

__all__ = [
    "AttentionConfig", "ATTENTION_CONFIGS", "attention_config", "DYNAMICS_RECIPES", "TABLE_RECIPES", "LABELS",
    "run_key", "planned_runs", "reduce_splits", "load_splits", "train_cell", "run_study", "load_records",
    "append_record", "results_path", "records_frame", "device_type", "cells_by_device", "table_frame",
    "overall_improvement", "improvement_by_dataset", "final_attention",
    "diagonal_statistics", "attention_verdicts", "published_verdicts", "claims_box", "main", "benchmark_table_records",
    "with_benchmark_tables", "seed_significance", "dynamics_claim_runs", "grid_table_verdicts", "TABLE_CLAIMS",
    "table_runs", "table_verdict_settled", "nuclear_norm_reading", "reading_of", "READING_THRESHOLD",
]

DYNAMICS_RECIPES = ("transformer", "samformer", "sigma_reparam", "samformer_sigma_reparam", "transformer_eeo")
TABLE_RECIPES = ("transformer", "temporal", "samformer", "identity_sam")
LABELS = {name: r.label for name, r in RECIPES.items()}
#: Datasets of SAMformer Tables 9–10 that are available here (electricity and traffic are not).
TABLE_DATASETS = ("ETTh1", "ETTh2", "ETTm1", "ETTm2", "exchange_rate", "weather")
PAPER_HORIZONS = (96, 192, 336, 720)


@dataclass(frozen=True)
class AttentionConfig:
    """Sizes and settings of the attention study for one profile (module docstring for the choices)."""

    profile: str
    lookback: int
    dynamics_datasets: tuple[str, ...]
    dynamics_horizon: int
    dynamics_recipes: tuple[str, ...]
    table_datasets: tuple[str, ...]
    table_horizons: tuple[int, ...]
    table_recipes: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int
    patience: int | None
    max_train_batches: int | None  # cap on optimizer steps per epoch (quick profile), None: every batch
    max_eval_windows: int | None  # cap on validation and test windows (evenly spaced), None: all
    diag_windows: int  # validation windows for the per-epoch diagnostics
    rep_windows: int  # windows whose last-layer representation is measured
    map_windows: int = 32  # the batch of test windows of SAMformer Fig. 12
    explorer_windows: tuple[int, ...] = (0, 8, 16, 24)  # positions in that batch kept at every snapshot epoch
    snapshot_epochs: tuple[int, ...] = (0, 1, 2, 5, 10, 20, 50)
    threads: int | None = 1
    device: str = "cpu"

    @property
    def label(self) -> str:
        cap = "" if self.max_train_batches is None else f", ≤ {self.max_train_batches} steps/epoch"
        ev = "" if self.max_eval_windows is None else f", {self.max_eval_windows} val/test windows"
        stop = "no early stopping" if self.patience is None else f"early stopping (patience {self.patience})"
        return (f"L={self.lookback}, {self.epochs} epochs{cap}{ev}, {stop}, {len(self.seeds)} seed(s); dynamics: "
                f"{', '.join(self.dynamics_datasets)} at H={self.dynamics_horizon}; Tables 9–10: "
                f"{', '.join(self.table_datasets)} at H ∈ {list(self.table_horizons)}")


ATTENTION_CONFIGS: dict[str, AttentionConfig] = {
    # Reduced so that the chapter runs in about three minutes on two idle CPU cores (one torch thread, as the
    # committed quick results; 144 CPU-s of training measured with `/usr/bin/time`):
    # L=512, H=96 kept, but 5 epochs of at most 20 steps (100 Adam/SAM steps), 256 evenly spaced validation/test
    # windows, two seeds, two datasets for the dynamics and one cell (ETTh1, H=96) for Tables 9–10.
    "quick": AttentionConfig(
        profile="quick", lookback=512, dynamics_datasets=("ETTh1", "weather"), dynamics_horizon=96,
        dynamics_recipes=DYNAMICS_RECIPES, table_datasets=("ETTh1",), table_horizons=(96,),
        table_recipes=TABLE_RECIPES, seeds=(0, 1), epochs=5, patience=None, max_train_batches=20,
        max_eval_windows=256, diag_windows=32, rep_windows=8, snapshot_epochs=(0, 1, 5), explorer_windows=(0, 16),
        threads=1,
    ),
    # SAMformer's protocol (App. A.1): 300 epochs with early stopping (patience 5), every batch, full splits,
    # 5 seeds; the dynamics on ETTh1, ETTm1, exchange_rate (EEO-TFV Fig. 4) and weather (Figs. 6/12, EEO Fig. 5).
    "paper": AttentionConfig(
        profile="paper", lookback=512, dynamics_datasets=("ETTh1", "ETTm1", "exchange_rate", "weather"),
        dynamics_horizon=96, dynamics_recipes=DYNAMICS_RECIPES, table_datasets=TABLE_DATASETS,
        table_horizons=PAPER_HORIZONS, table_recipes=TABLE_RECIPES, seeds=(0, 1, 2, 3, 4), epochs=300,
        patience=5, max_train_batches=None, max_eval_windows=None, diag_windows=256, rep_windows=64,
    ),
}


def attention_config(profile: str = "quick", **overrides: Any) -> AttentionConfig:
    """The :class:`AttentionConfig` of ``profile`` with fields overridden; bad names and values raise early."""
    get_profile(profile)
    unknown = set(overrides) - set(AttentionConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown AttentionConfig fields {sorted(unknown)}")
    for key in ("dynamics_datasets", "table_datasets", "dynamics_recipes", "table_recipes", "seeds",
                "table_horizons", "explorer_windows", "snapshot_epochs"):
        if key in overrides:
            overrides[key] = tuple(overrides[key])
    config = replace(ATTENTION_CONFIGS[profile], **overrides)
    for name in (*config.dynamics_datasets, *config.table_datasets):
        if name not in DATASETS:
            raise KeyError(f"unknown dataset {name!r}: use one of {sorted(DATASETS)}")
    for name in (*config.dynamics_recipes, *config.table_recipes):
        recipe(name)  # KeyError naming the recipes
    bad = [r for r in config.dynamics_recipes if RECIPES[r].attention != "learned"]
    if bad:
        raise ValueError(f"the dynamics study needs learned channel-wise attention; {bad} have none")
    if not config.seeds:
        raise ValueError("seeds must name at least one seed")
    if any(w >= config.map_windows for w in config.explorer_windows):
        raise ValueError(f"explorer_windows {config.explorer_windows} must index the batch of {config.map_windows}")
    return config


# ------------------------------------------------------------------------------------------------ plumbing
def run_key(recipe_name: str, dataset: str, horizon: int, seed: int) -> str:
    """The identity of one run in the results file."""
    return f"{recipe_name}|{dataset}|{int(horizon)}|{int(seed)}"


def planned_runs(config: AttentionConfig) -> list[dict[str, Any]]:
    """Every (recipe, dataset, horizon) cell of the study, dynamics first; ``study`` says which diagnostics it gets.

    A table cell that is also a dynamics cell appears once, as a dynamics cell."""
    cells: dict[tuple, dict[str, Any]] = {}
    for dataset in config.dynamics_datasets:
        for name in config.dynamics_recipes:
            cells[(name, dataset, config.dynamics_horizon)] = {"recipe": name, "dataset": dataset,
                                                               "horizon": config.dynamics_horizon,
                                                               "study": "dynamics"}
    for dataset in config.table_datasets:
        for horizon in config.table_horizons:
            for name in config.table_recipes:
                cells.setdefault((name, dataset, horizon), {"recipe": name, "dataset": dataset, "horizon": horizon,
                                                            "study": "table"})
    return list(cells.values())


def _evenly_spaced(windows: WindowSet, n: int | None) -> WindowSet:
    if n is None or len(windows) <= n:
        return windows
    index = torch.linspace(0, len(windows) - 1, n).round().long()
    return WindowSet(windows.x[index].contiguous(), windows.y[index].contiguous())


def reduce_splits(splits: Splits, max_eval_windows: int | None) -> Splits:
    """``splits`` with validation and test cut to ``max_eval_windows`` evenly spaced windows (quick profile)."""
    if max_eval_windows is None:
        return splits
    return replace(splits, val=_evenly_spaced(splits.val, max_eval_windows),
                   test=_evenly_spaced(splits.test, max_eval_windows))


def load_splits(dataset: str, horizon: int, config: AttentionConfig) -> Splits:
    return reduce_splits(make_splits(dataset, config.lookback, horizon), config.max_eval_windows)


def map_batch(splits: Splits, n: int) -> torch.Tensor:
    """The batch of ``n`` test windows evenly spaced over the test period (SAMformer Fig. 12's "batch of 32")."""
    index = torch.linspace(0, len(splits.test) - 1, min(n, len(splits.test))).round().long()
    return splits.test.x[index]


def _rounded(array, digits: int = 5) -> list:
    return np.round(np.asarray(array, dtype=np.float64), digits).tolist()


def _snapshot_callback(config: AttentionConfig, windows: torch.Tensor, store: dict[int, list]) -> Callable:
    wanted = set(config.snapshot_epochs) | {config.epochs}

    def callback(model, epoch, splits) -> dict[str, float]:
        if epoch in wanted:
            attention = collect_attention(model, windows[list(config.explorer_windows)])
            store[epoch] = _rounded(attention.numpy(), 4)
        return {"attention_entropy": float(attention_entropy(collect_attention(model, splits.val.x[
            : config.diag_windows])))}

    return callback


def final_diagnostics(model, splits: Splits, config: AttentionConfig) -> dict[str, Any]:
    """What is measured once after training (on the restored best weights): see the module docstring."""
    batch = map_batch(splits, config.map_windows)
    attention = collect_attention(model, batch)
    val_x = splits.val.x[: config.diag_windows]
    sides = model_proposition5(model, val_x)
    val_attention = collect_attention(model, val_x)
    spectrum = singular_spectrum(val_attention, normalize=False).mean(dim=0)
    representation = head_representation(model, splits.val.x[: config.rep_windows])  # as along training
    rep_spectrum = singular_spectrum(representation, normalize="sum")
    matrices = model.weight_matrices()
    return {
        "attention_batch": _rounded(attention.numpy(), 4),
        "nuclear_norms": _rounded(sides["attention_nuclear_norm"].numpy()),
        "prop5_lhs": float(sides["lhs"].mean()), "prop5_rhs": float(sides["rhs"].mean()),
        "attention_entropy": float(attention_entropy(val_attention)),
        "attention_spectrum": _rounded(spectrum.numpy()),
        "attention_erank": float(effective_rank(val_attention).mean()),
        "representation_spectrum": _rounded(rep_spectrum.numpy(), 7),
        "representation_erank": float(effective_rank(representation)),
        "representation_shape": list(representation.shape),
        "score_weights": score_weights_psd(matrices["W_Q"], matrices["W_K"]),
    }


def _record(cell: dict, seed: int, result, config: AttentionConfig, snapshots: dict | None,
            final: dict | None, prov: dict) -> dict[str, Any]:
    history = result.history
    record = {
        "key": run_key(cell["recipe"], cell["dataset"], cell["horizon"], seed), "study": cell["study"],
        "recipe": cell["recipe"], "dataset": cell["dataset"], "horizon": int(cell["horizon"]), "seed": int(seed),
        "profile": config.profile, "lr": result.recipe["lr"], "rho": result.recipe["rho"],
        "test_mse": float(result.test_mse), "test_mae": float(result.test_mae), "val_mse": float(result.val_mse),
        "best_epoch": int(result.best_epoch), "epochs_run": int(history["epoch"].iloc[-1]),
        "n_steps": int(result.n_steps), "grad_evals": int(result.grad_evals),
        "wall_time_s": float(result.wall_time_s),
        "history": {c: _rounded(history[c].to_numpy(dtype=np.float64), 6) for c in history.columns},
        "provenance": prov,
    }
    if final is not None:
        record["final"] = final
        record["snapshots"] = {str(k): v for k, v in sorted(snapshots.items())}
        record["explorer_windows"] = list(config.explorer_windows)
    return record


def train_cell(cell: dict[str, Any], seeds: Sequence[int], config: AttentionConfig, splits: Splits,
               prov: dict | None = None) -> Iterator[dict[str, Any]]:
    """Train one (recipe, dataset, horizon) cell for ``seeds`` through :func:`fit_recipe_seeds`; yield one record
    per seed as soon as it is finished.

    Table cells pass all seeds in one call (so a batched multi-seed trainer can train them together); dynamics
    cells carry per-run callbacks (attention snapshots), so each seed is one call."""
    prov = prov or {}
    options = dict(epochs=config.epochs, patience=config.patience, max_train_batches=config.max_train_batches,
                   device=config.device, threads=config.threads)
    if cell["study"] != "dynamics":
        results = fit_recipe_seeds(cell["recipe"], splits, list(seeds), **options)
        for seed, result in zip(seeds, results):
            yield _record(cell, seed, result, config, None, None, prov)
        return
    batch = map_batch(splits, config.map_windows)
    for seed in seeds:
        store: dict[int, list] = {}
        callbacks = [_snapshot_callback(config, batch, store), proposition5_callback(n_samples=config.diag_windows),
                     representation_rank_callback(n_samples=config.rep_windows)]
        (result,) = fit_recipe_seeds(cell["recipe"], splits, [seed], callbacks=callbacks, **options)
        final = final_diagnostics(result.model, splits, config)
        yield _record(cell, seed, result, config, store, final, prov)


# ------------------------------------------------------------------------------------------------ results file
def results_path(profile: str = "paper") -> Path:
    """``data/results/attention_<profile>.jsonl``: one finished run per line."""
    return REPO_ROOT / "data" / "results" / f"attention_{profile}.jsonl"


def load_records(path: str | os.PathLike, repair: bool = False) -> list[dict[str, Any]]:
    """The records of a results file (``[]`` when it does not exist).

    A line is a record only when it is complete (newline-terminated valid JSON). An unterminated last line —
    a run killed while writing — raises ``ValueError`` unless ``repair=True``, which truncates it away (the run
    is then trained again). Any other malformed line raises: a corrupt results file is never silently used.
    """
    path = Path(path)
    if not path.is_file():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    if tail.strip():
        if not repair:
            raise ValueError(f"{path} ends with an incomplete line (a run killed while writing?); "
                             "rerun the runner, which truncates it, or remove it by hand")
        with open(path, "r+b") as handle:
            handle.truncate(len(raw) - len(tail))
    records, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}, line {number}: not valid JSON ({exc})") from None
        if not isinstance(record, dict) or "key" not in record:
            raise ValueError(f"{path}, line {number}: not a run record (no 'key')")
        if record["key"] in seen:
            raise ValueError(f"{path}, line {number}: run {record['key']} appears twice")
        seen.add(record["key"])
        records.append(record)
    return records


def append_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record as a single newline-terminated line, flushed and fsynced before returning."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, ensure_ascii=False, allow_nan=True) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def run_study(config: AttentionConfig, path: str | os.PathLike | None = None, progress: bool = False,
              command: list[str] | None = None, max_runs: int | None = None) -> list[dict[str, Any]]:
    """Train every planned run of ``config`` that is not already in ``path`` and return all records.

    With ``path`` each finished run is appended there at once (resumable); without it the records stay in
    memory (the chapter's live quick run). ``max_runs`` stops after that many new runs (to run in slices).
    """
    existing = load_records(path, repair=True) if path is not None else []
    done = {r["key"] for r in existing}
    records = list(existing)
    new_runs = 0
    for cell in planned_runs(config):
        missing = [s for s in config.seeds if run_key(cell["recipe"], cell["dataset"], cell["horizon"], s)
                   not in done]
        if not missing:
            continue
        if max_runs is not None:
            missing = missing[: max(0, max_runs - new_runs)]
            if not missing:
                break
        splits = load_splits(cell["dataset"], cell["horizon"], config)
        prov = provenance(config.device, command) if path is not None else {}
        start = time.perf_counter()
        for record in train_cell(cell, missing, config, splits, prov):  # each finished run is written at once
            if path is not None:
                append_record(path, record)
            records.append(record)
            done.add(record["key"])
            new_runs += 1
        if progress:
            print(f"{cell['study']:8s} {cell['recipe']:24s} {cell['dataset']:14s} H={cell['horizon']:<4d} "
                  f"seeds {missing}: {time.perf_counter() - start:6.1f} s", flush=True)
    return records


# ------------------------------------------------------------------------------------------------ analysis
def cells_by_device(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many (recipe, dataset, horizon) cells of ``records`` each device type trained (:func:`device_type`)."""
    cells = {(r["recipe"], r["dataset"], int(r["horizon"])): device_type(r) for r in records}
    return dict(sorted(Counter(cells.values()).items()))


def records_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: key fields and final numbers (dynamics runs add their final diagnostics)."""
    rows = []
    for r in records:
        row = {k: r[k] for k in ("study", "recipe", "dataset", "horizon", "seed", "test_mse", "test_mae",
                                 "val_mse", "best_epoch", "epochs_run", "n_steps", "wall_time_s")}
        row["device"] = device_type(r)
        final = r.get("final")
        if final:
            row.update({"nuclear_norm": float(np.mean(final["nuclear_norms"])),
                        "attention_entropy": final["attention_entropy"], "attention_erank": final["attention_erank"],
                        "representation_erank": final["representation_erank"],
                        "prop5_lhs": final["prop5_lhs"], "prop5_rhs": final["prop5_rhs"],
                        "score_asymmetry": final["score_weights"]["asymmetry"],
                        "score_min_eig": final["score_weights"]["min_eig"]})
            row.update(diagonal_statistics(np.asarray(final["attention_batch"])))
        rows.append(row)
    return pd.DataFrame(rows)


def diagonal_statistics(attention: np.ndarray) -> dict[str, float]:
    """Numbers for the maps' verbal claims, on a batch ``(B, D, D)`` of attention matrices.

    ``diag_mean``: mean diagonal entry (uniform attention gives 1/D, the identity 1); ``diag_ratio``: that over
    1/D; ``row_spread``: mean total-variation distance of each row from the matrix's mean row (0 when all rows are
    equal — SAMformer's "almost equal rows" — and up to 1 − 1/D for the identity).
    """
    attention = np.asarray(attention, dtype=np.float64)
    if attention.ndim == 2:
        attention = attention[None]
    D = attention.shape[-1]
    diag = np.diagonal(attention, axis1=-2, axis2=-1)
    mean_row = attention.mean(axis=-2, keepdims=True)
    spread = 0.5 * np.abs(attention - mean_row).sum(axis=-1).mean()
    return {"diag_mean": float(diag.mean()), "diag_ratio": float(diag.mean() * D), "row_spread": float(spread)}


def final_attention(records: Iterable[dict], recipe_name: str, dataset: str, seed: int | None = None) -> np.ndarray:
    """The batch of attention matrices ``(B, D, D)`` after training (first seed unless ``seed``)."""
    for r in records:
        if r["recipe"] == recipe_name and r["dataset"] == dataset and "final" in r and (seed is None or
                                                                                          r["seed"] == seed):
            return np.asarray(r["final"]["attention_batch"])
    raise KeyError(f"no dynamics run of {recipe_name!r} on {dataset!r}" + ("" if seed is None else f", seed {seed}"))


_PAPER_NAMES = {"ETTh1": "ETTh1", "ETTh2": "ETTh2", "ETTm1": "ETTm1", "ETTm2": "ETTm2",
                "exchange_rate": "Exchange", "weather": "Weather"}


def table_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Tables 9–10 side by side: per (dataset, horizon) our mean test MSE/MAE of the four recipes and the paper's.

    Paper columns: Table 9 (Temporal Attention), Table 10 (Identity Attention), and Table 1/6 for Transformer and
    SAMformer where ``samformer_table1_mse`` / ``samformer_table6_mae`` have them."""
    frame = records_frame(table_runs(records))
    if frame.empty:
        return pd.DataFrame()
    ours = frame.groupby(["dataset", "horizon", "recipe"])[["test_mse", "test_mae"]].agg(["mean", "std", "count"])
    rows = []
    paper = _paper_reference()
    for (dataset, horizon), block in ours.groupby(level=[0, 1]):
        row = {"dataset": dataset, "horizon": int(horizon)}
        for name in TABLE_RECIPES:
            if (dataset, horizon, name) in block.index:
                values = block.loc[(dataset, horizon, name)]
                row[f"{name} MSE"] = values[("test_mse", "mean")]
                row[f"{name} MAE"] = values[("test_mae", "mean")]
                row[f"{name} MSE std"] = values[("test_mse", "std")]  # over seeds (NaN for one seed)
                row[f"{name} MAE std"] = values[("test_mae", "std")]
                row[f"{name} seeds"] = int(values[("test_mse", "count")])
            for metric in ("MSE", "MAE"):
                row[f"{name} {metric} (paper)"] = paper.get((_PAPER_NAMES.get(dataset), int(horizon), name, metric),
                                                            float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def benchmark_table_records(results: list[dict] | None = None) -> list[dict[str, Any]]:
    """Tables 9–10 at the paper's size from the benchmark grid ``samformer-table9`` (``python -m flatcast.benchmark
    run --grid samformer-table9``), one record per (finished cell, seed) in this module's record format
    (``study="table"``, ``source="benchmark"``).

    The grid's SAMformer and Transformer cells are SAMformer Table 1's (same protocol, same cell identity), so they
    are trained once for both tables. ``results``: finished paper-profile cells (default: the committed store)."""
    from flatcast.experiments.benchmark import paper_results

    cells = paper_results() if results is None else results
    out = []
    for cell in cells:
        cfg = cell["identity"]["config"]
        if cfg["recipe"] not in TABLE_RECIPES or cfg.get("profile", "paper") != "paper":
            continue
        if cfg["dataset"] not in TABLE_DATASETS or int(cfg["horizon"]) not in PAPER_HORIZONS:
            continue
        for s in cell["per_seed"]:
            out.append({"study": "table", "source": "benchmark", "recipe": cfg["recipe"], "dataset": cfg["dataset"],
                        "horizon": int(cfg["horizon"]), "seed": int(s["seed"]), "test_mse": s["test_mse"],
                        "test_mae": s["test_mae"], "val_mse": s.get("val_mse"), "best_epoch": s.get("best_epoch"),
                        "epochs_run": s.get("epochs_run"), "n_steps": s.get("n_steps"),
                        "wall_time_s": s.get("wall_time_s"), "current_code": bool(cell.get("current", True)),
                        "cell_key": cell.get("key"), "device": cell.get("device", "cpu")})
    return out


def table_runs(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs of the Tables 9–10 recipes, one per (recipe, dataset, horizon, seed): a table-study run (the
    chapter's own or the benchmark grid's) where there is one, else a dynamics run of the same seed — the dynamics
    study's H = 96 runs are their cells' table runs when no table run exists (:func:`planned_runs`), and two
    trainings of one seed must not both enter a mean or a seed test."""
    chosen: dict[tuple, dict[str, Any]] = {}
    for r in records:
        if r.get("recipe") not in TABLE_RECIPES:
            continue
        key = (r["recipe"], r["dataset"], int(r["horizon"]), int(r["seed"]))
        if key not in chosen or (r.get("study") == "table" and chosen[key].get("study") != "table"):
            chosen[key] = r
    return list(chosen.values())


def with_benchmark_tables(records: Sequence[dict[str, Any]], results: list[dict] | None = None
                          ) -> list[dict[str, Any]]:
    """``records`` plus the benchmark grid's Tables 9–10 runs (:func:`benchmark_table_records`) of every
    (recipe, dataset, horizon, seed) that ``records`` do not already have."""
    have = {(r["recipe"], r["dataset"], int(r["horizon"]), int(r["seed"])) for r in records
            if r.get("study") == "table"}
    extra = [r for r in benchmark_table_records(results)
             if (r["recipe"], r["dataset"], r["horizon"], r["seed"]) not in have]
    return list(records) + extra


def _paper_reference() -> dict[tuple, float]:
    """(paper dataset name, horizon, recipe, metric) → the paper's mean, from Tables 9, 10, 1 (MSE) and 6 (MAE)."""
    out: dict[tuple, float] = {}
    for table, model_to_recipe in (("samformer_table9_temporal", {"Temporal Attention": "temporal"}),
                                   ("samformer_table10_identity", {"Identity Attention": "identity_sam"}),
                                   ("samformer_table1_mse", {"Transformer": "transformer", "SAMformer": "samformer"}),
                                   ("samformer_table6_mae", {"Transformer": "transformer", "SAMformer": "samformer"})):
        try:
            frame = load_reference(table)
        except (KeyError, FileNotFoundError, ValueError):
            continue
        for row in frame.itertuples():
            name = model_to_recipe.get(getattr(row, "model", None))
            if name is None or str(row.horizon) in ("avg", "nan") or pd.isna(row.value):
                continue
            metric = str(getattr(row, "metric", "MSE"))
            if metric not in ("MSE", "MAE"):
                continue
            try:
                out[(row.dataset, int(row.horizon), name, metric)] = float(row.value)
            except ValueError:
                continue
    return out


def overall_improvement(table: pd.DataFrame, better: str, worse: str, metric: str = "MSE",
                        source: str = "ours") -> tuple[float, int]:
    """Mean over cells of ``(worse − better) / worse`` in % (the papers' "Overall improvement"), and the cell count.

    ``source="ours"`` uses our means, ``"paper"`` the paper's numbers for the same cells."""
    suffix = "" if source == "ours" else " (paper)"
    a, b = f"{better} {metric}{suffix}", f"{worse} {metric}{suffix}"
    if table.empty or a not in table or b not in table:
        return float("nan"), 0
    cells = table[[a, b]].dropna()
    if cells.empty:
        return float("nan"), 0
    return float(((cells[b] - cells[a]) / cells[b]).mean() * 100), len(cells)


def improvement_by_dataset(table: pd.DataFrame, better: str, worse: str, metric: str = "MSE") -> pd.DataFrame:
    """:func:`overall_improvement` per dataset, ours beside the paper's on the same cells (those where both
    recipes have our mean and the paper's number), and over all of them: where a table's overall gain comes from."""
    columns = [f"{r} {metric}{suffix}" for r in (better, worse) for suffix in ("", " (paper)")]
    if table.empty or any(c not in table for c in columns):
        return pd.DataFrame(columns=["dataset", "cells", "ours %", "paper %"])
    both = table.dropna(subset=columns)
    rows = [(dataset, group) for dataset, group in both.groupby("dataset", sort=True)] + [("all", both)]
    return pd.DataFrame([{"dataset": name, "cells": len(group),
                          "ours %": overall_improvement(group, better, worse, metric)[0],
                          "paper %": overall_improvement(group, better, worse, metric, source="paper")[0]}
                         for name, group in rows if len(group)])


def seed_significance(records: Iterable[dict[str, Any]], better: str, worse: str, metric: str = "test_mse",
                      alpha: float = 0.05) -> dict[str, int]:
    """Per (dataset, horizon) cell of Tables 9–10 with ≥ 2 seeds of both recipes: Welch's t-test of ``metric``
    over seeds (:func:`flatcast.diagnostics.seed_tests.cell_t_tests`). Returns the number of cells compared, those
    where ``better`` is lower at p < ``alpha`` and those where it is higher at p < ``alpha`` — whether a
    difference of means stands out from the seed spread. The runs are :func:`table_runs`'s."""
    frame = pd.DataFrame([{"recipe": r["recipe"], "dataset": r["dataset"], "horizon": int(r["horizon"]),
                           metric: r.get(metric)} for r in table_runs(records)],
                         columns=["recipe", "dataset", "horizon", metric])
    frame[metric] = pd.to_numeric(frame[metric], errors="coerce")
    return significance_counts(cell_t_tests(frame, "recipe", better, worse, metric=metric, alpha=alpha))


# ------------------------------------------------------------------------------------------------ verdicts
#: |Spearman ρ| above which :func:`nuclear_norm_reading` names a reading of ‖A‖_*.
READING_THRESHOLD = 0.3


def reading_of(rho: float) -> str:
    """Which reading of a lower ‖A‖_* a rank correlation ρ(‖A‖_*, test MSE) over runs favours: SAMformer's collapse
    (ρ < −:data:`READING_THRESHOLD`: lower norm, higher error), EEO-TFV's simplification (ρ > +threshold: lower norm,
    lower error), or neither."""
    if rho < -READING_THRESHOLD:
        return "collapse reading (lower ‖A‖_*, higher error)"
    if rho > READING_THRESHOLD:
        return "simplification reading (lower ‖A‖_*, lower error)"
    return f"neither (|ρ| ≤ {READING_THRESHOLD:g})"


def nuclear_norm_reading(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset of the dynamics study (rows): the number of runs, the Spearman rank correlation over runs between
    the final ‖A‖_* and test MSE, the same without Transformer + EEO's runs, and the reading each favours
    (:func:`reading_of`)."""
    rows = {}
    dynamics = frame[frame["study"] == "dynamics"] if not frame.empty else frame
    for dataset, block in (dynamics.groupby("dataset") if not dynamics.empty else []):
        rho = block[["nuclear_norm", "test_mse"]].corr(method="spearman").iloc[0, 1]
        rest = block[block["recipe"] != "transformer_eeo"]
        rho_rest = rest[["nuclear_norm", "test_mse"]].corr(method="spearman").iloc[0, 1]
        rows[dataset] = {"runs": len(block), "Spearman(‖A‖_*, test MSE)": rho, "same, without EEO's runs": rho_rest,
                         "reading": reading_of(rho), "reading without EEO": reading_of(rho_rest)}
    return pd.DataFrame.from_dict(rows, orient="index")


def _mean_by(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame.groupby(["dataset", "recipe"])[column].agg(["mean", "std"]).unstack("recipe")


def dynamics_claim_runs(config: AttentionConfig) -> dict[str, set[tuple[str, str, int]]]:
    """The dynamics runs ``(recipe, dataset, seed)`` each claim's verdict rests on: S12 the Transformer, SAMformer
    and σReparam on every dynamics dataset; S23 the four Weather recipes of Fig. 6/12; E13 the Transformer and EEO
    on Weather; E12 the Transformer, EEO and σReparam on ETTh1, ETTm1 and Exchange; E8/E10 EEO on the stand-in
    dataset (Weather)."""
    def runs(names, datasets):
        return {(n, d, int(s)) for n in names for d in datasets if d in config.dynamics_datasets
                for s in config.seeds}

    weather = ("weather",)
    return {"S12": runs(("transformer", "samformer", "sigma_reparam"), config.dynamics_datasets),
            "S23": runs(("transformer", "samformer", "sigma_reparam", "samformer_sigma_reparam"), weather),
            "E13": runs(("transformer", "transformer_eeo"), weather),
            "E12": runs(("transformer", "transformer_eeo", "sigma_reparam"), ("ETTh1", "ETTm1", "exchange_rate")),
            "E8": runs(("transformer_eeo",), weather), "E10": runs(("transformer_eeo",), weather)}


def table_verdict_settled(verdict: str, *, wins: int, losses: int, compared: int, pending: int) -> bool:
    """Whether the Tables 9–10 rule's ``verdict`` on the finished cells stands whatever the ``pending`` cells give.

    The rule (:func:`attention_verdicts`): supported needs every cell, mean gains ≥ half the paper's and significant
    wins in most compared cells; partly needs a positive mean MSE gain, ≥ 1 significant win and more wins than
    losses. A missing cell's gain is unbounded below (its relative gain (worse − better)/worse can be any negative
    number), so one pending cell can always make the mean gain negative (not supported) and, when it is a
    significant win, can add to the wins. Hence with ``pending`` > 0 only "not supported" can be settled, and only
    when even ``pending`` more significant wins could not outnumber the losses (nor reach a majority)."""
    if pending <= 0:
        return True
    if verdict != "not supported":
        return False
    best_wins = wins + pending
    partly_possible = best_wins >= 1 and best_wins > losses
    supported_possible = best_wins > (compared + pending) / 2
    return not (partly_possible or supported_possible)


def _cells_needed(table: pd.DataFrame, better: str, worse: str) -> dict[str, set]:
    """``needed`` / ``stored_items`` for :func:`flatcast.claims.cap_verdict`: every (dataset, horizon) cell of
    Tables 9–10 that is available here, and those where both recipes have results."""
    needed = {(d, h) for d in TABLE_DATASETS for h in PAPER_HORIZONS}
    a, b = f"{better} MSE", f"{worse} MSE"
    done = set() if table.empty or a not in table or b not in table else {
        (row.dataset, int(row.horizon)) for row in table[["dataset", "horizon", a, b]].dropna().itertuples()}
    return {"needed": needed, "stored_items": done}


def attention_verdicts(records: Sequence[dict[str, Any]], config: AttentionConfig) -> pd.DataFrame:
    """One row per claim this chapter owns: the measured numbers, the rule and the verdict.

    Rules (stated in the chapter). Quick-profile evidence never supports or refutes a claim: its verdict is
    ``inconclusive`` with the reason, the measured numbers kept. In the paper profile a dynamics claim is capped
    the same way until every run it rests on is stored (:func:`dynamics_claim_runs`; the study is resumable and
    may be read half-way), and a Tables 9–10 claim until every available cell has both recipes, unless no outcome
    of the missing cells could change it (:func:`table_verdict_settled`). Claims without any measurement are
    ``not yet tested``."""
    frame = records_frame(records)
    dyn = frame[frame["study"] == "dynamics"] if not frame.empty else frame
    quick = config.profile != "paper"
    needs = dynamics_claim_runs(config)
    stored = {(r["recipe"], r["dataset"], int(r["seed"])) for r in records if r.get("study") == "dynamics"}
    rows = []

    def add(cid, claim, measured, rule, verdict, *, needed=None, stored_items=None):
        if measured is None:
            verdict, measured = "not yet tested", "no runs"
        else:
            verdict, measured = cap_verdict(verdict, measured,
                                            stored=stored if stored_items is None else stored_items,
                                            needed=needs.get(cid) if needed is None else needed,
                                            quick_label=f"{config.label}; reduced training, not the paper's size"
                                            if quick else None)
        rows.append({"id": cid, "claim": claim, "measured": measured, "rule": rule, "verdict": verdict})

    def have(dataset, *names):
        return not dyn.empty and all(((dyn["dataset"] == dataset) & (dyn["recipe"] == n)).any() for n in names)

    # S12: σReparam lowers ‖A‖_* heavily; SAMformer keeps it above Transformer (Fig. 7)
    datasets = [d for d in config.dynamics_datasets if have(d, "transformer", "samformer", "sigma_reparam")]
    if datasets:
        nn_ = _mean_by(dyn, "nuclear_norm")["mean"]
        lower = {d: nn_.loc[d, "sigma_reparam"] / nn_.loc[d, "transformer"] for d in datasets}
        above = {d: nn_.loc[d, "samformer"] >= nn_.loc[d, "transformer"] for d in datasets}
        heavy = all(v <= 0.75 for v in lower.values())
        some = any(v < 1 for v in lower.values())
        measured = "; ".join(f"{d}: ‖A‖_* T {nn_.loc[d, 'transformer']:.2f}, SAMformer {nn_.loc[d, 'samformer']:.2f}, "
                             f"σReparam {nn_.loc[d, 'sigma_reparam']:.2f}" for d in datasets)
        verdict = ("supported" if heavy and all(above.values()) else
                   "partly supported" if (some or any(above.values())) else "not supported")
        add("S12", "σReparam heavily lowers ‖A‖_*; SAMformer keeps it above Transformer", measured,
            "supported if σReparam ≤ 0.75 × Transformer and SAMformer ≥ Transformer on every dataset; partly if "
            "either holds somewhere", verdict)
    else:
        add("S12", "σReparam heavily lowers ‖A‖_*; SAMformer keeps it above Transformer", None, "", "")

    # S23 / E13: the Weather maps
    def weather_maps(names):
        if not have("weather", *names):
            return None
        return {n: diagonal_statistics(np.concatenate([np.asarray(r["final"]["attention_batch"]) for r in records
                                                       if r["recipe"] == n and r["dataset"] == "weather"
                                                       and "final" in r])) for n in names}

    maps = weather_maps(("transformer", "samformer", "sigma_reparam", "samformer_sigma_reparam"))
    if maps:
        t, s, r_, sr = (maps[n] for n in ("transformer", "samformer", "sigma_reparam", "samformer_sigma_reparam"))
        parts = {"Transformer diagonal below uniform": t["diag_ratio"] < 1,
                 "SAMformer diagonal above uniform and above Transformer's": s["diag_ratio"] > max(1, t["diag_ratio"]),
                 "σReparam rows almost equal (spread < 0.1)": r_["row_spread"] < 0.1,
                 "SAMformer+σReparam rows almost equal (spread < 0.1)": sr["row_spread"] < 0.1}
        measured = (f"diag/(1/D): T {t['diag_ratio']:.2f}, SAMformer {s['diag_ratio']:.2f}, σReparam "
                    f"{r_['diag_ratio']:.2f}, SAM+σR {sr['diag_ratio']:.2f}; row spread: T {t['row_spread']:.2f}, "
                    f"SAMformer {s['row_spread']:.2f}, σReparam {r_['row_spread']:.3f}, SAM+σR {sr['row_spread']:.3f}"
                    f"; holds: {[k for k, v in parts.items() if v]}")
        n_ok = sum(parts.values())
        add("S23", "Weather maps: T low diagonal, SAMformer high diagonal, σReparam ≈ equal rows", measured,
            "each of the four parts tested: supported if all hold, partly if some", "supported" if n_ok == 4 else
            "partly supported" if n_ok else "not supported")
    else:
        add("S23", "Weather maps: T low diagonal, SAMformer high diagonal, σReparam ≈ equal rows", None, "", "")
    maps = weather_maps(("transformer", "transformer_eeo"))
    if maps:
        t, e = maps["transformer"], maps["transformer_eeo"]
        parts = [t["diag_ratio"] < 1, e["diag_ratio"] > max(1, t["diag_ratio"])]
        add("E13", "Weather maps: Transformer low diagonal, EEO strongly emphasises it",
            f"diag/(1/D): Transformer {t['diag_ratio']:.2f}, EEO {e['diag_ratio']:.2f}",
            "supported if Transformer < 1 and EEO > max(1, Transformer); partly if one holds",
            "supported" if all(parts) else "partly supported" if any(parts) else "not supported")
    else:
        add("E13", "Weather maps: Transformer low diagonal, EEO strongly emphasises it", None, "", "")

    # E12: EEO lowers ‖A‖_* on ETTh1 / ETTm1 / Exchange; σReparam lowest on ETTm1
    datasets = [d for d in ("ETTh1", "ETTm1", "exchange_rate") if have(d, "transformer", "transformer_eeo",
                                                                         "sigma_reparam")]
    if datasets:
        stats = _mean_by(dyn, "nuclear_norm")
        mean, std = stats["mean"], stats["std"].fillna(0)
        lower = {d: mean.loc[d, "transformer_eeo"] < mean.loc[d, "transformer"] - max(std.loc[d, "transformer"],
                                                                                       std.loc[d, "transformer_eeo"])
                 for d in datasets}
        reparam_low = ("ETTm1" in datasets and mean.loc["ETTm1", "sigma_reparam"] <=
                       mean.loc["ETTm1", ["transformer", "transformer_eeo", "samformer"]].min())
        measured = "; ".join(f"{d}: T {mean.loc[d, 'transformer']:.2f}, EEO {mean.loc[d, 'transformer_eeo']:.2f}, "
                             f"σReparam {mean.loc[d, 'sigma_reparam']:.2f}" for d in datasets)
        verdict = ("supported" if sum(lower.values()) >= 2 and reparam_low and len(datasets) == 3 else
                   "partly supported" if any(lower.values()) or reparam_low else "not supported")
        add("E12", "EEO lowers ‖A‖_* (ETTh1, ETTm1, Exchange); σReparam lowest on ETTm1", measured,
            "EEO lower than Transformer by more than a seed std on ≥ 2 of the 3 datasets, and σReparam lowest on ETTm1",
            verdict)
    else:
        add("E12", "EEO lowers ‖A‖_* (ETTh1, ETTm1, Exchange); σReparam lowest on ETTm1", None, "", "")

    # E8 / E10: last-layer representation of EEO (a stand-in dataset for Traffic)
    eeo_runs = [r for r in records if r["recipe"] == "transformer_eeo" and "final" in r]
    stand_in = "weather" if any(r["dataset"] == "weather" for r in eeo_runs) else (eeo_runs[0]["dataset"]
                                                                                   if eeo_runs else None)
    if stand_in:
        runs = [r for r in eeo_runs if r["dataset"] == stand_in]
        initial = np.mean([r["history"]["representation_erank"][0] for r in runs])
        lowest = np.mean([np.nanmin(r["history"]["representation_erank"][1:]) for r in runs])
        final = np.mean([r["final"]["representation_erank"] for r in runs])
        add("E8", "no effective-rank degradation of the last-layer representation (EEO)",
            f"{stand_in} in place of Traffic (Synapse not applicable): erank at init {initial:.1f}, lowest after "
            f"epoch 0 {lowest:.1f}, final {final:.1f}",
            "supported if the lowest erank along training stays ≥ 90 % of the initial; partly if the final does",
            "supported" if lowest >= 0.9 * initial else "partly supported" if final >= 0.9 * initial else
            "not supported")
        spectra = [np.asarray(r["final"]["representation_spectrum"]) for r in runs]
        top = np.mean([s[0] for s in spectra])
        size = min(len(s) for s in spectra)
        ninety = np.mean([int(np.searchsorted(np.cumsum(s), 0.9) + 1) for s in spectra])
        add("E10", "last-layer spectrum decays smoothly with a long tail; high effective rank",
            f"{stand_in}: top singular value {top:.1%} of the sum; 90 % of the sum needs {ninety:.0f} of {size} "
            f"directions; erank {final:.1f}",
            "supported if the top value holds < 50 % of the sum and 90 % needs ≥ 10 % of the directions",
            "supported" if top < 0.5 and ninety >= 0.1 * size else "partly supported" if top < 0.5 else
            "not supported")
    else:
        add("E8", "no effective-rank degradation of the last-layer representation (EEO)", None, "", "")
        add("E10", "last-layer spectrum decays smoothly with a long tail; high effective rank", None, "", "")

    # S24 / S26 / S32: Tables 9–10
    table = table_frame(records)
    for cid, claim, better, worse, paper_mse, paper_mae in (
            ("S24", "SAMformer beats A(X) = I (Table 10: 11.93 % MSE, 4.18 % MAE)", "samformer", "identity_sam",
             11.93, 4.18),
            ("S26", "channel-wise beats temporal attention (Table 9: 12.97 % MSE, 18.09 % MAE)", "transformer",
             "temporal", 12.97, 18.09)):
        mse, n = overall_improvement(table, better, worse, "MSE")
        mae, _ = overall_improvement(table, better, worse, "MAE")
        if n == 0:
            add(cid, claim, None, "", "")
            continue
        n_total = len(TABLE_DATASETS) * len(PAPER_HORIZONS)
        significance = seed_significance(records, better, worse)
        wins, losses = significance["better"], significance["worse"]
        verdict = ("supported" if mse >= 0.5 * paper_mse and mae >= 0.5 * paper_mae and n >= n_total
                   and wins > significance["cells"] / 2 else
                   "partly supported" if mse > 0 and wins >= 1 and wins > losses else "not supported")
        settled = table_verdict_settled(verdict, wins=wins, losses=losses, compared=significance["cells"],
                                        pending=n_total - n)
        add(cid, claim, f"overall improvement {mse:.2f} % MSE, {mae:.2f} % MAE over {n} of {n_total} cells; test "
                        f"MSE lower beyond the seed spread (Welch p < 0.05) in {wins} of {significance['cells']} "
                        f"cells, higher in {losses}",
            f"supported if both are ≥ half the paper's over all {n_total} available cells and the MSE is lower "
            "beyond the seed spread in most cells; partly if the MSE improves overall and the significant cells "
            "favour the claim; otherwise not supported (a mean difference inside the seed spread is no "
            "improvement); inconclusive while cells are missing, unless no outcome of them can change the verdict",
            verdict, **({} if settled else _cells_needed(table, better, worse)))
    mse, n = overall_improvement(table, "transformer", "temporal", "MSE")
    cells = _cells_needed(table, "transformer", "temporal")
    both = cells["stored_items"]
    tf = records_frame(table_runs(records))
    tf = tf[tf["recipe"].isin(["transformer", "temporal"])] if not tf.empty else tf
    if not tf.empty:  # time per step only on the cells both recipes ran: the same windows, lengths and channels,
        # and on the CPU for both (a cell a lent GPU trained is not timed against one the CPU trained)
        tf = tf[[(d, int(h)) in both for d, h in zip(tf["dataset"], tf["horizon"])]]
        off_cpu = set(zip(tf.loc[tf["device"] != "cpu", "dataset"], tf.loc[tf["device"] != "cpu", "horizon"]))
        tf = tf[[(d, h) not in off_cpu for d, h in zip(tf["dataset"], tf["horizon"])]]
    if n and set(tf["recipe"]) == {"transformer", "temporal"}:
        per_step = (tf["wall_time_s"] / tf["n_steps"].clip(lower=1)).groupby(tf["recipe"]).mean()
        faster = per_step["transformer"] < per_step["temporal"]
        timed = tf[["dataset", "horizon"]].drop_duplicates().shape[0]
        # "in accuracy" by S26's standard: the overall MSE gain counts only if the significant cells favour it
        significance = seed_significance(records, "transformer", "temporal")
        wins, losses = significance["better"], significance["worse"]
        accurate = mse > 0 and wins > losses
        add("S32", "channel-wise attention is more efficient, computationally and in accuracy, than temporal",
            f"wall time per step on the CPU (incl. evaluation, and a dynamics run's per-epoch diagnostics; "
            f"mean over the {timed} cell{'s' if timed != 1 else ''} both ran on the CPU): channel "
            f"{per_step['transformer'] * 1e3:.1f} ms vs temporal {per_step['temporal'] * 1e3:.1f} ms (the channel "
            f"model's gradient is hand-derived, the temporal one's autograd; its attention scores cost D²·d_m "
            f"against L²·d_m per window); MSE improvement {mse:.1f} % over {n} of "
            f"{len(TABLE_DATASETS) * len(PAPER_HORIZONS)} cells, lower beyond the seed spread (Welch p < 0.05) in "
            f"{wins} of {significance['cells']} cells, higher in {losses}",
            "supported if channel-wise is faster per step and more accurate (overall MSE gain, and more cells "
            "significantly better than worse: S26's standard); partly if one holds; inconclusive while cells are "
            "missing (the sign of the overall MSE gain is open)",
            "supported" if faster and accurate else "partly supported" if faster or accurate else "not supported",
            **cells)
    else:
        add("S32", "channel-wise attention is more efficient, computationally and in accuracy, than temporal", None,
            "", "")
    return pd.DataFrame(rows, columns=["id", "claim", "measured", "rule", "verdict"])


def claims_box(**studies: tuple[Sequence[dict], AttentionConfig] | None) -> pd.DataFrame:
    """Claims with the measured numbers and verdicts of each named study side by side (``None`` left out)."""
    box = None
    for name, study in studies.items():
        if study is None:
            continue
        verdicts = attention_verdicts(*study)[["id", "claim", "measured", "verdict"]].rename(
            columns={"measured": f"measured ({name})", "verdict": f"verdict ({name})"})
        box = verdicts if box is None else box.merge(verdicts.drop(columns="claim"), on="id")
    if box is None:
        raise ValueError("claims_box needs at least one study")
    return box


def load_study(profile: str = "paper", path: str | os.PathLike | None = None
               ) -> tuple[list[dict], AttentionConfig] | None:
    """``(records, config)`` of a committed results file, or ``None`` when it does not exist or is empty."""
    path = Path(path) if path is not None else results_path(profile)
    records = load_records(path)
    if not records:
        return None
    return records, attention_config(profile)


def published_verdicts(records: Sequence[dict[str, Any]], config: AttentionConfig) -> dict[str, dict[str, str]]:
    """What ``--profile <config.profile>`` publishes: :func:`attention_verdicts` with the profile named in the
    evidence; outside the paper profile the Tables 9–10 claims come from the benchmark grid's paper-size cells
    where it has them (:func:`grid_table_verdicts`)."""
    published = {row.id: {"verdict": row.verdict, "evidence": f"{row.measured} ({config.profile} profile)"}
                 for row in attention_verdicts(records, config).itertuples()}
    if config.profile != "paper":
        for row in grid_table_verdicts().itertuples():
            published[row.id] = {"verdict": row.verdict,
                                 "evidence": f"{row.measured} (paper profile: benchmark grid samformer-table9)"}
    return published


# ------------------------------------------------------------------------------------------------ CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flatcast.experiments.attention --profile paper``: train what is missing from the results file
    (resumable; each finished run is appended at once), then publish the verdicts."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--profile", default="paper", choices=sorted(ATTENTION_CONFIGS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (default 1; 0: torch's "
                                                                   "default)")
    parser.add_argument("--out", default=None, help="results file (default data/results/attention_<profile>.jsonl)")
    parser.add_argument("--max-runs", type=int, default=None, help="stop after this many new runs")
    parser.add_argument("--only", choices=("dynamics", "table"), default=None,
                        help="train only the dynamics study or only the Tables 9–10 study")
    parser.add_argument("--recipes", nargs="+", default=None, metavar="RECIPE",
                        help="train only these recipes of the dynamics study (e.g. a second process beside a first "
                             "one working on another recipe; both append whole lines to the same file)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED",
                        help="train only these seeds (with --recipes: split one recipe's seeds between processes)")
    parser.add_argument("--no-verdicts", action="store_true")
    parser.add_argument("--claims-dir", default=None)
    parser.add_argument("--verdicts-only", action="store_true", help="train nothing; verdicts from the results file")
    args = parser.parse_args(argv)
    command = ["python", "-m", "flatcast.experiments.attention", *(argv if argv is not None else sys.argv[1:])]
    overrides: dict[str, Any] = {"device": args.device, "threads": args.threads or None}
    if args.only == "dynamics":
        overrides["table_datasets"] = ()
    elif args.only == "table":
        overrides["dynamics_datasets"] = ()
    if args.recipes is not None:
        overrides["dynamics_recipes"] = tuple(args.recipes)
    if args.seeds is not None:
        overrides["seeds"] = tuple(args.seeds)
    config = attention_config(args.profile, **overrides)
    out = Path(args.out) if args.out else results_path(args.profile)
    if args.verdicts_only:
        records = load_records(out)
        if not records:
            raise SystemExit(f"--verdicts-only: no results at {out}")
    else:
        start = time.perf_counter()
        records = run_study(config, out, progress=True, command=command, max_runs=args.max_runs)
        print(f"{len(records)} runs in {out} ({(time.perf_counter() - start) / 60:.1f} min this call)")
    if args.profile == "paper":  # Tables 9–10 at the paper's size also come from the benchmark grid
        records = with_benchmark_tables(records)
    published = published_verdicts(records, attention_config(args.profile))
    if args.profile == "paper":  # a claim the paper-size study has not measured yet keeps its quick evidence
        quick = load_study("quick")
        if quick is not None:
            published = merge_verdicts(published, published_verdicts(*quick))
    print(pd.DataFrame([{"id": k, **v} for k, v in published.items()]).to_string())
    if not args.no_verdicts:
        path = write_verdicts("attention", published, provenance=provenance(args.device, command),
                              results_dir=args.claims_dir)
        print(f"wrote {path}")
    return 0


#: the claims of SAMformer App. C.4 Tables 9–10, which the benchmark grid measures at the paper's size
TABLE_CLAIMS = ("S24", "S26", "S32")


def grid_table_verdicts(results: list[dict] | None = None) -> pd.DataFrame:
    """The verdicts of :data:`TABLE_CLAIMS` from the benchmark grid's paper-profile cells alone (rows without a
    measurement left out): what the chapter publishes for them whatever profile its own study ran."""
    verdicts = attention_verdicts(with_benchmark_tables([], results), attention_config("paper"))
    measured = verdicts["measured"].notna() & (verdicts["verdict"] != "not yet tested")
    return verdicts[verdicts["id"].isin(TABLE_CLAIMS) & measured].reset_index(drop=True)


if __name__ == "__main__":
    raise SystemExit(main())
